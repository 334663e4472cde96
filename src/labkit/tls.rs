//! TLS for both services, from rustls: nothing to install or link (no
//! system OpenSSL), the same behaviour on every platform.
//!
//! **Postgres** follows libpq. `DATABASE_URL`'s `sslmode` is one of
//! `disable`, `allow` (without TLS first, with it if the server refuses
//! that), `prefer` (the default: TLS when the server offers it), `require`,
//! `verify-ca` (the certificate chains to
//! a trusted root) and `verify-full` (and names the host in the URL);
//! `sslrootcert` is a file of trusted roots, or `system` for the platform's
//! (then `sslmode` defaults to `verify-full` and nothing weaker is allowed).
//! Without `sslrootcert`, `~/.postgresql/root.crt` is used if it exists, and
//! as in libpq its mere presence makes `prefer` and `require` check the
//! chain too. tokio-postgres itself knows only `disable`, `prefer` and
//! `require`, so labkit takes both options out of the URL, keeps the rest
//! for tokio-postgres, and checks the certificate itself (`Verify`). As in
//! libpq, `PGSSLMODE` and `PGSSLROOTCERT` stand in for an option the URL
//! does not give.
//!
//! **Redis**: `rediss://` always checks the certificate and the host name,
//! as the redis crate does. Its roots are the platform's, or the file named
//! by `sslrootcert` in `REDIS_URL`'s query (`rediss://host:6380/?sslrootcert=ca.crt`),
//! labkit's own parameter: Redis URLs have none for it.
//!
//! **Which roots, and why the platform's** (rustls-native-certs) rather than
//! a bundle compiled in (webpki-roots): a managed database's CA, or a
//! company's, is installed in the platform's store (or named by
//! `SSL_CERT_FILE`), where every other tool on the machine finds it too;
//! libpq's `sslrootcert=system` means exactly that store; and the redis
//! crate's TLS loads it anyway, so it costs no extra crate. A lab's own
//! throwaway CA (`scripts/services up --tls`) is named by `sslrootcert`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Roots {
    File(PathBuf),
    System,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Verify {
    /// Encrypt, check nothing (libpq's `prefer` and `require` without roots;
    /// see [`Lenient`]).
    Nothing,
    /// The chain, not the name (`verify-ca`; see [`Lenient`]).
    Chain(Roots),
    /// The chain and the host name (`verify-full`).
    Full(Roots),
}

/// A Postgres URL's TLS settings, resolved as libpq resolves them.
#[derive(Debug, Clone)]
pub(crate) struct PgTls {
    pub(crate) mode: SslMode,
    verify: Verify,
}

/// Takes `sslmode` and `sslrootcert` out of a Postgres connection string
/// (URL or `key=value` form): the rest, and the two values (decoded).
pub(crate) fn split_pg_url(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => mode = Some(value),
        "sslrootcert" => root = Some(value),
        _ => unreachable!("only the two options are taken"),
    };
    let ours = |key: &str| matches!(key, "sslmode" | "sslrootcert");
    let rest = if url.contains("://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| match pair.split_once('=') {
                        Some((key, value)) if ours(key) => {
                            take(key, percent_decode(value));
                            false
                        }
                        _ => true,
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|kv| match kv.split_once('=') {
                Some((key, value)) if ours(key) => {
                    take(key, value.trim_matches('\'').to_string());
                    false
                }
                _ => true,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's default root file: `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("APPDATA"))?;
    Some(Path::new(&home).join(".postgresql").join("root.crt"))
}

impl PgTls {
    /// Resolves `sslmode` and `sslrootcert` as libpq does; the error is
    /// libpq's own sentence where it has one.
    pub(crate) fn resolve(mode: Option<&str>, root: Option<&str>) -> Result<PgTls, String> {
        let system = root == Some("system");
        let mode = match mode {
            None if system => SslMode::VerifyFull,
            None | Some("prefer") => SslMode::Prefer,
            Some("allow") => SslMode::Allow,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(format!(
                    "invalid connection string: invalid value for option `sslmode`: {other:?} is none of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        };
        if system && mode != SslMode::VerifyFull {
            let name = match mode {
                SslMode::Disable => "disable",
                SslMode::Allow => "allow",
                SslMode::Prefer => "prefer",
                SslMode::Require => "require",
                _ => "verify-ca",
            };
            return Err(format!(
                "weak sslmode \"{name}\" may not be used with sslrootcert=system (use \"verify-full\")"
            ));
        }
        let roots = match root {
            Some("system") => Some(Roots::System),
            Some(file) => Some(Roots::File(PathBuf::from(file))),
            None => default_root_file().filter(|f| f.is_file()).map(Roots::File),
        };
        let verify = match (mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => Verify::Full(roots),
            (_, Some(roots)) if mode != SslMode::Disable => Verify::Chain(roots),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(
                    "root certificate file \"~/.postgresql/root.crt\" does not exist: either provide the file with sslrootcert=FILE, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification (require)"
                        .into(),
                );
            }
            _ => Verify::Nothing,
        };
        Ok(PgTls { mode, verify })
    }

    /// tokio-postgres' own mode: it knows no verify-*, which labkit's
    /// verifier takes care of; the connection itself is `require`. Nor
    /// `allow`: its first try is `disable` (see `PgTarget::connect`).
    pub(crate) fn client_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable | SslMode::Allow => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }

    /// The connector tokio-postgres uses for TLS (built once per process
    /// for each kind of check: loading roots reads files).
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        Ok(MakeRustlsConnect::new(client_config(&self.verify)?))
    }
}

/// ring: the one crypto provider compiled in.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn client_config(verify: &Verify) -> Result<ClientConfig, String> {
    static CONFIGS: OnceLock<Mutex<HashMap<Verify, ClientConfig>>> = OnceLock::new();
    let mut configs = CONFIGS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(config) = configs.get(verify) {
        return Ok(config.clone());
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let lenient = |chain| Lenient {
        chain,
        provider: provider(),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(lenient(None)),
        Verify::Chain(roots) => Arc::new(lenient(Some(webpki(roots)?))),
        Verify::Full(roots) => webpki(roots)?,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    configs.insert(verify.clone(), config.clone());
    Ok(config)
}

fn webpki(roots: &Roots) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {} cannot be read ({e})", file.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no certificate (PEM) to trust",
                    file.display()
                ));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert=system, yet the platform's trust store has no certificate ({} errors reading it); install ca-certificates, or name a file with SSL_CERT_FILE",
                    found.errors.len()
                ));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|e| e.to_string())
}

/// The server certificate checks webpki's verifier does not make, as libpq
/// makes them: none at all (`require` without roots: encrypted, the server
/// unchecked), or the chain without the name (`verify-ca`: the chain must
/// lead to a trusted root; the name on the certificate is not looked at).
/// The handshake's own signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    /// The chain's verifier, for `verify-ca`; `None`: nothing is checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `REDIS_URL`'s `sslrootcert` (labkit's own query parameter), read: the
/// roots to trust instead of the platform's. `None` without one.
pub(crate) fn redis_roots(url: &str) -> Result<Option<redis::TlsCertificates>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    let Some(file) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sslrootcert="))
        .map(percent_decode)
    else {
        return Ok(None);
    };
    if !(url.starts_with("rediss://") || url.starts_with("valkeys://")) {
        return Err(format!(
            "sslrootcert={file} asks for TLS, which takes a rediss:// URL"
        ));
    }
    let pem =
        std::fs::read(&file).map_err(|e| format!("sslrootcert {file} cannot be read ({e})"))?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// Whether a failure came from a certificate that was not accepted, as
/// rustls says (somewhere in the error's chain, maybe inside an I/O error).
pub(crate) fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        // An I/O error's source(), and an Arc's (the redis crate keeps its
        // causes in one), skip the error they wrap: look inside.
        let inner = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e
                .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
                .map(|arc| &**arc as &(dyn std::error::Error + 'static)),
        };
        if inner.is_some_and(is_certificate_error) {
            return true;
        }
        next = e.source();
    }
    false
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>, Option<String>) {
        split_pg_url(url)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn split_pg_url_takes_our_two_options_out_of_a_url() {
        let url = "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca%20file.crt";
        assert_eq!(
            split(url),
            (
                "postgres://u:p@h:5432/db?application_name=x".into(),
                some("verify-full"),
                some("/tmp/ca file.crt")
            )
        );
        // Nothing else left: no dangling `?`.
        assert_eq!(
            split("postgres://h/db?sslmode=require"),
            ("postgres://h/db".into(), some("require"), None)
        );
        // Nothing of ours: the URL as it was.
        for url in ["postgres://h/db", "postgres://h/db?connect_timeout=2&x=y"] {
            assert_eq!(split(url), (url.into(), None, None));
        }
    }

    #[test]
    fn split_pg_url_takes_them_out_of_key_value_strings_too() {
        assert_eq!(
            split("host=h  sslmode='verify-ca' dbname=db sslrootcert=/ca.crt"),
            (
                "host=h dbname=db".into(),
                some("verify-ca"),
                some("/ca.crt")
            )
        );
        assert_eq!(
            split("host=h dbname=db"),
            ("host=h dbname=db".into(), None, None)
        );
    }

    #[test]
    fn percent_decode_decodes_escapes_and_keeps_the_rest() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%C3%A9"), "é");
        // Not an escape: kept as it is.
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode(""), "");
    }

    fn resolve(mode: Option<&str>, root: Option<&str>) -> Result<(SslMode, Verify), String> {
        PgTls::resolve(mode, root).map(|t| (t.mode, t.verify))
    }

    #[test]
    fn resolve_maps_sslmode_and_roots_as_libpq_does() {
        let file = || Roots::File(PathBuf::from("/ca.crt"));
        let root = Some("/ca.crt");
        assert_eq!(
            resolve(Some("verify-full"), root),
            Ok((SslMode::VerifyFull, Verify::Full(file())))
        );
        assert_eq!(
            resolve(Some("verify-ca"), root),
            Ok((SslMode::VerifyCa, Verify::Chain(file())))
        );
        // A root file makes allow, prefer and require check the chain too.
        assert_eq!(
            resolve(Some("require"), root),
            Ok((SslMode::Require, Verify::Chain(file())))
        );
        // allow: without TLS first, as libpq (not prefer's order).
        assert_eq!(
            resolve(Some("allow"), root),
            Ok((SslMode::Allow, Verify::Chain(file())))
        );
        assert_eq!(
            resolve(Some("disable"), root),
            Ok((SslMode::Disable, Verify::Nothing))
        );
        // sslrootcert=system: verify-full by default, nothing weaker.
        assert_eq!(
            resolve(None, Some("system")),
            Ok((SslMode::VerifyFull, Verify::Full(Roots::System)))
        );
        for weak in ["disable", "allow", "prefer", "require", "verify-ca"] {
            let why = resolve(Some(weak), Some("system")).unwrap_err();
            assert!(why.contains("weak sslmode"), "{weak}: {why}");
        }
        let why = resolve(Some("verify_full"), root).unwrap_err();
        assert!(why.contains("\"verify_full\" is none of"), "{why}");
    }

    #[test]
    fn client_mode_asks_tokio_postgres_for_tls_when_labkit_verifies() {
        use postgres::config::SslMode as Client;
        let mode = |m| {
            PgTls::resolve(Some(m), Some("/ca.crt"))
                .unwrap()
                .client_mode()
        };
        assert_eq!(mode("disable"), Client::Disable);
        assert_eq!(mode("prefer"), Client::Prefer);
        for m in ["require", "verify-ca", "verify-full"] {
            assert_eq!(mode(m), Client::Require, "{m}");
        }
    }

    #[test]
    fn redis_roots_reads_sslrootcert_only_for_rediss() {
        assert!(matches!(redis_roots("rediss://h:6380"), Ok(None)));
        assert!(matches!(redis_roots("rediss://h:6380/?db=1"), Ok(None)));
        let why = redis_roots("redis://h/?sslrootcert=/ca.crt").err().unwrap();
        assert!(why.contains("takes a rediss:// URL"), "{why}");
        let missing = "/nonexistent/labkit unit test/ca.crt";
        let url = format!("rediss://h/?sslrootcert={}", missing.replace(' ', "%20"));
        let why = redis_roots(&url).err().unwrap();
        assert!(
            why.contains(missing) && why.contains("cannot be read"),
            "{why}"
        );
    }

    #[test]
    fn is_certificate_error_looks_through_io_errors_and_arcs() {
        let bad = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(is_certificate_error(&bad()));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, bad());
        assert!(is_certificate_error(&io));
        let arc: Arc<dyn std::error::Error + Send + Sync> = Arc::new(io);
        assert!(is_certificate_error(&arc));
        // Other TLS failures, and plain I/O errors, are not.
        assert!(!is_certificate_error(&rustls::Error::DecryptError));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&refused));
        let other = std::io::Error::other(rustls::Error::DecryptError);
        assert!(!is_certificate_error(&other));
    }
}

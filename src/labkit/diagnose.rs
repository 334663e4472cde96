//! Why a connect failed, when the client library's error alone cannot say.
//!
//! Some setups fail with an error that names a symptom, not the cause: a
//! TLS-only Redis closes a plain connection without a word (it reads as a
//! dropped connection), and `sslmode=require` against a Postgres without TLS
//! fails in the handshake. Only on such a failure, labkit asks the server
//! itself, on a connection of its own: does this port speak TLS? The answer
//! is a protocol fact (a Postgres answers `S` or `N` to an SSLRequest; a TLS
//! server answers a ClientHello with a TLS record), never a guess from an
//! error's English text. A working connect never pays for it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::error::{Cause, Error, Problem, Service};

/// A probe gives up after this long: it only refines an error's message.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens a probe's connection to `host:port`, bounded.
fn probe_stream(host: &str, port: u16) -> Option<TcpStream> {
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    Some(stream)
}

/// Whether the Postgres at `host:port` offers TLS: its one-byte answer to an
/// SSLRequest (`S` yes, `N` no). `None` when it could not be asked.
pub(crate) fn postgres_offers_tls(host: &str, port: u16) -> Option<bool> {
    let mut stream = probe_stream(host, port)?;
    // Length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679).
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .ok()?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).ok()?;
    match answer[0] {
        b'S' => Some(true),
        b'N' => Some(false),
        _ => None,
    }
}

/// Whether the Redis at `host:port` speaks TLS. A plain one answers an
/// inline `PING` (`+PONG`, or an error such as `-NOAUTH`); a TLS server
/// answers a TLS 1.2 ClientHello with a TLS record (a ServerHello, or an
/// alert refusing our few cipher suites: either proves TLS). A plain Redis
/// cannot be asked with the ClientHello alone: its NUL bytes keep it from
/// ever seeing a line. `None` when neither answered.
pub(crate) fn speaks_tls(host: &str, port: u16) -> Option<bool> {
    let answer = |hello: &[u8]| {
        let mut stream = probe_stream(host, port)?;
        stream.write_all(hello).ok()?;
        let mut answer = [0u8; 2];
        stream.read_exact(&mut answer).ok()?;
        Some(answer)
    };
    if let Some([b'+' | b'-', _]) = answer(b"PING\r\n") {
        return Some(false);
    }
    // Content type handshake (22) or alert (21), then major version 3.
    answer(&client_hello()).map(|a| matches!(a, [21 | 22, 3]))
}

/// A minimal TLS 1.2 ClientHello: two AEAD cipher suites, no extensions.
/// Enough for any TLS server to answer with a record of its own.
fn client_hello() -> Vec<u8> {
    let mut body = vec![3, 3]; // TLS 1.2
    body.extend([0u8; 32]); // random
    body.push(0); // no session id
    body.extend([0, 4, 0xc0, 0x2f, 0x13, 0x01]); // ECDHE-RSA-AES128-GCM-SHA256, TLS_AES_128_GCM_SHA256
    body.extend([1, 0]); // compression: null only
    let mut handshake = vec![1]; // ClientHello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![22, 3, 1]; // handshake record, TLS 1.0 on the record layer
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// What a failed Postgres connect came to.
pub(crate) fn postgres_connect(
    service: Service,
    url: &str,
    config: &postgres::Config,
    err: postgres::Error,
) -> Error {
    use postgres::config::SslMode;
    // Without `sslmode=disable`, a server that offers TLS gets it.
    let tls_capable = config.get_ssl_mode() != SslMode::Disable;
    let first = config.get_hosts().first().and_then(|h| match h {
        postgres::config::Host::Tcp(host) => Some(host.clone()),
        #[cfg(unix)]
        _ => None,
    });
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let offers_tls = || first.as_deref().and_then(|h| postgres_offers_tls(h, port));
    let requires_tls = config.get_ssl_mode() == SslMode::Require;
    let problem = match err.code().map(|c| c.code()) {
        // "no pg_hba.conf entry for host ..., no encryption": a server whose
        // pg_hba.conf has only `hostssl` lines, met without TLS.
        Some("28000") if !tls_capable && offers_tls() == Some(true) => Some(Problem::TlsRequired),
        Some(_) => None,
        // tokio-postgres has no error kind for it, only this fixed text;
        // read only when the URL has no password, which is what it means.
        None if config.get_password().is_none() && is_password_missing(&err) => {
            Some(Problem::NeedsPassword)
        }
        None if super::tls::is_certificate_error(&err) => Some(Problem::Certificate),
        None if requires_tls && offers_tls() == Some(false) => Some(Problem::NoTls),
        None => None,
    };
    let fatal = super::db::is_fatal(&err);
    match problem {
        Some(problem) => Error::unreachable(service, url, problem, Cause::new(err)),
        None => match Error::pg(service, url, err) {
            // Any other FATAL while connecting: no statement was refused,
            // the connection was (PgBouncer's "no such database" is 08P01).
            Error::Rejected { cause, .. } if fatal => {
                Error::unreachable(service, url, Problem::Refused, cause)
            }
            other => other,
        },
    }
}

fn is_password_missing(err: &postgres::Error) -> bool {
    std::error::Error::source(err).is_some_and(|s| s.to_string() == "password missing")
}

/// A Redis error met while connecting: a certificate that was not
/// accepted is told as such, anything else as [`Error::redis`] tells it.
pub(crate) fn redis_error(url: &str, err: redis::RedisError) -> Error {
    if super::tls::is_certificate_error(&err) {
        return Error::unreachable(Service::Redis, url, Problem::Certificate, Cause::new(err));
    }
    Error::redis(url, err)
}

/// What a failed Redis connect (or its first command) came to: a dropped
/// connection, or one that never answered, is told apart from TLS on one
/// side only. A TLS-only server closes a plain connection at once; a plain
/// one waits forever for the end of the line a ClientHello never sends.
pub(crate) fn redis_connect(url: &str, info: &redis::ConnectionInfo, error: Error) -> Error {
    let Error::Unreachable {
        problem: problem @ (Problem::Down | Problem::NoAnswer),
        cause,
        ..
    } = &error
    else {
        return error;
    };
    let (host, port, tls) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host, *port, false),
        redis::ConnectionAddr::TcpTls { host, port, .. } => (host, *port, true),
        _ => return error,
    };
    let cause = match (speaks_tls(host, port), problem) {
        (Some(true), _) if !tls => (Problem::TlsRequired, cause.clone()),
        (Some(false), Problem::NoAnswer) if tls => (
            Problem::NoTls,
            Cause::text("it answers a plain PING, but no TLS handshake"),
        ),
        (Some(false), _) if tls => (Problem::NoTls, cause.clone()),
        _ => return error,
    };
    Error::unreachable(Service::Redis, url, cause.0, cause.1)
}

/// Refuses a transaction (or statement) pool between labkit and Postgres,
/// before any lab is built on it: checked once per process and URL.
///
/// Such a pool hands a session a server connection per transaction, so a
/// lab's `SET search_path` and the run's session advisory lock (see
/// `isolation.rs`) would stay behind on a server connection that other
/// clients then use: checks on the shared `public.users`, and a lock that
/// nobody can release. So this runs before `isolation.rs` takes its lock.
///
/// Two sessions tell: the first reads its backend's pid, then the second
/// opens a transaction and reads its own. Directly or through a session
/// pool, the first session keeps its backend, so the second gets another
/// one, and the first then still has its own. A transaction pool hands the
/// idle backend to the second (PgBouncer reuses the last one freed), or the
/// first session's next statement another backend. A statement pool
/// refuses the transaction outright.
pub(crate) fn refuse_transaction_pool(url: &str) -> super::Result<()> {
    static CHECKED: std::sync::Mutex<Vec<(String, super::Result<()>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, verdict)) = checked.iter().find(|(u, _)| u == url) {
        return verdict.clone();
    }
    let verdict = transaction_pool(url);
    checked.push((url.to_string(), verdict.clone()));
    verdict
}

fn transaction_pool(url: &str) -> super::Result<()> {
    use super::config::pg_config;
    use super::db::connect_client;
    let service = Service::Postgres;
    let pg = |e| Error::postgres(url, e);
    let pooled = |why: String| {
        Err(Error::unreachable(
            service,
            url,
            Problem::Pooler,
            Cause::text(format!(
                "it is a transaction pool (PgBouncer's pool_mode = transaction, or the like): {why}"
            )),
        ))
    };
    let mut first = connect_client(pg_config(service, url, None)?, url, service)?;
    let mut second = connect_client(pg_config(service, url, None)?, url, service)?;
    let before = backend(&mut first).map_err(pg)?;
    let refused = |e| refused_transaction(url, e);
    let mut tx = second.transaction().map_err(refused)?;
    let held = backend(&mut tx).map_err(refused)?;
    if held == before {
        return pooled(format!(
            "another session's transaction ran on backend {held}, which this session had just used"
        ));
    }
    let after = backend_meanwhile(url, first, tx)?;
    if after != before {
        return pooled(format!(
            "one session's statements ran on backend {before}, then on backend {after}"
        ));
    }
    Ok(())
}

/// The backend a session's statement runs on.
fn backend(client: &mut impl postgres::GenericClient) -> Result<i32, postgres::Error> {
    Ok(client.query_one("SELECT pg_backend_pid()", &[])?.get(0))
}

/// A statement pool refuses a transaction block: PgBouncer says so
/// (08P01, or 0A000) and closes the session.
fn refused_transaction(url: &str, e: postgres::Error) -> Error {
    let refused = e.is_closed()
        || e.code()
            .is_some_and(|c| matches!(c.code(), "08P01" | "0A000"));
    if !refused {
        return Error::postgres(url, e);
    }
    Error::unreachable(
        Service::Postgres,
        url,
        Problem::Pooler,
        Cause::text(format!(
            "it refused a transaction block ({}): a statement pool (PgBouncer's pool_mode = statement, or the like)",
            Cause::new(e)
        )),
    )
}

/// `first`'s backend for its next statement, while `tx` (another
/// session's transaction) holds its own. Through a pool with no backend to
/// spare it would wait for one, so it runs on a helper thread, bounded;
/// `tx` ends either way (a rollback), freeing what it holds.
fn backend_meanwhile(
    url: &str,
    mut first: postgres::Client,
    tx: postgres::Transaction<'_>,
) -> super::Result<i32> {
    let pg = |e| Error::postgres(url, e);
    let (done, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(backend(&mut first));
    });
    let after = rx.recv_timeout(PROBE_TIMEOUT);
    tx.rollback().map_err(pg)?;
    match after {
        Ok(after) => after.map_err(pg),
        Err(_) => rx
            .recv_timeout(PROBE_TIMEOUT)
            .map_err(|_| {
                Error::unreachable(
                    Service::Postgres,
                    url,
                    Problem::NoAnswer,
                    Cause::text("a SELECT pg_backend_pid() had no answer within 2s"),
                )
            })?
            .map_err(pg),
    }
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md). The probes talk to
// fake servers on this machine's loopback, started here.
#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::{client_hello, postgres_offers_tls, speaks_tls};

    #[test]
    fn the_client_hello_is_one_well_formed_handshake_record() {
        let record = client_hello();
        // Record: handshake (22), TLS 1.0 on the record layer, its length.
        assert_eq!(record[..3], [22, 3, 1]);
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        assert_eq!(record.len(), 5 + len);
        // Handshake: ClientHello (1), its 24-bit length, TLS 1.2.
        let body = &record[5..];
        assert_eq!(body[0], 1);
        let hello = u32::from_be_bytes([0, body[1], body[2], body[3]]) as usize;
        assert_eq!(body.len(), 4 + hello);
        assert_eq!(body[4..6], [3, 3]);
    }

    /// A server on a free loopback port that reads the first 5 bytes of
    /// each connection and answers what `answer` makes of them (nothing:
    /// it closes the connection); its port.
    fn fake(answer: fn(&[u8]) -> &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut got = [0; 5];
                if stream.read_exact(&mut got).is_ok() {
                    let _ = stream.write_all(answer(&got));
                }
            }
        });
        port
    }

    #[test]
    fn postgres_says_whether_it_offers_tls_in_one_byte() {
        assert_eq!(postgres_offers_tls("127.0.0.1", fake(|_| b"S")), Some(true));
        assert_eq!(
            postgres_offers_tls("127.0.0.1", fake(|_| b"N")),
            Some(false)
        );
        assert_eq!(postgres_offers_tls("127.0.0.1", fake(|_| b"E")), None);
        assert_eq!(postgres_offers_tls("127.0.0.1", fake(|_| b"")), None);
    }

    #[test]
    fn redis_speaks_tls_if_a_client_hello_gets_a_tls_record() {
        // A plain Redis answers the inline PING (and never sees a line in a
        // ClientHello: these hang up on it).
        let plain = fake(|got| if got == b"PING\r" { b"+PONG\r\n" } else { b"" });
        assert_eq!(speaks_tls("127.0.0.1", plain), Some(false));
        let noauth = fake(|got| {
            if got == b"PING\r" {
                b"-NOAUTH Authentication required.\r\n"
            } else {
                b""
            }
        });
        assert_eq!(speaks_tls("127.0.0.1", noauth), Some(false));
        // A TLS server hangs up on the PING, and answers a ClientHello with
        // a record (here an alert: handshake failure).
        let tls = fake(|got| {
            if got[0] == 22 {
                &[21, 3, 3, 0, 2, 2, 40]
            } else {
                b""
            }
        });
        assert_eq!(speaks_tls("127.0.0.1", tls), Some(true));
        // Something else answers both, with neither.
        assert_eq!(
            speaks_tls("127.0.0.1", fake(|_| b"HTTP/1.1 400")),
            Some(false)
        );
        // Nothing answers either: it cannot be told.
        assert_eq!(speaks_tls("127.0.0.1", fake(|_| b"")), None);
    }
}

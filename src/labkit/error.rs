//! One error type for the whole lab, with messages that say what to do.
//!
//! Every message names the service, the URL it used (password masked) and the
//! fix, because the learner reading it is in the middle of a 40-minute lab and
//! should not have to debug connection strings.
//!
//! Errors are classified where they are built, from what the client library
//! knows (Postgres' SQLSTATE, the redis error kind, a timeout), never by
//! reading English text afterwards; the original error stays reachable
//! through [`std::error::Error::source`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The services behind the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    Postgres,
    /// Part 4: the read replica of the Postgres primary.
    Replica,
    Redis,
}

impl Service {
    /// The variable that names it.
    pub(crate) fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "DATABASE_URL",
            Service::Replica => "DATABASE_REPLICA_URL",
            Service::Redis => "REDIS_URL",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Postgres => "Postgres",
            Service::Replica => "the Postgres replica",
            Service::Redis => "Redis",
        })
    }
}

/// Why a service could not be reached or used; it decides the fix that is
/// suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Nothing answers there, or the connection broke.
    Down,
    /// Something accepted the connection but never spoke the protocol.
    NoAnswer,
    /// The server refused the user or password.
    Credentials,
    /// The server asks for a password, and the URL gives none (Postgres'
    /// password authentication, Redis' `NOAUTH`).
    NeedsPassword,
    /// The user may not run a command the lab needs (Redis' `NOPERM`: an ACL
    /// user without that command).
    NoPermission,
    /// The server accepts only TLS connections, and the URL asks for none.
    TlsRequired,
    /// The URL asks for TLS, and the server does not speak it.
    NoTls,
    /// The server's TLS certificate was not accepted: not signed by a
    /// trusted root, or not for the host name in the URL.
    Certificate,
    /// Postgres is reached through a transaction (or statement) pool, which
    /// does not keep a session's settings and locks between transactions:
    /// an isolated lab's private schema would not hold.
    Pooler,
    /// The database named in the URL does not exist.
    NoDatabase,
    /// The server (or a pooler in front of it, such as PgBouncer) ended the
    /// connection at once for another reason: `too many clients`, a
    /// database the pooler does not serve...
    Refused,
    /// Nothing is configured for it (Part 4's replica, until one runs).
    NotConfigured,
}

/// The underlying error, shared so that [`Error`] stays `Clone`.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(err: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(err))
    }

    /// A cause that is only a sentence (labkit's own findings).
    pub(crate) fn text(text: impl Into<String>) -> Cause {
        #[derive(Debug)]
        struct Text(String);
        impl fmt::Display for Text {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Text {}
        Cause::new(Text(text.into()))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The error and its sources in one line, without repeating what is already
/// said: `postgres` often says only "error connecting to server" at the top.
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(s) = source {
            let s_text = s.to_string();
            if !text.contains(&s_text) {
                text = format!("{text}: {s_text}");
            }
            source = s.source();
        }
        // One line: Postgres adds its DETAIL and HINT on lines of their own.
        f.write_str(&text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// What went wrong. `Display` is one line: what failed, then what to do.
/// (It includes the cause's text, so a learner sees everything in one line;
/// `source()` still hands tools the original error.)
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The service could not be reached or used as configured: down, wrong
    /// URL, wrong or missing password, TLS on one side only, a user without
    /// a permission the lab needs. [`Problem`] says which.
    #[non_exhaustive]
    Unreachable {
        service: Service,
        /// The URL with any password masked.
        url: String,
        problem: Problem,
        cause: Cause,
    },
    /// The service answered, but refused the command (bad SQL, a constraint…).
    #[non_exhaustive]
    Rejected {
        service: Service,
        /// The URL with any password masked.
        url: String,
        /// Postgres' SQLSTATE, e.g. `23514` for a CHECK violation.
        code: Option<String>,
        cause: Cause,
    },
    /// The service answered, but every one of this lab's pooled connections
    /// to it stayed in use (by the lab's own threads) for as long as a call
    /// may wait for one: too many threads calling it at once without pause.
    #[non_exhaustive]
    Busy {
        service: Service,
        /// The URL with any password masked.
        url: String,
        /// The pool's size: how many connections were all in use.
        connections: u32,
        /// How long the call waited for one of them to come free.
        waited: Duration,
    },
    /// Refused by labkit before anything was sent.
    InvalidInput(String),
    /// A failure that a test injected on purpose; the service itself is fine.
    #[non_exhaustive]
    Injected { service: Service },
    /// The grader closed this lab after a check timed out: every later call
    /// fails, so that a stuck thread errors out and exits.
    Closed,
}

impl Problem {
    /// The services cannot be used as configured, however long one waits: a
    /// URL, a password, TLS or a permission to fix (as opposed to a server
    /// that is down, or not configured on purpose).
    fn is_misconfiguration(self) -> bool {
        !matches!(
            self,
            Problem::Down | Problem::NoAnswer | Problem::NotConfigured
        )
    }
}

/// The first misconfiguration this process met (see [`misconfiguration`]).
static MISCONFIGURED: Mutex<Option<Error>> = Mutex::new(None);

/// The first error of this process that says the services cannot be used as
/// configured, even if the code that met it carried on: Part 3's leased
/// reads serve from Postgres whenever a Redis call fails, so a Redis user
/// who may not run scripts would otherwise pass for a slow cache. The
/// entry points (grader, narration, benchmark) fail with it.
pub(crate) fn misconfiguration() -> Option<Error> {
    MISCONFIGURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

impl Error {
    pub(crate) fn unreachable(
        service: Service,
        url: &str,
        problem: Problem,
        cause: Cause,
    ) -> Error {
        let error = Error::Unreachable {
            service,
            url: mask_password(url),
            problem,
            cause,
        };
        if problem.is_misconfiguration() {
            MISCONFIGURED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| error.clone());
        }
        error
    }

    pub(crate) fn busy(service: Service, url: &str, connections: u32, waited: Duration) -> Error {
        Error::Busy {
            service,
            url: mask_password(url),
            connections,
            waited,
        }
    }

    /// Classifies a `postgres` error: connection problems become
    /// `Unreachable`, anything the server refused becomes `Rejected`.
    pub(crate) fn postgres(url: &str, err: postgres::Error) -> Error {
        Error::pg(Service::Postgres, url, err)
    }

    /// [`Error::postgres`], for the primary or the replica.
    pub(crate) fn pg(service: Service, url: &str, err: postgres::Error) -> Error {
        let code = err.code().map(|c| c.code().to_string());
        let problem = match code.as_deref() {
            // 28xxx: authentication (bad password, unknown role).
            Some(c) if c.starts_with("28") => Some(Problem::Credentials),
            Some("3D000") => Some(Problem::NoDatabase),
            // 57P0x: the server is shutting down or ended this session.
            Some(c) if c.starts_with("57P") => Some(Problem::Down),
            Some(_) => None,
            None if err.is_closed() || is_io(&err) => Some(Problem::Down),
            None => None,
        };
        match problem {
            Some(problem) => Error::unreachable(service, url, problem, Cause::new(err)),
            None => Error::Rejected {
                service,
                url: mask_password(url),
                code,
                cause: Cause::new(err),
            },
        }
    }

    pub(crate) fn redis(url: &str, err: redis::RedisError) -> Error {
        let problem = if matches!(err.kind(), redis::ErrorKind::AuthenticationFailed) {
            Some(Problem::Credentials)
        } else if err.code() == Some("NOAUTH") {
            // The server has a password and none was sent: the crate only
            // authenticates when the URL has one.
            Some(Problem::NeedsPassword)
        } else if matches!(
            err.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
        ) {
            Some(Problem::NoPermission)
        } else if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_timeout()
        {
            Some(Problem::Down)
        } else {
            None
        };
        match problem {
            Some(problem) => Error::unreachable(Service::Redis, url, problem, Cause::new(err)),
            None => Error::Rejected {
                service: Service::Redis,
                url: mask_password(url),
                code: None,
                cause: Cause::new(err),
            },
        }
    }

    /// The SQLSTATE code, when Postgres refused a statement.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Rejected { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// The connection itself failed (an I/O error), as opposed to the server
/// refusing a statement.
pub(crate) fn is_io(err: &postgres::Error) -> bool {
    std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>())
}

/// What each [`Problem`] means and what fixes it, for `Error`'s `Display`:
/// (problem, for Postgres (`Some(true)`), Redis (`Some(false)`) or either,
/// what is wrong with the service (`None`: it cannot be reached), the fix).
/// `{var}` stands for the service's variable. `NotConfigured` has a
/// sentence of its own.
const DIAGNOSES: &[(Problem, Option<bool>, Option<&str>, &str)] = &[
    (
        Problem::Down,
        None,
        None,
        "start the services (`scripts/services up`, or `docker compose -f .devcontainer/docker-compose.yml up -d`) or set {var}; see README, Troubleshooting",
    ),
    (
        Problem::NoAnswer,
        None,
        None,
        "start the services (`scripts/services up`, or `docker compose -f .devcontainer/docker-compose.yml up -d`) or set {var}; see README, Troubleshooting",
    ),
    (
        Problem::Credentials,
        None,
        None,
        "check the user and password in {var}",
    ),
    (
        Problem::NoDatabase,
        None,
        None,
        "create that database or point {var} at one that exists",
    ),
    (
        Problem::NeedsPassword,
        Some(true),
        Some("asks for a password, and {var} gives none"),
        "put it in {var}, as in postgres://USER:PASSWORD@HOST:PORT/DB",
    ),
    (
        Problem::NeedsPassword,
        Some(false),
        Some("asks for a password, and {var} gives none"),
        "put it in {var}, as in redis://:PASSWORD@HOST:PORT (redis://USER:PASSWORD@HOST:PORT for an ACL user)",
    ),
    (
        Problem::NoPermission,
        None,
        Some("answers, but the user in {var} may not run a command the lab needs"),
        "give that user every command on every key (`ACL SETUSER <user> on +@all ~*`), or put one that has them in {var}",
    ),
    (
        Problem::TlsRequired,
        Some(true),
        Some("accepts only TLS connections"),
        "ask for TLS in {var}: sslmode=require, or sslmode=verify-full&sslrootcert=CA_FILE to check the server too (README, Troubleshooting)",
    ),
    (
        Problem::Certificate,
        Some(true),
        Some("presented a certificate that was not accepted"),
        "name the CA that signed it with sslrootcert=FILE in {var} (sslrootcert=system for one the platform trusts) and connect by a name the certificate holds, or use sslmode=require to encrypt without checking the server",
    ),
    (
        Problem::Certificate,
        Some(false),
        Some("presented a certificate that was not accepted"),
        "name the CA that signed it in {var} as rediss://HOST:PORT/?sslrootcert=FILE (the platform's trusted roots otherwise) and connect by a name the certificate holds",
    ),
    (
        Problem::TlsRequired,
        Some(false),
        Some("accepts only TLS connections"),
        "write {var} as rediss://... instead of redis://... (README, Troubleshooting)",
    ),
    (
        Problem::Refused,
        None,
        Some("refused the connection"),
        "check the database, user and password in {var}; through a pooler such as PgBouncer, the database must be one it serves",
    ),
    (
        Problem::Pooler,
        None,
        Some("cannot hold a lab's private schema"),
        "point {var} at Postgres itself, or at a session pool (PgBouncer: pool_mode = session); see README, Troubleshooting",
    ),
    (
        Problem::NoTls,
        Some(true),
        Some("does not speak TLS"),
        "remove sslmode=require (or verify-ca, verify-full) from {var}, or turn on ssl in that server",
    ),
    (
        Problem::NoTls,
        Some(false),
        Some("does not speak TLS"),
        "write {var} as redis://... instead of rediss://..., or give that server a TLS port",
    ),
];

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable {
                service,
                url,
                problem,
                cause,
            } => unreachable_line(f, *service, url, *problem, cause),
            Error::Rejected {
                service,
                url,
                code,
                cause,
            } => {
                write!(f, "{service} at {url} refused the command: {cause}")?;
                if let Some(code) = code {
                    write!(f, " [SQLSTATE {code}]")?;
                }
                f.write_str(": check the statement and the values passed to it")
            }
            Error::Busy {
                service,
                url,
                connections,
                waited,
            } => {
                let all = match connections {
                    1 => "the lab's only pooled connection to it".to_string(),
                    n => format!("all {n} of the lab's pooled connections to it"),
                };
                write!(
                    f,
                    "{service} at {url} answers, but {all} stayed in use for {waited:?}: that happens when many threads call {service} at once without pause, such as a loop that calls it with no sleep between looks (spinning on try_lock, say); wait without hammering it: block on the lock, or sleep between looks"
                )
            }
            Error::InvalidInput(what) => write!(f, "invalid input, nothing was sent: {what}"),
            Error::Injected { service } => write!(
                f,
                "{service} call failed on purpose: the grader injected this failure to play a {service} outage (the real {service} is fine)"
            ),
            Error::Closed => f.write_str(
                "this lab was closed by the grader: a check timed out waiting for your code, so every later call fails and stuck threads can exit",
            ),
        }
    }
}

/// [`Error::Unreachable`]'s line: what is wrong, where, and the fix.
fn unreachable_line(
    f: &mut fmt::Formatter<'_>,
    service: Service,
    url: &str,
    problem: Problem,
    cause: &Cause,
) -> fmt::Result {
    let var = service.env_var();
    if problem == Problem::NotConfigured {
        return write!(
            f,
            "{service}: none is configured ({cause}): start one with `scripts/services up --replica` (or the compose profile `replica`), or set {var}; see README, Part 4"
        );
    }
    let postgres = service != Service::Redis;
    let (state, fix) = DIAGNOSES
        .iter()
        .find(|(p, pg, ..)| *p == problem && pg.is_none_or(|pg| pg == postgres))
        .map(|(_, _, state, fix)| (*state, fix.replace("{var}", var)))
        .expect("every problem but NotConfigured has a diagnosis");
    match state {
        None => write!(f, "cannot reach {service} at {url} ({cause}): {fix}"),
        Some(state) => {
            let state = state.replace("{var}", var);
            write!(f, "{service} at {url} {state} ({cause}): {fix}")
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { cause, .. } | Error::Rejected { cause, .. } => Some(&*cause.0),
            _ => None,
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; also
/// masks `password=…` in key=value connection strings.
pub(crate) fn mask_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_password_hides_only_the_password() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            // The last `@` of the authority ends the user info.
            (
                "postgres://u:p@ss@h/db?x=a@b",
                "postgres://u:***@h/db?x=a@b",
            ),
            ("redis://:secret@h:6379", "redis://:***@h:6379"),
            // No password, or no user info: unchanged.
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("redis://h:6379/?x=a:b@c", "redis://h:6379/?x=a:b@c"),
            (
                "host=h password=secret user=u",
                "host=h password=*** user=u",
            ),
            ("host=h user=u", "host=h user=u"),
        ];
        for (url, masked) in cases {
            assert_eq!(mask_password(url), masked, "{url}");
        }
    }

    #[test]
    fn a_cause_is_one_line_and_says_each_source_once() {
        let io = std::io::Error::other("refused\nDETAIL: x");
        let outer = std::io::Error::other(Wrapper(io));
        assert_eq!(Cause::new(outer).to_string(), "wrapper: refused DETAIL: x");
        assert_eq!(Cause::text("a  b\n c").to_string(), "a b c");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn problem(err: &Error) -> Option<Problem> {
        match err {
            Error::Unreachable { problem, .. } => Some(*problem),
            _ => None,
        }
    }

    #[test]
    fn redis_errors_are_classified_by_kind() {
        let url = "redis://:secret@127.0.0.1:1";
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "no"));
        assert_eq!(
            problem(&Error::redis(url, auth)),
            Some(Problem::Credentials)
        );
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let down = Error::redis(url, redis::RedisError::from(io));
        assert_eq!(problem(&down), Some(Problem::Down));
        let text = down.to_string();
        for part in [
            "cannot reach Redis at redis://:***@127.0.0.1:1",
            "REDIS_URL",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!text.contains("secret"), "{text}");
        let parse = redis::RedisError::from((redis::ErrorKind::Parse, "bad reply"));
        assert!(matches!(
            Error::redis(url, parse),
            Error::Rejected {
                service: Service::Redis,
                ..
            }
        ));
    }

    #[test]
    fn only_a_setup_to_fix_counts_as_a_misconfiguration() {
        for p in [Problem::Down, Problem::NoAnswer, Problem::NotConfigured] {
            assert!(!p.is_misconfiguration(), "{p:?}");
        }
        for p in [
            Problem::Credentials,
            Problem::NeedsPassword,
            Problem::NoPermission,
            Problem::Certificate,
            Problem::TlsRequired,
            Problem::NoTls,
            Problem::Pooler,
            Problem::NoDatabase,
            Problem::Refused,
        ] {
            assert!(p.is_misconfiguration(), "{p:?}");
        }
    }

    #[test]
    fn each_message_names_the_service_the_masked_url_and_the_variable() {
        let url = "postgres://u:secret@h:5432/db";
        let cause = || Cause::text("boom");
        let cases = [
            (Service::Postgres, Problem::Credentials, "DATABASE_URL"),
            (Service::Replica, Problem::Down, "DATABASE_REPLICA_URL"),
            (
                Service::Postgres,
                Problem::NeedsPassword,
                "postgres://USER:PASSWORD",
            ),
            (Service::Redis, Problem::NeedsPassword, "redis://:PASSWORD"),
            (Service::Postgres, Problem::TlsRequired, "sslmode=require"),
            (Service::Redis, Problem::TlsRequired, "rediss://"),
        ];
        for (service, problem, fix) in cases {
            let text = Error::unreachable(service, url, problem, cause()).to_string();
            assert!(text.contains(&service.to_string()), "{text}");
            assert!(text.contains("postgres://u:***@h:5432/db"), "{text}");
            assert!(text.contains(service.env_var()), "{text}");
            assert!(text.contains(fix) && text.contains("boom"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
        let busy = Error::busy(Service::Redis, url, 1, Duration::from_millis(5)).to_string();
        assert!(busy.contains("the lab's only pooled connection"), "{busy}");
        let busy = Error::busy(Service::Redis, url, 4, Duration::from_millis(5)).to_string();
        assert!(
            busy.contains("all 4 of the lab's pooled connections"),
            "{busy}"
        );
    }
}

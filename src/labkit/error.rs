//! One error type for the whole lab, with messages that say what to do.
//!
//! Every message names the service, the URL it used (password masked) and the
//! fix, because the learner reading it is in the middle of a 40-minute lab and
//! should not have to debug connection strings.

use std::fmt;

use super::connect::cause;

/// The two services behind the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Redis,
}

impl Service {
    fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "DATABASE_URL",
            Service::Redis => "REDIS_URL",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Postgres => "Postgres",
            Service::Redis => "Redis",
        })
    }
}

/// What went wrong. `Display` is one line: what failed, then what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The service could not be reached: down, wrong URL or wrong password.
    Unreachable {
        service: Service,
        /// The URL with any password masked.
        url: String,
        cause: String,
    },
    /// The service answered, but refused the command (bad SQL, a constraint…).
    Rejected {
        service: Service,
        url: String,
        cause: String,
        /// Postgres' SQLSTATE, e.g. `23514` for a CHECK violation.
        code: Option<String>,
    },
    /// Refused by labkit before anything was sent.
    InvalidInput(String),
}

impl Error {
    pub(crate) fn unreachable(service: Service, url: &str, cause: impl fmt::Display) -> Error {
        Error::Unreachable {
            service,
            url: mask_password(url),
            cause: cause.to_string(),
        }
    }

    /// Classifies a `postgres` error: connection problems become
    /// `Unreachable`, anything the server refused becomes `Rejected`.
    pub(crate) fn postgres(url: &str, err: &postgres::Error) -> Error {
        match err.as_db_error() {
            // 28xxx: authentication; 3D000: no such database; 57P0x: shutting down.
            Some(db) if matches!(&db.code().code()[..2], "28" | "3D" | "57") => {
                Error::unreachable(Service::Postgres, url, db.message())
            }
            Some(db) => Error::Rejected {
                service: Service::Postgres,
                url: mask_password(url),
                cause: db.message().to_string(),
                code: Some(db.code().code().to_string()),
            },
            None if err.is_closed() || is_io(err) => {
                Error::unreachable(Service::Postgres, url, cause(err))
            }
            None => Error::Rejected {
                service: Service::Postgres,
                url: mask_password(url),
                cause: cause(err),
                code: None,
            },
        }
    }

    pub(crate) fn redis(url: &str, err: &redis::RedisError) -> Error {
        let unreachable = err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_timeout()
            || matches!(err.kind(), redis::ErrorKind::AuthenticationFailed);
        if unreachable {
            Error::unreachable(Service::Redis, url, err)
        } else {
            Error::Rejected {
                service: Service::Redis,
                url: mask_password(url),
                cause: err.to_string(),
                code: None,
            }
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable {
                service,
                url,
                cause,
            } => {
                let lower = cause.to_lowercase();
                let fix = if lower.contains("password") || lower.contains("auth") {
                    format!("check the user and password in {}", service.env_var())
                } else if lower.contains("does not exist") {
                    format!(
                        "create that database or point {} at one that exists",
                        service.env_var()
                    )
                } else {
                    format!(
                        "start the services (`scripts/services up`, or `docker compose -f .devcontainer/docker-compose.yml up -d`) or set {}; see README, Troubleshooting",
                        service.env_var()
                    )
                };
                write!(f, "cannot reach {service} at {url} ({cause}): {fix}")
            }
            Error::Rejected {
                service,
                url,
                cause,
                code,
            } => {
                let code = code
                    .as_deref()
                    .map(|c| format!(" [SQLSTATE {c}]"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{service} at {url} refused the command: {cause}{code}: check the statement and the values passed to it"
                )
            }
            Error::InvalidInput(what) => write!(f, "invalid input, nothing was sent: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; also
/// masks `password=…` in key=value connection strings.
pub fn mask_password(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_url_form() {
        assert_eq!(
            mask_password("postgres://u:s3cr3t@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            mask_password("redis://:pw@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            mask_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_password("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn unreachable_says_service_url_and_fix() {
        let e = Error::unreachable(
            Service::Redis,
            "redis://:pw@127.0.0.1:1",
            "connection refused",
        );
        let text = e.to_string();
        assert!(text.starts_with("cannot reach Redis at redis://:***@127.0.0.1:1 (connection refused): start the services"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
    }
}

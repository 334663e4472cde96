//! Where the services are: `DATABASE_URL` and `REDIS_URL`, with defaults
//! that work unchanged against the compose services and a stock local
//! install (trust or password auth for user `postgres`); and, for Part 4,
//! `DATABASE_REPLICA_URL`.
//!
//! A replica must stream from the very server `DATABASE_URL` names, and a
//! stock install does not allow replication connections. So
//! `scripts/services up --replica` starts a throwaway primary and replica
//! pair on spare ports and writes their URLs to `target/services/replica.env`;
//! when `DATABASE_REPLICA_URL` is not set, labkit finds the pair there and
//! uses both (as long as `DATABASE_URL` is unset or names the same primary).
//! `DATABASE_REPLICA_URL=` (set, empty) means "no replica".

use std::sync::OnceLock;

use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::CONNECT_TIMEOUT;
use super::error::{Cause, Error, Service, mask_password};
use super::tls;

pub(crate) const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres:postgres@127.0.0.1:5432/postgres";
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Written by `scripts/services up --replica`, removed by `down`.
const REPLICA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/services/replica.env");

struct Urls {
    database: String,
    replica: Result<String, String>,
}

fn urls() -> &'static Urls {
    static URLS: OnceLock<Urls> = OnceLock::new();
    URLS.get_or_init(|| {
        let env = |name| std::env::var(name).ok();
        let database = env("DATABASE_URL");
        match env("DATABASE_REPLICA_URL") {
            Some(replica) if replica.is_empty() => Urls {
                database: database.unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
                replica: Err("DATABASE_REPLICA_URL is set to nothing".into()),
            },
            Some(replica) => Urls {
                database: database.unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
                replica: Ok(replica),
            },
            None => from_services_file(database),
        }
    })
}

/// The pair `scripts/services up --replica` started, if any.
fn from_services_file(database: Option<String>) -> Urls {
    from_pair_file(
        &std::fs::read_to_string(REPLICA_FILE).unwrap_or_default(),
        database,
    )
}

/// [`from_services_file`], given the file's text (empty if there is none)
/// and `DATABASE_URL` if set.
fn from_pair_file(text: &str, database: Option<String>) -> Urls {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
    };
    let no_pair = "DATABASE_REPLICA_URL is not set, and no replica was started";
    match (value("DATABASE_URL"), value("DATABASE_REPLICA_URL")) {
        (Some(primary), Some(replica)) if database.as_ref().is_none_or(|d| *d == primary) => Urls {
            database: primary,
            replica: Ok(replica),
        },
        (Some(primary), Some(_)) => Urls {
            database: database.unwrap_or_default(),
            replica: Err(format!(
                "a replica runs, but of the primary at {}, while DATABASE_URL names another server",
                mask_password(&primary)
            )),
        },
        _ => Urls {
            database: database.unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            replica: Err(no_pair.into()),
        },
    }
}

/// `DATABASE_URL`, the default, or the primary of a replica pair.
pub(crate) fn database_url() -> String {
    urls().database.clone()
}

/// The replica's URL, or why there is none.
pub(crate) fn replica_url() -> Result<String, String> {
    urls().replica.clone()
}

/// `REDIS_URL`, or the default.
pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// How labkit opens a Postgres connection: the client's configuration, and
/// what labkit does itself once connected.
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub(crate) config: postgres::Config,
    /// TLS as the URL's `sslmode` and `sslrootcert` ask (see `tls.rs`).
    pub(crate) tls: MakeRustlsConnect,
    /// `sslmode=allow`: `config` asks for no TLS; TLS is the second try.
    allow: bool,
    /// An isolated lab's private schema, made the `search_path` of every new
    /// connection with a `SET` (see `db.rs`).
    pub(crate) schema: Option<String>,
}

/// Parses `service`'s Postgres URL (the primary's or the replica's), with
/// labkit's connect timeout and, for an isolated lab, its private schema.
///
/// The schema is not sent as a startup option (`options=-c search_path=...`):
/// PgBouncer refuses that parameter ("unsupported startup parameter:
/// options"), or, told to ignore it, drops it without a word, and every
/// check would then read the shared `public.users`. A `SET` once per new
/// connection works through any session pool, costs one round trip per
/// connection (none per statement), and is checked where it is made.
pub(crate) fn pg_config(
    service: Service,
    url: &str,
    schema: Option<&str>,
) -> Result<PgTarget, Error> {
    let invalid = |why: String| {
        Error::InvalidInput(format!(
            "{} {} is not a Postgres URL ({why}); expected e.g. {DEFAULT_DATABASE_URL}",
            service.env_var(),
            mask_password(url)
        ))
    };
    // tokio-postgres knows neither verify-ca, verify-full nor sslrootcert:
    // labkit takes them out and does that part itself.
    let (rest, sslmode, sslrootcert) = tls::split_pg_url(url);
    // libpq's fallbacks for an option the URL does not give; an error then
    // names the variable too, not only the URL.
    let mut from_env = Vec::new();
    let mut or_env = |given: Option<String>, var: &str| {
        given.or_else(|| {
            let value = pg_env(var)?;
            from_env.push(format!("{var}={value}"));
            Some(value)
        })
    };
    let (sslmode, sslrootcert) = (
        or_env(sslmode, "PGSSLMODE"),
        or_env(sslrootcert, "PGSSLROOTCERT"),
    );
    let (tls, connector) = tls::PgTls::resolve(sslmode.as_deref(), sslrootcert.as_deref())
        .and_then(|tls| {
            let connector = tls.connector()?;
            Ok((tls, connector))
        })
        .map_err(|why| {
            if from_env.is_empty() {
                why
            } else {
                format!("{why}; from the environment: {}", from_env.join(" "))
            }
        })
        .map_err(invalid)?;
    // The whole chain: the top alone says only "invalid connection string",
    // its source which option and why.
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e: postgres::Error| invalid(Cause::new(e).to_string()))?;
    config.ssl_mode(tls.client_mode());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("cache-aside-lab");
    Ok(PgTarget {
        config,
        tls: connector,
        allow: tls.mode == tls::SslMode::Allow,
        schema: schema.map(str::to_string),
    })
}

/// A libpq environment variable, if set and not empty.
fn pg_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|value| !value.is_empty())
}

impl PgTarget {
    /// Connects with the URL's TLS settings. `sslmode=allow`, as libpq:
    /// without TLS first and, if the server refuses that connection (a
    /// `hostssl`-only pg_hba.conf), once more with TLS.
    pub(crate) fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match self.config.connect(self.tls.clone()) {
            Err(e) if self.allow && e.as_db_error().is_some() => {
                let mut config = self.config.clone();
                config.ssl_mode(postgres::config::SslMode::Require);
                config.connect(self.tls.clone())
            }
            other => other,
        }
    }
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::{DEFAULT_DATABASE_URL, Error, Service, Urls, from_pair_file, pg_config};

    const PAIR: &str = "\
# written by scripts/services up --replica (values are trimmed)
DATABASE_URL=postgres://postgres:secret@127.0.0.1:25433/postgres
DATABASE_REPLICA_URL=postgres://postgres:secret@127.0.0.1:25434/postgres\x20\t
";
    const PRIMARY: &str = "postgres://postgres:secret@127.0.0.1:25433/postgres";
    const REPLICA: &str = "postgres://postgres:secret@127.0.0.1:25434/postgres";

    fn urls(text: &str, database: Option<&str>) -> (String, Result<String, String>) {
        let Urls { database, replica } = from_pair_file(text, database.map(str::to_string));
        (database, replica)
    }

    #[test]
    fn the_pair_is_used_when_database_url_is_unset_or_names_its_primary() {
        let both = (PRIMARY.to_string(), Ok(REPLICA.to_string()));
        assert_eq!(urls(PAIR, None), both);
        assert_eq!(urls(PAIR, Some(PRIMARY)), both);
    }

    #[test]
    fn another_primary_keeps_database_url_and_says_why_there_is_no_replica() {
        let other = "postgres://postgres:other@127.0.0.1:5432/postgres";
        let (database, replica) = urls(PAIR, Some(other));
        assert_eq!(database, other);
        let why = replica.unwrap_err();
        assert!(why.contains("DATABASE_URL names another server"), "{why}");
        assert!(why.contains("127.0.0.1:25433"), "{why}");
        assert!(!why.contains("secret"), "the password is masked: {why}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_blamed_on_its_own_variable() {
        let url = "postgres://u:secret@h/db?sslmode=sometimes";
        for (service, var) in [
            (Service::Postgres, "DATABASE_URL postgres://u:***@h/db"),
            (
                Service::Replica,
                "DATABASE_REPLICA_URL postgres://u:***@h/db",
            ),
        ] {
            match pg_config(service, url, None) {
                Err(Error::InvalidInput(why)) => {
                    assert!(why.starts_with(var) && why.contains("`sslmode`"), "{why}")
                }
                Err(e) => panic!("{service}: {e}"),
                Ok(_) => panic!("{service}: {url} parsed"),
            }
        }
        assert!(pg_config(Service::Replica, "postgres://u@h:5434/db", Some("s")).is_ok());
    }

    #[test]
    fn without_a_pair_the_default_or_database_url_and_no_replica() {
        let half = "DATABASE_URL=postgres://x@127.0.0.1:1/x\n";
        for text in ["", "# nothing\n", half, "DATABASE_REPLICA_URL_X=y\n"] {
            let (database, replica) = urls(text, None);
            assert_eq!(database, DEFAULT_DATABASE_URL, "{text:?}");
            assert!(replica.unwrap_err().contains("no replica was started"));
            let (database, _) = urls(text, Some("postgres://me@db/x"));
            assert_eq!(database, "postgres://me@db/x", "{text:?}");
        }
    }
}

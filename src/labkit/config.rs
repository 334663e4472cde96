//! Where the services are: `DATABASE_URL` and `REDIS_URL`, with defaults
//! that work unchanged against the compose services and a stock local
//! install (trust or password auth for user `postgres`).

use super::connect::CONNECT_TIMEOUT;
use super::error::{Error, mask_password};

pub(crate) const DEFAULT_DATABASE_URL: &str =
    "postgres://postgres:postgres@127.0.0.1:5432/postgres";
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `DATABASE_URL`, or the default.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

/// `REDIS_URL`, or the default.
pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// Parses a Postgres URL, with labkit's connect timeout and, for an isolated
/// lab, the private schema as the connection's `search_path` (a connection
/// option: it costs no round trip).
pub(crate) fn pg_config(url: &str, schema: Option<&str>) -> Result<postgres::Config, Error> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        Error::InvalidInput(format!(
            "DATABASE_URL {} is not a Postgres URL ({e}); expected e.g. {DEFAULT_DATABASE_URL}",
            mask_password(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("cache-aside-lab");
    if let Some(schema) = schema {
        config.options(&format!("-c search_path={schema}"));
    }
    Ok(config)
}

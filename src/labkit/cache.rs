//! `Cache`: pooled Redis holding JSON values under the learner's keys.
//!
//! Keys are prefixed with the lab's private key space (empty for
//! `Lab::connect`), so a learner writes `user:1` and sees `user:1`, while
//! parallel tests never share an entry. The Part 3 lease commands live in
//! `lease.rs`.

use std::sync::Arc;
use std::time::Duration;

use redis::ConnectionLike;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;
use super::connect::{CONNECT_TIMEOUT, bounded};
use super::error::{Error, Service};
use super::pool::{Attempt, Connector, Pool};
use super::testkit::hooks::Hooks;

/// Any single Redis command that takes longer than this fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens Redis connections, each bounded as a whole, with I/O timeouts.
pub(crate) struct RedisConnector {
    client: redis::Client,
    pub(crate) url: String,
}

impl RedisConnector {
    pub(crate) fn new(url: &str) -> Result<RedisConnector> {
        let client = redis::Client::open(url).map_err(|e| Error::redis(url, e))?;
        Ok(RedisConnector {
            client,
            url: url.to_string(),
        })
    }

    /// One connection outside any pool (labkit's own housekeeping).
    pub(crate) fn open(&self) -> Result<redis::Connection> {
        let client = self.client.clone();
        let url = self.url.clone();
        bounded(
            Service::Redis,
            &self.url,
            move || {
                let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(conn)
            },
            move |e| Error::redis(&url, e),
        )
    }
}

impl Connector for RedisConnector {
    type Conn = redis::Connection;

    fn connect(&self) -> Result<redis::Connection> {
        self.open()
    }

    fn check(&self, conn: &mut redis::Connection) -> bool {
        redis::cmd("PING").query::<String>(conn).is_ok()
    }

    fn is_closed(&self, conn: &redis::Connection) -> bool {
        !conn.is_open()
    }
}

/// Pooled access to Redis, in this lab's key space.
pub struct Cache {
    pool: Pool<RedisConnector>,
    prefix: String,
    url: String,
    hooks: Arc<Hooks>,
}

impl Cache {
    pub(crate) fn new(
        connector: RedisConnector,
        prefix: String,
        max_size: u32,
        hooks: Arc<Hooks>,
    ) -> Cache {
        let url = connector.url.clone();
        Cache {
            pool: Pool::new(connector, max_size, Service::Redis, &url),
            prefix,
            url,
            hooks,
        }
    }

    /// The value at `key`, decoded from JSON. Anything that does not decode
    /// as `T` (not JSON, or JSON of another shape, such as an older `User`) is
    /// a miss: it is logged once, removed, and `Ok(None)` is returned, so a
    /// corrupt entry costs one refill instead of failing every read.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let full = self.key(key)?;
        let bytes: Option<Vec<u8>> = self.command(|c| redis::cmd("GET").arg(&full).query(c))?;
        let Some(bytes) = bytes else { return Ok(None) };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                eprintln!(
                    "labkit: cache entry {key:?} does not decode as {} ({err}); treating it as a miss",
                    std::any::type_name::<T>()
                );
                // Remove it only if it is still the same bytes, so a fresh
                // value written meanwhile survives.
                let _: i64 =
                    self.command(|c| DELETE_IF_EQUAL.key(&full).arg(&bytes[..]).invoke(c))?;
                Ok(None)
            }
        }
    }

    /// Stores `value` as JSON at `key`, expiring after `ttl` (at least 1 ms).
    pub fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let full = self.key(key)?;
        let ms = ttl_millis(ttl)?;
        let json = to_json(value)?;
        self.command(|c| {
            redis::cmd("SET")
                .arg(&full)
                .arg(&json)
                .arg("PX")
                .arg(ms)
                .query(c)
        })
    }

    /// Deletes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        let n: i64 = self.command(|c| redis::cmd("DEL").arg(&full).query(c))?;
        self.hooks.after_delete(key);
        Ok(n > 0)
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        let n: i64 = self.command(|c| redis::cmd("EXISTS").arg(&full).query(c))?;
        Ok(n > 0)
    }

    /// Time left before `key` expires; `None` if it is missing or never expires.
    pub fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let full = self.key(key)?;
        let ms: i64 = self.command(|c| redis::cmd("PTTL").arg(&full).query(c))?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// The pool, for the grader's and the benchmark's raw access.
    pub(crate) fn pool(&self) -> &Pool<RedisConnector> {
        &self.pool
    }

    /// The name `key` really has in Redis, with this lab's private prefix.
    pub(crate) fn storage_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn key(&self, key: &str) -> Result<String> {
        if key.is_empty() {
            return Err(Error::InvalidInput("empty cache key".into()));
        }
        Ok(self.storage_key(key))
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Runs one command on a pooled connection. Every command labkit sends is
    /// idempotent, so one that failed on a dead connection is always retried.
    pub(crate) fn command<T>(
        &self,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.hooks.check_cache()?;
        self.pool.run(|conn| match op(conn) {
            Ok(value) => Attempt::Done(value),
            Err(err) => Attempt::Failed {
                lost: err.is_io_error() || err.is_connection_dropped() || !conn.is_open(),
                retry_safe: true,
                error: Error::redis(&self.url, err),
            },
        })
    }
}

pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 || ms > i64::MAX as u128 {
        return Err(Error::InvalidInput(format!(
            "TTL {ttl:?} must be at least 1 ms"
        )));
    }
    Ok(ms as u64)
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::InvalidInput(format!("value does not serialize to JSON: {e}")))
}

static DELETE_IF_EQUAL: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

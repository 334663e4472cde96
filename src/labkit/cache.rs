//! `Cache`: pooled Redis holding JSON values under the learner's keys.
//!
//! Keys are prefixed with the lab's private key space (empty for
//! `Lab::connect`), so a learner writes `user:1` and sees `user:1`, while
//! parallel tests never share an entry. The Part 3 lease commands live in
//! `lease.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use r2d2::ManageConnection;
use redis::ConnectionLike;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connect::{ConnectError, bounded, pool_cause};
use super::db::IDLE_CHECK;
use super::hooks::Hooks;
use super::{Error, Service};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Any single Redis command that takes longer than this fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct RedisConn {
    pub(crate) conn: redis::Connection,
    last_used: Instant,
    broken: bool,
}

pub(crate) struct RedisManager {
    client: redis::Client,
    connect_timeout: Duration,
}

impl ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<RedisConn, ConnectError> {
        let conn = open(&self.client, self.connect_timeout)?;
        Ok(RedisConn {
            conn,
            last_used: Instant::now(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut RedisConn) -> Result<(), ConnectError> {
        redis::cmd("PING")
            .query(&mut conn.conn)
            .map_err(|e| ConnectError(e.to_string()))
    }

    fn has_broken(&self, conn: &mut RedisConn) -> bool {
        conn.broken || !conn.conn.is_open()
    }
}

/// Opens one connection, bounded as a whole, with labkit's I/O timeouts.
pub(crate) fn open(
    client: &redis::Client,
    timeout: Duration,
) -> Result<redis::Connection, ConnectError> {
    let client = client.clone();
    bounded(timeout, move || {
        let conn = client.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok::<_, redis::RedisError>(conn)
    })
}

/// Pooled access to Redis, in this lab's key space.
pub struct Cache {
    pool: r2d2::Pool<RedisManager>,
    prefix: String,
    url: String,
    pub(crate) hooks: Arc<Hooks>,
}

impl Cache {
    pub(crate) fn new(
        url: &str,
        client: redis::Client,
        prefix: String,
        pool: r2d2::Builder<RedisManager>,
        connect_timeout: Duration,
        hooks: Arc<Hooks>,
    ) -> Cache {
        let manager = RedisManager {
            client,
            connect_timeout,
        };
        Cache {
            pool: pool.build_unchecked(manager),
            prefix,
            url: url.to_string(),
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
        Ok(n > 0)
    }

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

    /// Grader and benchmark only: runs `f` on the raw connection of a pooled
    /// Redis connection, bypassing labkit (and its key prefix).
    pub fn with_raw_connection<T>(&self, f: impl FnOnce(&mut redis::Connection) -> T) -> Result<T> {
        let mut conn = self.checkout(false)?;
        let value = f(&mut conn.conn);
        conn.last_used = Instant::now();
        Ok(value)
    }

    /// Connections this pool has open right now (idle and in use).
    pub fn open_connections(&self) -> u32 {
        self.pool.state().connections
    }

    /// Grader and benchmark only: the name `key` really has in Redis (with
    /// this lab's private prefix), for tools that talk to Redis directly.
    pub fn storage_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) fn key(&self, key: &str) -> Result<String> {
        if key.is_empty() {
            return Err(Error::InvalidInput("empty cache key".into()));
        }
        Ok(self.storage_key(key))
    }

    /// Runs one command on a pooled connection. A connection that idled long
    /// enough to have been dropped by a restart is checked first, and a
    /// command that fails because the connection died is retried once on a
    /// fresh one: every command labkit sends is idempotent.
    pub(crate) fn command<T>(
        &self,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.hooks.check_cache()?;
        let mut retried = false;
        loop {
            let mut conn = self.checkout(retried)?;
            match op(&mut conn.conn) {
                Ok(value) => {
                    conn.last_used = Instant::now();
                    return Ok(value);
                }
                Err(err) => {
                    let dead =
                        err.is_io_error() || err.is_connection_dropped() || !conn.conn.is_open();
                    conn.broken |= dead;
                    if dead && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(Error::redis(&self.url, &err));
                }
            }
        }
    }

    /// Like `Db::checkout`: validated if idle, or on a retry.
    fn checkout(&self, validate: bool) -> Result<r2d2::PooledConnection<RedisManager>> {
        for _ in 0..=self.pool.max_size() {
            let mut conn = self
                .pool
                .get()
                .map_err(|e| Error::unreachable(Service::Redis, &self.url, pool_cause(&e)))?;
            if (!validate && conn.last_used.elapsed() < IDLE_CHECK)
                || redis::cmd("PING").query::<String>(&mut conn.conn).is_ok()
            {
                return Ok(conn);
            }
            conn.broken = true;
        }
        Err(Error::unreachable(
            Service::Redis,
            &self.url,
            "every pooled connection was broken",
        ))
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

//! `Cache`: pooled Redis holding JSON values under the learner's keys.
//!
//! Keys are prefixed with the lab's private key space (empty for
//! `Lab::connect`), so a learner writes `user:1` and sees `user:1`, while
//! parallel tests never share an entry. The Part 3 lease commands live in
//! `lease.rs`.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::ConnectionLike;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Result;
use super::error::{Error, Service};
use super::hooks::{Action, Hooks, Phase};
use super::pool::{Attempt, Pool};
use super::redis_conn::{RedisConn, RedisConnector};
use super::timeline::{self, Call, Reply};

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
    /// a miss: it is removed and `Ok(None)` is returned, so a corrupt entry
    /// costs one refill instead of failing every read. It is logged once per
    /// key and type in a process, so a writer that keeps storing the wrong
    /// shape is reported once, not on every read.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let full = self.key(key)?;
        let bytes: Result<Option<Vec<u8>>> =
            self.command(|c| redis::cmd("GET").arg(&full).query(c));
        timeline::record(self.hooks.space(), || {
            let reply = timeline::reply(&bytes, |b| match b {
                Some(b) => Reply::Hit(timeline::clip(&String::from_utf8_lossy(b))),
                None => Reply::Miss,
            });
            (Call::Get(key.to_string()), reply)
        });
        let bytes = bytes?;
        self.hooks.cache_call(Phase::After, Action::Look(key))?;
        let Some(bytes) = bytes else { return Ok(None) };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                let type_name = std::any::type_name::<T>();
                if first_report(&full, type_name) {
                    eprintln!(
                        "labkit: cache entry {key:?} does not decode as {type_name} ({err}); treating it as a miss (reported once per key and type)"
                    );
                }
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
        let sent = self
            .hooks
            .cache_call(Phase::Before, Action::Fill(key))
            .and_then(|()| {
                self.command(|c| {
                    redis::cmd("SET")
                        .arg(&full)
                        .arg(&json)
                        .arg("PX")
                        .arg(ms)
                        .query::<()>(c)
                })
            });
        timeline::record(self.hooks.space(), || {
            let call = Call::Set {
                key: key.to_string(),
                value: timeline::clip(&String::from_utf8_lossy(&json)),
                ttl_ms: ms,
            };
            (call, timeline::reply(&sent, |()| Reply::Done))
        });
        sent?;
        self.hooks.cache_call(Phase::After, Action::Fill(key))?;
        Ok(())
    }

    /// Deletes `key`; true if it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        let n: Result<i64> = self
            .hooks
            .check_removal()
            .and_then(|()| self.command(|c| redis::cmd("DEL").arg(&full).query(c)));
        timeline::record(self.hooks.space(), || {
            let reply = timeline::reply(&n, |n| Reply::Found(*n > 0));
            (Call::Del(key.to_string()), reply)
        });
        let n = n?;
        self.hooks.cache_call(Phase::After, Action::Delete(key))?;
        Ok(n > 0)
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let full = self.key(key)?;
        let n: Result<i64> = self.command(|c| redis::cmd("EXISTS").arg(&full).query(c));
        timeline::record(self.hooks.space(), || {
            let reply = timeline::reply(&n, |n| Reply::Found(*n > 0));
            (Call::Exists(key.to_string()), reply)
        });
        let n = n?;
        self.hooks.cache_call(Phase::After, Action::Look(key))?;
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
        op: impl Fn(&mut RedisConn) -> redis::RedisResult<T>,
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

/// A TTL in whole milliseconds, as Redis' `PX` takes it: at least 1, at
/// most `i64::MAX`.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(Error::InvalidInput(format!(
            "TTL {ttl:?} must be at least 1 ms"
        )));
    }
    if ms > i64::MAX as u128 {
        return Err(Error::InvalidInput(format!(
            "TTL {ttl:?} is longer than Redis can hold (at most {} ms)",
            i64::MAX
        )));
    }
    Ok(ms as u64)
}

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| Error::InvalidInput(format!("value does not serialize to JSON: {e}")))
}

/// Whether this process has not yet reported an entry at `key` (its real
/// name) that does not decode as `type_name`. The set grows by one per such
/// key and type, never per read.
fn first_report(key: &str, type_name: &'static str) -> bool {
    static REPORTED: LazyLock<Mutex<HashSet<(String, &'static str)>>> =
        LazyLock::new(Mutex::default);
    REPORTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((key.to_string(), type_name))
}

static DELETE_IF_EQUAL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_millis_wants_at_least_a_millisecond_and_what_redis_can_hold() {
        assert_eq!(ttl_millis(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(ttl_millis(Duration::from_secs(60)).unwrap(), 60_000);
        // Whole milliseconds: the rest is dropped.
        assert_eq!(ttl_millis(Duration::from_micros(2_999)).unwrap(), 2);
        let refused = [
            (Duration::ZERO, "at least 1 ms"),
            (Duration::from_micros(999), "at least 1 ms"),
            (Duration::MAX, "longer than Redis can hold"),
        ];
        for (ttl, why_not) in refused {
            match ttl_millis(ttl) {
                Err(Error::InvalidInput(why)) => assert!(why.contains(why_not), "{why}"),
                other => panic!("{ttl:?}: {other:?}"),
            }
        }
        let max = Duration::from_millis(i64::MAX as u64);
        assert_eq!(ttl_millis(max).unwrap(), i64::MAX as u64);
    }

    #[test]
    fn to_json_refuses_what_json_cannot_hold() {
        assert_eq!(to_json(&[1, 2]).unwrap(), b"[1,2]");
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert!(matches!(to_json(&map), Err(Error::InvalidInput(_))));
    }
}

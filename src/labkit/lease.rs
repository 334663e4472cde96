//! Part 3: leases, after "Scaling Memcache at Facebook" (NSDI 2013, §3.2.1).
//!
//! On a miss, one reader per key gets a lease (a token with a short TTL) and
//! only a lease holder may fill the key. Everybody else waits for the fill or
//! for the lease to expire. An invalidation deletes the value *and* the lease,
//! so a reader that read Postgres before a write can no longer fill the old
//! row afterwards: the stale-set race is closed. Each command below is one Lua
//! script or one command: atomic and a single round trip.

use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::Script;
use serde::Serialize;

use super::cache::{Cache, to_json, ttl_millis};
use super::hooks::{Action, Phase};
use super::timeline::{self, Call, Reply};
use super::{Error, Result};

/// The right to fill one key, held until it is used or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: String,
    token: String,
}

impl Lease {
    /// The key this lease may fill.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Takes the lease unless the key already holds a value (then read it
/// instead) or somebody else holds the lease (then wait for their fill).
static TRY_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
          if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
          return 0",
    )
});

/// Fills the key only while this exact lease is still current, then drops it.
static FILL_WITH_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
          redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
          redis.call('DEL', KEYS[2])
          return 1",
    )
});

/// The lease's key. It lives in the same hash slot as the value's key, so
/// that the scripts and `invalidate`, which touch both in one step, also
/// run on a Redis Cluster: if the value's key has a hash tag (`{…}`), the
/// lease key keeps it; if not, the value's key is hashed whole, and the lease
/// key makes exactly that its hash tag.
pub(crate) fn lease_key(full_key: &str) -> Result<String> {
    if hash_tag(full_key).is_some() {
        Ok(format!("{full_key}#lease"))
    } else if !full_key.contains('}') {
        Ok(format!("{{{full_key}}}#lease"))
    } else {
        Err(Error::InvalidInput(format!(
            "key {full_key:?} has a '}}' but no hash tag, so its lease could not share its hash slot on a Redis Cluster"
        )))
    }
}

/// Redis Cluster's hash tag: what lies between the first `{` and the first
/// `}` after it, if that is not empty.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

fn new_token() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let random = RandomState::new().hash_one(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{:x}-{random:016x}", std::process::id())
}

/// A lease taken, or a fill let through, for the timeline.
fn granted(yes: bool) -> Reply {
    if yes { Reply::Granted } else { Reply::Refused }
}

impl Cache {
    /// Asks for the right to fill `key`. `Some(lease)`: you are the one reader
    /// that should load it (and fill it with [`Cache::fill_with_lease`]).
    /// `None`: the key has a value now, or another reader holds the lease;
    /// read again shortly. The lease expires after `ttl`, so a holder that
    /// dies delays the others by at most that.
    pub fn try_lease(&self, key: &str, ttl: std::time::Duration) -> Result<Option<Lease>> {
        let full = self.key(key)?;
        let lease = lease_key(&full)?;
        let ms = ttl_millis(ttl)?;
        let token = new_token();
        let taken: Result<i64> = self
            .hooks()
            .cache_call(Phase::Before, Action::Lease(key))
            .and_then(|()| {
                self.command(|c| {
                    TRY_LEASE
                        .key(&full)
                        .key(&lease)
                        .arg(&token)
                        .arg(ms)
                        .invoke(c)
                })
            });
        timeline::record(self.hooks().space(), || {
            let reply = timeline::reply(&taken, |t| granted(*t == 1));
            let call = Call::Lease {
                key: key.to_string(),
                ttl_ms: ms,
            };
            (call, reply)
        });
        let taken = taken?;
        Ok((taken == 1).then(|| Lease {
            key: key.to_string(),
            token,
        }))
    }

    /// Stores `value` at `key` if `lease` is still the key's current lease.
    /// Returns false if it is not (it expired, or an invalidation revoked it
    /// because the data changed): then the value you hold may be stale, so
    /// return it to your caller but do not cache it.
    pub fn fill_with_lease<T: Serialize + ?Sized>(
        &self,
        key: &str,
        lease: &Lease,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        if lease.key != key {
            return Err(Error::InvalidInput(format!(
                "the lease was taken for {:?}, not {key:?}",
                lease.key
            )));
        }
        let full = self.key(key)?;
        let lease_name = lease_key(&full)?;
        let ms = ttl_millis(ttl)?;
        let json = to_json(value)?;
        let filled: Result<i64> = self
            .hooks()
            .cache_call(Phase::Before, Action::Fill(key))
            .and_then(|()| {
                self.command(|c| {
                    FILL_WITH_LEASE
                        .key(&full)
                        .key(&lease_name)
                        .arg(&lease.token)
                        .arg(&json[..])
                        .arg(ms)
                        .invoke(c)
                })
            });
        timeline::record(self.hooks().space(), || {
            let call = Call::Fill {
                key: key.to_string(),
                value: timeline::clip(&String::from_utf8_lossy(&json)),
                ttl_ms: ms,
            };
            (call, timeline::reply(&filled, |f| granted(*f == 1)))
        });
        let filled = filled?;
        self.hooks().cache_call(Phase::After, Action::Fill(key))?;
        Ok(filled == 1)
    }

    /// Deletes the value and any lease on `key` in one atomic step, so a fill
    /// already in flight (holding the old row) is refused.
    pub fn invalidate(&self, key: &str) -> Result<()> {
        let full = self.key(key)?;
        let lease = lease_key(&full)?;
        let done = self.hooks().check_removal().and_then(|()| {
            self.command(|c| redis::cmd("DEL").arg(&full).arg(&lease).query::<i64>(c))
        });
        timeline::record(self.hooks().space(), || {
            let reply = timeline::reply(&done, |_| Reply::Done);
            (Call::Invalidate(key.to_string()), reply)
        });
        done?;
        self.hooks().cache_call(Phase::After, Action::Delete(key))?;
        Ok(())
    }
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::{hash_tag, lease_key};
    use crate::labkit::Error;

    #[test]
    fn hash_tag_is_between_the_first_braces_if_not_empty() {
        assert_eq!(hash_tag("{user:1}:profile"), Some("user:1"));
        assert_eq!(hash_tag("lab:{user:1}"), Some("user:1"));
        // The first `{`, and the first `}` after it.
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("a{b{c}d}"), Some("b{c"));
        assert_eq!(hash_tag("a}b{c}"), Some("c"));
        // Empty, or never closed: the whole key is hashed.
        assert_eq!(hash_tag("a{}b{c}"), None);
        assert_eq!(hash_tag("user:1"), None);
        assert_eq!(hash_tag("user:{1"), None);
        assert_eq!(hash_tag(""), None);
    }

    #[test]
    fn a_lease_key_shares_its_value_keys_hash_tag() {
        // With a hash tag: kept as it is.
        let key = "lab:{user:1}";
        let lease = lease_key(key).unwrap();
        assert_eq!(lease, "lab:{user:1}#lease");
        assert_eq!(hash_tag(&lease), hash_tag(key));
        // Without: the whole key becomes the lease key's hash tag, which is
        // what Redis hashes for the value's key.
        let lease = lease_key("lab:user:1").unwrap();
        assert_eq!(lease, "{lab:user:1}#lease");
        assert_eq!(hash_tag(&lease), Some("lab:user:1"));
    }

    #[test]
    fn a_key_with_a_closing_brace_but_no_hash_tag_is_refused() {
        // Wrapping it would not give its slot: `{user}1}` hashes `user`.
        for key in ["user}1", "a{}b", "}{"] {
            match lease_key(key) {
                Err(Error::InvalidInput(why)) => {
                    assert!(why.contains("hash slot"), "{key}: {why}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}

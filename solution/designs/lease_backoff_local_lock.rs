//! Leases with a local lock in front and exponential back-off: in each
//! process only one thread per key talks to Redis about the lease (the
//! others wait on `key_lock`, then find the fill), and a reader waiting for
//! somebody else's lease backs off from 1 ms to 32 ms, with jitter, instead
//! of polling at a fixed rate.

use std::hash::{BuildHasher, RandomState};
use std::sync::PoisonError;
use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, key_lock, user_key};

fn load(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    Ok(lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?
        .map(|row| User::from_row(&row)))
}

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let lock = key_lock(&key);
    let _local = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let mut pause = Duration::from_millis(1);
    loop {
        let Ok(cached) = lab.cache.get_json::<Option<User>>(&key) else {
            return load(lab, user_id); // Redis is failing: Postgres answers
        };
        if let Some(answer) = cached {
            return Ok(answer);
        }
        match lab.cache.try_lease(&key, LEASE_TTL) {
            Ok(Some(lease)) => {
                let user = load(lab, user_id)?;
                let ttl = if user.is_some() {
                    CACHE_TTL
                } else {
                    ABSENT_TTL
                };
                // Refused if an update revoked the lease: return, don't cache.
                let _ = lab.cache.fill_with_lease(&key, &lease, &user, ttl);
                return Ok(user);
            }
            Ok(None) => {
                let jitter = RandomState::new().hash_one(user_id) % 1000;
                std::thread::sleep(pause + pause * jitter as u32 / 1000);
                pause = (pause * 2).min(Duration::from_millis(32));
            }
            Err(_) => return load(lab, user_id),
        }
    }
}

//! A second correct answer, written from the learner-facing API alone (the
//! README's table and the docs, not `reference.rs`), in a different style:
//! `SELECT *` through `query`, a single-flight that takes the lock before
//! even looking at the cache, a lease loop with backoff, and a marker read
//! back as a string (under a lease, as Part 4's fills need). CI grades it
//! with `scripts/grade-answers`, as if a learner had typed it into
//! `src/lib.rs`: the grader must accept any correct answer, not just the
//! reference's shape.

use std::time::{Duration, Instant};

use crate::labkit::{Lab, Result};
use crate::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, key_lock, marker_key, user_key};

fn fetch(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let rows = lab.db.query("SELECT * FROM users WHERE id = $1 LIMIT 1", &[&user_id])?;
    Ok(rows.first().map(User::from_row))
}

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    match lab.cache.get_json::<User>(&key)? {
        Some(hit) => Ok(Some(hit)),
        None => {
            let found = fetch(lab, user_id)?;
            if let Some(user) = &found {
                lab.cache.set_json(&key, user, CACHE_TTL)?;
            }
            Ok(found)
        }
    }
}

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let _changed: u64 = lab.db.execute("UPDATE users SET plan = $2 WHERE id = $1", &[&user_id, &plan])?;
    lab.cache.delete(&user_key(user_id)).map(|_| ())
}

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let lock = key_lock(&key);
    let guard = match lock.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let result = get_user_profile(lab, user_id);
    drop(guard);
    result
}

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let mut pause = Duration::from_millis(1);
    let started = Instant::now();
    while started.elapsed() < 3 * LEASE_TTL {
        let Ok(cached) = lab.cache.get_json::<Option<User>>(&key) else { break };
        if let Some(answer) = cached {
            return Ok(answer);
        }
        let Ok(lease) = lab.cache.try_lease(&key, LEASE_TTL) else { break };
        if let Some(lease) = lease {
            let found = fetch(lab, user_id)?;
            let ttl = if found.is_none() { ABSENT_TTL } else { CACHE_TTL };
            lab.cache.fill_with_lease(&key, &lease, &found, ttl).ok();
            return Ok(found);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
    fetch(lab, user_id)
}

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute("UPDATE users SET plan = $2 WHERE id = $1", &[&user_id, &plan])?;
    lab.cache.invalidate(&user_key(user_id))
}

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let mut pause = Duration::from_millis(1);
    let started = Instant::now();
    while started.elapsed() < 3 * LEASE_TTL {
        if let Some(answer) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(answer);
        }
        if let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? {
            // The marker is read under the lease: a write after this point
            // revokes the lease, so a stale replica row is never filled.
            let found = read_trusted(lab, user_id)?;
            let ttl = if found.is_none() { ABSENT_TTL } else { CACHE_TTL };
            lab.cache.fill_with_lease(&key, &lease, &found, ttl)?;
            return Ok(found);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
    read_trusted(lab, user_id)
}

/// The primary while a marker says the user was just written, the replica
/// otherwise.
fn read_trusted(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let recently_written = lab.cache.get_json::<String>(&marker_key(user_id))?.is_some();
    let source = if recently_written { &lab.db } else { &lab.replica };
    let rows = source.query("SELECT * FROM users WHERE id = $1 LIMIT 1", &[&user_id])?;
    Ok(rows.first().map(User::from_row))
}

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache.set_json(&marker_key(user_id), "recently written", MARKER_TTL)?;
    lab.db.execute("UPDATE users SET plan = $2 WHERE id = $1", &[&user_id, &plan])?;
    lab.cache.invalidate(&user_key(user_id))
}

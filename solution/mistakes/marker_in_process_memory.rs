//! Keeps the sign of a recent write in the process's own memory (a map of
//! user ids to when they were written) instead of Redis: every read in the
//! writer's process goes to the primary, but another instance of the
//! application never hears of the write, reads the lagging replica and
//! caches the old row.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, user_key};

/// When each user was last written, by this process.
static WRITTEN: LazyLock<Mutex<HashMap<i32, Instant>>> = LazyLock::new(Default::default);

fn written_recently(user_id: i32) -> bool {
    let written = WRITTEN.lock().unwrap_or_else(PoisonError::into_inner);
    written
        .get(&user_id)
        .is_some_and(|at| at.elapsed() < MARKER_TTL)
}

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? else {
            sleep(Duration::from_millis(5));
            continue;
        };
        let db = if written_recently(user_id) {
            &lab.db
        } else {
            &lab.replica
        };
        let user = db
            .query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?
            .map(|row| User::from_row(&row));
        let ttl = if user.is_some() {
            CACHE_TTL
        } else {
            ABSENT_TTL
        };
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
        return Ok(user);
    }
}

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    WRITTEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(user_id, Instant::now());
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

//! One marker for every user ("something was written recently"): never
//! stale, but a write to any user sends every user's misses to the primary
//! for MARKER_TTL; with writes spread over many users, the replica serves
//! almost nothing and the primary takes the whole load.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, user_key};

/// Set by every update, whichever user it writes.
const RECENT_WRITE: &str = "marker:recent-write";

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let db = if lab.cache.exists(RECENT_WRITE)? {
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
    lab.cache.set_json(RECENT_WRITE, &true, MARKER_TTL)?;
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

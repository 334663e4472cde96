//! Treats a failed read as "not found": the replica is best effort, so an
//! error from it (or from the primary) reads as `Ok(None)`. The caller is
//! told that the user does not exist while the database merely failed, and
//! may act on it (sign the user up again, say).

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

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
        let db = if lab.cache.exists(&marker_key(user_id))? {
            &lab.db
        } else {
            &lab.replica
        };
        let row = match db.query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        ) {
            Ok(row) => row,
            // The replica hiccuped: nothing to show.
            Err(_) => return Ok(None),
        };
        let user = row.map(|r| User::from_row(&r));
        let ttl = if user.is_some() {
            CACHE_TTL
        } else {
            ABSENT_TTL
        };
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
        return Ok(user);
    }
}

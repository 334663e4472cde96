//! Caches a row read from the primary (the user was just written) for
//! MARKER_TTL only, "until the replica has caught up": the row was as fresh
//! as any, and the next update removes it anyway; a user just written, so
//! likely read again, keeps missing and going back to the database.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, marker_key, user_key};

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
        let recent = lab.cache.exists(&marker_key(user_id))?;
        let db = if recent { &lab.db } else { &lab.replica };
        let user = db
            .query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?
            .map(|row| User::from_row(&row));
        let ttl = match (&user, recent) {
            (None, _) => ABSENT_TTL,
            // Just written: keep it only until the replica has caught up.
            (Some(_), true) => MARKER_TTL,
            (Some(_), false) => CACHE_TTL,
        };
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
        return Ok(user);
    }
}

//! Caches "no such user" for CACHE_TTL in the replicated read: a user who
//! signs up right after somebody looked them up stays missing for a minute.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

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
        let user = db
            .query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?
            .map(|row| User::from_row(&row));
        lab.cache.fill_with_lease(&key, &lease, &user, CACHE_TTL)?;
        return Ok(user);
    }
}

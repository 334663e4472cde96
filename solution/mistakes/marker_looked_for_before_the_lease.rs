//! Looks for the marker first and takes the lease afterwards. An update
//! that sets its marker, writes and invalidates in between finds no lease
//! to revoke; the reader then takes a fresh one, reads the replica (still
//! on the old row) and fills it for CACHE_TTL.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        let db = if lab.cache.exists(&marker_key(user_id))? {
            &lab.db
        } else {
            &lab.replica
        };
        let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
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

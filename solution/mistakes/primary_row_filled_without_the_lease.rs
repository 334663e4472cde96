//! After a write (marker present) reads the primary and fills with a plain
//! `set_json`, "the primary is never stale", keeping the lease for the
//! replica's rows: but the primary's row goes stale as soon as the next
//! update lands, and a fill held up until after that update writes it back
//! for CACHE_TTL. Only the lease refuses a late fill, whichever database
//! was read.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

const SELECT: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";

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
        let ttl = |user: &Option<User>| {
            if user.is_some() {
                CACHE_TTL
            } else {
                ABSENT_TTL
            }
        };
        if lab.cache.exists(&marker_key(user_id))? {
            // Straight from the primary: fresh, so no need for the lease.
            let user = lab
                .db
                .query_opt(SELECT, &[&user_id])?
                .map(|row| User::from_row(&row));
            lab.cache.set_json(&key, &user, ttl(&user))?;
            return Ok(user);
        }
        let user = lab
            .replica
            .query_opt(SELECT, &[&user_id])?
            .map(|row| User::from_row(&row));
        lab.cache.fill_with_lease(&key, &lease, &user, ttl(&user))?;
        return Ok(user);
    }
}

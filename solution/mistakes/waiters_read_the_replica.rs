//! A reader that does not get the lease reads the replica instead of
//! waiting ("that is what the replica is for"): right after a write, while
//! the lease holder reads the primary, the readers that missed with it get
//! the lagging replica's old row.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

const SELECT: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(cached);
    }
    let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? else {
        // Somebody else is filling: no need to wait for them.
        return Ok(lab
            .replica
            .query_opt(SELECT, &[&user_id])?
            .map(|row| User::from_row(&row)));
    };
    let db = if lab.cache.exists(&marker_key(user_id))? {
        &lab.db
    } else {
        &lab.replica
    };
    let user = db
        .query_opt(SELECT, &[&user_id])?
        .map(|row| User::from_row(&row));
    let ttl = if user.is_some() {
        CACHE_TTL
    } else {
        ABSENT_TTL
    };
    lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
    Ok(user)
}

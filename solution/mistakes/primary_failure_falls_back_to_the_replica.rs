//! "Degrade gracefully": when the primary fails a read, ask the replica
//! instead. Right after a write the replica still has the old row, so the
//! reader returns (and caches) the plan the update has just replaced.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, marker_key, user_key};

const SELECT_USER: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";

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
        let row = if lab.cache.exists(&marker_key(user_id))? {
            match lab.db.query_opt(SELECT_USER, &[&user_id]) {
                Ok(row) => row,
                Err(_) => lab.replica.query_opt(SELECT_USER, &[&user_id])?,
            }
        } else {
            lab.replica.query_opt(SELECT_USER, &[&user_id])?
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

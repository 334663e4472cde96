//! Waits for the lease holder's value forever: if the holder crashed, its
//! lease expires but nobody takes it again, so every reader hangs.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(cached);
    }
    if let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? {
        let row = lab.db.query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?;
        let user = row.map(|r| User::from_row(&r));
        let ttl = if user.is_some() {
            CACHE_TTL
        } else {
            ABSENT_TTL
        };
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
        return Ok(user);
    }
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
    }
}

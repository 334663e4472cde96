//! Never caches absence: a missing user is never filled, so every reader of
//! an id that does not exist (a scraper, a deleted account) reaches
//! Postgres, and each one holds up the next for a whole lease.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, LEASE_TTL, User, user_key};

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(user) = lab.cache.get_json::<User>(&key)? {
            return Ok(Some(user));
        }
        if let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? {
            let row = lab.db.query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?;
            let user = row.map(|r| User::from_row(&r));
            if let Some(user) = &user {
                lab.cache.fill_with_lease(&key, &lease, user, CACHE_TTL)?;
            }
            return Ok(user);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

//! Waiters back off without a cap: 5 ms, 10 ms, 20 ms … doubling each time.
//! Polite to Redis at first, but after a second of waiting the next look is
//! over a second away: a herd behind a slow holder gets its value long after
//! the fill.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

fn load(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    Ok(lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?
        .map(|row| User::from_row(&row)))
}

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let mut pause = Duration::from_millis(5);
    loop {
        match lab.cache.get_json::<Option<User>>(&key) {
            Ok(Some(cached)) => return Ok(cached),
            Ok(None) => {}
            Err(_) => return load(lab, user_id),
        }
        match lab.cache.try_lease(&key, LEASE_TTL) {
            Ok(Some(lease)) => {
                let user = load(lab, user_id)?;
                let ttl = if user.is_some() {
                    CACHE_TTL
                } else {
                    ABSENT_TTL
                };
                let _ = lab.cache.fill_with_lease(&key, &lease, &user, ttl);
                return Ok(user);
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(_) => return load(lab, user_id),
        }
    }
}

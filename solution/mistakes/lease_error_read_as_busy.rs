//! Treats a failing lease request as "somebody else holds the lease": the
//! reader waits for a fill that nobody can make, and only gives up after a
//! long while. A Redis that refuses the lease script stalls every read.

use std::time::{Duration, Instant};

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
    let started = Instant::now();
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
            // No lease, for whatever reason: wait for its holder, and give
            // up after three lease lifetimes.
            Ok(None) | Err(_) => {
                if started.elapsed() > LEASE_TTL * 3 {
                    return load(lab, user_id);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

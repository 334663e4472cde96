//! Falls back to Postgres only when the first cache read fails, and passes
//! the errors of `try_lease` and `fill_with_lease` on with `?`: a Redis
//! failure that starts half-way through a read (a failover, a timeout on
//! the lease script) still fails the read, although Postgres could answer.

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
    loop {
        match lab.cache.get_json::<Option<User>>(&key) {
            Ok(Some(cached)) => return Ok(cached),
            Ok(None) => {}
            Err(_) => return load(lab, user_id),
        }
        match lab.cache.try_lease(&key, LEASE_TTL)? {
            Some(lease) => {
                let user = load(lab, user_id)?;
                let ttl = if user.is_some() {
                    CACHE_TTL
                } else {
                    ABSENT_TTL
                };
                lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
                return Ok(user);
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

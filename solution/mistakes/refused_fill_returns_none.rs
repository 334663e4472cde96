//! A reader whose fill is refused (an update revoked its lease) returns
//! None: the user it read exists, but the caller is told there is no such
//! user, just because a write happened at the same moment.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

fn load(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    Ok(row.map(|r| User::from_row(&r)))
}

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
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
                return match lab.cache.fill_with_lease(&key, &lease, &user, ttl) {
                    Ok(true) | Err(_) => Ok(user),
                    // Refused: what we read is not to be trusted.
                    Ok(false) => Ok(None),
                };
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return load(lab, user_id),
        }
    }
}

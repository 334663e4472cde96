//! Waiters sleep a whole LEASE_TTL between looks: nothing is lost and the
//! herd still costs one statement, but every reader that missed waits up to
//! two seconds for a value that was cached a few milliseconds later.

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
                let _ = lab.cache.fill_with_lease(&key, &lease, &user, ttl);
                return Ok(user);
            }
            // The holder has LEASE_TTL to fill it: look again then.
            Ok(None) => std::thread::sleep(LEASE_TTL),
            Err(_) => return load(lab, user_id),
        }
    }
}

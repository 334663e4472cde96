//! Always reads the replica: right after an update, a reader that misses
//! reads the lagging replica, gets the old row and caches it, although the
//! writer did everything right (write, then invalidate). Stale for a whole
//! CACHE_TTL.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let row = lab.replica.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

//! Always reads the primary: never stale, but the replica serves nothing,
//! so the primary still takes every miss; the replica was bought for
//! nothing.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

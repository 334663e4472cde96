//! The double-check asks twice: `exists`, then `get_json` of what it said
//! was there. An entry evicted (or expired, or invalidated) between the two
//! calls turns a waiter's answer into `Ok(None)`.

use std::sync::PoisonError;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, key_lock, user_key};

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let lock = key_lock(&key);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if lab.cache.exists(&key)? {
        return lab.cache.get_json::<User>(&key);
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    let _ = lab.cache.set_json(&key, &user, CACHE_TTL);
    Ok(Some(user))
}

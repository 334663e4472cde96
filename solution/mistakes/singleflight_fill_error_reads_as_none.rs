//! The single-flight leader ties its answer to its fill: when Redis
//! refuses the SET, the reader that has just read the user from Postgres
//! reports it as missing.

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
    Ok(lab
        .cache
        .set_json(&key, &user, CACHE_TTL)
        .ok()
        .map(|()| user))
}

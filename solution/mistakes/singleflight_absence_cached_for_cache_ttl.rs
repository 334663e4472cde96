//! Single-flight that also caches "no such user", for CACHE_TTL: a herd on a
//! missing id costs one statement, but a user who signs up right after
//! somebody looked them up does not exist for a minute.

use std::sync::PoisonError;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, key_lock, user_key};

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(answer) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(answer);
    }
    let lock = key_lock(&key);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(answer) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(answer);
    }
    let user = lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?
        .map(|row| User::from_row(&row));
    let _ = lab.cache.set_json(&key, &user, CACHE_TTL);
    Ok(user)
}

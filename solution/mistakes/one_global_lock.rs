//! One global lock for every key: a slow load of one user stalls the cache
//! misses of all other users behind it.

use std::sync::{Mutex, PoisonError};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

static EVERYTHING: Mutex<()> = Mutex::new(());

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let _guard = EVERYTHING.lock().unwrap_or_else(PoisonError::into_inner);
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

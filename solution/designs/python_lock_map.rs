//! The Python original's shape: its own map of locks behind one guard
//! mutex, one lock per key, never pruned, and the textbook double-check
//! inside the lock. Simple and correct; the map grows with every key ever
//! missed, which is fine for a lab's five users.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = LazyLock::new(Default::default);

fn lock_for(key: &str) -> Arc<Mutex<()>> {
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    locks.entry(key.to_string()).or_default().clone()
}

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let lock = lock_for(&key);
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
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

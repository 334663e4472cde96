//! Waiters sleep on a `Condvar` instead of a lock: the first reader to miss
//! marks the key as loading, loads and fills it, then wakes everybody, who
//! read the cache. A waiter that still misses (the load failed, or the user
//! does not exist) takes its own turn. The mark is a guard, so a loader that
//! fails or panics never leaves its waiters asleep.

use std::collections::HashSet;
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

/// Keys being loaded right now, and the Condvar their waiters sleep on.
static LOADING: LazyLock<(Mutex<HashSet<String>>, Condvar)> = LazyLock::new(Default::default);

/// The loading mark on one key; dropping it wakes the waiters.
struct Loading<'a>(&'a str);

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let (keys, wake) = &*LOADING;
        keys.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.0);
        wake.notify_all();
    }
}

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let (loading, wake) = &*LOADING;
    loop {
        if let Some(user) = lab.cache.get_json::<User>(&key)? {
            return Ok(Some(user));
        }
        let mut keys = loading.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.contains(&key) {
            while keys.contains(&key) {
                keys = wake.wait(keys).unwrap_or_else(PoisonError::into_inner);
            }
            continue; // the loader has filled the cache (or failed): look again
        }
        keys.insert(key.clone());
        drop(keys);
        let _mark = Loading(&key);
        return load_and_fill(lab, &key, user_id);
    }
}

fn load_and_fill(lab: &Lab, key: &str, user_id: i32) -> Result<Option<User>> {
    // Between our miss and our mark, a loader may have filled it.
    if let Some(user) = lab.cache.get_json::<User>(key)? {
        return Ok(Some(user));
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

//! Waiters poll instead of queueing: a reader that finds the key's lock
//! taken sleeps a moment and looks at the cache again, and only takes the
//! lock itself once nobody holds it. No waiter ever queues behind another
//! waiter's cache read.

use std::sync::TryLockError;
use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, key_lock, user_key};

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let lock = key_lock(&key);
    loop {
        if let Some(user) = lab.cache.get_json::<User>(&key)? {
            return Ok(Some(user));
        }
        let _guard = match lock.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
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
        return Ok(Some(user));
    }
}

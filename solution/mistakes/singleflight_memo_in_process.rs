//! Keeps each leader's result in a process-wide map for a second, so that a
//! burst of readers in this process skips Redis too. An update made by
//! another instance of the application is hidden here until the memo
//! expires.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, key_lock, user_key};

static MEMO: Mutex<Option<HashMap<i32, (Instant, User)>>> = Mutex::new(None);
const MEMO_TTL: Duration = Duration::from_secs(1);

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if let Some((at, user)) = MEMO
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&user_id).cloned())
        && at.elapsed() < MEMO_TTL
    {
        return Ok(Some(user));
    }
    let key = user_key(user_id);
    let user = match lab.cache.get_json::<User>(&key)? {
        Some(user) => user,
        None => {
            let lock = key_lock(&key);
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            match lab.cache.get_json::<User>(&key)? {
                Some(user) => user,
                None => {
                    let row = lab.db.query_opt(
                        "SELECT id, name, email, plan FROM users WHERE id = $1",
                        &[&user_id],
                    )?;
                    let Some(user) = row.map(|r| User::from_row(&r)) else {
                        return Ok(None);
                    };
                    let _ = lab.cache.set_json(&key, &user, CACHE_TTL);
                    user
                }
            }
        }
    };
    MEMO.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(user_id, (Instant::now(), user.clone()));
    Ok(Some(user))
}

//! A TTL with jitter both ways: CACHE_TTL ± 10 %, so that entries filled in
//! the same second do not all expire in the same second, whichever way the
//! jitter falls.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

fn jittered() -> Duration {
    // A permille in [-100, 100]: up to 10 % below or above CACHE_TTL.
    let permille = (RandomState::new().hash_one(std::time::Instant::now()) % 201) as i64 - 100;
    let ms = CACHE_TTL.as_millis() as i64;
    Duration::from_millis((ms + ms * permille / 1000) as u64)
}

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
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
    lab.cache.set_json(&key, &user, jittered())?;
    Ok(Some(user))
}

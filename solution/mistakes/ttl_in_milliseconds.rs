//! A unit slip: `Duration::from_millis(60)` where 60 seconds were meant.
//! Every entry dies 60 ms after it was filled, so nearly every read misses
//! and Postgres carries the whole load, while the cache looks healthy.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if let Some(user) = lab.cache.get_json::<User>(&user_key(user_id))? {
        return Ok(Some(user));
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache
        .set_json(&user_key(user_id), &user, Duration::from_millis(60))?;
    Ok(Some(user))
}

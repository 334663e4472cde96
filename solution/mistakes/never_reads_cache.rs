//! Never reads the cache: every read queries Postgres and then fills a cache
//! nobody reads. In production the database takes the full read load and the
//! cache only adds latency.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
    Ok(Some(user))
}

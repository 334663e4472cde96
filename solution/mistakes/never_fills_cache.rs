//! Never fills the cache: it reads the cache, but a miss never stores what it
//! loaded. Every read is a miss, so Postgres takes the whole load.

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
    Ok(row.map(|r| User::from_row(&r)))
}

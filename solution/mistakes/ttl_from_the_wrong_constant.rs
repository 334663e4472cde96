//! The wrong constant: LEASE_TTL (2 s) instead of CACHE_TTL. It compiles,
//! it caches, and a test that reads twice in a row passes, but in
//! production the entry is gone before the next request for that user.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{LEASE_TTL, User, user_key};

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
    lab.cache.set_json(&user_key(user_id), &user, LEASE_TTL)?;
    Ok(Some(user))
}

//! Ties the answer to the fill (`set_json(…).ok().map(|_| user)`): when
//! Redis refuses the SET, a user that exists, and was just read from
//! Postgres, is reported as missing.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

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
    Ok(lab
        .cache
        .set_json(&key, &user, CACHE_TTL)
        .ok()
        .map(|()| user))
}

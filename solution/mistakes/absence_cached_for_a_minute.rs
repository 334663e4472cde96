//! Negative caching with the wrong TTL: "no such user" is cached for
//! CACHE_TTL, so a user who signs up right after somebody looked them up
//! does not exist for a minute.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(answer) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(answer);
    }
    let user = lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?
        .map(|row| User::from_row(&row));
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(user)
}

//! Turns a failed query into "no such user" (`.ok().flatten()`): during a
//! Postgres outage every user "does not exist", and a caller that acts on
//! that (a sign-up form, a permission check) does the wrong thing.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if let Some(user) = lab.cache.get_json::<User>(&user_key(user_id))? {
        return Ok(Some(user));
    }
    let row = lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )
        .ok()
        .flatten();
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
    Ok(Some(user))
}

//! A missing user comes back as a placeholder user instead of `None`:
//! callers cannot tell "no such user" from a real one, and act on a ghost.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if let Some(user) = lab.cache.get_json::<User>(&user_key(user_id))? {
        return Ok(Some(user));
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let user = match row {
        Some(row) => User::from_row(&row),
        None => User {
            id: user_id,
            name: String::new(),
            email: String::new(),
            plan: "free".into(),
        },
    };
    lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
    Ok(Some(user))
}

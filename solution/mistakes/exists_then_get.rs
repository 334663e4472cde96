//! Asks the cache twice: `exists`, then `get_json` of what it said was
//! there. An entry that expires, is evicted or is invalidated between the
//! two calls turns an existing user into `Ok(None)`.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if lab.cache.exists(&key)? {
        return lab.cache.get_json::<User>(&key);
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

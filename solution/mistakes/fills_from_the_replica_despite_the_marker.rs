//! Honours the marker for its answer but fills the cache from the replica:
//! the reader returns the primary's fresh row, and caches the replica's
//! stale one for everybody after it.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, marker_key, user_key};

const SELECT: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let from_replica = lab
        .replica
        .query_opt(SELECT, &[&user_id])?
        .map(|r| User::from_row(&r));
    let answer = if lab.cache.exists(&marker_key(user_id))? {
        lab.db
            .query_opt(SELECT, &[&user_id])?
            .map(|r| User::from_row(&r))
    } else {
        from_replica.clone()
    };
    if let Some(user) = &from_replica {
        lab.cache.set_json(&key, user, CACHE_TTL)?;
    }
    Ok(answer)
}

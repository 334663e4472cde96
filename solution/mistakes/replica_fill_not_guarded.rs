//! Looks for the marker, then fills with a plain `set_json`: a reader that
//! found no marker can still read the replica's old row (or have read it
//! already), and fill it after an update has set its marker, written and
//! removed the cached copy. Nothing refuses that late fill: stale for a
//! whole CACHE_TTL.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, marker_key, user_key};

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let db = if lab.cache.exists(&marker_key(user_id))? {
        &lab.db
    } else {
        &lab.replica
    };
    let row = db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

//! Closes the late fill by looking for the marker a second time, after the
//! replica read, and filling only if there is still none. It narrows the
//! window without closing it: the update can set its marker, write and
//! remove the cached copy between that second look and the fill, which
//! then caches the replica's old row.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, marker_key, user_key};

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let marker = marker_key(user_id);
    let from_primary = lab.cache.exists(&marker)?;
    let db = if from_primary { &lab.db } else { &lab.replica };
    let row = db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    // A write may have come in while we read the replica: fill only if
    // there is still no marker.
    if from_primary || !lab.cache.exists(&marker)? {
        lab.cache.set_json(&key, &user, CACHE_TTL)?;
    }
    Ok(Some(user))
}

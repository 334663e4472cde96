//! Remembers missing ids in a process-wide set, with no expiry: a scraper
//! probing ids costs Postgres nothing, but a user created later stays
//! "missing" in this process until it restarts.

use std::collections::HashSet;
use std::sync::Mutex;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

static MISSING: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if MISSING
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|m| m.contains(&user_id))
    {
        return Ok(None);
    }
    if let Some(user) = lab.cache.get_json::<User>(&user_key(user_id))? {
        return Ok(Some(user));
    }
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        MISSING
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(user_id);
        return Ok(None);
    };
    lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
    Ok(Some(user))
}

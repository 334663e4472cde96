//! Negative caching already in Part 1: the cache holds `Option<User>`, so a
//! user that does not exist is cached too (as `null`, for the short
//! ABSENT_TTL) and a scraper probing missing ids reaches Postgres once per
//! id, not once per request.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, User, user_key};

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    // `Some(None)` is a cached "no such user"; `None` is a miss.
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
    let ttl = if user.is_some() {
        CACHE_TTL
    } else {
        ABSENT_TTL
    };
    lab.cache.set_json(&key, &user, ttl)?;
    Ok(user)
}

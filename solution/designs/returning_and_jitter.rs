//! Another Part 1 style: `SELECT *` read through `query`, a TTL with jitter
//! (up to 10 % below CACHE_TTL, so entries filled together do not expire
//! together), and an `UPDATE … RETURNING` whose changed row decides whether
//! there is anything to invalidate.

use std::hash::{BuildHasher, RandomState};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

fn jittered_ttl() -> std::time::Duration {
    let jitter = RandomState::new().hash_one(std::time::Instant::now()) % 1000;
    CACHE_TTL - CACHE_TTL / 10 * jitter as u32 / 1000
}

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let rows = lab
        .db
        .query("SELECT * FROM users WHERE id = $1", &[&user_id])?;
    let Some(user) = rows.first().map(User::from_row) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, jittered_ttl())?;
    Ok(Some(user))
}

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let changed = lab.db.query_opt(
        "UPDATE users SET plan = $2, updated_at = now() WHERE id = $1 RETURNING id",
        &[&user_id, &plan],
    )?;
    if changed.is_some() {
        lab.cache.delete(&user_key(user_id))?;
    }
    Ok(())
}

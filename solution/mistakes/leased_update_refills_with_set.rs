//! Refresh-ahead in the leased update: invalidate, read the row back, and
//! write it into the cache with a plain `set_json`. Two updates that
//! overlap can then land the older plan last, and it stays for CACHE_TTL.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let key = user_key(user_id);
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&key)?;
    // Warm it again, so the next reader hits.
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    if let Some(user) = row.map(|r| User::from_row(&r)) {
        lab.cache.set_json(&key, &Some(user), CACHE_TTL)?;
    }
    Ok(())
}

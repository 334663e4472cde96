//! Write-through SET instead of invalidation: two racing writers can leave
//! the older value cached, and a failed write can leave a value Postgres
//! never had. Deleting is always safe; the next read loads the truth.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    if let Some(user) = row.map(|r| User::from_row(&r)) {
        lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
    }
    Ok(())
}

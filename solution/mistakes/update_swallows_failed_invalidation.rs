//! Swallows a failed invalidation: the write succeeded, the cache still
//! holds the old plan, and the caller is told all is well.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    let _ = lab.cache.invalidate(&user_key(user_id));
    Ok(())
}

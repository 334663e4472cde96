//! Invalidates before writing: a reader that misses between the delete and
//! the UPDATE reads the old row and caches it, stale until the TTL.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache.delete(&user_key(user_id))?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    Ok(())
}

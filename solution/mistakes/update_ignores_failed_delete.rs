//! Ignores a failed invalidation (`let _ = delete(…)`): the write is in
//! Postgres, the old plan stays cached for up to CACHE_TTL, and the caller
//! is told everything went fine.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    let _ = lab.cache.delete(&user_key(user_id));
    Ok(())
}

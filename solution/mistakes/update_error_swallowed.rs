//! Swallows the write's error: a plan Postgres refused is reported as a
//! success, so the caller believes a change that never happened.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let _ = lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    );
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

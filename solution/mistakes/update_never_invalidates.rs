//! The update never invalidates: Postgres has the new plan, the cache keeps
//! serving the old one until its TTL runs out.

use cache_aside_lab::labkit::{Lab, Result};

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    Ok(())
}

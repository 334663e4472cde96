//! Invalidates the wrong key (`user_{id}`, not `user:{id}`): the delete
//! succeeds, removes nothing, and the old plan stays cached.

use cache_aside_lab::labkit::{Lab, Result};

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&format!("user_{user_id}"))?;
    Ok(())
}

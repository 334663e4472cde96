//! The leased update deletes the value but not the lease: a fill in flight
//! with the old row still holds a valid lease and lands after the write.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

//! Sets the marker, writes, then removes the cached value with `delete`,
//! which leaves the lease alone: a reader that took its lease before the
//! marker was up, and read the replica's old row, still holds a current
//! lease when the update returns, and its fill is accepted. Part 3's
//! mistake, with a replica.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

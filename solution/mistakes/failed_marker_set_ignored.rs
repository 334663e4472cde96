//! Ignores a failure to set the marker (`let _ = set_json(..)`, "the
//! marker is only an optimisation"): when Redis refuses that one call, the
//! update writes and returns Ok with no sign of the write, and the reads
//! right after it get the lagging replica's old plan.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let _ = lab.cache.set_json(&marker_key(user_id), &true, MARKER_TTL);
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

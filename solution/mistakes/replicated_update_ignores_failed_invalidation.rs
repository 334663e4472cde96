//! Sets the marker, writes, and ignores a failed invalidation: the marker
//! expires after MARKER_TTL, while the old row may stay cached for the rest
//! of its CACHE_TTL, and the caller was told that all went well.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    // The marker sends reads to the primary anyway.
    let _ = lab.cache.invalidate(&user_key(user_id));
    Ok(())
}

//! Sets the marker after invalidating: a reader that misses between the
//! delete and the marker finds no marker, reads the lagging replica and
//! caches the old row; the marker comes too late to stop it.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))?;
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    Ok(())
}

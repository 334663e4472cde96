//! Sets the marker, invalidates, and only then writes: the marker is in
//! place, but a reader that misses between the invalidation and the UPDATE
//! reads the primary, which still has the old row, and caches it; nothing
//! removes it afterwards. Part 1's order mistake: the marker does not make
//! up for it.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    lab.cache.invalidate(&user_key(user_id))?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    Ok(())
}

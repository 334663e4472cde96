//! Leaves a marker only when the user is cached ("nobody has read it, so
//! nobody can read it stale"): but a reader that misses right after the
//! write goes to the lagging replica all the same, cached copy or not, and
//! returns and caches the old row.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let key = user_key(user_id);
    if lab.cache.exists(&key)? {
        lab.cache
            .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    }
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&key)
}

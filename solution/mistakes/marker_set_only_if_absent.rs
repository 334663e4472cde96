//! Sets the marker only if there is none yet (`if !exists { set }`, as
//! with SETNX), to spare Redis a write: a second update within MARKER_TTL
//! of the first leaves no marker of its own, so the first one's expires
//! while the replica may still lag behind the second write, and the reads
//! then get (and cache) the first update's plan.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let marker = marker_key(user_id);
    // Already marked as just written: nothing more to say.
    if !lab.cache.exists(&marker)? {
        lab.cache.set_json(&marker, &true, MARKER_TTL)?;
    }
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

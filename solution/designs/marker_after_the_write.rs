//! The remote marker set after the write but before the invalidation: a
//! reader that misses before the marker still finds the old value cached, or
//! holds a lease that the invalidation then revokes, and every reader after
//! the invalidation finds the marker. Correct, like setting it first.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache
        .set_json(&marker_key(user_id), &"written", MARKER_TTL)?;
    lab.cache.invalidate(&user_key(user_id))
}

//! Saves a write: the UPDATE only touches a row whose plan differs, and the
//! cached copy is removed only if a row changed. After an update whose
//! removal failed, the caller's retry changes no row, removes nothing, and
//! returns Ok, while the cache keeps serving the old plan.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let changed = lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2 AND plan IS DISTINCT FROM $1",
        &[&plan, &user_id],
    )?;
    if changed > 0 {
        lab.cache.delete(&user_key(user_id))?;
    }
    Ok(())
}

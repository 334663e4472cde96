//! The leased update invalidates, then writes: a reader that misses between
//! the two steps takes a fresh lease, reads the old row and fills it with a
//! valid lease, stale until the TTL. Revoking leases does not help when the
//! revocation comes before the write.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache.invalidate(&user_key(user_id))?;
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    Ok(())
}

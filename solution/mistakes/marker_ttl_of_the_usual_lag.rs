//! A marker whose TTL is tuned to the replica's usual lag (1 s, "it lags
//! 300 ms") instead of MARKER_TTL, the lag the application tolerates: the
//! day the replica falls further behind (a long query on it, a burst of
//! writes), the reads a second after a write go back to it and cache the
//! old row.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{marker_key, user_key};

/// Three times the replica's usual lag.
const MARKER_LIFE: Duration = Duration::from_secs(1);

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_LIFE)?;
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

//! A marker that expires too soon: MARKER_TTL's 3, in milliseconds instead
//! of seconds. The replica lags far longer than that, so the reads right
//! after the write already go back to it, and cache the old row.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, Duration::from_millis(3))?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&user_key(user_id))
}

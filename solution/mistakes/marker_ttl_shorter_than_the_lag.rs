//! A marker that expires after 150 ms ("replication is fast here"): the
//! replica lags longer than that, so reads go back to it before it has the
//! write, and cache the old row.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{marker_key, user_key};

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.cache
        .set_json(&marker_key(user_id), &true, Duration::from_millis(150))?;
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

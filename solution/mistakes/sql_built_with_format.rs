//! Builds the UPDATE with `format!` instead of a parameter: a plan such as
//! `enterprise' --` rewrites the statement and changes every user (SQL
//! injection).

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        &format!("UPDATE users SET plan = '{plan}' WHERE id = {user_id}"),
        &[],
    )?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

//! A double delete: remove the cached copy, write, and remove it again. The
//! first delete is not needed for correctness (the second one is what
//! closes the window), but it is a common pattern and harmless: a reader
//! that fills in between is undone by the second delete.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::user_key;

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let key = user_key(user_id);
    lab.cache.delete(&key)?;
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&key)?;
    Ok(())
}

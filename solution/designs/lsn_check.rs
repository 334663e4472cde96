//! Part 4 without a marker: the update records where its write sits in the
//! primary's WAL (`pg_current_wal_lsn()`), and a reader reads the replica
//! only once the replica has replayed that far (`pg_last_wal_replay_lsn()`).
//! Reads go back to the replica as soon as it has the write, not after a
//! fixed time.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, MARKER_TTL, User, user_key};

fn lsn_key(user_id: i32) -> String {
    format!("lsn:user:{user_id}")
}

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    let db = match lab.cache.get_json::<String>(&lsn_key(user_id))? {
        None => &lab.replica,
        Some(lsn) => {
            let replayed: Option<bool> = lab
                .replica
                .query_opt(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )?
                .and_then(|row| row.get(0));
            if replayed == Some(true) {
                &lab.replica
            } else {
                &lab.db
            }
        }
    };
    let row = db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let Some(user) = row.map(|r| User::from_row(&r)) else {
        return Ok(None);
    };
    lab.cache.set_json(&key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    let lsn: String = lab
        .db
        .query_opt("SELECT pg_current_wal_lsn()::text", &[])?
        .map(|row| row.get(0))
        .unwrap_or_default();
    // Recorded before the cached copy goes, so that every reader who misses
    // afterwards finds it. MARKER_TTL only bounds how long it is kept.
    lab.cache.set_json(&lsn_key(user_id), &lsn, MARKER_TTL)?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

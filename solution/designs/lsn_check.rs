//! Part 4 without a marker: the update records where its write sits in the
//! primary's WAL (`pg_current_wal_lsn()`), and a reader reads the replica
//! only once the replica has replayed that far (`pg_last_wal_replay_lsn()`).
//! Reads go back to the replica as soon as it has the write, not after a
//! fixed time. Fills are guarded by Part 3's lease, as in the reference.

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, user_key};

fn lsn_key(user_id: i32) -> String {
    format!("lsn:user:{user_id}")
}

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    let lease = loop {
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        match lab.cache.try_lease(&key, LEASE_TTL)? {
            Some(lease) => break lease,
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    // The write's position, looked up once we hold the lease: a write after
    // this revokes the lease, so its row is never filled from here.
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
    let user = row.map(|r| User::from_row(&r));
    let ttl = match user {
        Some(_) => CACHE_TTL,
        None => ABSENT_TTL,
    };
    // False if revoked (a write came in meanwhile): return what we read,
    // uncached.
    let _filled = lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
    Ok(user)
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
    // Value and lease at once: a reader that looked before the LSN was
    // recorded cannot fill what it read.
    lab.cache.invalidate(&user_key(user_id))
}

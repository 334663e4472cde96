//! Refresh-ahead done safely: the leased update invalidates, then fills the
//! cache again itself, through a lease like any reader. An update that
//! comes after its read revokes that lease and the stale fill is refused;
//! a reader that leased first loads the new row itself.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    let key = user_key(user_id);
    lab.db.execute(
        "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.invalidate(&key)?;
    // Best effort: the write and the invalidation are what the caller asked
    // for; the refill only saves the next reader a query.
    if let Ok(Some(lease)) = lab.cache.try_lease(&key, LEASE_TTL) {
        let row = lab.db.query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        );
        match row {
            Ok(row) => {
                let user = row.map(|r| User::from_row(&r));
                let ttl = if user.is_some() {
                    CACHE_TTL
                } else {
                    ABSENT_TTL
                };
                let _ = lab.cache.fill_with_lease(&key, &lease, &user, ttl);
            }
            // Leave no lease that nobody will fill.
            Err(_) => {
                let _ = lab.cache.invalidate(&key);
            }
        }
    }
    Ok(())
}

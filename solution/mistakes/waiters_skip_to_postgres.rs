//! Readers that do not get the lease go straight to Postgres instead of
//! waiting for the holder's fill: the lease only decides who fills, and the
//! herd still reaches the database.

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
        return Ok(cached);
    }
    let lease = lab.cache.try_lease(&key, LEASE_TTL)?;
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&user_id],
    )?;
    let user = row.map(|r| User::from_row(&r));
    if let Some(lease) = lease {
        let ttl = if user.is_some() {
            CACHE_TTL
        } else {
            ABSENT_TTL
        };
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
    }
    Ok(user)
}

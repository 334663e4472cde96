//! Takes the lease but fills with a plain SET: a reader that read Postgres
//! before an update still overwrites the invalidation with the old row (the
//! stale-set race the lease was meant to stop).

use std::time::Duration;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{ABSENT_TTL, CACHE_TTL, LEASE_TTL, User, user_key};

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        if lab.cache.try_lease(&key, LEASE_TTL)?.is_some() {
            let row = lab.db.query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?;
            let user = row.map(|r| User::from_row(&r));
            let ttl = if user.is_some() {
                CACHE_TTL
            } else {
                ABSENT_TTL
            };
            lab.cache.set_json(&key, &user, ttl)?;
            return Ok(user);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

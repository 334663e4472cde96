//! A process-local map in front of Redis, with no expiry: the fastest hit
//! there is, but an update made by another instance of the application
//! removes the Redis copy only, and this process serves its own old copy
//! for as long as it runs.

use std::collections::HashMap;
use std::sync::Mutex;

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

static LOCAL: Mutex<Option<HashMap<i32, User>>> = Mutex::new(None);

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    if let Some(user) = LOCAL
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&user_id).cloned())
    {
        return Ok(Some(user));
    }
    let user = match lab.cache.get_json::<User>(&user_key(user_id))? {
        Some(user) => user,
        None => {
            let row = lab.db.query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&user_id],
            )?;
            let Some(user) = row.map(|r| User::from_row(&r)) else {
                return Ok(None);
            };
            lab.cache.set_json(&user_key(user_id), &user, CACHE_TTL)?;
            user
        }
    };
    LOCAL
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(user_id, user.clone());
    Ok(Some(user))
}

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(
        "UPDATE users SET plan = $1 WHERE id = $2",
        &[&plan, &user_id],
    )?;
    lab.cache.delete(&user_key(user_id))?;
    if let Some(map) = LOCAL.lock().unwrap().as_mut() {
        map.remove(&user_id);
    }
    Ok(())
}

//! Go's `singleflight`, in its own process-global map (no `key_lock`): the
//! first reader of a cold user leads a call, the others join it and wait on
//! its `Condvar`, and every one of them gets the leader's result, errors
//! included. A finished call leaves the map, so the map holds only the
//! users in flight; a leader that panics abandons its call, and its waiters
//! start over instead of waiting forever.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};

use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

enum State {
    Running,
    Done(Result<Option<User>>),
    Abandoned,
}

struct Call {
    state: Mutex<State>,
    finished: Condvar,
}

static CALLS: LazyLock<Mutex<HashMap<i32, Arc<Call>>>> = LazyLock::new(Default::default);

/// Held by the leader: whatever happens to it, the call leaves the map and
/// its waiters wake up.
struct Leading {
    user_id: i32,
    call: Arc<Call>,
}

impl Drop for Leading {
    fn drop(&mut self) {
        let mut state = self
            .call
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, State::Running) {
            *state = State::Abandoned;
        }
        CALLS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.user_id);
        self.call.finished.notify_all();
    }
}

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        if let Some(user) = lab.cache.get_json::<User>(&key)? {
            return Ok(Some(user));
        }
        let joined = {
            let mut calls = CALLS.lock().unwrap_or_else(PoisonError::into_inner);
            match calls.get(&user_id) {
                Some(call) => Some(call.clone()),
                None => {
                    let call = Arc::new(Call {
                        state: Mutex::new(State::Running),
                        finished: Condvar::new(),
                    });
                    calls.insert(user_id, call.clone());
                    drop(calls);
                    let leading = Leading { user_id, call };
                    let result = load(lab, &key, user_id);
                    *leading
                        .call
                        .state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = State::Done(result.clone());
                    return result;
                }
            }
        };
        let call = joined.expect("joined a call");
        let mut state = call.state.lock().unwrap_or_else(PoisonError::into_inner);
        while matches!(*state, State::Running) {
            state = call
                .finished
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let State::Done(result) = &*state {
            return result.clone();
        }
        // Abandoned: start over.
    }
}

/// The leader's work. It looks at the cache once more: a reader that missed
/// just before the previous call finished would otherwise lead a second one.
fn load(lab: &Lab, key: &str, user_id: i32) -> Result<Option<User>> {
    if let Some(user) = lab.cache.get_json::<User>(key)? {
        return Ok(Some(user));
    }
    let user = lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )?
        .map(|row| User::from_row(&row));
    if let Some(user) = &user {
        lab.cache.set_json(key, user, CACHE_TTL)?;
    }
    Ok(user)
}

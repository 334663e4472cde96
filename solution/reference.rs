//! The reference answers: what `src/lib.rs` looks like when every TODO is
//! done. `cargo test --features solution` grades these instead of yours, the
//! `solution` binary narrates them, and the benchmark measures them.
//!
//! They are written against the learner-facing API only (`cache_aside_lab::…`),
//! exactly as a learner would write them; [`ANSWERS`] hands them to the
//! grader as one value.

use std::sync::PoisonError;
use std::time::Duration;

use cache_aside_lab::labkit::testkit::Answers;
use cache_aside_lab::labkit::{Db, Lab, Result};
use cache_aside_lab::{
    ABSENT_TTL, CACHE_TTL, LEASE_TTL, MARKER_TTL, User, key_lock, marker_key, user_key,
};

/// The reference answers, for the grader and the catalogues (whose entries
/// take every function they do not replace from here): every TODO function
/// of this file, by name.
pub const ANSWERS: Answers = cache_aside_lab::answers!("reference");

const SELECT_USER: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";
const UPDATE_PLAN: &str = "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2";

/// How often a reader waiting on somebody else's lease looks again.
const LEASE_POLL: Duration = Duration::from_millis(5);

fn load(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    load_from(&lab.db, user_id)
}

fn load_from(db: &Db, user_id: i32) -> Result<Option<User>> {
    Ok(db
        .query_opt(SELECT_USER, &[&user_id])?
        .map(|row| User::from_row(&row)))
}

// Part 1 ---------------------------------------------------------------------

pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    // Cache-aside: the application, not the cache, decides when to load.
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    load_and_fill(lab, &key, user_id)
}

/// The miss path: read Postgres, cache what was found.
fn load_and_fill(lab: &Lab, key: &str, user_id: i32) -> Result<Option<User>> {
    let Some(user) = load(lab, user_id)? else {
        // Nothing to cache: Parts 1 and 2 do not cache absence (Part 3 does).
        return Ok(None);
    };
    // The TTL bounds the damage if an invalidation is ever lost.
    lab.cache.set_json(key, &user, CACHE_TTL)?;
    Ok(Some(user))
}

pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    // Write first, then invalidate. The other order lets a reader that runs
    // between the two steps miss, read the *old* row, and cache it after our
    // delete: stale until the TTL. Invalidating (rather than SETting the new
    // value) is what keeps two racing writers from leaving the older value.
    // A plan that the CHECK constraint rejects fails here, before the cache
    // is touched; parameters ($1) mean the plan is data, never SQL.
    lab.db.execute(UPDATE_PLAN, &[&plan, &user_id])?;
    lab.cache.delete(&user_key(user_id))?;
    Ok(())
}

// Part 2 ---------------------------------------------------------------------

pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    // Hits never take the lock: it is only for the miss path.
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    // One lock per key: a slow fill of one user never holds up another.
    let lock = key_lock(&key);
    let _guard = match lock.try_lock() {
        Ok(guard) => guard,
        Err(_) => {
            // Somebody is loading this key. Wait until they are done, then
            // read their fill *without* holding the lock: otherwise a
            // thousand waiters would queue up behind one another's cache
            // reads. (A poisoned lock only means a reader panicked; the
            // cache is still consistent, so carry on.)
            drop(lock.lock().unwrap_or_else(PoisonError::into_inner));
            if let Some(user) = lab.cache.get_json::<User>(&key)? {
                return Ok(Some(user));
            }
            // Still a miss (the leader failed, or the user does not exist):
            // take the lock and load it ourselves.
            lock.lock().unwrap_or_else(PoisonError::into_inner)
        }
    };
    // The double-check: whoever held the lock before us may have filled the
    // cache since our first look. Without it, every waiter queries in turn.
    if let Some(user) = lab.cache.get_json::<User>(&key)? {
        return Ok(Some(user));
    }
    // We are the leader: load and fill *before* releasing the lock (it is
    // released when `_guard` drops, after this), so the waiters find it.
    load_and_fill(lab, &key, user_id)
}

// Part 3 ---------------------------------------------------------------------

pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        // `Option<User>` in the cache: `null` is a cached "no such user"
        // (negative caching), so a herd on a missing id costs one statement.
        match lab.cache.get_json::<Option<User>>(&key) {
            Ok(Some(cached)) => return Ok(cached),
            Ok(None) => {}
            // Redis is failing: the cache is an optimisation, Postgres is the
            // truth. Serve from Postgres and do not try to fill.
            Err(_) => return load(lab, user_id),
        }
        match lab.cache.try_lease(&key, LEASE_TTL) {
            Ok(Some(lease)) => {
                let user = load(lab, user_id)?;
                let ttl = if user.is_some() {
                    CACHE_TTL
                } else {
                    ABSENT_TTL
                };
                // Refused (false) if an update revoked our lease after we
                // read: our row may be stale, so return it but do not cache
                // it. A failing cache is not this reader's problem either.
                let _ = lab.cache.fill_with_lease(&key, &lease, &user, ttl);
                return Ok(user);
            }
            // Somebody else is filling: wait for their value instead of
            // querying ourselves. If they died, their lease expires after
            // LEASE_TTL and one of us takes it: that is the bound.
            Ok(None) => std::thread::sleep(LEASE_POLL),
            Err(_) => return load(lab, user_id),
        }
    }
}

pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    lab.db.execute(UPDATE_PLAN, &[&plan, &user_id])?;
    // `invalidate` drops the value and any lease at once, so a reader that
    // read the old row before our write can no longer fill it. If it fails,
    // the cache may hold the old row: say so instead of pretending success.
    lab.cache.invalidate(&user_key(user_id))
}

// Part 4 -----------------------------------------------------------------------

pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    let key = user_key(user_id);
    loop {
        // As in Part 3: `null` is a cached "no such user".
        if let Some(cached) = lab.cache.get_json::<Option<User>>(&key)? {
            return Ok(cached);
        }
        let Some(lease) = lab.cache.try_lease(&key, LEASE_TTL)? else {
            // Somebody else is filling: wait for their value, as in Part 3.
            std::thread::sleep(LEASE_POLL);
            continue;
        };
        // A remote marker ("Scaling Memcache at Facebook", section 5): this
        // user was written less than MARKER_TTL ago, so the replica may not
        // have the write yet. Read the primary then, and the replica
        // otherwise. Looked at *after* taking the lease: an update that
        // comes later revokes the lease (below), and one that came earlier
        // left its marker before it removed the lease and the cached copy.
        let db = if lab.cache.exists(&marker_key(user_id))? {
            &lab.db
        } else {
            &lab.replica
        };
        let user = load_from(db, user_id)?;
        let ttl = if user.is_some() {
            CACHE_TTL
        } else {
            ABSENT_TTL
        };
        // Refused (false) if an update came in since we took the lease: the
        // replica may have answered before it had the write, so return what
        // we read, but do not cache it. Checking the marker once more would
        // not do: the write could still land between that look and the fill.
        lab.cache.fill_with_lease(&key, &lease, &user, ttl)?;
        return Ok(user);
    }
}

pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    // The marker goes up *before* the cached copy goes: a reader that misses
    // at any moment after the invalidation finds it, and reads the primary.
    // Set after the invalidation instead, a reader could miss in between,
    // read the lagging replica and cache the old row. The marker outlives
    // any replica lag the lab tolerates (MARKER_TTL), then expires by itself.
    lab.cache
        .set_json(&marker_key(user_id), &true, MARKER_TTL)?;
    lab.db.execute(UPDATE_PLAN, &[&plan, &user_id])?;
    // Write, then invalidate, as in Part 1; `invalidate` also revokes the
    // lease of a reader that looked before the marker was up and may be
    // about to fill the replica's old row (Part 3). If it fails, say so.
    lab.cache.invalidate(&user_key(user_id))
}

//! # Cache-aside with Postgres + Redis
//!
//! This is your file. You put a Redis cache in front of the Postgres `users`
//! table with *cache-aside* (lazy loading): your code checks the cache, and on
//! a miss reads Postgres and fills the cache itself. (Read-through is the
//! other way round: the cache loads from the database for you.) Then the tests
//! prove that a hit never touches Postgres, that a write invalidates the
//! cached copy, and that a stampede on a cold key reaches Postgres once.
//!
//! Fill in each `todo!()` below and run `cargo test` until it is green.
//! `cargo run --bin solution` shows the reference behaviour, narrated.
//! Stuck? `HINTS.md` has one section per TODO; `docs/caching-strategy.md`
//! has the theory.
//!
//! # Layout
//! - `src/lib.rs` (this file): the given types and helpers, and the TODOs:
//!   Part 1 cache-aside, Part 2 single-flight, Part 3 (optional) leases,
//!   Part 4 (optional) a read replica.
//! - `src/labkit/`: the platform. [`labkit::Lab`] hands you a pooled
//!   Postgres ([`labkit::Db`], with a statement counter), its read replica
//!   (another `Db`, Part 4) and Redis ([`labkit::Cache`]). You never open a
//!   connection.
//! - `tests/`: the grader. Each failure says what happened, what should have
//!   happened, and a hint.
//! - `solution/`: the reference answers, and a catalogue of classic mistakes
//!   that the grader must reject.

pub mod labkit;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use labkit::{Lab, Result};

/// How long a cached user lives. The TTL bounds how stale an entry can get if
/// an invalidation is ever lost.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Part 3: how long a lease holder may take to fill a key before another
/// reader may try (the delay a crashed holder costs).
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// Part 3: how long "this user does not exist" is cached. Short, so a user
/// created later shows up soon.
pub const ABSENT_TTL: Duration = Duration::from_secs(5);
/// Part 4: how long reads of a user just written go to the primary: longer
/// than any replica lag the lab tolerates.
pub const MARKER_TTL: Duration = Duration::from_secs(3);

/// A row of the `users` table, as cached (JSON) and returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub plan: String,
}

impl User {
    /// Builds a `User` from a row selected with (at least) the columns `id`,
    /// `name`, `email` and `plan`, by column name. Panics if one is missing.
    pub fn from_row(row: &labkit::Row) -> User {
        User {
            id: row.get("id"),
            name: row.get("name"),
            email: row.get("email"),
            plan: row.get("plan"),
        }
    }
}

/// The cache key of a user: `user:{user_id}`.
pub fn user_key(user_id: i32) -> String {
    format!("user:{user_id}")
}

/// Part 4: the key of a user's remote marker, `marker:user:{user_id}`: "this
/// user was just written; the replica may not have it yet".
pub fn marker_key(user_id: i32) -> String {
    format!("marker:user:{user_id}")
}

/// The lock for one cache key, shared by every thread that asks for the same
/// key while any of them still holds it; different keys get different locks.
///
/// It is a `std::sync::Mutex`, not an async one, because the whole lab is
/// synchronous and the lock is held across blocking I/O on purpose: waiting
/// threads should sleep until the leader has filled the cache. Entries are
/// removed once nobody holds them, so the map stays as small as the number
/// of keys in flight.
pub fn key_lock(key: &str) -> Arc<Mutex<()>> {
    labkit::KeyLocks::global().get(key)
}

// ---------------------------------------------------------------------------
// Part 1: cache-aside
// ---------------------------------------------------------------------------

/// Returns user `user_id`, from the cache when it is there, otherwise from
/// Postgres (then caching it for [`CACHE_TTL`] under [`user_key`]).
/// A user that does not exist is `Ok(None)`.
pub fn get_user_profile(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    // TODO: Part 1. Goal: a hit sends 0 statements to Postgres; a miss reads
    // Postgres once and leaves `user:{id}` in the cache with a TTL.
    // Question: what must happen before you query Postgres, and after?
    todo!(
        "Part 1: get_user_profile({lab}, user {user_id}) is not written yet. Goal: a hit costs 0 statements; a miss reads Postgres and caches the user. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

/// Sets the plan of user `user_id` in Postgres, so that no reader sees the
/// old plan afterwards.
pub fn update_user_plan(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    // TODO: Part 1. Goal: after this returns, `user:{id}` is gone from the
    // cache and the next read returns the new plan.
    // Question: a reader may fill the cache while your UPDATE is in flight;
    // which order of "write" and "invalidate" leaves no stale entry behind?
    todo!(
        "Part 1: update_user_plan({lab}, user {user_id}, {plan:?}) is not written yet. Goal: once it returns, no reader sees the old plan. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

// ---------------------------------------------------------------------------
// Part 2: single-flight
// ---------------------------------------------------------------------------

/// Like [`get_user_profile`], but when many threads miss the same key at
/// once, only one of them queries Postgres; the others wait for its fill.
pub fn get_user_profile_singleflight(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    // TODO: Part 2. Goal: 50 concurrent cold reads of one user send exactly 1
    // statement, all 50 get the user, and other keys are never held up.
    // Question: once a waiting thread finally gets the lock, what should it
    // look at before it queries Postgres?
    todo!(
        "Part 2: get_user_profile_singleflight({lab}, user {user_id}) is not written yet. Goal: 50 concurrent cold reads cost 1 statement, and other keys never wait. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

// ---------------------------------------------------------------------------
// Part 3 (optional): leases. `cargo test part3 -- --ignored` grades it.
// ---------------------------------------------------------------------------

/// Like [`get_user_profile`], but safe against the stale-set race and against
/// herds that a process-local lock cannot stop (many processes, or a user
/// that does not exist). Uses `lab.cache.try_lease` / `fill_with_lease`.
pub fn get_user_profile_leased(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    // TODO: Part 3. Goal: one statement per herd across processes, absence
    // cached for ABSENT_TTL, a dead lease holder costs at most LEASE_TTL, and
    // with Redis failing you still answer from Postgres.
    // Question: who may fill the cache, and what do the others do meanwhile?
    todo!(
        "Part 3: get_user_profile_leased({lab}, user {user_id}) is not written yet. Goal: one statement per herd, across processes too, and no stale fill after an update. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

/// Like [`update_user_plan`], but the invalidation also revokes any lease, so
/// a fill already in flight with the old row is refused.
pub fn update_user_plan_leased(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    // TODO: Part 3. Goal: no stale value survives a reader that read Postgres
    // just before your write. Question: what if the invalidation fails?
    todo!(
        "Part 3: update_user_plan_leased({lab}, user {user_id}, {plan:?}) is not written yet. Goal: a fill already in flight with the old row is refused. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

// ---------------------------------------------------------------------------
// Part 4 (optional): a read replica. `cargo test part4 -- --ignored` grades
// it, once a replica runs (`scripts/services up --replica`).
// ---------------------------------------------------------------------------

/// Like [`get_user_profile`], but a miss reads `lab.replica` when it can be
/// trusted (no recent write of this user), and `lab.db` (the primary)
/// otherwise. The replica lags: it may not have a write yet.
pub fn get_user_profile_replicated(lab: &Lab, user_id: i32) -> Result<Option<User>> {
    // TODO: Part 4. Goal: with no recent write, a cold read is served by the
    // replica (0 statements on lab.db); right after a write, every read has
    // the new plan, in every process, even while the replica still lags;
    // and nothing stale gets cached, not even by a reader that was reading
    // the replica while the write happened.
    // Questions: how can a reader in another process know that this user
    // was written a moment ago? And a reader that looked just before the
    // write, then read the replica's old row: what stops its fill?
    todo!(
        "Part 4: get_user_profile_replicated({lab}, user {user_id}) is not written yet. Goal: the replica serves reads, except just after a write, when it may lag. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

/// Like [`update_user_plan`], with replicas: once it returns, no reader sees
/// the old plan, although the replica may still have it for a while.
pub fn update_user_plan_replicated(lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
    // TODO: Part 4. Goal: after this returns, every read has the new plan,
    // even a read that misses while the replica still lags, or one that was
    // already under way; if the invalidation fails, say so.
    // Question: a reader may miss at any moment of your update; what must
    // already be in place when the cached copy goes, and what must go with
    // it?
    todo!(
        "Part 4: update_user_plan_replicated({lab}, user {user_id}, {plan:?}) is not written yet. Goal: once it returns, no reader sees the old plan, however far the replica lags. Its TODO in src/lib.rs says more; HINTS.md has hints."
    )
}

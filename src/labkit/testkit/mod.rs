//! Tools for the grader, the benchmark and the `solution` binary. An answer
//! never needs them, so they are hidden from the documentation, and the
//! methods they add to `Lab`, `Db` and `Cache` exist only where these
//! extension traits are imported.
//!
//! # Layout
//!
//! - the hooks (slowed and parked statements, a failing cache, a lab that
//!   can be closed under a stuck thread) live in the core, `../hooks.rs`,
//!   because every statement passes them; this layer re-exports them.
//! - `answers.rs`: the one list of the lab's TODO functions, and one set of
//!   them as a value (yours, the reference, or a catalogue entry).
//! - `herd.rs`: a herd of readers across several processes, with one JSON
//!   report per process.
//! - `child.rs`: what the child processes of `herd.rs` and `remote.rs` have
//!   in common (their job in an environment variable, JSON lines, `go`).
//! - `remote.rs`: one call of an answer in another process (a write by
//!   another instance of the application, a lease holder that crashes).
//! - `run.rs`: one call of answer code on a thread of its own, bounded,
//!   parkable, with a typed result (returned, panicked, hung).
//! - `panics.rs`: a learner's panic, caught quietly and told in one line.
//! - `timeline.rs`: the core's timeline (who called what, when), told as
//!   lines: folded herds, at most about 15 for a failure.
//! - `marks.rs`: the culprit finders, which step of a timeline made an
//!   outcome wrong (the grader marks it; `--compare` too).
//! - here: raw access to pooled clients, a lab's private space, and the
//!   process-level housekeeping of isolated labs.

pub mod answers;
mod child;
pub mod herd;
pub mod marks;
pub mod panics;
pub mod remote;
pub mod run;
pub mod timeline;

use std::time::Duration;

pub use super::hooks::{Hooks, Matcher, PARK_LIMIT, Parked, Phase, Trap};
pub use super::pool::PoolSizes;
pub use super::redis_conn::RedisConn;
pub use answers::{Answers, Function, Read, Update};

use super::{Cache, Db, Lab, Result, config, isolation};

/// Connections idle longer than this are checked before use.
pub const IDLE_CHECK: Duration = super::pool::IDLE_CHECK;

/// How long a call waits for a free pooled connection before it fails.
pub const CHECKOUT_WAIT: Duration = super::pool::CHECKOUT_WAIT;

/// `DATABASE_URL`, the default, or the primary of the replica pair
/// `scripts/services up --replica` started (see `config.rs`).
pub fn database_url() -> String {
    config::database_url()
}

/// `REDIS_URL`, or the default.
pub fn redis_url() -> String {
    config::redis_url()
}

/// Part 4's replica URL, or why there is none (the command that starts one
/// is in the error labkit gives for calls on `lab.replica`).
pub fn replica_url() -> std::result::Result<String, String> {
    config::replica_url()
}

/// The first error of this process that said the services cannot be used
/// as configured (a password, TLS, a permission), even if the code that met
/// it carried on: the grader, the narration and the benchmark fail with it
/// rather than report what a broken setup made of the answers.
pub fn misconfiguration() -> Option<super::Error> {
    super::error::misconfiguration()
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_password(url: &str) -> String {
    super::error::mask_password(url)
}

/// [`Lab::isolated`] with other pool sizes (the benchmark's threads).
pub fn isolated_sized(sizes: PoolSizes) -> Result<Lab> {
    Lab::isolated_sized(sizes)
}

/// [`isolated_sized`] with the cache on another Redis than `REDIS_URL` (the
/// benchmark compares a single Redis with a cluster in one run).
pub fn isolated_on(redis_url: &str, sizes: PoolSizes) -> Result<Lab> {
    super::diagnose::refuse_transaction_pool(&config::database_url())?;
    let space = isolation::Space::create_on(
        &config::database_url(),
        &config::redis_url(),
        Some(redis_url),
    )?;
    let lsn = space.lsn.clone();
    Lab::build_on(Some(space), lsn, sizes, redis_url)
}

/// Joins the private space of a lab in another process, by its
/// [`LabExt::space_name`]. The space is left in place when this lab drops.
pub fn attach(space_name: &str) -> Result<Lab> {
    Lab::build(
        Some(isolation::Space::attach(space_name)?),
        None,
        PoolSizes::ISOLATED,
    )
}

/// A lab's hooks and private space.
pub trait LabExt {
    /// The lab's test hooks; see [`Hooks`].
    fn hooks(&self) -> &Hooks;
    /// The private schema's name, for [`attach`]; `None` when shared.
    fn space_name(&self) -> Option<&str>;
}

impl LabExt for Lab {
    fn hooks(&self) -> &Hooks {
        &self.hooks
    }
    fn space_name(&self) -> Option<&str> {
        Lab::space_name(self)
    }
}

/// Raw access to `Db`'s pooled connections, bypassing labkit (not counted,
/// no hooks): the benchmark's floors, and killing a session on purpose.
pub trait DbExt {
    fn with_raw_client<T>(&self, f: impl FnOnce(&mut postgres::Client) -> T) -> Result<T>;
    /// Connections this pool has open right now (idle and in use).
    fn open_connections(&self) -> u32;
}

impl DbExt for Db {
    fn with_raw_client<T>(&self, f: impl FnOnce(&mut postgres::Client) -> T) -> Result<T> {
        self.pool()?.with_conn(|conn| f(&mut conn.client))
    }
    fn open_connections(&self) -> u32 {
        self.pool().map_or(0, |p| p.open_connections())
    }
}

/// Raw access to `Cache`'s pooled connections and real key names.
pub trait CacheExt {
    fn with_raw_connection<T>(&self, f: impl FnOnce(&mut RedisConn) -> T) -> Result<T>;
    /// Connections this pool has open right now (idle and in use).
    fn open_connections(&self) -> u32;
    /// The name `key` really has in Redis (with this lab's private prefix).
    fn storage_key(&self, key: &str) -> String;
    /// How long a cache call waits for a free pooled connection before it
    /// fails as busy: [`CHECKOUT_WAIT`] unless set (a test of that error
    /// sets it shorter).
    fn set_checkout_wait(&self, wait: Duration);
}

impl CacheExt for Cache {
    fn with_raw_connection<T>(&self, f: impl FnOnce(&mut RedisConn) -> T) -> Result<T> {
        self.pool().with_conn(f)
    }
    fn open_connections(&self) -> u32 {
        self.pool().open_connections()
    }
    fn storage_key(&self, key: &str) -> String {
        Cache::storage_key(self, key)
    }
    fn set_checkout_wait(&self, wait: Duration) {
        self.pool().set_wait(wait);
    }
}

/// A Postgres client on `url`, outside labkit's pools, connected as labkit
/// connects: `sslmode`, `sslrootcert` and TLS as in `tls.rs`, bounded, its
/// failure told as labkit tells it.
pub fn raw_postgres(url: &str) -> Result<postgres::Client> {
    super::db::connect_client(
        config::pg_config(super::Service::Postgres, url, None)?,
        url,
        super::Service::Postgres,
    )
}

/// A plain `redis::Client` for `url` (a single node), set up as labkit sets
/// its own: a `rediss://` URL's `sslrootcert` is trusted.
pub fn redis_client(url: &str) -> Result<redis::Client> {
    Ok(super::redis_conn::RedisConnector::new(url)?.client())
}

/// A plain cluster client seeded with `url` (a cluster node), set up as
/// labkit sets its own (TLS roots included).
pub fn redis_cluster_client(url: &str) -> Result<redis::cluster::ClusterClient> {
    super::redis_conn::RedisConnector::new(url)?.raw_cluster_client()
}

/// A connection to `REDIS_URL`, outside labkit's pools and key spaces: a
/// cluster connection when it names a cluster node.
pub fn raw_redis() -> Result<RedisConn> {
    super::redis_conn::RedisConnector::new(&config::redis_url())?.open()
}

/// The real name of the lease of `key` (with the lab's prefix).
pub fn lease_key(cache: &Cache, key: &str) -> Result<String> {
    super::lease::lease_key(&Cache::storage_key(cache, key))
}

/// How many entries of the `key_lock` map have a key matching `pred`, and
/// how many of those are finished.
pub fn key_lock_entries(pred: impl Fn(&str) -> bool) -> (usize, usize) {
    super::KeyLocks::global().count(pred)
}

/// From now on, isolated labs keep their data when dropped, until
/// [`release_kept`] (for `LAB_KEEP_FAILED`).
pub fn keep_spaces() {
    isolation::keep_spaces();
}

/// The spaces kept since [`keep_spaces`], as (schema, key prefix). With
/// `drop: true` they are dropped now; otherwise they stay, and the first run
/// after this process has exited sweeps them.
pub fn release_kept(drop: bool) -> Vec<(String, String)> {
    isolation::release_kept(drop)
}

/// Call before a process that used isolated labs exits: it forgets the
/// process's run, so nobody has to sweep it.
pub fn finish() {
    isolation::finish();
}

/// Waits until the run that owns space `space_name` is dead and no sweep of
/// it is in progress, for at most `timeout`; false on timeout.
pub fn wait_for_sweepers(space_name: &str, timeout: Duration) -> Result<bool> {
    isolation::wait_for_run_lock(&config::database_url(), space_name, timeout)
}

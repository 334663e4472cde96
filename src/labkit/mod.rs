//! `labkit`: the platform under the lab. It hands learners ready, pooled
//! clients so that their code is only about caching.
//!
//! - [`Lab`] bundles a [`Db`] (Postgres, with a statement counter) and a
//!   [`Cache`] (Redis, JSON values, and the Part 3 leases).
//! - [`Lab::isolated`] gives every test a private seeded copy of the data and
//!   a private key space; [`Lab::connect`] uses the shared data.
//! - [`hooks`] are for the grader only: slowed and parked statements, a
//!   failing cache. They make the concurrency checks deterministic.
//!
//! Configuration: `DATABASE_URL` and `REDIS_URL`, with defaults that work
//! against the compose services and a stock local install.

mod cache;
mod connect;
mod db;
mod error;
pub mod hooks;
mod isolation;
mod lease;
mod locks;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use cache::Cache;
pub use db::{Db, IDLE_CHECK};
pub use error::{Error, Service, mask_password};
pub use hooks::Hooks;
pub use lease::Lease;
pub use locks::KeyLocks;

pub type Row = postgres::Row;
pub type Result<T> = std::result::Result<T, Error>;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Give up on a service that does not answer after this long, instead of
/// r2d2's default of 30 s: a learner with a stopped container should see the
/// error at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `DATABASE_URL`, or the default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

/// `REDIS_URL`, or the default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// Pool sizes. Connections open lazily, so a lab holds only what it uses.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    pub postgres: u32,
    pub redis: u32,
}

impl PoolSizes {
    /// Enough for every check (a parked reader plus a writer plus spares)
    /// while a 16-thread test run stays far below Postgres' 100 connections.
    pub const ISOLATED: PoolSizes = PoolSizes {
        postgres: 4,
        redis: 8,
    };
    pub const SHARED: PoolSizes = PoolSizes {
        postgres: 8,
        redis: 16,
    };
}

/// A database and a cache, ready to use.
pub struct Lab {
    pub db: Db,
    pub cache: Cache,
    hooks: Arc<Hooks>,
    // Declared last: dropped after the pools have closed their connections.
    space: Option<isolation::Space>,
}

impl Lab {
    /// The shared data. Seeds the `users` table from `seed.sql` if missing.
    pub fn connect() -> Result<Lab> {
        let db_url = database_url();
        isolation::seed_shared(&db_url)?;
        Lab::build(&db_url, &redis_url(), None, PoolSizes::SHARED)
    }

    /// A private, seeded copy of the data and a private key space, removed
    /// when the lab is dropped. Learner code cannot tell the difference: it
    /// still reads `users` and `user:1`.
    pub fn isolated() -> Result<Lab> {
        Lab::isolated_sized(PoolSizes::ISOLATED)
    }

    /// [`Lab::isolated`] with other pool sizes (the benchmark's threads).
    pub fn isolated_sized(sizes: PoolSizes) -> Result<Lab> {
        let (db_url, redis_url) = (database_url(), redis_url());
        let space = isolation::Space::create(&db_url, &redis_url)?;
        Lab::build(&db_url, &redis_url, Some(space), sizes)
    }

    /// Grader-only: joins the private space of a lab in another process, by
    /// [`Lab::space_name`]. It is left in place when this lab is dropped.
    pub fn attach(space_name: &str) -> Result<Lab> {
        let space = isolation::Space::attach(space_name)?;
        Lab::build(
            &database_url(),
            &redis_url(),
            Some(space),
            PoolSizes::ISOLATED,
        )
    }

    /// The private schema's name, for [`Lab::attach`]; `None` when shared.
    pub fn space_name(&self) -> Option<&str> {
        self.space.as_ref().map(|s| s.name.as_str())
    }

    /// Grader-only test hooks; see [`hooks`].
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn build(
        db_url: &str,
        redis_url: &str,
        space: Option<isolation::Space>,
        sizes: PoolSizes,
    ) -> Result<Lab> {
        let hooks = Arc::new(Hooks::default());
        let config = pg_config(db_url, space.as_ref().map(|s| s.name.as_str()))?;
        let db = Db::new(db_url, config, pool_builder(sizes.postgres), hooks.clone());
        let client = redis::Client::open(redis_url).map_err(|e| Error::redis(redis_url, &e))?;
        let prefix = space.as_ref().map(|s| s.prefix.clone()).unwrap_or_default();
        let cache = Cache::new(
            redis_url,
            client,
            prefix,
            pool_builder(sizes.redis),
            CONNECT_TIMEOUT,
            hooks.clone(),
        );
        Ok(Lab {
            db,
            cache,
            hooks,
            space,
        })
    }
}

/// Parses `DATABASE_URL`, with labkit's timeouts and, for an isolated lab,
/// the private schema as the connection's `search_path`.
pub(crate) fn pg_config(url: &str, schema: Option<&str>) -> Result<postgres::Config> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        Error::InvalidInput(format!(
            "DATABASE_URL {} is not a Postgres URL ({e}); expected e.g. {DEFAULT_DATABASE_URL}",
            mask_password(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("cache-aside-lab");
    if let Some(schema) = schema {
        config.options(&format!("-c search_path={schema}"));
    }
    Ok(config)
}

fn pool_builder<M: r2d2::ManageConnection>(max_size: u32) -> r2d2::Builder<M> {
    // r2d2 opens connections and reaps idle ones on this pool of threads:
    // one small pool for the whole process instead of three threads per pool.
    static REAPER: OnceLock<Arc<scheduled_thread_pool::ScheduledThreadPool>> = OnceLock::new();
    let reaper =
        REAPER.get_or_init(|| Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(1)));
    r2d2::Pool::builder()
        .max_size(max_size)
        // Lazy: r2d2 opens max_size connections up front unless min_idle is set.
        .min_idle(Some(0))
        // No PING on every checkout: see `db.rs` for what replaces it.
        .test_on_check_out(false)
        // A bit longer than one connect, so its error is the one reported.
        .connection_timeout(CONNECT_TIMEOUT + Duration::from_secs(1))
        .idle_timeout(Some(Duration::from_secs(60)))
        .thread_pool(reaper.clone())
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.space_name() {
            Some(name) => write!(f, "Lab(isolated {name})"),
            None => f.write_str("Lab(shared)"),
        }
    }
}

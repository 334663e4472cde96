//! `labkit`: the platform under the lab. It hands you ready, pooled clients
//! so that your code is only about caching.
//!
//! - [`Lab`] bundles a [`Db`] (Postgres, with a statement counter) and a
//!   [`Cache`] (Redis, JSON values, and the Part 3 leases).
//! - [`Lab::isolated`] gives every test a private seeded copy of the data and
//!   a private key space; [`Lab::connect`] uses the shared data.
//! - Every failure is an [`Error`] whose message says what failed, where, and
//!   what to do.
//!
//! Configuration: `DATABASE_URL` and `REDIS_URL`, with defaults that work
//! against the compose services and a stock local install; Part 4 adds
//! `DATABASE_REPLICA_URL`. `REDIS_URL` may name any node of a Redis
//! Cluster: labkit finds out, and your code and keys stay the same.
//!
//! # Layout
//!
//! - `mod.rs`: [`Lab`]; `config.rs`: the URLs.
//! - `db.rs`, `cache.rs`, `lease.rs`, `error.rs`: the API your answers use.
//! - `redis_conn.rs`: the Redis connection under `cache.rs`, single node or
//!   cluster.
//! - `hooks.rs`: the seams every statement and cache call passes, which the
//!   grader uses to park, slow or fail them (off unless a check turns them on).
//! - `timeline.rs`: who made which call when, recorded as the calls pass
//!   (off unless the grader turns it on), for a failure to show the race.
//! - `pool.rs`, `connect.rs`: pooled connections, bounded connects, and the
//!   retry after a lost connection; `diagnose.rs`: why a connect failed,
//!   when the client's error alone cannot say (TLS on one side only);
//!   `tls.rs`: TLS for both services (libpq's `sslmode`, `rediss://`).
//! - `isolation.rs`: private schemas and key spaces, and the sweep that
//!   removes what a killed run left behind.
//! - `locks.rs`: the map behind [`key_lock`](crate::key_lock).
//! - `testkit/`: tools for the grader, the benchmark and the narration, on
//!   top of the rest (the hooks' controls, raw clients, the one list of
//!   answer functions, answer code run on a thread or in another process,
//!   the cross-process herd). Nothing here imports it. Hidden from the
//!   documentation: an answer never needs them.

mod cache;
mod config;
mod connect;
mod db;
mod diagnose;
mod error;
mod hooks;
mod isolation;
mod lease;
mod locks;
mod pool;
mod redis_conn;
#[doc(hidden)]
pub mod testkit;
mod timeline;
mod tls;

use std::sync::Arc;

pub use cache::Cache;
pub use db::Db;
pub use error::{Cause, Error, Problem, Service};
pub use lease::Lease;
pub(crate) use locks::KeyLocks;

use hooks::Hooks;
use pool::PoolSizes;

/// A row, as `Db` returns it; read columns with `row.get("name")`.
pub type Row = postgres::Row;
/// labkit's result: every error is an [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A database, its read replica and a cache, ready to use.
pub struct Lab {
    /// Postgres (the primary), with a statement counter.
    pub db: Db,
    /// Part 4: a read-only streaming replica of `db`, with its own statement
    /// counter. It lags the primary. Without a replica configured, every
    /// call fails with an error that says how to start one.
    pub replica: Db,
    /// Redis, holding JSON values.
    pub cache: Cache,
    hooks: Arc<Hooks>,
    // Declared last: dropped after the pools have closed their connections.
    space: Option<isolation::Space>,
}

impl Lab {
    /// The shared data. Seeds the `users` table from `seed.sql` if missing.
    pub fn connect() -> Result<Lab> {
        diagnose::refuse_transaction_pool(&config::database_url())?;
        let lsn = isolation::seed_shared(&config::database_url())?;
        Lab::build(None, Some(lsn), PoolSizes::SHARED)
    }

    /// A private, seeded copy of the data and a private key space, removed
    /// when the lab is dropped. Your code cannot tell the difference: it
    /// still reads `users` and `user:1`.
    pub fn isolated() -> Result<Lab> {
        Lab::isolated_sized(PoolSizes::ISOLATED)
    }

    pub(crate) fn isolated_sized(sizes: PoolSizes) -> Result<Lab> {
        // Before the run's advisory lock is taken: a transaction pool would
        // keep it on a server connection nobody can release it from.
        diagnose::refuse_transaction_pool(&config::database_url())?;
        let space = isolation::Space::create(&config::database_url(), &config::redis_url())?;
        let lsn = space.lsn.clone();
        Lab::build(Some(space), lsn, sizes)
    }

    /// `lsn`: where the replica must have replayed to before it is used.
    pub(crate) fn build(
        space: Option<isolation::Space>,
        lsn: Option<String>,
        sizes: PoolSizes,
    ) -> Result<Lab> {
        Lab::build_on(space, lsn, sizes, &config::redis_url())
    }

    /// [`Lab::build`] with the cache on `redis_url`.
    pub(crate) fn build_on(
        space: Option<isolation::Space>,
        lsn: Option<String>,
        sizes: PoolSizes,
        redis_url: &str,
    ) -> Result<Lab> {
        let db_url = config::database_url();
        let schema = space.as_ref().map(|s| s.name.as_str());
        let hooks = Arc::new(Hooks::new(schema.unwrap_or_default()));
        let pg = db::PgConnector::new(
            config::pg_config(Service::Postgres, &db_url, schema)?,
            &db_url,
            Service::Postgres,
        );
        let db = Db::new(pg, sizes.postgres, hooks.clone());
        let replica = match config::replica_url() {
            Ok(url) => {
                let pg = db::PgConnector::new(
                    config::pg_config(Service::Replica, &url, schema)?,
                    &url,
                    Service::Replica,
                );
                Db::replica(pg, sizes.postgres, hooks.clone(), lsn)
            }
            Err(why) => Db::missing(Service::Replica, &why, hooks.clone()),
        };
        let prefix = space.as_ref().map(|s| s.prefix.clone()).unwrap_or_default();
        let redis = redis_conn::RedisConnector::new(redis_url)?;
        let cache = Cache::new(redis, prefix, sizes.redis, hooks.clone());
        Ok(Lab {
            db,
            replica,
            cache,
            hooks,
            space,
        })
    }

    pub(crate) fn space_name(&self) -> Option<&str> {
        self.space.as_ref().map(|s| s.name.as_str())
    }
}

/// Short, for messages (a stub's `todo!()` names the lab it was called
/// with): `isolated lab` (a private copy of the data, as every check uses)
/// or `shared lab` ([`Lab::connect`]). `{:?}` also names the private space.
impl std::fmt::Display for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.space {
            Some(_) => "isolated lab",
            None => "shared lab",
        })
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.space_name() {
            Some(name) => write!(f, "Lab(isolated {name})"),
            None => f.write_str("Lab(shared)"),
        }
    }
}

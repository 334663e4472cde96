//! `Db`: pooled Postgres with a statement counter and one round trip per
//! statement.
//!
//! Two defaults would each multiply the cost of a primary-key SELECT (see
//! issue "Performance"): r2d2's `test_on_check_out` ping, and preparing the
//! SQL text on every call. So the pool never pings on checkout, and every
//! connection keeps its prepared statements keyed by SQL text. What the ping
//! protected, a dead pooled connection after a restart, is handled instead by
//! (1) a cheap validity check only for connections idle longer than
//! [`IDLE_CHECK`] and (2) one retry on a fresh connection where that is safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

use super::CONNECT_TIMEOUT;
use super::connect::{ConnectError, bounded, pool_cause};
use super::hooks::Hooks;
use super::{Error, Result, Row, Service};

/// Connections idle longer than this are checked before use.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Per-connection prepared statements kept at most (dynamic SQL is cleared).
const STATEMENT_CACHE: usize = 64;

pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    last_used: Instant,
    broken: bool,
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// r2d2_postgres' manager, wrapped to carry the statement cache and to
/// bound each connect as a whole.
pub(crate) struct PgManager(Arc<PostgresConnectionManager<NoTls>>);

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> std::result::Result<PgConn, ConnectError> {
        let manager = self.0.clone();
        let client = bounded(CONNECT_TIMEOUT, move || manager.connect())?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            last_used: Instant::now(),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), ConnectError> {
        self.0
            .is_valid(&mut conn.client)
            .map_err(|e| ConnectError(e.to_string()))
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// Pooled access to Postgres. Every statement is counted.
pub struct Db {
    pool: r2d2::Pool<PgManager>,
    url: String,
    hooks: Arc<Hooks>,
    count: AtomicU64,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    pub(crate) fn new(
        url: &str,
        config: postgres::Config,
        pool: r2d2::Builder<PgManager>,
        hooks: Arc<Hooks>,
    ) -> Db {
        let manager = PgManager(Arc::new(PostgresConnectionManager::new(config, NoTls)));
        Db {
            pool: pool.build_unchecked(manager),
            url: url.to_string(),
            hooks,
            count: AtomicU64::new(0),
        }
    }

    /// Runs a statement expected to return at most one row.
    pub fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.run(sql, false, |c, st| c.query_opt(st, params))
    }

    /// Runs a statement and returns all its rows.
    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.run(sql, false, |c, st| c.query(st, params))
    }

    /// Runs a statement and returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.run(sql, true, |c, st| c.execute(st, params))
    }

    /// Every statement sent to Postgres through this `Db` since the last
    /// reset, reads and writes alike. labkit's own housekeeping is not counted.
    pub fn query_count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn reset_counters(&self) {
        self.count.store(0, Ordering::SeqCst);
    }

    /// Benchmark only: runs `f` on the raw `postgres::Client` of a pooled
    /// connection, bypassing labkit (not counted, no hooks), so that labkit's
    /// own cost can be measured against the same server process.
    pub fn with_raw_client<T>(&self, f: impl FnOnce(&mut Client) -> T) -> Result<T> {
        let mut conn = self.checkout(false)?;
        let value = f(&mut conn.client);
        conn.last_used = Instant::now();
        Ok(value)
    }

    /// Connections this pool has open right now (idle and in use).
    pub fn open_connections(&self) -> u32 {
        self.pool.state().connections
    }

    fn run<T>(
        &self,
        sql: &str,
        write: bool,
        op: impl Fn(&mut Client, &Statement) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        self.hooks.check_open()?;
        if sql.trim().is_empty() {
            return Err(Error::InvalidInput("empty SQL statement".into()));
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        self.hooks.before_statement(sql);
        let result = self.send(sql, write, op);
        if result.is_ok() {
            // A statement parked after its result is still in progress for
            // its caller, so it stays "in flight" until released.
            self.hooks.after_statement(sql);
        }
        self.hooks.statement_done();
        result
    }

    fn send<T>(
        &self,
        sql: &str,
        write: bool,
        op: impl Fn(&mut Client, &Statement) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut retried = false;
        loop {
            let mut conn = self.checkout(retried)?;
            let mut prepared = false;
            let result = conn.statement(sql).and_then(|st| {
                prepared = true;
                op(&mut conn.client, &st)
            });
            match result {
                Ok(value) => {
                    conn.last_used = Instant::now();
                    return Ok(value);
                }
                Err(err) => {
                    let dead = conn.client.is_closed() || is_connection_loss(&err);
                    conn.broken |= dead;
                    // Retry once on a fresh connection when the statement
                    // cannot have run: a read, or a write that failed before
                    // it was sent (while preparing, or the server had already
                    // said it was shutting down this session).
                    let safe = !write || !prepared || is_shutdown_notice(&err);
                    if dead && safe && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(Error::postgres(&self.url, &err));
                }
            }
        }
    }

    /// A pooled connection, checked with one cheap round trip only if it sat
    /// idle long enough for the server to have gone away, or if `validate`
    /// (a retry after a lost connection: its pool-mates are likely dead too).
    fn checkout(&self, validate: bool) -> Result<r2d2::PooledConnection<PgManager>> {
        for _ in 0..=self.pool.max_size() {
            let mut conn = self
                .pool
                .get()
                .map_err(|e| Error::unreachable(Service::Postgres, &self.url, pool_cause(&e)))?;
            let fresh = !validate && conn.last_used.elapsed() < IDLE_CHECK;
            if fresh || conn.client.simple_query("").is_ok() {
                return Ok(conn);
            }
            conn.broken = true;
        }
        Err(Error::unreachable(
            Service::Postgres,
            &self.url,
            "every pooled connection was broken",
        ))
    }
}

pub(crate) fn is_connection_loss(err: &postgres::Error) -> bool {
    err.is_closed() || super::error::is_io(err) || is_shutdown_notice(err)
}

/// SQLSTATE class 57P: the server ended this session (restart, or
/// `pg_terminate_backend`) before reading our statement.
fn is_shutdown_notice(err: &postgres::Error) -> bool {
    err.as_db_error()
        .is_some_and(|db| db.code().code().starts_with("57P"))
}

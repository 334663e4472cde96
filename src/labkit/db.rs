//! `Db`: pooled Postgres with a statement counter and one round trip per
//! statement.
//!
//! Preparing the SQL text on every call would double the cost of a
//! primary-key SELECT, so every connection keeps its prepared statements
//! keyed by SQL text. Dead connections are handled by the pool discipline in
//! `pool.rs` (no ping per call).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

use super::connect::bounded;
use super::error::{Error, Service, is_io};
use super::pool::{Attempt, Connector, Pool};
use super::testkit::hooks::Hooks;
use super::{Result, Row};

/// Per-connection prepared statements kept at most (dynamic SQL is cleared).
const STATEMENT_CACHE: usize = 64;

pub(crate) struct PgConn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
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

/// Opens Postgres connections with r2d2_postgres' manager, each connect
/// bounded as a whole.
pub(crate) struct PgConnector {
    manager: Arc<PostgresConnectionManager<NoTls>>,
    url: String,
}

impl PgConnector {
    pub(crate) fn new(config: postgres::Config, url: &str) -> PgConnector {
        PgConnector {
            manager: Arc::new(PostgresConnectionManager::new(config, NoTls)),
            url: url.to_string(),
        }
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;

    fn connect(&self) -> Result<PgConn> {
        let manager = self.manager.clone();
        let url = self.url.clone();
        let client = bounded(
            Service::Postgres,
            &self.url,
            move || manager.connect(),
            move |e| Error::postgres(&url, e),
        )?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    fn check(&self, conn: &mut PgConn) -> bool {
        conn.client.simple_query("").is_ok()
    }

    fn is_closed(&self, conn: &PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Pooled access to Postgres. Every statement is counted.
pub struct Db {
    pool: Pool<PgConnector>,
    url: String,
    hooks: Arc<Hooks>,
    count: AtomicU64,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    pub(crate) fn new(connector: PgConnector, max_size: u32, hooks: Arc<Hooks>) -> Db {
        let url = connector.url.clone();
        Db {
            pool: Pool::new(connector, max_size, Service::Postgres, &url),
            url,
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

    /// Starts [`Db::query_count`] again at 0.
    pub fn reset_counters(&self) {
        self.count.store(0, Ordering::SeqCst);
    }

    /// The pool, for the grader's and the benchmark's raw access.
    pub(crate) fn pool(&self) -> &Pool<PgConnector> {
        &self.pool
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
        let result = self.pool.run(|conn| {
            let mut prepared = false;
            let result = conn.statement(sql).and_then(|st| {
                prepared = true;
                op(&mut conn.client, &st)
            });
            match result {
                Ok(value) => Attempt::Done(value),
                Err(err) => {
                    let lost = conn.client.is_closed() || is_connection_loss(&err);
                    // Safe to run again when the statement cannot have run:
                    // a read, or a write that failed before it was sent (while
                    // preparing, or the server had already said it was ending
                    // this session).
                    let retry_safe = !write || !prepared || is_shutdown_notice(&err);
                    Attempt::Failed {
                        error: Error::postgres(&self.url, err),
                        lost,
                        retry_safe,
                    }
                }
            }
        });
        if result.is_ok() {
            // A statement parked after its result is still in progress for
            // its caller, so it stays "in flight" until released.
            self.hooks.after_statement(sql);
        }
        self.hooks.statement_done();
        result
    }
}

pub(crate) fn is_connection_loss(err: &postgres::Error) -> bool {
    err.is_closed() || is_io(err) || is_shutdown_notice(err)
}

/// SQLSTATE class 57P: the server ended this session (restart, or
/// `pg_terminate_backend`) before reading our statement.
fn is_shutdown_notice(err: &postgres::Error) -> bool {
    err.code().is_some_and(|c| c.code().starts_with("57P"))
}

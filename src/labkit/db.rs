//! `Db`: pooled Postgres with a statement counter and one round trip per
//! statement.
//!
//! Preparing the SQL text on every call would double the cost of a
//! primary-key SELECT, so every connection keeps its prepared statements
//! keyed by SQL text. Dead connections are handled by the pool discipline in
//! `pool.rs` (no ping per call).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, Statement};

use super::config::PgTarget;
use super::connect::bounded;
use super::diagnose;
use super::error::{Cause, Error, Problem, Service, is_io};
use super::hooks::Hooks;
use super::pool::{Attempt, Connector, Pool};
use super::timeline::{self, Call, Reply};
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

/// Opens Postgres connections, each bounded as a whole, and makes an
/// isolated lab's private schema the `search_path` of each.
pub(crate) struct PgConnector {
    target: Arc<PgTarget>,
    url: String,
    service: Service,
    /// Set when the `Db` is dropped. r2d2 opens connections on a thread of
    /// its own, which may still be connecting when the lab, and then its
    /// schema, are gone: that connection's missing schema is the lab's end,
    /// not a pooler's doing.
    retired: Arc<AtomicBool>,
}

impl PgConnector {
    pub(crate) fn new(target: PgTarget, url: &str, service: Service) -> PgConnector {
        PgConnector {
            target: Arc::new(target),
            url: url.to_string(),
            service,
            retired: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One connection outside any pool (labkit's own housekeeping), bounded as
/// a whole, its failure told as [`PgConnector`]'s are.
pub(crate) fn connect_client(target: PgTarget, url: &str, service: Service) -> Result<Client> {
    let connector = PgConnector::new(target, url, service);
    connector.connect().map(|conn| conn.client)
}

/// Why a connect failed: the client's error, or the private schema not in
/// effect once set (then `current_schema()` as the server saw it).
enum ConnectFailure {
    Client(postgres::Error),
    SchemaNotInEffect(Option<String>),
}

impl From<postgres::Error> for ConnectFailure {
    fn from(e: postgres::Error) -> ConnectFailure {
        ConnectFailure::Client(e)
    }
}

/// Makes `schema` the connection's `search_path` and checks, in the same
/// round trip, that it is in effect: `current_schema()` names it only if
/// the schema exists there and the setting holds. A connection that reached
/// another database (a pooler routing elsewhere), or whose settings do not
/// stick, fails here, loudly, rather than read `public.users` later.
///
/// Not on a replica: it may not have replayed the schema's creation yet
/// when its first connection opens (`Db::wait_ready` waits for that, on
/// this very connection). It is a copy of the primary, whose connections
/// make the check.
fn enter_schema(
    client: &mut Client,
    schema: &str,
    verify: bool,
) -> std::result::Result<(), ConnectFailure> {
    if !verify {
        client.batch_execute(&format!("SET search_path TO \"{schema}\""))?;
        return Ok(());
    }
    let messages = client.simple_query(&format!(
        "SET search_path TO \"{schema}\"; SELECT current_schema()::text"
    ))?;
    let current = messages.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
        _ => None,
    });
    match current {
        Some(Some(name)) if name == schema => Ok(()),
        other => Err(ConnectFailure::SchemaNotInEffect(other.flatten())),
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;

    fn connect(&self) -> Result<PgConn> {
        let target = self.target.clone();
        let (url, service) = (self.url.clone(), self.service);
        let why = self.target.clone();
        let retired = self.retired.clone();
        let client = bounded(
            self.service,
            &self.url,
            move || {
                let mut client = target.connect()?;
                if let Some(schema) = &target.schema {
                    enter_schema(&mut client, schema, service != Service::Replica)?;
                }
                Ok(client)
            },
            move |failure| match failure {
                ConnectFailure::Client(e) => {
                    diagnose::postgres_connect(service, &url, &why.config, e)
                }
                ConnectFailure::SchemaNotInEffect(_) if retired.load(Ordering::SeqCst) => {
                    Error::unreachable(
                        service,
                        &url,
                        Problem::Down,
                        Cause::text(
                            "the lab was dropped, with its schema, while this connection opened",
                        ),
                    )
                }
                ConnectFailure::SchemaNotInEffect(current) => Error::unreachable(
                    service,
                    &url,
                    Problem::Pooler,
                    Cause::text(format!(
                        "search_path was set to the lab's schema {} on a new connection, yet its current_schema() was {}",
                        why.schema.as_deref().unwrap_or_default(),
                        current.as_deref().map_or(
                            "none: that schema is not on the server this connection reached".into(),
                            |c| format!("{c:?}")
                        )
                    )),
                ),
            },
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

/// Pooled access to Postgres, or to its read replica. Every statement is
/// counted.
pub struct Db {
    backend: Backend,
    url: String,
    service: Service,
    hooks: Arc<Hooks>,
    count: AtomicU64,
    ready: Option<ReadyGate>,
}

enum Backend {
    Pool(Pool<PgConnector>),
    /// No server is configured (Part 4's replica, until one runs): every
    /// call fails with this error, which says how to start one.
    Missing(Error),
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Backend::Pool(pool) = &self.backend {
            pool.connector().retired.store(true, Ordering::SeqCst);
        }
    }
}

/// A replica is ready for a lab once it has replayed the lab's own setup
/// (its private schema and seed): until then, the schema is not there yet.
struct ReadyGate {
    /// The primary's WAL position right after the setup.
    lsn: String,
    ready: AtomicBool,
    /// One waiter polls; the others wait for it.
    polling: Mutex<()>,
}

/// How long a replica may take to replay a lab's setup (its apply delay
/// included) before labkit gives up.
const READY_LIMIT: Duration = Duration::from_secs(15);

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Db {
    pub(crate) fn new(connector: PgConnector, max_size: u32, hooks: Arc<Hooks>) -> Db {
        let (url, service) = (connector.url.clone(), connector.service);
        Db {
            backend: Backend::Pool(Pool::new(connector, max_size, service, &url)),
            url,
            service,
            hooks,
            count: AtomicU64::new(0),
            ready: None,
        }
    }

    /// A replica, usable once it has replayed the primary up to `lsn`.
    pub(crate) fn replica(
        connector: PgConnector,
        max_size: u32,
        hooks: Arc<Hooks>,
        lsn: Option<String>,
    ) -> Db {
        let mut db = Db::new(connector, max_size, hooks);
        db.ready = lsn.map(|lsn| ReadyGate {
            lsn,
            ready: AtomicBool::new(false),
            polling: Mutex::new(()),
        });
        db
    }

    /// A `Db` with nothing behind it: every call fails with `why`.
    pub(crate) fn missing(service: Service, why: &str, hooks: Arc<Hooks>) -> Db {
        Db {
            backend: Backend::Missing(Error::unreachable(
                service,
                "(none)",
                Problem::NotConfigured,
                Cause::text(why),
            )),
            url: String::new(),
            service,
            hooks,
            count: AtomicU64::new(0),
            ready: None,
        }
    }

    /// Runs a statement expected to return at most one row.
    pub fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        self.run(
            (sql, params),
            false,
            |c, st| c.query_opt(st, params),
            |row| rows_reply(row.as_slice()),
        )
    }

    /// Runs a statement and returns all its rows.
    pub fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.run(
            (sql, params),
            false,
            |c, st| c.query(st, params),
            |rows| rows_reply(rows),
        )
    }

    /// Runs a statement and returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.run(
            (sql, params),
            true,
            |c, st| c.execute(st, params),
            |n| Reply::Changed(*n),
        )
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
    pub(crate) fn pool(&self) -> Result<&Pool<PgConnector>> {
        match &self.backend {
            Backend::Pool(pool) => Ok(pool),
            Backend::Missing(why) => Err(why.clone()),
        }
    }

    /// Waits, once, until a replica has replayed the lab's setup.
    fn wait_ready(&self, pool: &Pool<PgConnector>) -> Result<()> {
        let Some(gate) = &self.ready else {
            return Ok(());
        };
        if gate.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = gate.polling.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + READY_LIMIT;
        while !gate.ready.load(Ordering::Acquire) {
            let replayed: Option<bool> = pool.run(|conn| {
                match conn.client.query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&gate.lsn],
                ) {
                    Ok(row) => Attempt::Done(row.get(0)),
                    Err(err) => self.failed(conn, err, true),
                }
            })?;
            match replayed {
                Some(true) => gate.ready.store(true, Ordering::Release),
                Some(false) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some(false) => {
                    return Err(Error::unreachable(
                        self.service,
                        &self.url,
                        Problem::Down,
                        Cause::text(format!(
                            "it had not replayed this lab's setup after {READY_LIMIT:?}; does it stream from the server DATABASE_URL names?"
                        )),
                    ));
                }
                None => {
                    return Err(Error::unreachable(
                        self.service,
                        &self.url,
                        Problem::Down,
                        Cause::text(
                            "the server there is not a standby (pg_last_wal_replay_lsn() is NULL)",
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A failed try, for the pool: whether the connection is gone with it.
    fn failed<T>(&self, conn: &PgConn, err: postgres::Error, retry_safe: bool) -> Attempt<T> {
        Attempt::Failed {
            lost: conn.client.is_closed() || is_connection_loss(&err),
            retry_safe,
            error: Error::pg(self.service, &self.url, err),
        }
    }

    /// Runs one statement (`statement`: its SQL and parameters); `told`
    /// says what its result was, for the timeline.
    fn run<T>(
        &self,
        statement: (&str, Params<'_>),
        write: bool,
        op: impl Fn(&mut Client, &Statement) -> std::result::Result<T, postgres::Error>,
        told: impl FnOnce(&T) -> Reply,
    ) -> Result<T> {
        let (sql, params) = statement;
        self.hooks.check_open()?;
        if sql.trim().is_empty() {
            return Err(Error::InvalidInput("empty SQL statement".into()));
        }
        let pool = self.pool()?;
        self.wait_ready(pool)?;
        let replica = self.service == Service::Replica;
        if let Err(e) = self.hooks.check_read(sql, self.service) {
            timeline::record(self.hooks.space(), || {
                (traced(sql, params, replica), timeline::failed(&e))
            });
            return Err(e);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
        // Before the hook: a statement held before it is sent was sent, as
        // far as its caller knows.
        let sent = timeline::is_on().then(Instant::now);
        self.hooks.before_statement(sql, replica);
        let result = self.send(pool, sql, write, op);
        // Before the hook after it: a statement parked there shows its
        // result first, then the park.
        timeline::record_sent(self.hooks.space(), sent, || {
            (traced(sql, params, replica), timeline::reply(&result, told))
        });
        if result.is_ok() {
            // A statement parked after its result is still in progress for
            // its caller, so it stays "in flight" until released.
            self.hooks.after_statement(sql, replica);
        }
        self.hooks.statement_done();
        result
    }

    /// Prepares (once per connection) and runs `sql` on a pooled
    /// connection, retried on another when that is safe.
    fn send<T>(
        &self,
        pool: &Pool<PgConnector>,
        sql: &str,
        write: bool,
        op: impl Fn(&mut Client, &Statement) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        pool.run(|conn| {
            let mut prepared = false;
            let result = conn.statement(sql).and_then(|st| {
                prepared = true;
                op(&mut conn.client, &st)
            });
            match result {
                Ok(value) => Attempt::Done(value),
                Err(err) => {
                    // Safe to run again when the statement cannot have run:
                    // a read, or a write that failed before it was sent (while
                    // preparing, or the server had already said it was ending
                    // this session).
                    let retry_safe = !write || !prepared || is_shutdown_notice(&err);
                    self.failed(conn, err, retry_safe)
                }
            }
        })
    }
}

/// A statement as the timeline keeps it.
fn traced(sql: &str, params: Params<'_>, replica: bool) -> Call {
    Call::Statement {
        sql: timeline::clip(sql),
        params: params
            .iter()
            .map(|p| timeline::clip(&format!("{p:?}")))
            .collect(),
        replica,
    }
}

/// A read's rows for the timeline: how many, and the first one's plan.
fn rows_reply(rows: &[Row]) -> Reply {
    Reply::Rows {
        n: rows.len(),
        plan: rows
            .first()
            .and_then(|r| r.try_get::<_, String>("plan").ok()),
    }
}

pub(crate) fn is_connection_loss(err: &postgres::Error) -> bool {
    err.is_closed() || is_io(err) || is_shutdown_notice(err) || is_fatal(err)
}

/// A FATAL (or PANIC) error ends the session whatever its SQLSTATE: a
/// standby ends a reader's session this way when replaying the primary's
/// cleanup conflicts with it (40001, "conflict with recovery").
pub(crate) fn is_fatal(err: &postgres::Error) -> bool {
    use postgres::error::Severity;
    let Some(db) = err.as_db_error() else {
        return false;
    };
    match db.parsed_severity() {
        Some(s) => matches!(s, Severity::Fatal | Severity::Panic),
        // PgBouncer's own errors carry only the severity field that a
        // server may translate, and PgBouncer never does.
        None => matches!(db.severity(), "FATAL" | "PANIC"),
    }
}

/// SQLSTATE class 57P: the server ended this session (restart, or
/// `pg_terminate_backend`) before reading our statement.
fn is_shutdown_notice(err: &postgres::Error) -> bool {
    err.code().is_some_and(|c| c.code().starts_with("57P"))
}

//! Test hooks: slowed statements, parked statements and cache calls,
//! injected failures (a failing cache, failing reads, failing removals), and
//! a lab that can be closed under a stuck thread.
//!
//! Learners never need these. They exist so that the concurrency checks are
//! deterministic instead of lucky: a race is *arranged* (park the reader right
//! after its SELECT, run the writer, release the reader) rather than hoped for
//! with sleeps. Every wait here is bounded, so a wrong answer can make a check
//! fail but never hang.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::labkit::timeline::{self, Call, Reply};
use crate::labkit::{Error, Result, Service};

/// A parked statement is let go after this long even if nobody releases it,
/// so that a check that failed (and never released) cannot hang the suite.
pub const PARK_LIMIT: Duration = Duration::from_secs(8);

/// When a parked statement stops: before it is sent, or after its result came
/// back (the caller has the rows but has not acted on them yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Before,
    After,
}

/// Which calls a trap catches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Matcher {
    /// Reads: statements starting with SELECT, WITH, VALUES, TABLE or SHOW.
    Read,
    /// Everything else (UPDATE, INSERT, DELETE, …), whatever SQL it uses.
    Write,
    /// Reads sent to the lab's replica (Part 4) only.
    ReplicaRead,
    /// A cache call that removed this key (`delete` or `invalidate`), as
    /// the learner names it.
    Delete(String),
    /// A cache call that writes this key's value (`set_json`, or
    /// `fill_with_lease`, refused or not).
    Fill(String),
    /// A cache call that reads this key's value (`get_json`, `exists`).
    Look(String),
    /// A request for this key's lease (`try_lease`).
    Lease(String),
}

/// What a trap is offered: a statement, or a cache call on a key.
pub(crate) enum Action<'a> {
    Statement { sql: &'a str, replica: bool },
    Delete(&'a str),
    Fill(&'a str),
    Look(&'a str),
    Lease(&'a str),
}

/// Which statement to park: the next one that matches, in the given phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trap {
    pub phase: Phase,
    pub matcher: Matcher,
}

impl Trap {
    /// The next write, before it is sent, whatever SQL the learner wrote.
    pub fn before_write() -> Trap {
        Trap {
            phase: Phase::Before,
            matcher: Matcher::Write,
        }
    }
    /// The next write, once Postgres has done it.
    pub fn after_write() -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Write,
        }
    }
    /// The next read, after its rows came back.
    pub fn after_read() -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Read,
        }
    }
    /// The next cache call that removes `key`, once it has.
    pub fn after_delete(key: &str) -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Delete(key.to_string()),
        }
    }
    /// The next read sent to the replica, before it is sent.
    pub fn before_replica_read() -> Trap {
        Trap {
            phase: Phase::Before,
            matcher: Matcher::ReplicaRead,
        }
    }
    /// The next cache call that writes `key`'s value, before it is sent:
    /// a leader holding its fill.
    pub fn before_fill(key: &str) -> Trap {
        Trap {
            phase: Phase::Before,
            matcher: Matcher::Fill(key.to_string()),
        }
    }
    /// The next cache call that writes `key`'s value, once it has.
    pub fn after_fill(key: &str) -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Fill(key.to_string()),
        }
    }
    /// The next lease request for `key`, before it is sent.
    pub fn before_lease(key: &str) -> Trap {
        Trap {
            phase: Phase::Before,
            matcher: Matcher::Lease(key.to_string()),
        }
    }
    /// The next cache call that reads `key`'s value, once it has: a waiter
    /// looking again.
    pub fn after_look(key: &str) -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Look(key.to_string()),
        }
    }
    /// What it catches, for the timeline: "fill of user:1", "write".
    pub fn describe(&self) -> String {
        match &self.matcher {
            Matcher::Read => "read of Postgres".into(),
            Matcher::Write => "write to Postgres".into(),
            Matcher::ReplicaRead => "read of the replica".into(),
            Matcher::Delete(key) => format!("removal of {key}"),
            Matcher::Fill(key) => format!("fill of {key}"),
            Matcher::Look(key) => format!("look at {key}"),
            Matcher::Lease(key) => format!("lease request on {key}"),
        }
    }

    /// Whether this trap catches `action` in `phase`.
    pub(crate) fn matches(&self, phase: Phase, action: &Action<'_>) -> bool {
        if self.phase != phase {
            return false;
        }
        let (sql, replica) = match (action, &self.matcher) {
            (Action::Delete(key), Matcher::Delete(wanted))
            | (Action::Fill(key), Matcher::Fill(wanted))
            | (Action::Look(key), Matcher::Look(wanted))
            | (Action::Lease(key), Matcher::Lease(wanted)) => return key == wanted,
            (Action::Statement { sql, replica }, _) => (*sql, *replica),
            _ => return false,
        };
        match &self.matcher {
            Matcher::Read => is_read(sql),
            Matcher::ReplicaRead => replica && is_read(sql),
            Matcher::Write => !is_read(sql),
            Matcher::Delete(_) | Matcher::Fill(_) | Matcher::Look(_) | Matcher::Lease(_) => false,
        }
    }
}

/// Whether a statement only reads: it starts with SELECT, WITH, VALUES,
/// TABLE or SHOW.
pub(crate) fn is_read(sql: &str) -> bool {
    let sql = sql.trim_start();
    ["SELECT", "WITH", "VALUES", "TABLE", "SHOW"]
        .iter()
        .any(|verb| {
            sql.len() >= verb.len()
                && sql.is_char_boundary(verb.len())
                && sql[..verb.len()].eq_ignore_ascii_case(verb)
        })
}

#[derive(Default)]
struct State {
    armed: Option<(u64, Trap)>,
    /// Cache calls that match fail instead of running: once, or (`false`)
    /// until turned off.
    failing: Option<(Trap, bool)>,
    /// Ids of traps that have caught a statement.
    sprung: Vec<u64>,
    /// Whom each trap caught, for the timeline's "releases" line.
    caught: Vec<(u64, String)>,
    /// Traps with an id at or below this are released.
    released_upto: u64,
    next_id: u64,
}

/// The hooks of one [`Lab`](crate::labkit::Lab), shared by its `Db` and `Cache`.
#[derive(Default)]
pub struct Hooks {
    delay_us: AtomicU64,
    started: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    fail_cache: AtomicBool,
    fail_reads: AtomicBool,
    fail_primary_reads: AtomicBool,
    fail_removals: AtomicBool,
    removals_failed: AtomicU64,
    looks: AtomicU64,
    closed: AtomicBool,
    /// Set once anything waits on `state`, so the fast path stays lock-free.
    watched: AtomicBool,
    /// The lab's private space, for the timeline (empty when shared).
    space: String,
    state: Mutex<State>,
    changed: Condvar,
}

impl Hooks {
    /// The hooks of the lab of private space `space` (empty when shared).
    pub(crate) fn new(space: &str) -> Hooks {
        Hooks {
            space: space.to_string(),
            ..Hooks::default()
        }
    }

    /// The lab's private space (empty when shared).
    pub(crate) fn space(&self) -> &str {
        &self.space
    }

    /// Sleeps `delay` before every statement, before it takes a pooled
    /// connection (so a slowed statement holds none while it waits): a
    /// remote database, or a wide window for a stampede.
    pub fn slow_statements(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
        self.note(|| format!("slows every statement by {delay:?}"));
    }

    /// Tells the timeline what the grader just arranged (it shows as a step
    /// of actor `grader`).
    fn note(&self, what: impl FnOnce() -> String) {
        if timeline::is_on() {
            timeline::record_in(&self.space, "grader", Call::Note(what()), Reply::Done);
        }
    }

    /// `fail` as the timeline tells it: "makes every X fail", "lets every X
    /// work again".
    fn note_failing(&self, fail: bool, what: &str) {
        self.note(|| match fail {
            true => format!("makes every {what} fail"),
            false => format!("lets every {what} work again"),
        });
    }

    /// Makes every cache call fail (as if Redis were down) until turned off.
    pub fn fail_cache(&self, fail: bool) {
        self.fail_cache.store(fail, Ordering::SeqCst);
        self.note_failing(fail, "Redis call");
    }

    /// Makes every read statement fail (as if Postgres refused it, or the
    /// connection broke mid-query) until turned off, on the primary and the
    /// replica alike.
    pub fn fail_reads(&self, fail: bool) {
        self.fail_reads.store(fail, Ordering::SeqCst);
        self.note_failing(fail, "read of Postgres");
    }

    /// Makes every read statement sent to the primary fail until turned
    /// off, while the replica answers: a primary in trouble during Part 4's
    /// window after a write.
    pub fn fail_primary_reads(&self, fail: bool) {
        self.fail_primary_reads.store(fail, Ordering::SeqCst);
        self.note_failing(fail, "read of the primary");
    }

    /// Makes every cache call that removes a key (`delete`, `invalidate`)
    /// fail until turned off; other cache calls work.
    pub fn fail_removals(&self, fail: bool) {
        self.fail_removals.store(fail, Ordering::SeqCst);
        self.note_failing(fail, "removal from Redis");
    }

    /// Makes the next cache call that matches `trap` (in its phase: `Before`
    /// fails it unsent) fail once, as if Redis had refused that one command:
    /// one fill, one lease request, one removal. Other calls work.
    pub fn fail_next(&self, trap: Trap) {
        self.watched.store(true, Ordering::SeqCst);
        self.note(|| format!("makes the next {} fail", trap.describe()));
        self.lock().failing = Some((trap, true));
    }

    /// Makes every cache call that matches `trap` fail, until
    /// `fail_every(None)`: one kind of call broken, the others working.
    pub fn fail_every(&self, trap: Option<Trap>) {
        self.watched.store(true, Ordering::SeqCst);
        match &trap {
            Some(t) => self.note_failing(true, &t.describe()),
            None => self.note(|| "lets every cache call work again".into()),
        }
        self.lock().failing = trap.map(|t| (t, false));
    }

    /// How many looks at cached values (`get_json`, `exists`) were made
    /// since something was first parked or failed here: a sign that readers
    /// are still making progress.
    pub fn looks(&self) -> u64 {
        self.looks.load(Ordering::SeqCst)
    }

    /// How many removals [`Hooks::fail_removals`] has failed so far.
    pub fn removals_failed(&self) -> u64 {
        self.removals_failed.load(Ordering::SeqCst)
    }

    /// Closes the lab: every later call fails. A check calls this when a
    /// learner's thread is stuck, so that the thread errors out and exits.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.release_all();
    }

    /// Statements started since the lab was made (never reset).
    pub fn statements_started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// The most statements that were in flight at once since the last
    /// [`Hooks::reset_peak`]: 1 means they ran one after another.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    pub fn reset_peak(&self) {
        self.peak_in_flight.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `n` statements have started; false on timeout.
    pub fn wait_for_statements(&self, n: u64, timeout: Duration) -> bool {
        self.watched.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while self.statements_started() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Arms a trap: the next statement that matches stops until the returned
    /// [`Parked`] is released or dropped (or [`PARK_LIMIT`] passes).
    pub fn park(&self, trap: Trap) -> Parked<'_> {
        self.watched.store(true, Ordering::SeqCst);
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.armed = Some((id, trap));
        Parked { hooks: self, id }
    }

    fn release_all(&self) {
        let mut state = self.lock();
        state.armed = None;
        state.released_upto = state.next_id;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_cache(&self) -> Result<()> {
        self.check_open()?;
        if self.fail_cache.load(Ordering::Relaxed) {
            return Err(Error::Injected {
                service: Service::Redis,
            });
        }
        Ok(())
    }

    /// Called by `Db` before a read is sent: fails it if reads are to fail.
    pub(crate) fn check_read(&self, sql: &str, service: Service) -> Result<()> {
        let primary = service != Service::Replica;
        if (self.fail_reads.load(Ordering::Relaxed)
            || (primary && self.fail_primary_reads.load(Ordering::Relaxed)))
            && is_read(sql)
        {
            return Err(Error::Injected { service });
        }
        Ok(())
    }

    /// Called by `Cache` before it removes a key.
    pub(crate) fn check_removal(&self) -> Result<()> {
        if self.fail_removals.load(Ordering::Relaxed) {
            self.removals_failed.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Injected {
                service: Service::Redis,
            });
        }
        Ok(())
    }

    /// Called by `Db` just before a statement is sent.
    pub(crate) fn before_statement(&self, sql: &str, replica: bool) {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        if self.watched.load(Ordering::SeqCst) {
            self.maybe_park(Phase::Before, &Action::Statement { sql, replica });
        }
        let delay = self.delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
    }

    /// Called by `Db` when a statement has finished, whatever its outcome.
    pub(crate) fn statement_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Called by `Db` after a statement's result came back.
    pub(crate) fn after_statement(&self, sql: &str, replica: bool) {
        if self.watched.load(Ordering::SeqCst) {
            self.maybe_park(Phase::After, &Action::Statement { sql, replica });
        }
    }

    /// Called by `Cache` around its calls on a key (the learner's name for
    /// it): before it is sent, or once it has been done. Parks it if a trap
    /// says so; then, before it is sent, fails it if [`Hooks::fail_next`]
    /// says so.
    pub(crate) fn cache_call(&self, phase: Phase, action: Action<'_>) -> Result<()> {
        if !self.watched.load(Ordering::SeqCst) {
            return Ok(());
        }
        if matches!(action, Action::Look(_)) {
            self.looks.fetch_add(1, Ordering::SeqCst);
        }
        self.maybe_park(phase, &action);
        let mut state = self.lock();
        if let Some((trap, once)) = &state.failing
            && trap.matches(phase, &action)
        {
            if *once {
                state.failing = None;
            }
            return Err(Error::Injected {
                service: Service::Redis,
            });
        }
        Ok(())
    }

    fn maybe_park(&self, phase: Phase, action: &Action<'_>) {
        let mut state = self.lock();
        let id = match &state.armed {
            Some((id, trap)) if trap.matches(phase, action) => *id,
            _ => {
                // Wake `wait_for_statements` callers under the lock, so no
                // notification is lost between their check and their wait.
                self.changed.notify_all();
                return;
            }
        };
        state.armed = None;
        state.sprung.push(id);
        if timeline::is_on() {
            let who = timeline::actor().map_or("a thread".into(), |a| a.to_string());
            let what = holding(&who, phase, action);
            timeline::record_in(&self.space, "grader", Call::Holds(what), Reply::Done);
            state.caught.push((id, who));
        }
        self.changed.notify_all();
        let deadline = Instant::now() + PARK_LIMIT;
        while state.released_upto < id {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A trap armed by [`Hooks::park`]. Dropping it releases the statement.
#[must_use = "dropping a Parked releases it at once"]
pub struct Parked<'a> {
    hooks: &'a Hooks,
    id: u64,
}

impl Parked<'_> {
    /// Waits until a statement is parked here; false on timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.hooks.lock();
        while !state.sprung.contains(&self.id) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .hooks
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Whether a statement has been caught (without waiting).
    pub fn is_parked(&self) -> bool {
        self.hooks.lock().sprung.contains(&self.id)
    }

    /// Lets the parked statement go on (or disarms the trap if none came).
    pub fn release(self) {}
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let mut state = self.hooks.lock();
        if state.armed.as_ref().is_some_and(|(id, _)| *id == self.id) {
            state.armed = None;
        }
        state.released_upto = state.released_upto.max(self.id);
        if let Some(at) = state.caught.iter().position(|(id, _)| *id == self.id) {
            let (_, who) = state.caught.swap_remove(at);
            let what = format!("releases {who}");
            let space = &self.hooks.space;
            timeline::record_in(space, "grader", Call::Releases(what), Reply::Done);
        }
        self.hooks.changed.notify_all();
    }
}

/// "holds writer before its UPDATE is sent": what a trap caught, for the
/// timeline.
fn holding(who: &str, phase: Phase, action: &Action<'_>) -> String {
    let what = match action {
        Action::Statement { sql, replica } => {
            let verb = sql.split_whitespace().next().unwrap_or("statement");
            let on = if *replica { " on the replica" } else { "" };
            format!("{}{on}", verb.to_ascii_uppercase())
        }
        Action::Delete(key) => format!("removal of {key}"),
        Action::Fill(key) => format!("fill of {key}"),
        Action::Look(key) => format!("look at {key}"),
        Action::Lease(key) => format!("lease request on {key}"),
    };
    match phase {
        Phase::Before => format!("holds {who} before its {what} is sent"),
        Phase::After => format!("holds {who} right after its {what}"),
    }
}

// Service-free: `cargo test --lib` (docs/MAINTAINERS.md).
#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Action<'_> {
        Action::Statement {
            sql,
            replica: false,
        }
    }

    fn on_replica(sql: &str) -> Action<'_> {
        Action::Statement { sql, replica: true }
    }

    #[test]
    fn is_read_knows_the_reading_verbs_in_any_case_after_blanks() {
        for sql in [
            "SELECT 1",
            "  select name FROM users",
            "\n\tWith x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1)",
            "table users",
            "SHOW server_version",
        ] {
            assert!(is_read(sql), "{sql:?} reads");
        }
        for sql in [
            "UPDATE users SET plan = 'pro'",
            "insert into users VALUES (1)",
            "DELETE FROM users",
            "SELEC",
            "",
            // A multi-byte character across a verb's length: no panic.
            "SELECé",
            "é",
        ] {
            assert!(!is_read(sql), "{sql:?} does not read");
        }
    }

    #[test]
    fn a_trap_catches_only_its_phase() {
        let read = Trap::after_read();
        assert!(read.matches(Phase::After, &statement("SELECT 1")));
        assert!(!read.matches(Phase::Before, &statement("SELECT 1")));
        let write = Trap::before_write();
        assert!(write.matches(Phase::Before, &statement("UPDATE t SET x = 1")));
        assert!(!write.matches(Phase::After, &statement("UPDATE t SET x = 1")));
    }

    #[test]
    fn statement_traps_sort_reads_writes_and_replica_reads() {
        let (read, write) = (Trap::after_read(), Trap::after_write());
        for sql in ["SELECT 1", " with x as (select 1) select 1"] {
            assert!(read.matches(Phase::After, &statement(sql)), "{sql}");
            assert!(read.matches(Phase::After, &on_replica(sql)), "{sql}");
            assert!(!write.matches(Phase::After, &statement(sql)), "{sql}");
        }
        // A write is whatever does not read, whatever SQL the learner wrote.
        for sql in [
            "UPDATE t SET x = 1",
            "insert into t values (1)",
            "MERGE INTO t",
        ] {
            assert!(write.matches(Phase::After, &statement(sql)), "{sql}");
            assert!(!read.matches(Phase::After, &statement(sql)), "{sql}");
        }
        let replica = Trap::before_replica_read();
        assert!(replica.matches(Phase::Before, &on_replica("SELECT 1")));
        assert!(!replica.matches(Phase::Before, &statement("SELECT 1")));
        assert!(!replica.matches(Phase::Before, &on_replica("UPDATE t SET x = 1")));
    }

    /// A kind of cache call, on a key.
    type Call = fn(&'static str) -> Action<'static>;

    #[test]
    fn key_traps_catch_their_call_on_their_key_only() {
        let cases: [(Trap, Call, Phase); 5] = [
            (Trap::after_delete("user:1"), Action::Delete, Phase::After),
            (Trap::before_fill("user:1"), Action::Fill, Phase::Before),
            (Trap::after_fill("user:1"), Action::Fill, Phase::After),
            (Trap::after_look("user:1"), Action::Look, Phase::After),
            (Trap::before_lease("user:1"), Action::Lease, Phase::Before),
        ];
        let kinds: [Call; 4] = [Action::Delete, Action::Fill, Action::Look, Action::Lease];
        for (trap, own, phase) in cases {
            assert!(trap.matches(phase, &own("user:1")), "{trap:?}");
            assert!(
                !trap.matches(phase, &own("user:10")),
                "{trap:?}: another key"
            );
            assert!(!trap.matches(phase, &own("user:")), "{trap:?}: a prefix");
            // Other kinds of call on the same key, and statements, pass.
            let caught = kinds
                .iter()
                .filter(|kind| trap.matches(phase, &kind("user:1")))
                .count();
            assert_eq!(caught, 1, "{trap:?} catches one kind of call");
            assert!(!trap.matches(phase, &statement("SELECT 1")), "{trap:?}");
            assert!(
                !trap.matches(phase, &statement("UPDATE t SET x = 1")),
                "{trap:?}"
            );
        }
        // And statement traps let cache calls pass.
        for trap in [
            Trap::after_read(),
            Trap::after_write(),
            Trap::before_write(),
        ] {
            for kind in kinds {
                assert!(!trap.matches(trap.phase, &kind("user:1")), "{trap:?}");
            }
        }
    }

    #[test]
    fn injected_read_failures_spare_writes_and_the_replica_when_asked() {
        let hooks = Hooks::default();
        let read = "SELECT 1";
        let write = "UPDATE t SET x = 1";
        assert!(hooks.check_read(read, Service::Postgres).is_ok());
        hooks.fail_primary_reads(true);
        assert!(matches!(
            hooks.check_read(read, Service::Postgres),
            Err(Error::Injected {
                service: Service::Postgres
            })
        ));
        assert!(hooks.check_read(read, Service::Replica).is_ok());
        assert!(hooks.check_read(write, Service::Postgres).is_ok());
        hooks.fail_primary_reads(false);
        hooks.fail_reads(true);
        assert!(hooks.check_read(read, Service::Replica).is_err());
        assert!(hooks.check_read(read, Service::Postgres).is_err());
        assert!(hooks.check_read(write, Service::Postgres).is_ok());
        hooks.fail_reads(false);
        assert!(hooks.check_read(read, Service::Replica).is_ok());
    }

    #[test]
    fn a_closed_lab_fails_every_call() {
        let hooks = Hooks::default();
        assert!(hooks.check_open().is_ok() && hooks.check_cache().is_ok());
        hooks.close();
        assert!(matches!(hooks.check_open(), Err(Error::Closed)));
        assert!(matches!(hooks.check_cache(), Err(Error::Closed)));
    }
}

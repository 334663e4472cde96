//! Test hooks: slowed statements, parked statements, a failing
//! cache, and a lab that can be closed under a stuck thread.
//!
//! Learners never need these. They exist so that the concurrency checks are
//! deterministic instead of lucky: a race is *arranged* (park the reader right
//! after its SELECT, run the writer, release the reader) rather than hoped for
//! with sleeps. Every wait here is bounded, so a wrong answer can make a check
//! fail but never hang.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::labkit::{Error, Result, Service};

/// A parked statement is let go after this long even if nobody releases it,
/// so that a check that failed (and never released) cannot hang the suite.
pub const PARK_LIMIT: Duration = Duration::from_secs(8);

/// When a parked statement stops: before it is sent, or after its result came
/// back (the caller has the rows but has not acted on them yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    After,
}

/// Which calls a trap catches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Statements whose SQL starts with this word (case-insensitive).
    Verb(String),
    /// Reads: statements starting with SELECT, WITH, VALUES, TABLE or SHOW.
    Read,
    /// Everything else (UPDATE, INSERT, DELETE, …), whatever SQL it uses.
    Write,
    /// A cache call that removed this key (`delete` or `invalidate`), as
    /// the learner names it.
    Delete(String),
}

/// What a trap is offered: a statement, or a cache key being removed.
enum Action<'a> {
    Statement(&'a str),
    Delete(&'a str),
}

/// Which statement to park: the next one that matches, in the given phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    pub phase: Phase,
    pub matcher: Matcher,
}

impl Trap {
    /// The next statement starting with `verb`, before it is sent.
    pub fn before(verb: &str) -> Trap {
        Trap {
            phase: Phase::Before,
            matcher: Matcher::Verb(verb.to_string()),
        }
    }
    /// The next statement starting with `verb`, after its result came back.
    pub fn after(verb: &str) -> Trap {
        Trap {
            phase: Phase::After,
            matcher: Matcher::Verb(verb.to_string()),
        }
    }
    /// The next write, before it is sent, whatever SQL the learner wrote.
    pub fn before_write() -> Trap {
        Trap {
            phase: Phase::Before,
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
    fn matches(&self, phase: Phase, action: &Action<'_>) -> bool {
        let sql = match (action, &self.matcher) {
            (Action::Delete(key), Matcher::Delete(wanted)) => {
                return self.phase == phase && key == wanted;
            }
            (Action::Delete(_), _) | (Action::Statement(_), Matcher::Delete(_)) => return false,
            (Action::Statement(sql), _) => *sql,
        };
        let starts = |verb: &str| {
            let sql = sql.trim_start();
            sql.len() >= verb.len()
                && sql.is_char_boundary(verb.len())
                && sql[..verb.len()].eq_ignore_ascii_case(verb)
        };
        let is_read = || {
            ["SELECT", "WITH", "VALUES", "TABLE", "SHOW"]
                .iter()
                .any(|v| starts(v))
        };
        self.phase == phase
            && match &self.matcher {
                Matcher::Verb(verb) => starts(verb),
                Matcher::Read => is_read(),
                Matcher::Write => !is_read(),
                Matcher::Delete(_) => false,
            }
    }
}

#[derive(Default)]
struct State {
    armed: Option<(u64, Trap)>,
    /// Ids of traps that have caught a statement.
    sprung: Vec<u64>,
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
    closed: AtomicBool,
    /// Set once anything waits on `state`, so the fast path stays lock-free.
    watched: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Hooks {
    /// Sleeps `delay` before every statement, holding its connection: a
    /// remote database, or a wide window for a stampede.
    pub fn slow_statements(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Makes every cache call fail (as if Redis were down) until turned off.
    pub fn fail_cache(&self, fail: bool) {
        self.fail_cache.store(fail, Ordering::SeqCst);
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

    /// Called by `Db` just before a statement is sent.
    pub(crate) fn before_statement(&self, sql: &str) {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        if self.watched.load(Ordering::SeqCst) {
            self.maybe_park(Phase::Before, &Action::Statement(sql));
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
    pub(crate) fn after_statement(&self, sql: &str) {
        if self.watched.load(Ordering::SeqCst) {
            self.maybe_park(Phase::After, &Action::Statement(sql));
        }
    }

    /// Called by `Cache` after it removed `key` (the learner's name for it).
    pub(crate) fn after_delete(&self, key: &str) {
        if self.watched.load(Ordering::SeqCst) {
            self.maybe_park(Phase::After, &Action::Delete(key));
        }
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
        self.hooks.changed.notify_all();
    }
}

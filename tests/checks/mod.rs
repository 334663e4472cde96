//! The one body of checks. Each check takes the answers to grade (a trait
//! object over the five learner functions) and returns an [`Outcome`] instead
//! of panicking, so the same code grades the learner (`cargo test`), the
//! reference (`--features solution`) and every entry of the mistakes
//! catalogue, which must be rejected.
//!
//! Rules every check follows:
//! - it asserts observable behaviour only (see LAB_CONTRACT.md, last section);
//! - it runs on a private `Lab::isolated()`;
//! - every wait is bounded: a wrong answer fails within [`BOUND`], and races
//!   are arranged with labkit's hooks, never with sleeps.

pub mod part1;
pub mod part2;
pub mod part3;

use std::any::Any;
use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::User;
use cache_aside_lab::labkit::hooks::{Parked, Trap};
use cache_aside_lab::labkit::{KeyLocks, Lab, Result};

/// No check waits longer than this for learner code.
pub const BOUND: Duration = Duration::from_secs(10);

/// The five functions a learner writes. The defaults are the reference
/// answers, so a catalogue entry overrides only what its mistake changes.
pub trait Answers: Send + Sync + 'static {
    /// Names these answers for a child process (the cross-process herd).
    fn id(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
    fn get_user_profile(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        crate::reference::get_user_profile(lab, user_id)
    }
    fn update_user_plan(&self, lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
        crate::reference::update_user_plan(lab, user_id, plan)
    }
    fn get_user_profile_singleflight(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        crate::reference::get_user_profile_singleflight(lab, user_id)
    }
    fn get_user_profile_leased(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        crate::reference::get_user_profile_leased(lab, user_id)
    }
    fn update_user_plan_leased(&self, lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
        crate::reference::update_user_plan_leased(lab, user_id, plan)
    }
}

/// The learner's answers in `src/lib.rs`.
pub struct Learner;

impl Answers for Learner {
    fn get_user_profile(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        cache_aside_lab::get_user_profile(lab, user_id)
    }
    fn update_user_plan(&self, lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
        cache_aside_lab::update_user_plan(lab, user_id, plan)
    }
    fn get_user_profile_singleflight(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        cache_aside_lab::get_user_profile_singleflight(lab, user_id)
    }
    fn get_user_profile_leased(&self, lab: &Lab, user_id: i32) -> Result<Option<User>> {
        cache_aside_lab::get_user_profile_leased(lab, user_id)
    }
    fn update_user_plan_leased(&self, lab: &Lab, user_id: i32, plan: &str) -> Result<()> {
        cache_aside_lab::update_user_plan_leased(lab, user_id, plan)
    }
}

/// The reference answers in `solution/reference.rs`.
pub struct Reference;

impl Answers for Reference {}

pub type Subject = &'static dyn Answers;
pub type CheckFn = fn(Subject) -> Outcome;
pub type Outcome = std::result::Result<(), Failure>;

/// Why a check rejected the answers: what happened, what should have
/// happened, and a one-line hint.
#[derive(Debug, Clone)]
pub enum Failure {
    Wrong {
        observed: String,
        expected: String,
        hint: String,
    },
    /// Learner code did not return within the harness' bound. A catalogue
    /// mistake must never be caught this way, only by behaviour.
    Hang(String),
    /// The lab itself could not start (services down): labkit's message
    /// already says what to do.
    Setup(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Wrong {
                observed,
                expected,
                hint,
            } => write!(f, "{observed}: {expected}. Hint: {hint}"),
            Failure::Hang(message) | Failure::Setup(message) => write!(f, "{message}"),
        }
    }
}

pub fn fail(
    observed: impl fmt::Display,
    expected: impl fmt::Display,
    hint: impl fmt::Display,
) -> Failure {
    Failure::Wrong {
        observed: observed.to_string(),
        expected: expected.to_string(),
        hint: hint.to_string(),
    }
}

pub fn ensure(ok: bool, failure: impl FnOnce() -> Failure) -> Outcome {
    if ok { Ok(()) } else { Err(failure()) }
}

/// How many times each check runs: `LAB_REPEAT=100` for the determinism
/// run (the reference and every catalogued mistake, 100 times each).
pub fn repeat() -> usize {
    std::env::var("LAB_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Runs a check as a `#[test]`: a failure becomes the test's panic message.
pub fn grade(subject: Subject, check: CheckFn) {
    for run in 1..=repeat() {
        if let Err(failure) = check(subject) {
            let of = if repeat() > 1 {
                format!(" (run {run} of {})", repeat())
            } else {
                String::new()
            };
            panic!("{failure}{of}");
        }
    }
}

/// A fresh private lab.
pub fn lab() -> std::result::Result<Arc<Lab>, Failure> {
    Lab::isolated()
        .map(Arc::new)
        .map_err(|e| Failure::Setup(e.to_string()))
}

/// The row as Postgres has it, read by the check itself. Resets the
/// statement counter, so call it before what you measure.
pub fn stored(lab: &Lab, user_id: i32) -> std::result::Result<Option<User>, Failure> {
    let row = lab
        .db
        .query_opt(
            "SELECT id, name, email, plan FROM users WHERE id = $1",
            &[&user_id],
        )
        .map_err(|e| Failure::Setup(e.to_string()))?;
    lab.db.reset_counters();
    Ok(row.map(|r| User::from_row(&r)))
}

/// `stored`, for a user the seed has.
pub fn seeded(lab: &Lab, user_id: i32) -> std::result::Result<User, Failure> {
    stored(lab, user_id)?.ok_or_else(|| Failure::Setup(format!("seed.sql has no user {user_id}")))
}

/// What the check itself sees in the cache (not counted as statements).
pub fn cached(lab: &Lab, key: &str) -> std::result::Result<(bool, Option<Duration>), Failure> {
    let setup = |e: cache_aside_lab::labkit::Error| Failure::Setup(e.to_string());
    Ok((
        lab.cache.exists(key).map_err(setup)?,
        lab.cache.ttl(key).map_err(setup)?,
    ))
}

/// Runs learner code with key locks private to `lab`, as its Redis keys are,
/// so that parallel tests never queue behind each other's locks.
fn in_scope<T>(lab: &Lab, f: impl FnOnce(&Lab) -> T) -> T {
    KeyLocks::scoped(lab.space_name().unwrap_or(""), || f(lab))
}

/// Learner code running on its own thread, so that a check can wait for it
/// with a bound, and so that a hang fails the check instead of the suite.
pub struct Pending<T> {
    what: String,
    lab: Arc<Lab>,
    rx: mpsc::Receiver<std::thread::Result<T>>,
    done: Option<std::thread::Result<T>>,
}

pub fn spawn<T: Send + 'static>(
    lab: &Arc<Lab>,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> Pending<T> {
    let (tx, rx) = mpsc::channel();
    let thread_lab = lab.clone();
    std::thread::spawn(move || {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_scope(&thread_lab, f)));
        let _ = tx.send(result);
    });
    Pending {
        what: what.into(),
        lab: lab.clone(),
        rx,
        done: None,
    }
}

impl<T> Pending<T> {
    /// Waits up to `timeout`. A panic in learner code (such as `todo!()`) is
    /// re-raised here, so the test shows the learner's own message.
    pub fn wait(mut self, timeout: Duration) -> std::result::Result<T, Failure> {
        let received = match self.done.take() {
            Some(result) => Ok(result),
            None => self.rx.recv_timeout(timeout),
        };
        match received {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => resume(panic),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                // Make the stuck thread's next labkit call fail, so it exits.
                self.lab.hooks().close();
                Err(Failure::Hang(format!(
                    "{} did not return within {timeout:?}: every call should return promptly. Hint: look for a lock taken twice on one thread, or a wait for a value nobody will write",
                    self.what
                )))
            }
        }
    }

    /// Whether it has finished, waiting at most `timeout` (it keeps running).
    pub fn finishes_within(&mut self, timeout: Duration) -> bool {
        if self.done.is_none() {
            self.done = self.rx.recv_timeout(timeout).ok();
        }
        self.done.is_some()
    }
}

fn resume<T>(panic: Box<dyn Any + Send>) -> T {
    std::panic::resume_unwind(panic)
}

/// Arms `trap`, starts `f` on its own thread, and waits until `f` is parked
/// on it. If `f` finishes without sending a matching statement, that is the
/// learner's mistake: fails with `missing`.
pub fn start_parked<'a, T: Send + 'static>(
    lab: &'a Arc<Lab>,
    trap: Trap,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
    missing: impl FnOnce() -> Failure,
) -> std::result::Result<(Parked<'a>, Pending<T>), Failure> {
    let parked = lab.hooks().park(trap);
    let mut pending = spawn(lab, what, f);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if parked.wait(Duration::from_millis(10)) {
            return Ok((parked, pending));
        }
        if pending.finishes_within(Duration::ZERO) && !parked.is_parked() {
            drop(parked);
            let _ = pending.wait(BOUND)?; // re-raises a panic such as todo!()
            return Err(missing());
        }
    }
    drop(parked);
    let _ = pending.wait(BOUND)?;
    Err(missing())
}

/// Calls learner code with the standard bound.
pub fn call<T: Send + 'static>(
    lab: &Arc<Lab>,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> std::result::Result<T, Failure> {
    spawn(lab, what, f).wait(BOUND)
}

/// Unwraps a learner `Result`, turning `Err` into a failure.
pub fn ok<T>(what: &str, result: Result<T>, hint: &str) -> std::result::Result<T, Failure> {
    result.map_err(|e| fail(format!("{what} returned Err({e})"), "Ok", hint))
}

/// `n` threads released at once by a barrier, each running `read`. While
/// they run, `conduct` runs on the calling thread (to release parked
/// statements). Returns the results that arrived within `limit`, in no
/// particular order; if some did not, the lab is closed so they exit.
pub fn herd<T: Send + 'static>(
    lab: &Arc<Lab>,
    n: usize,
    limit: Duration,
    read: impl Fn(&Lab) -> T + Send + Sync + 'static,
    conduct: impl FnOnce(),
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let read = Arc::new(read);
    let (tx, rx) = mpsc::channel();
    let deadline = Instant::now() + limit;
    for _ in 0..n {
        let (lab, barrier, read, tx) = (lab.clone(), barrier.clone(), read.clone(), tx.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                in_scope(&lab, |lab| read(lab))
            }));
            let _ = tx.send(result);
        });
    }
    drop(tx);
    conduct();
    let mut results = Vec::with_capacity(n);
    while results.len() < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(value)) => results.push(value),
            Ok(Err(panic)) => resume(panic),
            Err(_) => {
                lab.hooks().close();
                break;
            }
        }
    }
    results
}

/// Fails as a hang unless all `n` readers returned.
pub fn all_returned<T>(results: &[T], n: usize) -> Outcome {
    ensure(results.len() == n, || {
        Failure::Hang(format!(
            "{} of {n} concurrent readers had not returned after {BOUND:?}: every reader should return promptly. Hint: waiters must wake up once the leader has filled the cache; never wait without a way out",
            n - results.len()
        ))
    })
}

/// Shows a read result compactly in messages.
pub fn show(result: &Result<Option<User>>) -> String {
    match result {
        Ok(Some(u)) => format!("Some(user {} on plan {:?})", u.id, u.plan),
        Ok(None) => "Ok(None)".into(),
        Err(e) => format!("Err({e})"),
    }
}

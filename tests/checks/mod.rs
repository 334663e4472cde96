//! The one body of checks. Each check takes the answers to grade (yours,
//! the reference, or a catalogue entry) and returns an [`Outcome`] instead
//! of panicking, so the same code grades the learner, the reference, every
//! correct design (which must pass) and every catalogued mistake (which must
//! be rejected, with its hint).
//!
//! Rules every check follows:
//! - it asserts observable behaviour only: what the answers return, what
//!   Postgres and Redis hold, and how many statements were sent; never how
//!   many cache calls were made, which SQL text was sent, or that `key_lock`
//!   in particular was used;
//! - it runs on a private `Lab::isolated()`, in a process of its own (the
//!   harness sees to that), so nothing of another check can reach it;
//! - every wait is bounded: a wrong answer fails within [`BOUND`], and races
//!   are arranged with labkit's hooks, never with sleeps.

pub mod marks;
pub mod part1;
pub mod part2;
pub mod part3;
pub mod part4;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::testkit::panics::Panic;
use cache_aside_lab::labkit::testkit::run::{self, Ran, Running, Start};
use cache_aside_lab::labkit::testkit::timeline::{self, Shared};
use cache_aside_lab::labkit::testkit::{Answers, Function, LabExt, Parked, Trap, herd, remote};
use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User};
use serde::{Deserialize, Serialize};

/// No check waits longer than this for learner code.
pub const BOUND: Duration = Duration::from_secs(10);

pub type Subject = &'static Answers;
pub type CheckFn = fn(Subject) -> Outcome;
pub type Outcome = std::result::Result<(), Failure>;

/// Why a check rejected the answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Failure {
    /// The answers did something observably wrong.
    Wrong {
        observed: String,
        expected: String,
        hint: String,
    },
    /// Learner code panicked: a `todo!()` not written yet, or an `unwrap`.
    Panicked {
        call: String,
        panic: Panic,
        expected: String,
    },
    /// Learner code did not return within the bound. A catalogued mistake
    /// must never be caught this way, only by behaviour.
    Hang { observed: String, hint: String },
    /// The lab itself could not start (services down): labkit's message
    /// already says what to do.
    Setup(String),
}

impl Failure {
    /// The hint shown to the learner.
    pub fn hint(&self) -> String {
        match self {
            Failure::Wrong { hint, .. } | Failure::Hang { hint, .. } => hint.clone(),
            Failure::Panicked { panic, .. } if panic.is_todo() => {
                "write it: the `// TODO:` above it says what it must do and asks the question to start from; HINTS.md has hints, mildest first".into()
            }
            Failure::Panicked { .. } => {
                "return an Err instead of panicking: pass labkit's errors on with `?` rather than unwrap() or expect()".into()
            }
            Failure::Setup(_) => {
                "the lab could not start; the message says what to do (README, Troubleshooting)"
                    .into()
            }
        }
    }

    /// One line: what happened.
    pub fn observed(&self) -> String {
        match self {
            Failure::Wrong { observed, .. } | Failure::Hang { observed, .. } => observed.clone(),
            Failure::Panicked { call, panic, .. } if panic.is_todo() => {
                let message = panic.message.trim_start_matches("not yet implemented: ");
                match &panic.location {
                    Some(at) => format!("{call} reached the todo!() at {at}: {message}"),
                    None => format!("{call} reached a todo!(): {message}"),
                }
            }
            Failure::Panicked { call, panic, .. } => format!("{call} {panic}"),
            Failure::Setup(message) => message.clone(),
        }
    }

    /// One line: what should have happened.
    pub fn expected(&self) -> String {
        match self {
            Failure::Panicked { panic, .. } if panic.is_todo() => {
                "it does what its `// TODO:` in src/lib.rs asks".into()
            }
            Failure::Wrong { expected, .. } | Failure::Panicked { expected, .. } => {
                expected.clone()
            }
            Failure::Hang { .. } => "every call returns promptly".into(),
            Failure::Setup(_) => "Postgres and Redis answer at DATABASE_URL and REDIS_URL".into(),
        }
    }
}

/// Three lines, aligned: what happened, what should have, and the hint.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "what happened:  {}", self.observed())?;
        writeln!(f, "expected:       {}", self.expected())?;
        write!(f, "hint:           {}", self.hint())
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

fn setup(e: cache_aside_lab::labkit::Error) -> Failure {
    Failure::Setup(e.to_string())
}

/// A fresh private lab.
pub fn lab() -> std::result::Result<Arc<Lab>, Failure> {
    Lab::isolated().map(Arc::new).map_err(setup)
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
        .map_err(setup)?;
    lab.db.reset_counters();
    Ok(row.map(|r| User::from_row(&r)))
}

/// `stored`, for a user the seed has.
pub fn seeded(lab: &Lab, user_id: i32) -> std::result::Result<User, Failure> {
    stored(lab, user_id)?.ok_or_else(|| Failure::Setup(format!("seed.sql has no user {user_id}")))
}

/// A step of the grader's own, on the timeline (`grader  evicts user:1`).
pub fn grader_note(what: impl Into<String>) {
    timeline::record_as(
        "grader",
        timeline::Call::Note(what.into()),
        timeline::Reply::Done,
    );
}

/// The grader evicts `key` (as Redis may at any moment), and the timeline
/// says so.
pub fn evict(lab: &Lab, key: &str) -> std::result::Result<(), Failure> {
    grader_note(format!("evicts {key}"));
    lab.cache.delete(key).map(|_| ()).map_err(setup)
}

/// What the check itself sees in the cache (not counted as statements).
pub fn cached(lab: &Lab, key: &str) -> std::result::Result<(bool, Option<Duration>), Failure> {
    Ok((
        lab.cache.exists(key).map_err(setup)?,
        lab.cache.ttl(key).map_err(setup)?,
    ))
}

/// The TTLs a cached user may have: CACHE_TTL, or a jitter of up to 10 %
/// either way, or a shorter TTL of the same order; never a wrong constant or
/// a unit slip (2 s, 5 s, 60 ms).
pub fn ttl_fits_cache_ttl(ttl: Option<Duration>) -> bool {
    ttl.is_some_and(|t| t >= CACHE_TTL / 4 && t <= CACHE_TTL * 11 / 10)
}

/// How [`ttl_fits_cache_ttl`]'s range reads in messages.
pub fn cache_ttl_range() -> String {
    format!(
        "a TTL between CACHE_TTL / 4 and 1.1 × CACHE_TTL ({:?} to {:?}: CACHE_TTL, give or take some jitter)",
        CACHE_TTL / 4,
        CACHE_TTL * 11 / 10
    )
}

/// What a call that panicked should have done instead.
const RETURNS: &str = "it returns Ok or Err, and never panics";

/// How long a check waits for learner code to reach a trap it armed.
const PARK_WAIT: Duration = Duration::from_secs(5);

/// Learner code running on its own thread (see `testkit::run`), so that a
/// check can wait for it with a bound, and so that a hang fails the check
/// instead of the run.
pub struct Pending<T> {
    what: String,
    running: Running<T>,
}

pub fn spawn<T: Send + 'static>(
    lab: &Arc<Lab>,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> Pending<T> {
    let what = what.into();
    let actor = actor_for(&what);
    Pending {
        what,
        running: run::start(lab, acting(actor, f)),
    }
}

/// Readers are numbered in the order the check starts them (`reader 1`,
/// `reader 2`, the readers of a herd next); so are writers after the first.
static READERS: AtomicUsize = AtomicUsize::new(0);
static WRITERS: AtomicUsize = AtomicUsize::new(0);
static PROCESSES: AtomicUsize = AtomicUsize::new(0);

/// The actor a call of learner code plays on the timeline, from the call
/// as the check names it: `update_user_plan(...)` is a writer, any other
/// call a reader.
pub fn actor_for(what: &str) -> String {
    if what.contains("update") {
        match WRITERS.fetch_add(1, Ordering::Relaxed) {
            0 => "writer".into(),
            n => format!("writer {}", n + 1),
        }
    } else {
        format!("reader {}", READERS.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// `f`, run as `actor` on the timeline.
fn acting<T>(actor: String, f: impl FnOnce(&Lab) -> T) -> impl FnOnce(&Lab) -> T {
    move |lab| {
        let _actor = timeline::act_as(actor);
        f(lab)
    }
}

impl<T> Pending<T> {
    /// Waits up to `timeout`. A panic in learner code (such as `todo!()`)
    /// becomes [`Failure::Panicked`] with the learner's own message; a hang
    /// becomes [`Failure::Hang`], and closes the lab so that the stuck
    /// thread's next labkit call fails and it exits.
    pub fn wait(self, timeout: Duration) -> std::result::Result<T, Failure> {
        match self.running.wait(timeout) {
            Ran::Returned(value) => Ok(value),
            Ran::Panicked(panic) => Err(panicked(&self.what, panic)),
            Ran::Hung => Err(Failure::Hang {
                observed: format!("{} did not return within {timeout:?}", self.what),
                hint: "look for a lock taken twice on one thread, or a wait for a value nobody will write".into(),
            }),
        }
    }

    /// Whether it has finished, waiting at most `timeout` (it keeps running).
    pub fn finishes_within(&mut self, timeout: Duration) -> bool {
        self.running.finished_within(timeout)
    }
}

fn panicked(what: &str, panic: Panic) -> Failure {
    Failure::Panicked {
        call: what.to_string(),
        panic,
        expected: RETURNS.into(),
    }
}

/// Arms `trap`, starts `f` on its own thread, and waits (a few seconds at
/// most) until `f` is parked on it: then the trap comes back with it.
/// `None` if `f` finished without reaching the trap, or did not reach it in
/// time; the trap is then disarmed.
pub fn start_trapped<'a, T: Send + 'static>(
    lab: &'a Arc<Lab>,
    trap: Trap,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> (Option<Parked<'a>>, Pending<T>) {
    let what = what.into();
    let f = acting(actor_for(&what), f);
    let (parked, running) = match run::start_parked(lab, trap, PARK_WAIT, f) {
        Start::Parked(parked, running) => (Some(parked), running),
        Start::Finished(running) => (None, running),
        Start::Late(parked, running) => {
            drop(parked);
            (None, running)
        }
    };
    (parked, Pending { what, running })
}

/// [`start_trapped`], where reaching the trap is required: if `f` does not
/// (it finishes without sending a matching statement, say), that is the
/// learner's mistake, and the check fails with `missing`.
pub fn start_parked<'a, T: Send + 'static>(
    lab: &'a Arc<Lab>,
    trap: Trap,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
    missing: impl FnOnce() -> Failure,
) -> std::result::Result<(Parked<'a>, Pending<T>), Failure> {
    match start_trapped(lab, trap, what, f) {
        (Some(parked), pending) => Ok((parked, pending)),
        (None, pending) => {
            let _ = pending.wait(BOUND)?; // a panic such as todo!() comes first
            Err(missing())
        }
    }
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

/// [`call`], then [`ok`]: learner code that must return `Ok`, named once.
pub fn call_ok<T: Send + 'static>(
    lab: &Arc<Lab>,
    what: impl Into<String>,
    f: impl FnOnce(&Lab) -> Result<T> + Send + 'static,
    hint: &str,
) -> std::result::Result<T, Failure> {
    let what = what.into();
    let result = call(lab, what.clone(), f)?;
    ok(&what, result, hint)
}

/// `n` threads released at once by a barrier, each running `read` (named
/// `what` in messages). While they run, `conduct` runs on the calling thread
/// (to release parked statements). Returns the results that arrived within
/// `limit`, in no particular order; if some did not, the lab is closed so
/// they exit. A panicking reader fails the check.
pub fn readers<T: Send + 'static>(
    lab: &Arc<Lab>,
    what: &str,
    n: usize,
    limit: Duration,
    read: impl Fn(&Lab) -> T + Send + Sync + 'static,
    conduct: impl FnOnce(),
) -> std::result::Result<Vec<T>, Failure> {
    let herd_lab = lab.clone();
    let first = READERS.fetch_add(n, Ordering::Relaxed) + 1;
    let next = Arc::new(AtomicUsize::new(first));
    grader_note(format!("releases {n} readers at once"));
    let body = move || {
        let _actor = timeline::act_as(format!("reader {}", next.fetch_add(1, Ordering::Relaxed)));
        read(&herd_lab)
    };
    let from = timeline::now_us().unwrap_or_default();
    let runs = herd::release(n, limit, body, || {}, conduct);
    marks::herd_ran(from, timeline::now_us().unwrap_or_default());
    if runs.len() < n {
        lab.hooks().close();
    }
    let mut results = Vec::with_capacity(runs.len());
    for run in runs {
        match run.outcome {
            Ok(value) => results.push(value),
            Err(panic) => {
                lab.hooks().close();
                return Err(panicked(what, panic));
            }
        }
    }
    Ok(results)
}

/// Fails as a hang unless all `n` readers returned (within `limit`, as
/// given to [`readers`]).
pub fn all_returned<T>(results: &[T], n: usize, limit: Duration) -> Outcome {
    ensure(results.len() == n, || {
        Failure::Hang {
        observed: format!(
            "{} of {n} concurrent readers had not returned after {limit:?}",
            n - results.len()
        ),
        hint: "waiters must wake up once the leader has filled the cache; never wait without a way out".into(),
    }
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

/// Runs `function` of the answers under test in another process (another
/// instance of the application) on this lab's data, to the end.
pub fn elsewhere(
    lab: &Lab,
    a: Subject,
    function: Function,
    user_id: i32,
    plan: &str,
) -> std::result::Result<remote::Outcome, Failure> {
    let call = remote_call(lab, a, function, user_id, plan, None);
    remote::Remote::run(&call, BOUND).map_err(Failure::Setup)
}

/// The [`remote::Call`] of `function` on this lab's data.
pub fn remote_call(
    lab: &Lab,
    a: Subject,
    function: Function,
    user_id: i32,
    plan: &str,
    park: Option<Trap>,
) -> remote::Call {
    let role = if function.name().contains("update") {
        "writer"
    } else {
        "reader"
    };
    let n = PROCESSES.fetch_add(1, Ordering::Relaxed) + 2;
    remote::Call {
        space: lab.space_name().expect("isolated").to_string(),
        answers: a.name.to_string(),
        function,
        user_id,
        plan: plan.to_string(),
        park,
        timeline: Shared::here(format!("{role} in process {n}")),
    }
}

/// A name for the next process of a herd's spec (its readers are named
/// after their process, from this one's number on).
pub fn herd_timeline() -> Option<Shared> {
    Shared::here("herd")
}

/// What a call in another process did, as a learner `Result`-ish line, or
/// the failure to report when it panicked.
pub fn remote_result(
    what: &str,
    outcome: remote::Outcome,
) -> std::result::Result<std::result::Result<Option<User>, String>, Failure> {
    match outcome {
        remote::Outcome::Returned(user) => Ok(Ok(user)),
        remote::Outcome::Failed(e) => Ok(Err(e)),
        remote::Outcome::Panicked(panic) => Err(Failure::Panicked {
            call: format!("{what} (in another process)"),
            panic,
            expected: RETURNS.into(),
        }),
    }
}

/// Runs a cold read of `key`'s user and looks at `key` the moment its fill
/// has landed (the reader held right after it), so that what the fill left
/// is seen before any TTL, however short, runs out on a busy machine.
/// Returns the read's result and `(present, ttl)` from that moment, or, if
/// the read never filled `key`, from after it.
pub fn read_and_look_at_the_fill<T: Send + 'static>(
    lab: &Arc<Lab>,
    key: &str,
    what: impl Into<String>,
    read: impl FnOnce(&Lab) -> T + Send + 'static,
) -> std::result::Result<(T, (bool, Option<Duration>)), Failure> {
    let (filled, reader) = start_trapped(lab, Trap::after_fill(key), what, read);
    let seen = match &filled {
        Some(_) => Some(cached(lab, key)?),
        None => None,
    };
    drop(filled);
    let result = reader.wait(BOUND)?;
    let seen = match seen {
        Some(seen) => seen,
        None => cached(lab, key)?,
    };
    Ok((result, seen))
}

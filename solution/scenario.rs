//! The narrated scenario, step by step, observed for one set of answers:
//! what each step returned, the statements it sent, whether what it left
//! behind is fresh or stale, and how long it took.
//!
//! Answers under observation may be unfinished or wrong: every call runs on
//! its own thread, bounded, and a `todo!()`, a panic, an `Err` or a hang is
//! observed like any other outcome, never a crash. A step that hung leaves
//! its lab closed (so the stuck thread exits), and the next step starts on a
//! fresh lab.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::testkit::panics::Panic;
use cache_aside_lab::labkit::testkit::run::{self, Ran, Start};
use cache_aside_lab::labkit::testkit::timeline::{self, Event, Shared};
use cache_aside_lab::labkit::testkit::{
    self, Answers, Function, LabExt, Read, Trap, Update, herd, marks,
};
use cache_aside_lab::labkit::{Lab, Result};
use cache_aside_lab::{CACHE_TTL, User, user_key};

use crate::narrate::Outcome;

/// Statements are slowed this much in the herds, so that a stampede has a
/// window to happen in, as it would against a busy database.
pub const SLOW: Duration = Duration::from_millis(20);
pub const HERD: usize = 50;
pub const PROCESSES: usize = 3;
pub const THREADS: usize = 16;
/// No call of the answers is waited for longer than this.
const BOUND: Duration = Duration::from_secs(10);
/// How long the race waits for its reader to reach the trap.
const PARK_WAIT: Duration = Duration::from_secs(5);
/// A herd is flagged when it took longer than the reference's by more than
/// this, and more than [`SLOWER_TIMES`] as long (a clear margin, not a slow
/// machine): every reader should have the value within this long of the
/// fill.
const SLOWER_BY: Duration = Duration::from_millis(500);
/// See [`SLOWER_BY`].
const SLOWER_TIMES: u32 = 3;

/// Whether what a step left behind agrees with Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Fresh,
    Stale,
}

/// The TTL an entry had right after a step, and the range it should be in.
#[derive(Debug, Clone)]
pub struct Ttl {
    pub key: String,
    /// Time left; `None` if the entry is missing or never expires.
    pub left: Option<Duration>,
    pub cached: bool,
    /// The range it should be in, inclusive, and how the lab names it.
    pub range: (Duration, Duration),
    pub named: &'static str,
}

impl Ttl {
    /// A user entry should live about `CACHE_TTL`: between a quarter of it
    /// and a tenth more.
    fn user_entry(lab: &Lab, key: &str) -> Result<Ttl> {
        Ok(Ttl {
            key: key.to_string(),
            left: lab.cache.ttl(key)?,
            cached: lab.cache.exists(key)?,
            range: (CACHE_TTL / 4, CACHE_TTL * 11 / 10),
            named: "CACHE_TTL/4 to 1.1 x CACHE_TTL",
        })
    }

    /// `ttl 60ms`, `ttl 59.9s`, `ttl none` (never expires) or `not cached`:
    /// milliseconds below a second, so that a TTL set in the wrong unit shows.
    pub fn shown(&self) -> String {
        match self.left {
            Some(t) if t < Duration::from_secs(1) => format!("ttl {}ms", t.as_millis()),
            Some(t) => format!("ttl {:.1}s", t.as_secs_f64()),
            None if self.cached => "ttl none".into(),
            None => "not cached".into(),
        }
    }

    /// Why the TTL is out of its range; `None` when it is in.
    pub fn problem(&self) -> Option<String> {
        let (low, high) = self.range;
        let should = format!(
            "{} should live {low:?} to {high:?} ({})",
            self.key, self.named
        );
        match self.left {
            Some(t) if t < low => Some(format!(
                "{}: {should}; shorter, and the next reads miss again",
                self.shown()
            )),
            Some(t) if t > high => Some(format!(
                "{}: {should}; longer, and a lost invalidation stays stale longer",
                self.shown()
            )),
            Some(_) => None,
            None if self.cached => Some(format!(
                "ttl none: {should}; without one, a lost invalidation stays stale forever"
            )),
            None => Some(format!(
                "not cached: the miss should fill {}, to live {low:?} to {high:?} ({})",
                self.key, self.named
            )),
        }
    }
}

/// What one step observed.
#[derive(Debug, Clone)]
pub enum Seen {
    Got {
        shown: String,
        statements: u64,
        state: Option<State>,
        wall: Duration,
        /// The TTL of the entry the step filled, where it looks at one
        /// (boxed: most steps have none).
        ttl: Option<Box<Ttl>>,
    },
    /// The function behind the step still has its `todo!()`.
    NotWritten(String),
    /// It panicked, hung, or the lab itself failed.
    Failed(String),
}

impl Seen {
    /// What it returned, with the TTL where the step looks at one.
    pub fn described(&self) -> String {
        match self {
            Seen::Got {
                shown,
                ttl: Some(ttl),
                ..
            } => format!("{shown} {}", ttl.shown()),
            Seen::Got { shown, .. } => shown.clone(),
            other => other.behaviour(),
        }
    }

    /// What two sets of answers can differ in (not the time taken, nor the
    /// exact TTL: [`Step::notes`] judges those).
    pub fn behaviour(&self) -> String {
        match self {
            Seen::Got {
                shown,
                statements,
                state,
                ..
            } => format!("{shown} {statements} {state:?}"),
            Seen::NotWritten(m) | Seen::Failed(m) => m.clone(),
        }
    }
}

impl Step {
    /// What two sets of answers can differ in at this step. An unprotected
    /// herd sends "many" statements, a number that changes from run to run:
    /// only "one" or "many" counts there.
    pub fn behaviour(&self) -> String {
        match (&self.seen, self.id) {
            (
                Seen::Got {
                    shown, statements, ..
                },
                StepId::PlainHerd,
            ) => format!("{shown} {}", if *statements > 1 { "many" } else { "one" }),
            (seen, _) => seen.behaviour(),
        }
    }

    /// The Part it shows.
    pub fn part(&self) -> u8 {
        self.id.part()
    }

    /// What is off at this step besides its behaviour, one line each: a TTL
    /// out of its range, a herd far slower than the reference's.
    pub fn notes(&self, reference: &Step) -> Vec<String> {
        let mut notes = Vec::new();
        let Seen::Got { wall, ttl, .. } = &self.seen else {
            return notes;
        };
        notes.extend(ttl.as_ref().and_then(|ttl| ttl.problem()));
        if let Seen::Got { wall: theirs, .. } = &reference.seen {
            if self.id.is_herd() && *wall > *theirs + SLOWER_BY && *wall > *theirs * SLOWER_TIMES {
                notes.push(format!(
                    "{wall:.1?} against the reference's {theirs:.1?}: every reader of a herd should have the value within {SLOWER_BY:?} of the fill, not after a long sleep"
                ));
            }
        }
        notes
    }
}

/// One step of the scenario, or one row of a step that has two (7, 8, 9).
pub struct Step {
    pub id: StepId,
    pub label: String,
    pub seen: Seen,
    /// The race steps' calls to Postgres and Redis, by actor and time, the
    /// culprit marked as the grader marks it; `None` for the other steps.
    pub timeline: Option<Vec<Event>>,
}

/// Which step of the scenario: its number ("1" … "9") and its Part follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepId {
    /// 1: a cold read of user 1.
    ColdRead,
    /// 2: the same read again, a hit.
    Hit,
    /// 3: an update of user 1.
    Update,
    /// 4: a read of user 1 after the update.
    ReadAfterUpdate,
    /// 5: a read of a missing user.
    MissingUser,
    /// 6a: a herd of single-flight readers.
    SingleflightHerd,
    /// 6b: a herd of plain Part 1 readers.
    PlainHerd,
    /// 7: the stale-set race, plain and leased.
    StaleSetRace,
    /// 8: a herd across processes, single-flight and leased.
    ProcessHerd,
    /// 9: an update then a read while the replica lags, plain and with a
    /// marker.
    ReplicaLag,
}

impl StepId {
    /// "1", "6a", …: how the narration numbers it.
    pub fn number(self) -> &'static str {
        match self {
            StepId::ColdRead => "1",
            StepId::Hit => "2",
            StepId::Update => "3",
            StepId::ReadAfterUpdate => "4",
            StepId::MissingUser => "5",
            StepId::SingleflightHerd => "6a",
            StepId::PlainHerd => "6b",
            StepId::StaleSetRace => "7",
            StepId::ProcessHerd => "8",
            StepId::ReplicaLag => "9",
        }
    }

    /// The Part it shows.
    pub fn part(self) -> u8 {
        match self {
            StepId::ColdRead
            | StepId::Hit
            | StepId::Update
            | StepId::ReadAfterUpdate
            | StepId::MissingUser => 1,
            StepId::SingleflightHerd | StepId::PlainHerd => 2,
            StepId::StaleSetRace | StepId::ProcessHerd => 3,
            StepId::ReplicaLag => 4,
        }
    }

    /// The herds (6a, 6b and both rows of 8): many readers of one cold user
    /// at once.
    pub fn is_herd(self) -> bool {
        matches!(
            self,
            StepId::SingleflightHerd | StepId::PlainHerd | StepId::ProcessHerd
        )
    }
}

/// Its number, padded as asked (`{:>2}`).
impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.number())
    }
}

/// The lab a scenario runs on; replaced when a step had to close it.
struct Env {
    lab: Arc<Lab>,
}

impl Env {
    fn lab(&self) -> &Arc<Lab> {
        &self.lab
    }

    /// Closes the lab (so that a stuck thread's next call fails and it
    /// exits) and goes on with a fresh one.
    fn replace(&mut self) -> Option<Seen> {
        self.lab.hooks().close();
        match Lab::isolated() {
            Ok(fresh) => {
                self.lab = Arc::new(fresh);
                None
            }
            Err(e) => Some(Seen::Failed(format!("no fresh lab: {e}"))),
        }
    }
}

/// Runs `f` on its own thread (see `testkit::run`): its value and how long
/// it took, or what went wrong instead.
fn bounded<T: Send + 'static>(
    env: &mut Env,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> std::result::Result<(T, Duration), Seen> {
    let (ran, wall) = run::start(env.lab(), f).wait_timed(BOUND);
    returned(env, ran).map(|value| (value, wall))
}

/// What a call returned, or what went wrong instead. A call that hung has
/// left its lab closed: the next step starts on a fresh one.
fn returned<T>(env: &mut Env, ran: Ran<T>) -> std::result::Result<T, Seen> {
    match ran {
        Ran::Returned(value) => Ok(value),
        Ran::Panicked(panic) => Err(seen_panic(&panic)),
        Ran::Hung => Err(env.replace().unwrap_or_else(hung)),
    }
}

fn hung() -> Seen {
    Seen::Failed(format!(
        "did not return within {BOUND:?} (the next step starts on a fresh lab)"
    ))
}

/// A `todo!()` is "not written yet"; any other panic is a failure.
fn seen_panic(panic: &Panic) -> Seen {
    if panic.is_todo() {
        // "not yet implemented: <the stub's message>", or just the first
        // three words for a bare `todo!()`.
        Seen::NotWritten(panic.message.clone())
    } else {
        Seen::Failed(panic.to_string())
    }
}

pub fn show(user: &Option<User>) -> String {
    match user {
        Some(u) => format!("{} (plan {:?})", u.name, u.plan),
        None => "None".into(),
    }
}

/// A read or an update, counted and timed.
fn counted<T: Send + 'static>(
    env: &mut Env,
    f: impl FnOnce(&Lab) -> Result<T> + Send + 'static,
    shown: impl FnOnce(&Lab, T) -> Result<(String, Option<State>)>,
) -> Seen {
    env.lab().db.reset_counters();
    match bounded(env, f) {
        Err(seen) => seen,
        Ok((Err(e), _)) => Seen::Failed(format!("Err({e})")),
        Ok((Ok(value), wall)) => {
            let statements = env.lab().db.query_count();
            match shown(env.lab(), value) {
                Ok((shown, state)) => Seen::Got {
                    shown,
                    statements,
                    state,
                    wall,
                    ttl: None,
                },
                Err(e) => Seen::Failed(format!("the lab failed: {e}")),
            }
        }
    }
}

/// `seen`, with the TTL that the user entry at `key` has now.
fn with_ttl(seen: Seen, lab: &Lab, key: &str) -> Seen {
    match seen {
        Seen::Got {
            shown,
            statements,
            state,
            wall,
            ttl: _,
        } => match Ttl::user_entry(lab, key) {
            Ok(ttl) => Seen::Got {
                shown,
                statements,
                state,
                wall,
                ttl: Some(Box::new(ttl)),
            },
            Err(e) => Seen::Failed(format!("the lab failed: {e}")),
        },
        other => other,
    }
}

/// Postgres' plan for a user, read by the scenario itself (not counted).
fn stored_plan(lab: &Lab, user_id: i32) -> Result<Option<String>> {
    let row = lab
        .db
        .query_opt("SELECT plan FROM users WHERE id = $1", &[&user_id])?;
    Ok(row.map(|r| r.get(0)))
}

/// Runs every step with `answers`, each set of answers on a lab of its own.
pub fn observe(answers: &'static Answers) -> Outcome<(String, Vec<Step>)> {
    let mut env = Env {
        lab: Arc::new(Lab::isolated()?),
    };
    let space = env.lab().space_name().unwrap_or("shared").to_string();
    let mut steps = Steps(Vec::new());
    part1(&mut env, answers, &mut steps);
    part2(&mut env, answers, &mut steps);
    part3(&mut env, answers, &mut steps);
    if testkit::replica_url().is_ok() {
        part4(&mut env, answers, &mut steps);
    }
    Ok((space, steps.0))
}

/// The steps observed so far.
struct Steps(Vec<Step>);

impl Steps {
    fn push(&mut self, id: StepId, label: impl Into<String>, seen: Seen) {
        self.0.push(Step {
            id,
            label: label.into(),
            seen,
            timeline: None,
        });
    }

    /// A race step, run with its timeline recorded (see [`Recording`]).
    fn push_recorded(
        &mut self,
        id: StepId,
        label: impl Into<String>,
        step: impl FnOnce(&mut Recording) -> Seen,
    ) {
        let mut recording = Recording::start();
        let seen = step(&mut recording);
        self.0.push(Step {
            id,
            label: label.into(),
            seen,
            timeline: Some(recording.finish()),
        });
    }
}

/// A race step's timeline while it runs: every call of a thread that plays
/// an actor (`reader 1`, `writer`, `reader 3 in process 2`), on a clock
/// that starts with the step. Once the step is over, the grader's culprit
/// finders (`testkit::marks`) mark the step that made the outcome wrong, so that `--compare` shows where an answer
/// went wrong exactly as a failed check does.
pub struct Recording {
    /// A herd that should send one SELECT: (user, from, to).
    herd: Option<(i32, u64, u64)>,
    /// Reads of the replica watched from then on: (user, from).
    lagging: Option<(i32, u64)>,
}

impl Recording {
    fn start() -> Recording {
        timeline::start();
        Recording {
            herd: None,
            lagging: None,
        }
    }

    /// The steps, culprits marked; recording stops.
    fn finish(self) -> Vec<Event> {
        let events = timeline::snapshot();
        let lagging: Vec<_> = self.lagging.into_iter().collect();
        let herds: Vec<_> = self.herd.into_iter().collect();
        // `mark` sees the events in the same (time) order as the snapshot.
        for (i, why) in marks::culprits(&events, &lagging, &herds) {
            timeline::mark(|_, j| j == i, &why);
        }
        timeline::stop()
    }
}

/// 1 to 5: a cold read, a hit, an update, a read after it, a missing user.
fn part1(env: &mut Env, a: &'static Answers, steps: &mut Steps) {
    let seen = counted(
        env,
        move |lab| (a.get_user_profile)(lab, 1),
        |_, user| Ok((show(&user), None)),
    );
    let seen = with_ttl(seen, env.lab(), &user_key(1));
    steps.push(
        StepId::ColdRead,
        "cold read of user 1 (miss: Postgres, then fill)",
        seen,
    );
    let seen = counted(
        env,
        move |lab| (a.get_user_profile)(lab, 1),
        |_, user| Ok((show(&user), None)),
    );
    steps.push(StepId::Hit, "read user 1 again (hit)", seen);
    let seen = counted(
        env,
        move |lab| (a.update_user_plan)(lab, 1, "enterprise"),
        |lab, ()| {
            let present = lab.cache.exists(&user_key(1))?;
            Ok((format!("user:1 cached: {present}"), None))
        },
    );
    steps.push(StepId::Update, "update_user_plan(1, \"enterprise\")", seen);
    let seen = counted(
        env,
        move |lab| (a.get_user_profile)(lab, 1),
        |lab, user| {
            let truth = stored_plan(lab, 1)?;
            let fresh = user.as_ref().map(|u| &u.plan) == truth.as_ref();
            let state = if fresh { State::Fresh } else { State::Stale };
            Ok((show(&user), Some(state)))
        },
    );
    steps.push(
        StepId::ReadAfterUpdate,
        "read user 1 after the update",
        seen,
    );
    let seen = counted(
        env,
        move |lab| (a.get_user_profile)(lab, 999),
        |_, user| Ok((show(&user), None)),
    );
    steps.push(StepId::MissingUser, "read missing user 999", seen);
}

/// 6a and 6b: a herd of single-flight readers, then of plain ones.
fn part2(env: &mut Env, a: &'static Answers, steps: &mut Steps) {
    env.lab().hooks().slow_statements(SLOW);
    steps.push_recorded(
        StepId::SingleflightHerd,
        format!("{HERD} concurrent cold reads, single-flight"),
        |rec| herd_of(env, 2, a.get_user_profile_singleflight, Some(rec)),
    );
    // Plain cache-aside stampedes by design: its timeline shows it, unmarked.
    steps.push_recorded(
        StepId::PlainHerd,
        format!("{HERD} concurrent cold reads, plain Part 1"),
        |_| herd_of(env, 3, a.get_user_profile, None),
    );
    env.lab().hooks().slow_statements(Duration::ZERO);
}

/// 7 and 8: the stale-set race, plain and leased; a herd across processes,
/// single-flight and leased.
fn part3(env: &mut Env, a: &'static Answers, steps: &mut Steps) {
    steps.push_recorded(StepId::StaleSetRace, "plain", |_| {
        race(env, a.get_user_profile, a.update_user_plan)
    });
    steps.push_recorded(StepId::StaleSetRace, "leased", |_| {
        race(env, a.get_user_profile_leased, a.update_user_plan_leased)
    });
    // A per-process lock lets one SELECT per process through, by design.
    steps.push_recorded(
        StepId::ProcessHerd,
        "single-flight (a per-process lock)",
        |_| processes(env, a, 5, Function::GetUserProfileSingleflight, None),
    );
    let _ = env.lab().cache.delete(&user_key(5));
    steps.push_recorded(
        StepId::ProcessHerd,
        "leases (one holder across processes)",
        |rec| processes(env, a, 5, Function::GetUserProfileLeased, Some(rec)),
    );
}

/// 9: an update, then a read while the replica lags; plain cache-aside
/// whose misses always read the replica (the catalogued mistake, shown
/// before the fix), then the answers' own.
fn part4(env: &mut Env, a: &'static Answers, steps: &mut Steps) {
    let seen = replica_step(
        env,
        a.update_user_plan,
        crate::always_reads_the_replica::get_user_profile_replicated,
        None,
    );
    steps.push(
        StepId::ReplicaLag,
        "plain: write, invalidate, read the replica",
        seen,
    );
    steps.push_recorded(StepId::ReplicaLag, "with a marker", |rec| {
        replica_step(
            env,
            a.update_user_plan_replicated,
            a.get_user_profile_replicated,
            Some(rec),
        )
    });
}

/// Part 4: update user 1's plan, then read it at once, while the replica
/// still lags: what was returned and what got cached.
/// With a recording, the read that follows the update is watched: a read
/// of the replica that returns the old plan is its culprit.
fn replica_step(env: &mut Env, update: Update, read: Read, rec: Option<&mut Recording>) -> Seen {
    let lab = env.lab().clone();
    let before = match stored_plan(&lab, 1) {
        Ok(plan) => plan.unwrap_or_default(),
        Err(e) => return Seen::Failed(format!("the lab failed: {e}")),
    };
    let plan = if before == "pro" { "free" } else { "pro" };
    // The replica must first have caught up with the earlier steps' writes:
    // the demonstration is about the write made here.
    let deadline = Instant::now() + BOUND;
    loop {
        let replica_has = lab
            .replica
            .query_opt("SELECT plan FROM users WHERE id = 1", &[])
            .map(|row| row.map(|r| r.get::<_, String>(0)));
        match replica_has {
            Ok(Some(p)) if p == before => break,
            Err(e) => return Seen::Failed(format!("the replica: {e}")),
            _ if Instant::now() > deadline => {
                return Seen::Failed("the replica did not catch up with the primary".into());
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let _ = lab.cache.delete(&user_key(1));
    lab.db.reset_counters();
    lab.replica.reset_counters();
    if rec.is_some() {
        // The timeline's clock starts with the update, not with the wait
        // for the replica (nothing was recorded during it).
        timeline::start();
    }
    let started = Instant::now();
    let done = bounded(env, move |lab| {
        let updated = {
            let _actor = timeline::act_as("writer");
            update(lab, 1, plan)
        };
        // When the update returned: from then on, no read may be stale.
        let from = timeline::now_us();
        let _actor = timeline::act_as("reader 1");
        (updated.and_then(|()| read(lab, 1)), from)
    });
    let wall = started.elapsed();
    let user = match done {
        Err(seen) => return seen,
        Ok(((result, from), _)) => {
            if let (Some(rec), Some(from)) = (rec, from) {
                rec.lagging = Some((1, from));
            }
            match result {
                Err(e) => return Seen::Failed(format!("Err({e})")),
                Ok(user) => user,
            }
        }
    };
    let cached: Option<User> = lab.cache.get_json(&user_key(1)).unwrap_or(None);
    let returned = user
        .as_ref()
        .map_or("None".into(), |u| format!("{:?}", u.plan));
    let kept = cached
        .as_ref()
        .map_or("nothing".into(), |u| format!("{:?}", u.plan));
    let stale = user.as_ref().is_some_and(|u| u.plan != plan)
        || cached.as_ref().is_some_and(|u| u.plan != plan);
    Seen::Got {
        shown: format!(
            "{before:?} -> {plan:?}: read {returned}, cached {kept} ({} primary, {} replica)",
            lab.db.query_count(),
            lab.replica.query_count()
        ),
        statements: lab.db.query_count() + lab.replica.query_count(),
        state: Some(if stale { State::Stale } else { State::Fresh }),
        wall,
        ttl: None,
    }
}

/// `HERD` threads released together on a cold user, `reader 1` to
/// `reader 50` on the timeline; with a recording, the herd should send one
/// SELECT, and a second one is its culprit.
fn herd_of(env: &mut Env, user_id: i32, read: Read, rec: Option<&mut Recording>) -> Seen {
    let lab = env.lab().clone();
    lab.db.reset_counters();
    let started = Instant::now();
    let herd_lab = lab.clone();
    let next = AtomicUsize::new(1);
    let body = move || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let _actor = timeline::act_as(format!("reader {n}"));
        read(&herd_lab, user_id)
    };
    let from = timeline::now_us();
    let runs = herd::release(HERD, BOUND, body, || {}, || {});
    if let (Some(rec), Some(from), Some(to)) = (rec, from, timeline::now_us()) {
        rec.herd = Some((user_id, from, to));
    }
    let wall = started.elapsed();
    if runs.len() < HERD {
        return env.replace().unwrap_or_else(|| {
            Seen::Failed(format!(
                "{} of {HERD} readers had not returned after {BOUND:?} (the next step starts on a fresh lab)",
                HERD - runs.len()
            ))
        });
    }
    let mut got = 0;
    for run in runs {
        match run.outcome {
            Ok(Ok(user)) => got += usize::from(user.is_some_and(|u| u.id == user_id)),
            Ok(Err(e)) => return Seen::Failed(format!("a reader got Err({e})")),
            Err(panic) => return seen_panic(&panic),
        }
    }
    Seen::Got {
        shown: format!("{got}/{HERD} got user {user_id}"),
        statements: lab.db.query_count(),
        state: None,
        wall,
        ttl: None,
    }
}

/// The stale-set race, arranged with a parked statement instead of luck: a
/// reader reads user 4 and is held right after its SELECT, an update lands,
/// then the reader fills.
fn race(env: &mut Env, read: Read, update: Update) -> Seen {
    let lab = env.lab().clone();
    let setup = || -> Result<(String, &'static str)> {
        lab.cache.invalidate(&user_key(4))?;
        let before = stored_plan(&lab, 4)?.unwrap_or_default();
        let plan = if before == "pro" { "free" } else { "pro" };
        Ok((before, plan))
    };
    let (before, plan) = match setup() {
        Ok(x) => x,
        Err(e) => return Seen::Failed(format!("the lab failed: {e}")),
    };
    lab.db.reset_counters();
    let started = Instant::now();
    // Wait until the reader is held after its SELECT, or has finished
    // without one (an unfinished answer, say).
    let held = run::start_parked(&lab, Trap::after_read(), PARK_WAIT, move |lab| {
        let _actor = timeline::act_as("reader 1");
        read(lab, 4)
    });
    let (parked, reader) = match held {
        Start::Parked(parked, reader) | Start::Late(parked, reader) => (parked, reader),
        Start::Finished(reader) => {
            return match returned(env, reader.wait(BOUND)) {
                Err(seen) => seen,
                Ok(Err(e)) => Seen::Failed(format!("the read returned Err({e})")),
                Ok(Ok(_)) => Seen::Failed("the cold read sent no query to Postgres".into()),
            };
        }
    };
    let updated = run::start(&lab, move |lab| {
        let _actor = timeline::act_as("writer");
        update(lab, 4, plan)
    })
    .wait(BOUND);
    drop(parked);
    let read = reader.wait(BOUND);
    let wall = started.elapsed();
    // A call that hung has closed the lab: whatever is told, the next step
    // starts on a fresh one.
    if matches!(updated, Ran::Hung) || matches!(read, Ran::Hung) {
        if let Some(no_lab) = env.replace() {
            return no_lab;
        }
    }
    match (updated, read) {
        (Ran::Panicked(panic), _) | (_, Ran::Panicked(panic)) => return seen_panic(&panic),
        (Ran::Returned(Err(e)), _) => return Seen::Failed(format!("the update returned Err({e})")),
        (Ran::Hung, _) | (_, Ran::Hung) => return hung(),
        _ => {}
    }
    let statements = lab.db.query_count();
    let cached: Result<Option<Option<User>>> = lab.cache.get_json(&user_key(4));
    let (verdict, state) = match cached {
        Ok(Some(Some(u))) if u.plan != plan => (
            format!("STALE: cache holds {:?}, Postgres {plan:?}", u.plan),
            State::Stale,
        ),
        Ok(Some(Some(u))) => (format!("fresh: cache holds {:?}", u.plan), State::Fresh),
        Ok(_) => (
            "fresh: the late fill was refused, cache empty".into(),
            State::Fresh,
        ),
        Err(e) => return Seen::Failed(format!("the lab failed: {e}")),
    };
    Seen::Got {
        shown: format!("{before:?} -> {plan:?} ...... {verdict}"),
        statements,
        state: Some(state),
        wall,
        ttl: None,
    }
}

/// `PROCESSES` herd processes of this binary, each running `read` of
/// `answers` on a cold user: the statements they sent in all. Their readers
/// record on this process's timeline (`reader 3 in process 2`); with a
/// recording, the herd should send one SELECT in all.
fn processes(
    env: &Env,
    answers: &Answers,
    user_id: i32,
    read: Function,
    rec: Option<&mut Recording>,
) -> Seen {
    let lab = env.lab();
    let spec = herd::Spec {
        space: lab.space_name().expect("isolated").to_string(),
        answers: answers.name.to_string(),
        read,
        user_id,
        threads: THREADS,
        slow_ms: SLOW.as_millis() as u64,
        bound_ms: BOUND.as_millis() as u64,
        timeline: Shared::here("herd"),
    };
    let started = Instant::now();
    let from = timeline::now_us();
    let herd = match herd::run(&spec, PROCESSES) {
        Ok(herd) => herd,
        Err(why) => return Seen::Failed(format!("the herd did not run: {why}")),
    };
    let wall = started.elapsed();
    if let (Some(rec), Some(from), Some(to)) = (rec, from, timeline::now_us()) {
        rec.herd = Some((user_id, from, to));
    }
    if let Some(panic) = &herd.panic {
        return match seen_panic(panic) {
            Seen::Failed(why) => Seen::Failed(format!("a reader {why}")),
            seen => seen,
        };
    }
    let statements = herd.statements;
    Seen::Got {
        shown: format!(
            "{statements} statement{}, {}/{} got user {user_id}",
            if statements == 1 { "" } else { "s" },
            herd.got,
            herd.readers
        ),
        statements,
        state: None,
        wall,
        ttl: None,
    }
}

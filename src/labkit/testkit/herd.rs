//! Herds of readers: threads released together ([`release`], used by the
//! grader's checks, the narration and the benchmark), and a herd across
//! several processes: what a process-local lock cannot stop, and a lease can.
//!
//! Across processes, the parent starts N copies of its own executable with `LAB_HERD` set to
//! a JSON [`Spec`]. Each child joins the parent's private lab, lines its
//! threads up behind a barrier and says [`Message::Ready`]; once every child
//! is ready the parent writes `go` to all of them at once, and each child
//! answers with one [`Message::Report`]: its statement count and what every
//! reader got. Every message is one JSON line on the child's stdout. A child
//! that exits without a report is an error, never "0 statements".
//!
//! A binary that uses this calls [`spec_from_env`] first thing in `main`
//! and, if it gets a spec, [`serve`]s it with the answers the spec names.
//! The parent reads what came back once, as a [`Tally`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::answers::{Answers, Function};
use super::child::{self, say};
use super::panics::{self, Panic};
use super::timeline::{self, Event, Shared};
use super::{LabExt, run};
use crate::User;
use crate::labkit::pool::Pool;
use crate::labkit::redis_conn::RedisConnector;

const ENV: &str = "LAB_HERD";
/// Which of the herd's processes this is (from 1), for actor names.
const INDEX_ENV: &str = "LAB_HERD_PROCESS";

/// What one thread of a [`release`]d herd did.
pub struct Run<T> {
    /// Its result, or the panic it raised.
    pub outcome: Result<T, Panic>,
    pub started: Instant,
    pub finished: Instant,
}

/// Runs `body` on `n` threads released together by a barrier. `before`
/// runs on the calling thread once all of them wait at the barrier (to say
/// "ready", say); `during` runs right after the release (to let parked
/// statements go, say). Waits at most `bound` for the threads; the result
/// holds those that returned in time, in no particular order, and the others
/// keep running. A panic is caught and returned (see [`run::catch`]), and
/// prints nothing beyond what the panic hook prints.
pub fn release<T: Send + 'static>(
    n: usize,
    bound: Duration,
    body: impl Fn() -> T + Send + Sync + 'static,
    before: impl FnOnce(),
    during: impl FnOnce(),
) -> Vec<Run<T>> {
    let gate = Arc::new(Barrier::new(n + 1));
    let body = Arc::new(body);
    let (tx, rx) = mpsc::channel();
    for _ in 0..n {
        let (gate, body, tx) = (gate.clone(), body.clone(), tx.clone());
        // Small stacks: the benchmark releases a thousand of these.
        let spawned = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || {
                gate.wait();
                let started = Instant::now();
                let outcome = run::catch(|| body());
                // Before answering: whatever `body` holds (a lab, whose space
                // goes with its last handle) is let go once all have answered.
                drop(body);
                let _ = tx.send(Run {
                    outcome,
                    started,
                    finished: Instant::now(),
                });
            });
        spawned.expect("cannot start a herd thread");
    }
    drop(tx);
    before();
    gate.wait();
    let deadline = Instant::now() + bound;
    during();
    let mut runs = Vec::with_capacity(n);
    while runs.len() < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(run) => runs.push(run),
            Err(_) => break,
        }
    }
    runs
}

/// What one herd process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The parent lab's private space (`LabExt::space_name`).
    pub space: String,
    /// Whose answers: the child's binary resolves the name.
    pub answers: String,
    /// Which of their reads the threads run.
    pub read: Function,
    pub user_id: i32,
    pub threads: usize,
    /// Every statement is slowed this much: a window for the stampede, as
    /// against a busy database.
    pub slow_ms: u64,
    /// How long a reader may take before it counts as stuck.
    pub bound_ms: u64,
    /// Record on the parent's timeline: readers are `reader N in process P`
    /// (the actor given is ignored).
    #[serde(default)]
    pub timeline: Option<Shared>,
}

/// What one reader got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    User(User),
    Missing,
    Error(String),
    Panicked(Panic),
    /// It had not returned within the spec's bound.
    Stuck,
}

/// One process's count and readings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub statements: u64,
    pub readings: Vec<Reading>,
    /// What it recorded, if the spec asked.
    #[serde(default)]
    pub timeline: Vec<Event>,
}

/// What a herd across processes came to, for the user it read.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Statements sent by all the processes together.
    pub statements: u64,
    /// Readers in all the processes.
    pub readers: usize,
    /// Readers that got the user.
    pub got: usize,
    /// The first panic a reader raised, if any did.
    pub panic: Option<Panic>,
    /// The first reading that was not the user, if any.
    pub wrong: Option<Reading>,
}

impl Tally {
    /// The processes' reports, read for `user_id`.
    pub fn of(reports: &[Report], user_id: i32) -> Tally {
        let readings = || reports.iter().flat_map(|r| &r.readings);
        let is_user = |r: &&Reading| matches!(r, Reading::User(u) if u.id == user_id);
        Tally {
            statements: reports.iter().map(|r| r.statements).sum(),
            readers: readings().count(),
            got: readings().filter(is_user).count(),
            panic: readings().find_map(|r| match r {
                Reading::Panicked(panic) => Some(panic.clone()),
                _ => None,
            }),
            wrong: readings().find(|r| !is_user(r)).cloned(),
        }
    }
}

/// A line from a herd process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// All threads wait at the barrier.
    Ready,
    Report(Report),
    /// It could not take part (it could not join the lab, say).
    Failed(String),
}

/// The spec this process was started with, if it is a herd process.
pub fn spec_from_env() -> Option<Spec> {
    child::job_from_env(ENV, Message::Failed)
}

/// The child's side: runs `spec` with `answers` (the ones it names) and
/// exits.
pub fn serve(spec: &Spec, answers: &'static Answers) -> ! {
    panics::install_quiet_hook();
    let lab = child::join(&spec.space, Message::Failed);
    lab.hooks()
        .slow_statements(Duration::from_millis(spec.slow_ms));
    // Every pooled Redis connection open before go, so that what follows go
    // is the answers' logic, not connection set-up: the pool opens
    // connections one at a time, and over TLS to a cluster one is a
    // handshake with every node (the redis crate's cluster client connects
    // to replicas too), ~35 ms; on a busy machine, eight of them can outlast
    // a lease, and a second reader takes it.
    let pool = lab.cache.pool();
    hold(pool, pool.max_size());
    let (read, user_id, herd_lab) = (spec.read, spec.user_id, lab.clone());
    let process: usize = std::env::var(INDEX_ENV)
        .ok()
        .and_then(|i| i.parse().ok())
        .unwrap_or(1);
    if let Some(shared) = &spec.timeline {
        shared.join();
    }
    let recording = spec.timeline.is_some();
    let numbers = std::sync::atomic::AtomicUsize::new(1);
    let runs = release(
        spec.threads,
        Duration::from_millis(spec.bound_ms),
        move || {
            let n = numbers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _actor =
                recording.then(|| timeline::act_as(format!("reader {n} in process {process}")));
            // A read ignores the plan.
            read.call(answers, &herd_lab, user_id, "")
        },
        || {
            // Every thread waits at the barrier: say so, and wait for go.
            say(&Message::Ready);
            child::wait_for_go();
        },
        || {},
    );
    let mut readings: Vec<Reading> = runs
        .into_iter()
        .map(|run| match run.outcome {
            Ok(Ok(Some(user))) => Reading::User(user),
            Ok(Ok(None)) => Reading::Missing,
            Ok(Err(e)) => Reading::Error(e.to_string()),
            Err(panic) => Reading::Panicked(panic),
        })
        .collect();
    readings.resize(spec.threads, Reading::Stuck);
    say(&Message::Report(Report {
        statements: lab.db.query_count(),
        readings,
        timeline: timeline::stop(),
    }));
    super::finish();
    std::process::exit(0)
}

/// Opens `n` of the pool's connections, all held at once, and gives them
/// back. A failure is left to the readers to meet and report.
fn hold(pool: &Pool<RedisConnector>, n: u32) {
    if n > 0 {
        let _ = pool.with_conn(|_| hold(pool, n - 1));
    }
}

/// The parent's side: starts `processes` herd processes from this
/// executable, releases all their readers at once, and tallies their
/// reports. Waits at most the spec's bound plus start-up time.
pub fn run(spec: &Spec, processes: usize) -> Result<Tally, String> {
    let json = serde_json::to_string(spec).expect("specs serialize");
    let (tx, rx) = mpsc::channel::<(usize, Option<Message>)>();
    let mut children: Vec<Child> = Vec::new();
    let mut tails = Vec::new();
    for i in 0..processes {
        match start(&json, i, tx.clone()) {
            Ok((child, tail)) => {
                children.push(child);
                tails.push(tail);
            }
            Err(why) => {
                stop(&mut children);
                return Err(why);
            }
        }
    }
    drop(tx);
    let outcome = conduct(&mut children, &rx, spec);
    stop(&mut children);
    // The children are gone: their stderr has ended, and is read in full.
    let tails: Vec<Vec<String>> = tails.into_iter().map(Tail::lines).collect();
    let reports = outcome.map_err(|(i, why)| match tails.get(i) {
        Some(tail) if !tail.is_empty() => {
            format!("{why}; its stderr ended with: {}", tail.join(" | "))
        }
        _ => why,
    })?;
    for report in &reports {
        timeline::merge(report.timeline.clone());
    }
    Ok(Tally::of(&reports, spec.user_id))
}

/// Starts herd process `i`: each message it says arrives on `tx`, tagged
/// with `i`, and `None` once its stdout has ended.
fn start(
    json: &str,
    i: usize,
    tx: mpsc::Sender<(usize, Option<Message>)>,
) -> Result<(Child, Tail), String> {
    let index = (i + 1).to_string();
    let env = [(ENV, json), (INDEX_ENV, index.as_str())];
    let mut child = child::start(&env, Stdio::piped(), "a herd process")?;
    let tail = Tail::drain(child.stderr.take().expect("piped"));
    child::listen(child.stdout.take().expect("piped"), move |message| {
        let _ = tx.send((i, message));
    });
    Ok((child, tail))
}

/// Kills the herd processes and waits for them.
fn stop(children: &mut [Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last lines a herd process wrote to stderr, for an error message.
struct Tail {
    kept: Arc<Mutex<VecDeque<String>>>,
    drain: std::thread::JoinHandle<()>,
}

impl Tail {
    /// How many of the last lines are kept.
    const LINES: usize = 5;

    /// Reads `stderr` on a thread of its own while the process runs: a
    /// process that writes more than a pipe holds (64 KiB) would otherwise
    /// block, and look as if it never reported.
    fn drain(stderr: ChildStderr) -> Tail {
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let lines = BufReader::new(stderr).lines();
        let keep = kept.clone();
        let drain = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut keep = keep.lock().unwrap_or_else(|e| e.into_inner());
                if keep.len() == Tail::LINES {
                    keep.pop_front();
                }
                keep.push_back(line);
            }
        });
        Tail { kept, drain }
    }

    /// The last lines, once the process is gone (its stderr has ended).
    fn lines(self) -> Vec<String> {
        let _ = self.drain.join();
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().cloned().collect()
    }
}

/// The first process whose state is `behind`, and what it failed to do in
/// time: the error when a herd's wait ran out.
fn late<T>(states: &[T], behind: impl Fn(&T) -> bool, failed: String) -> (usize, String) {
    let late = states.iter().position(behind).unwrap_or(0);
    (late, format!("herd process {late} {failed}"))
}

/// Herd process `i` has ended its output without a report: how it exited.
fn exited(child: &mut Child, i: usize) -> (usize, String) {
    let status = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    (
        i,
        format!("herd process {i} exited ({status}) without a report"),
    )
}

/// Ready, go, reports. Err carries the index of the process at fault.
fn conduct(
    children: &mut [Child],
    rx: &mpsc::Receiver<(usize, Option<Message>)>,
    spec: &Spec,
) -> Result<Vec<Report>, (usize, String)> {
    let n = children.len();
    // How long the processes have to get ready, then to report after go.
    let start_up = Duration::from_secs(10);
    let after_go = Duration::from_millis(spec.bound_ms) + Duration::from_secs(2);
    let mut deadline = Instant::now() + start_up;
    let mut ready = vec![false; n];
    let mut gone = false;
    let mut reports: Vec<Option<Report>> = vec![None; n];
    while reports.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, message) = rx.recv_timeout(left).map_err(|_| {
            if gone {
                late(
                    &reports,
                    Option::is_none,
                    format!("did not report within {after_go:?} of go"),
                )
            } else {
                late(&ready, |r| !r, format!("was not ready within {start_up:?}"))
            }
        })?;
        match message {
            Some(Message::Ready) => {
                ready[i] = true;
                if !gone && ready.iter().all(|r| *r) {
                    // Every thread of every process waits at its barrier: go.
                    children.iter_mut().for_each(child::go);
                    gone = true;
                    deadline = Instant::now() + after_go;
                }
            }
            Some(Message::Report(report)) => reports[i] = Some(report),
            Some(Message::Failed(why)) => return Err((i, format!("herd process {i}: {why}"))),
            None if reports[i].is_none() => return Err(exited(&mut children[i], i)),
            None => {}
        }
    }
    Ok(reports.into_iter().flatten().collect())
}

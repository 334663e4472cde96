//! The teaching harness behind `cargo test`: libtest's command line and
//! output (through libtest-mimic), with three things libtest cannot do.
//!
//! - **A fresh process per check** (`jobs.rs`): every check that runs
//!   answers runs in its own child process, so global state in an answer
//!   never leaks from one check into another.
//! - **Lab order**: all selected checks start at once on a pool of workers,
//!   and results are reported in the order of the lab (Part 1 first, by
//!   difficulty), not in the order they finish.
//! - **Teaching output**: a failure reads as what happened / what should
//!   have / hint, never with a panic backtrace, and the run ends with a
//!   progress board (`board.rs`) and the one next step.
//!
//! libtest-mimic was chosen because it parses exactly libtest's arguments
//! (filters, `--exact`, `--skip`, `--list`, `--ignored`, `--include-ignored`,
//! `--test-threads`, `--format`), prints libtest's output, and is what
//! `cargo nextest` documents as compatible; it leaves running the trials to
//! us, which is what the three points above need.
//!
//! # Layout
//!
//! A run is data flowing one way: the [`Suite`] becomes a plan of trials
//! (`plan.rs`, which validates the catalogues' names), each trial's jobs run
//! in child processes (`jobs.rs`), its judge turns their results into one
//! [`judge::Verdict`] (`judge.rs`, one judge per kind of trial), and the
//! verdicts go to a printer (`pretty.rs` or `json.rs`) and the board
//! (`board.rs`).

mod board;
pub mod jobs;
mod json;
mod judge;
mod plan;
mod pretty;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::mpsc::Receiver;

use cache_aside_lab::labkit::testkit::{Answers, herd, remote, timeline};
use libtest_mimic::{Arguments, FormatSetting, Trial as Probe};

use crate::checks::{CheckFn, Failure};
use board::Board;
use jobs::{Done, Pool};
use judge::Verdict;
use plan::{Role, Trial};

/// One part of the lab.
pub struct Part {
    pub number: u8,
    pub title: &'static str,
    /// Opt-in: its checks are `#[ignore]`d until asked for.
    pub optional: bool,
    /// Its checks need a read replica; without one they are skipped.
    pub needs_replica: bool,
}

/// What sets a part apart.
pub enum Flag {
    /// Its checks are `#[ignore]`d until asked for.
    Optional,
    /// Its checks need a read replica.
    NeedsReplica,
}

impl Part {
    pub const fn new(number: u8, title: &'static str, flags: &[Flag]) -> Part {
        let mut part = Part {
            number,
            title,
            optional: false,
            needs_replica: false,
        };
        let mut i = 0;
        while i < flags.len() {
            match flags[i] {
                Flag::Optional => part.optional = true,
                Flag::NeedsReplica => part.needs_replica = true,
            }
            i += 1;
        }
        part
    }

    pub fn label(&self) -> String {
        if self.optional {
            format!("{} (optional)", self.title)
        } else {
            self.title.to_string()
        }
    }

    /// How a learner runs this part's checks.
    pub fn command(&self) -> String {
        if self.optional {
            format!("cargo test part{} -- --ignored", self.number)
        } else {
            format!("cargo test part{}", self.number)
        }
    }
}

/// One graded check: its test name, the function behind it, and what it
/// proves (a line of the README's checklist).
pub struct Check {
    pub name: &'static str,
    pub part: u8,
    pub run: CheckFn,
    #[cfg_attr(not(feature = "solution"), allow(dead_code))] // read by tests/catalogue
    pub proves: &'static str,
}

/// A catalogue entry or a maintainer check: what it must show.
#[cfg_attr(not(feature = "solution"), allow(dead_code))] // maintainer mode only
pub enum Entry {
    /// A correct design: passes every check of its part.
    Design {
        name: &'static str,
        part: u8,
        answers: &'static Answers,
    },
    /// A classic mistake: each check in `caught_by` rejects it by behaviour,
    /// with a message that contains `hint`; a race or a herd also `marks`
    /// the culprit step in its timeline, with a reason containing that text.
    Mistake {
        name: &'static str,
        answers: &'static Answers,
        caught_by: &'static [&'static str],
        hint: &'static str,
        marks: Option<&'static str>,
    },
    /// `src/lib.rs` as shipped: every check fails with the stub's own
    /// `todo!()` (the reverse check).
    Stubs,
    /// A check that runs no answers, in this process.
    Plain {
        name: &'static str,
        check: fn() -> Result<(), String>,
    },
}

/// Everything one grader binary knows.
pub struct Suite {
    /// Said above the results and on the board: whose answers are graded.
    pub title: String,
    pub parts: &'static [Part],
    pub checks: &'static [Check],
    /// The answers that the graded checks run.
    pub subject: &'static Answers,
    /// Every set of answers a child may be asked to run, by name.
    pub answers: Vec<&'static Answers>,
    pub entries: Vec<Entry>,
}

/// The grader's `main`.
pub fn main(suite: Suite) -> ExitCode {
    if let Some(spec) = herd::spec_from_env() {
        herd::serve(&spec, find(&suite.answers, &spec.answers));
    }
    if let Some(call) = remote::call_from_env() {
        remote::serve(&call, find(&suite.answers, &call.answers));
    }
    if let Some(job) = jobs::job_from_env() {
        let answers = find(&suite.answers, &job.answers);
        let check = suite
            .checks
            .iter()
            .find(|c| c.name == job.check)
            .unwrap_or_else(|| panic!("no check named {}", job.check));
        jobs::serve(|| (check.run)(answers));
    }
    grade(suite)
}

fn find(all: &[&'static Answers], name: &str) -> &'static Answers {
    all.iter()
        .copied()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no answers named {name}"))
}

/// How one printer writes a run: each selected trial as it is judged, then
/// the summary.
trait Printer {
    /// Before a trial's verdict is printed.
    fn begin(&mut self, name: &str);
    fn verdict(&mut self, name: &str, verdict: &Verdict);
    /// A check's whole timeline, asked for (`LAB_TIMELINE=1`, or
    /// `--nocapture`), right after its verdict. JSON output has no place
    /// for it.
    fn timeline(&mut self, _name: &str, _text: &str) {}
    /// The failures and the result line (and the board, for people); true
    /// if nothing failed.
    fn finish(self: Box<Self>, filtered_out: usize, board: &Board) -> bool;
}

/// Whether a trial runs in this run, as libtest would decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selection {
    /// Not selected (a filter, `--skip`, `--exact`): not even printed.
    Filtered,
    /// Selected, but `#[ignore]`d and not asked for: printed as ignored.
    Ignored,
    Run,
}

fn probe(trial: &Trial) -> Probe {
    Probe::test(trial.name.clone(), || Ok(())).with_ignored_flag(trial.ignored)
}

/// libtest-mimic decides what is selected, exactly as libtest would.
fn select(args: &Arguments, trial: &Trial) -> Selection {
    let probe = probe(trial);
    if args.is_filtered_out(&probe) {
        Selection::Filtered
    } else if args.is_ignored(&probe) {
        Selection::Ignored
    } else {
        Selection::Run
    }
}

/// `--test-threads`, else `RUST_TEST_THREADS`, else one per core.
fn workers(args: &Arguments) -> usize {
    args.test_threads
        .or_else(|| std::env::var("RUST_TEST_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The run: plan, start every selected trial's jobs at once, then judge and
/// print the trials one by one, in lab order, as their jobs finish.
fn grade(suite: Suite) -> ExitCode {
    let args = Arguments::from_args();
    let trials = match plan::plan(&suite) {
        Ok(trials) => trials,
        Err(e) => {
            eprintln!("error: the grader's plan is wrong: {e}");
            return ExitCode::from(101);
        }
    };
    if args.list {
        return libtest_mimic::run(&args, trials.iter().map(probe).collect()).exit_code();
    }
    let selections: Vec<Selection> = trials.iter().map(|t| select(&args, t)).collect();
    let pool = Pool::start(workers(&args), args.nocapture);
    // Started now, in lab order: they run in parallel (in the pool's child
    // processes) while the trials are judged one by one, in order.
    let pending: Vec<Vec<_>> = trials
        .iter()
        .zip(&selections)
        .map(|(trial, selection)| match selection {
            Selection::Run if trial.skip.is_none() => {
                trial.jobs().into_iter().map(|j| pool.submit(j)).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    let extra = subject_jobs(&trials, &selections, &pool);
    let mut subject = Subject {
        failures: HashMap::new(),
        extra,
    };
    let shown: Vec<&str> = trials
        .iter()
        .zip(&selections)
        .filter(|(_, s)| **s != Selection::Filtered)
        .map(|(t, _)| t.name.as_str())
        .collect();
    let filtered_out = trials.len() - shown.len();
    let mut printer: Box<dyn Printer> = match args.format {
        Some(FormatSetting::Json) => Box::new(json::Json::start(shown.len())),
        _ => Box::new(pretty::Pretty::start(&args, &suite.title, &shown)),
    };
    let timelines = args.nocapture || std::env::var_os("LAB_TIMELINE").is_some_and(|v| v != "0");
    let mut judged = Vec::with_capacity(trials.len());
    for ((trial, selection), pending) in trials.iter().zip(selections).zip(pending) {
        let (verdict, done) = judge(trial, selection, pending, &mut subject);
        if selection != Selection::Filtered {
            printer.begin(&trial.name);
            printer.verdict(&trial.name, &verdict);
            if timelines && trial.role() == Role::Graded {
                show_timelines(&mut *printer, trial, &done);
            }
        }
        judged.push((trial, verdict));
    }
    let board = Board {
        title: format!("Progress: {}", suite.title),
        parts: suite.parts,
        trials: judged,
        maintainer: !suite.entries.is_empty(),
    };
    if printer.finish(filtered_out, &board) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// Every step of a graded check's runs, passed or failed: so that a
/// learner sees why a correct answer is correct, too.
fn show_timelines(printer: &mut dyn Printer, trial: &Trial, done: &[Done]) {
    for (i, d) in done.iter().enumerate() {
        let run = if done.len() > 1 {
            format!(" (run {} of {})", i + 1, done.len())
        } else {
            String::new()
        };
        let text = if d.timeline.is_empty() {
            "    (no call of your code to Postgres or Redis was recorded)".to_string()
        } else {
            timeline::render_all(&d.timeline)
        };
        printer.timeline(&format!("{}{run}", trial.name), &text);
    }
}

/// The verdict on one trial, once the jobs it started have finished, and
/// what they reported. A catalogue entry on a check the graded answers (in
/// the maintainer command, the reference) fail is not judged: a rejection
/// there proves nothing.
fn judge(
    trial: &Trial,
    selection: Selection,
    pending: Vec<Receiver<Done>>,
    subject: &mut Subject,
) -> (Verdict, Vec<Done>) {
    if selection != Selection::Run {
        return (Verdict::Ignored, Vec::new());
    }
    if let Some(reason) = &trial.skip {
        return (Verdict::Skipped(reason.clone()), Vec::new());
    }
    let done = wait(pending);
    if trial.role() == Role::Graded {
        subject.record(&trial.name, &done);
    }
    if let Some(unjudged) = subject.unjudged(trial.judge.needs_subject()) {
        return (unjudged, done);
    }
    (trial.judge.verdict(&done), done)
}

/// The results of a trial's jobs, in order, as they finish.
fn wait(pending: Vec<Receiver<Done>>) -> Vec<Done> {
    pending
        .into_iter()
        .map(|rx| {
            rx.recv().unwrap_or_else(|_| {
                jobs::crashed(
                    "the worker running the check's process died".into(),
                    String::new(),
                )
            })
        })
        .collect()
}

/// The graded checks a selected catalogue entry needs that the selection
/// left out: started now too, so that the entry can be judged against the
/// graded answers' own outcome on them.
fn subject_jobs(
    trials: &[Trial],
    selections: &[Selection],
    pool: &Pool,
) -> HashMap<String, Vec<Receiver<Done>>> {
    let runs = |t: &Trial, s: Selection| s == Selection::Run && t.skip.is_none();
    let mut extra = HashMap::new();
    let needed = trials
        .iter()
        .zip(selections)
        .filter(|(t, s)| runs(t, **s))
        .flat_map(|(t, _)| t.judge.needs_subject().iter().copied());
    for check in needed {
        let graded = trials
            .iter()
            .zip(selections)
            .find(|(t, _)| t.role() == Role::Graded && t.name == check);
        let Some((trial, selection)) = graded else {
            continue;
        };
        if runs(trial, *selection) || trial.skip.is_some() || extra.contains_key(check) {
            continue;
        }
        let jobs = trial.jobs().into_iter().map(|j| pool.submit(j)).collect();
        extra.insert(check.to_string(), jobs);
    }
    extra
}

/// The graded answers' outcome on each check, as far as a catalogue entry
/// needs it: the first failure of each (None if it passed).
struct Subject {
    failures: HashMap<String, Option<Failure>>,
    /// Jobs started only for the catalogues (their check not selected).
    extra: HashMap<String, Vec<Receiver<Done>>>,
}

impl Subject {
    fn record(&mut self, check: &str, done: &[Done]) {
        let failure = done.iter().find_map(|d| d.outcome.clone().err());
        self.failures.insert(check.to_string(), failure);
    }

    /// How the graded answers failed `check`, if they did (waiting for it).
    fn failure(&mut self, check: &str) -> Option<Failure> {
        if let Some(pending) = self.extra.remove(check) {
            let done = wait(pending);
            self.record(check, &done);
        }
        self.failures.get(check).cloned().flatten()
    }

    /// The first of `checks` the graded answers fail, as a verdict that
    /// leaves the entry unjudged.
    fn unjudged(&mut self, checks: &[&str]) -> Option<Verdict> {
        checks
            .iter()
            .find_map(|check| self.failure(check).map(|f| Verdict::not_judged(check, &f)))
    }
}

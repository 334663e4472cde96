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

mod board;
pub mod jobs;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cache_aside_lab::labkit::testkit::{self, Answers, herd, remote};
use libtest_mimic::{Arguments, Completion, Failed, FormatSetting, Trial};

use crate::checks::{CheckFn, Failure};
use jobs::{Done, Job, Pool, Ticket};

/// One part of the lab.
pub struct Part {
    pub number: u8,
    pub title: &'static str,
    /// Opt-in: its checks are `#[ignore]`d until asked for.
    pub optional: bool,
    /// Its checks need a read replica; without one they are skipped.
    pub needs_replica: bool,
}

impl Part {
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

/// One graded check: its test name and the function behind it.
pub struct Check {
    pub name: &'static str,
    pub part: u8,
    pub run: CheckFn,
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
    /// with a message that contains `hint`.
    Mistake {
        name: &'static str,
        answers: &'static Answers,
        caught_by: &'static [&'static str],
        hint: &'static str,
    },
    /// `src/lib.rs` as shipped: every check fails with the stub's own
    /// `todo!()` (the reverse check).
    Stubs,
    /// A check that runs no answers, in this process.
    Plain {
        name: &'static str,
        run: fn() -> Result<(), String>,
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

/// How many times each check runs: `LAB_REPEAT=100` for the determinism
/// run, each time in a fresh process.
pub fn repeat() -> usize {
    std::env::var("LAB_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Graded,
    Design,
    Mistake,
    Maintainer,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Passed,
    Failed {
        observed: String,
        hint: String,
        /// The services could not run it (a setup failure), as opposed to
        /// answers that behaved wrongly.
        setup: bool,
    },
    /// A catalogue entry that could not be judged: the reference itself
    /// fails a check it needs, here.
    NotJudged {
        why: String,
    },
}

/// What the board needs to know of one trial.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub role: Role,
    pub part: Option<u8>,
    pub verdict: Option<Verdict>,
    /// Why it was skipped at run time (Part 4 without a replica).
    pub skipped: Option<String>,
}

impl Record {
    fn ran(&self) -> bool {
        self.verdict.is_some()
    }
    fn passed(&self) -> bool {
        matches!(self.verdict, Some(Verdict::Passed))
    }
    fn not_judged(&self) -> bool {
        matches!(self.verdict, Some(Verdict::NotJudged { .. }))
    }
}

/// The grader's `main`.
pub fn main(suite: Suite) -> std::process::ExitCode {
    if let Some(spec) = herd::spec_from_env() {
        let answers = find(&suite.answers, &spec.read);
        herd::serve(&spec, answers.get_user_profile_leased);
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
    run(suite)
}

fn find(all: &[&'static Answers], name: &str) -> &'static Answers {
    all.iter()
        .copied()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no answers named {name}"))
}

fn run(suite: Suite) -> std::process::ExitCode {
    let args = Arguments::from_args();
    let workers = args
        .test_threads
        .or_else(|| std::env::var("RUST_TEST_THREADS").ok()?.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = Pool::start(workers, args.nocapture);
    let mut records = Vec::new();
    let mut trials = Vec::new();
    for planned in plan(&suite) {
        records.push(planned.record());
        // libtest-mimic decides what is selected, exactly as libtest would.
        let probe = Trial::test(planned.name.clone(), || Ok(())).with_ignored_flag(planned.ignored);
        let selected = !args.is_filtered_out(&probe);
        let run = selected && !args.is_ignored(&probe);
        trials.push((planned, selected, run, Vec::new()));
    }
    if args.list {
        let probes = trials
            .iter()
            .map(|(p, ..)| Trial::test(p.name.clone(), || Ok(())).with_ignored_flag(p.ignored))
            .collect();
        return libtest_mimic::run(&args, probes).exit_code();
    }
    // Start every selected check now, in lab order: they run in parallel
    // (in the pool's child processes) while the trials are reported one by
    // one, in order.
    let mut context = Context::default();
    for (planned, _, run, tickets) in &mut trials {
        if *run && planned.skip.is_none() {
            *tickets = planned
                .jobs
                .iter()
                .cloned()
                .map(|j| pool.submit(j))
                .collect();
            if planned.role == Role::Graded {
                context
                    .subject
                    .insert(planned.name.clone(), tickets.clone());
            }
        }
    }
    // A catalogue entry is judged against the reference's own outcome on
    // the same checks: run those the selection left out.
    let needed: Vec<String> = trials
        .iter()
        .filter(|(p, _, run, _)| *run && p.skip.is_none())
        .flat_map(|(p, ..)| p.needs_subject.iter().map(|c| c.to_string()))
        .collect();
    for check in needed {
        if context.subject.contains_key(&check) {
            continue;
        }
        let graded = trials
            .iter()
            .find(|(p, ..)| p.role == Role::Graded && p.name == check);
        if let Some((planned, ..)) = graded.filter(|(p, ..)| p.skip.is_none()) {
            let tickets = planned
                .jobs
                .iter()
                .cloned()
                .map(|j| pool.submit(j))
                .collect();
            context.subject.insert(check, tickets);
        }
    }
    let names: Vec<String> = trials
        .iter()
        .filter(|(_, selected, ..)| *selected)
        .map(|(p, ..)| p.name.clone())
        .collect();
    let filtered_out = trials.len() - names.len();
    // Judged one by one, in lab order, as the jobs finish.
    let outcomes = trials
        .into_iter()
        .enumerate()
        .map(|(i, (planned, selected, run, tickets))| {
            let outcome = if !run {
                None
            } else if let Some(reason) = &planned.skip {
                Some(Err(reason.clone()))
            } else {
                let done: Vec<Done> = tickets.iter().map(|t| t.wait()).collect();
                Some(Ok((planned.judge)(&done, &context)))
            };
            (i, planned.name, selected, outcome)
        });
    let json = matches!(args.format, Some(FormatSetting::Json));
    if !json {
        println!("\n{}", suite.title);
    }
    let records = Arc::new(Mutex::new(records));
    let record = |i: usize,
                  outcome: &Option<
        std::result::Result<std::result::Result<(), Rejection>, String>,
    >| {
        let mut records = records.lock().unwrap();
        match outcome {
            Some(Ok(Ok(()))) => records[i].verdict = Some(Verdict::Passed),
            Some(Ok(Err(r))) => {
                records[i].verdict = Some(match &r.not_judged {
                    Some(why) => Verdict::NotJudged { why: why.clone() },
                    None => Verdict::Failed {
                        observed: r.observed.clone(),
                        hint: r.hint.clone(),
                        setup: r.setup,
                    },
                })
            }
            Some(Err(reason)) => records[i].skipped = Some(reason.clone()),
            None => {}
        }
    };
    let ok = if json {
        // Machine-readable output: libtest-mimic's, on outcomes judged in order.
        let mut mimic = Vec::new();
        for (i, name, _, outcome) in outcomes {
            record(i, &outcome);
            let ignored = outcome.is_none();
            mimic.push(
                Trial::ignorable_test(name, move || match outcome {
                    None | Some(Err(_)) => Ok(Completion::ignored()),
                    Some(Ok(Ok(()))) => Ok(Completion::Completed),
                    Some(Ok(Err(r))) => Err(Failed::from(r.message)),
                })
                .with_ignored_flag(ignored),
            );
        }
        let mut one = args.clone();
        one.filter = None;
        one.skip.clear();
        one.ignored = false;
        one.include_ignored = false;
        !libtest_mimic::run(&one, mimic).has_failed()
    } else {
        let shown: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut printer = report::Printer::start(&args, &shown);
        for (i, name, selected, outcome) in outcomes {
            if !selected {
                continue;
            }
            printer.begin(&name);
            record(i, &outcome);
            printer.outcome(
                &name,
                match outcome {
                    None => report::Outcome::Ignored(None),
                    Some(Err(reason)) => report::Outcome::Ignored(Some(reason)),
                    Some(Ok(Ok(()))) => report::Outcome::Passed,
                    Some(Ok(Err(r))) => report::Outcome::Failed(r.message),
                },
            );
        }
        printer.finish(filtered_out)
    };
    let records = records.lock().unwrap().clone();
    let ran = records
        .iter()
        .filter(|r| r.ran() || r.skipped.is_some())
        .count();
    if !json && ran > 1 {
        let board = board::Board {
            title: format!("Progress: {}", suite.title),
            parts: suite.parts,
            records: &records,
            maintainer: !suite.entries.is_empty(),
        };
        print!("{}", board.render());
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(101)
    }
}

/// Why a trial failed: the full message, and the board's short version.
struct Rejection {
    message: String,
    observed: String,
    hint: String,
    /// The services could not run it.
    setup: bool,
    /// A catalogue entry left unjudged, and why.
    not_judged: Option<String>,
}

impl Rejection {
    fn of(failure: &Failure, done: &Done, context: &str) -> Rejection {
        let mut message = String::new();
        if !context.is_empty() {
            message += context;
            message += "\n";
        }
        message += &failure.to_string();
        message += &details(done);
        Rejection {
            message,
            observed: failure.observed(),
            hint: failure.hint(),
            setup: matches!(failure, Failure::Setup(_)),
            not_judged: None,
        }
    }

    fn plain(message: String) -> Rejection {
        Rejection {
            observed: message.lines().next().unwrap_or_default().to_string(),
            hint: "see the message above".into(),
            message,
            setup: false,
            not_judged: None,
        }
    }

    /// A catalogue entry that cannot be judged here: the reference itself
    /// fails `check`, so a rejection (or a failure) on it proves nothing.
    fn not_judged(check: &str, reference: &Failure) -> Rejection {
        let why = if matches!(reference, Failure::Setup(_)) {
            "the services could not run the reference"
        } else {
            "the reference itself fails it"
        };
        let mut rejection = Rejection::plain(format!(
            "not judged: {check} needs a reference that passes it, and here {why}:\n{reference}"
        ));
        rejection.not_judged = Some(format!("{why} ({check})"));
        rejection
    }
}

/// What a judge may know besides its own jobs: the graded answers' outcome
/// on each check (in the maintainer command, the reference's).
#[derive(Default)]
struct Context {
    subject: HashMap<String, Vec<Arc<Ticket>>>,
}

impl Context {
    /// How the graded answers failed `check`, if they did (waiting for it).
    fn subject_failure(&self, check: &str) -> Option<Failure> {
        self.subject
            .get(check)?
            .iter()
            .find_map(|t| t.wait().outcome().err())
    }

    /// The first of `checks` the graded answers fail, as a rejection that
    /// leaves the entry unjudged.
    fn unjudged(&self, checks: &[&str]) -> Option<Rejection> {
        checks.iter().find_map(|check| {
            self.subject_failure(check)
                .map(|f| Rejection::not_judged(check, &f))
        })
    }
}

/// What a child printed, and what it kept, after the verdict.
fn details(done: &Done) -> String {
    let mut text = String::new();
    if let Ok(report) = &done.report {
        for (schema, prefix) in &report.kept {
            text += &format!(
                "\nkept for inspection (LAB_KEEP_FAILED): schema {schema}, keys {prefix}*"
            );
        }
    }
    let lines: Vec<&str> = done.output.lines().collect();
    if !lines.is_empty() {
        let shown = &lines[lines.len().saturating_sub(30)..];
        text += "\noutput of the check's process";
        if shown.len() < lines.len() {
            text += &format!(" (last {} of {} lines)", shown.len(), lines.len());
        }
        text += ":\n    ";
        text += &shown.join("\n    ");
    }
    text
}

type Judge = Box<dyn Fn(&[Done], &Context) -> Result<(), Rejection> + Send + Sync>;

/// One trial: what it runs, how it judges, and where it stands.
struct Planned {
    name: String,
    role: Role,
    part: Option<u8>,
    /// Part of an optional part: run only when asked for.
    ignored: bool,
    /// Why it cannot run here (Part 4 without a replica): reported as
    /// skipped, never as a failure.
    skip: Option<String>,
    jobs: Vec<Job>,
    /// Checks whose outcome on the graded answers the judge consults.
    needs_subject: Vec<&'static str>,
    judge: Judge,
}

impl Planned {
    fn record(&self) -> Record {
        Record {
            name: self.name.clone(),
            role: self.role,
            part: self.part,
            verdict: None,
            skipped: None,
        }
    }
}

/// Every trial in lab order: the graded checks, then the catalogues and the
/// maintainer checks.
fn plan(suite: &Suite) -> Vec<Planned> {
    let part_of = |number: u8| suite.parts.iter().find(|p| p.number == number);
    // LAB_REQUIRE_REPLICA (autograding): a missing replica fails Part 4's
    // checks instead of skipping them, so that no points come without it.
    let no_replica = testkit::replica_url()
        .err()
        .filter(|_| std::env::var_os("LAB_REQUIRE_REPLICA").is_none());
    let skip = |number: u8| {
        part_of(number)
            .filter(|p| p.needs_replica)
            .and(no_replica.as_ref())
            .map(|why| format!("no read replica ({why}): scripts/services up --replica"))
    };
    let mut out = Vec::new();
    let mut add = |name: String,
                   role: Role,
                   part: Option<u8>,
                   jobs: Vec<Job>,
                   needs_subject: Vec<&'static str>,
                   judge: Judge| {
        out.push(Planned {
            name,
            role,
            part,
            ignored: part.and_then(part_of).is_some_and(|p| p.optional),
            skip: part.and_then(skip),
            jobs,
            needs_subject,
            judge,
        });
    };
    let runs = repeat();
    let repeated = |answers: &Answers, check: &str| -> Vec<Job> {
        (0..runs)
            .map(|_| Job {
                answers: answers.name.into(),
                check: check.into(),
            })
            .collect()
    };
    let run_of = move |i: usize| {
        if runs > 1 {
            format!(" (run {} of {runs})", i % runs + 1)
        } else {
            String::new()
        }
    };
    for check in suite.checks {
        let judge: Judge = Box::new(move |done, _| {
            for (i, d) in done.iter().enumerate() {
                if let Err(failure) = d.outcome() {
                    let context = if runs > 1 {
                        format!("failed in run {} of {runs}:", i + 1)
                    } else {
                        String::new()
                    };
                    return Err(Rejection::of(&failure, d, &context));
                }
            }
            Ok(())
        });
        let jobs = repeated(suite.subject, check.name);
        add(
            check.name.into(),
            Role::Graded,
            Some(check.part),
            jobs,
            Vec::new(),
            judge,
        );
    }
    for entry in &suite.entries {
        match *entry {
            Entry::Design {
                name,
                part,
                answers,
            } => {
                let checks: Vec<&'static str> = suite
                    .checks
                    .iter()
                    .filter(|c| c.part == part)
                    .map(|c| c.name)
                    .collect();
                let jobs: Vec<Job> = checks.iter().flat_map(|c| repeated(answers, c)).collect();
                let needs = checks.clone();
                let judge: Judge = Box::new(move |done, context| {
                    if let Some(unjudged) = context.unjudged(&checks) {
                        return Err(unjudged);
                    }
                    for (i, d) in done.iter().enumerate() {
                        if let Err(failure) = d.outcome() {
                            let check = checks[i / runs];
                            return Err(Rejection::of(
                                &failure,
                                d,
                                &format!("{check} rejected this correct design{}:", run_of(i)),
                            ));
                        }
                    }
                    Ok(())
                });
                let trial = format!("designs::part{part}::{name}");
                add(trial, Role::Design, Some(part), jobs, needs, judge);
            }
            Entry::Mistake {
                name,
                answers,
                caught_by,
                hint,
            } => {
                let part = caught_by
                    .first()
                    .and_then(|c| suite.checks.iter().find(|k| k.name == *c))
                    .map_or(0, |c| c.part);
                let jobs: Vec<Job> = caught_by
                    .iter()
                    .flat_map(|c| repeated(answers, c))
                    .collect();
                let judge: Judge = Box::new(move |done, context| {
                    if let Some(unjudged) = context.unjudged(caught_by) {
                        return Err(unjudged);
                    }
                    for (i, d) in done.iter().enumerate() {
                        let check = caught_by[i / runs];
                        let run = run_of(i);
                        match d.outcome() {
                            Ok(()) => {
                                return Err(Rejection::plain(format!(
                                    "{check} passed{run}; it must reject this mistake"
                                )));
                            }
                            Err(failure @ Failure::Wrong { .. }) => {
                                let message = failure.to_string();
                                if std::env::var_os("LAB_SHOW_REJECTIONS").is_some() {
                                    println!("\n{name}, rejected by {check}{run}:\n{message}");
                                }
                                if !message.contains(hint) {
                                    return Err(Rejection::plain(format!(
                                        "{check} rejected it{run}, but its message lacks the hint {hint:?}:\n{message}"
                                    )));
                                }
                            }
                            Err(other) => {
                                return Err(Rejection::plain(format!(
                                    "{check} failed it{run} by something other than behaviour:\n{other}{}",
                                    details(d)
                                )));
                            }
                        }
                    }
                    Ok(())
                });
                let trial = format!("mistakes::part{part}::{name}");
                add(
                    trial,
                    Role::Mistake,
                    Some(part),
                    jobs,
                    caught_by.to_vec(),
                    judge,
                );
            }
            Entry::Stubs => {
                // Every check that can run here (Part 4's need a replica).
                let checks: Vec<&'static str> = suite
                    .checks
                    .iter()
                    .filter(|c| skip(c.part).is_none())
                    .map(|c| c.name)
                    .collect();
                let jobs: Vec<Job> = checks
                    .iter()
                    .map(|c| Job {
                        answers: Answers::LEARNER.name.into(),
                        check: (*c).into(),
                    })
                    .collect();
                let judge: Judge = Box::new(move |done, _| {
                    for (check, d) in checks.iter().zip(done) {
                        match d.outcome() {
                            Err(Failure::Panicked { panic, .. }) if panic.is_todo() => {}
                            other => {
                                return Err(Rejection::plain(format!(
                                    "{check} on src/lib.rs did not fail with a stub's todo!() (is src/lib.rs the stubs as shipped?): {other:?}"
                                )));
                            }
                        }
                    }
                    Ok(())
                });
                let trial = "maintainers::the_stubs_as_shipped_fail_every_check_with_their_todo";
                add(
                    trial.into(),
                    Role::Maintainer,
                    None,
                    jobs,
                    Vec::new(),
                    judge,
                );
            }
            Entry::Plain { name, run } => {
                let judge: Judge = Box::new(move |_, _| run().map_err(Rejection::plain));
                add(
                    format!("maintainers::{name}"),
                    Role::Maintainer,
                    None,
                    Vec::new(),
                    Vec::new(),
                    judge,
                );
            }
        }
    }
    out
}

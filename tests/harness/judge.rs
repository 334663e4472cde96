//! How a trial came out ([`Verdict`], the one type from here to the board),
//! and one judge per kind of trial, each reading the jobs its trial ran.

use cache_aside_lab::labkit::testkit::timeline;

use crate::checks::Failure;

use super::jobs::Done;

/// How one trial came out: what its judge decided, what the printers print
/// and what the board counts.
#[derive(Debug, Clone)]
pub enum Verdict {
    Passed,
    /// `message` is the full failure block; `observed` and `hint` are the
    /// board's short version of it.
    Failed {
        message: String,
        observed: String,
        hint: String,
        /// The services could not run it (a setup failure), as opposed to
        /// answers that behaved wrongly.
        setup: bool,
    },
    /// A catalogue entry that could not be judged: the graded answers (in
    /// the maintainer command, the reference) fail a check it needs, here.
    /// Reported as a failure; `why` is the board's short version.
    NotJudged {
        message: String,
        why: String,
    },
    /// Not run: not selected, or part of an optional part not asked for.
    Ignored,
    /// Selected, but it cannot run here (Part 4 without a replica): reported
    /// as ignored with the reason, never as a failure.
    Skipped(String),
}

impl Verdict {
    /// Whether it ran (and so passed or failed).
    pub fn ran(&self) -> bool {
        matches!(
            self,
            Verdict::Passed | Verdict::Failed { .. } | Verdict::NotJudged { .. }
        )
    }

    /// A catalogue entry that cannot be judged here: the graded answers
    /// fail `check` (`failure`), so a rejection (or a failure) on it proves
    /// nothing.
    pub fn not_judged(check: &str, failure: &Failure) -> Verdict {
        let why = if matches!(failure, Failure::Setup(_)) {
            "the services could not run the reference"
        } else {
            "the reference itself fails it"
        };
        Verdict::NotJudged {
            message: format!(
                "not judged: {check} needs a reference that passes it, and here {why}:\n{failure}"
            ),
            why: format!("{why} ({check})"),
        }
    }

    /// A check's failure, after `context` (a line, or nothing), with what
    /// the child printed and kept.
    fn rejected(failure: &Failure, done: &Done, context: &str) -> Verdict {
        let mut message = String::new();
        if !context.is_empty() {
            message += context;
            message += "\n";
        }
        message += &failure.to_string();
        message += &timeline_block(failure, done);
        message += &details(done);
        Verdict::Failed {
            message,
            observed: failure.observed(),
            hint: failure.hint(),
            setup: matches!(failure, Failure::Setup(_)),
        }
    }

    /// A failure told by the harness itself: its first line is the board's.
    fn plain(message: String) -> Verdict {
        Verdict::Failed {
            observed: message.lines().next().unwrap_or_default().to_string(),
            hint: "see the message above".into(),
            message,
            setup: false,
        }
    }
}

/// What the answers did, under the failure: at most about 15 lines, the
/// culprit step marked. Only for behaviour (a wrong result or a hang): a
/// panic or a setup failure says all there is to say.
fn timeline_block(failure: &Failure, done: &Done) -> String {
    if !matches!(failure, Failure::Wrong { .. } | Failure::Hang { .. }) || done.timeline.is_empty()
    {
        return String::new();
    }
    let lines = timeline::render(&done.timeline);
    format!("\nwhat your code did (time since the check began):\n{lines}")
}

/// What a child printed, and what it kept, after the verdict.
fn details(done: &Done) -> String {
    let mut text = String::new();
    for (schema, prefix) in &done.kept {
        text +=
            &format!("\nkept for inspection (LAB_KEEP_FAILED): schema {schema}, keys {prefix}*");
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

/// The checks a trial runs, each `times` times, in that order: job `i` is
/// check `i / times`, run `i % times`.
#[derive(Debug, Clone)]
pub struct Runs {
    pub checks: Vec<&'static str>,
    pub times: usize,
}

impl Runs {
    /// The check behind job `i`, and " (run r of n)" when checks repeat.
    fn at(&self, i: usize) -> (&'static str, String) {
        let run = if self.times > 1 {
            format!(" (run {} of {})", i % self.times + 1, self.times)
        } else {
            String::new()
        };
        (self.checks[i / self.times], run)
    }
}

/// A trial's kind, and what its judge needs to know.
pub enum Judge {
    /// A graded check: every run passes; with `unmarked` (the reference,
    /// in the maintainer command) its timeline marks no step either.
    Graded { runs: Runs, unmarked: bool },
    /// A correct design: passes every run of every check of its part, and
    /// its timelines mark no step.
    Design { runs: Runs },
    /// A classic mistake: each check in `runs` rejects it by behaviour, with
    /// a message that contains `hint`; for a race or a herd (`marks`), with
    /// a timeline whose marked step's reason contains that text.
    Mistake {
        name: &'static str,
        runs: Runs,
        hint: &'static str,
        marks: Option<&'static str>,
    },
    /// `src/lib.rs` as shipped: every check fails with the stub's own
    /// `todo!()` (the reverse check).
    Stubs { runs: Runs },
    /// A check that runs no answers, in this process.
    Plain { check: fn() -> Result<(), String> },
}

impl Judge {
    /// The checks it runs (none for a plain check).
    pub fn runs(&self) -> Option<&Runs> {
        match self {
            Judge::Graded { runs, .. }
            | Judge::Design { runs }
            | Judge::Mistake { runs, .. }
            | Judge::Stubs { runs } => Some(runs),
            Judge::Plain { .. } => None,
        }
    }

    /// The checks whose outcome on the graded answers decides whether this
    /// trial can be judged at all: a catalogue entry's (none otherwise).
    pub fn needs_subject(&self) -> &[&'static str] {
        match self {
            Judge::Design { runs } | Judge::Mistake { runs, .. } => &runs.checks,
            _ => &[],
        }
    }

    /// The verdict on `done`, the results of the jobs of [`Judge::runs`], in
    /// order.
    pub fn verdict(&self, done: &[Done]) -> Verdict {
        match self {
            Judge::Graded { runs, unmarked } => graded(runs, *unmarked, done),
            Judge::Design { runs } => design(runs, done),
            Judge::Mistake {
                name,
                runs,
                hint,
                marks,
            } => mistake(name, runs, hint, *marks, done),
            Judge::Stubs { runs } => stubs(runs, done),
            Judge::Plain { check } => check().map_or_else(Verdict::plain, |()| Verdict::Passed),
        }
    }
}

fn graded(runs: &Runs, unmarked: bool, done: &[Done]) -> Verdict {
    for (i, d) in done.iter().enumerate() {
        if let Err(failure) = &d.outcome {
            let context = if runs.times > 1 {
                format!("failed in run {} of {}:", i + 1, runs.times)
            } else {
                String::new()
            };
            return Verdict::rejected(failure, d, &context);
        }
        if unmarked && let Some(marked) = marked(runs, i, d, "the reference") {
            return marked;
        }
    }
    Verdict::Passed
}

fn design(runs: &Runs, done: &[Done]) -> Verdict {
    for (i, d) in done.iter().enumerate() {
        if let Err(failure) = &d.outcome {
            let (check, run) = runs.at(i);
            let context = format!("{check} rejected this correct design{run}:");
            return Verdict::rejected(failure, d, &context);
        }
        if let Some(marked) = marked(runs, i, d, "this correct design") {
            return marked;
        }
    }
    Verdict::Passed
}

/// A correct answer's timeline with a step marked as the culprit: the
/// marks would blame a correct step, so the finder is wrong.
fn marked(runs: &Runs, i: usize, d: &Done, whose: &str) -> Option<Verdict> {
    if !timeline::has_mark(&d.timeline) {
        return None;
    }
    let (check, run) = runs.at(i);
    Some(Verdict::plain(format!(
        "{check} passed {whose}{run}, yet its timeline marks a step as the culprit (testkit::marks blames a correct step):\n{}",
        timeline::render(&d.timeline)
    )))
}

fn mistake(name: &str, runs: &Runs, hint: &str, marks: Option<&str>, done: &[Done]) -> Verdict {
    for (i, d) in done.iter().enumerate() {
        let (check, run) = runs.at(i);
        match &d.outcome {
            Ok(()) => {
                return Verdict::plain(format!("{check} passed{run}; it must reject this mistake"));
            }
            Err(failure @ Failure::Wrong { .. }) => {
                let message = failure.to_string() + &timeline_block(failure, d);
                if std::env::var_os("LAB_SHOW_REJECTIONS").is_some() {
                    println!("\n{name}, rejected by {check}{run}:\n{message}");
                }
                if !message.contains(hint) {
                    return Verdict::plain(format!(
                        "{check} rejected it{run}, but its message lacks the hint {hint:?}:\n{message}"
                    ));
                }
                // The marked step is shown, with the reason the catalogue
                // gives for this race.
                if let Some(why) = marks
                    && !message.lines().any(|l| l.contains("← ") && l.contains(why))
                {
                    return Verdict::plain(format!(
                        "{check} rejected it{run}, but its timeline shows no step marked {why:?}:\n{message}"
                    ));
                }
            }
            Err(other) => {
                return Verdict::plain(format!(
                    "{check} failed it{run} by something other than behaviour:\n{other}{}",
                    details(d)
                ));
            }
        }
    }
    Verdict::Passed
}

fn stubs(runs: &Runs, done: &[Done]) -> Verdict {
    for (check, d) in runs.checks.iter().zip(done) {
        match &d.outcome {
            Err(Failure::Panicked { panic, .. }) if panic.is_todo() => {}
            other => {
                return Verdict::plain(format!(
                    "{check} on src/lib.rs did not fail with a stub's todo!() (is src/lib.rs the stubs as shipped?): {other:?}"
                ));
            }
        }
    }
    Verdict::Passed
}

//! The progress board printed at the end of a run: each part's passed and
//! total, and the one next step.

use std::fmt::Write as _;

use super::Part;
use super::judge::Verdict;
use super::plan::{Role, Trial};

pub struct Board<'a> {
    pub title: String,
    pub parts: &'a [Part],
    /// Every trial of the plan, with its verdict, in lab order.
    pub trials: Vec<(&'a Trial, Verdict)>,
    /// The maintainer command: the graded answers are the reference, which
    /// must pass everything before the catalogues mean anything.
    pub maintainer: bool,
}

impl Board<'_> {
    /// How many trials ran or were skipped.
    pub fn ran(&self) -> usize {
        self.trials
            .iter()
            .filter(|(_, v)| v.ran() || matches!(v, Verdict::Skipped(_)))
            .count()
    }

    fn of(&self, role: Role) -> impl Iterator<Item = &(&Trial, Verdict)> {
        self.trials.iter().filter(move |(t, _)| t.role() == role)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.title);
        for part in self.parts {
            let label = format!("Part {}  {}", part.number, part.label());
            let _ = writeln!(out, "  {label:<34} {}", self.state(part));
        }
        for (role, what, verb) in [
            (Role::Design, "Correct designs", "accepted"),
            (Role::Mistake, "Classic mistakes", "rejected"),
            (Role::Maintainer, "Maintainer checks", "passed"),
        ] {
            let ran: Vec<&Verdict> = self.of(role).map(|(_, v)| v).filter(|v| v.ran()).collect();
            if !ran.is_empty() {
                let ok = ran.iter().filter(|v| matches!(v, Verdict::Passed)).count();
                let mut line = format!("{ok}/{} {verb}", ran.len());
                let unjudged: Vec<&str> = ran
                    .iter()
                    .filter_map(|v| match v {
                        Verdict::NotJudged { why, .. } => Some(why.as_str()),
                        _ => None,
                    })
                    .collect();
                if let Some(why) = unjudged.first() {
                    line += &format!(", {} not judged: {why}", unjudged.len());
                }
                let _ = writeln!(out, "  {what:<34} {line}");
            }
        }
        out += &self.reference_failed();
        out += &self.next_step();
        out
    }

    /// A part's line: passed of run, skipped, or how to run it.
    fn state(&self, part: &Part) -> String {
        let graded: Vec<&Verdict> = self
            .of(Role::Graded)
            .filter(|(t, _)| t.part == Some(part.number))
            .map(|(_, v)| v)
            .collect();
        let ran: Vec<&Verdict> = graded.iter().copied().filter(|v| v.ran()).collect();
        let passed = ran.iter().filter(|v| matches!(v, Verdict::Passed)).count();
        let skipped = graded.iter().find_map(|v| match v {
            Verdict::Skipped(why) => Some(why),
            _ => None,
        });
        if let (true, Some(why)) = (ran.is_empty(), skipped) {
            return format!("skipped: {why}");
        }
        if ran.is_empty() {
            return format!("not run: {}", part.command());
        }
        let mut s = format!("{passed}/{}", ran.len());
        if passed == ran.len() {
            s += "  done";
        }
        if ran.len() < graded.len() {
            s += &format!("  ({} not run)", graded.len() - ran.len());
        }
        s
    }

    /// In the maintainer command, a reference that fails is the news: the
    /// services cannot run it (or it is broken), and no catalogue verdict
    /// means anything until it passes.
    fn reference_failed(&self) -> String {
        if !self.maintainer {
            return String::new();
        }
        let graded: Vec<(&Trial, &Verdict)> = self
            .of(Role::Graded)
            .filter(|(_, v)| v.ran())
            .map(|(t, v)| (*t, v))
            .collect();
        let failed: Vec<&(&Trial, &Verdict)> = graded
            .iter()
            .filter(|(_, v)| !matches!(v, Verdict::Passed))
            .collect();
        let Some((first, _)) = failed.first() else {
            return String::new();
        };
        let setup = failed
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Failed { setup: true, .. }));
        let why = if setup {
            "the services could not run it as configured"
        } else {
            "the reference itself is wrong, or the services misbehave"
        };
        format!(
            "The reference FAILED {} of {} checks here: {why}; catalogue entries on those checks are not judged. First: {}\n",
            failed.len(),
            graded.len(),
            first.name
        )
    }

    fn next_step(&self) -> String {
        let failed = self.trials.iter().find_map(|(t, v)| match v {
            Verdict::Failed { observed, hint, .. } => {
                Some(format!("Next: {}\n  {observed}\n  hint: {hint}\n", t.name))
            }
            Verdict::NotJudged { why, .. } => {
                Some(format!("Next: {}\n  not judged: {why}\n", t.name))
            }
            _ => None,
        });
        if let Some(next) = failed {
            return next;
        }
        let open = self.parts.iter().find(|part| {
            self.of(Role::Graded)
                .any(|(t, v)| t.part == Some(part.number) && !v.ran())
        });
        match open {
            Some(part) => format!(
                "Next: Part {}, {}: {}\n",
                part.number,
                part.label(),
                part.command()
            ),
            None => "Every part passes. Compare your answers with the reference, step by step: cargo run --bin solution -- --compare\n".into(),
        }
    }
}

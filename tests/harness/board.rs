//! The progress board printed at the end of a run: each part's passed and
//! total, and the one next step.

use std::fmt::Write as _;

use super::{Part, Record, Role, Verdict};

pub struct Board<'a> {
    pub title: String,
    pub parts: &'a [Part],
    pub records: &'a [Record],
    /// The maintainer command: the graded answers are the reference, which
    /// must pass everything before the catalogues mean anything.
    pub maintainer: bool,
}

impl Board<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.title);
        for part in self.parts {
            let graded: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| r.role == Role::Graded && r.part == Some(part.number))
                .collect();
            let ran: Vec<&Record> = graded.iter().copied().filter(|r| r.ran()).collect();
            let passed = ran.iter().filter(|r| r.passed()).count();
            let label = format!("Part {}  {}", part.number, part.label());
            let skipped = graded.iter().find_map(|r| r.skipped.as_deref());
            let state = if let (true, Some(why)) = (ran.is_empty(), skipped) {
                format!("skipped: {why}")
            } else if ran.is_empty() {
                format!("not run: {}", part.command())
            } else {
                let mut s = format!("{passed}/{}", ran.len());
                if passed == ran.len() {
                    s += "  done";
                }
                if ran.len() < graded.len() {
                    s += &format!("  ({} not run)", graded.len() - ran.len());
                }
                s
            };
            let _ = writeln!(out, "  {label:<34} {state}");
        }
        for (role, what, verb) in [
            (Role::Design, "Correct designs", "accepted"),
            (Role::Mistake, "Classic mistakes", "rejected"),
            (Role::Maintainer, "Maintainer checks", "passed"),
        ] {
            let ran: Vec<&Record> = self
                .records
                .iter()
                .filter(|r| r.role == role && r.ran())
                .collect();
            if !ran.is_empty() {
                let ok = ran.iter().filter(|r| r.passed()).count();
                let mut line = format!("{ok}/{} {verb}", ran.len());
                let unjudged: Vec<&&Record> = ran.iter().filter(|r| r.not_judged()).collect();
                if let Some(Some(Verdict::NotJudged { why })) = unjudged.first().map(|r| &r.verdict)
                {
                    line += &format!(", {} not judged: {why}", unjudged.len());
                }
                let _ = writeln!(out, "  {what:<34} {line}");
            }
        }
        out += &self.reference_failed();
        out += &self.next_step();
        out
    }

    /// In the maintainer command, a reference that fails is the news: the
    /// services cannot run it (or it is broken), and no catalogue verdict
    /// means anything until it passes.
    fn reference_failed(&self) -> String {
        if !self.maintainer {
            return String::new();
        }
        let graded: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.role == Role::Graded && r.ran())
            .collect();
        let failed: Vec<&&Record> = graded.iter().filter(|r| !r.passed()).collect();
        let Some(first) = failed.first() else {
            return String::new();
        };
        let setup = failed
            .iter()
            .any(|r| matches!(r.verdict, Some(Verdict::Failed { setup: true, .. })));
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
        if let Some(failed) = self.records.iter().find(|r| !r.passed() && r.ran()) {
            return match &failed.verdict {
                Some(Verdict::Failed { observed, hint, .. }) => {
                    format!("Next: {}\n  {observed}\n  hint: {hint}\n", failed.name)
                }
                Some(Verdict::NotJudged { why }) => {
                    format!("Next: {}\n  not judged: {why}\n", failed.name)
                }
                _ => unreachable!("ran and did not pass"),
            };
        }
        let open = self.parts.iter().find(|part| {
            self.records
                .iter()
                .any(|r| r.role == Role::Graded && r.part == Some(part.number) && !r.ran())
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

//! The progress board printed at the end of a run: each part's passed and
//! total, and the one next step.

use std::fmt::Write as _;

use super::{Part, Record, Role, Verdict};

pub struct Board<'a> {
    pub title: String,
    pub parts: &'a [Part],
    pub records: &'a [Record],
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
                let _ = writeln!(out, "  {what:<34} {ok}/{} {verb}", ran.len());
            }
        }
        out += &self.next_step();
        out
    }

    fn next_step(&self) -> String {
        if let Some(failed) = self.records.iter().find(|r| !r.passed() && r.ran()) {
            let Some(Verdict::Failed { observed, hint }) = &failed.verdict else {
                unreachable!("ran and did not pass");
            };
            return format!("Next: {}\n  {observed}\n  hint: {hint}\n", failed.name);
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

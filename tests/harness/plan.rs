//! Every trial of a run, in lab order, as data: its name, where it stands,
//! the jobs it runs and the judge that reads them. The catalogues' check
//! names and parts are validated here, before anything runs.

use cache_aside_lab::labkit::testkit::{self, Answers, Function};

use super::jobs::Job;
use super::judge::{Judge, Runs};
use super::{Check, Entry, Part, Suite};

/// Who a trial is for: the board counts each role apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Graded,
    Design,
    Mistake,
    Maintainer,
}

/// One trial: what it runs, how it is judged, and where it stands.
pub struct Trial {
    pub name: String,
    pub part: Option<u8>,
    /// Part of an optional part: run only when asked for.
    pub ignored: bool,
    /// Why it cannot run here (Part 4 without a replica): reported as
    /// skipped, never as a failure.
    pub skip: Option<String>,
    /// Whose answers its jobs run.
    pub answers: &'static Answers,
    pub judge: Judge,
}

impl Trial {
    pub fn role(&self) -> Role {
        match self.judge {
            Judge::Graded { .. } => Role::Graded,
            Judge::Design { .. } => Role::Design,
            Judge::Mistake { .. } => Role::Mistake,
            Judge::Stubs { .. } | Judge::Plain { .. } => Role::Maintainer,
        }
    }

    /// One job per check and run, in the order its judge reads them.
    pub fn jobs(&self) -> Vec<Job> {
        let Some(runs) = self.judge.runs() else {
            return Vec::new();
        };
        runs.checks
            .iter()
            .flat_map(|check| {
                (0..runs.times).map(|_| Job {
                    answers: self.answers.name.into(),
                    check: (*check).into(),
                })
            })
            .collect()
    }
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

/// What the plan is built from: the suite, and what this run can do.
struct Planner<'a> {
    suite: &'a Suite,
    /// Why there is no replica, if there is none and none is required.
    no_replica: Option<String>,
    /// How many times each check runs.
    times: usize,
}

impl Planner<'_> {
    /// The part `number`, which `who` names: Err if there is none.
    fn part(&self, number: u8, who: &str) -> Result<&Part, String> {
        self.suite
            .parts
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| format!("{who} names part {number}, and there is no such part"))
    }

    /// Why checks of part `number` cannot run here, if they cannot.
    fn skip(&self, number: u8) -> Option<String> {
        self.part(number, "")
            .ok()
            .filter(|p| p.needs_replica)
            .and(self.no_replica.as_ref())
            .map(|why| format!("no read replica ({why}): scripts/services up --replica"))
    }

    /// The names of the graded checks that `keep` keeps, in lab order.
    fn checks(&self, keep: impl Fn(&Check) -> bool) -> Vec<&'static str> {
        self.suite
            .checks
            .iter()
            .filter(|c| keep(c))
            .map(|c| c.name)
            .collect()
    }

    /// `checks`, each run `self.times` times.
    fn runs(&self, checks: Vec<&'static str>) -> Runs {
        Runs {
            checks,
            times: self.times,
        }
    }

    fn trial(
        &self,
        name: String,
        part: Option<u8>,
        answers: &'static Answers,
        judge: Judge,
    ) -> Trial {
        let part_of = |n| self.part(n, "").ok();
        Trial {
            name,
            part,
            ignored: part.and_then(part_of).is_some_and(|p| p.optional),
            skip: part.and_then(|n| self.skip(n)),
            answers,
            judge,
        }
    }

    fn graded(&self, check: &Check) -> Result<Trial, String> {
        self.part(check.part, check.name)?;
        let judge = Judge::Graded {
            runs: self.runs(vec![check.name]),
            // The maintainer command grades the reference: no step of its
            // timelines may be marked as a culprit.
            unmarked: !self.suite.entries.is_empty(),
        };
        Ok(self.trial(
            check.name.into(),
            Some(check.part),
            self.suite.subject,
            judge,
        ))
    }

    /// The trial of a catalogue entry or a maintainer check.
    fn entry(&self, entry: &Entry) -> Result<Trial, String> {
        Ok(match *entry {
            Entry::Design {
                name,
                part,
                answers,
            } => {
                self.part(part, &format!("designs::{name}"))?;
                let judge = Judge::Design {
                    runs: self.runs(self.checks(|c| c.part == part)),
                };
                let trial = format!("designs::part{part}::{name}");
                self.trial(trial, Some(part), answers, judge)
            }
            Entry::Mistake {
                name,
                answers,
                caught_by,
                hint,
                marks,
            } => {
                let part = self.caught_by_part(name, caught_by)?;
                let runs = self.runs(caught_by.to_vec());
                let judge = Judge::Mistake {
                    name,
                    runs,
                    hint,
                    marks,
                };
                let trial = format!("mistakes::part{part}::{name}");
                self.trial(trial, Some(part), answers, judge)
            }
            Entry::Stubs => {
                // Every check that can run here (Part 4's need a replica),
                // once.
                let checks = self.checks(|c| self.skip(c.part).is_none());
                let judge = Judge::Stubs {
                    runs: Runs { checks, times: 1 },
                };
                let trial = "maintainers::the_stubs_as_shipped_fail_every_check_with_their_todo";
                self.trial(trial.into(), None, &Answers::LEARNER, judge)
            }
            Entry::Plain { name, check } => {
                let trial = format!("maintainers::{name}");
                self.trial(trial, None, self.suite.subject, Judge::Plain { check })
            }
        })
    }

    /// A mistake's part: that of the first check that must reject it. Err if
    /// it lists no check, or one that is not graded.
    fn caught_by_part(&self, name: &str, caught_by: &[&str]) -> Result<u8, String> {
        let mut part = None;
        for wanted in caught_by {
            let check = self
                .suite
                .checks
                .iter()
                .find(|c| c.name == *wanted)
                .ok_or_else(|| {
                    format!("mistakes::{name} is caught by {wanted}, and there is no such check")
                })?;
            part.get_or_insert(check.part);
        }
        part.ok_or_else(|| format!("mistakes::{name} lists no check that catches it"))
    }
}

/// Every trial in lab order: the graded checks, then the catalogues and the
/// maintainer checks. Err if a check or a catalogue entry names a check or
/// a part that does not exist.
pub fn plan(suite: &Suite) -> Result<Vec<Trial>, String> {
    let planner = Planner {
        suite,
        // LAB_REQUIRE_REPLICA (autograding): a missing replica fails Part
        // 4's checks instead of skipping them, so that no points come
        // without it.
        no_replica: testkit::replica_url()
            .err()
            .filter(|_| std::env::var_os("LAB_REQUIRE_REPLICA").is_none()),
        times: repeat(),
    };
    parts_agree(suite)?;
    let graded = suite.checks.iter().map(|c| planner.graded(c));
    let entries = suite.entries.iter().map(|e| planner.entry(e));
    graded.chain(entries).collect()
}

/// The parts here are the parts of the TODO functions (testkit's list), and
/// each has graded checks.
fn parts_agree(suite: &Suite) -> Result<(), String> {
    for f in Function::ALL {
        if !suite.parts.iter().any(|p| p.number == f.part()) {
            return Err(format!(
                "{} is in part {}, which tests/grader.rs lacks",
                f.name(),
                f.part()
            ));
        }
    }
    for part in suite.parts {
        if !Function::ALL.iter().any(|f| f.part() == part.number) {
            return Err(format!(
                "part {} has no TODO function in labkit::testkit::answers' list",
                part.number
            ));
        }
        if !suite.checks.iter().any(|c| c.part == part.number) {
            return Err(format!("part {} has no graded check", part.number));
        }
    }
    Ok(())
}

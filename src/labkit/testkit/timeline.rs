//! The timeline as the learner reads it: the recording lives in the core
//! (`../timeline.rs`, re-exported here); this file tells it as lines.
//!
//! [`render`] gives at most about [`SHORT`] lines for a failure message:
//! in time order, herds folded (`… 47 more readers: GET user:1 → hit`), and
//! the marked step always kept; [`render_all`] gives every step (for
//! `LAB_TIMELINE=1`).

use std::collections::{BTreeMap, BTreeSet};

pub use super::super::timeline::{
    ActorGuard, Call, Event, Reply, act_as, actor, dropped, epoch, is_on, mark, merge, now_us,
    record_as, snapshot, start, start_shared, stop, take,
};

/// About how many lines [`render`] gives.
pub const SHORT: usize = 15;

/// One line to print: an event, and the like steps folded into it.
struct Line<'a> {
    event: &'a Event,
    /// How many more times the step was made, and by which other actors.
    more: usize,
    others: BTreeSet<&'a str>,
}

impl Line<'_> {
    /// Lines it takes: itself, and one for what was folded into it.
    fn height(&self) -> usize {
        1 + usize::from(self.more > 0)
    }
}

/// What an actor is, without its numbers: `reader 17` → `reader`,
/// `reader 5 in process 2` → `reader in process`.
pub fn role(actor: &str) -> String {
    actor
        .split(' ')
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `readers`, `readers in processes`: more than one of a role.
fn plural(role: &str) -> String {
    let noun = |w: &str| {
        if w.ends_with('s') {
            format!("{w}es")
        } else {
            format!("{w}s")
        }
    };
    match role.split_once(" in ") {
        Some((who, place)) => format!("{} in {}", noun(who), noun(place)),
        None => noun(role),
    }
}

/// Folds the steps of a herd: within a stretch of steps whose actors share
/// a role (`reader 1` … `reader 50`), the same step made again is one line,
/// where it was first made. Marked steps are never folded, nor folded over.
fn fold(events: &[Event]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let role_here = role(&events[i].actor);
        // A marked step ends the stretch too: nothing after it is folded
        // into a line before it.
        let end = events[i + 1..]
            .iter()
            .position(|e| role(&e.actor) != role_here || e.mark.is_some())
            .map_or(events.len(), |n| i + 1 + n);
        // Same text in this stretch → one line, at its first place.
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        let mut stretch: Vec<Line<'_>> = Vec::new();
        for event in &events[i..end] {
            if event.mark.is_none() {
                if let Some(&at) = first.get(&event.text()) {
                    let line: &mut Line<'_> = &mut stretch[at];
                    line.more += 1;
                    if event.actor != line.event.actor {
                        line.others.insert(&event.actor);
                    }
                    continue;
                }
                first.insert(event.text(), stretch.len());
            }
            stretch.push(Line {
                event,
                more: 0,
                others: BTreeSet::new(),
            });
        }
        lines.extend(stretch);
        i = end;
    }
    lines
}

/// Every step, one line each (herds still folded).
pub fn render_all(events: &[Event]) -> String {
    let lines = fold(events);
    let keep = vec![true; lines.len()];
    write(&lines, &keep)
}

/// At most about [`SHORT`] lines: the marked steps and what led to them
/// first, then the start and the end; gaps say how many steps they hide.
/// Of a check that made several labs, only one lab's steps are told: the
/// marked step's, or the last.
pub fn render(events: &[Event]) -> String {
    let space = events
        .iter()
        .find(|e| e.mark.is_some())
        .or_else(|| events.iter().rev().find(|e| !e.space.is_empty()))
        .map(|e| e.space.clone())
        .unwrap_or_default();
    let events: Vec<Event> = events
        .iter()
        .filter(|e| e.space.is_empty() || e.space == space)
        .cloned()
        .collect();
    let lines = fold(&events);
    let n = lines.len();
    // In order of importance: the marked steps, what just led to them, the
    // writers' steps (the update every race is about), more of what led to
    // the marks, the end (what came of it), the start, then the rest.
    let marked: Vec<usize> = (0..n).filter(|&i| lines[i].event.mark.is_some()).collect();
    let mut wanted: Vec<usize> = marked.clone();
    let back = |from: usize, to: usize| {
        (from..=to).flat_map(|b| marked.iter().filter_map(move |m| m.checked_sub(b)))
    };
    wanted.extend(back(1, 3));
    wanted.extend((0..n).filter(|&i| role(&lines[i].event.actor).starts_with("writer")));
    wanted.extend(back(4, 8));
    wanted.extend((0..n).rev().take(2));
    wanted.extend(0..3.min(n));
    wanted.extend(0..n);
    let mut keep = vec![false; n];
    for i in wanted {
        if keep[i] {
            continue;
        }
        keep[i] = true;
        if height(&lines, &keep) > SHORT && lines[i].event.mark.is_none() {
            keep[i] = false;
        }
    }
    write(&lines, &keep)
}

/// How many lines `write` gives for the lines kept: each with its fold
/// line, and one per gap.
fn height(lines: &[Line<'_>], keep: &[bool]) -> usize {
    let shown: usize = lines
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(l, _)| l.height())
        .sum();
    let gaps = (0..keep.len())
        .filter(|&i| !keep[i] && (i == 0 || keep[i - 1]))
        .count();
    shown + gaps
}

fn write(lines: &[Line<'_>], keep: &[bool]) -> String {
    let width = lines
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(l, _)| l.event.actor.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut hidden = 0;
    for (line, kept) in lines.iter().zip(keep) {
        if !kept {
            hidden += 1 + line.more;
            continue;
        }
        if hidden > 0 {
            out.push(format!("{:>10}  … {hidden} more steps", ""));
            hidden = 0;
        }
        let e = line.event;
        let mut text = format!(
            "{:>7.1} ms  {:<width$}  {}",
            e.at_us as f64 / 1000.0,
            e.actor,
            e.text()
        );
        if let Some(why) = &e.mark {
            text += &format!("   ← {why}");
        }
        out.push(text);
        if line.more > 0 {
            out.push(format!("{:>10}  … {}: {}", "", folded(line), e.text()));
        }
    }
    if hidden > 0 {
        out.push(format!("{:>10}  … {hidden} more steps", ""));
    }
    out.join("\n")
}

/// `47 more readers`; `4670 more times, by 49 readers` when the same
/// actors made the step again and again (a waiter polling); `1 more time`
/// when only the first actor did.
fn folded(line: &Line<'_>) -> String {
    let role = role(&line.event.actor);
    let who = |n: usize| {
        if n == 1 { role.clone() } else { plural(&role) }
    };
    let actors = line.others.len() + 1;
    let times = if line.more == 1 { "time" } else { "times" };
    if line.others.is_empty() {
        format!("{} more {times}", line.more)
    } else if line.more == line.others.len() {
        format!("{} more {}", line.more, who(line.more))
    } else {
        format!("{} more {times}, by {actors} {}", line.more, who(actors))
    }
}

/// Whether any step is marked.
pub fn has_mark(events: &[Event]) -> bool {
    events.iter().any(|e| e.mark.is_some())
}

/// What a process started by the grader (a remote call, a herd) needs to
/// record on the parent's timeline: its clock, and the actor it plays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shared {
    /// The parent's [`epoch`].
    pub epoch_us: u64,
    /// The actor (a herd process numbers its readers after it).
    pub actor: String,
}

impl Shared {
    /// For a process playing `actor`, if this process records a timeline.
    pub fn here(actor: impl Into<String>) -> Option<Shared> {
        Some(Shared {
            epoch_us: epoch()?,
            actor: actor.into(),
        })
    }

    /// Starts recording on the parent's clock (in the child).
    pub fn join(&self) {
        start_shared(self.epoch_us);
    }
}

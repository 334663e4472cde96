//! The timeline as the learner reads it: the recording lives in the core
//! (`../timeline.rs`, re-exported here); this file tells it as lines.
//!
//! [`render`] gives at most about [`SHORT`] lines for a failure message:
//! in time order, herds folded (`… 47 more readers: GET user:1 → hit`), and
//! the marked step always kept; [`render_all`] gives every step (for
//! `LAB_TIMELINE=1`).

use std::collections::BTreeMap;

pub use super::super::timeline::{
    ActorGuard, Call, Event, Reply, act_as, actor, dropped, epoch, is_on, mark, merge, now_us,
    record_as, snapshot, start, start_shared, stop,
};

/// About how many lines [`render`] gives.
pub const SHORT: usize = 15;

/// One line to print: an event, and how many like it were folded into it.
struct Line<'a> {
    event: &'a Event,
    more: usize,
}

/// What an actor is, without its numbers: `reader 17` → `reader`,
/// `process 2 reader 5` → `process reader`.
pub fn role(actor: &str) -> String {
    actor
        .split(' ')
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `readers`, `readers in process`: more than one of a role.
fn plural(role: &str) -> String {
    let (first, rest) = role.split_once(' ').unwrap_or((role, ""));
    let first = if first.ends_with('s') {
        format!("{first}es")
    } else {
        format!("{first}s")
    };
    if rest.is_empty() {
        first
    } else {
        format!("{first} {rest}")
    }
}

/// Folds the steps of a herd: within a stretch of steps whose actors share
/// a role (`reader 1` … `reader 50`), the same step by several of them is
/// one line, where it first happened. Marked steps are never folded.
fn fold(events: &[Event]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let role_here = role(&events[i].actor);
        let role_here = role_here.as_str();
        let end = events[i..]
            .iter()
            .position(|e| role(&e.actor) != role_here)
            .map_or(events.len(), |n| i + n);
        // Same text in this stretch → one line, at its first place.
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        let mut stretch: Vec<Line<'_>> = Vec::new();
        for event in &events[i..end] {
            if event.mark.is_none()
                && let Some(&at) = first.get(&event.text())
            {
                stretch[at].more += 1;
                continue;
            }
            if event.mark.is_none() {
                first.insert(event.text(), stretch.len());
            }
            stretch.push(Line { event, more: 0 });
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
    let budget = SHORT - 3;
    let mut keep = vec![false; lines.len()];
    if lines.len() <= SHORT {
        keep.fill(true);
    } else {
        let mut kept = 0;
        let mut take = |i: usize, keep: &mut Vec<bool>| {
            if kept < budget && !keep[i] {
                keep[i] = true;
                kept += 1;
            }
        };
        let marked: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].event.mark.is_some())
            .collect();
        for &m in &marked {
            take(m, &mut keep);
        }
        for back in 1..=5 {
            for &m in &marked {
                if let Some(i) = m.checked_sub(back) {
                    take(i, &mut keep);
                }
            }
        }
        for i in 0..3.min(lines.len()) {
            take(i, &mut keep);
        }
        for i in (0..lines.len()).rev().take(3) {
            take(i, &mut keep);
        }
        for i in 0..lines.len() {
            take(i, &mut keep);
        }
    }
    write(&lines, &keep)
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
            let role = role(&e.actor);
            let who = if line.more == 1 { role } else { plural(&role) };
            out.push(format!(
                "{:>10}  … {} more {who}: {}",
                "",
                line.more,
                e.text()
            ));
        }
    }
    if hidden > 0 {
        out.push(format!("{:>10}  … {hidden} more steps", ""));
    }
    out.join("\n")
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

//! What the `solution` binary prints: the reference answers narrated step
//! by step, or (`--compare`) your answers beside the reference.

use std::time::Instant;

use cache_aside_lab::labkit::testkit::timeline::{self, Event};
use cache_aside_lab::labkit::testkit::{
    Answers, database_url, mask_password, misconfiguration, redis_url,
};

use crate::reference;
use crate::scenario::{self, HERD, PROCESSES, SLOW, Seen, State, Step, StepId, THREADS};

/// What the narration can fail with: labkit's errors (services down), or
/// a herd that could not start.
pub type Outcome<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Part 4 needs a read replica; without one its step is left out, and says so.
const NO_REPLICA: &str =
    "   (not shown: no read replica; `scripts/services up --replica` starts one)";

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn part_header(part: u8) -> String {
    match part {
        1 => "Part 1: cache-aside".into(),
        2 => format!("Part 2: single-flight ({HERD} threads, statements slowed by {SLOW:?})"),
        3 => "Part 3: leases".into(),
        _ => "Part 4: a read replica that lags".into(),
    }
}

/// The subheadings of the steps that come in pairs (two rows under one
/// number); `None` for a step of one row.
fn group_header(id: StepId) -> Option<String> {
    match id {
        StepId::StaleSetRace => Some(format!(
            "{id}. the stale-set race: a reader reads user 4, an update lands, then the reader fills"
        )),
        StepId::ProcessHerd => Some(format!(
            "{id}. a cold herd across {PROCESSES} processes x {THREADS} threads on user 5"
        )),
        StepId::ReplicaLag => Some(format!(
            "{id}. an update of user 1, then at once a read, while the replica still has the old row"
        )),
        _ => None,
    }
}

fn services_line(space: &str) -> String {
    format!(
        "Postgres {}, Redis {}; a private copy of the seed data ({space}).",
        mask_password(&database_url()),
        mask_password(&redis_url()),
    )
}

/// `cargo run --bin solution`: the reference, narrated.
pub fn run() -> Outcome<()> {
    let started = Instant::now();
    let (space, steps) = scenario::observe(&reference::ANSWERS)?;
    println!("Cache-aside with Postgres + Redis: the reference answers, narrated.");
    println!("{}\n", services_line(&space));
    let mut part = 0;
    let mut group = None;
    for step in &steps {
        if step.part() != part {
            if part != 0 {
                println!();
            }
            part = step.part();
            println!("{}", part_header(part));
        }
        if let Some(header) = group_header(step.id) {
            if group != Some(step.id) {
                println!("{header}");
            }
            group = Some(step.id);
            println!("     {}", narrated_pair(step));
            continue;
        }
        let statements = match &step.seen {
            Seen::Got { statements, .. } => *statements,
            _ => 0,
        };
        let outcome = step.seen.described();
        println!(
            "{:>2}. {:<46} {outcome:<35} {statements:>3} statement{}",
            step.id,
            step.label,
            plural(statements)
        );
    }
    if !steps.iter().any(|s| s.part() == 4) {
        println!("\n{}\n{NO_REPLICA}", part_header(4));
    }
    unusable_setup(&steps)?;
    println!(
        "\nDone in {:.1?}. Now make `cargo test` green with your own src/lib.rs.",
        started.elapsed()
    );
    Ok(())
}

/// The reference cannot fail a step, so a step that failed, or a setup
/// labkit found unusable on the way (the reference carries on past a failed
/// cache call, as Part 3 asks), means that the services cannot run the lab:
/// the run fails with the cause, instead of exiting 0 after a narration of
/// what the broken setup made of it.
fn unusable_setup(reference: &[Step]) -> Outcome<()> {
    if let Some(e) = misconfiguration() {
        return Err(format!("the services cannot run the lab as configured, so the steps above are not the reference's behaviour: {e}").into());
    }
    if let Some(step) = reference.iter().find(|s| matches!(s.seen, Seen::Failed(_))) {
        return Err(format!(
            "the reference failed step {} ({}): {}; the services cannot run the lab as configured",
            step.id.number(),
            step.label,
            step.seen.behaviour()
        )
        .into());
    }
    Ok(())
}

/// The rows under "7.", "8." and "9.".
fn narrated_pair(step: &Step) -> String {
    match (&step.seen, step.id) {
        (Seen::Got { shown, .. }, StepId::StaleSetRace) => format!("{:<7} {shown}", step.label),
        (Seen::Got { shown, state, .. }, StepId::ReplicaLag) => {
            let verdict = if *state == Some(State::Stale) {
                "STALE"
            } else {
                "fresh"
            };
            format!("{:<44} {shown}: {verdict}", step.label)
        }
        (Seen::Got { statements, .. }, _) => {
            let dots = ".".repeat(40usize.saturating_sub(step.label.len()));
            format!(
                "{} {dots} {statements} statement{}",
                step.label,
                plural(*statements)
            )
        }
        (other, _) => format!("{:<7} {}", step.label, other.behaviour()),
    }
}

/// `cargo run --bin solution -- --compare`: every step with your answers,
/// then with the reference, side by side.
pub fn compare() -> Outcome<()> {
    let started = Instant::now();
    let (space, yours) = scenario::observe(&Answers::LEARNER)?;
    let (_, theirs) = scenario::observe(&reference::ANSWERS)?;
    println!("Cache-aside with Postgres + Redis: your answers (src/lib.rs) beside the reference.");
    println!("{}", services_line(&space));
    println!(
        "Yours and the reference each run on a lab of their own; \"<- differs\" marks a step whose\noutcome (returned, statements, fresh or stale) is not the reference's, whose TTL is out of\nits range, or whose herd is far slower than the reference's (a note under it says which).\nUnder each race step, both timelines: every call to Postgres and Redis, by actor, in ms\nsince the step began (\"grader\" is the narration holding a call to arrange the race),\nthe same herds folded, and \"←\" on the step that made an outcome wrong, as `cargo test` shows them.\n"
    );
    let mut part = 0;
    let mut group = None;
    let mut differing = 0;
    for (mine, reference) in yours.iter().zip(&theirs) {
        if mine.part() != part {
            if part != 0 {
                println!();
            }
            part = mine.part();
            println!("{}", part_header(part));
        }
        match group_header(mine.id) {
            Some(header) => {
                if group != Some(mine.id) {
                    println!("{header}");
                }
                group = Some(mine.id);
                println!("   {}", mine.label);
            }
            None => println!("{:>2}. {}", mine.id, mine.label),
        }
        let notes = mine.notes(reference);
        let differs = mine.behaviour() != reference.behaviour() || !notes.is_empty();
        differing += usize::from(differs);
        println!(
            "    yours      {}{}",
            cell(&mine.seen),
            if differs { "   <- differs" } else { "" }
        );
        println!("    reference  {}", cell(&reference.seen));
        for note in notes {
            println!("    note       {note}");
        }
        if let (Some(_), Some(_)) = (&mine.timeline, &reference.timeline) {
            println!("{}", timelines(mine, reference));
        }
    }
    if !theirs.iter().any(|s| s.part() == 4) {
        println!("\n{}\n{NO_REPLICA}", part_header(4));
    }
    unusable_setup(&theirs)?;
    println!(
        "\n{differing} of {} steps differ from the reference. Done in {:.1?}; `cargo test` says which checks they fail, and why.",
        yours.len(),
        started.elapsed()
    );
    Ok(())
}

/// One answers' row of a step: returned · statements · fresh/stale · time.
fn cell(seen: &Seen) -> String {
    match seen {
        Seen::Got {
            statements,
            state,
            wall,
            ..
        } => {
            let state = match state {
                Some(State::Fresh) => "fresh",
                Some(State::Stale) => "STALE",
                None => "-",
            };
            format!(
                "{:<44} {statements:>3} statement{:<1}  {state:<5}  {:>8.1?}",
                seen.described(),
                plural(*statements),
                wall
            )
        }
        // The first sentence of the todo!() message: which function, and
        // that it is not written yet.
        Seen::NotWritten(message) => match message.split_once(". ") {
            Some((first, _)) => format!("{first}."),
            None => message.clone(),
        },
        Seen::Failed(message) => format!("failed: {message}"),
    }
}

/// Widest a line may be for the two timelines to stand side by side.
const WIDTH: usize = 100;

/// A race step's two timelines: side by side if they fit in [`WIDTH`]
/// columns, else yours first, then the reference's, each under a heading.
fn timelines(mine: &Step, reference: &Step) -> String {
    let yours = told(mine);
    let theirs = told(reference);
    let width = |text: &str| text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let (left, right) = (width(&yours).max(5), width(&theirs));
    if 4 + left + 3 + right <= WIDTH {
        let mut out = vec![format!("    {:<left$} │ reference", "yours")];
        let (a, b): (Vec<&str>, Vec<&str>) = (yours.lines().collect(), theirs.lines().collect());
        for i in 0..a.len().max(b.len()) {
            let l = a.get(i).copied().unwrap_or("");
            let r = b.get(i).copied().unwrap_or("");
            out.push(format!("    {l:<left$} │ {r}").trim_end().to_string());
        }
        return out.join("\n");
    }
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "    yours, call by call:\n{}\n    the reference, call by call:\n{}",
        indent(&yours),
        indent(&theirs)
    )
}

/// One answers' timeline of a step, told as the grader tells a failure's
/// (at most about 15 lines, herds folded, marked step kept); an unfinished
/// function says so instead.
fn told(step: &Step) -> String {
    let events: &[Event] = step.timeline.as_deref().unwrap_or_default();
    match &step.seen {
        Seen::NotWritten(message) => {
            let what = message.trim_start_matches("not yet implemented: ");
            let what = what.split_once(". ").map_or(what, |(first, _)| first);
            format!("(nothing to show: {})", what.trim_end_matches('.'))
        }
        _ if events.is_empty() => "(no call to Postgres or Redis was recorded)".into(),
        _ => timeline::render(events),
    }
}

//! `cargo run --bin solution`: the reference answers, narrated step by step
//! with the statements each step sent to Postgres; `-- --compare` runs the
//! same steps with your answers in `src/lib.rs` beside the reference, and
//! shows the race steps' timelines, yours and the reference's. It
//! works on private copies of the seeded data, so it can run any number of
//! times, also while the tests run.

mod narrate;
mod reference;
mod scenario;
// Part 4's narration opens with this catalogued mistake (misses read the
// lagging replica), then shows the fix: one file serves both.
#[path = "mistakes/always_reads_the_replica.rs"]
mod always_reads_the_replica;

use std::process::ExitCode;

use cache_aside_lab::labkit::testkit::{Answers, herd, panics};

const USAGE: &str = "\
usage: cargo run --bin solution [-- MODE]

modes:
  (none)       the reference answers, narrated step by step with the
               statements each step sends to Postgres
  --compare    the same steps with your answers (src/lib.rs) beside the
               reference: returned, statements, fresh or stale, TTL, time,
               and for the race steps both timelines (every call to Postgres
               and Redis, by actor and time, the wrong step marked).
               Unfinished functions show their todo!() and the run goes on
  --help       this text";

fn main() -> ExitCode {
    // A herd process of step 8, running yours or the reference's.
    if let Some(spec) = herd::spec_from_env() {
        let all = [&Answers::LEARNER, &reference::ANSWERS];
        match all.into_iter().find(|a| a.name == spec.answers) {
            Some(answers) => herd::serve(&spec, answers),
            None => return ExitCode::from(2),
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => narrate::run(),
        ["--compare"] => {
            // Your todo!()s and panics are shown in the table, not as traces.
            panics::install_quiet_hook();
            narrate::compare()
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

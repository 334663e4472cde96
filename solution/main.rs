//! `cargo run --bin solution`: the reference answers, narrated step by step
//! with the statements each step sent to Postgres. It works on a private
//! copy of the seeded data, so it can run any number of times, also while
//! the tests run.

mod narrate;
#[allow(dead_code)] // ANSWERS: the grader's way in, not used here
#[path = "reference.rs"]
mod reference;

use std::process::ExitCode;

use cache_aside_lab::labkit::testkit::herd;

fn main() -> ExitCode {
    // A herd process of the narration's step 8.
    if let Some(spec) = herd::spec_from_env() {
        match narrate::herd_read(&spec.read) {
            Some(read) => herd::serve(&spec, read),
            None => return ExitCode::from(2),
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => narrate::run(),
        Some(_) => {
            eprintln!("usage: cargo run --bin solution");
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

//! `cargo run --bin solution`: the reference answers, narrated step by step
//! with the statements each step sent to Postgres. It works on a private
//! copy of the seeded data, so it can run any number of times, also while
//! the tests run.

mod narrate;
#[path = "reference.rs"]
mod reference;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        // The child side of the cross-process herd (step 8).
        Some("herd-child") if args.len() == 3 => narrate::herd_child(&args[1], &args[2]),
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

//! A learner's panic (a `todo!()` not written yet, an `unwrap` on an error),
//! caught quietly and told in one line with its place.
//!
//! The default panic hook prints a message per panicking thread, and a
//! backtrace when `RUST_BACKTRACE` is set: fifty herd readers hitting one
//! `todo!()` would print fifty backtraces. The quiet hook prints nothing and
//! remembers where each message came from; whoever catches the panic asks
//! [`Panic::from_payload`] for the message and its place.

use std::any::Any;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// (message, "file:line:column") of recent panics, newest last.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
const KEEP: usize = 64;

/// A caught panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic {
    pub message: String,
    /// Where it was raised, e.g. `src/lib.rs:95:5`.
    pub location: Option<String>,
}

impl Panic {
    /// The panic behind a payload caught by `catch_unwind`.
    pub fn from_payload(payload: &(dyn Any + Send)) -> Panic {
        let message = text(payload);
        let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let location = seen
            .iter()
            .rev()
            .find(|(m, _)| *m == message)
            .map(|(_, l)| l.clone());
        Panic { message, location }
    }

    /// A `todo!()` that has not been written yet.
    pub fn is_todo(&self) -> bool {
        self.message.starts_with("not yet implemented")
    }
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(at) => write!(f, "panicked at {at}: {}", self.message),
            None => write!(f, "panicked: {}", self.message),
        }
    }
}

/// Replaces the panic hook with one that prints nothing (whatever
/// `RUST_BACKTRACE` says) and remembers each panic's place.
pub fn install_quiet_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= KEEP {
            seen.remove(0);
        }
        seen.push((text(info.payload()), location));
    }));
}

fn text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

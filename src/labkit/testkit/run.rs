//! One call of answer code on a thread of its own: bounded, parkable, and
//! with a typed result. The grader's checks, the narration and the child
//! process of [`remote`](super::remote) run their calls of answer code
//! through here; a herd of them ([`herd::release`](super::herd::release))
//! catches its readers' panics with [`catch`].
//!
//! Answer code may be unfinished or wrong: a `todo!()`, a panic or a hang
//! is a result like any other ([`Ran`]), never a crash of the caller, and
//! the caller never waits longer than the bound it gives. A call that hung
//! leaves its lab closed, so that its next labkit call fails and its thread
//! exits.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::panics::Panic;
use super::{LabExt, Parked, Trap};
use crate::labkit::Lab;

/// How often [`start_parked`] looks whether the call has finished while it
/// waits for the trap.
const POLL: Duration = Duration::from_millis(10);

/// How a call ended, as far as its caller waited.
#[derive(Debug)]
pub enum Ran<T> {
    /// It returned this (a learner `Result`, typically: `Err` is returned
    /// too).
    Returned(T),
    /// It panicked: a `todo!()` not written yet, an `unwrap` on an error.
    Panicked(Panic),
    /// It had not returned within the bound; its lab is now closed.
    Hung,
}

/// Runs `f` here, catching a panic as a [`Panic`] (told in one line by the
/// quiet hook, if installed).
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Panic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| Panic::from_payload(&*payload))
}

/// A call running on its own thread.
pub struct Running<T> {
    lab: Arc<Lab>,
    rx: mpsc::Receiver<(Result<T, Panic>, Duration)>,
    /// What it did and how long it took, once it has finished.
    done: Option<(Result<T, Panic>, Duration)>,
}

/// Starts `f` on a thread of its own, on `lab`.
pub fn start<T: Send + 'static>(
    lab: &Arc<Lab>,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> Running<T> {
    let (tx, rx) = mpsc::channel();
    let thread_lab = lab.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let result = catch(|| f(&thread_lab));
        let took = started.elapsed();
        // Let go of the lab before answering: the caller may drop its own
        // handle and the process exit at once, and the lab's private space
        // is dropped with the last handle.
        drop(thread_lab);
        let _ = tx.send((result, took));
    });
    Running {
        lab: lab.clone(),
        rx,
        done: None,
    }
}

impl<T> Running<T> {
    /// Whether it has finished, waiting at most `timeout`. It keeps running
    /// either way.
    pub fn finished_within(&mut self, timeout: Duration) -> bool {
        if self.done.is_none() {
            self.done = self.rx.recv_timeout(timeout).ok();
        }
        self.done.is_some()
    }

    /// What it did, waiting at most `bound`. If it has not returned by then,
    /// the lab is closed (so that its next labkit call fails, and its thread
    /// exits) and it is [`Ran::Hung`].
    pub fn wait(self, bound: Duration) -> Ran<T> {
        self.wait_timed(bound).0
    }

    /// [`Running::wait`], with how long the call ran (`bound`, if it hung).
    pub fn wait_timed(mut self, bound: Duration) -> (Ran<T>, Duration) {
        match self
            .done
            .take()
            .or_else(|| self.rx.recv_timeout(bound).ok())
        {
            Some((Ok(value), took)) => (Ran::Returned(value), took),
            Some((Err(panic), took)) => (Ran::Panicked(panic), took),
            None => {
                self.lab.hooks().close();
                (Ran::Hung, bound)
            }
        }
    }
}

/// Where a call started by [`start_parked`] was when the wait ended.
pub enum Start<'a, T> {
    /// Held on the trap: dropping the [`Parked`] lets it go on.
    Parked(Parked<'a>, Running<T>),
    /// It finished without reaching the trap, which is disarmed.
    Finished(Running<T>),
    /// Neither held nor finished within the wait; the trap is still armed.
    Late(Parked<'a>, Running<T>),
}

/// Arms `trap`, then starts `f` on its own thread, and waits at most
/// `within` until `f` is held on the trap, or has finished without reaching
/// it.
pub fn start_parked<T: Send + 'static>(
    lab: &Arc<Lab>,
    trap: Trap,
    within: Duration,
    f: impl FnOnce(&Lab) -> T + Send + 'static,
) -> Start<'_, T> {
    let parked = lab.hooks().park(trap);
    let mut running = start(lab, f);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if parked.wait(POLL) {
            return Start::Parked(parked, running);
        }
        if running.finished_within(Duration::ZERO) && !parked.is_parked() {
            drop(parked);
            return Start::Finished(running);
        }
    }
    Start::Late(parked, running)
}

//! One call of an answer function in another process: a write made by
//! "another instance of the application", or a lease holder that crashes.
//!
//! The parent starts a copy of its own executable with `LAB_REMOTE` set to a
//! JSON [`Call`]. The child joins the parent's private lab, arms the call's
//! trap (if any), runs the call on a thread (see [`run`](super::run)), and
//! speaks one JSON line per [`Message`] on its stdout: [`Message::Parked`]
//! once the trap has caught the call (it then waits for `go` on its stdin,
//! or to be killed), and [`Message::Done`] with what the call returned. A
//! child that exits without saying `Done` is an error, never a result.
//!
//! A binary that uses this calls [`call_from_env`] first thing in `main`
//! and, if it gets a call, [`serve`]s it with the answers the call names.

use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::answers::{Answers, Function};
use super::child::{self, say};
use super::panics::{self, Panic};
use super::run::{self, Ran, Start};
use super::timeline::{self, Event, Shared};
use super::{PARK_LIMIT, Trap};
use crate::User;

const ENV: &str = "LAB_REMOTE";

/// What the other process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// The parent lab's private space (`LabExt::space_name`).
    pub space: String,
    /// Whose answers: the child's binary resolves the name.
    pub answers: String,
    pub function: Function,
    pub user_id: i32,
    /// The plan, for an update.
    pub plan: String,
    /// Park the call here, say [`Message::Parked`], and wait for `go`.
    pub park: Option<Trap>,
    /// Record the call on the parent's timeline, as this actor.
    #[serde(default)]
    pub timeline: Option<Shared>,
}

/// What the call did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// A read's user (`None`: `Ok(None)`), or an update's `Ok(())` (`None`).
    Returned(Option<User>),
    Failed(String),
    Panicked(Panic),
}

/// A line from the other process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    Parked,
    Done(Outcome),
    /// It could not take part (it could not join the lab, say).
    Unable(String),
    /// What it recorded (said before `Parked` and before `Done`, if asked
    /// to record).
    Timeline(Vec<Event>),
}

/// The call this process was started for, if it is a remote-call process.
pub fn call_from_env() -> Option<Call> {
    child::job_from_env(ENV, Message::Unable)
}

/// The child's side: runs `call` with `answers` and exits.
pub fn serve(call: &Call, answers: &'static Answers) -> ! {
    panics::install_quiet_hook();
    let lab = child::join(&call.space, Message::Unable);
    let (function, user_id, plan) = (call.function, call.user_id, call.plan.clone());
    let actor = call.timeline.as_ref().map(|shared| {
        shared.join();
        shared.actor.clone()
    });
    let f = move |lab: &crate::labkit::Lab| {
        let _actor = actor.map(timeline::act_as);
        function.call(answers, lab, user_id, &plan)
    };
    // Nobody waits longer than this: the parent has long given up by then.
    let bound = PARK_LIMIT * 2;
    let running = match &call.park {
        None => run::start(&lab, f),
        // Parked, or finished without reaching the trap: either is news.
        Some(trap) => match run::start_parked(&lab, trap.clone(), bound, f) {
            Start::Parked(parked, running) => {
                // What it did so far, before it may be killed here.
                if call.timeline.is_some() {
                    say(&Message::Timeline(timeline::take()));
                }
                say(&Message::Parked);
                child::wait_for_go();
                drop(parked);
                running
            }
            Start::Finished(running) => running,
            Start::Late(parked, running) => {
                drop(parked);
                running
            }
        },
    };
    let outcome = match running.wait(bound) {
        Ran::Returned(Ok(user)) => Outcome::Returned(user),
        Ran::Returned(Err(e)) => Outcome::Failed(e.to_string()),
        Ran::Panicked(panic) => Outcome::Panicked(panic),
        Ran::Hung => Outcome::Failed("did not return".into()),
    };
    if call.timeline.is_some() {
        say(&Message::Timeline(timeline::stop()));
    }
    say(&Message::Done(outcome));
    std::process::exit(0)
}

/// The parent's side of one remote call.
pub struct Remote {
    child: Child,
    rx: mpsc::Receiver<Option<Message>>,
}

/// What the parent heard.
#[derive(Debug)]
pub enum Heard {
    Parked,
    Done(Outcome),
}

impl Remote {
    /// Starts `call` in a copy of this executable.
    pub fn start(call: &Call) -> Result<Remote, String> {
        let json = serde_json::to_string(call).expect("calls serialize");
        let mut child = child::start(&[(ENV, &json)], Stdio::null(), "another process")?;
        let (tx, rx) = mpsc::channel();
        child::listen(child.stdout.take().expect("piped"), move |message| {
            let _ = tx.send(message);
        });
        Ok(Remote { child, rx })
    }

    /// The next thing the process says, within `timeout`. What it
    /// recorded joins this process's timeline on the way.
    pub fn next(&mut self, timeout: Duration) -> Result<Heard, String> {
        let mut message = self.rx.recv_timeout(timeout);
        while let Ok(Some(Message::Timeline(events))) = message {
            timeline::merge(events);
            message = self.rx.recv_timeout(timeout);
        }
        match message {
            Ok(Some(Message::Parked)) => Ok(Heard::Parked),
            Ok(Some(Message::Done(outcome))) => Ok(Heard::Done(outcome)),
            Ok(Some(Message::Unable(why))) => Err(format!("the other process: {why}")),
            Ok(Some(Message::Timeline(_))) => unreachable!("merged above"),
            Ok(None) => Err("the other process exited without a result".into()),
            Err(_) => Err(format!("the other process said nothing within {timeout:?}")),
        }
    }

    /// Lets a parked call go on.
    pub fn release(&mut self) {
        child::go(&mut self.child);
    }

    /// Kills the process at once (SIGKILL): a crash, as far as Redis and
    /// Postgres can tell.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `call` to the end: what it returned, within `timeout`.
    pub fn run(call: &Call, timeout: Duration) -> Result<Outcome, String> {
        let mut remote = Remote::start(call)?;
        loop {
            match remote.next(timeout)? {
                Heard::Done(outcome) => return Ok(outcome),
                Heard::Parked => remote.release(),
            }
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.kill();
    }
}

//! What both kinds of child process ([`remote`](super::remote) and
//! [`herd`](super::herd)) speak: the parent starts a copy of its own
//! executable with a JSON job in an environment variable; the child joins
//! the parent's lab, says one JSON line per message on its stdout, and goes
//! on when the parent writes `go` to its stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::labkit::Lab;

/// The job this process was started for, if `env` is set. A child that
/// cannot read it says so (`unable`) and exits.
pub(crate) fn job_from_env<J: DeserializeOwned, M: Serialize>(
    env: &str,
    unable: impl FnOnce(String) -> M,
) -> Option<J> {
    let text = std::env::var(env).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| {
        say(&unable(format!("bad {env}: {e}")));
        std::process::exit(2)
    }))
}

/// Says `message` to the parent: one JSON line on stdout, flushed.
pub(crate) fn say<M: Serialize>(message: &M) {
    let line = serde_json::to_string(message).expect("messages serialize");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The parent's lab, by its space's name. A child that cannot join it says
/// so (`unable`) and exits.
pub(crate) fn join<M: Serialize>(space: &str, unable: impl FnOnce(String) -> M) -> Arc<Lab> {
    match super::attach(space) {
        Ok(lab) => Arc::new(lab),
        Err(e) => {
            say(&unable(format!("could not join the lab: {e}")));
            std::process::exit(1)
        }
    }
}

/// Waits until the parent says `go` (or closes stdin: it gave up).
pub(crate) fn wait_for_go() {
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
}

/// The parent's side: starts a copy of this executable (`what`, for the
/// error) with `env` in its environment (the job, and for a herd process
/// its number), its stdin and stdout piped.
pub(crate) fn start(env: &[(&str, &str)], stderr: Stdio, what: &str) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    Command::new(exe)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))
}

/// Hands each message the child says to `send`, on a thread of its own, and
/// then `None` once its stdout has ended (it has exited, or closed it).
/// Lines that are not messages are skipped.
pub(crate) fn listen<M: DeserializeOwned>(
    stdout: ChildStdout,
    send: impl Fn(Option<M>) + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(message) = serde_json::from_str::<M>(&line) {
                send(Some(message));
            }
        }
        send(None);
    });
}

/// Tells the child to go on.
pub(crate) fn go(child: &mut Child) {
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.write_all(b"go\n");
        let _ = stdin.flush();
    }
}

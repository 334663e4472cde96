//! Opening connections, bounded as a whole.
//!
//! `postgres`' `connect_timeout` only bounds the TCP connect: a port that
//! accepts but never answers (a wrong URL pointing at Redis, a hung server, a
//! proxy with nothing behind it) would block the startup handshake forever.
//! So every connect runs on a helper thread and is abandoned after
//! [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT): the learner gets an error in
//! seconds, and the helper dies whenever the far end finally gives up.

use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

/// Why a connection could not be opened: just the cause, so that `Db` and
/// `Cache` can say "cannot reach {service} at {url} ({cause})" once.
#[derive(Debug)]
pub(crate) struct ConnectError(pub(crate) String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

/// Runs `connect` on a helper thread and waits at most `timeout` for it.
pub(crate) fn bounded<T, E>(
    timeout: Duration,
    connect: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ConnectError>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("labkit-connect".into())
        .spawn(move || {
            let _ = tx.send(connect());
        })
        .map_err(|e| ConnectError(format!("cannot start a thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(ConnectError(cause(&e))),
        Err(_) => Err(ConnectError(format!(
            "no answer within {timeout:?}; is another kind of server listening on that port?"
        ))),
    }
}

/// The error and its sources, without repeating what is already said:
/// `postgres` often says only "error connecting to server" at the top.
pub(crate) fn cause(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// r2d2 reports a failed checkout as "timed out waiting for connection:
/// {last error}"; keep the last error, which says what is wrong.
pub(crate) fn pool_cause(err: &r2d2::Error) -> String {
    let text = err.to_string();
    match text.split_once(": ") {
        Some((_, last)) if !last.is_empty() => last.to_string(),
        _ => text,
    }
}

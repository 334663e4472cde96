//! Opening connections, bounded as a whole.
//!
//! `postgres`' `connect_timeout` only bounds the TCP connect: a port that
//! accepts but never answers (a wrong URL pointing at Redis, a hung server, a
//! proxy with nothing behind it) would block the startup handshake forever.
//! So every connect runs on a helper thread and is abandoned after
//! [`CONNECT_TIMEOUT`]: the learner gets an error in seconds, and the helper
//! dies whenever the far end finally gives up.

use std::sync::mpsc;
use std::time::Duration;

use super::error::{Cause, Error, Problem, Service};

/// Give up on a service that does not answer after this long, instead of
/// r2d2's default of 30 s: a learner with a stopped container should see the
/// error at once.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `connect` on a helper thread and waits at most [`CONNECT_TIMEOUT`].
/// `classify` turns the client library's error into labkit's.
pub(crate) fn bounded<T, E>(
    service: Service,
    url: &str,
    connect: impl FnOnce() -> Result<T, E> + Send + 'static,
    classify: impl FnOnce(E) -> Error,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("labkit-connect".into())
        .spawn(move || {
            let _ = tx.send(connect());
        });
    if let Err(e) = spawned {
        return Err(Error::unreachable(
            service,
            url,
            Problem::Down,
            Cause::new(e),
        ));
    }
    match rx.recv_timeout(CONNECT_TIMEOUT) {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Error::unreachable(
            service,
            url,
            Problem::NoAnswer,
            Cause::text(format!(
                "no answer within {CONNECT_TIMEOUT:?}; is another kind of server listening on that port?"
            )),
        )),
    }
}

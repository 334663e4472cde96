//! Restart scenarios: a server restarts (or kills our sessions) between two
//! calls, and the next call must still succeed, without a ping per call.
//!
//! They restart servers, so they are behind the `chaos` feature and run only
//! through `scripts/chaos`, which starts throwaway servers on spare ports and
//! sets `LAB_CHAOS=1`. They refuse to run otherwise: the shared services are
//! never restarted.

use std::process::Command;
use std::time::Duration;

use cache_aside_lab::labkit::Lab;
use cache_aside_lab::labkit::testkit::{IDLE_CHECK, database_url};
use cache_aside_lab::{User, user_key};

fn lab() -> Lab {
    assert!(
        std::env::var_os("LAB_CHAOS").is_some(),
        "run these through scripts/chaos: they restart the servers they use"
    );
    Lab::isolated().unwrap_or_else(|e| panic!("{e}"))
}

/// Restarts one of scripts/chaos' servers; returns how long it took.
fn restart(service: &str) -> Duration {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
    let started = std::time::Instant::now();
    let status = Command::new(script)
        .args(["restart", service])
        .status()
        .unwrap();
    assert!(status.success(), "scripts/services restart {service}");
    started.elapsed()
}

fn read(lab: &Lab, id: i32) -> Option<User> {
    let row = lab.db.query_opt(
        "SELECT id, name, email, plan FROM users WHERE id = $1",
        &[&id],
    );
    row.unwrap_or_else(|e| panic!("read after the restart: {e}"))
        .map(|r| User::from_row(&r))
}

/// After a Redis restart, the next cache call succeeds: at once (the dead
/// connection fails, is replaced, the command is retried) and after idling.
#[test]
fn a_redis_restart_between_two_calls_is_survived() {
    let lab = lab();
    let key = user_key(1);
    for idle in [Duration::ZERO, Duration::from_millis(1500)] {
        lab.cache
            .set_json(&key, &1, Duration::from_secs(60))
            .unwrap();
        let took = restart("redis");
        if idle.is_zero() {
            // Inside labkit's idle window: only the retry can save this call.
            assert!(
                took < IDLE_CHECK,
                "the restart took {took:?}; the retry path needs < {IDLE_CHECK:?}"
            );
        }
        std::thread::sleep(idle);
        assert_eq!(
            lab.cache.get_json::<i32>(&key).unwrap(),
            None,
            "Redis restarted empty (idle {idle:?})"
        );
        lab.cache
            .set_json(&key, &2, Duration::from_secs(60))
            .unwrap();
        assert_eq!(lab.cache.get_json::<i32>(&key).unwrap(), Some(2));
    }
}

/// After a Postgres restart, the next read and the next write succeed, and
/// new isolated labs still work (labkit's own session reconnects too).
#[test]
fn a_postgres_restart_between_two_calls_is_survived() {
    let lab = lab();
    assert!(read(&lab, 1).is_some());
    let took = restart("postgres");
    assert!(
        took < IDLE_CHECK,
        "the restart took {took:?}; the retry path needs < {IDLE_CHECK:?}"
    );
    assert!(read(&lab, 1).is_some(), "read after restart");
    let changed = lab
        .db
        .execute("UPDATE users SET plan = 'free' WHERE id = 2", &[]);
    assert_eq!(
        changed.unwrap_or_else(|e| panic!("write after restart: {e}")),
        1
    );
    drop(lab);
    let again = Lab::isolated().unwrap_or_else(|e| panic!("a new lab after the restart: {e}"));
    assert!(read(&again, 1).is_some());
}

/// `pg_terminate_backend` of every pooled connection: the next read and
/// write succeed on fresh connections.
#[test]
fn terminated_pooled_connections_are_replaced() {
    let lab = lab();
    assert!(read(&lab, 1).is_some());
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cache-aside-lab' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .len();
    assert!(killed >= 1, "no pooled connection to kill");
    assert!(read(&lab, 1).is_some(), "read after terminate");
    let changed = lab
        .db
        .execute("UPDATE users SET plan = 'pro' WHERE id = 3", &[]);
    assert_eq!(
        changed.unwrap_or_else(|e| panic!("write after terminate: {e}")),
        1
    );
}

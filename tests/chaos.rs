//! Chaos scenarios: a server restarts (or kills our sessions) between two
//! calls, and the next call must still succeed, without a ping per call; and
//! a Redis Cluster loses a master in the middle of the Part 3 answers' work.
//!
//! They restart or kill servers, so `cargo test` never runs them (this
//! target has `test = false`): only `scripts/chaos` does, against throwaway
//! servers on spare ports, with `LAB_CHAOS=1`. They refuse to run otherwise:
//! the shared services are never restarted.

#[allow(dead_code)] // the failover scenario needs the Part 3 answers only
#[path = "../solution/reference.rs"]
mod reference;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::Lab;
use cache_aside_lab::labkit::testkit::{self, IDLE_CHECK, database_url, redis_url};
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
    let mut admin = testkit::raw_postgres(&database_url()).unwrap();
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

/// One call of the scenario: when it started (since the kill, ms; negative
/// before), how long it took, and whether it worked.
#[derive(Debug, Clone)]
struct Call {
    at_ms: f64,
    took: Duration,
    ok: bool,
    /// A read served from the cache (0 statements) rather than Postgres.
    cached: bool,
}

/// The cluster's nodes, as "host:port", from the node `REDIS_URL` names.
fn nodes() -> Vec<String> {
    let mut conn = testkit::redis_client(&redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let listing: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
    listing
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)?
                .split('@')
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// Runs `cmd` on the first of `nodes` that answers (a dead one does not).
fn ask_any<T: redis::FromRedisValue>(nodes: &[String], cmd: &redis::Cmd) -> Option<T> {
    nodes.iter().find_map(|node| {
        let client = redis::Client::open(format!("redis://{node}")).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(300))
            .ok()?;
        cmd.query(&mut conn).ok()
    })
}

/// The master of `key`'s slot, as "host:port", as any live node sees it.
fn master_of(nodes: &[String], key: &str) -> Option<String> {
    let slot: i64 = ask_any(nodes, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
    let shards: Vec<redis::Value> = ask_any(nodes, redis::cmd("CLUSTER").arg("SLOTS"))?;
    shards.into_iter().find_map(|shard| {
        let redis::Value::Array(fields) = shard else {
            return None;
        };
        let from: i64 = redis::from_redis_value(fields.first()?.clone()).ok()?;
        let to: i64 = redis::from_redis_value(fields.get(1)?.clone()).ok()?;
        let redis::Value::Array(node) = fields.get(2)? else {
            return None;
        };
        let host: String = redis::from_redis_value(node.first()?.clone()).ok()?;
        let port: i64 = redis::from_redis_value(node.get(1)?.clone()).ok()?;
        (from..=to)
            .contains(&slot)
            .then(|| format!("{host}:{port}"))
    })
}

/// When the master was killed: set once, read by the workers.
type KilledAt = Arc<OnceLock<Instant>>;

/// When `t` was, in ms since the kill (negative before it; -1 while the
/// kill has not happened yet).
fn at_ms(killed: &KilledAt, t: Instant) -> f64 {
    match killed.get() {
        Some(&k) if t >= k => (t - k).as_secs_f64() * 1e3,
        Some(&k) => -((k - t).as_secs_f64() * 1e3),
        None => -1.0,
    }
}

/// A thread of leased reads of user 1 (every 20 ms), or of leased updates
/// (every 100 ms), until `stop`; each call timed and judged.
fn worker(
    lab: &Arc<Lab>,
    stop: &Arc<AtomicBool>,
    killed: &KilledAt,
    update: bool,
) -> std::thread::JoinHandle<Vec<Call>> {
    let (lab, stop, killed) = (lab.clone(), stop.clone(), killed.clone());
    std::thread::spawn(move || {
        let mut calls = Vec::new();
        let mut flip = false;
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            lab.db.reset_counters();
            let ok = if update {
                flip = !flip;
                let plan = if flip { "free" } else { "pro" };
                reference::update_user_plan_leased(&lab, 1, plan).is_ok()
            } else {
                matches!(reference::get_user_profile_leased(&lab, 1), Ok(Some(u)) if u.id == 1)
            };
            let cached = !update && lab.db.query_count() == 0;
            calls.push(Call {
                at_ms: at_ms(&killed, started),
                took: started.elapsed(),
                ok,
                cached,
            });
            std::thread::sleep(Duration::from_millis(if update { 100 } else { 20 }));
        }
        calls
    })
}

/// The master of `key`'s slot ("host:port") and its pid, from the cluster
/// scripts/chaos started in `dir`.
fn victim(nodes: &[String], key: &str, dir: &str) -> (String, i32) {
    let victim = master_of(nodes, key).expect("the slot's master");
    let port = victim.rsplit_once(':').unwrap().1;
    let pid: i32 = std::fs::read_to_string(format!("{dir}/{port}/redis.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (victim, pid)
}

/// Waits until another node than `victim` serves `key`'s slot and the
/// cluster is ok; how long after `killed` that was.
fn failover(nodes: &[String], victim: &str, key: &str, killed: Instant) -> Duration {
    let deadline = killed + Duration::from_secs(30);
    let others: Vec<String> = nodes.iter().filter(|n| *n != victim).cloned().collect();
    loop {
        let info: Option<String> = ask_any(&others, redis::cmd("CLUSTER").arg("INFO"));
        let ok = info.is_some_and(|i| i.lines().any(|l| l.trim() == "cluster_state:ok"));
        if ok && master_of(&others, key).is_some_and(|m| m != victim) {
            return killed.elapsed();
        }
        assert!(Instant::now() < deadline, "no failover within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What happened after the kill, in ms since it.
struct Timeline {
    failed_over_ms: f64,
    first_failed_update: Option<f64>,
    first_update_after: Option<f64>,
    first_cached_read_after: Option<f64>,
    slowest: Duration,
}

impl Timeline {
    fn of(reads: &[Call], updates: &[Call], failed_over: Duration) -> Timeline {
        let failed_over_ms = failed_over.as_secs_f64() * 1e3;
        let first = |calls: &[Call], pred: &dyn Fn(&Call) -> bool| {
            calls.iter().find(|c| pred(c)).map(|c| c.at_ms)
        };
        Timeline {
            failed_over_ms,
            first_failed_update: first(updates, &|c| c.at_ms >= 0.0 && !c.ok),
            first_update_after: first(updates, &|c| c.at_ms >= failed_over_ms && c.ok),
            first_cached_read_after: first(reads, &|c| c.at_ms >= failed_over_ms && c.cached),
            slowest: reads.iter().chain(updates).map(|c| c.took).max().unwrap(),
        }
    }

    fn print(&self, victim: &str, reads: &[Call], updates: &[Call]) {
        let mut events: Vec<(f64, &str)> = vec![
            (0.0, "the master is killed"),
            (
                self.failed_over_ms,
                "failover complete: another node serves the slot, cluster_state:ok",
            ),
        ];
        let mut event = |at: Option<f64>, what| events.extend(at.map(|t| (t, what)));
        event(
            self.first_failed_update,
            "first update that reported an error (it could not invalidate)",
        );
        event(
            self.first_update_after,
            "first successful update after the failover",
        );
        event(
            self.first_cached_read_after,
            "first read served from the cache again",
        );
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("\nfailover timeline (ms after SIGKILL of the master {victim} of user:1's slot):");
        for (t, what) in &events {
            println!("  {t:>7.0}  {what}");
        }
        let failed = |calls: &[Call]| calls.iter().filter(|c| !c.ok).count();
        println!(
            "  reads: {} in all, {} failed; updates: {} in all, {} failed; slowest call {:?}",
            reads.len(),
            failed(reads),
            updates.len(),
            failed(updates),
            self.slowest
        );
    }
}

/// Kill the master of user:1's slot with SIGKILL, in the middle of leased
/// reads and updates. The reads keep answering (from Postgres while the
/// slot is down: fail-open), the updates say they could not invalidate, no
/// call hangs, and once a replica has taken over everything works again.
#[test]
fn cluster_a_killed_master_fails_over_and_the_leased_answers_carry_on() {
    let lab = Arc::new(lab());
    let dir = std::env::var("LAB_CHAOS_CLUSTER_DIR")
        .expect("run this through scripts/chaos --cluster: it kills a cluster master");
    let key = cache_aside_lab::labkit::testkit::CacheExt::storage_key(&lab.cache, &user_key(1));
    let nodes = nodes();
    let (victim, pid) = victim(&nodes, &key, &dir);
    assert!(
        reference::get_user_profile_leased(&lab, 1)
            .unwrap()
            .is_some()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = KilledAt::default();
    let readers = worker(&lab, &stop, &killed_at, false);
    let updater = worker(&lab, &stop, &killed_at, true);
    std::thread::sleep(Duration::from_millis(500));
    let killed = *killed_at.get_or_init(Instant::now);
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "SIGKILL to the master at {victim}");
    let failed_over = failover(&nodes, &victim, &key, killed);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let reads = readers.join().unwrap();
    let updates = updater.join().unwrap();

    let timeline = Timeline::of(&reads, &updates, failed_over);
    timeline.print(&victim, &reads, &updates);
    let failed_over_ms = timeline.failed_over_ms;
    assert!(
        reads.iter().all(|c| c.ok),
        "a leased read failed: with the cache down, it must answer from Postgres"
    );
    assert!(
        timeline
            .first_failed_update
            .is_some_and(|t| t < failed_over_ms),
        "no update reported an error while the slot was down"
    );
    assert!(
        timeline.slowest < Duration::from_secs(10),
        "a call took {:?}: nothing may hang past the lab's bounds",
        timeline.slowest
    );
    assert!(
        timeline.first_update_after.is_some(),
        "no update worked after the failover"
    );
    assert!(
        timeline.first_cached_read_after.is_some(),
        "no read was served from the cache after the failover"
    );
    assert!(
        updates
            .iter()
            .filter(|c| c.at_ms >= failed_over_ms + 1000.0)
            .all(|c| c.ok),
        "updates still failed a second after the failover"
    );
}

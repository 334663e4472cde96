//! labkit's own promises, independent of the learner's answers: they pass on
//! the stubs as shipped. Failing fast with a useful line, a busy pool told
//! apart from a service that is down, isolation that cleans up (even after
//! SIGKILL), counting, bad input, corrupt cache entries, leases, the
//! key-lock map, the test hooks, and answer code run bounded and parked
//! (`testkit::run`).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::testkit::{
    self, CacheExt, DbExt, LabExt, PoolSizes, RedisConn, Trap, attach, database_url, mask_password,
};
use cache_aside_lab::labkit::{Error, Lab};
use cache_aside_lab::{User, key_lock, user_key};

fn lab() -> Lab {
    Lab::isolated().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` on the node that holds `key`: on a cluster, the master of
/// the key's slot.
fn on_node_of<T: redis::FromRedisValue>(conn: &mut RedisConn, key: &str, cmd: &redis::Cmd) -> T {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let value = match conn {
        RedisConn::Single(c) => cmd.query(c).unwrap(),
        RedisConn::Cluster(c) => {
            let route = Route::with_key(key, SlotAddr::Master);
            c.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
            )
            .unwrap()
        }
    };
    redis::from_redis_value(value).unwrap()
}

/// Redis keys and Postgres schemas of one space, seen from outside labkit.
fn leftovers(space: &str) -> (usize, bool) {
    // On a cluster, KEYS goes to every master and the answers are combined.
    let mut redis = testkit::raw_redis().unwrap();
    // Attaching leaves the space in place and opens no connection; it only
    // tells us the space's key prefix.
    let prefix = attach(space).unwrap().cache.storage_key("");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut redis)
        .unwrap();
    let mut pg = testkit::raw_postgres(&database_url()).unwrap();
    let schema = pg
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&space])
        .unwrap();
    (keys.len(), schema.is_some())
}

/// With a service down, or a URL pointing at something that never answers,
/// the `solution` binary fails within 5 s with one line that names the
/// service, the URL (password masked) and the fix.
#[test]
fn labkit_an_unreachable_service_fails_fast_with_service_url_and_fix() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let cases = [
        (
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:1/postgres".to_string(),
            "Postgres",
            "start the services",
        ),
        (
            "REDIS_URL",
            "redis://:hunter2@127.0.0.1:1".to_string(),
            "Redis",
            "start the services",
        ),
        (
            "DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{silent_port}/postgres"),
            "Postgres",
            "no answer within",
        ),
        (
            "REDIS_URL",
            format!("redis://:hunter2@127.0.0.1:{silent_port}"),
            "Redis",
            "no answer within",
        ),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(var, url, service, fix)| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let out = Command::new(env!("CARGO_BIN_EXE_solution"))
                    .env(var, &url)
                    .output()
                    .unwrap();
                (var, url, service, fix, out, started.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (var, url, service, fix, out, took) = run.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let masked = url.replace("hunter2", "***");
        assert!(!out.status.success(), "{var}={url}: the binary succeeded");
        assert!(
            took < Duration::from_secs(5),
            "{var}={url}: took {took:?}, expected under 5 s"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{var}={url}: expected one line, got:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("cannot reach {service} at {masked}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(fix) && !stderr.contains("hunter2"),
            "{stderr}"
        );
        let cause = stderr
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once("): "))
            .map(|(c, _)| c);
        assert!(
            cause.is_some_and(|c| c.len() > 5),
            "the cause is named: {stderr}"
        );
    }
}

/// Every statement through `Db` counts, reads and writes; seeding and
/// search_path housekeeping do not; `reset_counters` starts again at 0.
#[test]
fn labkit_counts_every_statement_and_no_housekeeping() {
    let lab = lab();
    assert_eq!(
        lab.db.query_count(),
        0,
        "a fresh lab has sent nothing of the learner's"
    );
    lab.db
        .query_opt("SELECT plan FROM users WHERE id = $1", &[&1])
        .unwrap();
    lab.db.query("SELECT id FROM users", &[]).unwrap();
    let changed = lab
        .db
        .execute("UPDATE users SET plan = 'free' WHERE id = $1", &[&2])
        .unwrap();
    assert_eq!((changed, lab.db.query_count()), (1, 3));
    lab.db.reset_counters();
    assert_eq!(lab.db.query_count(), 0);
}

/// Pools open connections lazily (r2d2 opens `max_size` at once unless
/// `min_idle` is set), so a 16-thread test run stays far below Postgres'
/// 100 connections; and the cache basics answer truthfully.
#[test]
fn labkit_pools_open_lazily_and_cache_calls_report_truthfully() {
    let lab = lab();
    assert_eq!(
        (lab.db.open_connections(), lab.cache.open_connections()),
        (0, 0),
        "a new lab holds no connection"
    );
    lab.db.query("SELECT 1", &[]).unwrap();
    lab.cache.exists("k").unwrap();
    assert_eq!(
        (lab.db.open_connections(), lab.cache.open_connections()),
        (1, 1),
        "one of each, reused"
    );
    lab.cache
        .set_json("k", &"v", Duration::from_secs(60))
        .unwrap();
    let ttl = lab.cache.ttl("k").unwrap().expect("a TTL");
    assert!(
        ttl > Duration::from_secs(58) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );
    assert!(
        lab.cache.delete("k").unwrap(),
        "deleting an existing key says true"
    );
    assert!(
        !lab.cache.delete("k").unwrap(),
        "deleting a missing key says false"
    );
    assert_eq!(
        lab.cache.ttl("k").unwrap(),
        None,
        "no TTL for a missing key"
    );
}

/// Bad input is refused with a clear `Err` and nothing runs: empty SQL,
/// several statements at once, parameters of the wrong type, empty keys,
/// zero TTLs.
#[test]
fn labkit_refuses_bad_input_and_runs_nothing() {
    let lab = lab();
    assert!(matches!(
        lab.db.query("  ", &[]),
        Err(Error::InvalidInput(_))
    ));
    assert!(
        lab.db
            .execute("UPDATE users SET plan = 'free'; DROP TABLE users", &[])
            .is_err()
    );
    assert!(
        lab.db
            .query_opt("SELECT * FROM users WHERE id = $1", &[&1i64])
            .is_err(),
        "int8 for an int4 column"
    );
    assert_eq!(
        lab.db.query("SELECT plan FROM users", &[]).unwrap().len(),
        5,
        "nothing was executed"
    );
    assert!(matches!(
        lab.cache.get_json::<User>(""),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        lab.cache.set_json("k", &1, Duration::ZERO),
        Err(Error::InvalidInput(_))
    ));
    assert!(!lab.cache.exists("k").unwrap());
}

/// An entry that does not decode (not JSON, or JSON of another shape) is a
/// miss, and is removed so the next fill replaces it; no panic, no error.
/// It is logged once per key and type, not on every read: the test runs in
/// a child process, whose stderr it reads.
#[test]
fn labkit_a_corrupt_cache_entry_is_a_miss_and_is_removed() {
    if std::env::var_os("LAB_CORRUPT_ENTRIES").is_none() {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "labkit_a_corrupt_cache_entry_is_a_miss_and_is_removed",
                "--exact",
                "--nocapture",
                "-q",
            ])
            .env("LAB_CORRUPT_ENTRIES", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success(), "{stderr}");
        let logged: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("does not decode as"))
            .collect();
        assert!(
            logged.len() == 2
                && logged[0].contains("\"user:1\" does not decode as cache_aside_lab::User")
                && logged[1].contains("\"user:1\" does not decode as u8"),
            "logged once per key and type: {logged:#?}"
        );
        return;
    }
    let lab = lab();
    let key = user_key(1);
    let mut redis = testkit::raw_redis().unwrap();
    // The raw key is the one labkit reads: a valid value written there by
    // hand reads back.
    let valid = r#"{"id":1,"name":"n","email":"e","plan":"pro"}"#;
    redis::cmd("SET")
        .arg(lab.cache.storage_key(&key))
        .arg(valid)
        .query::<()>(&mut redis)
        .unwrap();
    assert_eq!(
        lab.cache.get_json::<User>(&key).unwrap().map(|u| u.plan),
        Some("pro".into())
    );
    for corrupt in ["not json", r#"{"id":1,"name":"old shape"}"#, "\u{0}\u{ff}"] {
        redis::cmd("SET")
            .arg(lab.cache.storage_key(&key))
            .arg(corrupt)
            .arg("EX")
            .arg(60)
            .query::<()>(&mut redis)
            .unwrap();
        assert_eq!(
            lab.cache.get_json::<User>(&key).unwrap(),
            None,
            "{corrupt:?} reads as a miss"
        );
        assert!(!lab.cache.exists(&key).unwrap(), "{corrupt:?} was removed");
    }
    // The same key read as another type is reported again, once.
    for _ in 0..2 {
        redis::cmd("SET")
            .arg(lab.cache.storage_key(&key))
            .arg("not json")
            .query::<()>(&mut redis)
            .unwrap();
        assert_eq!(lab.cache.get_json::<u8>(&key).unwrap(), None);
    }
}

/// Two isolated labs share neither rows nor keys, and a dropped lab leaves
/// no schema and no keys behind.
#[test]
fn labkit_isolated_labs_are_private_and_clean_up_on_drop() {
    let (a, b) = (lab(), lab());
    a.db.execute("UPDATE users SET plan = 'enterprise' WHERE id = 1", &[])
        .unwrap();
    a.cache
        .set_json("user:1", &"a's", Duration::from_secs(60))
        .unwrap();
    let plan: String =
        b.db.query_opt("SELECT plan FROM users WHERE id = 1", &[])
            .unwrap()
            .unwrap()
            .get(0);
    assert_eq!(plan, "pro", "b still has the seeded plan");
    assert!(!b.cache.exists("user:1").unwrap(), "b does not see a's key");
    let space = a.space_name().unwrap().to_string();
    assert_eq!(leftovers(&space), (1, true));
    drop(a);
    assert_eq!(
        leftovers(&space),
        (0, false),
        "keys and schema of a dropped lab"
    );
}

/// Leases: one holder at a time; no lease while a value is cached; a fill
/// with a revoked lease is refused; `invalidate` drops value and lease.
#[test]
fn labkit_leases_grant_one_holder_and_invalidate_revokes() {
    let lab = lab();
    let ttl = Duration::from_secs(2);
    let lease = lab
        .cache
        .try_lease("user:1", ttl)
        .unwrap()
        .expect("a cold key can be leased");
    assert!(
        lab.cache.try_lease("user:1", ttl).unwrap().is_none(),
        "one holder at a time"
    );
    assert!(
        lab.cache
            .fill_with_lease("user:2", &lease, &1, ttl)
            .is_err(),
        "a lease fills only its own key"
    );
    assert!(
        lab.cache
            .fill_with_lease("user:1", &lease, &"v1", ttl)
            .unwrap()
    );
    assert!(
        lab.cache.try_lease("user:1", ttl).unwrap().is_none(),
        "no lease while a value is cached"
    );
    lab.cache.invalidate("user:1").unwrap();
    let second = lab
        .cache
        .try_lease("user:1", ttl)
        .unwrap()
        .expect("leasable again");
    assert_eq!(second.key(), "user:1");
    lab.cache.invalidate("user:1").unwrap();
    assert!(
        !lab.cache
            .fill_with_lease("user:1", &second, &"stale", ttl)
            .unwrap(),
        "revoked"
    );
    assert!(!lab.cache.exists("user:1").unwrap());
    // A revoked lease stays revoked once somebody else holds a new one.
    let third = lab
        .cache
        .try_lease("user:1", ttl)
        .unwrap()
        .expect("leasable again");
    assert!(
        !lab.cache
            .fill_with_lease("user:1", &second, &"stale", ttl)
            .unwrap(),
        "old token"
    );
    assert!(
        lab.cache
            .fill_with_lease("user:1", &third, &"fresh", ttl)
            .unwrap()
    );
    assert_eq!(
        lab.cache.get_json::<String>("user:1").unwrap().as_deref(),
        Some("fresh")
    );
}

/// A lease lives in its value's hash slot, so that the lease scripts and
/// `invalidate` (two keys in one step) also run on a Redis Cluster, whatever
/// the key looks like; a key whose lease could not share its slot is
/// refused, before anything is sent.
#[test]
fn labkit_a_lease_shares_its_values_hash_slot() {
    use redis::cluster_routing::{Route, SlotAddr};
    let lab = lab();
    for key in ["user:1", "marker:user:1", "{user}:1", "a{b}c", "a{b"] {
        let value = lab.cache.storage_key(key);
        let lease = testkit::lease_key(&lab.cache, key).unwrap();
        assert_ne!(value, lease);
        assert_eq!(
            Route::with_key(&value, SlotAddr::Master),
            Route::with_key(&lease, SlotAddr::Master),
            "{key:?}: value {value:?} and lease {lease:?} in one slot"
        );
        let taken = lab.cache.try_lease(key, Duration::from_secs(2)).unwrap();
        let taken = taken.expect("a cold key can be leased");
        assert!(
            lab.cache
                .fill_with_lease(key, &taken, &1, Duration::from_secs(2))
                .unwrap()
        );
        lab.cache.invalidate(key).unwrap();
    }
    for key in ["a}b", "{}x"] {
        assert!(
            matches!(
                lab.cache.try_lease(key, Duration::from_secs(2)),
                Err(Error::InvalidInput(_))
            ),
            "{key:?}"
        );
    }
}

/// After 10,000 distinct keys have been locked and released, the key-lock
/// map holds none of them: finished entries are removed, as in Go's
/// singleflight, so the map is bounded by the keys in flight.
#[test]
fn labkit_key_lock_map_keeps_no_finished_entries() {
    let held = key_lock("sweep-test:held");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for k in (t..10_000).step_by(8) {
                    let lock = key_lock(&format!("sweep-test:{k}"));
                    let _held = lock.lock().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(key_lock("sweep-test:probe"));
    let finished =
        |k: &str| k.starts_with("sweep-test:") && k != "sweep-test:probe" && k != "sweep-test:held";
    assert_eq!(
        testkit::key_lock_entries(finished),
        (0, 0),
        "entries left of the 10,000 finished keys"
    );
    // The controls: a lock still held stays (live); the probe, dropped
    // after the last sweep, is there but finished.
    assert_eq!(
        testkit::key_lock_entries(|k| k == "sweep-test:held"),
        (1, 0)
    );
    assert_eq!(
        testkit::key_lock_entries(|k| k == "sweep-test:probe"),
        (1, 1)
    );
    // Holders of one key share one mutex; other keys get their own.
    assert!(std::sync::Arc::ptr_eq(&held, &key_lock("sweep-test:held")));
    assert!(!std::sync::Arc::ptr_eq(
        &held,
        &key_lock("sweep-test:other")
    ));
    drop(held);
}

/// A run killed with SIGKILL leaves its schema and keys behind; the next
/// process to start sweeps them, because the dead run's advisory lock is
/// gone. Other runs may be sweeping at the same time (a second `cargo test`),
/// so the test looks only when nobody holds the dead run's lock: not while
/// its session is still ending, nor in the middle of somebody's sweep.
#[test]
fn labkit_a_sigkilled_run_is_swept_by_the_next_start() {
    if std::env::var_os("LAB_HOLD_A_LAB").is_some() {
        let lab = lab();
        lab.cache
            .set_json("user:1", &1, Duration::from_secs(60))
            .unwrap();
        println!("SPACE {}", lab.space_name().unwrap());
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "labkit_a_sigkilled_run_is_swept_by_the_next_start",
            "--exact",
            "--nocapture",
            "-q",
        ])
        .env("LAB_HOLD_A_LAB", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let space = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("SPACE ").map(String::from));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let space = space.expect("the child reported its space");
    assert_swept_by_the_next_start(&space);
}

/// Starts the next process (the `solution` binary) once the dead run that
/// owned `space` is settled, and asserts that its start swept `space` in
/// full. Other runs may be sweeping at the same time, so it looks only when
/// nobody holds the dead run's lock.
fn assert_swept_by_the_next_start(space: &str) {
    assert!(
        testkit::wait_for_sweepers(space, Duration::from_secs(10)).unwrap(),
        "the dead run's lock was still held after 10 s"
    );
    let next = Command::new(env!("CARGO_BIN_EXE_solution"))
        .output()
        .unwrap();
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(
        testkit::wait_for_sweepers(space, Duration::from_secs(10)).unwrap(),
        "a sweep was still running after 10 s"
    );
    assert_eq!(leftovers(space), (0, false), "swept by the next start");
}

/// A process that exits while one of its labs is still held (by a stuck
/// thread, say), or while a thread is half-way through dropping one (its
/// schema gone, its keys not yet), leaves its run listed: the next start
/// sweeps the keys. The child stages the half-dropped state itself (drops
/// the schema, then exits holding the lab), because exit cuts a drop short at
/// no point a test could choose.
#[test]
fn labkit_a_run_that_exits_holding_a_lab_is_swept_by_the_next_start() {
    if std::env::var_os("LAB_EXIT_HOLDING_A_LAB").is_some() {
        let lab = lab();
        lab.cache
            .set_json("user:1", &1, Duration::from_secs(60))
            .unwrap();
        let space = lab.space_name().unwrap().to_string();
        let mut pg = testkit::raw_postgres(&database_url()).unwrap();
        pg.batch_execute(&format!("DROP SCHEMA \"{space}\" CASCADE"))
            .unwrap();
        println!("SPACE {space}");
        std::mem::forget(lab);
        testkit::finish();
        std::process::exit(0);
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "labkit_a_run_that_exits_holding_a_lab_is_swept_by_the_next_start",
            "--exact",
            "--nocapture",
            "-q",
        ])
        .env("LAB_EXIT_HOLDING_A_LAB", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let space = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SPACE "))
        .unwrap_or_else(|| panic!("the child reported no space: {stdout}"))
        .to_string();
    assert_swept_by_the_next_start(&space);
}

/// A pooled connection whose server session was killed (`pg_terminate_backend`
/// for Postgres, `CLIENT KILL` for Redis) is replaced on the next call, which
/// succeeds at once: reads, writes and cache commands alike. Only this lab's
/// own sessions are killed; no service restarts.
#[test]
fn labkit_a_killed_pooled_session_is_replaced_on_the_next_call() {
    let lab = lab();
    let mut admin = testkit::raw_postgres(&database_url()).unwrap();
    let mut kill_pg = |lab: &Lab| {
        let pid: i32 = lab
            .db
            .with_raw_client(|c| c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0))
            .unwrap();
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0);
        assert!(killed, "terminated backend {pid}");
        std::thread::sleep(Duration::from_millis(50)); // let the FATAL notice arrive
    };
    kill_pg(&lab);
    let plan: String = lab
        .db
        .query_opt("SELECT plan FROM users WHERE id = 1", &[])
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(plan, "pro", "a read right after its session was killed");
    kill_pg(&lab);
    assert_eq!(
        lab.db
            .execute("UPDATE users SET plan = 'free' WHERE id = 1", &[])
            .unwrap(),
        1,
        "a write too"
    );
    assert_eq!(
        lab.db.query_count(),
        2,
        "each call counts once, retry or not"
    );

    lab.cache
        .set_json("k", &1, Duration::from_secs(60))
        .unwrap();
    // The node that holds "k" (on a cluster, the master of its slot): the
    // pooled connection's session there is the one to kill.
    let key = lab.cache.storage_key("k");
    let id: i64 = lab
        .cache
        .with_raw_connection(|c| on_node_of(c, &key, redis::cmd("CLIENT").arg("ID")))
        .unwrap();
    let mut redis = testkit::raw_redis().unwrap();
    let killed: i64 = on_node_of(
        &mut redis,
        &key,
        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id),
    );
    assert_eq!(killed, 1);
    assert_eq!(
        lab.cache.get_json::<i32>("k").unwrap(),
        Some(1),
        "a cache read right after its connection was killed"
    );
}

/// The grader's hooks do what the checks rely on: slowed statements are
/// slow, a parked write has not run until released, statement counts and
/// in-flight peaks are exact, and a closed lab refuses every call.
#[test]
fn labkit_hooks_slow_park_count_and_close() {
    let lab = std::sync::Arc::new(lab());
    let hooks = lab.hooks();
    hooks.slow_statements(Duration::from_millis(60));
    let started = Instant::now();
    lab.db.query("SELECT 1", &[]).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "slowed: {:?}",
        started.elapsed()
    );
    hooks.slow_statements(Duration::ZERO);

    let base = hooks.statements_started();
    assert!(
        !hooks.wait_for_statements(base + 1, Duration::from_millis(20)),
        "nothing was sent"
    );
    let parked = hooks.park(Trap::before_write());
    assert!(!parked.is_parked());
    let writer = {
        let lab = lab.clone();
        std::thread::spawn(move || {
            lab.db
                .execute("UPDATE users SET plan = 'enterprise' WHERE id = 2", &[])
        })
    };
    assert!(parked.wait(Duration::from_secs(5)) && parked.is_parked());
    assert!(
        hooks.wait_for_statements(base + 1, Duration::ZERO),
        "the parked write counts as started"
    );
    hooks.reset_peak();
    let plan = |lab: &Lab| -> String {
        lab.db
            .query_opt("SELECT plan FROM users WHERE id = 2", &[])
            .unwrap()
            .unwrap()
            .get(0)
    };
    assert_eq!(plan(&lab), "free", "a parked write has not run");
    assert_eq!(
        hooks.peak_in_flight(),
        2,
        "the read overlapped the parked write"
    );
    drop(parked);
    assert_eq!(writer.join().unwrap().unwrap(), 1);
    assert_eq!(plan(&lab), "enterprise", "released, it ran");
    assert_eq!(hooks.statements_started(), base + 3);

    assert_eq!(
        format!("{lab:?}"),
        format!("Lab(isolated {})", lab.space_name().unwrap())
    );
    assert_eq!(lab.to_string(), "isolated lab", "short, for messages");
    assert!(matches!(attach("not_a_space"), Err(Error::InvalidInput(_))));
    hooks.fail_cache(true);
    let injected = lab.cache.exists("k").unwrap_err();
    assert!(
        matches!(injected, Error::Injected { .. })
            && injected.to_string().contains("injected")
            && !injected.to_string().contains("start the services"),
        "an injected failure says so: {injected}"
    );
    hooks.fail_cache(false);
    hooks.close();
    assert!(
        matches!(lab.db.query("SELECT 1", &[]), Err(Error::Closed))
            && matches!(lab.cache.exists("k"), Err(Error::Closed)),
        "a closed lab refuses calls"
    );
}

/// A pool whose connections are all in use, held by the lab's own threads,
/// is busy, not down: the error says that Redis answers, that all the
/// lab's pooled connections stayed in use and for how long, and how to stop
/// hammering it; never "cannot reach" or "start the services". The wait is
/// shortened for the test (it is `CHECKOUT_WAIT` otherwise).
#[test]
fn labkit_a_busy_pool_says_busy_not_unreachable() {
    let lab = testkit::isolated_sized(PoolSizes {
        postgres: 1,
        redis: 2,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let wait = Duration::from_millis(200);
    let (held, release) = (Barrier::new(3), Barrier::new(3));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                lab.cache
                    .with_raw_connection(|_| {
                        held.wait();
                        release.wait();
                    })
                    .unwrap()
            });
        }
        held.wait();
        // Shortened only now that both are open: opening one can take
        // longer than this (over TLS to a cluster, a handshake per node).
        lab.cache.set_checkout_wait(wait);
        let started = Instant::now();
        let busy = lab.cache.exists("k");
        let waited = started.elapsed();
        release.wait();
        let err = busy.expect_err("no connection was free");
        let text = err.to_string();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        assert!(
            text.contains(&format!(
                "Redis at {}",
                mask_password(&testkit::redis_url())
            )) && text.contains(
                "answers, but all 2 of the lab's pooled connections to it stayed in use for 200ms"
            ) && text.contains("block on the lock, or sleep between looks")
                && !text.contains("cannot reach")
                && !text.contains("start the services"),
            "{text}"
        );
        assert!(
            waited >= wait && waited < wait + Duration::from_secs(1),
            "it waited {waited:?}"
        );
    });
    assert!(
        lab.cache.exists("k").is_ok(),
        "free again, the pool answers"
    );
}

/// Errors classify: a refused statement carries its SQLSTATE and says
/// "refused", with the server's error as its source; a missing database is
/// "cannot reach" with the fix for it; passwords never show.
#[test]
fn labkit_errors_say_what_failed_and_what_to_do() {
    let lab = lab();
    let err = lab
        .db
        .execute("UPDATE users SET plan = 'platinum' WHERE id = 1", &[])
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("23514"), "{err}");
    assert!(
        err.to_string().contains("refused the command")
            && err.to_string().contains("[SQLSTATE 23514]"),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the cause chain is kept");
    assert!(
        source.downcast_ref::<postgres::Error>().is_some(),
        "the source is the client's own error: {source:?}"
    );
    for (url, masked) in [
        (
            "postgres://u:s3cr3t@h:5432/db",
            "postgres://u:***@h:5432/db",
        ),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("host=h password=x user=u", "host=h password=*** user=u"),
    ] {
        assert_eq!(mask_password(url), masked);
    }

    let url = on_database(&database_url(), "no_such_db_xyz").expect("a database in DATABASE_URL");
    let out = Command::new(env!("CARGO_BIN_EXE_solution"))
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Postgres says which database; PgBouncer (a session pool in front of
    // it) says that it serves none of that name.
    let direct = stderr.contains("cannot reach Postgres at")
        && stderr.contains("\"no_such_db_xyz\" does not exist")
        && stderr.contains("create that database or point DATABASE_URL at one that exists");
    let pooled = stderr.contains("refused the connection")
        && stderr.contains("no_such_db_xyz")
        && stderr.contains("the database must be one it serves");
    assert!(direct || pooled, "{stderr}");
}

/// What one misconfigured service does to the `solution` binary: its exit
/// status and the one line it prints.
fn run_solution_with(var: &str, url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_solution"))
        .env(var, url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    (out.status.success(), stderr)
}

/// A stand-in server on a free port that answers every connection with
/// `serve`: what a misconfigured Postgres or Redis says, on any machine.
fn fake_server(serve: fn(std::net::TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// A Postgres that answers an SSLRequest with `tls` ('S' or 'N'), then
/// answers the startup message with `reply`.
fn fake_postgres(mut stream: std::net::TcpStream, tls: u8, reply: &[u8]) {
    use std::io::{Read, Write};
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).is_err() {
        return;
    }
    if header[4..] == [0x04, 0xd2, 0x16, 0x2f] {
        // An SSLRequest: answer it, then read the startup message.
        if stream.write_all(&[tls]).is_err() || tls == b'S' {
            return;
        }
        if stream.read_exact(&mut header).is_err() {
            return;
        }
    }
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; len.saturating_sub(8)];
    if stream.read_exact(&mut rest).is_ok() {
        let _ = stream.write_all(reply);
        let _ = stream.flush();
        // Hold the connection until the client gives up on it.
        let _ = stream.read(&mut [0u8; 1]);
    }
}

/// A Postgres backend message: its type, then its length and body.
fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend(((body.len() + 4) as u32).to_be_bytes());
    message.extend(body);
    message
}

/// Asks for a SCRAM-SHA-256 password (AuthenticationSASL).
fn asks_for_a_password(stream: std::net::TcpStream) {
    let mut body = 10u32.to_be_bytes().to_vec();
    body.extend(b"SCRAM-SHA-256\0\0");
    fake_postgres(stream, b'N', &pg_message(b'R', &body));
}

/// Offers TLS, and refuses a connection without it, as a pg_hba.conf with
/// only `hostssl` lines does (Postgres 15's words).
fn only_tls(stream: std::net::TcpStream) {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28000"),
        (
            b'M',
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption",
        ),
    ] {
        body.push(field);
        body.extend(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    fake_postgres(stream, b'S', &pg_message(b'E', &body));
}

/// Does not offer TLS.
fn no_tls(stream: std::net::TcpStream) {
    fake_postgres(stream, b'N', &[]);
}

/// A Redis with a password: every command gets NOAUTH.
fn redis_noauth(stream: std::net::TcpStream) {
    use std::io::{BufRead, Write};
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // One reply per command: a command is an array ("*N") of N bulk strings
    // ("$len", then the bytes).
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.starts_with('*')
            && writer
                .write_all(b"-NOAUTH Authentication required.\r\n")
                .is_err()
        {
            return;
        }
        line.clear();
    }
}

/// A plain Redis: every line gets `+PONG`; a ClientHello, nothing (its NUL
/// bytes keep a real Redis from ever seeing a line).
fn redis_plain(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut byte = [0u8; 1];
    let mut tls = None;
    while stream.read_exact(&mut byte).is_ok() {
        if *tls.get_or_insert(byte[0] == 22) {
            continue;
        }
        if byte[0] == b'\n' && stream.write_all(b"+PONG\r\n").is_err() {
            return;
        }
    }
}

/// A TLS-only Redis: a ClientHello gets a TLS alert; anything else, a
/// closed connection (what Redis' TLS port does with plain RESP).
fn redis_tls_only(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut first = [0u8; 1];
    if stream.read_exact(&mut first).is_ok() && first[0] == 22 {
        // Alert, fatal, handshake_failure.
        let _ = stream.write_all(&[21, 3, 3, 0, 2, 2, 40]);
    }
}

/// A misconfigured service fails every entry point with one line that names
/// the real cause, the service, the URL (password masked) and the fix: a
/// Postgres that asks for a password the URL lacks, one that accepts only
/// TLS, `sslmode=require` against one without TLS, a Redis that needs a
/// password, `redis://` against a TLS-only Redis, `rediss://` against a
/// plain one, a URL that does not parse (with the option it chokes on).
#[test]
fn labkit_a_misconfigured_service_names_the_cause_and_the_fix() {
    let runs: Vec<_> = misconfigurations()
        .into_iter()
        .map(|(var, url, cause, fix)| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let (ok, stderr) = run_solution_with(var, &url);
                (var, url, cause, fix, ok, stderr, started.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (var, url, cause, fix, ok, stderr, took) = run.join().unwrap();
        assert!(!ok, "{var}={url}: the binary succeeded");
        assert!(
            took < Duration::from_secs(5),
            "{var}={url}: took {took:?}, expected under 5 s"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{var}={url}: one line:\n{stderr}"
        );
        let service = if var == "REDIS_URL" {
            "Redis"
        } else {
            "Postgres"
        };
        let masked = url.replace("hunter2", "***");
        assert!(
            stderr.contains(&format!("{service} at {masked}"))
                || stderr.contains(&format!("{var} {masked}")),
            "{var}={url}: names the service and the masked URL:\n{stderr}"
        );
        assert!(
            stderr.contains(cause) && stderr.contains(fix) && !stderr.contains("hunter2"),
            "{var}={url}: expected {cause:?} and {fix:?}:\n{stderr}"
        );
    }
}

/// The misconfigurations, each as (variable, URL, cause, fix): the fake
/// servers they need are started here, and serve until the process exits.
fn misconfigurations() -> [(&'static str, String, &'static str, &'static str); 8] {
    let password = fake_server(asks_for_a_password);
    let tls_only = fake_server(only_tls);
    let plain = fake_server(no_tls);
    let noauth = fake_server(redis_noauth);
    let redis_tls = fake_server(redis_tls_only);
    let redis_plain = fake_server(redis_plain);
    [
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{password}/postgres"),
            "asks for a password, and DATABASE_URL gives none",
            "postgres://USER:PASSWORD@HOST:PORT/DB",
        ),
        (
            "DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{tls_only}/postgres?sslmode=disable"),
            "accepts only TLS connections",
            "sslmode=require",
        ),
        (
            "DATABASE_URL",
            format!("postgres://postgres:hunter2@127.0.0.1:{plain}/postgres?sslmode=require"),
            "does not speak TLS",
            "remove sslmode=require",
        ),
        (
            "REDIS_URL",
            format!("redis://127.0.0.1:{noauth}"),
            "asks for a password, and REDIS_URL gives none",
            "redis://:PASSWORD@HOST:PORT",
        ),
        (
            "REDIS_URL",
            format!("redis://:hunter2@127.0.0.1:{redis_tls}"),
            "accepts only TLS connections",
            "rediss://",
        ),
        (
            "REDIS_URL",
            format!("rediss://:hunter2@127.0.0.1:{redis_plain}"),
            "does not speak TLS",
            "redis://... instead of rediss://...",
        ),
        (
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:5432/postgres?sslmode=sometimes".to_string(),
            "invalid connection string: invalid value for option `sslmode`",
            "expected e.g. postgres://",
        ),
        (
            "DATABASE_URL",
            "postgres://postgres:hunter2@127.0.0.1:5432/postgres?connect_timeout=soon".to_string(),
            "invalid connection string: invalid value for option `connect_timeout`",
            "expected e.g. postgres://",
        ),
    ]
}

/// `url` with the query parameters named in `drop` taken out and `add`
/// put in.
fn with_query(url: &str, drop: &[&str], add: &[&str]) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !drop.contains(&p.split('=').next().unwrap_or_default()))
        .collect();
    kept.extend(add);
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Where `DATABASE_URL` and `REDIS_URL` name TLS-only servers checked
/// against a CA of their own (`scripts/services up --tls`, CI's TLS job),
/// the certificate is really checked, and TLS on one side only is told:
/// the platform's roots do not trust that CA (Postgres with
/// `sslrootcert=system`, Redis without `sslrootcert`), `sslmode=disable` and
/// `redis://` meet servers that accept only TLS. Elsewhere it says so.
#[test]
fn labkit_tls_checks_the_certificate_as_the_url_asks() {
    let (db, redis) = (database_url(), testkit::redis_url());
    if !(db.contains("sslrootcert=") && redis.starts_with("rediss://")) {
        println!("skipped: DATABASE_URL and REDIS_URL are not TLS with a CA of their own");
        return;
    }
    let cases = [
        (
            "DATABASE_URL",
            with_query(
                &db,
                &["sslmode", "sslrootcert"],
                &["sslmode=verify-full", "sslrootcert=system"],
            ),
            "presented a certificate that was not accepted",
        ),
        (
            "DATABASE_URL",
            with_query(&db, &["sslmode", "sslrootcert"], &["sslmode=disable"]),
            "accepts only TLS connections",
        ),
        (
            "REDIS_URL",
            with_query(&redis, &["sslrootcert"], &[]),
            "presented a certificate that was not accepted",
        ),
        (
            "REDIS_URL",
            with_query(&redis, &["sslrootcert"], &[]).replacen("rediss://", "redis://", 1),
            "accepts only TLS connections",
        ),
    ];
    for (var, url, cause) in cases {
        let (ok, stderr) = run_solution_with(var, &url);
        assert!(
            !ok && stderr.lines().count() == 1 && stderr.contains(cause),
            "{var}={url}: expected {cause:?}:\n{stderr}"
        );
    }
}

/// An ACL user on the lab's Redis, removed when dropped; `None` where this
/// connection may not create users (a managed Redis), or on a cluster, where
/// ACL users live on each node.
struct AclUser {
    name: String,
}

impl AclUser {
    fn create(rules: &[&str]) -> Option<AclUser> {
        let mut redis = testkit::raw_redis().unwrap();
        if matches!(redis, RedisConn::Cluster(_)) {
            return None;
        }
        let name = format!("lab_acl_test_{}_{}", std::process::id(), rules.len());
        let created: redis::RedisResult<()> = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg(rules)
            .query(&mut redis);
        created.ok().map(|()| AclUser { name })
    }

    /// `REDIS_URL` as this user.
    fn url(&self) -> String {
        let url = testkit::redis_url();
        let (scheme, rest) = url.split_once("://").unwrap();
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}:pw@{rest}", self.name)
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(mut redis) = testkit::raw_redis() {
            let _: redis::RedisResult<i64> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query(&mut redis);
        }
    }
}

/// A Redis user who may not run `INFO` still gets the lab (as a single
/// node: the cluster probe does not block it); one who may not run scripts
/// (Part 3's leases) fails the narration with NOPERM's own cause and fix,
/// though the reference carries on past each failed call, as Part 3 asks.
#[test]
fn labkit_a_redis_user_without_a_permission_is_told_which() {
    let (Some(no_info), Some(no_scripts)) = (
        AclUser::create(&["+@all", "-info"]),
        AclUser::create(&["+@all", "-@scripting", "-info"]),
    ) else {
        println!("skipped: no ACL users here (a cluster, or a user who may not create them)");
        return;
    };
    let (ok, stderr) = run_solution_with("REDIS_URL", &no_info.url());
    assert!(ok, "a user without INFO runs the lab:\n{stderr}");
    let (ok, stderr) = run_solution_with("REDIS_URL", &no_scripts.url());
    assert!(!ok, "a user without scripts fails the narration");
    let masked = mask_password(&no_scripts.url());
    assert!(
        stderr.lines().count() == 1
            && stderr.contains(&format!("Redis at {masked} answers, but the user in REDIS_URL may not run a command the lab needs"))
            && stderr.contains("evalsha")
            && stderr.contains("ACL SETUSER"),
        "{stderr}"
    );
}

/// A lab whose private schema is not in effect on a connection fails
/// loudly on its first statement, and never reads the shared `public.users`:
/// here, a space that does not exist on this server (as through a pooler
/// that routed the connection elsewhere).
#[test]
fn labkit_a_lab_whose_schema_is_not_in_effect_fails_loudly() {
    let lab = attach("lab_0badf00d_0").unwrap();
    let err = lab
        .db
        .query("SELECT id FROM users", &[])
        .expect_err("no rows from another schema");
    let text = err.to_string();
    assert!(
        matches!(err, Error::Unreachable { .. })
            && text.contains("cannot hold a lab's private schema")
            && text.contains("current_schema() was none")
            && text.contains("point DATABASE_URL at Postgres itself, or at a session pool"),
        "{text}"
    );
}

/// Behind a transaction pool (`LAB_TRANSACTION_POOL_URL`: PgBouncer with
/// `pool_mode = transaction` in front of `DATABASE_URL`'s server, as the CI
/// job has), every entry point fails within 2 s with one line naming the
/// pooler and the fix, before any lab takes a session advisory lock.
/// Elsewhere there is no such pool to ask, and it says so.
#[test]
fn labkit_a_transaction_pool_is_refused_before_any_check_runs() {
    let Ok(url) = std::env::var("LAB_TRANSACTION_POOL_URL") else {
        println!("skipped: LAB_TRANSACTION_POOL_URL names no transaction pool");
        return;
    };
    let started = Instant::now();
    let (ok, stderr) = run_solution_with("DATABASE_URL", &url);
    let took = started.elapsed();
    assert!(!ok, "the binary succeeded behind a transaction pool");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}, expected about 2 s at most"
    );
    assert!(
        stderr.lines().count() == 1
            && stderr.contains(&format!("Postgres at {}", mask_password(&url)))
            && stderr.contains("it is a transaction pool (PgBouncer's pool_mode = transaction")
            && stderr.contains("point DATABASE_URL at Postgres itself, or at a session pool"),
        "{stderr}"
    );
}

/// `DATABASE_URL` with another database, for a second run on the same
/// server: `None` when the URL names no database to replace.
fn on_database(url: &str, database: &str) -> Option<String> {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (url, String::new()),
    };
    let rest = url.split_once("://")?.1;
    let (_, _) = rest.split_once('/')?;
    let (base, _) = url.rsplit_once('/')?;
    Some(format!("{base}/{database}{query}"))
}

/// The URL of a second database on `DATABASE_URL`'s server, created if it
/// is not there yet.
fn peer_database(url: &str) -> String {
    const PEER: &str = "cache_aside_lab_peer";
    let peer = on_database(url, PEER).expect("DATABASE_URL names a database");
    let mut admin = testkit::raw_postgres(url).unwrap();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&PEER])
        .unwrap()
        .is_some();
    if !exists {
        // Another run may create it at the same moment: either wins.
        if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {PEER}")) {
            let raced = e.code().is_some_and(|c| {
                c == &postgres::error::SqlState::DUPLICATE_DATABASE
                    || c == &postgres::error::SqlState::UNIQUE_VIOLATION
            });
            assert!(raced, "cannot create the peer database: {e}");
        }
    }
    peer
}

/// Two runs that share one Redis but live in two Postgres databases (or
/// servers) never sweep each other: a run's liveness can be judged only in
/// its own database, so a live run there must look alive from here too. The
/// holder's run starts first and writes a key; then a new run starts on the
/// other database (and sweeps at start-up); the holder's key is still there.
#[test]
fn labkit_a_live_run_on_another_database_is_never_swept() {
    if std::env::var_os("LAB_HOLD_A_KEY").is_some() {
        let lab = lab();
        lab.cache
            .set_json("user:1", &1, Duration::from_secs(60))
            .unwrap();
        println!("SPACE {}", lab.space_name().unwrap());
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        println!("KEPT {}", lab.cache.exists("user:1").unwrap());
        return;
    }
    if std::env::var_os("LAB_JUST_START").is_some() {
        drop(lab());
        testkit::finish();
        return;
    }
    let url = database_url();
    let peer = peer_database(&url);
    let exe = std::env::current_exe().unwrap();
    let name = "labkit_a_live_run_on_another_database_is_never_swept";
    let args = [name, "--exact", "--nocapture", "-q"];
    for (holder_url, starter_url) in [(&peer, &url), (&url, &peer)] {
        let mut holder = Command::new(&exe)
            .args(args)
            .env("LAB_HOLD_A_KEY", "1")
            .env("DATABASE_URL", holder_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
        let space = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("SPACE ").map(String::from));
        assert!(space.is_some(), "the holder reported its space");
        let started = Command::new(&exe)
            .args(args)
            .env("LAB_JUST_START", "1")
            .env("DATABASE_URL", starter_url)
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        use std::io::Write as _;
        writeln!(holder.stdin.as_mut().unwrap(), "go").unwrap();
        // Read to the end: the holder's harness still prints after KEPT.
        let kept = lines
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("KEPT ").map(String::from))
            .last();
        holder.wait().unwrap();
        assert_eq!(
            kept.as_deref(),
            Some("true"),
            "a run on {} swept the live keys of a run on {}",
            mask_password(starter_url),
            mask_password(holder_url)
        );
    }
}

/// `testkit::run`, the one way answer code is run: a call that returns,
/// panics or hangs is told as such within its bound (a hang closes the lab,
/// so that the stuck call's next labkit call fails); a trap armed before a
/// call holds it there, or the call finishes without reaching it, or
/// neither happens within the wait.
#[test]
fn labkit_run_tells_returned_panicked_hung_and_parked() {
    use cache_aside_lab::labkit::testkit::run::{self, Ran, Start};
    let lab = std::sync::Arc::new(lab());
    let bound = Duration::from_secs(5);
    assert!(matches!(
        run::start(&lab, |_| 7).wait(bound),
        Ran::Returned(7)
    ));
    match run::start(&lab, |_| -> i32 { panic!("on purpose") }).wait(bound) {
        Ran::Panicked(panic) => assert_eq!(panic.message, "on purpose"),
        other => panic!("a panic was told as {other:?}"),
    }
    let select = |lab: &Lab| lab.db.query_opt("SELECT 1", &[]).map(|row| row.is_some());
    match run::start_parked(&lab, Trap::after_read(), bound, select) {
        Start::Parked(parked, mut running) => {
            assert!(!running.finished_within(Duration::from_millis(50)));
            drop(parked);
            assert!(matches!(running.wait(bound), Ran::Returned(Ok(true))));
        }
        _ => panic!("a call that reads was not held after its read"),
    }
    let none = run::start_parked(&lab, Trap::before_write(), bound, |_| 1);
    assert!(matches!(none, Start::Finished(_)), "finished, no write");
    let slow = |_: &Lab| std::thread::sleep(Duration::from_secs(1));
    match run::start_parked(&lab, Trap::before_write(), Duration::from_millis(50), slow) {
        Start::Late(parked, running) => {
            drop(parked);
            assert!(matches!(running.wait(bound), Ran::Returned(())));
        }
        _ => panic!("a call still sleeping was not told late"),
    }
    let stuck = |lab: &Lab| {
        while lab.db.query_opt("SELECT 1", &[]).is_ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let started = Instant::now();
    assert!(matches!(
        run::start(&lab, stuck).wait(Duration::from_millis(200)),
        Ran::Hung
    ));
    assert!(started.elapsed() < bound);
    assert!(matches!(
        lab.db.query_opt("SELECT 1", &[]),
        Err(Error::Closed)
    ));
}

/// The timeline is one per process: the tests that turn it on take turns.
static TIMELINE_ON: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The timeline records the calls of threads that play an actor (and only
/// theirs), with what came back, and the grader's parks and releases, on
/// one clock.
#[test]
fn labkit_the_timeline_records_who_called_what_and_when() {
    use cache_aside_lab::labkit::testkit::timeline::{self, Event};
    let lab = lab();
    let _turn = TIMELINE_ON.lock().unwrap_or_else(|e| e.into_inner());
    timeline::start();
    // The grader's own calls (no actor) are not recorded.
    let _: Option<User> = lab.cache.get_json("user:2").unwrap();
    {
        let _reader = timeline::act_as("reader 1");
        let _: Option<User> = lab.cache.get_json("user:2").unwrap();
        let row = lab
            .db
            .query_opt(
                "SELECT id, name, email, plan FROM users WHERE id = $1",
                &[&2],
            )
            .unwrap()
            .unwrap();
        let user = User::from_row(&row);
        lab.cache
            .set_json("user:2", &user, Duration::from_secs(60))
            .unwrap();
    }
    std::thread::scope(|s| {
        let parked = lab.hooks().park(Trap::before_write());
        s.spawn(|| {
            let _writer = timeline::act_as("writer");
            lab.db
                .execute("UPDATE users SET plan = $1 WHERE id = $2", &[&"pro", &2])
                .unwrap();
            lab.cache.delete("user:2").unwrap();
        });
        assert!(parked.wait(Duration::from_secs(5)), "the UPDATE is held");
    });
    // Other tests of this process may park or record while the timeline is
    // on (it is one per process): only this lab's steps are this test's.
    let space = lab.space_name().unwrap_or_default().to_string();
    let events: Vec<Event> = timeline::stop()
        .into_iter()
        .filter(|e| e.space == space)
        .collect();
    let lines: Vec<String> = events
        .iter()
        .map(|e| format!("{}: {}", e.actor, e.text()))
        .collect();
    assert_eq!(
        lines,
        [
            "reader 1: GET user:2 → miss",
            "reader 1: SELECT users id=2 → plan \"free\"",
            "reader 1: SET user:2 \"free\" ttl 60s",
            "grader: holds writer before its UPDATE is sent",
            "grader: releases writer",
            "writer: UPDATE users plan=\"pro\" id=2 → 1 row changed",
            "writer: DEL user:2 → found",
        ]
    );
    assert!(events.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    assert_eq!(
        (events[5].user(), events[5].plan()),
        (Some(2), Some("pro".into()))
    );
    assert!(!timeline::is_on(), "stopped: nothing more is recorded");
}

#[test]
fn labkit_the_timeline_keeps_the_first_and_last_steps_of_a_runaway_loop() {
    use cache_aside_lab::labkit::testkit::timeline::{self, Call, Event, Reply};
    let _turn = TIMELINE_ON.lock().unwrap_or_else(|e| e.into_inner());
    // A runaway loop keeps the first steps and the last ones, and says how
    // many were lost between.
    timeline::start();
    for n in 0..30_000 {
        timeline::record_as("reader 1", Call::Note(format!("poll {n}")), Reply::Done);
    }
    let kept = timeline::stop();
    assert_eq!(kept.len(), 20_001);
    let texts: Vec<String> = kept.iter().map(Event::text).collect();
    let polls: Vec<&String> = texts.iter().filter(|t| t.starts_with("poll ")).collect();
    assert_eq!(polls[0], "poll 0");
    assert_eq!(polls.last().map(|t| t.as_str()), Some("poll 29999"));
    // 10 000 of ours, and as many as other tests recorded meanwhile.
    let lost = texts
        .iter()
        .find_map(|t| t.strip_suffix(" more steps, not kept (too many to record)"))
        .and_then(|n| n.trim_start_matches("… ").parse::<usize>().ok());
    assert!(lost.is_some_and(|n| n >= 10_000), "{lost:?}");
}

#[test]
fn labkit_the_timeline_tells_a_herd_folded_and_a_long_story_short() {
    use cache_aside_lab::labkit::testkit::timeline::{self, Call, Event, Reply};
    // A herd of 40 readers is folded; a long story is cut to about 15
    // lines, and the marked step is kept.
    let step = |at_us, actor: String, call, reply, mark: Option<&str>| Event {
        at_us,
        sent_us: None,
        actor,
        space: String::new(),
        call,
        reply,
        mark: mark.map(str::to_string),
    };
    let mut story: Vec<Event> = (1..=40)
        .map(|n| {
            step(
                n,
                format!("reader {n}"),
                Call::Get("user:1".into()),
                Reply::Miss,
                None,
            )
        })
        .collect();
    for n in 0..30 {
        let note = Call::Note(format!("step {n}"));
        story.push(step(100 + n, "grader".into(), note, Reply::Done, None));
    }
    let culprit = step(
        120,
        "reader 7".into(),
        Call::Set {
            key: "user:1".into(),
            value: r#"{"plan":"free"}"#.into(),
            ttl_ms: 60_000,
        },
        Reply::Done,
        Some("cached the row read before the UPDATE committed"),
    );
    story.insert(60, culprit);
    let all = timeline::render_all(&story);
    assert!(
        all.contains("… 39 more readers: GET user:1 → miss"),
        "{all}"
    );
    let short = timeline::render(&story);
    assert!(short.lines().count() <= timeline::SHORT + 2, "{short}");
    assert!(
        short.contains(
            "SET user:1 \"free\" ttl 60s   ← cached the row read before the UPDATE committed"
        ),
        "{short}"
    );
    assert!(short.contains("more steps"), "{short}");
}

/// What each connection to [`records_then_refuses_plain`] asked first: TLS
/// (an SSLRequest) or a plain startup. Only that server writes it.
static FIRST_ASKED: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());

/// A TLS-only Postgres (see [`only_tls`]) that records what each connection
/// asked first.
fn records_then_refuses_plain(stream: std::net::TcpStream) {
    let mut header = [0u8; 8];
    let asked = match stream.peek(&mut header) {
        Ok(8) if header[4..] == [0x04, 0xd2, 0x16, 0x2f] => "tls",
        Ok(_) => "plain",
        Err(_) => return,
    };
    FIRST_ASKED.lock().unwrap().push(asked);
    only_tls(stream);
}

/// `sslmode=allow`, as libpq: without TLS first and, refused, with TLS
/// (`prefer` asks for TLS at once). `PGSSLMODE` and `PGSSLROOTCERT` stand
/// in for options the URL does not give, never for ones it does, and an
/// error in them names them.
#[test]
fn labkit_sslmode_allow_and_the_libpq_environment_variables() {
    let port = fake_server(records_then_refuses_plain);
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/postgres");
    let run = |url: &str, env: &[(&str, &str)]| {
        FIRST_ASKED.lock().unwrap().clear();
        let mut solution = Command::new(env!("CARGO_BIN_EXE_solution"));
        solution
            .env("DATABASE_URL", url)
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT");
        let out = solution.envs(env.iter().copied()).output().unwrap();
        assert!(!out.status.success(), "{url} {env:?}: the binary succeeded");
        let asked = FIRST_ASKED.lock().unwrap().clone();
        (asked, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let allow_url = format!("{url}?sslmode=allow");
    for (url, env, first) in [
        (&url, &[][..], &["tls"][..]),
        (&allow_url, &[][..], &["plain", "tls"][..]),
        (&url, &[("PGSSLMODE", "allow")][..], &["plain", "tls"][..]),
        (
            &allow_url,
            &[("PGSSLMODE", "require")][..],
            &["plain", "tls"][..],
        ),
    ] {
        let (asked, stderr) = run(url, env);
        assert!(
            asked.starts_with(first),
            "{url} {env:?}: asked {asked:?}, expected {first:?} first:\n{stderr}"
        );
    }
    let root = "/nonexistent/lab-ca.crt";
    let (asked, stderr) = run(
        &url,
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", root)],
    );
    assert!(
        asked.is_empty()
            && stderr.contains(&format!("sslrootcert {root} cannot be read"))
            && stderr.contains(&format!(
                "from the environment: PGSSLMODE=verify-full PGSSLROOTCERT={root}"
            )),
        "asked {asked:?}:\n{stderr}"
    );
}

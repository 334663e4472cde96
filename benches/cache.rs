//! `cargo bench`: what the cache path costs next to raw clients, measured in
//! one run. Not a test: it asserts nothing about speed, it reports.
//!
//! - Floors: a raw `redis::Connection` GET on a dedicated connection; a raw
//!   `postgres::Client` prepared SELECT on the connection labkit pools (and,
//!   for reference, on a dedicated client); a miss and an update by hand.
//! - labkit paths and the reference answers, hit throughput by thread count,
//!   1,000-thread herds, and a "remote" database (1 ms per statement).
//!
//! Each row is measured alternating op by op with its floor, rounds are
//! interleaved across rows, and each ratio is the median over rounds of
//! per-round p50 ratios, so drift on a noisy virtual machine hits
//! both sides alike. `-- --quick` is the CI smoke run; `-- --json` ends with
//! one JSON line holding a `summary`.

#[allow(dead_code)] // the bench needs four of the five answers
#[path = "../solution/reference.rs"]
mod reference;

use std::cell::RefCell;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::Lab;
use cache_aside_lab::labkit::testkit::{
    self, CacheExt, DbExt, LabExt, PoolSizes, Read, database_url, herd, isolated_sized, redis_url,
};
use cache_aside_lab::{User, user_key};

const SELECT: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";
const UPDATE: &str = "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2";
const GET_FLOOR: &str = "raw GET (dedicated connection)";

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn stats(samples: &mut [f64]) -> Stats {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        mean: samples.iter().sum::<f64>() / samples.len() as f64,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Op<'a> = Box<dyn FnMut() + 'a>;

/// A labkit path and its floor, measured strictly alternating (floor, row,
/// floor, row, …) so that both always run under the same conditions.
struct Pair<'a> {
    row: &'static str,
    floor: &'static str,
    ops: (Op<'a>, Op<'a>),
    samples: (Vec<f64>, Vec<f64>),
    ratios: Vec<f64>,
}

fn pair<'a>(
    row: &'static str,
    floor: &'static str,
    floor_op: impl FnMut() + 'a,
    row_op: impl FnMut() + 'a,
) -> Pair<'a> {
    Pair {
        row,
        floor,
        ops: (Box::new(floor_op), Box::new(row_op)),
        samples: (Vec::new(), Vec::new()),
        ratios: Vec::new(),
    }
}

fn timed(op: &mut Op<'_>) -> f64 {
    let t = Instant::now();
    op();
    t.elapsed().as_secs_f64() * 1e6
}

/// `rounds` rounds; in each, every pair runs `per_round` alternating ops,
/// right after `prepare` (which refills what the rows read). A pair's ratio
/// is the median over rounds of (row p50 / floor p50).
fn measure(pairs: &mut [Pair<'_>], rounds: usize, per_round: usize, prepare: &dyn Fn()) {
    for p in pairs.iter_mut() {
        prepare();
        for _ in 0..per_round / 4 {
            (p.ops.0)(); // warm-up: connections, prepared statements
            (p.ops.1)();
        }
    }
    for _ in 0..rounds {
        for p in pairs.iter_mut() {
            prepare();
            let (mut floor, mut row) =
                (Vec::with_capacity(per_round), Vec::with_capacity(per_round));
            for _ in 0..per_round {
                floor.push(timed(&mut p.ops.0));
                row.push(timed(&mut p.ops.1));
            }
            p.samples.0.extend_from_slice(&floor);
            p.samples.1.extend_from_slice(&row);
            p.ratios.push(stats(&mut row).p50 / stats(&mut floor).p50);
        }
    }
}

fn raw_pg(lab: &Lab) -> postgres::Client {
    let mut client = testkit::raw_postgres(&database_url()).expect("raw postgres");
    // As labkit does: a SET once per connection (a startup option would not
    // pass a pooler).
    client
        .batch_execute(&format!(
            "SET search_path TO \"{}\"",
            lab.space_name().expect("isolated")
        ))
        .expect("search_path");
    client
}

fn raw_redis() -> redis::Connection {
    testkit::redis_client(&redis_url())
        .expect("REDIS_URL")
        .get_connection()
        .expect("raw redis")
}

/// Ops per second of `threads` threads, each running `op` for `time`.
fn throughput<S: Send + 'static>(
    threads: usize,
    time: Duration,
    setup: impl Fn() -> S,
    op: impl Fn(&mut S) + Send + Sync + Clone + 'static,
) -> f64 {
    let gate = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (gate, op, mut state) = (gate.clone(), op.clone(), setup());
            std::thread::spawn(move || {
                gate.wait();
                let (start, mut n) = (Instant::now(), 0u64);
                while start.elapsed() < time {
                    op(&mut state);
                    n += 1;
                }
                n as f64 / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("worker")).sum()
}

/// What a herd cost.
struct HerdRun {
    /// From the first reader's start to the last reader's answer.
    wall_ms: f64,
    statements: u64,
    /// Readers that did not get user 1 (an error, say a pool timeout on an
    /// overloaded machine): reported, never a crash.
    failed: usize,
}

/// `n` threads released at once on user 1.
fn herd(lab: &Arc<Lab>, n: usize, read: Read) -> HerdRun {
    lab.db.reset_counters();
    let herd_lab = lab.clone();
    let runs = herd::release(
        n,
        Duration::from_secs(600),
        move || read(&herd_lab, 1),
        || {},
        || {},
    );
    let first = runs.iter().map(|r| r.started).min();
    let last = runs.iter().map(|r| r.finished).max();
    let wall_ms = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64() * 1e3,
        _ => f64::NAN,
    };
    let got = runs
        .iter()
        .filter(|r| matches!(&r.outcome, Ok(Ok(Some(u))) if u.id == 1))
        .count();
    HerdRun {
        wall_ms,
        statements: lab.db.query_count(),
        failed: n - got,
    }
}

/// Caches user 1 for a day, so that no hit row depends on how long the rows
/// before it took (CACHE_TTL is a minute, and a slow machine can take longer
/// than that to reach a row). Called right before every measurement that
/// reads it.
fn warm(lab: &Lab, user: &User) {
    lab.cache
        .set_json(&user_key(user.id), user, STAY)
        .expect("fill user 1");
}

/// How long `warm` keeps user 1 cached: longer than any run of the bench.
const STAY: Duration = Duration::from_secs(24 * 3600);

/// Hits of user 1 per second through `lab.cache.get_json`, on `threads`
/// threads (user 1 must be cached: see `warm`).
fn hit_throughput(lab: &Arc<Lab>, threads: usize, time: Duration) -> f64 {
    let lab = lab.clone();
    throughput(
        threads,
        time,
        || (),
        move |_: &mut ()| {
            lab.cache
                .get_json::<User>("user:1")
                .expect("get")
                .expect("hit");
        },
    )
}

/// The latency table: (row, floor, row stats, floor stats, ratio).
type Line = (&'static str, &'static str, Stats, Stats, f64);

fn latency(lab: &Arc<Lab>, user1: &User, rounds: usize, per_round: usize) -> Vec<Line> {
    let hit_key = lab.cache.storage_key(&user_key(1));
    let miss_key = lab.cache.storage_key("raw-miss");
    // Rows share the raw connections, one row at a time.
    let redis = RefCell::new(raw_redis());
    let pg = RefCell::new(raw_pg(lab));
    let select = pg.borrow_mut().prepare(SELECT).expect("prepare");
    let update = pg.borrow_mut().prepare(UPDATE).expect("prepare");
    // Postgres latency on a 2-core VM depends on which core the backend
    // process sits on, so the fair floor for labkit's Postgres rows is the
    // raw client of the very connection labkit pools.
    let pooled = lab
        .db
        .with_raw_client(|c| c.prepare(SELECT))
        .expect("pool")
        .expect("prepare");
    let plans = ["free", "pro"];
    let flip = RefCell::new(0usize);
    let raw_get = || {
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&hit_key)
            .query(&mut *redis.borrow_mut())
            .expect("GET");
    };
    let raw_miss = || {
        let mut r = redis.borrow_mut();
        let _: i64 = redis::cmd("DEL")
            .arg(&miss_key)
            .query(&mut *r)
            .expect("DEL");
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&miss_key)
            .query(&mut *r)
            .expect("GET");
        let row = pg
            .borrow_mut()
            .query_opt(&select, &[&2i32])
            .expect("SELECT")
            .expect("row");
        let json = serde_json::to_vec(&User::from_row(&row)).expect("json");
        let _: () = redis::cmd("SET")
            .arg(&miss_key)
            .arg(json)
            .arg("PX")
            .arg(60_000)
            .query(&mut *r)
            .expect("SET");
    };
    let labkit_miss = || {
        lab.cache.delete("user:2").expect("delete");
        reference::get_user_profile(lab, 2).expect("miss");
    };
    let next_plan = || {
        *flip.borrow_mut() += 1;
        plans[*flip.borrow() % 2]
    };
    let mut pairs = vec![
        pair("cache.get_json hit", GET_FLOOR, raw_get, || {
            lab.cache
                .get_json::<User>("user:1")
                .expect("get")
                .expect("hit");
        }),
        pair("get_user_profile, hit", GET_FLOOR, raw_get, || {
            reference::get_user_profile(lab, 1).expect("hit");
        }),
        pair(
            "db.query_opt",
            "raw prepared SELECT (pooled connection)",
            || {
                lab.db
                    .with_raw_client(|c| c.query_opt(&pooled, &[&1i32]).expect("SELECT"))
                    .expect("pool");
            },
            || {
                lab.db.query_opt(SELECT, &[&1i32]).expect("query");
            },
        ),
        pair(
            "db.query_opt",
            "raw prepared SELECT (dedicated client)",
            || {
                pg.borrow_mut()
                    .query_opt(&select, &[&1i32])
                    .expect("SELECT");
            },
            || {
                lab.db.query_opt(SELECT, &[&1i32]).expect("query");
            },
        ),
        pair(
            "get_user_profile, miss",
            "raw DEL + GET + SELECT + SET",
            raw_miss,
            labkit_miss,
        ),
        pair(
            "update_user_plan",
            "raw UPDATE + DEL",
            || {
                pg.borrow_mut()
                    .execute(&update, &[&next_plan(), &4i32])
                    .expect("UPDATE");
                let _: i64 = redis::cmd("DEL")
                    .arg(&miss_key)
                    .query(&mut *redis.borrow_mut())
                    .expect("DEL");
            },
            || {
                reference::update_user_plan(lab, 3, next_plan()).expect("update");
            },
        ),
    ];
    let prepare = || warm(lab, user1);
    measure(&mut pairs, rounds, per_round, &prepare);

    // A remote database: every statement 1 ms slower. A hit never notices.
    lab.hooks().slow_statements(Duration::from_millis(1));
    let mut remote = vec![pair(
        "remote DB: get_user_profile, hit",
        "remote DB: get_user_profile, miss",
        labkit_miss,
        || {
            reference::get_user_profile(lab, 1).expect("hit");
        },
    )];
    measure(
        &mut remote,
        rounds.min(5),
        (per_round / 10).max(10),
        &prepare,
    );
    lab.hooks().slow_statements(Duration::ZERO);
    pairs
        .into_iter()
        .chain(remote)
        .map(|mut p| {
            (
                p.row,
                p.floor,
                stats(&mut p.samples.1),
                stats(&mut p.samples.0),
                median(p.ratios),
            )
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let lab = match isolated_sized(PoolSizes {
        postgres: 8,
        redis: 64,
    }) {
        Ok(lab) => Arc::new(lab),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let user1 = match reference::get_user_profile(&lab, 1) {
        Ok(Some(user)) => user,
        other => {
            eprintln!("error: cannot read user 1 of the seed data: {other:?}");
            std::process::exit(1);
        }
    };
    // Every kind of call the rows below make, once, before any is timed: a
    // leased read falls back to Postgres when a Redis call fails, so a Redis
    // user who may not run scripts would otherwise be measured as a slow
    // cache instead of failing.
    let _ = reference::get_user_profile_leased(&lab, 1);
    let _ = lab.cache.invalidate(&user_key(1));
    exit_if_unusable();
    let (rounds, per_round) = if quick { (7, 150) } else { (25, 400) };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cache-aside lab benchmark: {rounds} rounds x {per_round} ops per row, interleaved; {cores} cores"
    );

    let lines = latency(&lab, &user1, rounds, per_round);
    println!(
        "\n{:<34} {:>7} {:>7} {:>7}   {:<40} {:>7} {:>7}   {:>6}",
        "latency, 1 thread (µs)",
        "mean",
        "p50",
        "p99",
        "floor, measured alternately",
        "mean",
        "p50",
        "ratio"
    );
    for (row, floor, r, f, ratio) in &lines {
        println!(
            "{row:<34} {:>7.1} {:>7.1} {:>7.1}   {floor:<40} {:>7.1} {:>7.1}   {ratio:>5.2}x",
            r.mean, r.p50, r.p99, f.mean, f.p50
        );
    }
    let ratio_of = |row: &str, floor: &str| {
        lines
            .iter()
            .find(|l| l.0 == row && l.1 == floor)
            .map_or(f64::NAN, |l| l.4)
    };

    let time = Duration::from_millis(if quick { 200 } else { 800 });
    let reps = if quick { 5 } else { 7 };
    println!(
        "\n{:<42} {:>12} {:>12} {:>8}",
        "hit throughput (ops/s, median)", "raw GET", "get_json", "ratio"
    );
    let mut throughput_16 = 0.0;
    for threads in [1, 4, 16, 64] {
        let (mut raw, mut ours, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let key = lab.cache.storage_key("user:1");
            let raw_run = || {
                let key = key.clone();
                throughput(
                    threads,
                    time,
                    raw_redis,
                    move |c: &mut redis::Connection| {
                        let _: Vec<u8> = redis::cmd("GET").arg(&key).query(c).expect("GET");
                    },
                )
            };
            let lab_run = || hit_throughput(&lab, threads, time);
            warm(&lab, &user1);
            // Alternate which side goes first, so order effects cancel.
            let (a, b) = if rep % 2 == 0 {
                let a = raw_run();
                (a, lab_run())
            } else {
                let b = lab_run();
                (raw_run(), b)
            };
            raw.push(a);
            ours.push(b);
            r.push(b / a);
        }
        let r = median(r);
        if threads == 16 {
            throughput_16 = r;
        }
        println!(
            "{:<42} {:>12.0} {:>12.0} {:>7.2}x",
            format!("{threads} threads"),
            median(raw),
            median(ours),
            r
        );
    }

    let n = 1000;
    let herd_rounds = if quick { 3 } else { 9 };
    let cold = |lab: &Lab| lab.cache.invalidate("user:1").expect("invalidate");
    let (mut warm_ms, mut single_ms) = (Vec::new(), Vec::new());
    let (mut warm_statements, mut statements, mut failed) = (0, 0, 0);
    for _ in 0..herd_rounds {
        warm(&lab, &user1);
        let hot = herd(&lab, n, reference::get_user_profile_singleflight);
        warm_ms.push(hot.wall_ms);
        warm_statements = warm_statements.max(hot.statements);
        cold(&lab);
        let single = herd(&lab, n, reference::get_user_profile_singleflight);
        single_ms.push(single.wall_ms);
        statements = statements.max(single.statements);
        failed += hot.failed + single.failed;
    }
    cold(&lab);
    let leased = herd(&lab, n, reference::get_user_profile_leased);
    cold(&lab);
    let plain = herd(&lab, n, reference::get_user_profile);
    let (warm_ms, single_ms) = (median(warm_ms), median(single_ms));
    println!(
        "\n{:<42} {:>10} {:>11} {:>8}",
        format!("herd of {n} threads on user 1 (median)"),
        "wall (ms)",
        "statements",
        "failed"
    );
    let row = |label: &str, ms: f64, sent: u64, failed: usize| {
        println!("{label:<42} {ms:>10.1} {sent:>11} {failed:>8}");
    };
    row("warm (all hits)", warm_ms, warm_statements, 0);
    row(
        "cold, single-flight (reference)",
        single_ms,
        statements,
        failed,
    );
    row(
        "cold, leases (reference, one run)",
        leased.wall_ms,
        leased.statements,
        leased.failed,
    );
    row(
        "cold, no protection (Part 1, one run)",
        plain.wall_ms,
        plain.statements,
        plain.failed,
    );

    let lag = replica_lag(&lab, if quick { 10 } else { 100 });
    let cluster = cluster_section(&lab, &user1, rounds, per_round, time, reps);

    let summary = format!(
        "{{\"hit_vs_raw_get\":{:.3},\"db_read_vs_raw_select\":{:.3},\"hit_throughput_16_vs_raw\":{:.3},\"herd_1000_statements\":{},\"herd_1000_wall_vs_warm\":{:.3}}}",
        ratio_of("cache.get_json hit", GET_FLOOR),
        ratio_of("db.query_opt", "raw prepared SELECT (pooled connection)"),
        throughput_16,
        statements,
        single_ms / warm_ms
    );
    let summary = match cluster {
        Some(c) => format!(
            "{},\"cluster_hit_vs_single\":{:.3},\"cluster_hit_vs_raw_cluster_get\":{:.3},\"cluster_throughput_16_vs_single\":{:.3},\"cluster_throughput_16_vs_raw\":{:.3}}}",
            summary.trim_end_matches('}'),
            c.hit_vs_single,
            c.hit_vs_raw,
            c.throughput_vs_single,
            c.throughput_vs_raw
        ),
        None => summary,
    };
    let summary = match lag {
        Some((p50, max)) => format!(
            "{},\"replica_lag_p50_ms\":{p50:.1},\"replica_lag_max_ms\":{max:.1}}}",
            summary.trim_end_matches('}')
        ),
        None => summary,
    };
    exit_if_unusable();
    println!("\nsummary: {summary}");
    if json {
        let latency: Vec<String> = lines
            .iter()
            .map(|(row, floor, r, f, ratio)| {
                format!(
                    "{{\"row\":{row:?},\"floor\":{floor:?},\"p50_us\":{:.2},\"p99_us\":{:.2},\"floor_p50_us\":{:.2},\"ratio\":{ratio:.3}}}",
                    r.p50, r.p99, f.p50
                )
            })
            .collect();
        println!(
            "{{\"summary\":{summary},\"latency\":[{}]}}",
            latency.join(",")
        );
    }
}

/// Exits non-zero with the cause when labkit found the services unusable
/// as configured (a password, TLS, a permission): numbers measured on such
/// a setup are not the lab's.
fn exit_if_unusable() {
    if let Some(e) = testkit::misconfiguration() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Part 4: how far the replica lags a write, over `writes` writes (median
/// and max, ms): a write on the primary, then the replica polled until it
/// has it. `None` without a replica.
fn replica_lag(lab: &Lab, writes: usize) -> Option<(f64, f64)> {
    if testkit::replica_url().is_err() {
        println!("\nreplica lag: no read replica (scripts/services up --replica)");
        return None;
    }
    lab.replica.query_opt("SELECT 1", &[]).ok()?;
    let mut lags = Vec::with_capacity(writes);
    for i in 0..writes {
        let plan = ["free", "pro"][i % 2];
        lab.db
            .with_raw_client(|c| c.execute("UPDATE users SET plan = $1 WHERE id = 5", &[&plan]))
            .ok()?
            .ok()?;
        let written = Instant::now();
        loop {
            let seen: Option<String> = lab
                .replica
                .with_raw_client(|c| c.query_opt("SELECT plan FROM users WHERE id = 5", &[]))
                .ok()?
                .ok()?
                .map(|row| row.get(0));
            if seen.as_deref() == Some(plan) {
                break;
            }
            if written.elapsed() > Duration::from_secs(30) {
                println!("\nreplica lag: the replica had not caught up after 30 s");
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        lags.push(written.elapsed().as_secs_f64() * 1e3);
    }
    let max = lags.iter().copied().fold(0.0, f64::max);
    let p50 = median(lags);
    println!(
        "\n{:<42} {:>10.1} {:>10.1}",
        format!("replica lag over {writes} writes (ms)"),
        p50,
        max
    );
    println!("{:<42} {:>10} {:>10}", "", "median", "max");
    Some((p50, max))
}

/// The Redis Cluster to compare with: `REDIS_CLUSTER_URL`, or the one
/// `scripts/services up --cluster` started.
fn cluster_url() -> Option<String> {
    if let Ok(url) = std::env::var("REDIS_CLUSTER_URL") {
        return (!url.is_empty()).then_some(url);
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/target/services/cluster.env");
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("REDIS_CLUSTER_URL=").map(str::to_string))
}

struct ClusterRatios {
    hit_vs_single: f64,
    hit_vs_raw: f64,
    throughput_vs_single: f64,
    throughput_vs_raw: f64,
}

/// The cache path on a Redis Cluster, in the same run: hit latency against
/// the single node's and against a raw cluster client's GET, and 16-thread
/// hit throughput against both.
fn cluster_section(
    single: &Arc<Lab>,
    user1: &User,
    rounds: usize,
    per_round: usize,
    time: Duration,
    reps: usize,
) -> Option<ClusterRatios> {
    let Some(url) = cluster_url() else {
        println!("\ncluster: none (scripts/services up --cluster, or REDIS_CLUSTER_URL)");
        return None;
    };
    let lab = match testkit::isolated_on(
        &url,
        PoolSizes {
            postgres: 2,
            redis: 64,
        },
    ) {
        Ok(lab) => Arc::new(lab),
        Err(e) => {
            println!("\ncluster: cannot use {url}: {e}");
            return None;
        }
    };
    let client = testkit::redis_cluster_client(&url).ok()?;
    let raw = RefCell::new(client.get_connection().ok()?);
    let key = lab.cache.storage_key(&user_key(1));
    let prepare = || {
        warm(single, user1);
        warm(&lab, user1);
    };
    let raw_get = || {
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query(&mut *raw.borrow_mut())
            .expect("cluster GET");
    };
    let cluster_hit = || {
        lab.cache
            .get_json::<User>("user:1")
            .expect("get")
            .expect("hit");
    };
    let single_hit = || {
        single
            .cache
            .get_json::<User>("user:1")
            .expect("get")
            .expect("hit");
    };
    let mut pairs = vec![
        pair(
            "cluster: cache.get_json hit",
            "single node: cache.get_json hit",
            single_hit,
            cluster_hit,
        ),
        pair(
            "cluster: cache.get_json hit",
            "raw cluster GET (ClusterConnection)",
            raw_get,
            cluster_hit,
        ),
    ];
    measure(&mut pairs, rounds, per_round, &prepare);
    println!(
        "\n{:<34} {:>7} {:>7} {:>7}   {:<40} {:>7} {:>7}   {:>6}",
        format!("Redis Cluster at {}", testkit::mask_password(&url)),
        "mean",
        "p50",
        "p99",
        "floor, measured alternately",
        "mean",
        "p50",
        "ratio"
    );
    let mut ratios = Vec::new();
    for mut p in pairs {
        let (r, f, ratio) = (
            stats(&mut p.samples.1),
            stats(&mut p.samples.0),
            median(p.ratios),
        );
        println!(
            "{:<34} {:>7.1} {:>7.1} {:>7.1}   {:<40} {:>7.1} {:>7.1}   {ratio:>5.2}x",
            p.row, r.mean, r.p50, r.p99, p.floor, f.mean, f.p50
        );
        ratios.push(ratio);
    }
    // 16 threads: the single node, the cluster, and a raw cluster client,
    // in rotating order so that order effects cancel.
    let threads = 16;
    let (mut vs_single, mut vs_raw) = (Vec::new(), Vec::new());
    let (mut singles, mut clusters, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        prepare();
        let run_single = || hit_throughput(single, threads, time);
        let run_cluster = || hit_throughput(&lab, threads, time);
        let run_raw = || {
            let key = key.clone();
            let client = client.clone();
            throughput(
                threads,
                time,
                move || client.get_connection().expect("cluster connection"),
                move |c: &mut redis::cluster::ClusterConnection| {
                    let _: Vec<u8> = redis::cmd("GET").arg(&key).query(c).expect("GET");
                },
            )
        };
        let (s, c, r) = match rep % 3 {
            0 => (run_single(), run_cluster(), run_raw()),
            1 => {
                let c = run_cluster();
                let r = run_raw();
                (run_single(), c, r)
            }
            _ => {
                let r = run_raw();
                let s = run_single();
                (s, run_cluster(), r)
            }
        };
        singles.push(s);
        clusters.push(c);
        raws.push(r);
        vs_single.push(c / s);
        vs_raw.push(c / r);
    }
    let (throughput_vs_single, throughput_vs_raw) = (median(vs_single), median(vs_raw));
    println!(
        "\n{:<42} {:>12} {:>12} {:>12}",
        "hit throughput, 16 threads (ops/s, median)", "single node", "cluster", "raw cluster"
    );
    println!(
        "{:<42} {:>12.0} {:>12.0} {:>12.0}",
        "",
        median(singles),
        median(clusters),
        median(raws)
    );
    println!(
        "{:<42} cluster / single node {throughput_vs_single:.2}x, cluster / raw cluster client {throughput_vs_raw:.2}x",
        ""
    );
    Some(ClusterRatios {
        hit_vs_single: ratios[0],
        hit_vs_raw: ratios[1],
        throughput_vs_single,
        throughput_vs_raw,
    })
}

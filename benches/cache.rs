//! `cargo bench`: what the cache path costs next to raw clients, measured in
//! one run. Not a test: it asserts nothing about speed, it reports.
//!
//! - Floors: a raw `redis::Connection` GET on a dedicated connection; a raw
//!   `postgres::Client` prepared SELECT on the connection labkit pools (and,
//!   for reference, on a dedicated client); a miss and an update by hand.
//! - labkit paths and the reference answers, hit throughput by thread count,
//!   1,000-thread herds, and a "remote" database (1 ms per statement).
//!
//! Rounds are interleaved (A B C A B C …) and each ratio is the median over
//! rounds of per-round p50 ratios, so drift on a noisy virtual machine hits
//! both sides alike. `-- --quick` is the CI smoke run; `-- --json` ends with
//! one JSON line holding a `summary`.

#[allow(dead_code)] // the bench needs four of the five answers
#[path = "../solution/reference.rs"]
mod reference;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::{Lab, PoolSizes, Result, database_url, redis_url};
use cache_aside_lab::{User, user_key};

const SELECT: &str = "SELECT id, name, email, plan FROM users WHERE id = $1";
const UPDATE: &str = "UPDATE users SET plan = $1, updated_at = now() WHERE id = $2";
const GET_FLOOR: &str = "raw GET (dedicated connection)";
const SELECT_FLOOR: &str = "raw prepared SELECT (pooled connection)";
const MISS_FLOOR: &str = "raw GET + SELECT + SET (by hand)";
const UPDATE_FLOOR: &str = "raw UPDATE + DEL (by hand)";
const REMOTE_MISS: &str = "remote DB: get_user_profile, miss";

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

/// One latency row: a name, the floor it is compared with, and the op.
struct Case<'a> {
    name: &'static str,
    floor: Option<&'static str>,
    op: Box<dyn FnMut() + 'a>,
}

fn case<'a>(name: &'static str, floor: Option<&'static str>, op: impl FnMut() + 'a) -> Case<'a> {
    Case {
        name,
        floor,
        op: Box::new(op),
    }
}

struct Row {
    name: &'static str,
    floor: Option<&'static str>,
    stats: Stats,
    round_p50: Vec<f64>,
}

/// Runs every case `per_round` times per round, round-robin; times in µs.
fn measure(mut cases: Vec<Case<'_>>, rounds: usize, per_round: usize) -> Vec<Row> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut round_p50: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for c in cases.iter_mut() {
        for _ in 0..per_round / 4 {
            (c.op)(); // warm-up: connections, prepared statements
        }
    }
    for _ in 0..rounds {
        for (i, c) in cases.iter_mut().enumerate() {
            let mut round: Vec<f64> = (0..per_round)
                .map(|_| {
                    let t = Instant::now();
                    (c.op)();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            samples[i].extend_from_slice(&round);
            round_p50[i].push(stats(&mut round).p50);
        }
    }
    cases
        .iter()
        .zip(samples.iter_mut().zip(round_p50))
        .map(|(c, (s, r))| Row {
            name: c.name,
            floor: c.floor,
            stats: stats(s),
            round_p50: r,
        })
        .collect()
}

fn raw_pg(lab: &Lab) -> postgres::Client {
    let mut config: postgres::Config = database_url().parse().expect("DATABASE_URL");
    config.options(&format!(
        "-c search_path={}",
        lab.space_name().expect("isolated")
    ));
    config.connect(postgres::NoTls).expect("raw postgres")
}

fn raw_redis() -> redis::Connection {
    redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
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

type Read = fn(&Lab, i32) -> Result<Option<User>>;

/// `n` threads released at once: wall ms from the first reader's start to
/// the last reader's answer, and the statements sent.
fn herd(lab: &Arc<Lab>, n: usize, read: Read) -> (f64, u64) {
    lab.db.reset_counters();
    let gate = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (lab, gate) = (lab.clone(), gate.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    gate.wait();
                    let start = Instant::now();
                    read(&lab, 1).expect("herd read").expect("user 1");
                    (start, Instant::now())
                })
                .expect("spawn")
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = handles
        .into_iter()
        .map(|h| h.join().expect("reader"))
        .collect();
    let first = spans.iter().map(|s| s.0).min().expect("n > 0");
    let last = spans.iter().map(|s| s.1).max().expect("n > 0");
    ((last - first).as_secs_f64() * 1e3, lab.db.query_count())
}

fn latency_rows(lab: &Arc<Lab>, rounds: usize, per_round: usize) -> Vec<Row> {
    reference::get_user_profile(lab, 1).expect("fill user 1");
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
    let (flip, flip_raw) = (RefCell::new(0usize), RefCell::new(0usize));
    let get = |key: &str| -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut *redis.borrow_mut())
            .expect("GET")
    };
    let cases = vec![
        case(GET_FLOOR, None, || {
            get(&hit_key);
        }),
        case(SELECT_FLOOR, None, || {
            lab.db
                .with_raw_client(|c| c.query_opt(&pooled, &[&1i32]).expect("SELECT"))
                .expect("pool");
        }),
        case("raw prepared SELECT (dedicated client)", None, || {
            pg.borrow_mut()
                .query_opt(&select, &[&1i32])
                .expect("SELECT");
        }),
        case(MISS_FLOOR, None, || {
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
        }),
        case(UPDATE_FLOOR, None, || {
            *flip_raw.borrow_mut() += 1;
            let plan = plans[*flip_raw.borrow() % 2];
            pg.borrow_mut()
                .execute(&update, &[&plan, &4i32])
                .expect("UPDATE");
            let _: i64 = redis::cmd("DEL")
                .arg(&miss_key)
                .query(&mut *redis.borrow_mut())
                .expect("DEL");
        }),
        case("cache.get_json hit", Some(GET_FLOOR), || {
            lab.cache
                .get_json::<User>("user:1")
                .expect("get")
                .expect("hit");
        }),
        case("db.query_opt", Some(SELECT_FLOOR), || {
            lab.db.query_opt(SELECT, &[&1i32]).expect("query");
        }),
        case("get_user_profile, hit", Some(GET_FLOOR), || {
            reference::get_user_profile(lab, 1).expect("hit");
        }),
        case("get_user_profile, miss", Some(MISS_FLOOR), || {
            lab.cache.delete("user:2").expect("delete");
            reference::get_user_profile(lab, 2).expect("miss");
        }),
        case("update_user_plan", Some(UPDATE_FLOOR), || {
            *flip.borrow_mut() += 1;
            reference::update_user_plan(lab, 3, plans[*flip.borrow() % 2]).expect("update");
        }),
    ];
    let mut rows = measure(cases, rounds, per_round);

    // A remote database: every statement 1 ms slower. A hit never notices.
    lab.hooks().slow_statements(Duration::from_millis(1));
    let remote = vec![
        case(REMOTE_MISS, None, || {
            lab.cache.delete("user:2").expect("delete");
            reference::get_user_profile(lab, 2).expect("miss");
        }),
        case(
            "remote DB: get_user_profile, hit",
            Some(REMOTE_MISS),
            || {
                reference::get_user_profile(lab, 1).expect("hit");
            },
        ),
    ];
    rows.extend(measure(remote, rounds.min(5), (per_round / 10).max(10)));
    lab.hooks().slow_statements(Duration::ZERO);
    rows
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let lab = match Lab::isolated_sized(PoolSizes {
        postgres: 8,
        redis: 64,
    }) {
        Ok(lab) => Arc::new(lab),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let (rounds, per_round) = if quick { (7, 150) } else { (25, 400) };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cache-aside lab benchmark: {rounds} rounds x {per_round} ops per row, interleaved; {cores} cores"
    );

    let rows = latency_rows(&lab, rounds, per_round);
    println!(
        "\n{:<42} {:>8} {:>8} {:>8}   ratio to floor",
        "latency, 1 thread (µs)", "mean", "p50", "p99"
    );
    let mut ratios = HashMap::new();
    for row in &rows {
        let shown = match row.floor.and_then(|f| rows.iter().find(|r| r.name == f)) {
            Some(floor) => {
                let r = median(
                    row.round_p50
                        .iter()
                        .zip(&floor.round_p50)
                        .map(|(a, b)| a / b)
                        .collect(),
                );
                ratios.insert(row.name, r);
                format!("{r:>5.2}x  {}", floor.name)
            }
            None => "floor".into(),
        };
        let s = &row.stats;
        println!(
            "{:<42} {:>8.1} {:>8.1} {:>8.1}   {shown}",
            row.name, s.mean, s.p50, s.p99
        );
    }

    let time = Duration::from_millis(if quick { 250 } else { 1000 });
    let reps = if quick { 3 } else { 5 };
    println!(
        "\n{:<42} {:>12} {:>12} {:>8}",
        "hit throughput (ops/s, median)", "raw GET", "get_json", "ratio"
    );
    let mut throughput_16 = 0.0;
    for threads in [1, 4, 16, 64] {
        let (mut raw, mut ours, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let key = lab.cache.storage_key("user:1");
            let a = throughput(
                threads,
                time,
                raw_redis,
                move |c: &mut redis::Connection| {
                    let _: Vec<u8> = redis::cmd("GET").arg(&key).query(c).expect("GET");
                },
            );
            let lab = lab.clone();
            let b = throughput(
                threads,
                time,
                || (),
                move |_: &mut ()| {
                    lab.cache
                        .get_json::<User>("user:1")
                        .expect("get")
                        .expect("hit");
                },
            );
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
    let (mut warm, mut single, mut statements) = (Vec::new(), Vec::new(), 0);
    for _ in 0..herd_rounds {
        reference::get_user_profile(&lab, 1).expect("warm");
        warm.push(herd(&lab, n, reference::get_user_profile_singleflight).0);
        cold(&lab);
        let (ms, sent) = herd(&lab, n, reference::get_user_profile_singleflight);
        single.push(ms);
        statements = statements.max(sent);
    }
    cold(&lab);
    let leased = herd(&lab, n, reference::get_user_profile_leased);
    cold(&lab);
    let plain = herd(&lab, n, reference::get_user_profile);
    let (warm, single) = (median(warm), median(single));
    println!(
        "\n{:<42} {:>10} {:>11}",
        format!("herd of {n} threads on user 1 (median)"),
        "wall (ms)",
        "statements"
    );
    println!("{:<42} {:>10.1} {:>11}", "warm (all hits)", warm, 0);
    println!(
        "{:<42} {:>10.1} {:>11}",
        "cold, single-flight (reference)", single, statements
    );
    println!(
        "{:<42} {:>10.1} {:>11}",
        "cold, leases (reference, one run)", leased.0, leased.1
    );
    println!(
        "{:<42} {:>10.1} {:>11}",
        "cold, no protection (Part 1, one run)", plain.0, plain.1
    );

    let summary = format!(
        "{{\"hit_vs_raw_get\":{:.3},\"db_read_vs_raw_select\":{:.3},\"hit_throughput_16_vs_raw\":{:.3},\"herd_1000_statements\":{},\"herd_1000_wall_vs_warm\":{:.3}}}",
        ratios["cache.get_json hit"],
        ratios["db.query_opt"],
        throughput_16,
        statements,
        single / warm
    );
    println!("\nsummary: {summary}");
    if json {
        let latency: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"name\":{:?},\"mean_us\":{:.2},\"p50_us\":{:.2},\"p99_us\":{:.2},\"ratio\":{}}}",
                    r.name,
                    r.stats.mean,
                    r.stats.p50,
                    r.stats.p99,
                    ratios.get(r.name).map_or("null".into(), |x| format!("{x:.3}"))
                )
            })
            .collect();
        println!(
            "{{\"summary\":{summary},\"latency\":[{}]}}",
            latency.join(",")
        );
    }
}

//! `cargo bench`: what the cache path costs next to raw clients, measured in
//! one run. Not a test: it asserts nothing about speed, it reports.
//!
//! - Floors: a raw `redis::Connection` GET on a dedicated connection; a raw
//!   `postgres::Client` prepared SELECT on the connection labkit pools (and,
//!   for reference, on a dedicated client); a miss and an update by hand.
//! - labkit paths and the reference answers, hit throughput by thread count,
//!   1,000-thread herds, and a "remote" database (1 ms per statement).
//! - What the grader's timeline costs: a hit and a miss recorded, against
//!   the same calls with the timeline off, alternating op by op.
//!
//! Each row is measured alternating op by op with its floor, rounds are
//! interleaved across rows, and each ratio is the median over rounds of
//! per-round p50 ratios, so drift on a noisy virtual machine hits
//! both sides alike. `-- --quick` is the CI smoke run; `-- --json` ends with
//! one JSON line holding a `summary`.

#[allow(dead_code)] // the bench runs only some of the reference answers
#[path = "../solution/reference.rs"]
mod reference;

use std::cell::RefCell;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::Lab;
use cache_aside_lab::labkit::testkit::{
    self, CacheExt, DbExt, LabExt, PoolSizes, Read, database_url, herd, isolated_sized, redis_url,
    timeline,
};
use cache_aside_lab::{User, user_key};
use serde::Serialize;

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
    /// Run right before each floor op and each row op, untimed (to turn
    /// the timeline off and on, say).
    before: Option<(Op<'a>, Op<'a>)>,
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
        before: None,
        samples: (Vec::new(), Vec::new()),
        ratios: Vec::new(),
    }
}

impl<'a> Pair<'a> {
    /// `floor` runs, untimed, right before each floor op; `row` before each
    /// row op.
    fn before(mut self, floor: impl FnMut() + 'a, row: impl FnMut() + 'a) -> Pair<'a> {
        self.before = Some((Box::new(floor), Box::new(row)));
        self
    }

    /// The floor op, timed (its `before` untimed).
    fn time_floor(&mut self) -> f64 {
        if let Some((before, _)) = &mut self.before {
            before();
        }
        timed(&mut self.ops.0)
    }

    /// The row op, timed (its `before` untimed).
    fn time_row(&mut self) -> f64 {
        if let Some((_, before)) = &mut self.before {
            before();
        }
        timed(&mut self.ops.1)
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
            p.time_floor(); // warm-up: connections, prepared statements
            p.time_row();
        }
    }
    for _ in 0..rounds {
        for p in pairs.iter_mut() {
            prepare();
            let (mut floor, mut row) =
                (Vec::with_capacity(per_round), Vec::with_capacity(per_round));
            for _ in 0..per_round {
                floor.push(p.time_floor());
                row.push(p.time_row());
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

/// How long and how often to measure: `-- --quick` is CI's smoke run.
struct Plan {
    /// Latency: interleaved rounds, and ops per row in each.
    rounds: usize,
    per_round: usize,
    /// Throughput: how long each run lasts, and how many runs per ratio.
    time: Duration,
    reps: usize,
    /// Cold herds of single-flight readers measured.
    herd_rounds: usize,
    /// Writes timed for the replica's lag.
    lag_writes: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                rounds: 7,
                per_round: 150,
                time: Duration::from_millis(200),
                reps: 5,
                herd_rounds: 3,
                lag_writes: 10,
            }
        } else {
            Plan {
                rounds: 25,
                per_round: 400,
                time: Duration::from_millis(800),
                reps: 7,
                herd_rounds: 9,
                lag_writes: 100,
            }
        }
    }
}

/// One row of a latency table: a path, its floor, and the ratio.
struct Line {
    row: &'static str,
    floor: &'static str,
    r: Stats,
    f: Stats,
    ratio: f64,
}

impl Pair<'_> {
    fn line(mut self) -> Line {
        Line {
            row: self.row,
            floor: self.floor,
            r: stats(&mut self.samples.1),
            f: stats(&mut self.samples.0),
            ratio: median(self.ratios),
        }
    }
}

/// A latency table under `title`: each row beside its floor.
fn print_table(title: &str, lines: &[Line]) {
    println!(
        "\n{:<34} {:>7} {:>7} {:>7}   {:<40} {:>7} {:>7}   {:>6}",
        title, "mean", "p50", "p99", "floor, measured alternately", "mean", "p50", "ratio"
    );
    for Line {
        row,
        floor,
        r,
        f,
        ratio,
    } in lines
    {
        println!(
            "{row:<34} {:>7.1} {:>7.1} {:>7.1}   {floor:<40} {:>7.1} {:>7.1}   {ratio:>5.2}x",
            r.mean, r.p50, r.p99, f.mean, f.p50
        );
    }
}

/// The raw clients of the latency floors, which the rows share, one row at
/// a time.
struct Raw {
    redis: RefCell<redis::Connection>,
    pg: RefCell<postgres::Client>,
    select: postgres::Statement,
    update: postgres::Statement,
    /// The SELECT prepared on the connection labkit pools.
    pooled: postgres::Statement,
    hit_key: String,
    miss_key: String,
    /// Which plan the next update writes.
    flip: RefCell<usize>,
}

impl Raw {
    fn new(lab: &Lab) -> Raw {
        let mut pg = raw_pg(lab);
        let select = pg.prepare(SELECT).expect("prepare");
        let update = pg.prepare(UPDATE).expect("prepare");
        // Postgres latency on a 2-core VM depends on which core the backend
        // process sits on, so the fair floor for labkit's Postgres rows is
        // the raw client of the very connection labkit pools.
        let pooled = lab
            .db
            .with_raw_client(|c| c.prepare(SELECT))
            .expect("pool")
            .expect("prepare");
        Raw {
            redis: RefCell::new(raw_redis()),
            pg: RefCell::new(pg),
            select,
            update,
            pooled,
            hit_key: lab.cache.storage_key(&user_key(1)),
            miss_key: lab.cache.storage_key("raw-miss"),
            flip: RefCell::new(0),
        }
    }

    fn next_plan(&self) -> &'static str {
        *self.flip.borrow_mut() += 1;
        ["free", "pro"][*self.flip.borrow() % 2]
    }

    fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut *self.redis.borrow_mut()).expect("redis")
    }

    fn get(&self) {
        let _: Option<Vec<u8>> = self.cmd(redis::cmd("GET").arg(&self.hit_key));
    }

    /// A miss by hand: DEL, GET, SELECT, SET.
    fn miss(&self) {
        let _: i64 = self.cmd(redis::cmd("DEL").arg(&self.miss_key));
        let _: Option<Vec<u8>> = self.cmd(redis::cmd("GET").arg(&self.miss_key));
        let row = self
            .pg
            .borrow_mut()
            .query_opt(&self.select, &[&2i32])
            .expect("SELECT")
            .expect("row");
        let json = serde_json::to_vec(&User::from_row(&row)).expect("json");
        let set = redis::cmd("SET")
            .arg(&self.miss_key)
            .arg(json)
            .arg("PX")
            .arg(60_000)
            .clone();
        let _: () = self.cmd(&set);
    }

    /// An update by hand: UPDATE, DEL.
    fn update(&self) {
        self.pg
            .borrow_mut()
            .execute(&self.update, &[&self.next_plan(), &4i32])
            .expect("UPDATE");
        let _: i64 = self.cmd(redis::cmd("DEL").arg(&self.miss_key));
    }
}

fn labkit_miss(lab: &Lab) {
    lab.cache.delete("user:2").expect("delete");
    reference::get_user_profile(lab, 2).expect("miss");
}

fn labkit_hit(lab: &Lab) {
    lab.cache
        .get_json::<User>("user:1")
        .expect("get")
        .expect("hit");
}

/// labkit's paths and the reference answers, each beside its floor.
fn local_pairs<'a>(lab: &'a Lab, raw: &'a Raw) -> Vec<Pair<'a>> {
    let query = || {
        lab.db.query_opt(SELECT, &[&1i32]).expect("query");
    };
    vec![
        pair(
            "cache.get_json hit",
            GET_FLOOR,
            || raw.get(),
            || labkit_hit(lab),
        ),
        pair(
            "get_user_profile, hit",
            GET_FLOOR,
            || raw.get(),
            || {
                reference::get_user_profile(lab, 1).expect("hit");
            },
        ),
        pair(
            "db.query_opt",
            "raw prepared SELECT (pooled connection)",
            || {
                lab.db
                    .with_raw_client(|c| c.query_opt(&raw.pooled, &[&1i32]).expect("SELECT"))
                    .expect("pool");
            },
            query,
        ),
        pair(
            "db.query_opt",
            "raw prepared SELECT (dedicated client)",
            || {
                raw.pg
                    .borrow_mut()
                    .query_opt(&raw.select, &[&1i32])
                    .expect("SELECT");
            },
            query,
        ),
        pair(
            "get_user_profile, miss",
            "raw DEL + GET + SELECT + SET",
            || raw.miss(),
            || labkit_miss(lab),
        ),
        pair(
            "update_user_plan",
            "raw UPDATE + DEL",
            || raw.update(),
            || {
                reference::update_user_plan(lab, 3, raw.next_plan()).expect("update");
            },
        ),
    ]
}

/// The latency rows, then the same hit beside a miss on a "remote" database.
fn latency(lab: &Lab, user1: &User, plan: &Plan) -> Vec<Line> {
    let raw = Raw::new(lab);
    let prepare = || warm(lab, user1);
    let mut pairs = local_pairs(lab, &raw);
    measure(&mut pairs, plan.rounds, plan.per_round, &prepare);

    // A remote database: every statement 1 ms slower. A hit never notices.
    lab.hooks().slow_statements(Duration::from_millis(1));
    let mut remote = vec![pair(
        "remote DB: get_user_profile, hit",
        "remote DB: get_user_profile, miss",
        || labkit_miss(lab),
        || {
            reference::get_user_profile(lab, 1).expect("hit");
        },
    )];
    let per_round = (plan.per_round / 10).max(10);
    measure(&mut remote, plan.rounds.min(5), per_round, &prepare);
    lab.hooks().slow_statements(Duration::ZERO);
    pairs.into_iter().chain(remote).map(Pair::line).collect()
}

/// What the grader's timeline costs (it records every call of a check,
/// `labkit::timeline`): the same hit, and the same miss, with the timeline
/// on (the bench's thread playing `reader 1`, as a check's reader does) and
/// off, alternating op by op. Turning it on and off happens between the
/// timed ops; on, each op starts an empty timeline, so it pays the first
/// push's allocation too (a check's timeline grows amortized). The rows
/// before do not matter: `warm` caches user 1 again before every round.
fn timeline_cost(lab: &Lab, user1: &User, plan: &Plan) -> Vec<Line> {
    let prepare = || warm(lab, user1);
    let _actor = timeline::act_as("reader 1");
    let off = || drop(timeline::stop());
    let on = timeline::start;
    let mut pairs = vec![
        pair(
            "cache.get_json hit, timeline on",
            "cache.get_json hit, timeline off",
            || labkit_hit(lab),
            || labkit_hit(lab),
        )
        .before(off, on),
        pair(
            "get_user_profile, miss, timeline on",
            "get_user_profile, miss, timeline off",
            || labkit_miss(lab),
            || labkit_miss(lab),
        )
        .before(off, on),
    ];
    measure(&mut pairs, plan.rounds, plan.per_round, &prepare);
    off();
    pairs.into_iter().map(Pair::line).collect()
}

/// Hit throughput on `threads` threads: a raw GET's, labkit's, and their
/// ratio (medians over `plan.reps` runs).
fn hit_throughput_vs_raw(
    lab: &Arc<Lab>,
    user1: &User,
    threads: usize,
    plan: &Plan,
) -> (f64, f64, f64) {
    let key = lab.cache.storage_key("user:1");
    let (mut raw, mut ours, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..plan.reps {
        let raw_run = || {
            let key = key.clone();
            throughput(
                threads,
                plan.time,
                raw_redis,
                move |c: &mut redis::Connection| {
                    let _: Vec<u8> = redis::cmd("GET").arg(&key).query(c).expect("GET");
                },
            )
        };
        let lab_run = || hit_throughput(lab, threads, plan.time);
        warm(lab, user1);
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
    (median(raw), median(ours), median(r))
}

/// The hit throughput table; returns the ratio at 16 threads.
fn hit_throughput_table(lab: &Arc<Lab>, user1: &User, plan: &Plan) -> f64 {
    println!(
        "\n{:<42} {:>12} {:>12} {:>8}",
        "hit throughput (ops/s, median)", "raw GET", "get_json", "ratio"
    );
    let mut at_16 = f64::NAN;
    for threads in [1, 4, 16, 64] {
        let (raw, ours, ratio) = hit_throughput_vs_raw(lab, user1, threads, plan);
        if threads == 16 {
            at_16 = ratio;
        }
        println!(
            "{:<42} {raw:>12.0} {ours:>12.0} {ratio:>7.2}x",
            format!("{threads} threads")
        );
    }
    at_16
}

/// How many readers a herd has.
const HERD: usize = 1000;

/// The herds of `HERD` readers on user 1.
struct Herds {
    /// Medians over `plan.herd_rounds`: all hits, and cold single-flight.
    warm_ms: f64,
    single_ms: f64,
    /// The most statements any warm, or cold single-flight, herd sent.
    warm_statements: u64,
    single_statements: u64,
    /// Readers of those herds that did not get user 1.
    failed: usize,
    /// One cold herd each: leased, and with no protection at all.
    leased: HerdRun,
    plain: HerdRun,
}

fn herds(lab: &Arc<Lab>, user1: &User, plan: &Plan) -> Herds {
    let cold = |lab: &Lab| lab.cache.invalidate("user:1").expect("invalidate");
    let (mut warm_ms, mut single_ms) = (Vec::new(), Vec::new());
    let (mut warm_statements, mut single_statements, mut failed) = (0, 0, 0);
    for _ in 0..plan.herd_rounds {
        warm(lab, user1);
        let hot = herd(lab, HERD, reference::get_user_profile_singleflight);
        warm_ms.push(hot.wall_ms);
        warm_statements = warm_statements.max(hot.statements);
        cold(lab);
        let single = herd(lab, HERD, reference::get_user_profile_singleflight);
        single_ms.push(single.wall_ms);
        single_statements = single_statements.max(single.statements);
        failed += hot.failed + single.failed;
    }
    cold(lab);
    let leased = herd(lab, HERD, reference::get_user_profile_leased);
    cold(lab);
    let plain = herd(lab, HERD, reference::get_user_profile);
    Herds {
        warm_ms: median(warm_ms),
        single_ms: median(single_ms),
        warm_statements,
        single_statements,
        failed,
        leased,
        plain,
    }
}

fn print_herds(h: &Herds) {
    println!(
        "\n{:<42} {:>10} {:>11} {:>8}",
        format!("herd of {HERD} threads on user 1 (median)"),
        "wall (ms)",
        "statements",
        "failed"
    );
    let row = |label: &str, ms: f64, sent: u64, failed: usize| {
        println!("{label:<42} {ms:>10.1} {sent:>11} {failed:>8}");
    };
    row("warm (all hits)", h.warm_ms, h.warm_statements, 0);
    let single = "cold, single-flight (reference)";
    row(single, h.single_ms, h.single_statements, h.failed);
    let (leased, plain) = (&h.leased, &h.plain);
    let label = "cold, leases (reference, one run)";
    row(label, leased.wall_ms, leased.statements, leased.failed);
    let label = "cold, no protection (Part 1, one run)";
    row(label, plain.wall_ms, plain.statements, plain.failed);
}

/// `x` rounded to `places` decimals, as the summary gives it.
fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The headline ratios: the `summary` line (and the JSON's).
#[derive(Serialize)]
struct Summary {
    hit_vs_raw_get: f64,
    db_read_vs_raw_select: f64,
    hit_throughput_16_vs_raw: f64,
    /// The timeline's cost: a hit, and a miss, recorded against off.
    timeline_hit_on_vs_off: f64,
    timeline_miss_on_vs_off: f64,
    herd_1000_statements: u64,
    herd_1000_wall_vs_warm: f64,
    #[serde(flatten)]
    cluster: Option<ClusterRatios>,
    #[serde(flatten)]
    lag: Option<Lag>,
}

/// A latency row, for `--json`.
#[derive(Serialize)]
struct LatencyRow {
    row: &'static str,
    floor: &'static str,
    p50_us: f64,
    p99_us: f64,
    floor_p50_us: f64,
    ratio: f64,
}

/// `--json`'s one line.
#[derive(Serialize)]
struct Report<'a> {
    summary: &'a Summary,
    latency: Vec<LatencyRow>,
}

fn report<'a>(summary: &'a Summary, lines: &[Line]) -> Report<'a> {
    let latency = lines
        .iter()
        .map(|l| LatencyRow {
            row: l.row,
            floor: l.floor,
            p50_us: round(l.r.p50, 2),
            p99_us: round(l.r.p99, 2),
            floor_p50_us: round(l.f.p50, 2),
            ratio: round(l.ratio, 3),
        })
        .collect();
    Report { summary, latency }
}

/// An isolated lab with pools for the benchmark's threads, and user 1 as
/// the seed has it; the error to report otherwise.
fn setup() -> Result<(Arc<Lab>, User), String> {
    let lab = isolated_sized(PoolSizes {
        postgres: 8,
        redis: 64,
    })
    .map_err(|e| e.to_string())?;
    let user = match reference::get_user_profile(&lab, 1) {
        Ok(Some(user)) => user,
        other => return Err(format!("cannot read user 1 of the seed data: {other:?}")),
    };
    // Every kind of call the rows below make, once, before any is timed: a
    // leased read falls back to Postgres when a Redis call fails, so a Redis
    // user who may not run scripts would otherwise be measured as a slow
    // cache instead of failing.
    let _ = reference::get_user_profile_leased(&lab, 1);
    let _ = lab.cache.invalidate(&user_key(1));
    exit_if_unusable();
    Ok((Arc::new(lab), user))
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plan = Plan::new(args.iter().any(|a| a == "--quick"));
    let (lab, user1) = setup().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cache-aside lab benchmark: {} rounds x {} ops per row, interleaved; {cores} cores",
        plan.rounds, plan.per_round
    );
    let lines = latency(&lab, &user1, &plan);
    print_table("latency, 1 thread (µs)", &lines);
    let ratio_of = |row: &str, floor: &str| {
        let line = lines.iter().find(|l| l.row == row && l.floor == floor);
        line.map_or(f64::NAN, |l| l.ratio)
    };
    let cost = timeline_cost(&lab, &user1, &plan);
    print_table("the timeline's cost, 1 thread (µs)", &cost);
    let throughput_16 = hit_throughput_table(&lab, &user1, &plan);
    let herds = herds(&lab, &user1, &plan);
    print_herds(&herds);
    let lag = replica_lag(&lab, plan.lag_writes);
    let cluster = cluster_section(&lab, &user1, &plan);
    let summary = Summary {
        hit_vs_raw_get: round(ratio_of("cache.get_json hit", GET_FLOOR), 3),
        db_read_vs_raw_select: round(
            ratio_of("db.query_opt", "raw prepared SELECT (pooled connection)"),
            3,
        ),
        hit_throughput_16_vs_raw: round(throughput_16, 3),
        timeline_hit_on_vs_off: round(cost[0].ratio, 3),
        timeline_miss_on_vs_off: round(cost[1].ratio, 3),
        herd_1000_statements: herds.single_statements,
        herd_1000_wall_vs_warm: round(herds.single_ms / herds.warm_ms, 3),
        cluster,
        lag,
    };
    exit_if_unusable();
    let summary_json = serde_json::to_string(&summary).expect("the summary serializes");
    println!("\nsummary: {summary_json}");
    if args.iter().any(|a| a == "--json") {
        let all: Vec<Line> = lines.into_iter().chain(cost).collect();
        let report = serde_json::to_string(&report(&summary, &all));
        println!("{}", report.expect("the report serializes"));
    }
}

/// How far the replica lags a write (ms), in the summary.
#[derive(Serialize)]
struct Lag {
    replica_lag_p50_ms: f64,
    replica_lag_max_ms: f64,
}

/// Part 4: how far the replica lags a write, over `writes` writes (median
/// and max): a write on the primary, then the replica polled until it has
/// it. `None` without a replica.
fn replica_lag(lab: &Lab, writes: usize) -> Option<Lag> {
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
    Some(Lag {
        replica_lag_p50_ms: round(p50, 1),
        replica_lag_max_ms: round(max, 1),
    })
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

/// The cluster's ratios, in the summary.
#[derive(Serialize)]
struct ClusterRatios {
    #[serde(rename = "cluster_hit_vs_single")]
    hit_vs_single: f64,
    #[serde(rename = "cluster_hit_vs_raw_cluster_get")]
    hit_vs_raw: f64,
    #[serde(rename = "cluster_throughput_16_vs_single")]
    throughput_vs_single: f64,
    #[serde(rename = "cluster_throughput_16_vs_raw")]
    throughput_vs_raw: f64,
}

/// A lab whose cache is the Redis Cluster at `url`, and a raw cluster
/// client beside it.
struct Cluster {
    url: String,
    lab: Arc<Lab>,
    client: redis::cluster::ClusterClient,
    /// user:1's real name in Redis.
    key: String,
}

impl Cluster {
    /// The cluster to compare with, if there is one; says why otherwise.
    fn open() -> Option<Cluster> {
        let Some(url) = cluster_url() else {
            println!("\ncluster: none (scripts/services up --cluster, or REDIS_CLUSTER_URL)");
            return None;
        };
        let sizes = PoolSizes {
            postgres: 2,
            redis: 64,
        };
        let lab = match testkit::isolated_on(&url, sizes) {
            Ok(lab) => Arc::new(lab),
            Err(e) => {
                println!("\ncluster: cannot use {url}: {e}");
                return None;
            }
        };
        let client = testkit::redis_cluster_client(&url).ok()?;
        let key = lab.cache.storage_key(&user_key(1));
        Some(Cluster {
            url,
            lab,
            client,
            key,
        })
    }

    /// Hit latency against the single node's and against a raw cluster
    /// client's GET.
    fn latency(&self, single: &Lab, prepare: &dyn Fn(), plan: &Plan) -> Option<Vec<Line>> {
        let raw = RefCell::new(self.client.get_connection().ok()?);
        let raw_get = || {
            let _: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&self.key)
                .query(&mut *raw.borrow_mut())
                .expect("cluster GET");
        };
        let hit = "cluster: cache.get_json hit";
        let mut pairs = vec![
            pair(
                hit,
                "single node: cache.get_json hit",
                || labkit_hit(single),
                || labkit_hit(&self.lab),
            ),
            pair(hit, "raw cluster GET (ClusterConnection)", raw_get, || {
                labkit_hit(&self.lab)
            }),
        ];
        measure(&mut pairs, plan.rounds, plan.per_round, prepare);
        Some(pairs.into_iter().map(Pair::line).collect())
    }

    /// Hits per second on 16 threads of a raw cluster client.
    fn raw_throughput(&self, threads: usize, time: Duration) -> f64 {
        let (key, client) = (self.key.clone(), self.client.clone());
        throughput(
            threads,
            time,
            move || client.get_connection().expect("cluster connection"),
            move |c: &mut redis::cluster::ClusterConnection| {
                let _: Vec<u8> = redis::cmd("GET").arg(&key).query(c).expect("GET");
            },
        )
    }

    /// 16-thread hit throughput: the single node, the cluster, and a raw
    /// cluster client, in rotating order so that order effects cancel.
    /// Returns cluster / single node and cluster / raw client.
    fn throughput(&self, single: &Arc<Lab>, prepare: &dyn Fn(), plan: &Plan) -> (f64, f64) {
        let threads = 16;
        let (mut vs_single, mut vs_raw) = (Vec::new(), Vec::new());
        let (mut singles, mut clusters, mut raws) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..plan.reps {
            prepare();
            let run_single = || hit_throughput(single, threads, plan.time);
            let run_cluster = || hit_throughput(&self.lab, threads, plan.time);
            let run_raw = || self.raw_throughput(threads, plan.time);
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
        let (vs_single, vs_raw) = (median(vs_single), median(vs_raw));
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
            "{:<42} cluster / single node {vs_single:.2}x, cluster / raw cluster client {vs_raw:.2}x",
            ""
        );
        (vs_single, vs_raw)
    }
}

/// The cache path on a Redis Cluster, in the same run: hit latency against
/// the single node's and against a raw cluster client's GET, and 16-thread
/// hit throughput against both.
fn cluster_section(single: &Arc<Lab>, user1: &User, plan: &Plan) -> Option<ClusterRatios> {
    let cluster = Cluster::open()?;
    let prepare = || {
        warm(single, user1);
        warm(&cluster.lab, user1);
    };
    let lines = cluster.latency(single, &prepare, plan)?;
    let title = format!("Redis Cluster at {}", testkit::mask_password(&cluster.url));
    print_table(&title, &lines);
    let (vs_single, vs_raw) = cluster.throughput(single, &prepare, plan);
    Some(ClusterRatios {
        hit_vs_single: round(lines[0].ratio, 3),
        hit_vs_raw: round(lines[1].ratio, 3),
        throughput_vs_single: round(vs_single, 3),
        throughput_vs_raw: round(vs_raw, 3),
    })
}

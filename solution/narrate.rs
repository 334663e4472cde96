//! The narration behind the `solution` binary.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::hooks::Trap;
use cache_aside_lab::labkit::{Lab, Result, database_url, mask_password, redis_url};
use cache_aside_lab::{User, user_key};

use crate::reference as answers;

/// Statements are slowed this much in the herds, so that a stampede has a
/// window to happen in, as it would against a busy database.
const SLOW: Duration = Duration::from_millis(20);
const HERD: usize = 50;
const PROCESSES: usize = 3;
const THREADS: usize = 16;

fn step(n: &str, what: &str, outcome: impl std::fmt::Display, statements: u64) {
    println!(
        "{n:>2}. {what:<46} {outcome:<34} {statements:>3} statement{}",
        if statements == 1 { "" } else { "s" }
    );
}

fn show(user: &Option<User>) -> String {
    match user {
        Some(u) => format!("{} (plan {:?})", u.name, u.plan),
        None => "None".into(),
    }
}

/// Runs `f` and returns its value and the statements it sent.
fn counted<T>(lab: &Lab, f: impl FnOnce() -> Result<T>) -> Result<(T, u64)> {
    lab.db.reset_counters();
    let value = f()?;
    Ok((value, lab.db.query_count()))
}

pub fn run() -> Result<()> {
    let started = Instant::now();
    let lab = Arc::new(Lab::isolated()?);
    println!("Cache-aside with Postgres + Redis: the reference answers, narrated.");
    println!(
        "Postgres {}, Redis {}; a private copy of the seed data ({}).\n",
        mask_password(&database_url()),
        mask_password(&redis_url()),
        lab.space_name().unwrap_or("shared")
    );

    println!("Part 1: cache-aside");
    let (user, n) = counted(&lab, || answers::get_user_profile(&lab, 1))?;
    let ttl = lab
        .cache
        .ttl(&user_key(1))?
        .map(|t| format!("{}s", t.as_secs()))
        .unwrap_or("-".into());
    step(
        "1",
        "cold read of user 1 (miss: Postgres, then fill)",
        format!("{} ttl {ttl}", show(&user)),
        n,
    );
    let (user, n) = counted(&lab, || answers::get_user_profile(&lab, 1))?;
    step("2", "read user 1 again (hit)", show(&user), n);
    let (_, n) = counted(&lab, || answers::update_user_plan(&lab, 1, "enterprise"))?;
    let present = lab.cache.exists(&user_key(1))?;
    step(
        "3",
        "update_user_plan(1, \"enterprise\")",
        format!("user:1 cached: {present}"),
        n,
    );
    let (user, n) = counted(&lab, || answers::get_user_profile(&lab, 1))?;
    step("4", "read user 1 after the update", show(&user), n);
    let (user, n) = counted(&lab, || answers::get_user_profile(&lab, 999))?;
    step("5", "read missing user 999", show(&user), n);

    println!("\nPart 2: single-flight ({HERD} threads, statements slowed by {SLOW:?})");
    lab.hooks().slow_statements(SLOW);
    let (got, n) = herd(&lab, 2, answers::get_user_profile_singleflight)?;
    step(
        "6a",
        &format!("{HERD} concurrent cold reads, single-flight"),
        format!("{got}/{HERD} got user 2"),
        n,
    );
    let (got, n) = herd(&lab, 3, answers::get_user_profile)?;
    step(
        "6b",
        &format!("{HERD} concurrent cold reads, plain Part 1"),
        format!("{got}/{HERD} got user 3"),
        n,
    );
    lab.hooks().slow_statements(Duration::ZERO);

    println!("\nPart 3: leases");
    println!(
        "7. the stale-set race: a reader reads user 4, an update lands, then the reader fills"
    );
    race(
        &lab,
        "plain",
        answers::get_user_profile,
        answers::update_user_plan,
    )?;
    race(
        &lab,
        "leased",
        answers::get_user_profile_leased,
        answers::update_user_plan_leased,
    )?;
    println!("8. a cold herd across {PROCESSES} processes x {THREADS} threads on user 5");
    let single = processes(&lab, 5, "singleflight")?;
    lab.cache.delete(&user_key(5))?;
    let leased = processes(&lab, 5, "leased")?;
    println!("     single-flight (a per-process lock) ...... {single} statements");
    println!(
        "     leases (one holder across processes) .... {leased} statement{}",
        if leased == 1 { "" } else { "s" }
    );
    println!(
        "\nDone in {:.1?}. Now make `cargo test` green with your own src/lib.rs.",
        started.elapsed()
    );
    Ok(())
}

type Read = fn(&Lab, i32) -> Result<Option<User>>;
type Update = fn(&Lab, i32, &str) -> Result<()>;

/// `n` reader threads that start together when `gate` opens.
fn readers(
    lab: &Arc<Lab>,
    n: usize,
    gate: &Arc<Barrier>,
    user_id: i32,
    read: Read,
) -> Vec<std::thread::JoinHandle<Result<Option<User>>>> {
    (0..n)
        .map(|_| {
            let (lab, gate) = (lab.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                read(&lab, user_id)
            })
        })
        .collect()
}

/// `HERD` threads released together on a cold user: how many got the user,
/// and the statements sent.
fn herd(lab: &Arc<Lab>, user_id: i32, read: Read) -> Result<(usize, u64)> {
    lab.db.reset_counters();
    let gate = Arc::new(Barrier::new(HERD));
    let threads = readers(lab, HERD, &gate, user_id, read);
    let mut got = 0;
    for t in threads {
        got += usize::from(
            t.join()
                .expect("reader panicked")?
                .is_some_and(|u| u.id == user_id),
        );
    }
    Ok((got, lab.db.query_count()))
}

/// The stale-set race, arranged with a parked statement instead of luck.
fn race(lab: &Arc<Lab>, label: &str, read: Read, update: Update) -> Result<()> {
    lab.cache.invalidate(&user_key(4))?;
    let row = lab
        .db
        .query_opt("SELECT plan FROM users WHERE id = 4", &[])?;
    let before: String = row.map(|r| r.get(0)).unwrap_or_default();
    let plan = if before == "pro" { "free" } else { "pro" };
    let parked = lab.hooks().park(Trap::after_read());
    let reader = {
        let lab = lab.clone();
        std::thread::spawn(move || read(&lab, 4))
    };
    parked.wait(Duration::from_secs(5));
    update(lab, 4, plan)?;
    drop(parked);
    reader.join().expect("reader panicked")?;
    let cached: Option<Option<User>> = lab.cache.get_json(&user_key(4))?;
    let verdict = match cached {
        Some(Some(u)) if u.plan != plan => {
            format!("STALE: cache holds {:?}, Postgres {plan:?}", u.plan)
        }
        Some(Some(u)) => format!("fresh: cache holds {:?}", u.plan),
        _ => "fresh: the late fill was refused, cache empty".into(),
    };
    println!("     {label:<7} {before:?} -> {plan:?} ...... {verdict}");
    Ok(())
}

/// Spawns `PROCESSES` copies of this binary as herd children: total statements.
fn processes(lab: &Lab, user_id: i32, mode: &str) -> Result<u64> {
    let exe = std::env::current_exe().expect("own path");
    let space = lab.space_name().expect("isolated");
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["herd-child", space, &format!("{mode}:{user_id}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a herd child")
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("piped")).lines())
        .collect();
    for out in &mut outputs {
        let _ready = out.next();
    }
    for child in &mut children {
        let _ = child.stdin.as_mut().expect("piped").write_all(b"GO\n");
    }
    let mut total = 0;
    for (child, out) in children.iter_mut().zip(&mut outputs) {
        let line = out.next().and_then(|l| l.ok()).unwrap_or_default();
        total += line.trim().parse::<u64>().unwrap_or(0);
        let _ = child.wait();
    }
    Ok(total)
}

/// Child side: join the parent's lab, line up `THREADS` readers, print
/// READY, wait for GO, then print the statements this process sent.
pub fn herd_child(space: &str, job: &str) -> Result<()> {
    let (mode, user_id) = job.split_once(':').unwrap_or((job, "5"));
    let user_id: i32 = user_id.parse().unwrap_or(5);
    let read: Read = if mode == "leased" {
        answers::get_user_profile_leased
    } else {
        answers::get_user_profile_singleflight
    };
    let lab = Arc::new(Lab::attach(space)?);
    lab.hooks().slow_statements(SLOW);
    let gate = Arc::new(Barrier::new(THREADS + 1));
    let threads = readers(&lab, THREADS, &gate, user_id, read);
    println!("READY");
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    gate.wait();
    for t in threads {
        let _ = t.join();
    }
    println!("{}", lab.db.query_count());
    Ok(())
}

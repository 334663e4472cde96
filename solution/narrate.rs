//! The narration behind the `solution` binary.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::testkit::{
    LabExt, Read, Trap, Update, database_url, herd, mask_password, redis_url,
};
use cache_aside_lab::labkit::{Lab, Result};

/// What the narration can fail with: labkit's errors, or a herd that did
/// not run.
pub type Outcome<T> = std::result::Result<T, Box<dyn std::error::Error>>;
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

pub fn run() -> Outcome<()> {
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
    let single = processes(&lab, 5, HERD_SINGLEFLIGHT)?;
    lab.cache.delete(&user_key(5))?;
    let leased = processes(&lab, 5, HERD_LEASED)?;
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

/// The reads a herd process of this binary can run, by name.
pub const HERD_SINGLEFLIGHT: &str = "reference singleflight";
pub const HERD_LEASED: &str = "reference leased";

pub fn herd_read(name: &str) -> Option<Read> {
    match name {
        HERD_SINGLEFLIGHT => Some(answers::get_user_profile_singleflight),
        HERD_LEASED => Some(answers::get_user_profile_leased),
        _ => None,
    }
}

/// Starts `PROCESSES` herd processes of this binary on `user_id`: the
/// statements they sent in all.
fn processes(lab: &Lab, user_id: i32, read: &str) -> Outcome<u64> {
    let spec = herd::Spec {
        space: lab.space_name().expect("isolated").to_string(),
        read: read.to_string(),
        user_id,
        threads: THREADS,
        slow_ms: SLOW.as_millis() as u64,
        bound_ms: 10_000,
    };
    let reports =
        herd::run(&spec, PROCESSES).map_err(|why| format!("the herd did not run: {why}"))?;
    Ok(reports.iter().map(|r| r.statements).sum())
}

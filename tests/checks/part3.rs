//! Part 3 (optional): leases against the stale-set race (and a read during
//! the update), herds across processes and on missing users, prompt waiters,
//! dead lease holders, a failing Postgres, and a failing Redis.

use cache_aside_lab::labkit::testkit::remote::{Heard, Remote};
use cache_aside_lab::labkit::testkit::{self, CacheExt, Function, Trap, herd};
use cache_aside_lab::{ABSENT_TTL, LEASE_TTL, user_key};

use super::*;

const SLOW: Duration = Duration::from_millis(50);
const GRACE: Duration = Duration::from_secs(1);
pub const PROCESSES: usize = 3;
pub const THREADS_PER_PROCESS: usize = 16;

/// A leased read fills the cache with a TTL of the order of CACHE_TTL (see
/// [`ttl_fits_cache_ttl`]), then hits, and a missing user is `None`.
pub fn leased_reads_behave_like_part1(a: Subject) -> Outcome {
    let lab = lab()?;
    let expected = seeded(&lab, 1)?;
    // The TTL is read while the reader is parked right after its fill: a
    // TTL of milliseconds would be gone before the read returned.
    let key = user_key(1);
    let (parked, reader) = start_parked(
        &lab,
        Trap::after_fill(&key),
        "get_user_profile_leased(user 1)",
        move |lab| (a.get_user_profile_leased)(lab, 1),
        || {
            fail(
                "a cold leased read of user 1 never filled the cache",
                "a miss leaves user:1 cached",
                "the reader that holds the lease loads the row and fills the cache with it (fill_with_lease)",
            )
        },
    )?;
    let (present, ttl) = cached(&lab, &key)?;
    drop(parked);
    let got = ok(
        "get_user_profile_leased(user 1)",
        reader.wait(BOUND)?,
        "read the cache, else take a lease, load and fill",
    )?;
    ensure(got.as_ref() == Some(&expected), || {
        fail(
            format!("a cold leased read of user 1 returned {got:?}"),
            format!("Some({expected:?})"),
            "load the row on a miss",
        )
    })?;
    ensure(present && ttl_fits_cache_ttl(ttl), || {
        fail(
            if present {
                format!(
                    "right after a cold leased read filled {key}, its TTL was {ttl:?} (None = never expires)"
                )
            } else {
                format!("right after a cold leased read filled {key}, it had already expired")
            },
            cache_ttl_range(),
            "give a user's fill a TTL of the order of CACHE_TTL: far above it serves stale data for long if an invalidation is ever lost, and far below it (a wrong constant, or milliseconds for seconds) makes the cache miss most of the time",
        )
    })?;
    let before = lab.db.query_count();
    call_ok(
        &lab,
        "get_user_profile_leased(user 1)",
        move |lab| (a.get_user_profile_leased)(lab, 1),
        "a hit returns the cached user",
    )?;
    ensure(lab.db.query_count() == before, || {
        fail(
            "a leased hit sent statements",
            "0 statements for a hit",
            "read the cache first",
        )
    })?;
    let missing = call(&lab, "get_user_profile_leased(user 999)", move |lab| {
        (a.get_user_profile_leased)(lab, 999)
    })?;
    ensure(matches!(missing, Ok(None)), || {
        fail(
            format!("user 999 read as {}", show(&missing)),
            "Ok(None)",
            "a missing user is None",
        )
    })
}

/// The stale-set race: a reader parked right after its SELECT, an update in
/// between, then the reader's fill. No later read may see the old plan, and
/// the reader itself still returns the user it read (its fill refused).
pub fn stale_set_race_leaves_no_stale_value(a: Subject) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 2)?;
    let plan = if before.plan == "pro" {
        "enterprise"
    } else {
        "pro"
    };
    let (parked, reader) = start_parked(
        &lab,
        Trap::after_read(),
        "get_user_profile_leased(user 2)",
        move |lab| (a.get_user_profile_leased)(lab, 2),
        || {
            fail(
                "a cold leased read of user 2 sent no read",
                "a miss loads the row",
                "query on a miss",
            )
        },
    )?;
    let update = call(
        &lab,
        format!("update_user_plan_leased(user 2, {plan:?})"),
        move |lab| (a.update_user_plan_leased)(lab, 2, plan),
    )?;
    ok(
        "update_user_plan_leased",
        update,
        "write Postgres, then lab.cache.invalidate(&key)",
    )?;
    drop(parked);
    let own = ok(
        "the parked get_user_profile_leased(user 2)",
        reader.wait(BOUND)?,
        "a refused fill is not an error",
    )?;
    // Either plan is right for this reader: it read before the update.
    ensure(own.as_ref().is_some_and(|u| u.id == 2), || {
        fail(
            format!(
                "the reader that read user 2 just before the update (its lease revoked by the update, so its fill could not be kept) returned {}",
                show(&Ok(own.clone()))
            ),
            "Some(user 2): the user exists, on either plan",
            "a refused fill only means the row you read may be out of date by now, so it must not be cached; your caller still asked for the user: return the row you read",
        )
    })?;
    for attempt in 1..=3 {
        let read = call(&lab, "get_user_profile_leased(user 2)", move |lab| {
            (a.get_user_profile_leased)(lab, 2)
        })?;
        ensure(matches!(&read, Ok(Some(u)) if u.plan == plan), || {
            fail(
                format!("read {attempt} after the race returned {}", show(&read)),
                format!(
                    "plan {plan:?}: the reader that read {:?} before the update must not fill it afterwards",
                    before.plan
                ),
                "fill only with fill_with_lease, and invalidate with lab.cache.invalidate so the lease is revoked",
            )
        })?;
    }
    Ok(())
}

/// A herd of 50 on a missing user costs 1 statement; all get `Ok(None)`;
/// absence is cached for at most ABSENT_TTL.
pub fn missing_user_herd_costs_one_statement(a: Subject) -> Outcome {
    // On a machine so busy that the holder's fill lands after its lease may
    // have expired, a second statement proves nothing: try again (twice).
    let mut attempt = 1;
    let (lab, results, limit) = loop {
        let (lab, results, limit, late) = missing_user_herd(a)?;
        if !(late && lab.db.query_count() > 1 && attempt < 3) {
            break (lab, results, limit);
        }
        attempt += 1;
    };
    judge_missing_user_herd(&lab, &results, limit)
}

/// The lab, what the readers got, the herd's limit, and whether the
/// holder's fill landed late.
type MissingHerd = (Arc<Lab>, Vec<Result<Option<User>>>, Duration, bool);

/// One herd of 50 leased reads of missing user 999, the holder held after
/// its SELECT: the lab, what the readers got, the herd's limit, and whether
/// the holder's fill landed later than LEASE_TTL after the herd started.
fn missing_user_herd(a: Subject) -> std::result::Result<MissingHerd, Failure> {
    let lab = lab()?;
    // A single read first (user 998, also missing): an unfinished answer
    // fails here with its own message, once, rather than fifty times.
    call_ok(
        &lab,
        "get_user_profile_leased(user 998)",
        move |lab| (a.get_user_profile_leased)(lab, 998),
        "a single leased read behaves like Part 1",
    )?;
    lab.db.reset_counters();
    lab.hooks().slow_statements(SLOW);
    let base = lab.hooks().statements_started();
    let parked = lab.hooks().park(Trap::after_read());
    let hooks_lab = lab.clone();
    let late = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let late_seen = late.clone();
    // Waiters may wait for the holder, but no longer than LEASE_TTL (plus
    // slack): whatever has been sent by then is what the herd cost.
    let limit = LEASE_TTL + Duration::from_secs(1);
    super::marks::watch_herd(999);
    let results = readers(
        &lab,
        "get_user_profile_leased(user 999)",
        50,
        limit,
        move |lab| (a.get_user_profile_leased)(lab, 999),
        move || {
            let started = Instant::now();
            if parked.wait(limit) {
                hooks_lab.hooks().wait_for_statements(base + 2, GRACE);
            }
            let fill = hooks_lab.hooks().park(Trap::after_fill(&user_key(999)));
            drop(parked);
            if fill.wait(LEASE_TTL) && started.elapsed() >= LEASE_TTL {
                late_seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
    )?;
    let late = late.load(std::sync::atomic::Ordering::SeqCst);
    Ok((lab, results, limit, late))
}

/// What a missing-user herd must have cost and returned.
fn judge_missing_user_herd(
    lab: &Lab,
    results: &[Result<Option<User>>],
    limit: Duration,
) -> Outcome {
    let statements = lab.db.query_count();
    ensure(statements <= 1, || {
        fail(
            format!(
                "{statements} statements for 50 concurrent reads of missing user 999{}",
                match results.len() {
                    50 => String::new(),
                    n => format!(" (only {n} of the 50 had returned within {limit:?})"),
                }
            ),
            "exactly 1",
            "cache the absence too (fill_with_lease with None, ABSENT_TTL), and let waiters wait for the lease holder",
        )
    })?;
    all_returned(results, 50, limit)?;
    let wrong = results.iter().filter(|r| !matches!(r, Ok(None))).count();
    ensure(wrong == 0, || {
        let example = results
            .iter()
            .find(|r| !matches!(r, Ok(None)))
            .map(show)
            .unwrap_or_default();
        fail(
            format!("{wrong} of 50 readers of missing user 999 got {example}"),
            "Ok(None) for all",
            "cache absence as null and return None",
        )
    })?;
    ensure(statements == 1, || {
        fail(
            format!("{statements} statements for 50 concurrent reads of missing user 999"),
            "exactly 1",
            "cache the absence too (fill_with_lease with None, ABSENT_TTL), and let waiters wait for the lease holder",
        )
    })?;
    let (present, ttl) = cached(lab, &user_key(999))?;
    ensure(
        present && ttl.is_some_and(|t| !t.is_zero() && t <= ABSENT_TTL),
        || {
            fail(
                format!("absence of user 999 cached: {present}, TTL {ttl:?}"),
                format!("cached with a TTL in (0, ABSENT_TTL = {ABSENT_TTL:?}]"),
                "use ABSENT_TTL, not CACHE_TTL, for a missing user, so a user created later shows up soon",
            )
        },
    )
}

/// A lease whose holder died delays a reader by at most LEASE_TTL. The
/// holder is the answer itself, in another process (so that a process-local
/// lock in front of the lease stays out of it): parked right after its
/// SELECT, holding the lease it took, then killed (SIGKILL). A read here
/// must return the user within LEASE_TTL + 1 s of the kill.
pub fn dead_holder_delays_at_most_lease_ttl(a: Subject) -> Outcome {
    let lab = lab()?;
    let key = user_key(1);
    let what = "get_user_profile_leased(user 1)";
    let call = remote_call(
        &lab,
        a,
        Function::GetUserProfileLeased,
        1,
        "",
        Some(Trap::after_read()),
    );
    let mut holder = Remote::start(&call).map_err(Failure::Setup)?;
    let started = Instant::now();
    let heard = holder.next(BOUND).map_err(|e| {
        if started.elapsed() < BOUND {
            return Failure::Setup(e);
        }
        Failure::Hang {
            observed: format!(
                "a cold {what} in another process neither read Postgres nor returned within {BOUND:?}"
            ),
            hint: "on a miss with nobody else around, take the lease and load the row; never wait without a way out".into(),
        }
    })?;
    match heard {
        Heard::Parked => {}
        Heard::Done(outcome) => {
            // A panic (such as a todo!()) is reported as it is.
            let result = remote_result(what, outcome)?;
            return Err(fail(
                format!(
                    "a cold {what} in another process returned {result:?} without reading Postgres"
                ),
                "a miss loads the row",
                "the reader that holds the lease loads the row",
            ));
        }
    }
    grader_note("kills that process (a crash), lease and all");
    holder.kill();
    let killed = Instant::now();
    let limit = LEASE_TTL + Duration::from_secs(1);
    let mut read = spawn(&lab, what, move |lab| (a.get_user_profile_leased)(lab, 1));
    if !read.finishes_within(limit.saturating_sub(killed.elapsed())) {
        // Not returning in time is the behaviour under test here, not a hang
        // of the harness. What is left of the dead holder's lease says why.
        let lease = lease_left(&lab, &key);
        let _ = read.wait(Duration::ZERO); // closes the lab under the reader
        return Err(still_waiting(lease, &key, limit));
    }
    let read = read.wait(Duration::ZERO)?;
    ensure(matches!(&read, Ok(Some(u)) if u.id == 1), || {
        fail(
            format!(
                "with a dead lease holder, the read returned {} after {:?}",
                show(&read),
                killed.elapsed()
            ),
            "user 1",
            "once the lease expires, take it yourself and load the row",
        )
    })
}

/// Why a read was still waiting `limit` after the holder of `key`'s lease
/// died, by what was left of that lease then (see [`lease_left`]).
fn still_waiting(lease: Option<Option<Duration>>, key: &str, limit: Duration) -> Failure {
    match lease {
        Some(left) => fail(
            format!(
                "a reader in another process took the lease on {key}, read the row and died (killed by the grader); {limit:?} later a read here had not returned, and the dead reader's lease was still there ({})",
                match left {
                    Some(left) => format!("expiring in {left:?}"),
                    None => "never expiring".into(),
                }
            ),
            "a read returns within LEASE_TTL + 1 s of the holder's death",
            "a lease lasts LEASE_TTL, the most a dead holder may cost its waiters: taken for longer (a TTL meant for the value), a crash between lease and fill keeps every reader of the key waiting that long",
        ),
        None => fail(
            format!(
                "a reader in another process took the lease on {key}, read the row and died (killed by the grader); {limit:?} later a read here had not returned, although the dead reader's lease had expired"
            ),
            "a read returns within LEASE_TTL + 1 s of the holder's death",
            "keep retrying try_lease while you wait: a dead holder's lease expires after LEASE_TTL",
        ),
    }
}

/// What is left of the lease labkit's `try_lease` keeps for `key`: `None`
/// if there is none, `Some(None)` if it never expires.
fn lease_left(lab: &Lab, key: &str) -> Option<Option<Duration>> {
    let lease = testkit::lease_key(&lab.cache, key).ok()?;
    let ms: i64 = lab
        .cache
        .with_raw_connection(|c| redis::cmd("PTTL").arg(&lease).query(c))
        .ok()?
        .ok()?;
    match ms {
        -2 => None,
        -1 => Some(None),
        ms => Some(Some(Duration::from_millis(ms.max(0) as u64))),
    }
}

/// With any one Redis call failing (the look, the lease request, or the
/// fill), a cold leased read is still served from Postgres; and a user that
/// exists never reads as `Ok(None)`, whatever happens to its entry.
pub fn one_redis_call_failing_read_uses_postgres(a: Subject) -> Outcome {
    let lab = lab()?;
    let expected = seeded(&lab, 1)?;
    let key = user_key(1);
    for (call, trap) in [
        ("its first look at the cache", Trap::after_look(&key)),
        ("its lease request", Trap::before_lease(&key)),
        ("its fill", Trap::before_fill(&key)),
    ] {
        lab.cache.invalidate(&key).map_err(setup)?;
        lab.hooks().fail_next(trap);
        let read = call_fn(&lab, a)?;
        ensure(matches!(&read, Ok(Some(u)) if *u == expected), || {
            fail(
                format!(
                    "with Redis failing {call} (once, injected by the grader), get_user_profile_leased(user 1) returned {}",
                    show(&read)
                ),
                "the user, read from Postgres",
                "every cache call can fail, not only the first: when any of them fails, read Postgres (and skip the fill)",
            )
        })?;
    }
    // Every lease request failing, the rest of Redis working: Postgres must
    // answer about as soon as it would for a dead holder, not after a wait
    // for a lease that cannot come.
    lab.cache.invalidate(&key).map_err(setup)?;
    lab.hooks().fail_every(Some(Trap::before_lease(&key)));
    let limit = LEASE_TTL + Duration::from_secs(1);
    let started = Instant::now();
    let read = spawn(&lab, "get_user_profile_leased(user 1)", move |lab| {
        (a.get_user_profile_leased)(lab, 1)
    })
    .wait(limit);
    lab.hooks().fail_every(None);
    let read = read.map_err(|failure| match failure {
        Failure::Hang { .. } => fail(
            format!("with every lease request failing (injected by the grader), a read had not returned after {limit:?}"),
            "the user, read from Postgres, within LEASE_TTL + 1 s",
            "a lease request that fails is not somebody else holding the lease: Redis is in trouble, so read Postgres at once",
        ),
        other => other,
    })?;
    ensure(matches!(&read, Ok(Some(u)) if *u == expected), || {
        fail(
            format!(
                "with every lease request failing (injected by the grader), get_user_profile_leased(user 1) returned {} after {:?}",
                show(&read),
                started.elapsed()
            ),
            "the user, read from Postgres",
            "every cache call can fail, not only the first: when any of them fails, read Postgres (and skip the fill)",
        )
    })?;
    drop(lab);
    super::part1::existing_user_is_never_none_for(
        a.get_user_profile_leased,
        "get_user_profile_leased",
    )
}

fn call_fn(lab: &Arc<Lab>, a: Subject) -> std::result::Result<Result<Option<User>>, Failure> {
    call(lab, "get_user_profile_leased(user 1)", move |lab| {
        (a.get_user_profile_leased)(lab, 1)
    })
}

/// With every cache call failing, a leased read is served from Postgres.
pub fn redis_failing_read_uses_postgres(a: Subject) -> Outcome {
    let lab = lab()?;
    let expected = seeded(&lab, 1)?;
    lab.hooks().fail_cache(true);
    let read = call(&lab, "get_user_profile_leased(user 1)", move |lab| {
        (a.get_user_profile_leased)(lab, 1)
    })?;
    ensure(matches!(&read, Ok(Some(u)) if *u == expected), || {
        fail(
            format!(
                "with Redis failing, get_user_profile_leased(user 1) returned {}",
                show(&read)
            ),
            "the user, read from Postgres",
            "the cache is an optimisation: when a cache call fails, read Postgres and skip the fill",
        )
    })
}

/// With every cache call failing, a leased update still writes Postgres and
/// then returns `Err`, because the invalidation did not happen.
pub fn redis_failing_update_is_an_error(a: Subject) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 1)?;
    let plan = if before.plan == "free" { "pro" } else { "free" };
    lab.hooks().fail_cache(true);
    let done = call(
        &lab,
        format!("update_user_plan_leased(user 1, {plan:?})"),
        move |lab| (a.update_user_plan_leased)(lab, 1, plan),
    )?;
    lab.hooks().fail_cache(false);
    let stored_plan = seeded(&lab, 1)?.plan;
    ensure(stored_plan == plan, || {
        fail(
            format!("with Redis failing, Postgres kept plan {stored_plan:?}"),
            format!("the write to Postgres happens first, so it holds {plan:?}"),
            "write Postgres before touching the cache",
        )
    })?;
    ensure(done.is_err(), || {
        fail(
            "with Redis failing, update_user_plan_leased returned Ok",
            "Err: the invalidation failed, so the cache may still serve the old plan",
            "propagate the error of lab.cache.invalidate with `?`",
        )
    })
}

/// Several processes read one cold user at once: exactly 1 statement in all.
/// The herd processes are copies of this test binary, each running the same
/// answers' leased read (the grader's `main` serves them first thing: see
/// `herd::serve`).
pub fn herd_across_processes(a: Subject) -> Outcome {
    let lab = lab()?;
    // A single read first, in this process: an unfinished answer fails here
    // with its own message (such as its todo!()), at once. User 3, so that
    // user 1 stays cold for the herd.
    call_ok(
        &lab,
        "get_user_profile_leased(user 3)",
        move |lab| (a.get_user_profile_leased)(lab, 3),
        "a single leased read behaves like Part 1",
    )?;
    lab.db.reset_counters();
    let spec = herd::Spec {
        space: lab.space_name().expect("isolated").to_string(),
        answers: a.name.to_string(),
        read: Function::GetUserProfileLeased,
        user_id: 1,
        threads: THREADS_PER_PROCESS,
        slow_ms: SLOW.as_millis() as u64,
        bound_ms: BOUND.as_millis() as u64,
        timeline: super::herd_timeline(),
    };
    super::marks::watch_herd(1);
    let from = timeline::now_us().unwrap_or_default();
    let herd = herd::run(&spec, PROCESSES).map_err(Failure::Setup)?;
    super::marks::herd_ran(from, timeline::now_us().unwrap_or_default());
    let (statements, readers) = (herd.statements, herd.readers);
    if let Some(panic) = herd.panic {
        return Err(fail(
            format!("a reader in a herd process {panic}"),
            "every reader returns Ok or Err, and never panics",
            "pass labkit's errors on with `?` rather than unwrap() or expect()",
        ));
    }
    if let Some(wrong) = herd.wrong {
        return Err(fail(
            format!(
                "{} of {readers} readers across {PROCESSES} processes did not get user 1 (e.g. {wrong:?})",
                readers - herd.got,
            ),
            "every reader gets the user",
            "a waiter reads the value the lease holder filled",
        ));
    }
    ensure(statements == 1, || {
        fail(
            format!(
                "{statements} statements for {readers} cold reads of user 1 across {PROCESSES} processes"
            ),
            "exactly 1: a process-local lock cannot stop this herd, a lease can",
            "only the lease holder queries; the others wait for its fill instead of going to Postgres",
        )
    })
}

/// With every read of Postgres failing, a cold leased read is an `Err`:
/// `Ok(None)` would tell the caller (and, cached, every other reader) that
/// the user does not exist.
pub fn postgres_error_is_an_err(a: Subject) -> Outcome {
    super::part1::postgres_error_is_an_err_for(
        &lab()?,
        a.get_user_profile_leased,
        "get_user_profile_leased",
    )
}

/// A leased read while the leased update is parked before its write: once
/// the update has returned, nothing stale is cached and the next read has
/// the new plan (Part 1's check, on Part 3's functions).
pub fn read_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    super::part1::read_during_update_leaves_nothing_stale_for(super::part1::Functions {
        read: a.get_user_profile_leased,
        read_name: "get_user_profile_leased",
        update: a.update_user_plan_leased,
        update_name: "update_user_plan_leased",
        key_must_go: false,
    })
}

/// How many readers a promptness round releases at once.
const WAITERS: usize = 6;
/// How soon after the fill every waiting reader must have returned.
const PROMPT: Duration = Duration::from_millis(500);
/// How long a round waits for the lease holder's fill to reach its trap.
const HOLD_WAIT: Duration = Duration::from_secs(3);

/// While the lease holder is alive, the readers waiting for it get the
/// value within 500 ms of its fill, however long they had been waiting.
///
/// A herd of leased readers on a cold user; the holder's fill is parked, and
/// released right after a waiter has looked again and missed (its next look
/// is then a whole polling interval away), or, if nobody looks for a while,
/// after that while. Two rounds, on users 1 and 2. The first looks for a
/// waiter for 600 ms: a fixed interval P above 500 ms is caught by a look
/// within the round (the waiter then returns P after the fill) or, when P is
/// longer, by the release that came well before the waiters' next look. The
/// second holds the fill 1.2 s before it looks for a waiter (600 ms more):
/// by then a backoff without a cap looks again only after pauses longer than
/// 500 ms. Both stay inside the holder's LEASE_TTL, so its fill is never
/// refused.
pub fn waiters_get_the_value_promptly(a: Subject) -> Outcome {
    let lab = lab()?;
    // A single read first (user 3): an unfinished answer fails here with its
    // own message, once, rather than six times.
    call_ok(
        &lab,
        "get_user_profile_leased(user 3)",
        move |lab| (a.get_user_profile_leased)(lab, 3),
        "a single leased read behaves like Part 1",
    )?;
    waiters_round(&lab, a, 1, Duration::ZERO, Duration::from_millis(600))?;
    // Held 1.2 s first: waiters that back off without a cap (5, 10, 20 …
    // ms) look again only after long pauses by then.
    waiters_round(
        &lab,
        a,
        2,
        Duration::from_millis(1200),
        Duration::from_millis(600),
    )
}

/// What the conductor of a promptness round saw.
struct Released {
    /// When the holder's fill had been done (it came back within [`GRACE`]
    /// of its release, or the round has no `Released`).
    filled: Instant,
    /// How long the fill was held back.
    held: Duration,
    /// Whether a waiter had looked again (and missed) just before.
    after_a_look: bool,
}

fn waiters_round(
    lab: &Arc<Lab>,
    a: Subject,
    user_id: i32,
    min_hold: Duration,
    look_for: Duration,
) -> Outcome {
    let expected = seeded(lab, user_id)?;
    let key = user_key(user_id);
    let what = format!("get_user_profile_leased(user {user_id})");
    let hold = lab.hooks().park(Trap::before_fill(&key));
    let mut released = None;
    let limit = HOLD_WAIT + min_hold + look_for + Duration::from_secs(2);
    let results = readers(
        lab,
        &what,
        WAITERS,
        limit,
        move |lab| {
            let read = (a.get_user_profile_leased)(lab, user_id);
            (read, Instant::now())
        },
        || released = release_the_fill(lab, hold, &key, min_hold, look_for),
    )?;
    let Some(released) = released else {
        return Err(fail(
            format!(
                "{WAITERS} concurrent cold leased reads of user {user_id}: no fill of {key} within {HOLD_WAIT:?}"
            ),
            "the lease holder loads the row and fills the cache",
            "the reader that holds the lease loads the row and fills the cache with it (fill_with_lease)",
        ));
    };
    let wrong: Vec<String> = results
        .iter()
        .filter(|(r, _)| !matches!(r, Ok(Some(u)) if *u == expected))
        .map(|(r, _)| show(r))
        .collect();
    ensure(wrong.is_empty(), || {
        fail(
            format!(
                "{} of {WAITERS} concurrent cold leased reads of user {user_id} got {}",
                wrong.len(),
                wrong[0]
            ),
            "every reader gets the user",
            "a waiter reads the value the lease holder filled",
        )
    })?;
    let returned: Vec<Instant> = results.iter().map(|(_, at)| *at).collect();
    all_prompt(&returned, &released, &key)
}

/// The conductor of a promptness round: once the lease holder's fill of
/// `key` is parked on `hold`, holds it `min_hold`, then lets it go right
/// after a waiter has looked again and missed (or after `look_for`).
/// `None` if no fill came within [`HOLD_WAIT`], or it did not end in time.
fn release_the_fill(
    lab: &Lab,
    hold: Parked<'_>,
    key: &str,
    min_hold: Duration,
    look_for: Duration,
) -> Option<Released> {
    let hooks = lab.hooks();
    if !hold.wait(HOLD_WAIT) {
        return None;
    }
    let parked_at = Instant::now();
    // Holding a fill for a while is the arrangement itself, not a wait for
    // something to happen.
    std::thread::sleep(min_hold);
    // Only one trap is armed at a time, and letting a trap go lets every
    // earlier one go too: the look, then the fill's end.
    let look = hooks.park(Trap::after_look(key));
    let after_a_look = look.wait(look_for);
    let fill = hooks.park(Trap::after_fill(key));
    let held = parked_at.elapsed();
    drop(look); // lets the fill (and the waiter that looked) go on
    drop(hold);
    let filled_in_time = fill.wait(GRACE);
    let filled = Instant::now();
    drop(fill);
    filled_in_time.then_some(Released {
        filled,
        held,
        after_a_look,
    })
}

/// Fails unless all [`WAITERS`] readers returned (at the times given)
/// within [`PROMPT`] of the fill.
fn all_prompt(returned: &[Instant], released: &Released, key: &str) -> Outcome {
    let since_fill = |at: Instant| at.saturating_duration_since(released.filled);
    let late = returned
        .iter()
        .filter(|at| since_fill(**at) > PROMPT)
        .count()
        + (WAITERS - returned.len());
    let slowest = returned
        .iter()
        .map(|at| since_fill(*at))
        .max()
        .unwrap_or_default();
    ensure(late == 0, || {
        let held = if released.after_a_look {
            format!(
                "the grader held the lease holder's fill of {key} back for {:?}, and let it go just after a waiting reader had looked again and missed",
                in_ms(released.held)
            )
        } else {
            format!(
                "the grader held the lease holder's fill of {key} back for {:?} (no waiting reader looked again meanwhile)",
                in_ms(released.held)
            )
        };
        let slowest = if returned.len() < WAITERS {
            format!(
                "{} had not returned {:?} after it",
                WAITERS - returned.len(),
                in_ms(since_fill(Instant::now()))
            )
        } else {
            format!("the slowest returned {:?} after it", in_ms(slowest))
        };
        fail(
            format!(
                "{held}; {late} of {WAITERS} readers returned more than {PROMPT:?} after the fill ({slowest})"
            ),
            format!(
                "every waiting reader returns within {PROMPT:?} of the fill, while the holder is alive"
            ),
            "LEASE_TTL is how long a dead holder may cost, not how long to sleep between looks: while you wait for the holder, look again every few milliseconds (or back off, capped well under 500 ms)",
        )
    })
}

/// A duration to the millisecond, for messages.
fn in_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn leased(a: Subject) -> super::part1::Functions {
    super::part1::Functions {
        read: a.get_user_profile_leased,
        read_name: "get_user_profile_leased",
        update: a.update_user_plan_leased,
        update_name: "update_user_plan_leased",
        key_must_go: false,
    }
}

/// A hit that overlaps a leased update leaves nothing stale, as in Part 1.
pub fn hit_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    super::part1::hit_during_update_leaves_nothing_stale_for(leased(a))
}

/// Two updates that overlap leave nothing stale: an update that writes the
/// cache itself (refreshing it after the invalidation) is held just before
/// that write while a second update runs to the end; the first one's value
/// must not land over the second's. Updates that write no value are not
/// held, and pass.
pub fn overlapping_updates_leave_nothing_stale(a: Subject) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 2)?;
    let [first, second] = match before.plan.as_str() {
        "free" => ["pro", "enterprise"],
        "pro" => ["enterprise", "free"],
        _ => ["free", "pro"],
    };
    let key = user_key(2);
    let (held, earlier) = start_trapped(
        &lab,
        Trap::before_fill(&key),
        format!("update_user_plan_leased(user 2, {first:?})"),
        move |lab| (a.update_user_plan_leased)(lab, 2, first),
    );
    let Some(held) = held else {
        return ok(
            "update_user_plan_leased(user 2)",
            earlier.wait(BOUND)?,
            "a valid plan must be accepted",
        );
    };
    let later_name = format!("update_user_plan_leased(user 2, {second:?})");
    let mut later = spawn(&lab, later_name.clone(), move |lab| {
        (a.update_user_plan_leased)(lab, 2, second)
    });
    // The later update runs to its end while the earlier one is held, unless
    // the answer makes it wait for the earlier one (then it runs after it).
    let _ = later.finishes_within(Duration::from_secs(3));
    drop(held);
    ok(
        "update_user_plan_leased(user 2)",
        earlier.wait(BOUND)?,
        "a valid plan must be accepted",
    )?;
    ok(
        &later_name,
        later.wait(BOUND)?,
        "a valid plan must be accepted",
    )?;
    let stored_plan = seeded(&lab, 2)?.plan;
    let cached: Option<Option<User>> = lab.cache.get_json(&key).map_err(setup)?;
    let cached_plan = cached.flatten().map(|u| u.plan);
    ensure(
        cached_plan.as_ref().is_none_or(|p| *p == stored_plan),
        || {
            fail(
                format!(
                    "update_user_plan_leased(user 2, {first:?}) wrote user 2 into the cache; held just before that write while update_user_plan_leased(user 2, {second:?}) ran, it then cached plan {:?} although Postgres has {stored_plan:?}",
                    cached_plan.clone().unwrap_or_default()
                ),
                format!("{key} gone, or plan {stored_plan:?}"),
                "an update that writes the value it read into the cache races every other update: invalidate and let a reader fill it, or fill only through a lease (which the other update's invalidation revokes)",
            )
        },
    )
}

//! Part 2: single-flight. Concurrency is arranged, not hoped for: readers are
//! released together by a barrier, statements are slowed, and the leader is
//! held just before its fill (its row read, the cache still empty) until a
//! second statement shows up (a wrong answer) or a short grace period passes
//! (a right one).

use cache_aside_lab::labkit::testkit::Trap;
use cache_aside_lab::user_key;

use super::*;

pub const HERD: usize = 50;
/// How long the parked leader waits for a second statement. Only a correct
/// answer pays it; a wrong one sends its second statement at once.
const GRACE: Duration = Duration::from_secs(1);
/// The hold ends once no reader has looked at the cache for this long...
const QUIET: Duration = Duration::from_millis(300);
/// ... or after this long in any case (readers that poll never go quiet).
/// Well inside LEASE_TTL: a single-flight built on Part 3's lease must not
/// see its leader's lease expire while the grader holds the fill.
const HOLD_LIMIT: Duration = Duration::from_millis(1500);
const SLOW: Duration = Duration::from_millis(20);

/// One cold herd of `HERD` single-flight reads of user 1: (statements, results).
struct Herd {
    statements: u64,
    /// Whether two statements were ever in flight at once.
    concurrent: bool,
    /// Whether a second statement started before the leader's fill was
    /// sent, or while it was held: the lock was free before the cache was
    /// filled.
    during_fill: bool,
    /// Whether user 1 was cached after the herd.
    filled: bool,
    results: Vec<Result<Option<User>>>,
    expected: User,
}

/// How the leader's fill is treated while the herd waits for it.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// Held for the grace period, then let through.
    Held,
    /// Held, let through, then evicted at once, before anybody looked (as
    /// if Redis had dropped it, or it had expired): the waiters find nothing.
    Evicted,
    /// Held, let through, then evicted right after the first reader looked
    /// at it: that reader must not look again and trust the second look.
    EvictedAfterLook,
    /// Held, then refused by Redis (the leader's fill fails once).
    Refused,
}

fn cold_herd(a: Subject, fill: Fill) -> std::result::Result<Herd, Failure> {
    let lab = lab()?;
    let expected = seeded(&lab, 1)?;
    // A single read first: an unfinished answer fails here with its own
    // message, once, rather than fifty times.
    call_ok(
        &lab,
        "get_user_profile_singleflight(user 5)",
        move |lab| (a.get_user_profile_singleflight)(lab, 5),
        "a single read behaves like Part 1",
    )?;
    lab.hooks().slow_statements(SLOW);
    lab.db.reset_counters();
    lab.hooks().reset_peak();
    let base = lab.hooks().statements_started();
    let key = user_key(1);
    let held = lab.hooks().park(Trap::before_fill(&key));
    let during_fill = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hooks_lab, during, fill_key) = (lab.clone(), during_fill.clone(), key.clone());
    // With the fill held, one SELECT in all; once it is evicted, a correct
    // waiter may well query again.
    if fill == Fill::Held {
        super::marks::watch_herd(1);
    }
    let results = readers(
        &lab,
        "get_user_profile_singleflight(user 1)",
        HERD,
        BOUND,
        move |lab| (a.get_user_profile_singleflight)(lab, 1),
        move || {
            let during_the_hold = hold_the_fill(&hooks_lab, held, base, fill, &fill_key);
            during.store(during_the_hold, std::sync::atomic::Ordering::SeqCst);
        },
    )?;
    all_returned(&results, HERD, BOUND)?;
    Ok(Herd {
        statements: lab.db.query_count(),
        concurrent: lab.hooks().peak_in_flight() > 1,
        during_fill: during_fill.load(std::sync::atomic::Ordering::SeqCst),
        filled: cached(&lab, &key)?.0,
        results,
        expected,
    })
}

/// The cold herd's conductor: holds the leader's fill (for [`GRACE`], and
/// longer while readers still look, up to [`HOLD_LIMIT`]), then lets it go
/// as `fill` says. Whether a statement other than the leader's started
/// before the fill was let go (also when it started before any fill came).
fn hold_the_fill(lab: &Lab, held: Parked<'_>, base: u64, fill: Fill, key: &str) -> bool {
    let hooks = lab.hooks();
    // Until the leader is about to fill, or a second statement shows
    // that there is no single leader to hold (or none that fills).
    let deadline = Instant::now() + BOUND / 2;
    while Instant::now() < deadline
        && !held.wait(Duration::from_millis(10))
        && hooks.statements_started() < base + 2
    {}
    if !held.is_parked() {
        // Nothing reached the fill (the trap catches the first one), yet a
        // second statement started: the lock let a waiter query before the
        // cache was filled, however the threads were scheduled. (An answer
        // that never fills looks the same here; the judge asks `filled`
        // first.)
        return hooks.statements_started() >= base + 2;
    }
    // The leader has its row and the cache is still empty: any
    // statement but the leader's, started by now or during the hold,
    // found the lock free before the fill. The hold lasts GRACE, and
    // longer while readers are still looking at the cache (a waiter
    // that found the lock free looks once more, then queries; on a
    // busy machine that takes a while), up to HOLD_LIMIT.
    let parked_at = Instant::now();
    let mut last_look = (hooks.looks(), parked_at);
    while hooks.statements_started() < base + 2 && parked_at.elapsed() < HOLD_LIMIT {
        let looks = hooks.looks();
        if looks != last_look.0 {
            last_look = (looks, Instant::now());
        } else if parked_at.elapsed() >= GRACE && last_look.1.elapsed() >= QUIET {
            break;
        }
        hooks.wait_for_statements(base + 2, Duration::from_millis(20));
    }
    let during = hooks.statements_started() > base + 1;
    release_the_fill(lab, held, fill, key);
    during
}

/// Lets the held fill of `key` go, as `fill` says.
fn release_the_fill(lab: &Lab, held: Parked<'_>, fill: Fill, key: &str) {
    let hooks = lab.hooks();
    match fill {
        Fill::Held => {}
        Fill::Evicted => {
            let filled = hooks.park(Trap::after_fill(key));
            drop(held);
            if filled.wait(BOUND / 2) {
                let _ = evict(lab, key);
            }
        }
        Fill::EvictedAfterLook => {
            let filled = hooks.park(Trap::after_fill(key));
            drop(held);
            if filled.wait(BOUND / 2) {
                // The next look at the entry (a waiter's) finds it,
                // and then it is gone.
                let looked = hooks.park(Trap::after_look(key));
                drop(filled);
                if looked.wait(BOUND / 2) {
                    let _ = evict(lab, key);
                }
            }
        }
        Fill::Refused => {
            hooks.fail_next(Trap::before_fill(key));
            drop(held);
        }
    }
}

/// A single cold read, a hit and a missing user behave as in Part 1.
pub fn single_reads_behave_like_part1(a: Subject) -> Outcome {
    let lab = lab()?;
    let expected = seeded(&lab, 4)?;
    let got = call_ok(
        &lab,
        "get_user_profile_singleflight(user 4)",
        move |lab| (a.get_user_profile_singleflight)(lab, 4),
        "a single read behaves like Part 1",
    )?;
    ensure(got.as_ref() == Some(&expected), || {
        fail(
            format!("a cold read of user 4 returned {got:?}"),
            format!("Some({expected:?})"),
            "load the row on a miss",
        )
    })?;
    let key = user_key(4);
    let (present, ttl) = cached(&lab, &key)?;
    ensure(present, || {
        fail(
            format!("after a cold read, {key} is not cached"),
            "the read fills the cache",
            "the reader that loads the user must also fill the cache",
        )
    })?;
    ensure(ttl_fits_cache_ttl(ttl), || {
        fail(
            format!("{key} was cached with TTL {ttl:?} (None = never expires)"),
            cache_ttl_range(),
            "fill with CACHE_TTL, as in Part 1",
        )
    })?;
    let before = lab.db.query_count();
    call_ok(
        &lab,
        "get_user_profile_singleflight(user 4)",
        move |lab| (a.get_user_profile_singleflight)(lab, 4),
        "a hit returns the cached user",
    )?;
    ensure(lab.db.query_count() == before, || {
        fail(
            format!("{} statements for a hit", lab.db.query_count() - before),
            "a hit sends 0 statements",
            "check the cache before taking the lock",
        )
    })?;
    let missing = call(
        &lab,
        "get_user_profile_singleflight(user 999)",
        move |lab| (a.get_user_profile_singleflight)(lab, 999),
    )?;
    ensure(matches!(missing, Ok(None)), || {
        fail(
            format!("user 999 read as {}", show(&missing)),
            "Ok(None)",
            "return None when there is no row",
        )
    })?;
    super::part1::postgres_error_is_an_err_for(
        &lab,
        a.get_user_profile_singleflight,
        "get_user_profile_singleflight",
    )?;
    super::part1::existing_user_is_never_none_for(
        a.get_user_profile_singleflight,
        "get_user_profile_singleflight",
    )
}

/// 50 concurrent cold reads of one user send exactly 1 statement.
pub fn herd_sends_one_statement(a: Subject) -> Outcome {
    let Herd {
        statements,
        concurrent,
        during_fill,
        filled,
        ..
    } = cold_herd(a, Fill::Held)?;
    ensure(statements != 0, || {
        fail(
            format!(
                "0 statements for {HERD} concurrent cold reads of user 1, although user 1 was not cached"
            ),
            "exactly 1",
            "neither a correct answer nor a classic mistake sends 0 here: the readers got their answer without going through lab.db (from a value kept in process memory? from a connection of their own?)",
        )
    })?;
    ensure(statements == 1, || {
        let (how, hint) = if concurrent {
            (
                "several at the same time",
                "a miss must take the key's lock (key_lock) and hold it until the cache is filled",
            )
        } else if !filled {
            (
                "one after another, and user:1 was never cached",
                "the reader that loads the user must also fill the cache, so that the waiters find it",
            )
        } else if during_fill {
            (
                "one while the first reader's fill was still on its way",
                "the key's lock was free while the first reader's fill was still on its way, so a waiter found the cache empty and queried: take the lock before the double-check and hold it until the cache is filled",
            )
        } else {
            (
                "one after another",
                "the readers queued on the lock: once a waiter finally holds it, what should it look at before it queries Postgres?",
            )
        };
        fail(
            format!("{statements} statements for {HERD} concurrent cold reads of user 1, {how}"),
            "exactly 1",
            hint,
        )
    })
}

/// All 50 concurrent readers of a cold user get the user (waiters too).
pub fn herd_all_get_the_user(a: Subject) -> Outcome {
    all_get_the_user(a, Fill::Held)
}

/// All 50 get the user even when the leader's fill is gone by the time the
/// waiters look (evicted, expired); and when Redis refused it, no reader
/// reads the user as missing (the fill's error may be passed on).
pub fn herd_all_get_the_user_when_the_fill_is_gone(a: Subject) -> Outcome {
    all_get_the_user(a, Fill::Evicted)?;
    all_get_the_user(a, Fill::EvictedAfterLook)?;
    all_get_the_user(a, Fill::Refused)
}

fn all_get_the_user(a: Subject, fill: Fill) -> Outcome {
    let Herd {
        results, expected, ..
    } = cold_herd(a, fill)?;
    // A refused fill may fail a read (its error passed on), but never turns
    // the user into None.
    let wrong: Vec<&Result<Option<User>>> = results
        .iter()
        .filter(|r| match r {
            Ok(Some(u)) => *u != expected,
            Err(_) => fill != Fill::Refused,
            Ok(None) => true,
        })
        .collect();
    ensure(wrong.is_empty(), || match fill {
        Fill::Held => fail(
            format!(
                "{} of {HERD} concurrent readers got something else, e.g. {}",
                wrong.len(),
                show(wrong[0])
            ),
            format!("all {HERD} get user 1"),
            "a waiter that finds the cache filled returns that value; it never gives up with None",
        ),
        Fill::Evicted => fail(
            format!(
                "the first reader filled user:1, and the entry was evicted before the waiters looked; {} of {HERD} readers then got {}",
                wrong.len(),
                show(wrong[0])
            ),
            format!("all {HERD} get user 1: it exists, whatever happened to its cache entry"),
            "what a waiter finds in the cache after waiting may be nothing (the fill failed, or the entry expired or was evicted): then the user must still come from Postgres, never None",
        ),
        Fill::EvictedAfterLook => fail(
            format!(
                "the first reader filled user:1, and the entry was evicted right after a waiter first looked at it; {} of {HERD} readers then got {}",
                wrong.len(),
                show(wrong[0])
            ),
            format!("all {HERD} get user 1: it exists, whatever happened to its cache entry"),
            "an entry can vanish between two looks: read it once with get_json and act on what that call returned; when it has nothing, the user must still come from Postgres, never None",
        ),
        Fill::Refused => fail(
            format!(
                "Redis refused the first reader's fill of user:1 (injected by the grader); {} of {HERD} readers then got {}",
                wrong.len(),
                show(wrong[0])
            ),
            "every reader gets user 1 (or the fill's error): it exists".to_string(),
            "a fill that failed does not make the user missing: the reader that loaded it returns the row (or the error), and the others find nothing and load it themselves",
        ),
    })
}

/// While one key's fill is parked, a read of another key completes: the lock
/// is per key, not global.
pub fn other_keys_are_not_delayed(a: Subject) -> Outcome {
    let lab = lab()?;
    let (parked, slow) = start_parked(
        &lab,
        Trap::after_read(),
        "get_user_profile_singleflight(user 2)",
        move |lab| (a.get_user_profile_singleflight)(lab, 2),
        || {
            fail(
                "a cold read of user 2 sent no read to Postgres",
                "a cold read loads the row",
                "query on a miss",
            )
        },
    )?;
    // Many other keys (users 3 to 5, and missing ones up to 66, which take
    // the miss path too): a lock shared by a few keys, striped by id modulo
    // anything up to 64, say, holds up at least one of them.
    let mut others: Vec<(i32, Pending<Result<Option<User>>>)> = (3..=66)
        .map(|id| {
            let pending = spawn(
                &lab,
                format!("get_user_profile_singleflight(user {id})"),
                move |lab| (a.get_user_profile_singleflight)(lab, id),
            );
            (id, pending)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let delayed: Vec<i32> = others
        .iter_mut()
        .filter_map(|(id, pending)| {
            let left = deadline.saturating_duration_since(Instant::now());
            (!pending.finishes_within(left)).then_some(*id)
        })
        .collect();
    drop(parked);
    let mut results = Vec::new();
    for (id, pending) in others {
        results.push((id, pending.wait(BOUND)?));
    }
    ok(
        "get_user_profile_singleflight(user 2)",
        slow.wait(BOUND)?,
        "load the row on a miss",
    )?;
    ensure(delayed.is_empty(), || {
        fail(
            format!(
                "{} read(s) of other users (e.g. user {}) waited while user 2's fill was in flight",
                delayed.len(),
                delayed[0]
            ),
            "reads of other keys never wait for this one",
            "one lock per key (key_lock(&user_key(id))): a lock shared by several keys makes each miss wait for the slowest of them",
        )
    })?;
    for (id, result) in results {
        let right = if id <= 5 {
            matches!(&result, Ok(Some(u)) if u.id == id)
        } else {
            matches!(result, Ok(None))
        };
        ensure(right, || {
            fail(
                format!("the read of user {id} returned {}", show(&result)),
                if id <= 5 {
                    format!("user {id}")
                } else {
                    "Ok(None)".into()
                },
                "load the row on a miss",
            )
        })?;
    }
    Ok(())
}

/// A user created after a read found it missing is returned within
/// ABSENT_TTL, as in Part 1.
pub fn created_user_shows_up_within_absent_ttl(a: Subject) -> Outcome {
    super::part1::created_user_shows_up_within_absent_ttl_for(
        &lab()?,
        a.get_user_profile_singleflight,
        "get_user_profile_singleflight",
    )
}

/// The cache is shared: an update made by another process is seen by the
/// next single-flight read here, as in Part 1.
pub fn write_by_another_process_is_seen(a: Subject) -> Outcome {
    super::part1::write_by_another_process_is_seen_for(
        a,
        a.get_user_profile_singleflight,
        "get_user_profile_singleflight",
    )
}

/// A hit that overlaps an update leaves nothing stale, as in Part 1.
pub fn hit_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    super::part1::hit_during_update_leaves_nothing_stale_for(super::part1::Functions {
        read: a.get_user_profile_singleflight,
        read_name: "get_user_profile_singleflight",
        update: a.update_user_plan,
        update_name: "update_user_plan",
        key_must_go: true,
    })
}

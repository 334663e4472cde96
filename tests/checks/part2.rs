//! Part 2: single-flight. Concurrency is arranged, not hoped for: readers are
//! released together by a barrier, statements are slowed, and the leader is
//! parked right after its SELECT until a second statement shows up (a wrong
//! answer) or a short grace period passes (a right one).

use cache_aside_lab::labkit::testkit::Trap;
use cache_aside_lab::user_key;

use super::*;

pub const HERD: usize = 50;
/// How long the parked leader waits for a second statement. Only a correct
/// answer pays it; a wrong one sends its second statement at once.
const GRACE: Duration = Duration::from_secs(1);
const SLOW: Duration = Duration::from_millis(20);

/// One cold herd of `HERD` single-flight reads of user 1: (statements, results).
struct Herd {
    statements: u64,
    /// Whether two statements were ever in flight at once.
    concurrent: bool,
    /// Whether user 1 was cached after the herd.
    filled: bool,
    results: Vec<Result<Option<User>>>,
    expected: User,
}

fn cold_herd(a: Subject) -> std::result::Result<Herd, Failure> {
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
    let parked = lab.hooks().park(Trap::after_read());
    let hooks_lab = lab.clone();
    let results = readers(
        &lab,
        "get_user_profile_singleflight(user 1)",
        HERD,
        BOUND,
        move |lab| (a.get_user_profile_singleflight)(lab, 1),
        move || {
            if parked.wait(BOUND / 2) {
                hooks_lab.hooks().wait_for_statements(base + 2, GRACE);
            }
            drop(parked);
        },
    )?;
    all_returned(&results, HERD)?;
    Ok(Herd {
        statements: lab.db.query_count(),
        concurrent: lab.hooks().peak_in_flight() > 1,
        filled: cached(&lab, &user_key(1))?.0,
        results,
        expected,
    })
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
    ensure(cached(&lab, &key)?.0, || {
        fail(
            format!("after a cold read, {key} is not cached"),
            "the read fills the cache",
            "the reader that loads the user must also fill the cache",
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
    })
}

/// 50 concurrent cold reads of one user send exactly 1 statement.
pub fn herd_sends_one_statement(a: Subject) -> Outcome {
    let Herd {
        statements,
        concurrent,
        filled,
        ..
    } = cold_herd(a)?;
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
    let Herd {
        results, expected, ..
    } = cold_herd(a)?;
    let wrong: Vec<&Result<Option<User>>> = results
        .iter()
        .filter(|r| !matches!(r, Ok(Some(u)) if *u == expected))
        .collect();
    ensure(wrong.is_empty(), || {
        fail(
            format!(
                "{} of {HERD} concurrent readers got something else, e.g. {}",
                wrong.len(),
                show(wrong[0])
            ),
            format!("all {HERD} get user 1"),
            "a waiter that finds the cache filled returns that value; it never gives up with None",
        )
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
    let mut other = spawn(&lab, "get_user_profile_singleflight(user 3)", move |lab| {
        (a.get_user_profile_singleflight)(lab, 3)
    });
    let finished = other.finishes_within(Duration::from_secs(3));
    drop(parked);
    let other_result = other.wait(BOUND)?;
    ok(
        "get_user_profile_singleflight(user 2)",
        slow.wait(BOUND)?,
        "load the row on a miss",
    )?;
    ensure(finished, || {
        fail(
            "a read of user 3 waited while user 2's fill was in flight",
            "reads of other keys never wait for this one",
            "one lock per key (key_lock(&user_key(id))): a lock shared by every key makes each miss wait for the slowest",
        )
    })?;
    ensure(matches!(&other_result, Ok(Some(u)) if u.id == 3), || {
        fail(
            format!("the read of user 3 returned {}", show(&other_result)),
            "user 3",
            "load the row on a miss",
        )
    })
}

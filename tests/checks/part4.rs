//! Part 4 (optional): a read replica that lags. The lab's replica applies
//! every commit a fixed delay after the primary (`recovery_min_apply_delay`,
//! 300 ms by `scripts/services up --replica`), so "while the replica lags"
//! is a window the checks can rely on; each check also verifies, around the
//! reads it judges, that the replica really still had the old row then, and
//! tries again (a few times) if a loaded machine let the window pass.
//!
//! Never demanded: a marker in particular. An answer that compares the
//! replica's replay position with the write's is as good.

use cache_aside_lab::labkit::testkit::{DbExt, Trap};
use cache_aside_lab::{CACHE_TTL, MARKER_TTL, user_key};

use super::part1::{Functions, bad_plans_change_nothing, hostile_plans};
use super::*;

/// How often a scenario is tried again when the replica caught up before
/// the reads it was meant to judge (a heavily loaded machine).
const ATTEMPTS: usize = 3;

fn setup(e: cache_aside_lab::labkit::Error) -> Failure {
    Failure::Setup(e.to_string())
}

/// A fresh lab whose replica has the lab's schema (labkit waits for it on
/// the replica's first use), with both counters at 0.
fn replica_lab() -> std::result::Result<Arc<Lab>, Failure> {
    let lab = lab()?;
    lab.replica
        .query_opt("SELECT 1", &[])
        .map_err(|e| Failure::Setup(format!("the replica: {e}")))?;
    lab.replica.reset_counters();
    lab.db.reset_counters();
    Ok(lab)
}

/// User `id`'s plan as the replica has it right now (not counted).
fn replica_plan(lab: &Lab, id: i32) -> std::result::Result<Option<String>, Failure> {
    lab.replica
        .with_raw_client(|c| c.query_opt("SELECT plan FROM users WHERE id = $1", &[&id]))
        .map_err(setup)?
        .map(|row| row.map(|r| r.get(0)))
        .map_err(|e| Failure::Setup(format!("the replica: {e}")))
}

/// Waits (bounded) until the replica has user `id` on `plan`.
fn caught_up(lab: &Lab, id: i32, plan: &str) -> Outcome {
    let deadline = Instant::now() + BOUND;
    while replica_plan(lab, id)?.as_deref() != Some(plan) {
        if Instant::now() > deadline {
            return Err(Failure::Setup(format!(
                "the replica had not caught up with the primary {BOUND:?} after a write: is it streaming?"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn other_plan(plan: &str) -> &'static str {
    if plan == "enterprise" {
        "free"
    } else {
        "enterprise"
    }
}

fn read(a: Subject, id: i32) -> impl FnOnce(&Lab) -> Result<Option<User>> + Send + 'static {
    move |lab| (a.get_user_profile_replicated)(lab, id)
}

fn plan_of(result: &Option<User>) -> Option<&str> {
    result.as_ref().map(|u| u.plan.as_str())
}

/// One hint for "a read after the write got the replica's old row": with no
/// sign of the write, or with a sign that expires too soon, the observation
/// is the same (the sign may have expired before the very first read).
const HINT_TRUST: &str = "right after a write the replica lags: readers must be able to tell that this user was just written (something in Redis, where every process sees it, in place before the cached copy goes and lasting longer than the replica can lag), and read the primary meanwhile";

/// With no recent write, a cold read is served by the replica and filled.
pub fn cold_read_is_served_by_the_replica(a: Subject) -> Outcome {
    let lab = replica_lab()?;
    let expected = seeded(&lab, 1)?;
    let got = call_ok(
        &lab,
        "get_user_profile_replicated(user 1)",
        read(a, 1),
        "a user that exists is Ok(Some(user))",
    )?;
    ensure(got.as_ref() == Some(&expected), || {
        fail(
            format!("a cold read of user 1 returned {got:?}"),
            format!("Some({expected:?})"),
            "on a miss, load the row (User::from_row) from the replica or the primary",
        )
    })?;
    let (primary, replica) = (lab.db.query_count(), lab.replica.query_count());
    ensure(primary == 0 && replica >= 1, || {
        fail(
            format!(
                "a cold read of user 1, never written, sent {primary} statement(s) to the primary and {replica} to the replica"
            ),
            "0 to the primary and at least 1 to lab.replica: offloading reads is what the replica is for",
            if replica == 0 && primary == 0 {
                "the read reached neither database: a cold read must load the row"
            } else {
                "with no recent write of this user, the replica is up to date: read lab.replica"
            },
        )
    })?;
    let key = user_key(1);
    let (present, ttl) = cached(&lab, &key)?;
    ensure(
        present && ttl.is_some_and(|t| !t.is_zero() && t <= CACHE_TTL),
        || {
            fail(
                format!("after a cold read, {key} cached: {present}, TTL {ttl:?}"),
                "cached with a TTL in (0, CACHE_TTL]",
                "a miss fills the cache, as in Part 1",
            )
        },
    )
}

/// After an update returns, every read has the new plan while the replica
/// still has the old one (reads after an eviction, and hits), and once the
/// replica has caught up, nothing stale is cached.
pub fn reads_after_an_update_have_the_new_plan(a: Subject) -> Outcome {
    for attempt in 1..=ATTEMPTS {
        match lagging_reads(a)? {
            0 if attempt < ATTEMPTS => continue,
            0 => {
                return Err(Failure::Setup(format!(
                    "in {ATTEMPTS} tries, the replica had caught up before any read could be judged: is its recovery_min_apply_delay set (scripts/services up --replica sets 300 ms)? A loaded machine?"
                )));
            }
            _ => return Ok(()),
        }
    }
    Ok(())
}

/// One try: how many reads were judged while the replica still lagged.
fn lagging_reads(a: Subject) -> std::result::Result<usize, Failure> {
    let lab = replica_lab()?;
    let old = seeded(&lab, 1)?.plan;
    let plan = other_plan(&old);
    call_ok(
        &lab,
        "get_user_profile_replicated(user 1)",
        read(a, 1),
        "a cold read loads the row",
    )?;
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    call_ok(
        &lab,
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    let written = Instant::now();
    let key = user_key(1);
    let mut judged = 0;
    while Instant::now() < written + BOUND {
        let lagging = replica_plan(&lab, 1)?.as_deref() == Some(old.as_str());
        let primary_before = lab.db.query_count();
        let first = call_ok(
            &lab,
            "get_user_profile_replicated(user 1)",
            read(a, 1),
            HINT_TRUST,
        )?;
        let primary_read = lab.db.query_count() > primary_before;
        let second = call_ok(
            &lab,
            "get_user_profile_replicated(user 1)",
            read(a, 1),
            HINT_TRUST,
        )?;
        let still = replica_plan(&lab, 1)?.as_deref() == Some(old.as_str());
        // Once the update has returned, an old plan is wrong whenever it
        // is read; the lag only decides whether a right answer proved much.
        let after = written.elapsed().as_millis();
        let while_lagging = if still {
            format!(", while the replica still had {old:?}")
        } else {
            String::new()
        };
        ensure(plan_of(&first) == Some(plan), || {
            fail(
                format!(
                    "{after} ms after {updating} returned{while_lagging}, a read after an eviction returned {}",
                    show(&Ok(first.clone()))
                ),
                format!("plan {plan:?}: once the update has returned, no read has the old plan"),
                HINT_TRUST,
            )
        })?;
        ensure(plan_of(&second) == Some(plan), || {
            fail(
                format!(
                    "{after} ms after {updating} returned, a read that returned {plan:?} was followed by a hit on {}",
                    show(&Ok(second.clone()))
                ),
                format!("plan {plan:?} from the cache too"),
                if primary_read {
                    "the answer came from the primary, but the cache got the replica's row: cache what you return"
                } else {
                    "what the cache holds must be what the reader returned"
                },
            )
        })?;
        if !lagging {
            break;
        }
        // Judged only if the replica still had the old row after the reads.
        judged += usize::from(still);
        // As if Redis had evicted it: the next read is a miss again.
        lab.cache.delete(&key).map_err(setup)?;
    }
    caught_up(&lab, 1, plan)?;
    let cached: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    ensure(plan_of(&cached).is_none_or(|p| p == plan), || {
        fail(
            format!(
                "once the replica had caught up, {key} still held plan {:?}",
                plan_of(&cached).unwrap_or_default()
            ),
            format!("nothing stale cached: {plan:?} or no entry"),
            HINT_TRUST,
        )
    })?;
    Ok(judged)
}

/// A reader that misses right after the update removed the cached copy
/// (the update held there) leaves nothing stale once the update returns.
pub fn read_during_an_update_leaves_nothing_stale(a: Subject) -> Outcome {
    for attempt in 1..=ATTEMPTS {
        match read_during_update(a)? {
            Some(()) => return Ok(()),
            None if attempt < ATTEMPTS => continue,
            None => {
                return Err(Failure::Setup(format!(
                    "in {ATTEMPTS} tries, the replica had caught up before the reader ran: is its recovery_min_apply_delay set? A loaded machine?"
                )));
            }
        }
    }
    Ok(())
}

/// One try; `None` if it could not be judged (the replica caught up too
/// soon).
fn read_during_update(a: Subject) -> std::result::Result<Option<()>, Failure> {
    let lab = replica_lab()?;
    let old = seeded(&lab, 2)?.plan;
    let plan = other_plan(&old);
    call_ok(
        &lab,
        "get_user_profile_replicated(user 2)",
        read(a, 2),
        "a cold read loads the row",
    )?;
    let key = user_key(2);
    let updating = format!("update_user_plan_replicated(user 2, {plan:?})");
    let parked = lab.hooks().park(Trap::after_delete(&key));
    let mut writer = spawn(&lab, updating.clone(), move |lab| {
        (a.update_user_plan_replicated)(lab, 2, plan)
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut held = false;
    while Instant::now() < deadline {
        if parked.wait(Duration::from_millis(10)) {
            held = true;
            break;
        }
        if writer.finishes_within(Duration::ZERO) {
            break;
        }
    }
    let mut judged = true;
    if held {
        // The update has removed the cached copy and is held there; a
        // reader misses now, while the replica still lags.
        let during = call(&lab, "get_user_profile_replicated(user 2)", read(a, 2))?;
        ok(
            "get_user_profile_replicated(user 2) during the update",
            during,
            HINT_TRUST,
        )?;
        judged = replica_plan(&lab, 2)?.as_deref() == Some(old.as_str());
    }
    drop(parked);
    let done = writer.wait(BOUND)?;
    ok(&updating, done, "a valid plan must be accepted")?;
    caught_up(&lab, 2, plan)?;
    let cached: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    let after = call_ok(
        &lab,
        "get_user_profile_replicated(user 2)",
        read(a, 2),
        HINT_TRUST,
    )?;
    ensure(
        plan_of(&cached).is_none_or(|p| p == plan) && plan_of(&after) == Some(plan),
        || {
            fail(
                format!(
                    "a reader that missed right after the update removed {key} cached plan {:?}; once the replica had caught up, the next read returned {}",
                    plan_of(&cached).unwrap_or("(nothing)"),
                    show(&Ok(after.clone()))
                ),
                format!("plan {plan:?}, and nothing stale cached"),
                "the reader missed while the replica still lagged, found no sign of the write, and cached the replica's old row: what must already be in place before the cached copy goes?",
            )
        },
    )?;
    // Nothing stale: it proved something only if the reader ran while the
    // replica lagged.
    Ok(judged.then_some(()))
}

/// At the latest MARKER_TTL after a write, cold reads go to the replica
/// again.
pub fn reads_return_to_the_replica(a: Subject) -> Outcome {
    let lab = replica_lab()?;
    let old = seeded(&lab, 1)?.plan;
    let plan = other_plan(&old);
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    call_ok(
        &lab,
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    let written = Instant::now();
    let limit = MARKER_TTL + Duration::from_secs(1);
    let key = user_key(1);
    let (mut primary, mut replica) = (0, 0);
    while written.elapsed() < limit {
        lab.cache.delete(&key).map_err(setup)?;
        lab.db.reset_counters();
        lab.replica.reset_counters();
        let got = call_ok(
            &lab,
            "get_user_profile_replicated(user 1)",
            read(a, 1),
            HINT_TRUST,
        )?;
        (primary, replica) = (lab.db.query_count(), lab.replica.query_count());
        if primary == 0 && replica >= 1 {
            ensure(plan_of(&got) == Some(plan), || {
                fail(
                    format!(
                        "{} ms after {updating} returned, a read served by the replica returned {}",
                        written.elapsed().as_millis(),
                        show(&Ok(got.clone()))
                    ),
                    format!("plan {plan:?}"),
                    HINT_TRUST,
                )
            })?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(fail(
        format!(
            "{limit:?} after {updating} returned, a cold read of user 1 still sent {primary} statement(s) to the primary and {replica} to the replica"
        ),
        "at the latest MARKER_TTL after a write, cold reads are served by the replica again",
        "send reads to the primary only while the write is recent (MARKER_TTL at most): after that the replica is up to date, and offloads the primary",
    ))
}

/// Missing users read as `Ok(None)`, and bad plans change nothing, as in
/// Part 1.
pub fn missing_users_and_bad_plans(a: Subject) -> Outcome {
    let lab = replica_lab()?;
    for id in [999, 0, -1] {
        let got = call(
            &lab,
            format!("get_user_profile_replicated(user {id})"),
            read(a, id),
        )?;
        ensure(matches!(got, Ok(None)), || {
            fail(
                format!(
                    "get_user_profile_replicated(user {id}) returned {}",
                    show(&got)
                ),
                "a user that does not exist reads as Ok(None)",
                "return None when there is no row; never invent a placeholder user",
            )
        })?;
    }
    drop(lab);
    let f = Functions {
        read: a.get_user_profile_replicated,
        read_name: "get_user_profile_replicated",
        update: a.update_user_plan_replicated,
        update_name: "update_user_plan_replicated",
    };
    let mut plans = vec!["platinum"];
    plans.extend(hostile_plans());
    bad_plans_change_nothing(f, &plans)
}

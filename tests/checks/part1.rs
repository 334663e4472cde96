//! Part 1: cache-aside reads and invalidating writes.

use cache_aside_lab::labkit::testkit::{Function, Read, Trap, Update};
use cache_aside_lab::{ABSENT_TTL, user_key};

use super::*;

const HINT_FILL: &str = "a miss should leave the user in the cache: store what you read under user_key(id) with lab.cache.set_json";
const HINT_HIT: &str =
    "look in the cache first, and return what you find there without querying Postgres";

/// A cold read returns exactly the row Postgres has, and asks Postgres for
/// it with exactly one statement.
pub fn cold_read_returns_the_user(a: Subject) -> Outcome {
    let lab = lab()?;
    let expected = seeded(&lab, 1)?;
    let got = call_ok(
        &lab,
        "get_user_profile(user 1)",
        move |lab| (a.get_user_profile)(lab, 1),
        "a user that exists is Ok(Some(user))",
    )?;
    ensure(got.as_ref() == Some(&expected), || {
        fail(
            format!("a cold read of user 1 returned {got:?}"),
            format!("Some({expected:?}), the row in Postgres"),
            "select id, name, email and plan, and build the user with User::from_row",
        )
    })?;
    let statements = lab.db.query_count();
    ensure(statements >= 1, || {
        fail(
            "a cold read of user 1 sent 0 statements to Postgres",
            "on a miss the row must come from Postgres",
            "query with lab.db.query_opt when the cache has nothing",
        )
    })?;
    ensure(statements == 1, || {
        fail(
            format!("a cold read of user 1 sent {statements} statements to Postgres"),
            "exactly 1: one SELECT brings the whole row",
            "one query_opt that selects id, name, email and plan answers both \"does it exist?\" and \"what is it?\"",
        )
    })
}

/// A cold read leaves `user:{id}` in the cache with a TTL of the order of
/// CACHE_TTL (see [`ttl_fits_cache_ttl`]).
pub fn cold_read_fills_the_cache_with_a_ttl(a: Subject) -> Outcome {
    let lab = lab()?;
    let key = user_key(1);
    let what = "get_user_profile(user 1)";
    let (read, (present, ttl)) =
        read_and_look_at_the_fill(&lab, &key, what, move |lab| (a.get_user_profile)(lab, 1))?;
    ok(what, read, HINT_FILL)?;
    ensure(present, || {
        fail(
            format!("after a cold read of user 1, {key} is not in the cache"),
            format!("the read should leave {key} cached"),
            HINT_FILL,
        )
    })?;
    ensure(ttl_fits_cache_ttl(ttl), || {
        fail(
            format!("{key} was cached with TTL {ttl:?} (None = never expires)"),
            cache_ttl_range(),
            "pass CACHE_TTL to set_json: a TTL far above it serves stale data for long if an invalidation is ever lost, and one far below it (a wrong constant, or milliseconds for seconds) makes the cache miss most of the time",
        )
    })
}

/// A second read of the same user is a hit: 0 statements, same user.
pub fn second_read_is_a_hit(a: Subject) -> Outcome {
    let lab = lab()?;
    let first = call(&lab, "get_user_profile(user 1)", move |lab| {
        (a.get_user_profile)(lab, 1)
    })?;
    let first = ok("the first get_user_profile(user 1)", first, HINT_FILL)?;
    let before = lab.db.query_count();
    let second = call(&lab, "get_user_profile(user 1)", move |lab| {
        (a.get_user_profile)(lab, 1)
    })?;
    let second = ok("the second get_user_profile(user 1)", second, HINT_HIT)?;
    let sent = lab.db.query_count() - before;
    let filled = cached(&lab, &user_key(1))?.0;
    ensure(sent == 0, || {
        fail(
            format!("{} statements for 2 reads of user 1", before + sent),
            "the second read should be a cache hit (0 statements)",
            if filled { HINT_HIT } else { HINT_FILL },
        )
    })?;
    ensure(first == second, || {
        fail(
            format!("the second read returned {second:?}, the first {first:?}"),
            "a hit returns the same user",
            "cache the whole User and return it as it was read",
        )
    })
}

/// A user that does not exist reads as `Ok(None)`, whatever the id.
pub fn missing_user_is_none(a: Subject) -> Outcome {
    let lab = lab()?;
    for id in [999, 0, -1, i32::MAX, i32::MIN] {
        let got = call(&lab, format!("get_user_profile(user {id})"), move |lab| {
            (a.get_user_profile)(lab, id)
        })?;
        ensure(matches!(got, Ok(None)), || {
            fail(
                format!("get_user_profile(user {id}) returned {}", show(&got)),
                "a user that does not exist reads as Ok(None)",
                "return None when query_opt finds no row; never invent a placeholder user",
            )
        })?;
    }
    Ok(())
}

/// After `update_user_plan` returns, `user:{id}` is gone and the next read
/// returns the new plan.
pub fn update_invalidates(a: Subject) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 1)?;
    let plan = if before.plan == "enterprise" {
        "free"
    } else {
        "enterprise"
    };
    call_ok(
        &lab,
        "get_user_profile(user 1)",
        move |lab| (a.get_user_profile)(lab, 1),
        HINT_FILL,
    )?;
    call_ok(
        &lab,
        format!("update_user_plan(user 1, {plan:?})"),
        move |lab| (a.update_user_plan)(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    let key = user_key(1);
    let (present, _) = cached(&lab, &key)?;
    ensure(!present, || {
        fail(
            format!("{key} was still cached after update_user_plan(user 1, {plan:?}) returned"),
            format!("{key} is gone"),
            "after the write, the cached copy must go: remove the user's key (and do not overwrite it with a new value)",
        )
    })?;
    let after = call_ok(
        &lab,
        "get_user_profile(user 1)",
        move |lab| (a.get_user_profile)(lab, 1),
        HINT_FILL,
    )?;
    ensure(
        after.as_ref().map(|u| u.plan.as_str()) == Some(plan),
        || {
            fail(
                format!(
                    "after update_user_plan(user 1, {plan:?}) the next read returned {after:?}"
                ),
                format!("plan {plan:?}"),
                "write the new plan to Postgres with lab.db.execute, then invalidate",
            )
        },
    )
}

/// A reader that misses while the UPDATE is parked caches the old row; after
/// the update returns, nothing stale may be left.
pub fn read_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    read_during_update_leaves_nothing_stale_for(Functions::part1(a))
}

/// [`read_during_update_leaves_nothing_stale`] for any part's read and update.
pub fn read_during_update_leaves_nothing_stale_for(f: Functions) -> Outcome {
    let lab = lab()?;
    let (read, update) = (f.read, f.update);
    let before = seeded(&lab, 2)?;
    let plan = if before.plan == "pro" {
        "enterprise"
    } else {
        "pro"
    };
    let (parked, writer) = start_parked(
        &lab,
        Trap::before_write(),
        format!("{}(user 2, {plan:?})", f.update_name),
        move |lab| update(lab, 2, plan),
        move || {
            fail(
                format!(
                    "{}(user 2, {plan:?}) sent no write to Postgres",
                    f.update_name
                ),
                "the new plan must be written to Postgres",
                "use lab.db.execute with an UPDATE",
            )
        },
    )?;
    // The write is parked before it runs. A reader now finds the cache empty
    // (cold, or invalidated too early) and caches the old row.
    let reading = format!("{}(user 2)", f.read_name);
    let got = call(&lab, reading.clone(), move |lab| read(lab, 2))?;
    ok(&format!("{reading} during the update"), got, HINT_FILL)?;
    drop(parked);
    let done = writer.wait(BOUND)?;
    ok(
        &format!("{}(user 2, {plan:?})", f.update_name),
        done,
        "a valid plan must be accepted",
    )?;
    let key = user_key(2);
    let (present, _) = cached(&lab, &key)?;
    let held: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    // A write-through update (SET the new value) leaves the key present with
    // the new plan: that is its own mistake, not an order.
    ensure(
        !f.key_must_go || held.as_ref().is_none_or(|u| u.plan != plan),
        || {
            fail(
                format!(
                    "after {}(user 2, {plan:?}) returned, {key} held the new plan",
                    f.update_name
                ),
                format!("{key} gone"),
                "the update wrote the new value into the cache (set_json) instead of removing the key: two racing updates can then leave the older plan cached; remove the key and let the next read fill it",
            )
        },
    )?;
    let after = call_ok(&lab, reading, move |lab| read(lab, 2), HINT_FILL)?;
    let stale = after.as_ref().map(|u| u.plan.as_str()) != Some(plan);
    let refilled = held.as_ref().is_some_and(|u| u.plan == plan);
    ensure((!present || (refilled && !f.key_must_go)) && !stale, || {
        fail(
            format!(
                "a reader that ran while the UPDATE was in flight cached plan {:?}; after {} returned, {key} was {} and the next read returned {after:?}",
                before.plan,
                f.update_name,
                if present { "still cached" } else { "absent" }
            ),
            format!("{key} gone, and plan {plan:?}"),
            "a reader that ran between your two steps found the cache empty and cached the old row: which order of UPDATE and invalidation leaves no such window?",
        )
    })
}

/// A hit that overlaps an update leaves nothing stale: a read that found
/// user 1 cached must not write that copy back after the update removed it
/// (to refresh its TTL, say). A hit that writes nothing is never held here.
pub fn hit_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    hit_during_update_leaves_nothing_stale_for(Functions::part1(a))
}

/// [`hit_during_update_leaves_nothing_stale`] for any part's read and
/// update.
pub fn hit_during_update_leaves_nothing_stale_for(f: Functions) -> Outcome {
    let (read, update) = (f.read, f.update);
    let lab = lab()?;
    let before = seeded(&lab, 1)?;
    let plan = if before.plan == "free" { "pro" } else { "free" };
    let reading = format!("{}(user 1)", f.read_name);
    call_ok(&lab, reading.clone(), move |lab| read(lab, 1), HINT_FILL)?;
    let key = user_key(1);
    let (held, reader) =
        start_trapped(&lab, Trap::before_fill(&key), reading.clone(), move |lab| {
            read(lab, 1)
        });
    let writes_on_a_hit = held.is_some();
    if writes_on_a_hit {
        let updating = format!("{}(user 1, {plan:?})", f.update_name);
        call_ok(
            &lab,
            updating,
            move |lab| update(lab, 1, plan),
            "a valid plan must be accepted",
        )?;
    }
    drop(held);
    ok(&reading, reader.wait(BOUND)?, HINT_HIT)?;
    if !writes_on_a_hit {
        return Ok(());
    }
    let held_now: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    ensure(held_now.as_ref().is_none_or(|u| u.plan == plan), || {
        fail(
            format!(
                "a read that hit user 1 wrote it back to the cache after {}(user 1, {plan:?}) had removed it: {key} holds plan {:?} again",
                f.update_name, before.plan
            ),
            format!("{key} gone (or {plan:?})"),
            "a hit has nothing to write: return what you found; writing it back (to refresh its TTL, say) can restore a copy that an update has just removed",
        )
    })
}

/// A read of an existing user is never `Ok(None)`, whatever happens to its
/// cache entry meanwhile: evicted right after the read first looked at it,
/// or its fill refused by Redis.
pub fn existing_user_is_never_none(a: Subject) -> Outcome {
    existing_user_is_never_none_for(a.get_user_profile, "get_user_profile")
}

/// [`existing_user_is_never_none`] for any part's read.
pub fn existing_user_is_never_none_for(read: Read, name: &str) -> Outcome {
    let lab = lab()?;
    let what = format!("{name}(user 1)");
    call_ok(&lab, what.clone(), move |lab| read(lab, 1), HINT_FILL)?;
    let key = user_key(1);
    // The premise is a cached user 1. A read may have left it uncached for
    // a reason of its own (a lease that expired on a loaded machine before
    // its fill): then the grader caches it, or the verdict would depend on
    // that race. (The fill itself is judged by other checks.)
    if !cached(&lab, &key)?.0 {
        let user = seeded(&lab, 1)?;
        lab.cache
            .set_json(&key, &user, cache_aside_lab::CACHE_TTL)
            .map_err(setup)?;
    }
    // Evicted right after the reader's first look at the entry (a GET that
    // found it, or an EXISTS that said yes).
    let (looked, reader) = start_trapped(&lab, Trap::after_look(&key), what.clone(), move |lab| {
        read(lab, 1)
    });
    if looked.is_some() {
        evict(&lab, &key)?;
    }
    drop(looked);
    let got = reader.wait(BOUND)?;
    ensure(matches!(&got, Ok(Some(u)) if u.id == 1), || {
        fail(
            format!(
                "user 1 was cached, and its entry was evicted right after {what} first looked at it; the read returned {}",
                show(&got)
            ),
            "user 1: it exists, whatever happens to its cache entry",
            "the cache can lose an entry at any moment (expiry, eviction, an update): read it once with get_json and act on what that call returned; when it has nothing, read Postgres",
        )
    })?;
    // Cold, and its fill refused once by Redis.
    evict(&lab, &key)?;
    lab.hooks().fail_next(Trap::before_fill(&key));
    let got = call(&lab, what.clone(), move |lab| read(lab, 1))?;
    ensure(!matches!(got, Ok(None)), || {
        fail(
            format!(
                "the fill of user:1 failed (injected by the grader) and {what} returned Ok(None)"
            ),
            "user 1 (or an Err): a user that exists is never Ok(None)",
            "a fill that failed does not make the user missing: return the row you read (or the error), never None",
        )
    })
}

/// A user that did not exist when a read missed it, and was created
/// afterwards, is returned within ABSENT_TTL: absence may be cached, but
/// only briefly.
pub fn created_user_shows_up_within_absent_ttl(a: Subject) -> Outcome {
    created_user_shows_up_within_absent_ttl_for(&lab()?, a.get_user_profile, "get_user_profile")
}

/// [`created_user_shows_up_within_absent_ttl`] for any part's read.
pub fn created_user_shows_up_within_absent_ttl_for(
    lab: &Arc<Lab>,
    read: Read,
    name: &str,
) -> Outcome {
    let what = format!("{name}(user 6)");
    let first = call(lab, what.clone(), move |lab| read(lab, 6))?;
    ensure(matches!(first, Ok(None)), || {
        fail(
            format!("{what} returned {}", show(&first)),
            "a user that does not exist reads as Ok(None)",
            "return None when query_opt finds no row; never invent a placeholder user",
        )
    })?;
    // Absence may be cached, under the user's key, for ABSENT_TTL at most:
    // a TTL above it (a jitter added to it, say) is too long from the start.
    let key = user_key(6);
    let (_, ttl) = cached(lab, &key)?;
    ensure(ttl.is_none_or(|t| t <= ABSENT_TTL), || {
        fail(
            format!("after {what} found no such user, {key} was cached with TTL {ttl:?}"),
            format!("absence cached for ABSENT_TTL ({ABSENT_TTL:?}) at most, or not at all"),
            "a missing user may be remembered, but for ABSENT_TTL at most (no jitter above it): a user created meanwhile must show up by then",
        )
    })?;
    lab.db
        .execute(
            "INSERT INTO users (id, name, email, plan) VALUES (6, 'Fay', 'fay@example.com', 'pro')",
            &[],
        )
        .map_err(setup)?;
    let created = Instant::now();
    // Slack for a loaded machine; the bound itself is ABSENT_TTL.
    let limit = ABSENT_TTL + Duration::from_millis(500);
    loop {
        let got = call(lab, what.clone(), move |lab| read(lab, 6))?;
        match got {
            Ok(Some(user)) if user.id == 6 => return Ok(()),
            Ok(None) if created.elapsed() < limit => {
                // Waiting out a bound, not a race: a negative entry that
                // honours ABSENT_TTL expires within it.
                std::thread::sleep(Duration::from_millis(100));
            }
            other => {
                return Err(fail(
                    format!(
                        "user 6 was created after a read had found it missing; {} ms later, {what} still returned {}",
                        created.elapsed().as_millis(),
                        show(&other)
                    ),
                    format!("the new user within ABSENT_TTL ({ABSENT_TTL:?})"),
                    "a missing user may be remembered, but for ABSENT_TTL at most (cache it with ABSENT_TTL as its TTL), never for CACHE_TTL, and never in process memory",
                ));
            }
        }
    }
}

/// With every read of Postgres failing, a read is an `Err`: `Ok(None)`
/// would tell the caller that the user does not exist.
pub fn postgres_error_is_an_err(a: Subject) -> Outcome {
    postgres_error_is_an_err_for(&lab()?, a.get_user_profile, "get_user_profile")
}

/// [`postgres_error_is_an_err`] for any read of any part.
pub fn postgres_error_is_an_err_for(lab: &Arc<Lab>, read: Read, name: &str) -> Outcome {
    lab.hooks().fail_reads(true);
    let what = format!("{name}(user 1)");
    let got = call(lab, what.clone(), move |lab| read(lab, 1))?;
    lab.hooks().fail_reads(false);
    ensure(got.is_err(), || {
        fail(
            format!(
                "with every read of Postgres failing (injected by the grader) and user 1 not cached, {what} returned {}",
                show(&got)
            ),
            "Err: the user could not be read",
            if matches!(got, Ok(None)) {
                "Ok(None) says \"no such user\"; a failed query says nothing of the sort: pass its error on with `?` (never .ok(), unwrap_or or if let Ok)"
            } else {
                "a cold read has nothing to return but what Postgres says: pass its error on with `?`"
            },
        )
    })
}

/// When the invalidation after the write fails, the update says so: `Err`,
/// with Postgres already holding the new plan.
pub fn failed_invalidation_is_an_err(a: Subject) -> Outcome {
    failed_invalidation_is_an_err_for(a.update_user_plan, a.get_user_profile, "update_user_plan")
}

/// [`failed_invalidation_is_an_err`] for any part's update (and its read).
pub fn failed_invalidation_is_an_err_for(update: Update, read: Read, name: &str) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 1)?;
    let plan = if before.plan == "free" { "pro" } else { "free" };
    call_ok(&lab, "a read of user 1", move |lab| read(lab, 1), HINT_FILL)?;
    let updating = format!("{name}(user 1, {plan:?})");
    // Removals fail only once the write has been sent: an answer may also
    // remove the key before its write (a double delete), which then works.
    let (parked, writer) = start_parked(
        &lab,
        Trap::after_write(),
        updating.clone(),
        move |lab| update(lab, 1, plan),
        || {
            fail(
                format!("{updating} sent no write to Postgres"),
                "the new plan must be written to Postgres",
                "use lab.db.execute with an UPDATE",
            )
        },
    )?;
    lab.hooks().fail_removals(true);
    drop(parked);
    let done = writer.wait(BOUND)?;
    lab.hooks().fail_removals(false);
    let stored_plan = seeded(&lab, 1)?.plan;
    ensure(stored_plan == plan, || {
        fail(
            format!(
                "with removing keys failing, Postgres kept plan {stored_plan:?} after {updating}"
            ),
            format!("the write happens first, so Postgres holds {plan:?}"),
            "write Postgres first, then remove the cached copy",
        )
    })?;
    let attempted = lab.hooks().removals_failed() > 0;
    ensure(done.is_err() || !attempted, || {
        fail(
            format!(
                "{updating} returned Ok although removing user:1 from the cache failed (injected by the grader)"
            ),
            "Err: the cache may still serve the old plan, and the caller must know",
            "propagate the error of the removal with `?` instead of ignoring it",
        )
    })?;
    ensure(done.is_err(), || {
        fail(
            format!(
                "{updating} returned Ok, and removed nothing from the cache after its write to Postgres"
            ),
            "the cached copy is removed after the write (here that removal fails, and the update returns Err)",
            "write Postgres first, then remove the cached copy, and pass the removal's error on",
        )
    })?;
    // The caller retries, Redis works again: the plan in Postgres is already
    // the new one, and the stale copy must go all the same.
    call_ok(
        &lab,
        format!("{updating}, tried again"),
        move |lab| update(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    let after = call_ok(&lab, "a read of user 1", move |lab| read(lab, 1), HINT_FILL)?;
    ensure(
        after.as_ref().map(|u| u.plan.as_str()) == Some(plan),
        || {
            fail(
                format!(
                    "{updating} failed to remove user:1, was tried again and returned Ok; then a read returned {after:?}"
                ),
                format!("plan {plan:?}: the retry removes the stale copy"),
                "remove the cached copy after every update, even one that changed no row: the copy may be stale from an earlier update whose removal failed",
            )
        },
    )
}

/// The cache is shared: a write made by another process (another instance
/// of the application) is seen by this process's next read.
pub fn write_by_another_process_is_seen(a: Subject) -> Outcome {
    write_by_another_process_is_seen_for(a, a.get_user_profile, "get_user_profile")
}

/// [`write_by_another_process_is_seen`] for any part's read (the update in
/// the other process is `update_user_plan`).
pub fn write_by_another_process_is_seen_for(a: Subject, read: Read, name: &str) -> Outcome {
    let lab = lab()?;
    let before = seeded(&lab, 1)?;
    let plan = if before.plan == "enterprise" {
        "free"
    } else {
        "enterprise"
    };
    let reading = format!("{name}(user 1)");
    call_ok(&lab, reading.clone(), move |lab| read(lab, 1), HINT_FILL)?;
    let updating = format!("update_user_plan(user 1, {plan:?})");
    let done = remote_result(
        &updating,
        elsewhere(&lab, a, Function::UpdateUserPlan, 1, plan)?,
    )?;
    ensure(done.is_ok(), || {
        fail(
            format!(
                "{updating} in another process returned Err({})",
                done.clone().unwrap_err()
            ),
            "Ok",
            "a valid plan must be accepted",
        )
    })?;
    let after = call_ok(&lab, reading, move |lab| read(lab, 1), HINT_FILL)?;
    ensure(
        after.as_ref().map(|u| u.plan.as_str()) == Some(plan),
        || {
            fail(
                format!(
                    "another process ran {updating}; then {name}(user 1) in this process got {after:?}"
                ),
                format!("plan {plan:?}: every instance of the application shares one cache"),
                "a copy kept in this process's memory never hears of a write made by another process: keep cached users in Redis only (lab.cache)",
            )
        },
    )
}

/// A plan the CHECK constraint rejects is an `Err`, and the stored plan
/// survives, in Postgres and through the cache.
pub fn rejected_plan_is_an_error(a: Subject) -> Outcome {
    bad_plans_change_nothing(Functions::part1(a), &["platinum"])
}

/// Hostile plans (empty, 10 kB, NUL, quotes, SQL) are rejected or stored
/// verbatim, never executed: no other row changes.
pub fn hostile_plans_are_never_executed(a: Subject) -> Outcome {
    bad_plans_change_nothing(Functions::part1(a), &hostile_plans())
}

/// Plans that must never execute as SQL.
pub fn hostile_plans() -> Vec<&'static str> {
    let long = "x".repeat(10_000);
    let long: &'static str = Box::leak(long.into_boxed_str());
    vec![
        "",
        long,
        "pro\0",
        "O'Brien",
        "enterprise' --",
        "pro'; DROP TABLE users; --",
    ]
}

/// A read and an update of one part, with their names for messages.
#[derive(Clone, Copy)]
pub struct Functions {
    pub read: Read,
    pub read_name: &'static str,
    pub update: Update,
    pub update_name: &'static str,
    /// Whether the user's key must be gone once the update returns (Part
    /// 1), or may hold the new plan (Part 3's update may fill it again
    /// through a lease, like any reader).
    pub key_must_go: bool,
}

impl Functions {
    pub fn part1(a: Subject) -> Functions {
        Functions {
            read: a.get_user_profile,
            read_name: "get_user_profile",
            update: a.update_user_plan,
            update_name: "update_user_plan",
            key_must_go: true,
        }
    }
}

/// Each plan in `plans` is refused with an `Err` or stored verbatim, no
/// other row changes, and a read afterwards has what Postgres has.
pub fn bad_plans_change_nothing(f: Functions, plans: &[&'static str]) -> Outcome {
    let lab = lab()?;
    let everyone = |lab: &Lab| -> std::result::Result<Vec<Option<User>>, Failure> {
        (1..=5).map(|id| stored(lab, id)).collect()
    };
    let rows = everyone(&lab)?;
    let before = rows[2]
        .clone()
        .ok_or_else(|| Failure::Setup("seed.sql has no user 3".into()))?;
    for &plan in plans {
        let shown = if plan.len() > 40 {
            format!("a {} byte plan", plan.len())
        } else {
            format!("{plan:?}")
        };
        let (read, update) = (f.read, f.update);
        let reading = format!("{}(user 3)", f.read_name);
        call_ok(&lab, reading.clone(), move |lab| read(lab, 3), HINT_FILL)?;
        let updating = format!("{}(user 3, {shown})", f.update_name);
        let result = call(&lab, updating.clone(), move |lab| update(lab, 3, plan))?;
        let now = everyone(&lab)?;
        let stored_plan = now[2].as_ref().map(|u| u.plan.clone());
        ensure(
            now.iter()
                .zip(&rows)
                .enumerate()
                .all(|(i, (n, r))| i == 2 || n == r),
            || {
                fail(
                    format!("{updating} changed other users' rows"),
                    "only user 3 may change",
                    "pass the plan as a parameter ($1), never format! it into the SQL",
                )
            },
        )?;
        ensure(
            stored_plan.as_deref() == Some(before.plan.as_str())
                || stored_plan.as_deref() == Some(plan),
            || {
                fail(
                    format!("after {updating} Postgres holds plan {stored_plan:?}"),
                    format!("the plan verbatim, or the old {:?}", before.plan),
                    "pass the plan as a parameter ($1), never format! it into the SQL",
                )
            },
        )?;
        if stored_plan.as_deref() != Some(plan) {
            ensure(result.is_err(), || {
                fail(
                    format!("{updating} returned Ok, but Postgres refused it"),
                    "Err when the write fails",
                    "propagate lab.db.execute's error with `?` instead of ignoring it",
                )
            })?;
        }
        let after = call_ok(&lab, reading.clone(), move |lab| read(lab, 3), HINT_FILL)?;
        ensure(
            after.as_ref().map(|u| &u.plan) == stored_plan.as_ref(),
            || {
                fail(
                    format!("after {updating} failed, a read returned {after:?}"),
                    format!("the stored plan {stored_plan:?}"),
                    "touch the cache only after the write succeeded",
                )
            },
        )?;
    }
    Ok(())
}

//! Part 4 (optional): a read replica that lags. The lab's replica applies
//! every commit a fixed delay after the primary (`recovery_min_apply_delay`,
//! 300 ms by `scripts/services up --replica`), so "while the replica lags"
//! is a window the checks can rely on; each check also verifies, around the
//! reads it judges, that the replica really still had the old row then, and
//! tries again (a few times) if a loaded machine let the window pass.
//! Three checks make it lag longer: they pause its replay (`Pauser`: one
//! check at a time across processes, always resumed, by a later check if
//! the pauser died), for less than MARKER_TTL. What a read does once the
//! replica lags MARKER_TTL or more is beyond the promise: the checks that
//! read on after an update do not judge a read that ends that long after
//! the update began while the replica still lags (the others read within
//! moments of their update).
//!
//! Never demanded: a marker in particular. An answer that compares the
//! replica's replay position with the write's is as good. Nor a lease: a
//! check looks whether one is held only to choose between two hints.
//! Races are arranged with the hooks (a reader held before its replica read
//! or its fill, an update held before its write or after its invalidation)
//! and another process (an update made by another instance).

use cache_aside_lab::labkit::testkit::{self, CacheExt, DbExt, Function, Trap};
use cache_aside_lab::{MARKER_TTL, marker_key, user_key};

use super::part1::{
    Functions, bad_plans_change_nothing, failed_invalidation_is_an_err_for, hostile_plans,
    postgres_error_is_an_err_for,
};
use super::*;

/// How often a scenario is tried again when the replica caught up before
/// the reads it was meant to judge (a heavily loaded machine).
const ATTEMPTS: usize = 5;

fn setup(e: cache_aside_lab::labkit::Error) -> Failure {
    Failure::Setup(e.to_string())
}

/// A fresh lab whose replica has the lab's schema (labkit waits for it on
/// the replica's first use), with both counters at 0.
fn replica_lab() -> std::result::Result<Arc<Lab>, Failure> {
    let lab = lab()?;
    resume_an_abandoned_pause(&lab)?;
    lab.replica
        .query_opt("SELECT 1", &[])
        .map_err(|e| Failure::Setup(format!("the replica: {e}")))?;
    lab.replica.reset_counters();
    lab.db.reset_counters();
    Ok(lab)
}

/// How long [`Scenario::Paused`] holds the replica's replay: far longer
/// than its usual lag (300 ms), and short of MARKER_TTL by enough that no
/// check running meanwhile on the same replica sees it lag that long (they
/// do not judge reads beyond MARKER_TTL either).
const PAUSE: Duration = Duration::from_secs(2);

/// The session advisory lock, on the primary, that a check holds while it
/// may pause the replica's replay: one pauser at a time, in every process.
const PAUSER_LOCK: i64 = 0x6c61_6234_7061_7573;

/// How long a pauser waits for those before it (Postgres queues them in
/// order): with eight checks at a time, all pausers, seven holds of a few
/// seconds each; well under the harness's limit for a check.
const PAUSER_WAIT: &str = "40s";

/// A connection of its own (not the lab's pool: it must outlive a closed
/// lab, and hold a session lock), opened as labkit opens one (TLS as the
/// URL's sslmode asks, labkit's connect timeout and causes).
fn connect(url: &str, what: &str) -> std::result::Result<postgres::Client, Failure> {
    let mut client =
        testkit::raw_postgres(url).map_err(|e| Failure::Setup(format!("{what}: {e}")))?;
    client
        .batch_execute("SET application_name = 'cache-aside-lab grader'")
        .map_err(pg(what))?;
    Ok(client)
}

fn pg(what: &str) -> impl FnOnce(postgres::Error) -> Failure + '_ {
    move |e| Failure::Setup(format!("{what}: {e}"))
}

/// The right to pause the replica's replay, held by one check at a time
/// across processes: a session advisory lock on the primary, which goes
/// with its connection, so also when the process dies. Dropped, it resumes
/// the replay first (on an early return, a failure, a panic).
struct Pauser {
    /// Holds the lock; also asks the primary where its WAL ends.
    primary: postgres::Client,
    replica: postgres::Client,
    paused: bool,
}

impl Pauser {
    /// Waits (bounded, in turn) for the lock. A pause left by a pauser
    /// that died is resumed: nobody else may pause now.
    fn acquire() -> std::result::Result<Pauser, Failure> {
        let mut primary = connect(&testkit::database_url(), "the primary")?;
        primary
            .batch_execute(&format!("SET lock_timeout = '{PAUSER_WAIT}'"))
            .map_err(pg("the primary"))?;
        primary
            .execute("SELECT pg_advisory_lock($1)", &[&PAUSER_LOCK])
            .map_err(|e| {
                Failure::Setup(format!(
                    "the replica's replay is paused by other checks in turn, and this one waited {PAUSER_WAIT} for its turn: {e}"
                ))
            })?;
        primary
            .batch_execute("RESET lock_timeout")
            .map_err(pg("the primary"))?;
        let url = testkit::replica_url().map_err(Failure::Setup)?;
        let replica = connect(&url, "the replica")?;
        // As if it had paused it itself.
        let mut pauser = Pauser {
            primary,
            replica,
            paused: true,
        };
        pauser.resume()?;
        Ok(pauser)
    }

    /// Pauses the replica's replay: what it has not applied yet waits.
    fn pause(&mut self) -> Outcome {
        // Noted first: a pause requested halfway is resumed all the same.
        self.paused = true;
        super::grader_note("pauses the replica's replay: it lags until resumed");
        self.replica
            .execute("SELECT pg_wal_replay_pause()", &[])
            .map_err(pg("the replica could not pause its replay"))?;
        Ok(())
    }

    /// Resumes the replay, if it paused it (on a fresh connection if its
    /// own is gone), and waits (bounded) until the replica has replayed
    /// what the primary had then: the next pauser does not hold back what
    /// this one did, so no commit waits out two pauses.
    fn resume(&mut self) -> Outcome {
        if !std::mem::take(&mut self.paused) {
            return Ok(());
        }
        super::grader_note("resumes the replica's replay");
        let lsn: Option<String> = self
            .primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .ok()
            .map(|row| row.get(0));
        const RESUME: &str = "SELECT pg_wal_replay_resume()";
        if self.replica.execute(RESUME, &[]).is_err() {
            let url = testkit::replica_url().map_err(Failure::Setup)?;
            self.replica = connect(&url, "the replica")?;
            self.replica
                .execute(RESUME, &[])
                .map_err(pg("the replica could not resume its replay"))?;
        }
        let Some(lsn) = lsn else { return Ok(()) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let replayed = self
                .replica
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .map_err(pg("the replica"))?
                .get::<_, Option<bool>>(0);
            if replayed != Some(false) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Pauser {
    fn drop(&mut self) {
        // Then `primary` closes, and with it the lock: the next may go.
        let _ = self.resume();
    }
}

/// A replay left paused by a pauser that died (killed by the harness, or a
/// Ctrl-C) would stall every Part 4 check: resume it if no pauser holds the
/// lock.
fn resume_an_abandoned_pause(lab: &Lab) -> Outcome {
    let paused = lab
        .replica
        .with_raw_client(|c| c.query_one("SELECT pg_is_wal_replay_paused()", &[]))
        .map_err(setup)?
        .map_err(pg("the replica"))?
        .get::<_, bool>(0);
    if !paused {
        return Ok(());
    }
    let mut lock = connect(&testkit::database_url(), "the primary")?;
    let free: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&PAUSER_LOCK])
        .map_err(pg("the primary"))?
        .get(0);
    if free {
        lab.replica
            .with_raw_client(|c| c.execute("SELECT pg_wal_replay_resume()", &[]))
            .map_err(setup)?
            .map_err(pg("the replica could not resume its replay"))?;
    }
    Ok(())
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

/// A plan neither `a` nor `b`.
fn third_plan(a: &str, b: &str) -> &'static str {
    ["free", "pro", "enterprise"]
        .into_iter()
        .find(|p| *p != a && *p != b)
        .expect("three plans")
}

fn read(a: Subject, id: i32) -> impl FnOnce(&Lab) -> Result<Option<User>> + Send + 'static {
    move |lab| (a.get_user_profile_replicated)(lab, id)
}

fn plan_of(result: &Option<User>) -> Option<&str> {
    result.as_ref().map(|u| u.plan.as_str())
}

/// A sign of the write looked for before the lease was taken: an update can
/// come and go in between, and the lease taken afterwards is not revoked.
const HINT_LOOK_AFTER_LEASE: &str = "the reader looked for a sign of a write, then took its lease; an update that came in between left its sign too late for that look, and revoked no lease (there was none yet): take the lease first, then look";

/// One hint for "a read after the write got the replica's old row": with no
/// sign of the write, or with a sign that expires too soon, the observation
/// is the same (the sign may have expired before the very first read).
const HINT_TRUST: &str = "right after a write the replica lags: readers must be able to tell that this user was just written (something in Redis, where every process sees it, in place before the cached copy goes and lasting longer than the replica can lag), and read the primary meanwhile";

/// The same observation when the write was made by another process (and
/// reads in the writer's own process were right).
const HINT_ELSEWHERE: &str = "the update ran in another process, and a read in this one got the replica's old row: a sign of the write kept in the writer's memory never reaches another process; leave it where every instance of the application looks";

/// The cached copy went before the write: a reader in between loaded the
/// old row again, wherever it read.
const HINT_ORDER: &str = "the cached copy was removed before the UPDATE had run, so a reader in between loaded the old row again (the primary had nothing newer yet) and cached it; no marker helps there: which order of write and invalidation leaves no such window?";

/// A reader that found no sign of the write filled the old row after the
/// update: the look came too early, and the fill was not refused.
const HINT_GUARD: &str = "the reader found no sign of a write, read the old row, and its fill landed after the update had removed the cached copy: a look beforehand cannot see a write that comes later (nor can a second look just before the fill), so a fill must be refused when the user was written in between; Part 3 has the tool";

/// The reader held a lease that the update left in place.
const HINT_REVOKE: &str = "the reader took the right to fill before the update, and the update left it in place, so the old row it read was filled after the update had returned: when the update removes the cached copy it must take that right away too, as in Part 3";

/// The user had not been read before the update: nothing of it cached.
const HINT_UNCACHED: &str = "nobody had read this user before the update, so nothing of it was cached, and a read right after the update got the replica's old row: a reader that misses after a write goes to the lagging replica all the same; leave the sign of the write whatever the cache holds";

/// A second update within the first one's MARKER_TTL left no sign of its
/// own: the first one's expired while the replica lagged behind the second.
const HINT_RENEW: &str = "a second update came shortly before the first one's MARKER_TTL ran out, and a read after that got the replica's old row, the plan of the first update: every write needs its sign for a whole MARKER_TTL from that write; set it (and its TTL) again on every update, never only if none is there";

/// The replica lagged longer than usual, though less than MARKER_TTL.
const HINT_LONG_LAG: &str = "the replica lagged longer than its usual 300 ms (the grader paused its replay for a while, as a long query or a burst of writes would), though less than MARKER_TTL, and a read got its old row: the sign of a write must last as long as the replica may lag, MARKER_TTL, not as long as it usually lags";

/// The update ignored a failed write of its sign.
const HINT_SIGN_FAILED: &str = "Redis refused the update's write of marker:user:1 (one call, injected by the grader), the update returned Ok anyway, and a read right after got the replica's old row: a sign that could not be left protects nobody; pass the error on before the UPDATE, so the caller knows the write did not happen";

/// A row read from the primary, cached for less than CACHE_TTL.
const HINT_FRESH_TTL: &str = "a row read from the primary right after a write is as fresh as any other: fill it for CACHE_TTL, like every fill (the next update removes it anyway); a short TTL there only sends the readers of a user just written back to the database";

/// A fill of the primary's row, right after a write, landed after the
/// next update: a plain fill, with no lease (or none that was revoked).
const HINT_FRESH_FILL: &str = "the reader read the primary (the user had just been written), and its fill landed after the next update had removed the cached copy: a row from the primary goes stale too, as soon as the next write lands; whichever database a miss reads, fill through the lease (fill_with_lease), so that an update in between refuses the fill";

/// A reader that did not get the right to fill read the lagging replica.
const HINT_HERD: &str = "readers that missed while another reader held the right to fill got the replica's old row: right after a write they cannot tell what that reader found; wait for its value, as in Part 3, rather than reading the lagging replica";

/// A look for the sign of the write that failed, read as "no write".
const HINT_FAILED_LOOK: &str = "the look for the sign of a write failed (Redis refused that one call), and the read went on as if there had been no write: a look that failed says nothing of the sort; return the error, or read the primary, but never trust the lagging replica then";

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
    ensure(present, || {
        fail(
            format!("after a cold read of user 1, {key} is not in the cache"),
            format!("{key} cached, with {}", cache_ttl_range()),
            "a miss fills the cache, as in Part 1",
        )
    })?;
    ensure(ttl_fits_cache_ttl(ttl), || {
        fail(
            format!("after a cold read, {key} was cached with TTL {ttl:?} (None = never expires)"),
            cache_ttl_range(),
            "fill with CACHE_TTL, as in Part 1: far above it serves stale data for long if an invalidation is ever lost, far below it (a wrong constant, or a unit slip) makes the cache miss most of the time",
        )
    })
}

/// Right after an update of user 2, a cold read of user 3 (never written)
/// is served by the replica: a sign of a write names the user written.
pub fn a_write_leaves_other_users_on_the_replica(a: Subject) -> Outcome {
    judged_once(
        "the read of user 3 (within MARKER_TTL of the update)",
        || {
            let lab = replica_lab()?;
            let plan = other_plan(&seeded(&lab, 2)?.plan);
            let expected = seeded(&lab, 3)?;
            let updating = format!("update_user_plan_replicated(user 2, {plan:?})");
            let began = Instant::now();
            call_ok(
                &lab,
                updating.clone(),
                move |lab| (a.update_user_plan_replicated)(lab, 2, plan),
                "a valid plan must be accepted",
            )?;
            lab.db.reset_counters();
            lab.replica.reset_counters();
            let got = call_ok(
                &lab,
                "get_user_profile_replicated(user 3)",
                read(a, 3),
                "a user that exists is Ok(Some(user))",
            )?;
            // Within MARKER_TTL of the update: a sign of it was still there.
            let in_time = began.elapsed() < MARKER_TTL;
            ensure(got.as_ref() == Some(&expected), || {
                fail(
                    format!("right after {updating}, a cold read of user 3 returned {got:?}"),
                    format!("Some({expected:?})"),
                    "on a miss, load the row (User::from_row) from the replica or the primary",
                )
            })?;
            let (primary, replica) = (lab.db.query_count(), lab.replica.query_count());
            ensure(primary == 0 && replica >= 1, || {
                fail(
                    format!(
                        "right after {updating} returned, a cold read of user 3, never written, sent {primary} statement(s) to the primary and {replica} to the replica"
                    ),
                    "0 to the primary and at least 1 to lab.replica: only the user just written may lag",
                    "a write of user 2 sent a read of user 3 to the primary: the sign of a write must name the user written (one per user, as user_key names one user), or every write anywhere takes the replica's load off for MARKER_TTL",
                )
            })?;
            Ok(in_time)
        },
    )
}

/// Tries `attempt` up to [`ATTEMPTS`] times, until one of them could be
/// judged (the replica still lagged when it mattered); a failure ends it at
/// once.
fn judged_once(
    what: &str,
    mut attempt: impl FnMut() -> std::result::Result<bool, Failure>,
) -> Outcome {
    for _ in 0..ATTEMPTS {
        if attempt()? {
            return Ok(());
        }
    }
    Err(Failure::Setup(format!(
        "in {ATTEMPTS} tries, the replica had caught up before {what} could be judged: is its recovery_min_apply_delay set (scripts/services up --replica sets 300 ms)? A loaded machine?"
    )))
}

/// What happens before the reads of a lagging-reads scenario.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// User 1 read (so cached), then updated in this process.
    Here,
    /// The same, with the update made by another process: another instance
    /// of the application.
    Elsewhere,
    /// User 1 updated with nothing of it cached: nobody had read it.
    Uncached,
    /// Two updates, the second [`SECOND_AFTER`] after the first began,
    /// with the replica's replay paused from just before the second until
    /// a read after the first one's MARKER_TTL (from its return) has been
    /// judged: a sign left by the first has expired by then, and the
    /// replica still lags behind the second.
    SecondUpdate,
    /// One update, with the replica's replay paused from just before it,
    /// for [`PAUSE`]: it lags far longer than usual, though less than
    /// MARKER_TTL.
    Paused,
    /// One update during which Redis refuses the first write of
    /// `marker_key(1)`, if the update makes one: it returns the error, or
    /// every read is as fresh as ever.
    MarkerSetFails,
}

/// When the second update of [`Scenario::SecondUpdate`] starts, after the
/// first began: a sign of the first write that lasts MARKER_TTL (set once
/// the first update had begun) is still there when the second returns,
/// even on a loaded machine.
const SECOND_AFTER: Duration = Duration::from_millis(MARKER_TTL.as_millis() as u64 - 500);

/// After an update returns, every read has the new plan while the replica
/// still has the old one (reads after an eviction, and hits), a read that
/// fills leaves a TTL of the order of CACHE_TTL, and once the replica has
/// caught up, nothing stale is cached.
pub fn reads_after_an_update_have_the_new_plan(a: Subject) -> Outcome {
    judged_once("any read", || lagging_reads(a, Scenario::Here, None))
}

/// The same when the update ran in another process: what tells a reader
/// that the user was just written must reach every process.
pub fn reads_after_an_update_elsewhere_have_the_new_plan(a: Subject) -> Outcome {
    judged_once("any read", || lagging_reads(a, Scenario::Elsewhere, None))
}

/// The same for a user that nobody had read before the update: the sign of
/// the write does not depend on what the cache held.
pub fn reads_after_an_update_of_an_uncached_user_have_the_new_plan(a: Subject) -> Outcome {
    judged_once("any read", || lagging_reads(a, Scenario::Uncached, None))
}

/// The same after a second update that came shortly before the first one's
/// MARKER_TTL ran out: every write is covered for its own MARKER_TTL.
pub fn reads_after_a_second_update_have_the_newest_plan(a: Subject) -> Outcome {
    // One turn for every try: the other pausers wait for it in order.
    let mut pauser = Pauser::acquire()?;
    judged_once(
        "a read after the first update's MARKER_TTL (the second update returned within it)",
        || lagging_reads(a, Scenario::SecondUpdate, Some(&mut pauser)),
    )
}

/// The same while the replica lags far longer than usual (its replay
/// paused by the grader), though less than MARKER_TTL.
pub fn reads_while_the_replica_lags_long_have_the_new_plan(a: Subject) -> Outcome {
    let mut pauser = Pauser::acquire()?;
    judged_once("a read a second into the pause", || {
        lagging_reads(a, Scenario::Paused, Some(&mut pauser))
    })
}

/// What one lagging-reads try has arranged by the time its reads start.
struct Window {
    lab: Arc<Lab>,
    a: Subject,
    scenario: Scenario,
    /// The plan the replica lags with, and the one the (last) update wrote.
    old: String,
    plan: &'static str,
    /// `update_user_plan_replicated(user 1, plan)`, as messages say it.
    updating: String,
    /// The first of two updates: its plan, and when it began.
    first_update: Option<(&'static str, Instant)>,
    /// Reads that start before this are judged, but prove nothing.
    proves_from: Option<Instant>,
    /// When the replay paused before the (last) update resumes.
    resume_at: Option<Instant>,
    /// When the (last) update began, and when it returned.
    began: Instant,
    written: Instant,
    hint: &'static str,
    /// Where the update ran, or what came before it, as messages say it.
    there: String,
}

/// One try: whether any read was judged while the replica still lagged
/// (and could prove what the scenario is about). `pauser`: the right to
/// pause the replica's replay, for the scenarios that do.
fn lagging_reads(
    a: Subject,
    scenario: Scenario,
    mut pauser: Option<&mut Pauser>,
) -> std::result::Result<bool, Failure> {
    let lab = replica_lab()?;
    let Some(w) = update_for_lagging_reads(lab, a, scenario, pauser.as_deref_mut())? else {
        // The update said that it failed: nothing more is promised.
        return Ok(true);
    };
    // The second update returned while a sign of the first (lasting
    // MARKER_TTL from when it began, at the earliest) was still there.
    let arranged = w
        .first_update
        .is_none_or(|(_, began)| w.written < began + MARKER_TTL);
    let (judged, beyond) = w.reads(pauser.as_deref_mut())?;
    if let Some(pauser) = pauser {
        pauser.resume()?;
    }
    caught_up(&w.lab, 1, w.plan)?;
    if beyond {
        // A read beyond the promise may have cached what it read.
        return Ok(arranged && judged > 0);
    }
    let key = user_key(1);
    let cached: Option<User> = w.lab.cache.get_json(&key).map_err(setup)?;
    ensure(plan_of(&cached).is_none_or(|p| p == w.plan), || {
        fail(
            format!(
                "once the replica had caught up, {key} still held plan {:?}",
                plan_of(&cached).unwrap_or_default()
            ),
            format!("nothing stale cached: {:?} or no entry", w.plan),
            w.hint,
        )
    })?;
    Ok(arranged && judged > 0)
}

/// Everything before the reads of a lagging-reads try: user 1 read (unless
/// [`Scenario::Uncached`]), the first of two updates if there are two, the
/// replay paused if it is to be, and the update. `None` if the update
/// returned an error where it may ([`Scenario::MarkerSetFails`]).
fn update_for_lagging_reads(
    lab: Arc<Lab>,
    a: Subject,
    scenario: Scenario,
    pauser: Option<&mut Pauser>,
) -> std::result::Result<Option<Window>, Failure> {
    let seeded_plan = seeded(&lab, 1)?.plan;
    if scenario != Scenario::Uncached {
        call_ok(
            &lab,
            "get_user_profile_replicated(user 1)",
            read(a, 1),
            "a cold read loads the row",
        )?;
    }
    let (mut old, mut plan) = (seeded_plan.clone(), other_plan(&seeded_plan));
    let (mut proves_from, mut resume_at, mut first_update) = (None, None, None);
    if scenario == Scenario::SecondUpdate {
        let (earlier, began, returned) = first_of_two_updates(&lab, a, plan)?;
        proves_from = Some(returned + MARKER_TTL);
        resume_at = Some(returned + MARKER_TTL + Duration::from_secs(1));
        first_update = Some((earlier, began));
        old = earlier.to_string();
        plan = third_plan(&seeded_plan, earlier);
    }
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    if let Some(pauser) = pauser {
        // Before the write: the replica cannot have it until the resume.
        pauser.pause()?;
        resume_at = resume_at.or(Some(Instant::now() + PAUSE));
    }
    let began = Instant::now();
    if !the_update(&lab, a, scenario, plan, &updating)? {
        return Ok(None);
    }
    let written = Instant::now();
    if scenario == Scenario::Paused {
        // Proof of a long lag: a read a good while into the pause.
        proves_from = Some(written + PAUSE / 2);
    }
    let (hint, there) = scenario_words(scenario, first_update, began);
    Ok(Some(Window {
        lab,
        a,
        scenario,
        old,
        plan,
        updating,
        first_update,
        proves_from,
        resume_at,
        began,
        written,
        hint,
        there,
    }))
}

/// [`Scenario::SecondUpdate`]'s first update, to `earlier`, and the wait
/// until shortly before its MARKER_TTL runs out: (`earlier`, when it began,
/// when it returned).
fn first_of_two_updates(
    lab: &Arc<Lab>,
    a: Subject,
    earlier: &'static str,
) -> std::result::Result<(&'static str, Instant, Instant), Failure> {
    let began = Instant::now();
    call_ok(
        lab,
        format!("update_user_plan_replicated(user 1, {earlier:?})"),
        move |lab| (a.update_user_plan_replicated)(lab, 1, earlier),
        "a valid plan must be accepted",
    )?;
    let returned = Instant::now();
    caught_up(lab, 1, earlier)?;
    // An arrangement of time, not a race: the second update comes
    // shortly before the first one's MARKER_TTL runs out, and the
    // replica lags behind it until a while after that.
    std::thread::sleep((began + SECOND_AFTER).saturating_duration_since(Instant::now()));
    Ok((earlier, began, returned))
}

/// The update of user 1 to `plan`, as `scenario` makes it; false if it
/// returned an error where it may.
fn the_update(
    lab: &Arc<Lab>,
    a: Subject,
    scenario: Scenario,
    plan: &'static str,
    updating: &str,
) -> std::result::Result<bool, Failure> {
    let update = move |lab: &Lab| (a.update_user_plan_replicated)(lab, 1, plan);
    match scenario {
        Scenario::Elsewhere => {
            let outcome = elsewhere(lab, a, Function::UpdateUserPlanReplicated, 1, plan)?;
            if let Err(e) = remote_result(updating, outcome)? {
                return Err(fail(
                    format!("{updating} in another process returned Err({e})"),
                    "Ok",
                    "a valid plan must be accepted",
                ));
            }
        }
        Scenario::MarkerSetFails => {
            // Every write of the sign fails while the update runs (a second
            // write of it, after the UPDATE, would otherwise cover for the
            // first).
            lab.hooks()
                .fail_every(Some(Trap::before_fill(&marker_key(1))));
            let done = call(lab, updating, update);
            lab.hooks().fail_every(None);
            if done?.is_err() {
                return Ok(false);
            }
        }
        _ => {
            call_ok(lab, updating, update, "a valid plan must be accepted")?;
        }
    }
    Ok(true)
}

/// A scenario's hint, and what its messages add after "returned".
fn scenario_words(
    scenario: Scenario,
    first_update: Option<(&'static str, Instant)>,
    began: Instant,
) -> (&'static str, String) {
    match scenario {
        Scenario::Here => (HINT_TRUST, String::new()),
        Scenario::Elsewhere => (HINT_ELSEWHERE, " in another process".to_string()),
        Scenario::Uncached => (
            HINT_UNCACHED,
            " (nobody had read user 1 before it: nothing of it was cached)".to_string(),
        ),
        Scenario::SecondUpdate => {
            let (earlier, first_began) = first_update.expect("two updates");
            (
                HINT_TRUST,
                format!(
                    " ({} ms after update_user_plan_replicated(user 1, {earlier:?}) had begun)",
                    (began - first_began).as_millis()
                ),
            )
        }
        Scenario::Paused => (
            HINT_LONG_LAG,
            " (then the grader paused the replica's replay)".to_string(),
        ),
        Scenario::MarkerSetFails => (
            HINT_SIGN_FAILED,
            " (Redis had refused one of its calls, the write of marker:user:1)".to_string(),
        ),
    }
}

/// What one read after an eviction, and the hit after it, saw.
struct Look {
    /// When the first read started, and when it returned.
    started: Instant,
    done: Instant,
    first: Option<User>,
    second: Option<User>,
    /// The replica still had the old row after the first read.
    still: bool,
    /// Milliseconds from the update's return to the first read's.
    after: u128,
    /// The first read sent a statement to the primary.
    primary_read: bool,
    /// The entry after the first read: there, and its TTL.
    present: bool,
    ttl: Option<Duration>,
}

impl Window {
    /// Reads user 1 after an eviction, then again (a hit), judging both,
    /// until the replica has caught up or [`BOUND`] has passed: how many
    /// reads proved something, and whether they ran beyond the promise.
    fn reads(
        &self,
        mut pauser: Option<&mut Pauser>,
    ) -> std::result::Result<(usize, bool), Failure> {
        // The promise covers a replica that lags up to MARKER_TTL: a read
        // that ends later than that after the update began is not judged
        // (another check may have paused the replica, or the machine be
        // very loaded).
        let covered = self.began + MARKER_TTL;
        let mut judged = 0;
        while Instant::now() < self.written + BOUND {
            let look = self.look()?;
            if Instant::now() >= covered {
                return Ok((judged, true));
            }
            self.judge(&look)?;
            // Judged only if the replica still had the old row after the read.
            if !look.still {
                break;
            }
            if self.proves_from.is_none_or(|from| look.started >= from) {
                judged += 1;
            }
            if let Some(pauser) = pauser.as_deref_mut() {
                // After two updates, one read that proves something is enough.
                let proved = self.scenario == Scenario::SecondUpdate && judged > 0;
                if proved || self.resume_at.is_some_and(|at| Instant::now() >= at) {
                    pauser.resume()?;
                } else {
                    // Many reads are not needed while it is paused.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            // As if Redis had evicted it: the next read is a miss again.
            self.lab.cache.delete(&user_key(1)).map_err(setup)?;
        }
        Ok((judged, false))
    }

    /// One read after an eviction, and the hit after it.
    fn look(&self) -> std::result::Result<Look, Failure> {
        let lab = &self.lab;
        let started = Instant::now();
        let primary_before = lab.db.query_count();
        let reading = "get_user_profile_replicated(user 1)";
        let first = call_ok(lab, reading, read(self.a, 1), self.hint)?;
        let done = Instant::now();
        // Asked at once, so that a loaded machine costs as little of the
        // window as possible: the replica still had the old row after the
        // read, so it had it during the read (and during its fill).
        let still = replica_plan(lab, 1)?.as_deref() == Some(self.old.as_str());
        let after = self.written.elapsed().as_millis();
        let primary_read = lab.db.query_count() > primary_before;
        let (present, ttl) = cached(lab, &user_key(1))?;
        let second = call_ok(lab, reading, read(self.a, 1), self.hint)?;
        Ok(Look {
            started,
            done,
            first,
            second,
            still,
            after,
            primary_read,
            present,
            ttl,
        })
    }

    /// Both reads have the new plan, and a fill's TTL is CACHE_TTL's.
    fn judge(&self, look: &Look) -> Outcome {
        let Window {
            plan,
            updating,
            there,
            ..
        } = self;
        let (after, key) = (look.after, user_key(1));
        // A sign of the first write, lasting MARKER_TTL from when that
        // update began at the earliest, may have expired before this read
        // ended: a read that got the first update's plan is then about the
        // second update's sign.
        let hint = match self.first_update {
            Some((_, first_began)) if look.done >= first_began + MARKER_TTL => HINT_RENEW,
            _ => self.hint,
        };
        // Once the update has returned, an old plan is wrong whenever it
        // is read; the lag only decides whether a right answer proved much.
        let while_lagging = if look.still {
            format!(", while the replica still had {:?}", self.old)
        } else {
            String::new()
        };
        ensure(plan_of(&look.first) == Some(plan), || {
            fail(
                format!(
                    "{after} ms after {updating} returned{there}{while_lagging}, a read after an eviction returned {}",
                    show(&Ok(look.first.clone()))
                ),
                format!("plan {plan:?}: once the update has returned, no read has the old plan"),
                hint,
            )
        })?;
        ensure(plan_of(&look.second) == Some(plan), || {
            fail(
                format!(
                    "{after} ms after {updating} returned{there}, a read that returned {plan:?} was followed by a hit on {}",
                    show(&Ok(look.second.clone()))
                ),
                format!("plan {plan:?} from the cache too"),
                if look.primary_read {
                    "the answer came from the primary, but the cache got the replica's row: cache what you return"
                } else {
                    "what the cache holds must be what the reader returned"
                },
            )
        })?;
        ensure(!look.present || ttl_fits_cache_ttl(look.ttl), || {
            fail(
                format!(
                    "{after} ms after {updating} returned{there}, a read that returned {plan:?}{} left {key} cached with TTL {:?}",
                    if look.primary_read {
                        " from the primary"
                    } else {
                        ""
                    },
                    look.ttl
                ),
                cache_ttl_range(),
                HINT_FRESH_TTL,
            )
        })
    }
}

/// How many readers miss together right after an update.
const HERD: usize = 8;

/// Right after an update, while the replica lags, readers that miss
/// together all get the new plan: the one that fills (held before its
/// fill, if it fills) and those that miss meanwhile. The replica's replay
/// is paused from just before the update until they are done.
pub fn herd_after_an_update_gets_the_new_plan(a: Subject) -> Outcome {
    let mut pauser = Pauser::acquire()?;
    judged_once("the herd", || herd_after_an_update(a, &mut pauser))
}

/// One try; false if the replica had the write before the readers were
/// let go (the pause did not hold it back).
fn herd_after_an_update(a: Subject, pauser: &mut Pauser) -> std::result::Result<bool, Failure> {
    let lab = replica_lab()?;
    let old = seeded(&lab, 1)?.plan;
    let plan = other_plan(&old);
    let reading = "get_user_profile_replicated(user 1)";
    call_ok(&lab, reading, read(a, 1), "a cold read loads the row")?;
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    // The replica cannot have the write until the herd is done.
    pauser.pause()?;
    call_ok(
        &lab,
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    super::marks::watch_lagging_reads(1);
    let key = user_key(1);
    // A first reader, held before its fill (if it fills): the others miss
    // while it holds whatever gives it the right to fill.
    let (parked, leader) = start_trapped(&lab, Trap::before_fill(&key), reading, read(a, 1));
    let holding = parked.is_some();
    let others = if holding { HERD - 1 } else { HERD };
    let returned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = returned.clone();
    let (mut lagging, mut resumed) = (Ok(false), Ok(()));
    let results = readers(
        &lab,
        reading,
        others,
        BOUND,
        move |lab| {
            let got = (a.get_user_profile_replicated)(lab, 1);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            got
        },
        || {
            // Until every reader has returned, or a second has passed:
            // readers that wait for the held fill are let go then, the
            // others have answered (from a replica that lagged).
            let until = Instant::now() + Duration::from_secs(1);
            while returned.load(std::sync::atomic::Ordering::SeqCst) < others
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            lagging = replica_plan(&lab, 1).map(|p| p.as_deref() == Some(old.as_str()));
            resumed = pauser.resume();
            drop(parked);
        },
    )?;
    let judged = lagging?;
    resumed?;
    all_returned(&results, others, BOUND)?;
    let first = leader.wait(BOUND)?;
    let mut got = vec![first];
    got.extend(results);
    let held = if holding {
        format!(", while a first reader was held before its fill, {others} readers missed together")
    } else {
        format!(", {HERD} readers missed together")
    };
    let before = format!("right after {updating} returned{held}");
    judge_herd_after_an_update(got, &before, &old, plan)?;
    Ok(judged)
}

/// Every reader of a herd after an update (`before`: what came before
/// their reads) got user 1 on the new `plan`, none the replica's `old` one.
fn judge_herd_after_an_update(
    got: Vec<Result<Option<User>>>,
    before: &str,
    old: &str,
    plan: &str,
) -> Outcome {
    let stale = got
        .iter()
        .filter(|r| matches!(r, Ok(Some(u)) if u.plan != plan))
        .count();
    ensure(stale == 0, || {
        fail(
            format!(
                "{before}, while the replica lagged; {stale} of the {HERD} reads returned plan {old:?}"
            ),
            format!("plan {plan:?} for every reader"),
            HINT_HERD,
        )
    })?;
    for result in got {
        ensure(matches!(&result, Ok(Some(u)) if u.id == 1), || {
            fail(
                format!("{before}; one returned {}", show(&result)),
                format!("user 1 on plan {plan:?} for every reader"),
                "a user that exists is Ok(Some(user)) for every reader, the ones that wait as well",
            )
        })?;
    }
    Ok(())
}

/// Right after an update, with the look for the sign of the write
/// (`marker_key(1)`, if the read looks at it) refused once by Redis, a read
/// returns the new plan or an `Err`, never the old plan; and with the
/// update's write of that key refused once, the update returns an `Err` or
/// every read has the new plan. An answer that never uses `marker_key` is
/// not affected.
pub fn one_failed_redis_call_never_makes_a_read_stale(a: Subject) -> Outcome {
    judged_once("the read after a failed look", || {
        read_after_a_failed_look(a, Fault::MarkerLook)
    })?;
    judged_once("the read while the primary failed", || {
        read_after_a_failed_look(a, Fault::PrimaryReads)
    })?;
    judged_once("any read", || {
        lagging_reads(a, Scenario::MarkerSetFails, None)
    })
}

/// What fails for the read right after an update.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Its look at `marker_key` (answers that never look are not touched).
    MarkerLook,
    /// Every read it sends to the primary (the replica answers).
    PrimaryReads,
}

/// One try; false if the replica had caught up by the end of the read.
fn read_after_a_failed_look(a: Subject, fault: Fault) -> std::result::Result<bool, Failure> {
    let lab = replica_lab()?;
    let old = seeded(&lab, 1)?.plan;
    let plan = other_plan(&old);
    let reading = "get_user_profile_replicated(user 1)";
    call_ok(&lab, reading, read(a, 1), "a cold read loads the row")?;
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    call_ok(
        &lab,
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 1, plan),
        "a valid plan must be accepted",
    )?;
    let marker = marker_key(1);
    let failed = match fault {
        Fault::MarkerLook => {
            lab.hooks().fail_next(Trap::after_look(&marker));
            format!("Redis refused the read's look at {marker}")
        }
        Fault::PrimaryReads => {
            lab.hooks().fail_primary_reads(true);
            "every read sent to the primary failed".to_string()
        }
    };
    let got = call(&lab, reading, read(a, 1))?;
    lab.hooks().fail_primary_reads(false);
    let hint = match fault {
        Fault::MarkerLook => HINT_FAILED_LOOK,
        Fault::PrimaryReads => {
            "right after a write only the primary has the new plan: when it fails, the lagging replica is no substitute; pass the error on"
        }
    };
    let still = replica_plan(&lab, 1)?.as_deref() == Some(old.as_str());
    ensure(
        match &got {
            Ok(Some(u)) => u.plan == plan,
            Ok(None) => false,
            Err(_) => true,
        },
        || {
            fail(
                format!(
                    "right after {updating} returned{}, {failed} (injected by the grader), and the read returned {}",
                    if still {
                        ", while the replica still lagged"
                    } else {
                        ""
                    },
                    show(&got)
                ),
                format!("plan {plan:?}, or an Err: never the old plan"),
                if matches!(got, Ok(None)) {
                    "a user that exists is never Ok(None), whatever failed"
                } else {
                    hint
                },
            )
        },
    )?;
    caught_up(&lab, 1, plan)?;
    let key = user_key(1);
    let cached: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    ensure(plan_of(&cached).is_none_or(|p| p == plan), || {
        fail(
            format!(
                "right after {updating} returned, {failed}; once the replica had caught up, {key} held plan {:?}",
                plan_of(&cached).unwrap_or_default()
            ),
            format!("nothing stale cached: {plan:?} or no entry"),
            hint,
        )
    })?;
    Ok(still)
}

/// A reader that misses right after the update removed the cached copy
/// (the update held there) leaves nothing stale once the update returns.
pub fn read_during_an_update_leaves_nothing_stale(a: Subject) -> Outcome {
    judged_once("the reader", || read_during_update(a))
}

/// One try; false if it could not be judged (the replica caught up too
/// soon).
fn read_during_update(a: Subject) -> std::result::Result<bool, Failure> {
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
    let (parked, writer) = start_trapped(
        &lab,
        Trap::after_delete(&key),
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 2, plan),
    );
    let held = parked.is_some();
    let mut judged = true;
    let mut written_first = true;
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
        // Had the update written before it removed the cached copy? If not,
        // the reader loaded the old row wherever it read: an order mistake,
        // not a missing sign. (Asked after the reader, so as not to spend
        // the window; the held update has not moved since.)
        written_first = stored(&lab, 2)?.is_some_and(|u| u.plan == plan);
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
                if written_first {
                    "the reader missed while the replica still lagged, found no sign of the write, and cached the replica's old row: what must already be in place before the cached copy goes?"
                } else {
                    HINT_ORDER
                },
            )
        },
    )?;
    // Nothing stale: it proved something only if the reader ran while the
    // replica lagged.
    Ok(judged)
}

/// A reader that runs while the update is held before its write (its
/// marker, if any, already set) leaves nothing stale once the update
/// returns: the cached copy must not go before the write.
pub fn read_while_the_update_waits_to_write_leaves_nothing_stale(a: Subject) -> Outcome {
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
    let (parked, writer) = start_parked(
        &lab,
        Trap::before_write(),
        updating.clone(),
        move |lab| (a.update_user_plan_replicated)(lab, 2, plan),
        || {
            fail(
                format!("{updating} sent no write to Postgres"),
                "the new plan must be written to the primary",
                "use lab.db.execute with an UPDATE",
            )
        },
    )?;
    // The write is held before it runs. A reader now either hits the old
    // copy (the update has not touched it yet) or, if it is already gone,
    // loads the old row and caches it.
    let gone = !cached(&lab, &key)?.0;
    let during = call(&lab, "get_user_profile_replicated(user 2)", read(a, 2))?;
    let during = ok(
        "get_user_profile_replicated(user 2) while the update waited to write",
        during,
        "a read while an update is in flight still returns the user",
    )?;
    drop(parked);
    ok(
        &updating,
        writer.wait(BOUND)?,
        "a valid plan must be accepted",
    )?;
    caught_up(&lab, 2, plan)?;
    let held: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    let after = call_ok(
        &lab,
        "get_user_profile_replicated(user 2)",
        read(a, 2),
        HINT_ORDER,
    )?;
    ensure(
        plan_of(&held).is_none_or(|p| p == plan) && plan_of(&after) == Some(plan),
        || {
            fail(
                format!(
                    "{updating} was held before its UPDATE{}; a read then returned {}; once the update had returned and the replica had caught up, {key} held plan {:?} and the next read returned {}",
                    if gone {
                        ", with the cached copy already removed"
                    } else {
                        ""
                    },
                    show(&Ok(during.clone())),
                    plan_of(&held).unwrap_or("(nothing)"),
                    show(&Ok(after.clone()))
                ),
                format!("plan {plan:?}, and nothing stale cached"),
                HINT_ORDER,
            )
        },
    )
}

/// Which step of a reader the grader holds until an update has returned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Its replica SELECT, before it is sent (it found no sign of a write).
    ReplicaRead,
    /// Its fill, once it has read the replica's row.
    Fill,
    /// Its lease request, for answers that take one (after it has looked
    /// for a sign of a write, it may be). Answers without leases are not
    /// held, and pass.
    Lease,
    /// Its fill, once it has read the row right after a first update (from
    /// the primary, since the replica may lag), held until a second update
    /// has returned. Answers that do not fill then are not held, and pass.
    FillAfterAWrite,
}

/// A reader held before its replica SELECT until an update has returned
/// (it found no sign of the write, and the replica it then reads still
/// lags) caches nothing stale.
pub fn read_whose_replica_select_waits_out_an_update(a: Subject) -> Outcome {
    judged_once("the held reader", || {
        read_held_over_an_update(a, Held::ReplicaRead)
    })
}

/// A reader held before its lease request (if it takes one) until an
/// update has returned caches nothing stale: a sign of the write that the
/// reader looked for before it held the lease is out of date by then.
pub fn read_whose_lease_request_waits_out_an_update(a: Subject) -> Outcome {
    judged_once("the held reader", || {
        read_held_over_an_update(a, Held::Lease)
    })
}

/// A reader held before its fill (with the replica's row, read before the
/// update) until an update has returned caches nothing stale.
pub fn read_whose_fill_waits_out_an_update(a: Subject) -> Outcome {
    // No lag needed: the row was read before the write.
    read_held_over_an_update(a, Held::Fill).map(|_| ())
}

/// A reader that read user 2 right after an update (from the primary, the
/// replica lagging), held before its fill until a second update has
/// returned, caches nothing stale: the primary's row is no fresher than the
/// next write.
pub fn read_after_a_write_whose_fill_waits_out_another_update(a: Subject) -> Outcome {
    judged_once(
        "the held reader (within MARKER_TTL of the first update)",
        || read_held_over_an_update(a, Held::FillAfterAWrite),
    )
}

/// Whether a lease on `key` is held right now (only to choose the hint:
/// nothing requires leases).
fn lease_held(lab: &Lab, key: &str) -> std::result::Result<bool, Failure> {
    let name = testkit::lease_key(&lab.cache, key).map_err(setup)?;
    let n = lab
        .cache
        .with_raw_connection(|c| redis::cmd("EXISTS").arg(&name).query::<i64>(c))
        .map_err(setup)?
        .map_err(|e| Failure::Setup(format!("Redis: {e}")))?;
    Ok(n > 0)
}

/// One try; false if it could not be judged (a held replica read sent
/// after the replica had caught up; a read after a write that came after
/// that write's MARKER_TTL).
fn read_held_over_an_update(a: Subject, held: Held) -> std::result::Result<bool, Failure> {
    let lab = replica_lab()?;
    let mut old = seeded(&lab, 2)?.plan;
    let mut plan = other_plan(&old);
    let key = user_key(2);
    let reading = "get_user_profile_replicated(user 2)";
    // The first update, and when it began.
    let mut first = None;
    if held == Held::FillAfterAWrite {
        let earlier = plan;
        let began = Instant::now();
        call_ok(
            &lab,
            format!("update_user_plan_replicated(user 2, {earlier:?})"),
            move |lab| (a.update_user_plan_replicated)(lab, 2, earlier),
            "a valid plan must be accepted",
        )?;
        first = Some((earlier, began));
        plan = third_plan(&old, earlier);
        old = earlier.to_string();
    }
    let (trap, step) = held_step(held, &key);
    let Some((parked, reader)) = hold_reader(&lab, a, held, trap)? else {
        // Nothing to hold here; the read was judged as it was.
        return Ok(true);
    };
    // The held reader looked for a sign of the first write while one
    // lasting MARKER_TTL from it was still there.
    let in_time = first.is_none_or(|(_, began)| began.elapsed() < MARKER_TTL);
    let updating = format!("update_user_plan_replicated(user 2, {plan:?})");
    let update = call(&lab, updating.clone(), move |lab| {
        (a.update_user_plan_replicated)(lab, 2, plan)
    })?;
    ok(&updating, update, "a valid plan must be accepted")?;
    let lease_left = lease_held(&lab, &key)?;
    drop(parked);
    ok(
        "the held get_user_profile_replicated(user 2)",
        reader.wait(BOUND)?,
        "a fill that is refused is not an error: return what was read",
    )?;
    // A held replica read proved something only if the replica still had
    // the old row when it was sent, so still now; a held fill always does.
    let judged = match held {
        Held::ReplicaRead | Held::Lease => replica_plan(&lab, 2)?.as_deref() == Some(old.as_str()),
        Held::Fill => true,
        Held::FillAfterAWrite => in_time,
    };
    caught_up(&lab, 2, plan)?;
    let cached: Option<User> = lab.cache.get_json(&key).map_err(setup)?;
    let after = call_ok(&lab, reading, read(a, 2), HINT_GUARD)?;
    ensure(
        plan_of(&cached).is_none_or(|p| p == plan) && plan_of(&after) == Some(plan),
        || {
            fail(
                format!(
                    "{}; once the replica had caught up, {key} held plan {:?} and the next read returned {}",
                    held_story(held, &step, &updating, &old),
                    plan_of(&cached).unwrap_or("(nothing)"),
                    show(&Ok(after.clone()))
                ),
                format!(
                    "plan {plan:?}, and nothing stale cached: a fill that overlapped the update is refused (or removed)"
                ),
                match held {
                    Held::Lease => HINT_LOOK_AFTER_LEASE,
                    Held::FillAfterAWrite if !lease_left => HINT_FRESH_FILL,
                    _ if lease_left => HINT_REVOKE,
                    _ => HINT_GUARD,
                },
            )
        },
    )?;
    Ok(judged)
}

/// The trap that holds a reader at `held`, and that step as messages say it.
fn held_step(held: Held, key: &str) -> (Trap, String) {
    match held {
        Held::ReplicaRead => (
            Trap::before_replica_read(),
            "its replica SELECT".to_string(),
        ),
        Held::Fill | Held::FillAfterAWrite => (Trap::before_fill(key), format!("filling {key}")),
        Held::Lease => (Trap::before_lease(key), "its lease request".to_string()),
    }
}

/// What happened to the held reader, as the failure says it.
fn held_story(held: Held, step: &str, updating: &str, old: &str) -> String {
    match held {
        Held::ReplicaRead => format!(
            "a read of user 2 found no sign of a write and was held before {step} until {updating} had returned, then read the replica (still on {old:?})"
        ),
        Held::Fill => format!(
            "a read of user 2 read the replica ({old:?}) and was held before {step} until {updating} had returned"
        ),
        Held::Lease => format!(
            "a read of user 2 missed, and was held before {step} until {updating} had returned; then it read the replica (still on {old:?})"
        ),
        Held::FillAfterAWrite => format!(
            "right after update_user_plan_replicated(user 2, {old:?}) returned, a read of user 2 read {old:?} and was held before {step} until {updating} had returned"
        ),
    }
}

/// A reader held by the grader, and the read itself.
type HeldRead<'a> = (Parked<'a>, Pending<Result<Option<User>>>);

/// Starts a read of user 2 and holds it at `trap`. `None` if it is a step
/// the answer may skip ([`Held::Lease`], [`Held::FillAfterAWrite`]) and the
/// read finished without it: then it must have returned the plan Postgres
/// has.
fn hold_reader(
    lab: &Arc<Lab>,
    a: Subject,
    held: Held,
    trap: Trap,
) -> std::result::Result<Option<HeldRead<'_>>, Failure> {
    let reading = "get_user_profile_replicated(user 2)";
    if !matches!(held, Held::Lease | Held::FillAfterAWrite) {
        let key = user_key(2);
        let missing = || match held {
            Held::ReplicaRead | Held::Lease => fail(
                "a cold read of user 2, never written, sent no read to the replica",
                "with no recent write, a miss reads lab.replica",
                "with no recent write of this user, the replica is up to date: read lab.replica",
            ),
            Held::Fill | Held::FillAfterAWrite => fail(
                format!("a cold read of user 2 never filled {key}"),
                format!("a miss leaves {key} cached"),
                "a miss fills the cache, as in Part 1",
            ),
        };
        return start_parked(lab, trap, reading, read(a, 2), missing).map(Some);
    }
    let (parked, reader) = start_trapped(lab, trap, reading, read(a, 2));
    if let Some(parked) = parked {
        return Ok(Some((parked, reader)));
    }
    // No lease asked for, or no fill after a write: nothing to hold here.
    let got = ok(reading, reader.wait(BOUND)?, "a read loads the row")?;
    let now = plan_of_now(lab, 2)?;
    ensure(plan_of(&got) == Some(now.as_str()), || {
        fail(
            format!("a read of user 2 returned {}", show(&Ok(got.clone()))),
            "the plan Postgres has",
            HINT_TRUST,
        )
    })?;
    Ok(None)
}

/// User `id`'s plan as the primary has it (not counted).
fn plan_of_now(lab: &Lab, id: i32) -> std::result::Result<String, Failure> {
    Ok(stored(lab, id)?
        .ok_or_else(|| Failure::Setup(format!("user {id} is gone")))?
        .plan)
}

/// At the latest MARKER_TTL after a write, cold reads go to the replica
/// again.
pub fn reads_return_to_the_replica(a: Subject) -> Outcome {
    let lab = replica_lab()?;
    let old = seeded(&lab, 1)?.plan;
    let plan = other_plan(&old);
    let updating = format!("update_user_plan_replicated(user 1, {plan:?})");
    let began = Instant::now();
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
        // Whether the replica had the write before this read: if not, and
        // the read ends MARKER_TTL or more after the update began, the
        // replica lagged beyond what the promise covers (another check
        // paused it), and an old plan from it is not judged.
        let caught = replica_plan(&lab, 1)?.as_deref() == Some(plan);
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
            if plan_of(&got) != Some(plan) && !caught && began.elapsed() >= MARKER_TTL {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
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
        key_must_go: false,
    };
    let mut plans = vec!["platinum"];
    plans.extend(hostile_plans());
    bad_plans_change_nothing(f, &plans)
}

/// With every read of Postgres failing, a replicated read is an `Err`, as
/// in Part 1: `Ok(None)` would say that the user does not exist.
pub fn postgres_error_is_an_err(a: Subject) -> Outcome {
    postgres_error_is_an_err_for(
        &replica_lab()?,
        a.get_user_profile_replicated,
        "get_user_profile_replicated",
    )
}

/// When the invalidation after the write fails, the replicated update says
/// so, as in Part 1: a marker expires long before the cached copy would.
pub fn failed_invalidation_is_an_err(a: Subject) -> Outcome {
    failed_invalidation_is_an_err_for(
        a.update_user_plan_replicated,
        a.get_user_profile_replicated,
        "update_user_plan_replicated",
    )
}

/// A user created after a read found it missing is returned within
/// ABSENT_TTL, as in Part 1 (the replica gets it a moment later).
pub fn created_user_shows_up_within_absent_ttl(a: Subject) -> Outcome {
    super::part1::created_user_shows_up_within_absent_ttl_for(
        &replica_lab()?,
        a.get_user_profile_replicated,
        "get_user_profile_replicated",
    )
}

/// A read of an existing user is never `Ok(None)`, whatever happens to its
/// entry (evicted right after the read first looked at it, or its fill
/// refused), as in Part 1.
pub fn existing_user_is_never_none(a: Subject) -> Outcome {
    super::part1::existing_user_is_never_none_for(
        a.get_user_profile_replicated,
        "get_user_profile_replicated",
    )
}

/// A hit that overlaps an update leaves nothing stale, as in Part 1.
pub fn hit_during_update_leaves_nothing_stale(a: Subject) -> Outcome {
    super::part1::hit_during_update_leaves_nothing_stale_for(Functions {
        read: a.get_user_profile_replicated,
        read_name: "get_user_profile_replicated",
        update: a.update_user_plan_replicated,
        update_name: "update_user_plan_replicated",
        key_must_go: false,
    })
}

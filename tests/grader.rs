//! The grader. `cargo test` grades your `src/lib.rs`, Part 1 first, then
//! Part 2; Parts 3 and 4 are optional (`cargo test part3 -- --ignored`;
//! Part 4 needs a read replica: `scripts/services up --replica`).
//! `cargo test part1` runs Part 1 only, and so on.
//!
//! `cargo test --features solution -- --include-ignored` is the maintainer
//! command: it grades the reference answers in `solution/reference.rs`
//! instead of yours (and says so at the top and on the board), proves both
//! catalogues in `solution/`, and checks the stubs as shipped.
//!
//! # Layout
//!
//! - here: the parts and the graded checks, in lab order, with what each
//!   proves (the README's checklist is generated from it), and what is
//!   graded.
//! - `checks/`: the checks themselves, one file per part.
//! - `harness/`: the plan of trials, one process per check, a judge per kind
//!   of trial, lab-order reporting, the board.
//! - `catalogue/` (maintainer mode): the generated tables in the docs.

mod checks;
mod harness;
#[cfg(feature = "solution")]
#[path = "../solution/mod.rs"]
mod solution;

use cache_aside_lab::labkit::testkit::Answers;
use checks::{part1, part2, part3, part4};
use harness::{Check, Flag, Part, Suite};

/// `part N "title" [Optional] [NeedsReplica] { check = function, "what it
/// proves"; ... }`: the parts, and every graded check in the order to tackle
/// them. The README's checklist is generated from it (tests/catalogue).
macro_rules! lab {
    ($( part $part:literal $title:literal $($flag:ident)* { $( $name:ident = $run:path, $proves:literal; )* } )*) => {
        const PARTS: &[Part] = &[ $( Part::new($part, $title, &[$(Flag::$flag),*]) ),* ];
        /// Every graded check, in the order to tackle them.
        const CHECKS: &[Check] = &[ $( $(
            Check { name: stringify!($name), part: $part, run: $run, proves: $proves },
        )* )* ];
    };
}

lab! {
    part 1 "cache-aside" {
        part1_a_cold_read_returns_the_user_from_postgres = part1::cold_read_returns_the_user,
            "a miss returns exactly the row Postgres has, for exactly 1 statement";
        part1_a_cold_read_fills_the_cache_with_a_ttl = part1::cold_read_fills_the_cache_with_a_ttl,
            "`user:{id}` is cached with a TTL of the order of `CACHE_TTL` (`CACHE_TTL`/4 to 1.1 × `CACHE_TTL`: jitter is fine, a wrong constant or milliseconds are not)";
        part1_a_second_read_is_a_cache_hit_with_zero_statements = part1::second_read_is_a_hit,
            "a hit sends 0 statements to Postgres";
        part1_a_missing_user_reads_as_none = part1::missing_user_is_none,
            "ids 999, 0, -1, `i32::MAX`, `i32::MIN` read as `Ok(None)`";
        part1_an_update_invalidates_and_the_next_read_has_the_new_plan = part1::update_invalidates,
            "after an update `user:{id}` is gone and the next read is fresh";
        part1_a_read_during_an_update_leaves_nothing_stale = part1::read_during_update_leaves_nothing_stale,
            "a read while the UPDATE is held up leaves nothing stale behind";
        part1_a_hit_during_an_update_leaves_nothing_stale = part1::hit_during_update_leaves_nothing_stale,
            "a hit never puts back a copy that an update has just removed";
        part1_a_plan_outside_the_check_constraint_is_an_error = part1::rejected_plan_is_an_error,
            "a refused write is an `Err`, and nothing changes";
        part1_hostile_plans_are_rejected_or_stored_verbatim_never_executed = part1::hostile_plans_are_never_executed,
            "empty, 10 kB, NUL, quotes and SQL in a plan never execute";
        part1_a_postgres_error_is_an_err_never_none = part1::postgres_error_is_an_err,
            "a failed SELECT is an `Err`, never \"no such user\"";
        part1_an_update_whose_invalidation_fails_returns_an_err = part1::failed_invalidation_is_an_err,
            "a removal that fails after the write is reported as an `Err`";
        part1_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry = part1::existing_user_is_never_none,
            "an entry evicted mid-read, or a fill Redis refused, never turns a user into `Ok(None)`";
        part1_a_user_created_after_a_miss_shows_up_within_absent_ttl = part1::created_user_shows_up_within_absent_ttl,
            "absence may be remembered, for `ABSENT_TTL` at most";
        part1_a_write_by_another_process_is_seen_by_the_next_read = part1::write_by_another_process_is_seen,
            "the cache is shared: an update made by another process is seen by the next read here";
    }
    part 2 "single-flight" {
        part2_single_reads_still_fill_hit_and_miss = part2::single_reads_behave_like_part1,
            "single-flight still fills (with a TTL of the order of `CACHE_TTL`), hits, returns `None`, and passes errors on";
        part2_fifty_concurrent_cold_reads_send_exactly_one_statement = part2::herd_sends_one_statement,
            "50 threads on a cold user: 1 statement";
        part2_all_fifty_concurrent_readers_get_the_user = part2::herd_all_get_the_user,
            "... and every one of them gets the user";
        part2_all_fifty_get_the_user_even_when_the_first_fill_is_gone = part2::herd_all_get_the_user_when_the_fill_is_gone,
            "... also when the first fill is evicted as the others look; a refused fill never reads as `None`";
        part2_a_slow_fill_of_one_key_does_not_delay_another_key = part2::other_keys_are_not_delayed,
            "a slow user never holds up any of 64 others";
        part2_a_hit_during_an_update_leaves_nothing_stale = part2::hit_during_update_leaves_nothing_stale,
            "a hit never puts back a copy that an update has just removed, as in Part 1";
        part2_a_user_created_after_a_miss_shows_up_within_absent_ttl = part2::created_user_shows_up_within_absent_ttl,
            "absence may be remembered, for `ABSENT_TTL` at most, as in Part 1";
        part2_a_write_by_another_process_is_seen_by_the_next_read = part2::write_by_another_process_is_seen,
            "no copy in process memory hides another process's update, as in Part 1";
    }
    part 3 "leases" Optional {
        part3_leased_reads_fill_hit_and_miss = part3::leased_reads_behave_like_part1,
            "leased reads fill (with a TTL of the order of `CACHE_TTL`), hit, and read missing users as `None`";
        part3_a_postgres_error_is_an_err_never_none = part3::postgres_error_is_an_err,
            "a failed SELECT is an `Err`, never \"no such user\"";
        part3_the_stale_set_race_leaves_no_stale_value = part3::stale_set_race_leaves_no_stale_value,
            "reader held up after its SELECT, update, resume: nothing stale, and the reader still gets its row";
        part3_a_read_during_a_leased_update_leaves_nothing_stale = part3::read_during_update_leaves_nothing_stale,
            "a read while the leased UPDATE is held up leaves nothing stale behind";
        part3_a_hit_during_a_leased_update_leaves_nothing_stale = part3::hit_during_update_leaves_nothing_stale,
            "a hit never puts back a copy that an update has just removed";
        part3_two_overlapping_updates_leave_nothing_stale = part3::overlapping_updates_leave_nothing_stale,
            "an update that refreshes the cache itself never lands its value over a later update's";
        part3_a_herd_across_three_processes_sends_one_statement = part3::herd_across_processes,
            "3 processes x 16 threads on a cold user: 1 statement in all";
        part3_a_herd_on_a_missing_user_sends_one_statement = part3::missing_user_herd_costs_one_statement,
            "50 readers of a missing user: 1 statement, absence cached <= `ABSENT_TTL`";
        part3_waiters_get_the_value_within_500_ms_of_the_fill = part3::waiters_get_the_value_promptly,
            "while the lease holder is alive, waiters have the value within 500 ms of its fill";
        part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl = part3::dead_holder_delays_at_most_lease_ttl,
            "a holder that crashes (your own lease, taken in another process) costs at most `LEASE_TTL`";
        part3_with_redis_failing_a_read_is_served_from_postgres = part3::redis_failing_read_uses_postgres,
            "a cache outage is not an outage";
        part3_with_any_one_redis_call_failing_a_read_is_served_from_postgres = part3::one_redis_call_failing_read_uses_postgres,
            "... nor is one failed cache call, whichever it is";
        part3_with_redis_failing_an_update_writes_postgres_and_returns_an_error = part3::redis_failing_update_is_an_error,
            "a failed invalidation is reported";
    }
    part 4 "a read replica" Optional NeedsReplica {
        part4_a_cold_read_with_no_recent_write_is_served_by_the_replica = part4::cold_read_is_served_by_the_replica,
            "no recent write: 0 statements on `lab.db`, the replica serves it, and it is cached with a TTL of the order of `CACHE_TTL`";
        part4_a_write_to_one_user_leaves_reads_of_other_users_on_the_replica = part4::a_write_leaves_other_users_on_the_replica,
            "right after a write of user 2, a cold read of user 3 is served by the replica: only the user written may lag";
        part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags = part4::reads_after_an_update_have_the_new_plan,
            "after an update returns, reads (misses and hits) have the new plan while the replica still has the old, a fill keeps a TTL of the order of `CACHE_TTL`, and nothing stale is cached";
        part4_after_an_update_in_another_process_reads_here_have_the_new_plan = part4::reads_after_an_update_elsewhere_have_the_new_plan,
            "the same with the update made by another process";
        part4_every_read_after_an_update_of_a_user_nobody_had_read_has_the_new_plan = part4::reads_after_an_update_of_an_uncached_user_have_the_new_plan,
            "the same for a user that was not cached when it was written";
        part4_every_read_after_a_second_update_within_marker_ttl_has_the_newest_plan = part4::reads_after_a_second_update_have_the_newest_plan,
            "a second update shortly before the first one's `MARKER_TTL` runs out is covered for its own `MARKER_TTL`";
        part4_every_read_has_the_new_plan_while_the_replica_lags_longer_than_usual = part4::reads_while_the_replica_lags_long_have_the_new_plan,
            "the grader pauses the replica's replay for 2 s from just before an update: reads still have the new plan";
        part4_readers_that_miss_together_right_after_an_update_all_get_the_new_plan = part4::herd_after_an_update_gets_the_new_plan,
            "readers that miss while another holds the right to fill wait for its value, not the lagging replica's";
        part4_a_hit_during_an_update_leaves_nothing_stale = part4::hit_during_update_leaves_nothing_stale,
            "a hit never puts back a copy that an update has just removed, as in Part 1";
        part4_a_read_during_an_update_leaves_nothing_stale = part4::read_during_an_update_leaves_nothing_stale,
            "a reader that misses right after the update removed the cached copy leaves nothing stale";
        part4_a_read_while_the_update_waits_to_write_leaves_nothing_stale = part4::read_while_the_update_waits_to_write_leaves_nothing_stale,
            "a reader that runs while the UPDATE is held up leaves nothing stale";
        part4_a_read_whose_replica_select_waits_out_an_update_caches_nothing_stale = part4::read_whose_replica_select_waits_out_an_update,
            "a reader held before its replica read until an update has returned: nothing stale cached";
        part4_a_read_whose_fill_waits_out_an_update_caches_nothing_stale = part4::read_whose_fill_waits_out_an_update,
            "a reader held before its fill until an update has returned: nothing stale cached";
        part4_a_read_whose_lease_request_waits_out_an_update_caches_nothing_stale = part4::read_whose_lease_request_waits_out_an_update,
            "a reader that looked for a sign of the write, then waited for its lease while an update came and went, caches nothing stale";
        part4_a_read_right_after_a_write_whose_fill_waits_out_another_update_caches_nothing_stale = part4::read_after_a_write_whose_fill_waits_out_another_update,
            "a reader that read the primary right after a write, held before its fill until a second update has returned: nothing stale cached";
        part4_reads_return_to_the_replica_within_marker_ttl_of_a_write = part4::reads_return_to_the_replica,
            "at the latest `MARKER_TTL` after a write, misses read the replica again";
        part4_missing_users_read_as_none_and_bad_plans_change_nothing = part4::missing_users_and_bad_plans,
            "as in Part 1, through the replicated functions";
        part4_a_user_created_after_a_miss_shows_up_within_absent_ttl = part4::created_user_shows_up_within_absent_ttl,
            "absence may be remembered, for `ABSENT_TTL` at most";
        part4_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry = part4::existing_user_is_never_none,
            "as in Part 1: an entry evicted mid-read, or a refused fill, never makes a user missing";
        part4_a_postgres_error_is_an_err_never_none = part4::postgres_error_is_an_err,
            "a failed read is an `Err`, never \"no such user\"";
        part4_an_update_whose_invalidation_fails_returns_an_err = part4::failed_invalidation_is_an_err,
            "a failed invalidation is reported";
        part4_a_failed_redis_call_never_makes_a_read_after_an_update_stale = part4::one_failed_redis_call_never_makes_a_read_stale,
            "a failed look for the sign of a write, a failed write of it, or a failing primary never leads to the old plan";
    }
}

/// `cargo test`: your answers.
#[cfg(not(feature = "solution"))]
fn suite() -> Suite {
    Suite {
        title: "Grading your answers in src/lib.rs".into(),
        parts: PARTS,
        checks: CHECKS,
        subject: &Answers::LEARNER,
        answers: vec![&Answers::LEARNER],
        entries: Vec::new(),
    }
}

/// `cargo test --features solution`: the reference, and both catalogues.
#[cfg(feature = "solution")]
fn suite() -> Suite {
    use harness::Entry;
    use solution::{designs, mistakes, reference};
    let mut answers = vec![&reference::ANSWERS, &Answers::LEARNER];
    let mut entries = Vec::new();
    for d in designs::ALL {
        answers.push(&d.answers);
        entries.push(Entry::Design {
            name: d.name,
            part: d.part,
            answers: &d.answers,
        });
    }
    for m in mistakes::ALL {
        answers.push(&m.answers);
        entries.push(Entry::Mistake {
            name: m.name,
            answers: &m.answers,
            caught_by: m.caught_by,
            hint: m.hint,
            marks: m.marks,
        });
    }
    entries.push(Entry::Stubs);
    entries.push(Entry::Plain {
        name: "the_catalogue_tables_in_docs_are_current",
        check: catalogue::check,
    });
    Suite {
        title: "Grading the reference answers in solution/reference.rs, not src/lib.rs (built with --features solution)".into(),
        parts: PARTS,
        checks: CHECKS,
        subject: &reference::ANSWERS,
        answers,
        entries,
    }
}

#[cfg(feature = "solution")]
mod catalogue;

fn main() -> std::process::ExitCode {
    harness::main(suite())
}

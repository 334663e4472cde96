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
//! - here: the parts and the graded checks, in lab order, and what is graded.
//! - `checks/`: the checks themselves, one file per part.
//! - `harness/`: one process per check, lab-order reporting, the board.

mod checks;
mod harness;
#[cfg(feature = "solution")]
#[path = "../solution/mod.rs"]
mod solution;

use cache_aside_lab::labkit::testkit::Answers;
use checks::{part1, part2, part3, part4};
use harness::{Check, Part, Suite};

const PARTS: &[Part] = &[
    Part {
        number: 1,
        title: "cache-aside",
        optional: false,
        needs_replica: false,
    },
    Part {
        number: 2,
        title: "single-flight",
        optional: false,
        needs_replica: false,
    },
    Part {
        number: 3,
        title: "leases",
        optional: true,
        needs_replica: false,
    },
    Part {
        number: 4,
        title: "a read replica",
        optional: true,
        needs_replica: true,
    },
];

macro_rules! checks {
    ($( $part:literal: $name:ident = $run:path; )*) => {
        /// Every graded check, in the order to tackle them.
        const CHECKS: &[Check] = &[ $( Check { name: stringify!($name), part: $part, run: $run } ),* ];
    };
}

checks! {
    1: part1_a_cold_read_returns_the_user_from_postgres = part1::cold_read_returns_the_user;
    1: part1_a_cold_read_fills_the_cache_with_a_ttl = part1::cold_read_fills_the_cache_with_a_ttl;
    1: part1_a_second_read_is_a_cache_hit_with_zero_statements = part1::second_read_is_a_hit;
    1: part1_a_missing_user_reads_as_none = part1::missing_user_is_none;
    1: part1_an_update_invalidates_and_the_next_read_has_the_new_plan = part1::update_invalidates;
    1: part1_a_read_during_an_update_leaves_nothing_stale = part1::read_during_update_leaves_nothing_stale;
    1: part1_a_hit_during_an_update_leaves_nothing_stale = part1::hit_during_update_leaves_nothing_stale;
    1: part1_a_plan_outside_the_check_constraint_is_an_error = part1::rejected_plan_is_an_error;
    1: part1_hostile_plans_are_rejected_or_stored_verbatim_never_executed = part1::hostile_plans_are_never_executed;
    1: part1_a_postgres_error_is_an_err_never_none = part1::postgres_error_is_an_err;
    1: part1_an_update_whose_invalidation_fails_returns_an_err = part1::failed_invalidation_is_an_err;
    1: part1_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry = part1::existing_user_is_never_none;
    1: part1_a_user_created_after_a_miss_shows_up_within_absent_ttl = part1::created_user_shows_up_within_absent_ttl;
    1: part1_a_write_by_another_process_is_seen_by_the_next_read = part1::write_by_another_process_is_seen;
    2: part2_single_reads_still_fill_hit_and_miss = part2::single_reads_behave_like_part1;
    2: part2_fifty_concurrent_cold_reads_send_exactly_one_statement = part2::herd_sends_one_statement;
    2: part2_all_fifty_concurrent_readers_get_the_user = part2::herd_all_get_the_user;
    2: part2_all_fifty_get_the_user_even_when_the_first_fill_is_gone = part2::herd_all_get_the_user_when_the_fill_is_gone;
    2: part2_a_slow_fill_of_one_key_does_not_delay_another_key = part2::other_keys_are_not_delayed;
    3: part3_leased_reads_fill_hit_and_miss = part3::leased_reads_behave_like_part1;
    3: part3_a_postgres_error_is_an_err_never_none = part3::postgres_error_is_an_err;
    3: part3_the_stale_set_race_leaves_no_stale_value = part3::stale_set_race_leaves_no_stale_value;
    3: part3_a_read_during_a_leased_update_leaves_nothing_stale = part3::read_during_update_leaves_nothing_stale;
    3: part3_a_herd_across_three_processes_sends_one_statement = part3::herd_across_processes;
    3: part3_a_herd_on_a_missing_user_sends_one_statement = part3::missing_user_herd_costs_one_statement;
    3: part3_waiters_get_the_value_within_500_ms_of_the_fill = part3::waiters_get_the_value_promptly;
    3: part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl = part3::dead_holder_delays_at_most_lease_ttl;
    3: part3_with_redis_failing_a_read_is_served_from_postgres = part3::redis_failing_read_uses_postgres;
    3: part3_with_any_one_redis_call_failing_a_read_is_served_from_postgres = part3::one_redis_call_failing_read_uses_postgres;
    3: part3_with_redis_failing_an_update_writes_postgres_and_returns_an_error = part3::redis_failing_update_is_an_error;
    4: part4_a_cold_read_with_no_recent_write_is_served_by_the_replica = part4::cold_read_is_served_by_the_replica;
    4: part4_a_write_to_one_user_leaves_reads_of_other_users_on_the_replica = part4::a_write_leaves_other_users_on_the_replica;
    4: part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags = part4::reads_after_an_update_have_the_new_plan;
    4: part4_after_an_update_in_another_process_reads_here_have_the_new_plan = part4::reads_after_an_update_elsewhere_have_the_new_plan;
    4: part4_every_read_after_an_update_of_a_user_nobody_had_read_has_the_new_plan = part4::reads_after_an_update_of_an_uncached_user_have_the_new_plan;
    4: part4_every_read_after_a_second_update_within_marker_ttl_has_the_newest_plan = part4::reads_after_a_second_update_have_the_newest_plan;
    4: part4_every_read_has_the_new_plan_while_the_replica_lags_longer_than_usual = part4::reads_while_the_replica_lags_long_have_the_new_plan;
    4: part4_readers_that_miss_together_right_after_an_update_all_get_the_new_plan = part4::herd_after_an_update_gets_the_new_plan;
    4: part4_a_read_during_an_update_leaves_nothing_stale = part4::read_during_an_update_leaves_nothing_stale;
    4: part4_a_read_while_the_update_waits_to_write_leaves_nothing_stale = part4::read_while_the_update_waits_to_write_leaves_nothing_stale;
    4: part4_a_read_whose_replica_select_waits_out_an_update_caches_nothing_stale = part4::read_whose_replica_select_waits_out_an_update;
    4: part4_a_read_whose_fill_waits_out_an_update_caches_nothing_stale = part4::read_whose_fill_waits_out_an_update;
    4: part4_a_read_whose_lease_request_waits_out_an_update_caches_nothing_stale = part4::read_whose_lease_request_waits_out_an_update;
    4: part4_a_read_right_after_a_write_whose_fill_waits_out_another_update_caches_nothing_stale = part4::read_after_a_write_whose_fill_waits_out_another_update;
    4: part4_reads_return_to_the_replica_within_marker_ttl_of_a_write = part4::reads_return_to_the_replica;
    4: part4_missing_users_read_as_none_and_bad_plans_change_nothing = part4::missing_users_and_bad_plans;
    4: part4_a_user_created_after_a_miss_shows_up_within_absent_ttl = part4::created_user_shows_up_within_absent_ttl;
    4: part4_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry = part4::existing_user_is_never_none;
    4: part4_a_postgres_error_is_an_err_never_none = part4::postgres_error_is_an_err;
    4: part4_an_update_whose_invalidation_fails_returns_an_err = part4::failed_invalidation_is_an_err;
    4: part4_a_failed_redis_call_never_makes_a_read_after_an_update_stale = part4::one_failed_redis_call_never_makes_a_read_stale;
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
        });
    }
    entries.push(Entry::Stubs);
    entries.push(Entry::Plain {
        name: "the_catalogue_tables_in_docs_are_current",
        run: catalogue::check,
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

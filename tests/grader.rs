//! The grader. `cargo test` grades your `src/lib.rs`; `cargo test --features
//! solution` grades the reference answers with the very same checks.
//!
//! Tests read as a checklist, in the order to tackle them. Part 3 is
//! optional and ignored by default: `cargo test -- --ignored` grades it.

#[cfg(feature = "solution")]
mod catalogue;
mod checks;
#[cfg(feature = "solution")]
#[path = "../solution/mistakes/mod.rs"]
mod mistakes;
#[path = "../solution/reference.rs"]
mod reference;

use checks::{Answers, Subject, part1, part2, part3};

/// What `cargo test` grades.
#[cfg(not(feature = "solution"))]
const SUBJECT: Subject = &checks::Learner;
#[cfg(feature = "solution")]
const SUBJECT: Subject = &checks::Reference;

/// Answers by id, for the child processes of the cross-process herd.
pub fn answers_by_id(id: &str) -> Option<&'static dyn Answers> {
    let known: [&'static dyn Answers; 2] = [&checks::Learner, &checks::Reference];
    #[cfg(feature = "solution")]
    let known = known
        .into_iter()
        .chain(mistakes::ALL.iter().map(|m| m.answers));
    known.into_iter().find(|a| a.id() == id)
}

/// Declares each graded test and the `GRADED` table the catalogue uses.
macro_rules! graded {
    ($( $(#[$attr:meta])* fn $name:ident = $check:path; )*) => {
        $( $(#[$attr])* #[test] fn $name() { checks::grade(SUBJECT, $check) } )*
        /// Every graded test: its name and its check.
        #[allow(dead_code)]
        pub const GRADED: &[(&str, checks::CheckFn)] = &[ $( (stringify!($name), $check) ),* ];
    };
}

graded! {
    /// A cold read returns exactly the row Postgres has, and queries for it.
    fn part1_a_cold_read_returns_the_user_from_postgres = part1::cold_read_returns_the_user;
    /// A cold read leaves `user:{id}` cached with a TTL in (0, CACHE_TTL].
    fn part1_a_cold_read_fills_the_cache_with_a_ttl = part1::cold_read_fills_the_cache_with_a_ttl;
    /// A second read is a cache hit: 0 statements, the same user.
    fn part1_a_second_read_is_a_cache_hit_with_zero_statements = part1::second_read_is_a_hit;
    /// Missing users (999, 0, negative, i32::MAX) read as `Ok(None)`.
    fn part1_a_missing_user_reads_as_none = part1::missing_user_is_none;
    /// After an update, `user:{id}` is gone and the next read has the new plan.
    fn part1_an_update_invalidates_and_the_next_read_has_the_new_plan = part1::update_invalidates;
    /// A read during a parked UPDATE leaves no stale entry: write, then invalidate.
    fn part1_an_update_writes_first_then_invalidates = part1::write_then_invalidate;
    /// A plan the CHECK constraint rejects is an `Err` and changes nothing.
    fn part1_a_plan_outside_the_check_constraint_is_an_error = part1::rejected_plan_is_an_error;
    /// Hostile plans (empty, 10 kB, NUL, quotes, SQL) are never executed.
    fn part1_hostile_plans_are_rejected_or_stored_verbatim_never_executed = part1::hostile_plans_are_never_executed;
    /// Single reads through single-flight behave as in Part 1.
    fn part2_single_reads_behave_like_part1 = part2::single_reads_behave_like_part1;
    /// 50 concurrent cold reads of one user send exactly 1 statement.
    fn part2_fifty_concurrent_cold_reads_send_exactly_one_statement = part2::herd_sends_one_statement;
    /// All 50 concurrent readers get the user, waiters included.
    fn part2_all_fifty_concurrent_readers_get_the_user = part2::herd_all_get_the_user;
    /// A parked fill of one key never delays a read of another key.
    fn part2_a_slow_fill_of_one_key_does_not_delay_another_key = part2::other_keys_are_not_delayed;
    /// Leased reads fill, hit and read missing users like Part 1.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_leased_reads_behave_like_part1 = part3::leased_reads_behave_like_part1;
    /// The stale-set race (reader parked after its SELECT, update, resume)
    /// leaves no stale value.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_the_stale_set_race_leaves_no_stale_value = part3::stale_set_race_leaves_no_stale_value;
    /// 3 processes × 16 threads reading one cold user send 1 statement in all.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_a_herd_across_three_processes_sends_one_statement = part3::herd_across_processes;
    /// 50 readers of a missing user send 1 statement; absence is cached briefly.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_a_herd_on_a_missing_user_sends_one_statement = part3::missing_user_herd_costs_one_statement;
    /// A dead lease holder delays a reader by at most LEASE_TTL.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl = part3::dead_holder_delays_at_most_lease_ttl;
    /// With Redis failing, a leased read is served from Postgres.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_with_redis_failing_a_read_is_served_from_postgres = part3::redis_failing_read_uses_postgres;
    /// With Redis failing, a leased update writes Postgres and returns `Err`.
    #[ignore = "Part 3 (optional): cargo test -- --ignored"]
    fn part3_with_redis_failing_an_update_writes_postgres_and_returns_an_error = part3::redis_failing_update_is_an_error;
}

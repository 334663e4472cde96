//! The catalogue of classic mistakes. Each file is one learner's answer
//! with exactly one realistic mistake: it defines the functions the mistake
//! lives in (usually one; a read and its update when it lives in both), and
//! the entry takes the others from the reference. Its `//!` doc says what
//! the mistake is and why it hurts in production.
//!
//! The maintainer command proves that every entry is rejected by the checks
//! listed here, each in a fresh process and `LAB_REPEAT` times, with a
//! message that carries the hint listed here, by behaviour and never by a
//! harness timeout. The table in docs/MAINTAINERS.md is generated from this
//! list.

use cache_aside_lab::labkit::testkit::Answers;

use super::reference;

/// One catalogued mistake.
pub struct Mistake {
    /// The file, without `.rs`.
    pub name: &'static str,
    pub answers: Answers,
    /// The file's text, for its `//!` doc.
    pub source: &'static str,
    /// Graded checks that must reject it.
    pub caught_by: &'static [&'static str],
    /// Text the rejection message must contain: the hint the learner sees.
    pub hint: &'static str,
    /// A race or a herd: the reason its rejection's timeline gives for the
    /// marked step (the one that made the outcome wrong) contains this.
    pub marks: Option<&'static str>,
}

mod absence_cached_for_a_minute;
mod absence_cached_for_cache_ttl;
mod absence_never_cached;
mod absence_remembered_in_process;
mod absence_ttl_with_jitter;
mod always_reads_the_primary;
mod always_reads_the_replica;
mod backoff_without_a_cap;
mod double_check_exists_then_get;
mod exists_then_get;
mod failed_marker_look_means_no_write;
mod failed_marker_set_ignored;
mod fill_error_reads_as_none;
mod fill_ignores_lease;
mod fills_a_different_key;
mod fills_from_the_replica_despite_the_marker;
mod hit_refreshes_the_ttl;
mod invalidates_before_writing;
mod invalidates_the_wrong_key;
mod leader_never_fills;
mod lease_error_read_as_busy;
mod lease_taken_for_cache_ttl;
mod leased_fill_ttl_in_milliseconds;
mod leased_postgres_error_reads_as_none;
mod leased_update_invalidates_first;
mod leased_update_refills_with_set;
mod lock_dropped_before_query;
mod lock_released_before_fill;
mod lock_striped_by_id;
mod lock_without_double_check;
mod marker_in_process_memory;
mod marker_looked_for_before_the_lease;
mod marker_only_for_cached_users;
mod marker_rechecked_before_the_fill;
mod marker_set_after_invalidating;
mod marker_set_only_if_absent;
mod marker_ttl_of_the_usual_lag;
mod marker_ttl_shorter_than_the_lag;
mod missing_user_placeholder;
mod never_fills_cache;
mod never_reads_cache;
mod one_global_lock;
mod one_marker_for_all_users;
mod only_the_look_falls_back;
mod polls_every_lease_ttl;
mod postgres_error_reads_as_none;
mod primary_failure_falls_back_to_the_replica;
mod primary_row_cached_briefly;
mod primary_row_filled_without_the_lease;
mod process_local_cache;
mod read_fails_when_redis_fails;
mod refused_fill_returns_none;
mod replica_fill_not_guarded;
mod replicated_absence_cached_for_cache_ttl;
mod replicated_exists_then_get;
mod replicated_hit_refreshes_the_ttl;
mod replicated_read_hides_postgres_errors;
mod replicated_update_deletes_value_not_lease;
mod replicated_update_ignores_failed_invalidation;
mod replicated_update_invalidates_first;
mod singleflight_absence_cached_for_cache_ttl;
mod singleflight_fill_error_reads_as_none;
mod singleflight_memo_in_process;
mod singleflight_without_lock;
mod sql_built_with_format;
mod ttl_far_above_cache_ttl;
mod ttl_from_the_wrong_constant;
mod ttl_in_milliseconds;
mod update_deletes_value_not_lease;
mod update_error_swallowed;
mod update_ignores_failed_delete;
mod update_never_invalidates;
mod update_skipped_when_plan_unchanged;
mod update_swallows_failed_invalidation;
mod waiters_read_the_replica;
mod waiters_return_none;
mod waiters_skip_to_postgres;
mod waiters_trust_the_fill;
mod waits_forever_on_dead_holder;
mod write_through_set;

/// `file::function[, function…] => [checks that reject it], "hint"[,
/// marks "reason"];`: `marks` for a race or a herd, whose timeline marks
/// the culprit step with a reason containing that text.
macro_rules! catalogue {
    (@marks) => { None };
    (@marks $marks:literal) => { Some($marks) };
    ($( $file:ident :: $($function:ident),+ => [$($check:ident),+ $(,)?], $hint:literal $(, marks $marks:literal)?; )*) => {
        pub const ALL: &[Mistake] = &[ $( Mistake {
            name: stringify!($file),
            answers: Answers {
                name: concat!("mistakes::", stringify!($file)),
                $( $function: $file::$function, )+
                ..reference::ANSWERS
            },
            source: include_str!(concat!(stringify!($file), ".rs")),
            caught_by: &[$(stringify!($check)),+],
            hint: $hint,
            marks: catalogue!(@marks $($marks)?),
        } ),* ];
    };
}

catalogue! {
    never_reads_cache::get_user_profile => [part1_a_second_read_is_a_cache_hit_with_zero_statements],
        "return what you find there";
    never_fills_cache::get_user_profile => [part1_a_cold_read_fills_the_cache_with_a_ttl, part1_a_second_read_is_a_cache_hit_with_zero_statements],
        "store what you read under user_key(id)";
    fills_a_different_key::get_user_profile => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "store what you read under user_key(id)";
    ttl_far_above_cache_ttl::get_user_profile => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "pass CACHE_TTL to set_json";
    missing_user_placeholder::get_user_profile => [part1_a_missing_user_reads_as_none],
        "never invent a placeholder user";
    update_never_invalidates::update_user_plan => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "remove the user's key";
    invalidates_the_wrong_key::update_user_plan => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "remove the user's key";
    invalidates_before_writing::update_user_plan => [part1_a_read_during_an_update_leaves_nothing_stale],
        "which order of UPDATE and invalidation", marks "before the UPDATE committed";
    write_through_set::update_user_plan => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "do not overwrite it";
    ttl_in_milliseconds::get_user_profile => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "pass CACHE_TTL to set_json";
    ttl_from_the_wrong_constant::get_user_profile => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "pass CACHE_TTL to set_json";
    absence_cached_for_a_minute::get_user_profile => [part1_a_user_created_after_a_miss_shows_up_within_absent_ttl],
        "for ABSENT_TTL at most";
    absence_remembered_in_process::get_user_profile => [part1_a_user_created_after_a_miss_shows_up_within_absent_ttl],
        "never in process memory";
    postgres_error_reads_as_none::get_user_profile => [part1_a_postgres_error_is_an_err_never_none],
        "a failed query says nothing of the sort";
    update_ignores_failed_delete::update_user_plan => [part1_an_update_whose_invalidation_fails_returns_an_err],
        "propagate the error of the removal";
    process_local_cache::get_user_profile, update_user_plan => [part1_a_write_by_another_process_is_seen_by_the_next_read],
        "keep cached users in Redis only";
    exists_then_get::get_user_profile => [part1_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry],
        "read it once with get_json", marks "gone by this GET";
    fill_error_reads_as_none::get_user_profile => [part1_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry],
        "a fill that failed does not make the user missing";
    hit_refreshes_the_ttl::get_user_profile => [part1_a_hit_during_an_update_leaves_nothing_stale],
        "a hit has nothing to write", marks "put back the copy";
    absence_ttl_with_jitter::get_user_profile => [part1_a_user_created_after_a_miss_shows_up_within_absent_ttl],
        "no jitter above it";
    update_skipped_when_plan_unchanged::update_user_plan => [part1_an_update_whose_invalidation_fails_returns_an_err],
        "even one that changed no row";
    sql_built_with_format::update_user_plan => [part1_hostile_plans_are_rejected_or_stored_verbatim_never_executed],
        "pass the plan as a parameter ($1)";
    update_error_swallowed::update_user_plan => [part1_a_plan_outside_the_check_constraint_is_an_error],
        "propagate lab.db.execute's error";
    singleflight_without_lock::get_user_profile_singleflight => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "hold it until the cache is filled", marks "a second query";
    lock_without_double_check::get_user_profile_singleflight => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "what should it look at before it queries", marks "did not look at the cache again";
    leader_never_fills::get_user_profile_singleflight => [part2_single_reads_still_fill_hit_and_miss, part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "must also fill the cache";
    one_global_lock::get_user_profile_singleflight => [part2_a_slow_fill_of_one_key_does_not_delay_another_key],
        "one lock per key";
    lock_dropped_before_query::get_user_profile_singleflight => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "hold it until the cache is filled", marks "a second query";
    lock_released_before_fill::get_user_profile_singleflight => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "hold it until the cache is filled", marks "a second query";
    waiters_trust_the_fill::get_user_profile_singleflight => [part2_all_fifty_get_the_user_even_when_the_first_fill_is_gone],
        "never None";
    singleflight_fill_error_reads_as_none::get_user_profile_singleflight => [part2_single_reads_still_fill_hit_and_miss],
        "a fill that failed does not make the user missing";
    lock_striped_by_id::get_user_profile_singleflight => [part2_a_slow_fill_of_one_key_does_not_delay_another_key],
        "a lock shared by several keys";
    double_check_exists_then_get::get_user_profile_singleflight => [part2_all_fifty_get_the_user_even_when_the_first_fill_is_gone],
        "read it once with get_json", marks "gone by this GET";
    singleflight_memo_in_process::get_user_profile_singleflight => [part2_a_write_by_another_process_is_seen_by_the_next_read],
        "keep cached users in Redis only";
    singleflight_absence_cached_for_cache_ttl::get_user_profile_singleflight => [part2_a_user_created_after_a_miss_shows_up_within_absent_ttl],
        "for ABSENT_TTL at most";
    waiters_return_none::get_user_profile_singleflight => [part2_all_fifty_concurrent_readers_get_the_user],
        "never gives up with None";
    fill_ignores_lease::get_user_profile_leased => [part3_the_stale_set_race_leaves_no_stale_value],
        "fill only with fill_with_lease", marks "before the UPDATE committed";
    update_deletes_value_not_lease::update_user_plan_leased => [part3_the_stale_set_race_leaves_no_stale_value],
        "invalidate with lab.cache.invalidate", marks "before the UPDATE committed";
    waiters_skip_to_postgres::get_user_profile_leased => [part3_a_herd_across_three_processes_sends_one_statement, part3_a_herd_on_a_missing_user_sends_one_statement],
        "wait", marks "a second query";
    absence_never_cached::get_user_profile_leased => [part3_a_herd_on_a_missing_user_sends_one_statement],
        "cache the absence too";
    absence_cached_for_cache_ttl::get_user_profile_leased => [part3_a_herd_on_a_missing_user_sends_one_statement],
        "use ABSENT_TTL, not CACHE_TTL";
    waits_forever_on_dead_holder::get_user_profile_leased => [part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl],
        "keep retrying try_lease";
    backoff_without_a_cap::get_user_profile_leased => [part3_waiters_get_the_value_within_500_ms_of_the_fill],
        "capped well under 500 ms";
    lease_error_read_as_busy::get_user_profile_leased => [part3_with_any_one_redis_call_failing_a_read_is_served_from_postgres],
        "is not somebody else holding the lease";
    leased_update_refills_with_set::update_user_plan_leased => [part3_two_overlapping_updates_leave_nothing_stale],
        "fill only through a lease", marks "over a later update";
    only_the_look_falls_back::get_user_profile_leased => [part3_with_any_one_redis_call_failing_a_read_is_served_from_postgres],
        "every cache call can fail, not only the first";
    read_fails_when_redis_fails::get_user_profile_leased => [part3_with_redis_failing_a_read_is_served_from_postgres],
        "when a cache call fails, read Postgres";
    update_swallows_failed_invalidation::update_user_plan_leased => [part3_with_redis_failing_an_update_writes_postgres_and_returns_an_error],
        "propagate the error of lab.cache.invalidate";
    leased_fill_ttl_in_milliseconds::get_user_profile_leased => [part3_leased_reads_fill_hit_and_miss],
        "a TTL of the order of CACHE_TTL";
    leased_postgres_error_reads_as_none::get_user_profile_leased => [part3_a_postgres_error_is_an_err_never_none],
        "a failed query says nothing of the sort";
    refused_fill_returns_none::get_user_profile_leased => [part3_the_stale_set_race_leaves_no_stale_value],
        "return the row you read";
    leased_update_invalidates_first::update_user_plan_leased => [part3_a_read_during_a_leased_update_leaves_nothing_stale],
        "which order of UPDATE and invalidation", marks "before the UPDATE committed";
    polls_every_lease_ttl::get_user_profile_leased => [part3_waiters_get_the_value_within_500_ms_of_the_fill],
        "look again every few milliseconds";
    lease_taken_for_cache_ttl::get_user_profile_leased => [part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl],
        "a lease lasts LEASE_TTL";
    always_reads_the_replica::get_user_profile_replicated => [part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags],
        "read the primary meanwhile", marks "the replica";
    always_reads_the_primary::get_user_profile_replicated => [part4_a_cold_read_with_no_recent_write_is_served_by_the_replica, part4_reads_return_to_the_replica_within_marker_ttl_of_a_write],
        "the replica is up to date";
    marker_set_after_invalidating::update_user_plan_replicated => [part4_a_read_during_an_update_leaves_nothing_stale],
        "what must already be in place before the cached copy goes", marks "the replica";
    marker_ttl_shorter_than_the_lag::update_user_plan_replicated => [part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags],
        "lasting longer than the replica can lag", marks "the replica";
    fills_from_the_replica_despite_the_marker::get_user_profile_replicated => [part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags],
        "cache what you return", marks "the replica";
    marker_looked_for_before_the_lease::get_user_profile_replicated => [part4_a_read_whose_lease_request_waits_out_an_update_caches_nothing_stale],
        "take the lease first, then look", marks "the replica";
    replicated_absence_cached_for_cache_ttl::get_user_profile_replicated => [part4_a_user_created_after_a_miss_shows_up_within_absent_ttl],
        "for ABSENT_TTL at most";
    primary_failure_falls_back_to_the_replica::get_user_profile_replicated => [part4_a_failed_redis_call_never_makes_a_read_after_an_update_stale],
        "the lagging replica is no substitute";
    replicated_hit_refreshes_the_ttl::get_user_profile_replicated => [part4_a_hit_during_an_update_leaves_nothing_stale],
        "a hit has nothing to write", marks "put back the copy";
    marker_in_process_memory::get_user_profile_replicated, update_user_plan_replicated => [part4_after_an_update_in_another_process_reads_here_have_the_new_plan],
        "never reaches another process", marks "the replica";
    replicated_update_invalidates_first::update_user_plan_replicated => [part4_a_read_during_an_update_leaves_nothing_stale, part4_a_read_while_the_update_waits_to_write_leaves_nothing_stale],
        "before the UPDATE had run", marks "before the UPDATE committed";
    replica_fill_not_guarded::get_user_profile_replicated => [part4_a_read_whose_replica_select_waits_out_an_update_caches_nothing_stale, part4_a_read_whose_fill_waits_out_an_update_caches_nothing_stale],
        "a fill must be refused", marks "the replica";
    marker_rechecked_before_the_fill::get_user_profile_replicated => [part4_a_read_whose_fill_waits_out_an_update_caches_nothing_stale],
        "a fill must be refused", marks "the replica";
    replicated_update_deletes_value_not_lease::update_user_plan_replicated => [part4_a_read_whose_replica_select_waits_out_an_update_caches_nothing_stale, part4_a_read_whose_fill_waits_out_an_update_caches_nothing_stale],
        "take that right away", marks "the replica";
    replicated_read_hides_postgres_errors::get_user_profile_replicated => [part4_a_postgres_error_is_an_err_never_none],
        "Ok(None) says \"no such user\"";
    replicated_update_ignores_failed_invalidation::update_user_plan_replicated => [part4_an_update_whose_invalidation_fails_returns_an_err],
        "propagate the error of the removal";
    one_marker_for_all_users::get_user_profile_replicated, update_user_plan_replicated => [part4_a_write_to_one_user_leaves_reads_of_other_users_on_the_replica],
        "must name the user written";
    primary_row_cached_briefly::get_user_profile_replicated => [part4_every_read_after_an_update_has_the_new_plan_while_the_replica_lags],
        "fill it for CACHE_TTL";
    marker_only_for_cached_users::update_user_plan_replicated => [part4_every_read_after_an_update_of_a_user_nobody_had_read_has_the_new_plan],
        "whatever the cache holds", marks "the replica";
    marker_set_only_if_absent::update_user_plan_replicated => [part4_every_read_after_a_second_update_within_marker_ttl_has_the_newest_plan],
        "never only if none is there", marks "the replica";
    marker_ttl_of_the_usual_lag::update_user_plan_replicated => [part4_every_read_has_the_new_plan_while_the_replica_lags_longer_than_usual],
        "not as long as it usually lags", marks "the replica";
    waiters_read_the_replica::get_user_profile_replicated => [part4_readers_that_miss_together_right_after_an_update_all_get_the_new_plan],
        "wait for its value", marks "the replica";
    primary_row_filled_without_the_lease::get_user_profile_replicated => [part4_a_read_right_after_a_write_whose_fill_waits_out_another_update_caches_nothing_stale],
        "whichever database a miss reads", marks "before the UPDATE committed";
    replicated_exists_then_get::get_user_profile_replicated => [part4_an_existing_user_never_reads_as_none_whatever_happens_to_its_entry],
        "read it once with get_json", marks "gone by this GET";
    failed_marker_look_means_no_write::get_user_profile_replicated => [part4_a_failed_redis_call_never_makes_a_read_after_an_update_stale],
        "a look that failed says nothing of the sort";
    failed_marker_set_ignored::update_user_plan_replicated => [part4_a_failed_redis_call_never_makes_a_read_after_an_update_stale],
        "a sign that could not be left protects nobody";
}

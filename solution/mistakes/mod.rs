//! The catalogue of classic mistakes. Each file is one complete set of
//! learner answers with exactly one realistic mistake: it overrides the one
//! function that is wrong, and the trait's defaults supply the reference for
//! the other four. Its `//!` doc says what the mistake is and why it hurts in
//! production.
//!
//! `cargo test --features solution -- --include-ignored` proves that every
//! entry is rejected by the checks listed here, with a message that carries
//! the hint listed here, by behaviour and never by a harness timeout
//! (see `tests/catalogue/mod.rs`). The README's table is generated from this
//! list.

use crate::checks::Answers;

pub struct Mistake {
    /// The file, without `.rs`.
    pub name: &'static str,
    pub answers: &'static dyn Answers,
    /// The file's text, for its `//!` doc.
    pub source: &'static str,
    /// Graded tests that must reject it.
    pub caught_by: &'static [&'static str],
    /// Text the rejection message must contain: the hint the learner sees.
    pub hint: &'static str,
}

impl Mistake {
    /// The `//!` doc of the file, as one line.
    pub fn doc(&self) -> String {
        let lines: Vec<&str> = self
            .source
            .lines()
            .map_while(|l| l.strip_prefix("//!"))
            .map(str::trim)
            .collect();
        lines.join(" ")
    }
}

macro_rules! catalogue {
    ($( $file:ident :: $ty:ident => [$($test:ident),+ $(,)?], $hint:literal; )*) => {
        $( mod $file; )*
        pub const ALL: &[Mistake] = &[ $( Mistake {
            name: stringify!($file),
            answers: &$file::$ty,
            source: include_str!(concat!(stringify!($file), ".rs")),
            caught_by: &[$(stringify!($test)),+],
            hint: $hint,
        } ),* ];
        $(
            /// Proves that this mistake is rejected by its checks, with its hint.
            #[test]
            fn $file() {
                crate::catalogue::prove(ALL.iter().find(|m| m.name == stringify!($file)).expect("listed"));
            }
        )*
    };
}

catalogue! {
    never_reads_cache::NeverReadsCache => [part1_a_second_read_is_a_cache_hit_with_zero_statements],
        "return the cached value before querying Postgres";
    never_fills_cache::NeverFillsCache => [part1_a_cold_read_fills_the_cache_with_a_ttl, part1_a_second_read_is_a_cache_hit_with_zero_statements],
        "lab.cache.set_json(&user_key(id), &user, CACHE_TTL)";
    fills_a_different_key::FillsADifferentKey => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "set_json(&user_key(id)";
    ttl_far_above_cache_ttl::TtlFarAboveCacheTtl => [part1_a_cold_read_fills_the_cache_with_a_ttl],
        "pass CACHE_TTL to set_json";
    missing_user_placeholder::MissingUserPlaceholder => [part1_a_missing_user_reads_as_none],
        "never invent a placeholder user";
    update_never_invalidates::UpdateNeverInvalidates => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "delete the user's key";
    invalidates_the_wrong_key::InvalidatesTheWrongKey => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "delete the user's key";
    invalidates_before_writing::InvalidatesBeforeWriting => [part1_an_update_writes_first_then_invalidates],
        "write Postgres first, then invalidate";
    write_through_set::WriteThroughSet => [part1_an_update_invalidates_and_the_next_read_has_the_new_plan],
        "do not overwrite it";
    sql_built_with_format::SqlBuiltWithFormat => [part1_hostile_plans_are_rejected_or_stored_verbatim_never_executed],
        "pass the plan as a parameter ($1)";
    update_error_swallowed::UpdateErrorSwallowed => [part1_a_plan_outside_the_check_constraint_is_an_error],
        "propagate lab.db.execute's error";
    singleflight_without_lock::SingleflightWithoutLock => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "hold it across the query and the fill";
    lock_without_double_check::LockWithoutDoubleCheck => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "check the cache again before querying";
    leader_never_fills::LeaderNeverFills => [part2_single_reads_behave_like_part1, part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "fill";
    one_global_lock::OneGlobalLock => [part2_a_slow_fill_of_one_key_does_not_delay_another_key],
        "lock per key";
    lock_dropped_before_query::LockDroppedBeforeQuery => [part2_fifty_concurrent_cold_reads_send_exactly_one_statement],
        "hold it across the query and the fill";
    waiters_return_none::WaitersReturnNone => [part2_all_fifty_concurrent_readers_get_the_user],
        "never gives up with None";
    fill_ignores_lease::FillIgnoresLease => [part3_the_stale_set_race_leaves_no_stale_value],
        "fill only with fill_with_lease";
    update_deletes_value_not_lease::UpdateDeletesValueNotLease => [part3_the_stale_set_race_leaves_no_stale_value],
        "invalidate with lab.cache.invalidate";
    waiters_skip_to_postgres::WaitersSkipToPostgres => [part3_a_herd_across_three_processes_sends_one_statement, part3_a_herd_on_a_missing_user_sends_one_statement],
        "wait";
    absence_never_cached::AbsenceNeverCached => [part3_a_herd_on_a_missing_user_sends_one_statement],
        "cache the absence too";
    absence_cached_for_cache_ttl::AbsenceCachedForCacheTtl => [part3_a_herd_on_a_missing_user_sends_one_statement],
        "use ABSENT_TTL, not CACHE_TTL";
    waits_forever_on_dead_holder::WaitsForeverOnDeadHolder => [part3_a_dead_lease_holder_delays_readers_by_at_most_lease_ttl],
        "keep retrying try_lease";
    read_fails_when_redis_fails::ReadFailsWhenRedisFails => [part3_with_redis_failing_a_read_is_served_from_postgres],
        "when a cache call fails, read Postgres";
    update_swallows_failed_invalidation::UpdateSwallowsFailedInvalidation => [part3_with_redis_failing_an_update_writes_postgres_and_returns_an_error],
        "propagate the error of lab.cache.invalidate";
}

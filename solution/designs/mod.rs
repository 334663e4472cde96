//! The catalogue of correct designs: the mirror of `mistakes/`. Each file is
//! a correct answer whose design differs from the reference (its own
//! process-global state, another way of waiting, negative caching early…),
//! and defines only the functions that make it so; the entry takes the rest
//! from the reference.
//!
//! The maintainer command proves that every entry passes every check of its
//! part, each check in a fresh process and `LAB_REPEAT` times: the grader
//! must accept any correct answer, not just the reference's shape.

use cache_aside_lab::labkit::testkit::Answers;

use super::reference;

/// One correct design.
pub struct Design {
    /// The file, without `.rs`.
    pub name: &'static str,
    /// The part whose checks it must pass.
    pub part: u8,
    pub answers: Answers,
    /// The file's text, for its `//!` doc.
    pub source: &'static str,
}

mod condvar_waiters;
mod double_delete;
mod go_style_inflight_map;
mod jitter_both_ways;
mod lease_backoff_local_lock;
mod lsn_check;
mod marker_after_the_write;
mod negative_caching;
mod python_lock_map;
mod returning_and_jitter;
mod singleflight_by_lease;
mod try_lock_polling;
mod update_refills_through_a_lease;

/// `part N: file { functions it defines };`
macro_rules! catalogue {
    ($( part $part:literal : $file:ident { $($function:ident),+ $(,)? }; )*) => {
        pub const ALL: &[Design] = &[ $( Design {
            name: stringify!($file),
            part: $part,
            answers: Answers {
                name: concat!("designs::", stringify!($file)),
                $( $function: $file::$function, )+
                ..reference::ANSWERS
            },
            source: include_str!(concat!(stringify!($file), ".rs")),
        } ),* ];
    };
}

catalogue! {
    part 1: negative_caching { get_user_profile };
    part 1: returning_and_jitter { get_user_profile, update_user_plan };
    part 1: jitter_both_ways { get_user_profile };
    part 1: double_delete { update_user_plan };
    part 2: go_style_inflight_map { get_user_profile_singleflight };
    part 2: python_lock_map { get_user_profile_singleflight };
    part 2: condvar_waiters { get_user_profile_singleflight };
    part 2: try_lock_polling { get_user_profile_singleflight };
    part 2: singleflight_by_lease { get_user_profile_singleflight };
    part 3: lease_backoff_local_lock { get_user_profile_leased };
    part 3: update_refills_through_a_lease { update_user_plan_leased };
    part 4: lsn_check { get_user_profile_replicated, update_user_plan_replicated };
    part 4: marker_after_the_write { update_user_plan_replicated };
}

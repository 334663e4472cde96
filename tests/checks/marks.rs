//! The step that made an outcome wrong, marked in the check's timeline
//! (`← cached the row read before the UPDATE committed`), so that a failure
//! shows the race, not only its result. The finders are testkit's
//! (`testkit::marks`, shared with `solution -- --compare`); here is what
//! the checks tell them: which herd should send one SELECT ([`watch_herd`])
//! and from when reads of the replica are judged ([`watch_lagging_reads`]).
//! Stale copies and looks that changed their mind are judged on every check.

use std::sync::Mutex;

use cache_aside_lab::labkit::testkit::marks;
use cache_aside_lab::labkit::testkit::timeline;

/// Herds watched: (user, from, to on the timeline). Only the last herd of
/// a user counts: a check that runs its herd again (a busy machine) judges
/// the last one.
static HERDS: Mutex<Vec<(i32, u64, u64)>> = Mutex::new(Vec::new());
/// The user of the next herd [`readers`](super::readers) releases, if the
/// check expects one SELECT of it.
static NEXT_HERD: Mutex<Option<i32>> = Mutex::new(None);

/// Users whose reads of the replica are watched from a time on.
static LAGGING: Mutex<Vec<(i32, u64)>> = Mutex::new(Vec::new());

/// From now on (an update of `user_id` has returned), a read of the
/// replica that returns another plan than the update's is the culprit.
pub fn watch_lagging_reads(user_id: i32) {
    if let Some(now) = timeline::now_us() {
        LAGGING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((user_id, now));
    }
}

/// The next herd of readers the check releases should send one SELECT of
/// `user_id` in all.
pub fn watch_herd(user_id: i32) {
    *NEXT_HERD.lock().unwrap_or_else(|e| e.into_inner()) = Some(user_id);
}

/// A herd ran from `from` to `to` (see [`watch_herd`]).
pub fn herd_ran(from: u64, to: u64) {
    let Some(user) = NEXT_HERD.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let mut herds = HERDS.lock().unwrap_or_else(|e| e.into_inner());
    herds.retain(|(u, _, _)| *u != user);
    herds.push((user, from, to));
}

/// Marks the culprit steps in this process's timeline; run once the check
/// is over.
pub fn apply() {
    let events = timeline::snapshot();
    let lagging = LAGGING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let herds = HERDS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // `mark` sees the events in the same (time) order as the snapshot.
    for (i, why) in marks::culprits(&events, &lagging, &herds) {
        timeline::mark(|_, j| j == i, &why);
    }
}

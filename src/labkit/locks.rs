//! The map behind [`key_lock`](crate::key_lock): one mutex per key, and no
//! entry outlives its last user.
//!
//! Go's `singleflight` deletes a call from its map when the call finishes, so
//! the map only ever holds keys that are in flight. `key_lock` hands out an
//! `Arc<Mutex<()>>` and cannot see when the caller is done with it, so the map
//! keeps a `Weak` per key instead: while anyone holds (or waits for) the lock,
//! the `Weak` upgrades and everybody shares one mutex; once the last `Arc` is
//! dropped the entry is finished, and the next call to `get` sweeps it out.
//! The map therefore never holds more than the keys in flight plus the ones
//! finished since the last call: bounded by concurrency, not by key count.
//!
//! Grader only: tests run in parallel in one process, each with a private
//! key space, so their key locks must be private too (or one test's herd on
//! `user:1` would queue behind another's). The grader runs learner code
//! inside [`KeyLocks::scoped`], named after its lab; outside a scope every
//! caller shares one space, as in production.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

type Entries = HashMap<(Arc<str>, String), Weak<Mutex<()>>>;

#[derive(Default)]
pub struct KeyLocks {
    map: Mutex<Entries>,
}

thread_local! {
    static SCOPE: RefCell<Arc<str>> = RefCell::new(Arc::from(""));
}

impl KeyLocks {
    /// The process-wide map used by `key_lock`.
    pub fn global() -> &'static KeyLocks {
        static GLOBAL: OnceLock<KeyLocks> = OnceLock::new();
        GLOBAL.get_or_init(KeyLocks::default)
    }

    /// Grader only: runs `f` with this thread's key locks in their own space.
    pub fn scoped<T>(scope: &str, f: impl FnOnce() -> T) -> T {
        let previous = SCOPE.with(|s| s.replace(Arc::from(scope)));
        let result = f();
        SCOPE.with(|s| *s.borrow_mut() = previous);
        result
    }

    /// The lock for `key`: the same mutex for every caller while any of them
    /// still holds it.
    pub fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let id = (SCOPE.with(|s| s.borrow().clone()), key.to_string());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Sweep finished entries. The map holds only in-flight keys, so this
        // is a handful of entries even under a thousand-thread stampede.
        map.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = map.get(&id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(Mutex::new(()));
        map.insert(id, Arc::downgrade(&lock));
        lock
    }

    /// How many entries have a key matching `pred`, and how many of those
    /// are finished.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> (usize, usize) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let matching = map.iter().filter(|((_, k), _)| pred(k));
        let (mut all, mut finished) = (0, 0);
        for (_, lock) in matching {
            all += 1;
            if lock.strong_count() == 0 {
                finished += 1;
            }
        }
        (all, finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_holders_share_one_mutex_and_finished_entries_are_swept() {
        let locks = KeyLocks::default();
        let a = locks.get("k");
        let b = locks.get("k");
        assert!(
            Arc::ptr_eq(&a, &b),
            "two holders of one key must share a mutex"
        );
        assert!(!Arc::ptr_eq(&a, &locks.get("other")));
        drop((a, b));
        let _c = locks.get("probe");
        assert_eq!(locks.count(|k| k == "k" || k == "other"), (0, 0));
    }

    #[test]
    fn scopes_do_not_share_locks() {
        let locks = KeyLocks::default();
        let outer = locks.get("user:1");
        let inner = KeyLocks::scoped("lab_a", || locks.get("user:1"));
        assert!(!Arc::ptr_eq(&outer, &inner));
        assert!(
            Arc::ptr_eq(&outer, &locks.get("user:1")),
            "the scope ends with the closure"
        );
    }
}

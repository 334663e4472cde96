//! The culprit finders: which step of a timeline made an outcome wrong,
//! and why (`cached the row read before the UPDATE committed`). Pure
//! functions over recorded events, shared by the grader (which marks them
//! under a failure) and the `solution` binary's `--compare`.
//!
//! - [`stale`]: the last value stored under `user:N` that nothing replaced
//!   or removed carries another plan than the last UPDATE of user N wrote
//!   (unless a cache call of that update failed afterwards: it may report
//!   the error and leave the copy). It is the stale-set race, the read
//!   during an update, a hit put back, an update over a later one, a fill
//!   from a lagging replica: whatever the interleaving, the copy left
//!   behind.
//! - [`looked_twice`]: a GET that missed right after its actor's EXISTS
//!   had found the entry (it went in between).
//! - [`lagging_read`]: a read of the replica, after an update of that user
//!   returned, that got another plan than the update's.
//! - [`herd`]: the second SELECT of a herd's user that should send one,
//!   and whether the cache was already filled when it was sent.
//!
//! A correct answer's timeline has no culprit: the maintainer command
//! asserts it for the reference and every design, and asserts one for
//! every catalogued race or herd.

use super::timeline::{Call, Event, Reply};

/// Why a read of the lagging replica is a culprit.
pub const LAGGING_WHY: &str = "read the replica, which did not have the UPDATE yet";

/// Every culprit in `events`: [`stale`] and [`looked_twice`] always,
/// [`lagging_read`] for each (user, from) of `lagging`, and [`herd`] for
/// each (user, from, to) of `herds`. Indices are into `events`.
pub fn culprits(
    events: &[Event],
    lagging: &[(i32, u64)],
    herds: &[(i32, u64, u64)],
) -> Vec<(usize, String)> {
    let mut found = stale(events);
    found.extend(looked_twice(events));
    for &(user, from) in lagging {
        found.extend(lagging_read(events, user, from).map(|i| (i, LAGGING_WHY.to_string())));
    }
    for &(user, from, to) in herds {
        found.extend(herd(events, user, from, to));
    }
    found
}

/// Every GET of a user's entry that missed right after the same actor's
/// EXISTS had found it: the entry went between two looks.
pub fn looked_twice(events: &[Event]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(key) = e.key().filter(|k| k.starts_with("user:")) else {
            continue;
        };
        if !matches!((&e.call, &e.reply), (Call::Get(_), Reply::Miss)) {
            continue;
        }
        let before = events[..i]
            .iter()
            .rev()
            .find(|b| b.actor == e.actor && b.space == e.space && b.key() == Some(key));
        if let Some(b) = before
            && matches!((&b.call, &b.reply), (Call::Exists(_), Reply::Found(true)))
        {
            found.push((
                i,
                "EXISTS had just found it; it was gone by this GET".into(),
            ));
        }
    }
    found
}

/// A committed UPDATE of a user, with its plan.
fn committed_update(e: &Event) -> Option<(i32, String)> {
    let changed = matches!(e.reply, Reply::Changed(n) if n > 0);
    (changed && e.verb().as_deref() == Some("UPDATE")).then(|| Some((e.user()?, e.plan()?)))?
}

/// For every user, the stored value left behind with another plan than the
/// last committed UPDATE's, and why it is wrong.
pub fn stale(events: &[Event]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // Per lab (a check may make several) and user.
    let mut users: Vec<(&str, i32)> = events
        .iter()
        .filter_map(|e| Some((e.space.as_str(), committed_update(e)?.0)))
        .collect();
    users.sort_unstable();
    users.dedup();
    for (space, user) in users {
        let key = format!("user:{user}");
        let Some(u) = events.iter().rposition(|e| {
            e.space == space && committed_update(e).is_some_and(|(id, _)| id == user)
        }) else {
            continue;
        };
        // An update whose cache call failed after its write may say so
        // (return the error), and leave the old copy: not a race.
        let failed_after = events[u..].iter().any(|e| {
            e.actor == events[u].actor && e.space == space && matches!(e.reply, Reply::Err(_))
        });
        if failed_after {
            continue;
        }
        let new_plan = events[u].plan().unwrap_or_default();
        let Some(f) = events.iter().rposition(|e| {
            e.space == space && e.key() == Some(key.as_str()) && (e.stored() || e.removed())
        }) else {
            continue;
        };
        let fill = &events[f];
        match fill.plan() {
            Some(old) if fill.stored() && old != new_plan => {
                found.push((f, why_stale(events, f, u, &old, &new_plan)));
            }
            _ => {}
        }
    }
    found
}

/// Whether the actor of the step at `f` had committed an UPDATE before it:
/// an update that refreshes the cache itself.
fn wrote(events: &[Event], f: usize) -> bool {
    let fill = &events[f];
    events[..f]
        .iter()
        .any(|e| e.actor == fill.actor && e.space == fill.space && committed_update(e).is_some())
}

/// The first read of `user` on the replica since `from` that returned
/// another plan than the last UPDATE of that user (in the same lab) wrote.
pub fn lagging_read(events: &[Event], user: i32, from: u64) -> Option<usize> {
    (0..events.len()).find(|&i| {
        let e = &events[i];
        let on_replica = matches!(e.call, Call::Statement { replica: true, .. });
        if e.at_us < from || !on_replica || e.user() != Some(user) {
            return false;
        }
        let written = events[..i].iter().rev().find_map(|u| {
            (u.space == e.space)
                .then(|| committed_update(u))
                .flatten()
                .filter(|(id, _)| *id == user)
        });
        matches!((written, e.plan()), (Some((_, new)), Some(got)) if got != new)
    })
}

/// Why the value stored at `f` is stale, given the UPDATE at `u`.
fn why_stale(events: &[Event], f: usize, u: usize, old: &str, new: &str) -> String {
    let (fill, update) = (&events[f], &events[u]);
    let key = fill.key().unwrap_or_default();
    if f < u {
        let removed_before = events[..f].iter().any(|e| {
            e.space == fill.space && e.actor == update.actor && e.key() == Some(key) && e.removed()
        });
        return if removed_before {
            "cached the row read before the UPDATE committed, after the update had removed the key"
                .into()
        } else {
            format!("still cached when the UPDATE to {new:?} committed, and nothing removed it")
        };
    }
    // Where the filler got the value: its own last read of that plan.
    let source = events[..f]
        .iter()
        .rev()
        .find(|e| e.actor == fill.actor && e.plan().as_deref() == Some(old) && !e.stored());
    match source.map(|s| (&s.call, &s.reply)) {
        Some((_, Reply::Hit(_))) => {
            "put back the copy it had read, which the update had just removed".into()
        }
        Some((Call::Statement { replica: true, .. }, _)) => {
            "cached the replica's row, which did not have the UPDATE yet".into()
        }
        Some((Call::Statement { .. }, Reply::Rows { .. })) if wrote(events, f) => {
            format!("wrote its own plan {old:?} over a later update's {new:?}")
        }
        Some((Call::Statement { .. }, Reply::Rows { .. })) => {
            "cached the row read before the UPDATE committed".into()
        }
        Some((Call::Statement { .. }, _)) => {
            format!("wrote its own plan {old:?} over a later update's {new:?}")
        }
        _ => format!("cached plan {old:?} after the UPDATE to {new:?} had committed"),
    }
}

/// The second SELECT of `user` between `from` and `to` (a herd that should
/// send one), and why it was sent.
pub fn herd(events: &[Event], user: i32, from: u64, to: u64) -> Option<(usize, String)> {
    let key = format!("user:{user}");
    let mut selects = (0..events.len()).filter(|&i| {
        let e = &events[i];
        (from..=to).contains(&e.at_us)
            && e.verb().as_deref() == Some("SELECT")
            && e.user() == Some(user)
    });
    let first = selects.next()?;
    let second = selects.next()?;
    // Judged by when the second query was sent, not when it came back.
    let sent = events[second].sent_us.unwrap_or(events[second].at_us);
    let filled = events[..second]
        .iter()
        .any(|e| e.at_us < sent && e.key() == Some(key.as_str()) && e.stored());
    let why = if filled {
        format!("a second query, after {key} was filled: it did not look at the cache again")
    } else if events[first].at_us < sent {
        format!(
            "a second query, after the first had returned but before {key} was filled: nothing held it back until the fill"
        )
    } else {
        "a second query while the first was still under way: it did not wait for it".into()
    };
    Some((second, why))
}

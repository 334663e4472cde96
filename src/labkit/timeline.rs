//! The timeline: every call an answer made to Postgres and Redis, by whom
//! and when, so that a failed race check can show the interleaving instead
//! of leaving the learner to imagine it.
//!
//! One timeline per process (each check runs in a process of its own), off
//! until [`start`] turns it on: while off, a call costs one relaxed atomic
//! load here, so the benchmark's numbers do not move. While on, a call is
//! recorded only on a thread that plays an actor ([`act_as`]): the grader
//! names the threads it starts (`reader 3`, `writer`, `process 2`), and its
//! own set-up and verification reads, made on unnamed threads, are left
//! out. The grader's parks and releases are recorded as actor `grader` by
//! the hooks.
//!
//! Events are typed ([`Call`], [`Reply`]) so that the grader can look for
//! the step that made an outcome wrong and [`mark`] it; the testkit's
//! `timeline::render` tells the events as lines, herds folded, for a
//! failure message.
//!
//! Processes started by the grader (a remote call, a herd) share the clock:
//! they start their timeline at the parent's [`epoch`], and send their
//! events back for [`merge`].

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Most events one process keeps: the first half, and the last half of
/// the rest (the end of a story matters), so that a runaway loop in an
/// answer cannot eat the memory of the check; the steps between are
/// counted in [`dropped`], and told by a note where they were.
const MAX_EVENTS: usize = 20_000;

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the check began, when it was done (a statement:
    /// when its result came back, or it committed).
    pub at_us: u64,
    /// When it was sent, for a statement (it may take a while).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_us: Option<u64>,
    /// Who: `reader 1`, `writer`, `process 2`, `grader`.
    pub actor: String,
    /// The lab's private space (empty for a shared lab, or a grader's note):
    /// a check that makes several labs keeps their steps apart by it.
    #[serde(default)]
    pub space: String,
    pub call: Call,
    pub reply: Reply,
    /// Set by the grader on the step that made the outcome wrong: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
}

/// What was asked, as the answer asked it (keys without the lab's private
/// prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Call {
    /// A statement: its SQL (at most 200 characters), its parameters as
    /// `Debug` shows them, and whether it went to the replica.
    Statement {
        sql: String,
        params: Vec<String>,
        replica: bool,
    },
    Get(String),
    Exists(String),
    /// `set_json`: the key, the JSON stored (at most 200 characters), the TTL.
    Set {
        key: String,
        value: String,
        ttl_ms: u64,
    },
    Del(String),
    /// `try_lease`.
    Lease {
        key: String,
        ttl_ms: u64,
    },
    /// `fill_with_lease`.
    Fill {
        key: String,
        value: String,
        ttl_ms: u64,
    },
    /// `invalidate`: the value and its lease.
    Invalidate(String),
    /// The grader holds a call on a trap (it says which).
    Holds(String),
    /// The grader lets a held call go on.
    Releases(String),
    /// Anything else worth a line (the grader's own steps).
    Note(String),
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Nothing to say (a SET, a note).
    Done,
    /// A read statement's rows: how many, and the first one's `plan`
    /// column, if it has one.
    Rows {
        n: usize,
        plan: Option<String>,
    },
    /// A write's changed rows.
    Changed(u64),
    /// A GET that found this JSON (at most 200 characters).
    Hit(String),
    Miss,
    /// EXISTS, DEL: whether the key was there.
    Found(bool),
    /// A lease taken, or a fill through a lease stored.
    Granted,
    /// A lease or a fill refused.
    Refused,
    /// The call failed: why, in short.
    Err(String),
}

struct Recorder {
    started: Instant,
    /// The first steps, then (once [`MAX_EVENTS`] / 2 are here) the last.
    events: Vec<Event>,
    tail: std::collections::VecDeque<Event>,
    dropped: usize,
    /// Of `dropped`, those already told by a note in `events`.
    noted: usize,
}

impl Recorder {
    /// Every step kept, in time order, with a note for those lost since
    /// the last time.
    fn gather(&mut self) -> &mut Vec<Event> {
        let mut events = std::mem::take(&mut self.events);
        if self.dropped > self.noted {
            let at_us = self.tail.front().map_or(0, |e| e.at_us);
            let lost = self.dropped - self.noted;
            let note = format!("… {lost} more steps, not kept (too many to record)");
            events.push(note_event(at_us, note));
            self.noted = self.dropped;
        }
        events.extend(self.tail.drain(..));
        self.events = sorted(events);
        &mut self.events
    }
}

fn note_event(at_us: u64, text: String) -> Event {
    Event {
        at_us,
        sent_us: None,
        actor: "grader".into(),
        space: String::new(),
        call: Call::Note(text),
        reply: Reply::Done,
        mark: None,
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

thread_local! {
    static ACTOR: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

fn recorder() -> MutexGuard<'static, Option<Recorder>> {
    RECORDER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts this process's timeline afresh, its clock at zero now.
pub fn start() {
    start_at(Instant::now());
}

/// Starts this process's timeline on another process's clock: `epoch_us`
/// is that process's [`epoch`] (microseconds since the Unix epoch).
pub fn start_shared(epoch_us: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let since = now.saturating_sub(Duration::from_micros(epoch_us));
    let started = Instant::now()
        .checked_sub(since)
        .unwrap_or_else(Instant::now);
    start_at(started);
}

fn start_at(started: Instant) {
    *recorder() = Some(Recorder {
        started,
        events: Vec::new(),
        tail: std::collections::VecDeque::new(),
        dropped: 0,
        noted: 0,
    });
    ON.store(true, Ordering::SeqCst);
}

/// Whether a timeline is being recorded.
pub fn is_on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// When this timeline's clock was at zero, in microseconds since the Unix
/// epoch, for [`start_shared`] in another process; `None` while off.
pub fn epoch() -> Option<u64> {
    let started = recorder().as_ref()?.started;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some((now.saturating_sub(started.elapsed())).as_micros() as u64)
}

/// Microseconds on this timeline's clock now; `None` while off.
pub fn now_us() -> Option<u64> {
    Some(recorder().as_ref()?.started.elapsed().as_micros() as u64)
}

/// Stops recording and returns what was recorded, in time order.
pub fn stop() -> Vec<Event> {
    ON.store(false, Ordering::SeqCst);
    recorder()
        .take()
        .map(|mut r| std::mem::take(r.gather()))
        .unwrap_or_default()
}

/// What was recorded so far, in time order, handed over: recording goes
/// on, from nothing (a child process sends its steps before it may be
/// killed).
pub fn take() -> Vec<Event> {
    recorder()
        .as_mut()
        .map(|r| std::mem::take(r.gather()))
        .unwrap_or_default()
}

/// What was recorded so far, in time order (recording goes on).
pub fn snapshot() -> Vec<Event> {
    recorder()
        .as_mut()
        .map(|r| r.gather().clone())
        .unwrap_or_default()
}

/// Events recorded beyond the cap, and lost.
pub fn dropped() -> usize {
    recorder().as_ref().map_or(0, |r| r.dropped)
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    // Stable: events of one thread at the same microsecond keep their order.
    events.sort_by_key(|e| e.at_us);
    events
}

/// Adds events recorded in another process on this timeline's clock.
pub fn merge(events: Vec<Event>) {
    if let Some(r) = recorder().as_mut() {
        for e in events {
            push(r, e);
        }
    }
}

fn push(r: &mut Recorder, event: Event) {
    if r.events.len() < MAX_EVENTS / 2 {
        r.events.push(event);
        return;
    }
    r.tail.push_back(event);
    if r.tail.len() > MAX_EVENTS / 2 {
        r.tail.pop_front();
        r.dropped += 1;
    }
}

/// Marks the events for which `pick` says so with `why`; returns how many.
/// The grader calls it once the outcome is known (see [`Event::mark`]).
pub fn mark(pick: impl Fn(&[Event], usize) -> bool, why: &str) -> usize {
    let mut guard = recorder();
    let Some(r) = guard.as_mut() else { return 0 };
    let events = r.gather();
    let picked: Vec<usize> = (0..events.len()).filter(|&i| pick(events, i)).collect();
    for &i in &picked {
        events[i].mark = Some(why.to_string());
    }
    picked.len()
}

/// Names the actor the current thread plays until the guard drops (then
/// the previous name is back).
pub fn act_as(name: impl Into<Arc<str>>) -> ActorGuard {
    let previous = ACTOR.with(|a| a.replace(Some(name.into())));
    ActorGuard { previous }
}

/// The actor the current thread plays, if any.
pub fn actor() -> Option<Arc<str>> {
    ACTOR.with(|a| a.borrow().clone())
}

/// Returned by [`act_as`].
#[must_use = "the name lasts as long as the guard"]
pub struct ActorGuard {
    previous: Option<Arc<str>>,
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTOR.with(|a| *a.borrow_mut() = previous);
    }
}

/// Records a call of the current thread's actor on the lab of private
/// space `space`; `what` is only run while the timeline is on and the
/// thread plays an actor.
pub(crate) fn record(space: &str, what: impl FnOnce() -> (Call, Reply)) {
    record_sent(space, None, what);
}

/// [`record`], for a call sent at `sent` (taken only while
/// [`is_on`]).
pub(crate) fn record_sent(
    space: &str,
    sent: Option<Instant>,
    what: impl FnOnce() -> (Call, Reply),
) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let Some(actor) = actor() else { return };
    let (call, reply) = what();
    push_event(space, &actor, sent, call, reply);
}

/// Records a step of `actor` (the grader's own, say), whatever the current
/// thread plays, on no lab in particular.
pub fn record_as(actor: &str, call: Call, reply: Reply) {
    record_in("", actor, call, reply);
}

/// [`record_as`], on the lab of private space `space`.
pub(crate) fn record_in(space: &str, actor: &str, call: Call, reply: Reply) {
    if ON.load(Ordering::Relaxed) {
        push_event(space, actor, None, call, reply);
    }
}

fn push_event(space: &str, actor: &str, sent: Option<Instant>, call: Call, reply: Reply) {
    let mut guard = recorder();
    let Some(r) = guard.as_mut() else { return };
    let at_us = r.started.elapsed().as_micros() as u64;
    let sent_us = sent.map(|s| s.saturating_duration_since(r.started).as_micros() as u64);
    push(
        r,
        Event {
            at_us,
            sent_us,
            actor: actor.to_string(),
            space: space.to_string(),
            call,
            reply,
            mark: None,
        },
    );
}

/// At most 200 characters of `text`, on a character boundary.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A failed call's reply: labkit's error, in at most 80 characters.
pub(crate) fn failed(error: &crate::labkit::Error) -> Reply {
    let text = match error {
        crate::labkit::Error::Injected { .. } => "failed (the grader made it fail)".to_string(),
        other => {
            let text = other.to_string();
            match text.char_indices().nth(80) {
                Some((i, _)) => format!("{}…", &text[..i]),
                None => text,
            }
        }
    };
    Reply::Err(text)
}

/// The reply for a call's result: `ok` tells a success.
pub(crate) fn reply<T>(result: &crate::labkit::Result<T>, ok: impl FnOnce(&T) -> Reply) -> Reply {
    match result {
        Ok(value) => ok(value),
        Err(e) => failed(e),
    }
}

impl Event {
    /// The plan this step carried: a read row's, a cached value's, or the
    /// one an UPDATE wrote (its `plan = $n` parameter).
    pub fn plan(&self) -> Option<String> {
        match (&self.call, &self.reply) {
            (Call::Set { value, .. } | Call::Fill { value, .. }, _) | (_, Reply::Hit(value)) => {
                json_plan(value)
            }
            (Call::Statement { .. }, Reply::Rows { plan, .. }) => plan.clone(),
            (Call::Statement { sql, params, .. }, _) => {
                arg(sql, params, "plan").map(|p| p.trim_matches('"').to_string())
            }
            _ => None,
        }
    }

    /// The user this step was about: `user:N`'s N, or a statement's `id`.
    pub fn user(&self) -> Option<i32> {
        match &self.call {
            Call::Statement { sql, params, .. } => arg(sql, params, "id")?.parse().ok(),
            _ => self.key()?.strip_prefix("user:")?.parse().ok(),
        }
    }

    /// The cache key it was about, if it was a cache call.
    pub fn key(&self) -> Option<&str> {
        match &self.call {
            Call::Get(k) | Call::Exists(k) | Call::Del(k) | Call::Invalidate(k) => Some(k),
            Call::Set { key, .. } | Call::Lease { key, .. } | Call::Fill { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The statement's first word, upper-cased (`SELECT`, `UPDATE`), if it
    /// was one.
    pub fn verb(&self) -> Option<String> {
        match &self.call {
            Call::Statement { sql, .. } => sql
                .split_whitespace()
                .next()
                .map(|w| w.to_ascii_uppercase()),
            _ => None,
        }
    }

    /// Whether the call stored a value that is now in the cache: a SET, or
    /// a fill the lease let through.
    pub fn stored(&self) -> bool {
        matches!(
            (&self.call, &self.reply),
            (Call::Set { .. }, Reply::Done) | (Call::Fill { .. }, Reply::Granted)
        )
    }

    /// Whether the call removed the key (whatever was there).
    pub fn removed(&self) -> bool {
        matches!(
            (&self.call, &self.reply),
            (Call::Del(_), Reply::Found(_)) | (Call::Invalidate(_), Reply::Done)
        )
    }

    /// The step as one line, without the time and the actor.
    pub fn text(&self) -> String {
        let call = match &self.call {
            Call::Statement {
                sql,
                params,
                replica,
            } => {
                let on = if *replica { " on the replica" } else { "" };
                format!("{}{on}", statement(sql, params))
            }
            Call::Get(key) => format!("GET {key}"),
            Call::Exists(key) => format!("EXISTS {key}"),
            Call::Set { key, value, ttl_ms } => {
                format!("SET {key} {} ttl {}", value_text(value), ttl_text(*ttl_ms))
            }
            Call::Del(key) => format!("DEL {key}"),
            Call::Lease { key, .. } => format!("lease on {key}"),
            Call::Fill { key, value, .. } => {
                format!("fill {key} {} through the lease", value_text(value))
            }
            Call::Invalidate(key) => format!("invalidate {key} (value and lease)"),
            Call::Holds(what) | Call::Releases(what) | Call::Note(what) => what.clone(),
        };
        let reply = match &self.reply {
            Reply::Done => return call,
            Reply::Rows { n: 0, .. } => "no row".to_string(),
            Reply::Rows {
                plan: Some(plan), ..
            } => format!("plan {plan:?}"),
            Reply::Rows { n, .. } => format!("{n} row{}", if *n == 1 { "" } else { "s" }),
            Reply::Changed(n) => format!("{n} row{} changed", if *n == 1 { "" } else { "s" }),
            Reply::Hit(value) => format!("hit {}", value_text(value)),
            Reply::Miss => "miss".to_string(),
            Reply::Found(true) => "found".to_string(),
            Reply::Found(false) => "not there".to_string(),
            Reply::Granted if matches!(self.call, Call::Lease { .. }) => "taken".to_string(),
            Reply::Granted => "filled".to_string(),
            Reply::Refused => "refused".to_string(),
            Reply::Err(why) => format!("Err: {why}"),
        };
        format!("{call} → {reply}")
    }
}

/// `"free"` for a cached user, else the JSON (short).
fn value_text(json: &str) -> String {
    match json_plan(json) {
        Some(plan) => format!("{plan:?}"),
        None if json.chars().count() > 40 => {
            let cut: String = json.chars().take(40).collect();
            format!("{cut}…")
        }
        None => json.to_string(),
    }
}

fn json_plan(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(value.get("plan")?.as_str()?.to_string())
}

fn ttl_text(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `SELECT users id=2`, `UPDATE users plan="pro" id=2`: the verb, the
/// table, and each parameter under the column it is compared with or set
/// to (`$n` when the SQL does not say).
fn statement(sql: &str, params: &[String]) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let verb = words
        .first()
        .map_or(String::new(), |w| w.to_ascii_uppercase());
    let table = words
        .windows(2)
        .find(|w| {
            ["FROM", "UPDATE", "INTO"]
                .iter()
                .any(|k| w[0].eq_ignore_ascii_case(k))
        })
        .map(|w| w[1].trim_matches(|c: char| !c.is_alphanumeric() && c != '_'));
    let mut text = verb;
    if let Some(table) = table {
        let _ = write!(text, " {table}");
    }
    for (i, value) in params.iter().enumerate() {
        let name = column_of(sql, i + 1).unwrap_or_else(|| format!("${}", i + 1));
        let _ = write!(text, " {name}={value}");
    }
    text
}

/// The parameter bound to `column` (`column = $n` in the SQL), as recorded.
fn arg<'a>(sql: &str, params: &'a [String], column: &str) -> Option<&'a str> {
    (1..=params.len())
        .find(|&n| column_of(sql, n).is_some_and(|c| c.eq_ignore_ascii_case(column)))
        .map(|n| params[n - 1].as_str())
}

/// The column `$n` is compared with or assigned to (`id = $1`), if the SQL
/// says so plainly.
fn column_of(sql: &str, n: usize) -> Option<String> {
    let placeholder = format!("${n}");
    let at = sql.match_indices(&placeholder).find(|(i, _)| {
        !sql[i + placeholder.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })?;
    let before = sql[..at.0].trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let column: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let column = column.rsplit('.').next()?.trim_matches('"').to_string();
    (!column.is_empty()).then_some(column)
}

//! The event hub: gives each event its id, keeps a bounded in-memory log
//! of recent events, and fans events out to SSE and WebSocket subscribers.
//!
//! Every event is also durable: the journal stamps a batch's events
//! ([`Hub::stamp`]) before committing it, the store writes them in the same
//! transaction as the change (the *event log*, `StoreWrite::Event`), and only
//! then are they broadcast ([`Hub::broadcast`]). Ids are monotonic across
//! restarts and, in a cluster, across leadership terms: the high bits hold a
//! term counter kept in the store (`id = epoch·2⁴⁰ + n`). A resume point
//! older than the in-memory log is served from the store's event log; only
//! events the store no longer has (purged with their session after
//! `retention`, or never persisted by the memory store) are reported as a
//! [`Gap`], never skipped in silence.

use crate::metrics::{Metrics, Stage};
use crate::store::Store;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use tether_engine::{time::format_rfc3339, EventType, Millis, Session};
use tokio::sync::broadcast;

/// How many events the resume log keeps at most…
pub const LOG_CAPACITY: usize = 65_536;
/// …and how many bytes of event JSON (whichever bound is reached first).
pub const LOG_BYTES: usize = 32 * 1024 * 1024;
/// Events published per lock hold in a burst.
const PUBLISH_CHUNK: usize = 4096;
/// The longest a burst waits, in all, for slow subscribers.
const MAX_BURST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An event before publication.
#[derive(Clone, Debug)]
pub struct Draft {
    pub event_type: EventType,
    pub at: Millis,
    /// Shared with the engine's write of the same change.
    pub session: Arc<Session>,
    /// Fields beside `id`, `type`, `at` and `session` (`match`, `signal`, …).
    pub extra: Map<String, Value>,
    /// The engine's `reason` (written among `extra` in key order): kept out
    /// of the map, which cost an allocation or three per end of a mass expiry.
    pub reason: Option<&'static str>,
    /// Who may receive it; `None` means the session's audience.
    pub audience: Option<Vec<String>>,
    /// For deadline-driven ends: the deadline, to measure lateness.
    pub deadline: Option<Millis>,
}

impl Draft {
    pub fn new(event_type: EventType, at: Millis, session: impl Into<Arc<Session>>) -> Draft {
        Draft {
            event_type,
            at,
            session: session.into(),
            extra: Map::new(),
            reason: None,
            audience: None,
            deadline: None,
        }
    }
    pub fn with(mut self, key: &str, value: Value) -> Draft {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl From<tether_engine::Event> for Draft {
    fn from(e: tether_engine::Event) -> Draft {
        let mut d = Draft::new(e.kind, e.at, e.session);
        d.reason = e.reason.map(|r| r.as_str());
        if let Some(p) = e.participant {
            d.extra.insert("participant".into(), serde_json::to_value(p).unwrap_or(Value::Null));
        }
        match (e.kind, e.deadline) {
            // A warning names the deadline it is about; it is not late for it.
            (EventType::Expiring, Some(at)) => {
                d.extra.insert("deadline".into(), Value::String(format_rfc3339(at)));
            }
            _ => d.deadline = e.deadline,
        }
        d
    }
}

/// `{"id","type","at","session":{…},…}` → `{"id","type","at","session_id","kind","status","expires_at"[,"end_reason"],…}`.
fn lean_form(json: &str) -> String {
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(json) else { return json.to_string() };
    if let Some(Value::Object(session)) = event.remove("session") {
        for (from, to) in [("id", "session_id"), ("kind", "kind"), ("status", "status"), ("expires_at", "expires_at")] {
            event.insert(to.into(), session.get(from).cloned().unwrap_or(Value::Null));
        }
        if let Some(reason) = session.get("end_reason").filter(|r| !r.is_null()) {
            event.insert("end_reason".into(), reason.clone());
        }
    }
    Value::Object(event).to_string()
}

/// Appends `value` as JSON. Straight into the buffer: a mass expiry writes
/// a million events, and going through `Value`/`Display` (an allocation and
/// the formatting machinery per field) cost more than the rest of an event.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Appends `,"reason":"…"` (an end reason: no character needs escaping).
fn push_reason(out: &mut Vec<u8>, reason: &str) {
    out.extend_from_slice(b",\"reason\":");
    push_json(out, reason);
}

/// An event's text: `{"id":seq` then `tail` (which closes the object).
fn with_id(seq: u64, tail: &[u8]) -> String {
    let mut out = Vec::with_capacity(tail.len() + 24);
    out.extend_from_slice(b"{\"id\":");
    push_json(&mut out, &seq);
    out.extend_from_slice(tail);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The lean form's text after its id, from the parts of the whole form:
/// `head` (`,"type":…,"at":"…`), the session's changing fields, and
/// `extras` (`,"reason":…}`, the fields beside the session, closing brace
/// included). Written directly rather than through [`lean_form`]: a mass
/// expiry makes a million of them, and re-parsing each whole event cost
/// microseconds apiece.
fn lean_tail(out: &mut Vec<u8>, head: &[u8], session: &Session, extras: &[u8]) {
    out.extend_from_slice(head);
    out.extend_from_slice(b"\",\"session_id\":");
    push_json(out, session.id.as_str());
    out.extend_from_slice(b",\"kind\":");
    push_json(out, session.kind.as_str());
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(session.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"expires_at\":");
    match session.expires_at {
        Some(at) => {
            out.push(b'"');
            out.extend_from_slice(format_rfc3339(at).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    if let Some(reason) = session.end_reason {
        out.extend_from_slice(b",\"end_reason\":\"");
        out.extend_from_slice(reason.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(extras);
}

/// Session snapshots serialised once per commit, by snapshot (the
/// address of the `Arc` the engine shares between a change's write and its
/// events; every key is kept alive by the writes for as long as the map lives).
pub type Records = std::collections::HashMap<*const Session, Arc<str>>;

/// A published event, shared by every subscriber.
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub event_type: EventType,
    pub kind: String,
    pub session_id: String,
    pub audience: Vec<String>,
    /// The whole event as JSON: `{"id","type","at","session",…}`.
    pub json: String,
    /// For deadline-driven ends: the deadline, to measure lateness when broadcast.
    pub deadline: Option<Millis>,
    /// The lean form (`?session=id`): written beside `json` when stamped;
    /// for an event read back from the store's log, made from `json` the
    /// first time a lean subscriber needs it.
    pub lean: std::sync::OnceLock<String>,
}

impl Published {
    /// The event as a subscriber asked for it: whole, or lean (`wire::events::LeanEvent`).
    pub fn text(&self, lean: bool) -> &str {
        if lean {
            self.lean.get_or_init(|| lean_form(&self.json))
        } else {
            &self.json
        }
    }

    /// Whether a subscriber sees it: API keys see all (optionally one kind),
    /// users see their sessions' events, invite tokens only their session's.
    pub fn visible(&self, filter: &Subscriber) -> bool {
        if filter.kind.as_ref().is_some_and(|k| k != &self.kind) {
            return false;
        }
        if let Some(scope) = &filter.session_scope {
            if scope != &self.session_id {
                return false;
            }
        }
        match &filter.user {
            None => true,
            Some(u) => self.audience.iter().any(|a| a == u),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Subscriber {
    /// `None` for an API key.
    pub user: Option<String>,
    pub session_scope: Option<String>,
    pub kind: Option<String>,
}

pub struct Hub {
    inner: Mutex<HubInner>,
    sender: broadcast::Sender<Arc<Published>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn crate::clock::Clock>,
    /// The event log: where resumes older than the in-memory log are read from.
    store: Arc<dyn Store>,
    /// In a cluster, other nodes stamp ids too: an id above this node's head
    /// may be real and not yet tailed here.
    clustered: std::sync::atomic::AtomicBool,
}

struct HubInner {
    next: u64,
    /// `epoch·2⁴⁰`: every id of this term is above it, every id of an earlier term below.
    run_start: u64,
    /// The newest id no longer in the in-memory log (`run_start` until the
    /// first eviction): the log replays exactly the ids above it; the store
    /// has the ones at or below it.
    evicted_through: u64,
    log: VecDeque<Arc<Published>>,
    /// JSON bytes held by the log, so its memory stays bounded with large sessions.
    log_bytes: usize,
}

impl Hub {
    pub fn new(epoch: u64, metrics: Arc<Metrics>, clock: Arc<dyn crate::clock::Clock>, store: Arc<dyn Store>) -> Hub {
        // As deep as the resume log (its slots share the log's events): a subscriber
        // lags only when the log could not catch it up either.
        let (sender, _) = broadcast::channel(LOG_CAPACITY);
        Hub {
            inner: Mutex::new(HubInner {
                next: (epoch << 40) + 1,
                run_start: epoch << 40,
                evicted_through: epoch << 40,
                log: VecDeque::with_capacity(1024),
                log_bytes: 0,
            }),
            sender,
            metrics,
            clock,
            store,
            clustered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This node is one of several sharing the event log (see
    /// [`Hub::subscribe`]), whose newest id is `head`: until it owns the work
    /// it stamps nothing, and its ids are those it reads from the log, so it
    /// stands at `head` rather than at an epoch of its own (which could sort
    /// above the owner's ids and hide them from its subscribers).
    pub fn set_clustered(&self, head: u64) {
        self.clustered.store(true, std::sync::atomic::Ordering::Release);
        let mut inner = self.inner.lock();
        if inner.log.is_empty() {
            inner.next = head + 1;
            inner.run_start = head;
            inner.evicted_through = head;
        }
    }

    fn replay_rules(&self) -> Rules {
        Rules {
            durable: self.store.durable_events(),
            clustered: self.clustered.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// A new term (a cluster node became the owner): ids continue from
    /// `epoch·2⁴⁰`, above every id of earlier terms.
    pub fn begin_term(&self, epoch: u64) {
        let mut inner = self.inner.lock();
        let start = epoch << 40;
        if start >= inner.next {
            inner.next = start + 1;
        }
    }

    /// Stamps drafts with their ids and serialises them, without publishing:
    /// the journal writes them to the event log in the same transaction as
    /// their change, then hands them to [`Hub::broadcast`].
    ///
    /// `records` holds session snapshots already serialised (by the
    /// journal, for the same change's store writes), keyed by snapshot:
    /// an event carrying one of them reuses its text.
    pub fn stamp(&self, drafts: Vec<Draft>, records: &Records) -> Vec<Arc<Published>> {
        if drafts.is_empty() {
            return Vec::new();
        }
        for d in &drafts {
            if let Some(deadline) = d.deadline {
                self.metrics.observe_stage(Stage::Ended, d.at - deadline);
            }
        }
        // Only the ids are taken under the lock (the journal is the one
        // stamper, so reserving them before serialising keeps their order).
        let first = {
            let mut inner = self.inner.lock();
            let first = inner.next;
            inner.next += drafts.len() as u64;
            first
        };
        // Events of one change share their session snapshot: serialise it once.
        let mut last_session: Option<(*const Session, Arc<str>)> = None;
        // The text after the id, reused for every event.
        let mut tail: Vec<u8> = Vec::with_capacity(1024);
        let mut lean: Vec<u8> = Vec::with_capacity(256);
        drafts
            .into_iter()
            .zip(first..)
            .map(|(d, seq)| {
                let session_json = match (&last_session, records.get(&Arc::as_ptr(&d.session))) {
                    (_, Some(json)) => json.clone(),
                    (Some((ptr, json)), None) if *ptr == Arc::as_ptr(&d.session) => json.clone(),
                    _ => {
                        let json: Arc<str> =
                            serde_json::to_string(&*d.session).unwrap_or_else(|_| "null".into()).into();
                        last_session = Some((Arc::as_ptr(&d.session), json.clone()));
                        json
                    }
                };
                tail.clear();
                tail.extend_from_slice(b",\"type\":\"");
                tail.extend_from_slice(d.event_type.as_str().as_bytes());
                tail.extend_from_slice(b"\",\"at\":\"");
                tail.extend_from_slice(format_rfc3339(d.at).as_bytes());
                let head_len = tail.len();
                tail.extend_from_slice(b"\",\"session\":");
                tail.extend_from_slice(session_json.as_bytes());
                let extras_at = tail.len();
                // `reason` in its place among the map's sorted keys (unless the map has one).
                let mut reason = d.reason.filter(|_| !d.extra.contains_key("reason"));
                for (key, value) in &d.extra {
                    if key.as_str() > "reason" {
                        if let Some(r) = reason.take() {
                            push_reason(&mut tail, r);
                        }
                    }
                    tail.push(b',');
                    push_json(&mut tail, key.as_str());
                    tail.push(b':');
                    push_json(&mut tail, value);
                }
                if let Some(r) = reason {
                    push_reason(&mut tail, r);
                }
                tail.push(b'}');
                lean.clear();
                lean_tail(&mut lean, &tail[..head_len], &d.session, &tail[extras_at..]);
                let audience = d.audience.unwrap_or_else(|| d.session.audience());
                Arc::new(Published {
                    seq,
                    event_type: d.event_type,
                    kind: d.session.kind.clone(),
                    session_id: d.session.id.clone(),
                    audience,
                    json: with_id(seq, &tail),
                    deadline: d.deadline,
                    lean: std::sync::OnceLock::from(with_id(seq, &lean)),
                })
            })
            .collect()
    }

    /// Notes that `events` reached `stage` now: the deadline-driven ends
    /// among them are observed in that stage's histogram (`Committed` once
    /// the journal's commit returned, `Written` once a subscriber's stream
    /// took them).
    pub fn reached<'a>(&self, stage: Stage, events: impl IntoIterator<Item = &'a Arc<Published>>) {
        let mut now = None;
        for e in events {
            if let Some(deadline) = e.deadline {
                let now = *now.get_or_insert_with(|| self.clock.now());
                self.metrics.observe_stage(stage, now - deadline);
            }
        }
    }

    /// Broadcasts events that are durable (or are never to be): appends them
    /// to the in-memory log and sends them to every subscriber. Ids must
    /// ascend; a cluster node tailing the owner's event log also moves its
    /// own id counter past them.
    pub fn broadcast(&self, events: Vec<Arc<Published>>) {
        if events.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            {
                let mut inner = self.inner.lock();
                for published in events.by_ref().take(PUBLISH_CHUNK) {
                    if let Some(deadline) = published.deadline {
                        self.metrics.observe_lateness((now - deadline).max(0));
                    }
                    if published.seq >= inner.next {
                        inner.next = published.seq + 1;
                    }
                    inner.log_bytes += published.json.len();
                    inner.log.push_back(published.clone());
                    while inner.log.len() > LOG_CAPACITY || inner.log_bytes > LOG_BYTES {
                        match inner.log.pop_front() {
                            Some(old) => {
                                inner.log_bytes -= old.json.len();
                                inner.evicted_through = old.seq;
                            }
                            None => break,
                        }
                    }
                    // No receivers is fine: nobody is listening.
                    let _ = self.sender.send(published);
                }
            }
            if events.peek().is_some() {
                self.let_subscribers_catch_up();
            }
        }
    }

    /// Between chunks of a large burst (a mass expiry), waits while the
    /// slowest subscriber is more than half the log behind, so it is not
    /// overrun — but only while it makes progress, and never longer than
    /// [`MAX_BURST_WAIT`]: a stuck client must not hold up everyone else.
    fn let_subscribers_catch_up(&self) {
        let started = std::time::Instant::now();
        let mut behind = self.sender.len();
        let mut progressed_at = started;
        while behind > LOG_CAPACITY / 2 && started.elapsed() < MAX_BURST_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let now_behind = self.sender.len();
            if now_behind < behind {
                progressed_at = std::time::Instant::now();
            } else if progressed_at.elapsed() > std::time::Duration::from_millis(200) {
                return;
            }
            behind = now_behind;
        }
    }

    /// Subscribes; with `after` (a resume point) also returns what the log
    /// has after it (the rules are on `HubInner::replay`), else nothing and the current
    /// head. Subscribing under the log lock means no event falls between the two.
    pub fn subscribe(&self, after: Option<u64>) -> (Replay, broadcast::Receiver<Arc<Published>>) {
        let inner = self.inner.lock();
        let rx = self.sender.subscribe();
        let replay = match after {
            Some(after) => inner.replay(after, self.replay_rules()),
            None => Replay { gap: None, stored: None, events: Vec::new(), position: inner.next - 1 },
        };
        (replay, rx)
    }

    /// The id of the last event stamped (0 before the first).
    pub fn head(&self) -> u64 {
        self.inner.lock().next - 1
    }

    /// What the log has after `after` (a lagging subscriber catches up here).
    pub fn since(&self, after: u64) -> Replay {
        self.inner.lock().replay(after, self.replay_rules())
    }

    /// Reads a page of the event log for a resume older than the in-memory
    /// log: events with ids in `after+1..=through`, at most `limit`. Blocking
    /// (a store read): call it from a blocking thread. A gap is reported
    /// where the store no longer has events (purged with their sessions).
    pub fn read_stored(&self, after: u64, through: u64, limit: usize) -> StoredPage {
        let floor = self.store.events_floor().unwrap_or(0);
        let (gap, after) = if after < floor && floor <= through {
            (Some(Gap { from: after + 1, to: floor }), floor)
        } else {
            (None, after)
        };
        match self.store.events_after(after, limit) {
            Ok(events) => {
                let events: Vec<Arc<Published>> =
                    events.into_iter().filter(|e| e.seq <= through).map(Arc::new).collect();
                let done = events.len() < limit;
                let position = if done { through } else { events.last().map(|e| e.seq).unwrap_or(through) };
                StoredPage { gap, events, position, done }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the event log for a resume failed");
                StoredPage {
                    gap: Some(Gap { from: after + 1, to: through }),
                    events: Vec::new(),
                    position: through,
                    done: true,
                }
            }
        }
    }
}

/// A page of the stored event log (see [`Hub::read_stored`]).
pub struct StoredPage {
    pub gap: Option<Gap>,
    pub events: Vec<Arc<Published>>,
    /// Where the resume stands after this page.
    pub position: u64,
    /// Whether the stored range is exhausted (the in-memory log follows).
    pub done: bool,
}

/// Ids a subscriber may have missed and that the log can no longer replay.
/// `from` is the first id after the subscriber's last one and `to` the last
/// id the server cannot replay; every missed event's id lies in `from..=to`
/// (not every id there was used: ids jump at a restart), and the events that
/// follow the gap are exactly those after `to`. On the wire it is the event
/// `{"type":"stream.gap","from","to"}`, with SSE `id:` `to`, so a client that
/// reconnects after it resumes right behind the gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: u64,
    pub to: u64,
}

/// The answer to a resume: the gap first (if any), then the stored events in
/// `stored` (read page by page with [`Hub::read_stored`]), then the logged
/// events, and the id the stream stands at afterwards.
#[derive(Debug)]
pub struct Replay {
    pub gap: Option<Gap>,
    /// `(after, through)`: events with ids in `after+1..=through` are to be
    /// read from the store's event log before `events`.
    pub stored: Option<(u64, u64)>,
    pub events: Vec<Arc<Published>>,
    pub position: u64,
}

#[derive(Clone, Copy)]
struct Rules {
    durable: bool,
    clustered: bool,
}

impl HubInner {
    /// Resumes after `after`:
    /// - an id still covered by the in-memory log: the events after it;
    /// - an older id (evicted, or of an earlier run or term): with a durable
    ///   store, the event log from `after` up to the in-memory log, then the
    ///   log (a gap only where the store purged events); with the memory
    ///   store, which keeps nothing across restarts, a gap up to the newest
    ///   id no longer logged, then the log;
    /// - `0` (no event has it: "from the beginning"): this run's or term's start;
    /// - an id above the head: in a cluster, a real id not seen here yet
    ///   (another node's, which this node's tail has still to read) — the
    ///   stream continues after it; on one node, a client of a run whose
    ///   events were lost (memory store) or a made-up id — its place is
    ///   unknown, so it resumes from this run's start.
    fn replay(&self, after: u64, rules: Rules) -> Replay {
        let head = self.next - 1;
        let durable = rules.durable;
        if after > head && rules.clustered {
            return Replay { gap: None, stored: None, events: Vec::new(), position: after };
        }
        let after = if after == 0 || after > head { self.run_start } else { after };
        let events: Vec<Arc<Published>> = self.log.iter().filter(|e| e.seq > after).cloned().collect();
        let (gap, stored) = if after >= self.evicted_through {
            (None, None)
        } else if durable {
            (None, Some((after, self.evicted_through)))
        } else {
            (Some(Gap { from: after + 1, to: self.evicted_through }), None)
        };
        let position = events.last().map(|e| e.seq).unwrap_or(after.max(self.evicted_through));
        Replay { gap, stored, events, position }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
        Hub::new(1, Arc::new(Metrics::default()), clock, store)
    }

    fn session(status: &str, end_reason: Option<&str>, expires_at: Option<&str>) -> Session {
        serde_json::from_value(serde_json::json!({
            "id": "s\"1", "kind": "k", "user_id": "u", "status": status,
            "created_at": "2026-11-29T10:00:00.000Z", "activated_at": null,
            "last_seen_at": "2026-11-29T10:00:00.000Z", "expires_at": expires_at,
            "ended_at": null, "end_reason": end_reason, "parent_id": null,
            "metadata": {"a": [1, 2]}, "participants": []
        }))
        .expect("a session")
    }

    /// The engine's reason, kept beside the map, is written where the map
    /// would have put it: the event's text is the same byte for byte.
    #[test]
    fn a_reason_beside_the_map_is_written_in_key_order() {
        let hub = hub();
        let s = Arc::new(session("ended", Some("idle_timeout"), None));
        let mut beside = Draft::new(EventType::Ended, 2_000, s.clone())
            .with("participant", serde_json::json!({"id": "u"}))
            .with("signal", Value::from(1));
        beside.reason = Some("idle_timeout");
        let in_map = Draft::new(EventType::Ended, 2_000, s)
            .with("participant", serde_json::json!({"id": "u"}))
            .with("signal", Value::from(1))
            .with("reason", Value::from("idle_timeout"));
        let texts: Vec<String> = hub
            .stamp(vec![beside, in_map], &Records::new())
            .iter()
            .map(|e| e.json.split_once(',').expect("fields after the id").1.to_string())
            .collect();
        assert_eq!(texts[0], texts[1]);
        assert!(texts[0].contains(r#""participant":{"id":"u"},"reason":"idle_timeout","signal":1}"#), "{}", texts[0]);
    }

    /// The lean form written when stamping says what the lean form made from
    /// the whole event (as for events read back from the store) says.
    #[test]
    fn stamped_lean_form_equals_the_one_derived_from_the_whole_event() {
        let hub = hub();
        let drafts = vec![
            Draft::new(EventType::Started, 1_000, session("active", None, Some("2026-11-29T10:00:05.000Z"))),
            Draft::new(EventType::Ended, 2_000, session("ended", Some("idle_timeout"), None))
                .with("reason", Value::from("idle_timeout"))
                .with("quote\"key", serde_json::json!({"x": null})),
        ];
        for e in hub.stamp(drafts, &Records::new()) {
            let stamped: Value = serde_json::from_str(e.text(true)).expect("lean JSON");
            let derived: Value = serde_json::from_str(&lean_form(&e.json)).expect("derived JSON");
            assert_eq!(stamped, derived, "{}", e.json);
            assert_eq!(stamped["session_id"], "s\"1");
        }
    }
}

//! The event hub: gives each event its sequence number, keeps a bounded
//! in-memory log for `Last-Event-ID` resume, and fans events out to SSE and
//! WebSocket subscribers. Sequence numbers stay monotonic across restarts:
//! the high bits hold a start counter kept in the store (`seq = epoch·2⁴⁰ + n`),
//! so a resumed client never sees an id go backwards. The log itself is in
//! memory: after a restart, resume starts from the events published since,
//! and a resume from further back than the log reaches (an id of an earlier
//! run, or one evicted since) is told so with a [`Gap`] first, never skipped
//! in silence.

use crate::metrics::Metrics;
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
    /// Fields beside `id`, `type`, `at` and `session` (`reason`, `match`, `signal`, …).
    pub extra: Map<String, Value>,
    /// Who may receive it; `None` means the session's audience.
    pub audience: Option<Vec<String>>,
    /// For deadline-driven ends: the deadline, to measure lateness.
    pub deadline: Option<Millis>,
}

impl Draft {
    pub fn new(event_type: EventType, at: Millis, session: impl Into<Arc<Session>>) -> Draft {
        Draft { event_type, at, session: session.into(), extra: Map::new(), audience: None, deadline: None }
    }
    pub fn with(mut self, key: &str, value: Value) -> Draft {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl From<tether_engine::Event> for Draft {
    fn from(e: tether_engine::Event) -> Draft {
        let mut d = Draft::new(e.kind, e.at, e.session);
        if let Some(r) = e.reason {
            d.extra.insert("reason".into(), Value::String(r.as_str().into()));
        }
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
}

impl Published {
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
}

struct HubInner {
    next: u64,
    /// `epoch·2⁴⁰`: every id of this run is above it, every id of an earlier run below.
    run_start: u64,
    /// The newest id no longer in the log (`run_start` until the first eviction):
    /// the log replays exactly the ids above it.
    evicted_through: u64,
    log: VecDeque<Arc<Published>>,
    /// JSON bytes held by the log, so its memory stays bounded with large sessions.
    log_bytes: usize,
}

impl Hub {
    pub fn new(epoch: u64, metrics: Arc<Metrics>, clock: Arc<dyn crate::clock::Clock>) -> Hub {
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
        }
    }

    pub fn publish(&self, drafts: Vec<Draft>) {
        if drafts.is_empty() {
            return;
        }
        // Serialise outside the lock; only the id is spliced in under it.
        // Events of one change share their session snapshot: serialise it once.
        let mut last_session: Option<(*const Session, Arc<str>)> = None;
        let prepared: Vec<(Draft, String)> = drafts
            .into_iter()
            .map(|d| {
                let session_json = match &last_session {
                    Some((ptr, json)) if *ptr == Arc::as_ptr(&d.session) => json.clone(),
                    _ => {
                        let json: Arc<str> =
                            serde_json::to_string(&*d.session).unwrap_or_else(|_| "null".into()).into();
                        last_session = Some((Arc::as_ptr(&d.session), json.clone()));
                        json
                    }
                };
                let mut tail = String::with_capacity(session_json.len() + 96);
                tail.push_str(",\"type\":\"");
                tail.push_str(d.event_type.as_str());
                tail.push_str("\",\"at\":\"");
                tail.push_str(&format_rfc3339(d.at));
                tail.push_str("\",\"session\":");
                tail.push_str(&session_json);
                for (key, value) in &d.extra {
                    tail.push(',');
                    tail.push_str(&Value::from(key.as_str()).to_string());
                    tail.push(':');
                    tail.push_str(&value.to_string());
                }
                tail.push('}');
                (d, tail)
            })
            .collect();
        let now = self.clock.now();
        let mut prepared = prepared.into_iter().peekable();
        while prepared.peek().is_some() {
            {
                let mut inner = self.inner.lock();
                for (d, tail) in prepared.by_ref().take(PUBLISH_CHUNK) {
                    if let Some(deadline) = d.deadline {
                        self.metrics.observe_lateness((now - deadline).max(0));
                    }
                    let seq = inner.next;
                    inner.next += 1;
                    let audience = d.audience.unwrap_or_else(|| d.session.audience());
                    let published = Arc::new(Published {
                        seq,
                        event_type: d.event_type,
                        kind: d.session.kind.clone(),
                        session_id: d.session.id.clone(),
                        audience,
                        json: format!("{{\"id\":{seq}{tail}"),
                    });
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
            if prepared.peek().is_some() {
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
            Some(after) => inner.replay(after),
            None => Replay { gap: None, events: Vec::new(), position: inner.next - 1 },
        };
        (replay, rx)
    }

    /// The id of the last event published (0 before the first).
    pub fn head(&self) -> u64 {
        self.inner.lock().next - 1
    }

    /// What the log has after `after` (a lagging subscriber catches up here).
    pub fn since(&self, after: u64) -> Replay {
        self.inner.lock().replay(after)
    }
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

/// The answer to a resume: the gap first (if any), then the logged events,
/// and the id the stream stands at afterwards.
#[derive(Debug)]
pub struct Replay {
    pub gap: Option<Gap>,
    pub events: Vec<Arc<Published>>,
    pub position: u64,
}

impl HubInner {
    /// Resumes after `after`:
    /// - an id of this run still covered by the log: the events after it, no gap;
    /// - an id older than the log (evicted, or of an earlier run): a gap from
    ///   `after + 1` to the newest id no longer logged, then the whole log;
    /// - `0` (no event has it: "from the beginning") or an id above the head
    ///   (a client of a run whose memory store was lost, or a made-up id): its
    ///   place in this run is unknown, so it resumes from this run's start,
    ///   with a gap only if part of this run is no longer logged. Starting
    ///   from the head instead would drop this run's events in silence.
    fn replay(&self, after: u64) -> Replay {
        let head = self.next - 1;
        let after = if after == 0 || after > head { self.run_start } else { after };
        let gap = (after < self.evicted_through).then_some(Gap { from: after + 1, to: self.evicted_through });
        let events: Vec<Arc<Published>> = self.log.iter().filter(|e| e.seq > after).cloned().collect();
        let position = events.last().map(|e| e.seq).unwrap_or(after.max(self.evicted_through));
        Replay { gap, events, position }
    }
}

//! The journal: the single path by which a change becomes durable and then
//! visible. Operations submit their writes and events (in engine order, while
//! holding the core lock); one thread drains everything queued, stamps the
//! events with their ids, commits writes and events as one transaction
//! (group commit; the events go to the store's event log), then broadcasts
//! the events in order and acknowledges. A handler answers `2xx` only after
//! its acknowledgement, so an answered change is on disk, and no event is
//! seen before its change is.
//!
//! A large change (the deadline timer ending a million sessions that shared
//! a deadline) is committed in pieces of at most [`PIECE`] writes, each
//! piece with the events whose sessions it holds, so the first ends are
//! published after one piece's commit rather than after the whole million's,
//! and subscribers receive while later pieces commit. It is acknowledged
//! once its last piece is durable (with the first error if a piece failed).
//! The timer's change comes through `App::change`, which always asks for
//! an acknowledgement (the timer drops it), so splitting cannot depend on
//! nobody waiting. A crash between pieces leaves the later ones
//! unwritten: nothing was acknowledged, those sessions are still live on
//! disk with their deadline passed and end again at the restart, and a
//! child whose parent's end was written ends as an orphan.

use crate::hub::{Draft, Hub, Records};
use crate::metrics::Stage;
use crate::store::{Store, StoreError, StoreWrite};
use std::sync::mpsc;
use std::sync::Arc;
use tether_engine::{Outcome, Write};
use tokio::sync::oneshot;

/// Writes to make durable and events to publish once they are.
#[derive(Default, Debug)]
pub struct Change {
    pub writes: Vec<StoreWrite>,
    pub events: Vec<Draft>,
    /// How many of `events` the matching layer has already reacted to.
    pub settled: usize,
}

impl Change {
    pub fn absorb(&mut self, out: Outcome) {
        self.writes.extend(out.writes.into_iter().map(StoreWrite::Engine));
        self.events.extend(out.events.into_iter().map(Draft::from));
    }
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.events.is_empty()
    }
}

impl From<Outcome> for Change {
    fn from(out: Outcome) -> Change {
        let mut c = Change::default();
        c.absorb(out);
        c
    }
}

struct Job {
    change: Change,
    ack: Option<oneshot::Sender<Result<(), String>>>,
    /// For the pieces of a split change: the first error of any of them,
    /// which the last piece's acknowledgement reports.
    split_error: Option<Arc<std::sync::Mutex<Option<String>>>>,
}

#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Job>,
}

/// Resolves when the change is durable (or failed to become so).
pub struct Ack(oneshot::Receiver<Result<(), String>>);

impl Ack {
    pub async fn wait(self) -> Result<(), String> {
        self.0.await.unwrap_or_else(|_| Err("the journal stopped".into()))
    }
}

/// Most jobs folded into one transaction.
const MAX_BATCH: usize = 4096;
/// Most state writes (events aside) of one transaction when a large
/// change is split (see the module doc). Measured with 1M
/// ends on SQLite: a piece commits in tens of milliseconds, and a
/// transaction's fixed cost (one fsync) is paid ~100 times per million.
const PIECE: usize = 10_000;

/// Bytes reserved for serialising one session record (a session with one
/// participant and no metadata is ~430).
const RECORD_CAPACITY: usize = 768;

/// The session a write is about, if any (events follow their session's write).
fn session_of(write: &StoreWrite) -> Option<&str> {
    match write {
        StoreWrite::Engine(Write::Session(s)) | StoreWrite::Session(s, _) => Some(&s.id),
        StoreWrite::Engine(Write::Invite(i)) => Some(&i.session_id),
        StoreWrite::Engine(Write::DeleteInvite(_)) | StoreWrite::Doc { .. } | StoreWrite::Event(_) => None,
    }
}

/// Splits a change into pieces of at most [`PIECE`] writes,
/// in order. Each event goes with the piece holding its session's last
/// write (or a later one, so events keep their order): it is published only
/// once what it reports is durable, and written to the event log in the
/// same transaction as that.
fn split(change: Change) -> Vec<Change> {
    if change.writes.len() <= PIECE {
        return vec![change];
    }
    let pieces = change.writes.len().div_ceil(PIECE);
    let event_pieces: Vec<usize> = {
        let mut last_piece: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(change.writes.len());
        for (i, write) in change.writes.iter().enumerate() {
            if let Some(id) = session_of(write) {
                last_piece.insert(id, i / PIECE);
            }
        }
        let mut at_least = 0;
        change
            .events
            .iter()
            .map(|e| {
                at_least = at_least.max(last_piece.get(e.session.id.as_str()).copied().unwrap_or(0));
                at_least
            })
            .collect()
    };
    let mut out: Vec<Change> = (0..pieces).map(|_| Change::default()).collect();
    for (i, write) in change.writes.into_iter().enumerate() {
        out[i / PIECE].writes.push(write);
    }
    for (event, piece) in change.events.into_iter().zip(event_pieces) {
        out[piece].events.push(event);
    }
    out
}

impl Journal {
    pub fn start(store: Arc<dyn Store>, hub: Arc<Hub>) -> (Journal, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("tether-journal".into())
            .spawn(move || run(rx, store, hub))
            .expect("spawn journal thread");
        (Journal { tx }, handle)
    }

    /// Queues a change; await the returned [`Ack`] before answering.
    pub fn submit(&self, change: Change) -> Ack {
        let (ack, rx) = oneshot::channel();
        if self.tx.send(Job { change, ack: Some(ack), split_error: None }).is_err() {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err("the journal stopped".into()));
            return Ack(rx);
        }
        Ack(rx)
    }

    /// Queues a change nobody waits for (deadline ends, heartbeat flushes).
    pub fn submit_detached(&self, change: Change) {
        if !change.is_empty() {
            let _ = self.tx.send(Job { change, ack: None, split_error: None });
        }
    }

    /// Resolves once everything queued before it is durable.
    pub async fn flush(&self) -> Result<(), String> {
        self.submit(Change::default()).wait().await
    }
}

/// Whether a job is committed in pieces (see [`split`]).
fn splits(job: &Job) -> bool {
    job.change.writes.len() > PIECE
}

fn run(rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, hub: Arc<Hub>) {
    // Pieces of a split change, and a job received while folding that must
    // be split: both go before anything received later.
    let mut queued: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    loop {
        let first = match queued.pop_front() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        if splits(&first) {
            let Job { change, ack, .. } = first;
            let error = Arc::new(std::sync::Mutex::new(None));
            let mut pieces: std::collections::VecDeque<Job> = split(change)
                .into_iter()
                .map(|change| Job { change, ack: None, split_error: Some(error.clone()) })
                .collect();
            if let Some(last) = pieces.back_mut() {
                last.ack = ack;
            }
            std::mem::swap(&mut queued, &mut pieces);
            queued.extend(pieces);
            continue;
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH && queued.is_empty() {
            match rx.try_recv() {
                Ok(job) if splits(&job) => queued.push_back(job),
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut writes: Vec<StoreWrite> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.change.writes)).collect();
        let drafts: Vec<Draft> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.change.events)).collect();
        // Each session snapshot is serialised once, for its row and for the
        // events that carry it (a mass expiry has a million of both).
        let mut records = Records::with_capacity(writes.len());
        for write in writes.iter_mut() {
            if let StoreWrite::Engine(Write::Session(s)) = write {
                // Sized for a typical record: growing the buffer from empty
                // (several reallocations) cost as much as a third of the
                // serialisation (callgrind, mass expiry).
                let mut buf = Vec::with_capacity(RECORD_CAPACITY);
                if serde_json::to_writer(&mut buf, &**s).is_err() {
                    continue; // the store reports it when it serialises the write itself
                }
                let json: Arc<str> = match std::str::from_utf8(&buf) {
                    Ok(json) => json.into(),
                    Err(_) => continue,
                };
                records.insert(Arc::as_ptr(s), json.clone());
                *write = StoreWrite::Session(s.clone(), json);
            }
        }
        let events = hub.stamp(drafts, &records);
        drop(records);
        writes.extend(events.iter().cloned().map(StoreWrite::Event));
        let result = if writes.is_empty() { Ok(()) } else { store.commit(&writes) };
        match &result {
            Err(StoreError::Fenced(why)) => {
                // This node no longer owns the work (a cluster node paused past
                // its lease): nothing it decided may be seen. The cluster
                // module notices through the same error and steps down.
                tracing::warn!(why = %why, writes = writes.len(), "journal commit refused: this node lost its lease");
            }
            Err(e) => {
                tracing::error!(error = %e, writes = writes.len(), "journal commit failed");
                // Events follow the engine, which already changed; publish them
                // even if the commit failed so live views stay true to the engine.
                hub.broadcast(events);
            }
            Ok(()) => {
                hub.reached(Stage::Committed, &events);
                hub.broadcast(events)
            }
        }
        let result = result.map_err(|e| e.to_string());
        for job in jobs {
            let result = match &job.split_error {
                Some(first_error) => {
                    let mut first_error = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = &result {
                        first_error.get_or_insert_with(|| e.clone());
                    }
                    first_error.clone().map_or(Ok(()), Err)
                }
                None => result.clone(),
            };
            if let Some(ack) = job.ack {
                let _ = ack.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_engine::{EventType, Session};

    fn session(id: &str) -> Arc<Session> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "id": id, "kind": "k", "user_id": "u", "status": "ended",
                "created_at": "2026-11-29T10:00:00.000Z", "activated_at": null,
                "last_seen_at": "2026-11-29T10:00:00.000Z", "expires_at": null,
                "ended_at": "2026-11-29T10:00:01.000Z", "end_reason": "idle_timeout", "parent_id": null,
                "metadata": {}, "participants": []
            }))
            .expect("a session"),
        )
    }

    #[test]
    fn a_large_change_splits_into_pieces_each_holding_its_sessions_events() {
        let n = 2 * PIECE + 7;
        let mut change = Change::default();
        for i in 0..n {
            let s = session(&format!("s{i}"));
            change.writes.push(StoreWrite::Engine(Write::Session(s.clone())));
            change.events.push(Draft::new(EventType::Ended, 1, s));
        }
        // An event about a session written in the first piece, after events of
        // the last piece: it must not be published before those.
        change.events.push(Draft::new(EventType::Expiring, 1, session("s0")));
        let pieces = split(change);
        assert_eq!(pieces.iter().map(|p| p.writes.len()).collect::<Vec<_>>(), [PIECE, PIECE, 7]);
        let mut order = Vec::new();
        for piece in &pieces {
            let written: std::collections::HashSet<&str> = piece.writes.iter().filter_map(session_of).collect();
            for e in &piece.events {
                order.push(e.session.id.clone());
                if e.event_type == EventType::Ended {
                    assert!(written.contains(e.session.id.as_str()), "{} left its write's piece", e.session.id);
                }
            }
        }
        assert_eq!(order.len(), n + 1, "every event is in a piece");
        assert_eq!(order.last().map(String::as_str), Some("s0"), "events keep their order");
        assert_eq!(pieces[2].events.len(), 8, "the late event waits for the last piece");
    }

    /// A waited-for change larger than a piece is committed in pieces and
    /// acknowledged once the last is durable: by then every event has been
    /// published, in order, and the store has every write.
    #[test]
    fn a_large_waited_for_change_is_acknowledged_after_its_last_piece() {
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let hub = Arc::new(Hub::new(1, Arc::new(crate::metrics::Metrics::default()), clock, store.clone()));
        let (_, mut rx) = hub.subscribe(None);
        let (journal, _thread) = Journal::start(store.clone(), hub.clone());
        let n = PIECE + PIECE / 2;
        let mut change = Change::default();
        for i in 0..n {
            let s = session(&format!("s{i:06}"));
            change.writes.push(StoreWrite::Engine(Write::Session(s.clone())));
            change.events.push(Draft::new(EventType::Ended, 1, s));
        }
        let ack = journal.submit(change);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        assert_eq!(runtime.block_on(ack.wait()), Ok(()));
        let mut previous = 0;
        for i in 0..n {
            let e = rx.try_recv().expect("every event was published before the acknowledgement");
            assert_eq!(e.session_id, format!("s{i:06}"));
            assert!(e.seq > previous, "ids ascend");
            previous = e.seq;
        }
        assert_eq!(
            store.get(&format!("s{:06}", n - 1)).expect("read").map(|s| s.status),
            Some(tether_engine::Status::Ended)
        );
    }

    #[test]
    fn a_change_within_a_piece_is_not_split() {
        let mut change = Change::default();
        change.writes.push(StoreWrite::Engine(Write::Session(session("a"))));
        change.events.push(Draft::new(EventType::Ended, 1, session("a")));
        let pieces = split(change);
        assert_eq!((pieces.len(), pieces[0].writes.len(), pieces[0].events.len()), (1, 1, 1));
    }
}

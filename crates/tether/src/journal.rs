//! The journal: the single path by which a change becomes durable and then
//! visible. Operations submit their writes and events (in engine order, while
//! holding the core lock); one thread drains everything queued, stamps the
//! events with their ids, commits writes and events as one transaction
//! (group commit; the events go to the store's event log), then broadcasts
//! the events in order and acknowledges. A handler answers `2xx` only after
//! its acknowledgement, so an answered change is on disk, and no event is
//! seen before its change is.

use crate::hub::{Draft, Hub};
use crate::store::{Store, StoreError, StoreWrite};
use std::sync::mpsc;
use std::sync::Arc;
use tether_engine::Outcome;
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
        if self.tx.send(Job { change, ack: Some(ack) }).is_err() {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Err("the journal stopped".into()));
            return Ack(rx);
        }
        Ack(rx)
    }

    /// Queues a change nobody waits for (deadline ends, heartbeat flushes).
    pub fn submit_detached(&self, change: Change) {
        if !change.is_empty() {
            let _ = self.tx.send(Job { change, ack: None });
        }
    }

    /// Resolves once everything queued before it is durable.
    pub async fn flush(&self) -> Result<(), String> {
        self.submit(Change::default()).wait().await
    }
}

fn run(rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, hub: Arc<Hub>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut writes: Vec<StoreWrite> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.change.writes)).collect();
        let drafts: Vec<Draft> = jobs.iter_mut().flat_map(|j| std::mem::take(&mut j.change.events)).collect();
        let events = hub.stamp(drafts);
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
            Ok(()) => hub.broadcast(events),
        }
        let result = result.map_err(|e| e.to_string());
        for job in jobs {
            if let Some(ack) = job.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
}

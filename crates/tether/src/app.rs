//! The running server's shared state and the one path every operation takes:
//! lock the [`Core`] (engine + matching), apply the operation, let matching
//! react, submit the change to the journal while still holding the lock (so
//! the journal sees changes in engine order), release, await durability.
//! Also the background tasks: the deadline timer, heartbeat flushing and
//! retention purging.

use crate::auth::Auth;
use crate::clock::Clock;
use crate::hub::Hub;
use crate::journal::{Ack, Change, Journal};
use crate::matching::Matching;
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreWrite};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tether_engine::{Engine, Kinds, Millis, Write};
use tokio::sync::{watch, Notify};

/// Everything `tether serve` needs, after flags, environment and file are merged.
#[derive(Clone, Debug)]
pub struct Settings {
    pub store: String,
    pub jwt_secret: Option<String>,
    pub api_keys: Vec<String>,
    pub demo: bool,
    pub kinds: Kinds,
}

/// The state guarded by one lock: the session engine and the matching layer above it.
pub struct Core {
    pub engine: Engine,
    pub matching: Matching,
}

impl Core {
    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.engine.next_deadline(), self.matching.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies everything due at `now`.
    pub fn tick(&mut self, now: Millis) -> Change {
        let mut change = Change::from(self.engine.expire_due(now));
        self.matching.expire_due(now, &mut self.engine, &mut change);
        change
    }
}

pub struct App {
    pub core: Mutex<Core>,
    pub journal: Journal,
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    pub demo: bool,
    /// Wakes the deadline timer when an earlier deadline appears.
    wake: Notify,
    /// What the timer sleeps until (i64::MAX: nothing scheduled).
    wake_at: AtomicI64,
    pub ready: AtomicBool,
    /// Flips to true on shutdown: event streams and sockets close.
    pub closing: watch::Sender<bool>,
    /// Printed once at first start when no key was configured.
    pub generated_api_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl App {
    /// Opens the store, recovers live sessions and matching state, and starts the journal.
    pub fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Arc<App>, StartError> {
        let store = store::open(&settings.store)?;
        let metrics = Arc::new(Metrics::default());
        let epoch: u64 = store.meta_get("event_epoch")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        store.meta_put("event_epoch", &epoch.to_string())?;

        let jwt_secret = match settings.jwt_secret.clone() {
            Some(s) => s,
            None => match store.meta_get("auth.jwt_secret")? {
                Some(s) => s,
                None => {
                    let s = random_token(32);
                    store.meta_put("auth.jwt_secret", &s)?;
                    s
                }
            },
        };
        let mut api_keys = settings.api_keys.clone();
        let mut generated_api_key = None;
        if api_keys.is_empty() {
            match store.meta_get("auth.api_key")? {
                Some(k) => api_keys.push(k),
                None => {
                    let k = format!("tk_{}", random_token(24));
                    store.meta_put("auth.api_key", &k)?;
                    generated_api_key = Some(k.clone());
                    api_keys.push(k);
                }
            }
        }

        let now = clock.now();
        let mut engine = Engine::new(settings.kinds.clone());
        let (sessions, invites) = store.load_live()?;
        engine.restore(now, sessions, invites);
        let matching = Matching::restore(&*store, &engine, metrics.clone())?;

        let hub = Arc::new(Hub::new(epoch, metrics.clone(), clock.clone()));
        let (journal, _thread) = Journal::start(store.clone(), hub.clone());
        let (closing, _) = watch::channel(false);
        let app = Arc::new(App {
            core: Mutex::new(Core { engine, matching }),
            journal,
            hub,
            store,
            clock,
            auth: Auth::new(jwt_secret, api_keys),
            metrics,
            demo: settings.demo,
            wake: Notify::new(),
            wake_at: AtomicI64::new(i64::MAX),
            ready: AtomicBool::new(false),
            closing,
            generated_api_key,
        });
        Ok(app)
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Lets matching react, counts ends, queues the change and wakes the timer
    /// if a deadline moved earlier. Call with the core lock held.
    pub fn commit(&self, core: &mut Core, now: Millis, change: Change) -> Ack {
        let change = self.settle(core, now, change);
        self.journal.submit(change)
    }

    /// What every commit does before the journal: matching reacts, ends are
    /// counted, the timer is woken if a deadline moved earlier.
    fn settle(&self, core: &mut Core, now: Millis, mut change: Change) -> Change {
        core.matching.settle(now, &mut core.engine, &mut change);
        self.count_ends(&change);
        self.nudge(core);
        change
    }

    /// Runs `op` under the core lock after applying anything already due
    /// (so an operation never acts on a session past its deadline), commits
    /// what it changed, and waits until that is durable.
    pub async fn run<T, E: From<String>>(
        &self,
        op: impl FnOnce(&mut Core, Millis, &mut Change) -> Result<T, E>,
    ) -> Result<T, E> {
        let (value, ack) = {
            let mut core = self.core.lock();
            let now = self.now();
            let mut change = core.tick(now);
            match op(&mut core, now, &mut change) {
                Ok(value) => (value, self.commit(&mut core, now, change)),
                Err(e) => {
                    self.commit_detached(&mut core, now, change);
                    return Err(e);
                }
            }
        };
        ack.wait().await.map_err(E::from)?;
        Ok(value)
    }

    /// Applies deadlines already due before a synchronous operation (see [`App::run`]).
    pub fn catch_up(&self, core: &mut Core, now: Millis) {
        let change = core.tick(now);
        if !change.is_empty() {
            self.commit_detached(core, now, change);
        }
    }

    /// As [`App::commit`], for changes nobody waits for.
    pub fn commit_detached(&self, core: &mut Core, now: Millis, change: Change) {
        let change = self.settle(core, now, change);
        self.journal.submit_detached(change);
    }

    fn count_ends(&self, change: &Change) {
        // Grouped first: a mass expiry ends a million sessions of a few kinds.
        let mut ends: std::collections::HashMap<(&str, &'static str), u64> = std::collections::HashMap::new();
        for e in change.events.iter().filter(|e| e.event_type == tether_engine::EventType::Ended) {
            if let Some(reason) = e.session.end_reason {
                *ends.entry((e.session.kind.as_str(), reason.as_str())).or_default() += 1;
            }
        }
        for ((kind, reason), n) in ends {
            self.metrics.count_end(kind, reason, n);
        }
    }

    /// Wakes the timer when the earliest deadline is now before what it sleeps until.
    pub fn nudge(&self, core: &Core) {
        if let Some(next) = core.next_deadline() {
            if next < self.wake_at.load(Ordering::Acquire) {
                self.wake.notify_one();
            }
        }
    }

    /// The deadline timer: sleeps until the earliest deadline (or until woken
    /// because an earlier one appeared), ends what is due, repeats. No sweep.
    pub async fn run_timer(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        loop {
            let next = {
                let mut core = self.core.lock();
                let now = self.now();
                let change = core.tick(now);
                if !change.is_empty() {
                    self.commit_detached(&mut core, now, change);
                }
                // Published under the lock, so an operation that adds an earlier
                // deadline after this point sees it and wakes us.
                let next = core.next_deadline();
                self.wake_at.store(next.unwrap_or(i64::MAX), Ordering::Release);
                next
            };
            // The clock says when `at` has come: a test's manual clock wakes this when moved.
            let sleep: crate::clock::Wakeup = match next {
                Some(at) => self.clock.sleep_until(at),
                None => Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600))),
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake.notified() => {}
                _ = closing.changed() => return,
            }
        }
    }

    /// Writes batched heartbeat state once a second (heartbeats are not
    /// acknowledged as durable: after a restart idle deadlines are re-granted).
    pub async fn run_flusher(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = closing.changed() => {}
            }
            self.flush_heartbeats();
            if *closing.borrow() {
                return;
            }
        }
    }

    pub fn flush_heartbeats(&self) {
        let dirty = self.core.lock().engine.take_dirty();
        if !dirty.is_empty() {
            let writes = dirty.into_iter().map(|s| StoreWrite::Engine(Write::Session(s.into()))).collect();
            self.journal.submit_detached(Change { writes, ..Change::default() });
        }
    }

    /// Purges ended sessions past their kind's retention, once a minute.
    pub async fn run_purger(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = closing.changed() => return,
            }
            let app = self.clone();
            let result = tokio::task::spawn_blocking(move || app.purge(false)).await;
            if let Ok(Err(e)) = result {
                tracing::warn!(error = %e, "purge failed");
            }
        }
    }

    /// Ended sessions past retention: counted (`dry_run`) or deleted.
    pub fn purge(&self, dry_run: bool) -> Result<usize, store::StoreError> {
        let now = self.now();
        let kinds = self.core.lock().engine.kinds().clone();
        let cutoff = move |kind: &str| {
            let retention = kinds.get(kind).map(|k| k.retention).unwrap_or(tether_engine::kind::DEFAULT_RETENTION);
            now - retention.millis()
        };
        self.store.purge(&cutoff, dry_run)
    }
}

pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

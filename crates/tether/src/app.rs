//! The running server's shared state and the two ways to touch it.
//! [`App::read`] looks at the [`Core`] (engine + matching) under its lock;
//! [`App::change`] is the one path every change takes: lock, apply what is
//! already due, apply the operation, let matching react, submit the change to
//! the journal while still holding the lock (so the journal sees changes in
//! engine order), release, and let the caller await durability. The core is
//! private, so no other sequence exists. Also the background tasks: the
//! deadline timer, heartbeat flushing and retention purging.

use crate::auth::Auth;
use crate::clock::Clock;
use crate::hub::Hub;
use crate::journal::{Ack, Change, Journal};
use crate::matching::Matching;
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreWrite};
use parking_lot::Mutex;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
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
    /// `[limits]`: the connection layer (`http::serve`), rate limits and WebSocket send timeout.
    pub limits: crate::config::Limits,
    /// `[[webhooks]]`: the endpoints events are POSTed to.
    pub webhooks: Vec<crate::config::WebhookConfig>,
    /// `[cluster]`: the lease, for a `postgres://` store.
    pub cluster: crate::config::ClusterConfig,
    /// `cors_origins`: which web origins browsers may call the API from.
    pub cors: crate::config::Cors,
}

/// The state guarded by one lock: the session engine and the matching layer above it.
pub struct Core {
    pub engine: Engine,
    pub matching: Matching,
}

impl Core {
    fn empty(kinds: &Kinds, metrics: &Arc<Metrics>) -> Core {
        let engine = Engine::new(kinds.clone());
        let matching = Matching::new(metrics.clone());
        Core { engine, matching }
    }

    /// Recovers live sessions, invites and matching state from the store.
    /// The store reads (and parses) on a thread of its own, a few pages ahead
    /// of the engine taking the sessions in, so the engine's inserts overlap
    /// the parsing, which is most of the work (callgrind, 50k sessions:
    /// parsing 570M instructions, the engine 170M, SQLite 85M).
    fn load(
        store: &dyn Store,
        kinds: &Kinds,
        floor: Millis,
        metrics: &Arc<Metrics>,
    ) -> Result<Core, store::StoreError> {
        let started = std::time::Instant::now();
        let mut engine = Engine::new(kinds.clone());
        let invites = store.invites()?;
        let (pages, received) = std::sync::mpsc::sync_channel::<Vec<tether_engine::Session>>(PAGES_AHEAD);
        let read = std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("tether-recovery".into())
                .spawn_scoped(scope, move || {
                    // A closed channel means the engine side is gone (it panicked): stop reading.
                    store.live_pages(&mut |page| {
                        let _ = pages.send(page);
                    })
                })
                .map_err(|e| store::StoreError::Backend(format!("cannot start the recovery reader: {e}")))?;
            engine.restore_since(floor, received.into_iter().flatten(), invites);
            reader.join().unwrap_or_else(|_| Err(store::StoreError::Backend("the recovery reader panicked".into())))
        });
        read?;
        let restored = started.elapsed();
        release_freed_memory();
        let matching = Matching::restore(store, &engine, metrics.clone())?;
        tracing::info!(
            sessions = engine.live_count(),
            sessions_ms = restored.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "recovered the live state"
        );
        Ok(Core { engine, matching })
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.engine.next_deadline(), self.matching.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies everything due at `now`.
    fn tick(&mut self, now: Millis) -> Change {
        let mut change = Change::from(self.engine.expire_due(now));
        self.matching.expire_due(now, &mut self.engine, &mut change);
        change
    }
}

pub struct App {
    /// Only [`App::read`] and [`App::change`] lock it.
    core: Mutex<Core>,
    pub journal: Journal,
    pub hub: Arc<Hub>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    pub demo: bool,
    /// The per-caller rate limits (`[limits]` `user_rate`, `api_key_rate`, …).
    pub rate: crate::http::rate::RateLimits,
    /// How long a WebSocket may take to accept a batch of events before it is closed.
    pub ws_send_timeout: std::time::Duration,
    /// Wakes the deadline timer when an earlier deadline appears.
    wake: Notify,
    /// What the timer sleeps until (i64::MAX: nothing scheduled).
    wake_at: AtomicI64,
    pub ready: AtomicBool,
    /// Flips to true on shutdown: event streams and sockets close.
    pub closing: watch::Sender<bool>,
    /// Printed once at first start when no key was configured.
    pub generated_api_key: Option<String>,
    /// The webhook endpoints and the channel to their delivery worker.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Set when this node is one of a cluster (`postgres://` store).
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// The PostgreSQL store, whose lease the cluster runs on.
    pub postgres: Option<Arc<store::PostgresStore>>,
    /// The server's runtime, for tasks started from the cluster thread.
    pub runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    /// `cors_origins`, for the router's CORS layer.
    pub cors: crate::config::Cors,
    /// This process's id among cluster nodes (a UUID chosen at start).
    pub node_id: String,
    pub started_at: Millis,
    /// The URL this node is reached at (set once it listens).
    pub advertise: std::sync::OnceLock<String>,
    kinds: Kinds,
}

/// A change was applied in memory but could not be made durable (the store
/// failed or the journal stopped): nothing was acknowledged.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommitError(pub String);

/// The result of [`App::change`]: the operation has run and its change is
/// queued in order. Await it to wait until the change is durable (what a
/// handler does before answering `2xx`), or [`Pending::detach`] it when
/// nobody waits (heartbeats, the timer, closing sockets).
#[must_use = "await it to wait until the change is durable, or detach it"]
pub struct Pending<T, E> {
    outcome: Result<T, E>,
    /// The journal's acknowledgement of this change; `None` when the
    /// operation failed or changed nothing durable.
    ack: Option<Ack>,
    /// For a success that changed nothing (ending an ended session, say):
    /// awaiting still waits until everything queued before is durable, so an
    /// answer never shows state an earlier, still-queued change has not yet
    /// made durable. Costs nothing when detached.
    barrier: Option<Journal>,
}

impl<T, E> Pending<T, E> {
    /// The operation's outcome without waiting for durability. The change is
    /// still committed, in order, by the journal.
    pub fn detach(self) -> Result<T, E> {
        self.outcome
    }
}

impl<T: Send + 'static, E: From<CommitError> + Send + 'static> IntoFuture for Pending<T, E> {
    type Output = Result<T, E>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(ack) = self.ack {
                ack.wait().await.map_err(|e| E::from(CommitError(e)))?;
            } else if let Some(journal) = self.barrier {
                journal.flush().await.map_err(|e| E::from(CommitError(e)))?;
            }
            self.outcome
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl App {
    /// Opens the store, recovers live sessions and matching state, and starts the journal.
    pub fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Arc<App>, StartError> {
        let postgres = store::open_postgres(&settings.store)?;
        let store: Arc<dyn Store> = match &postgres {
            Some(pg) => pg.clone(),
            None => store::open(&settings.store)?,
        };
        let metrics = Arc::new(Metrics::default());
        let epoch: u64 = store.meta_get("event_epoch")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        // A cluster node's term is bumped atomically when it takes the lease
        // (`PostgresStore::lease_acquire`); a read-modify-write here could undo one.
        if postgres.is_none() {
            store.meta_put("event_epoch", &epoch.to_string())?;
        }

        let jwt_secret = match settings.jwt_secret.clone() {
            Some(s) => s,
            None => store.meta_put_if_absent("auth.jwt_secret", &random_token(32))?,
        };
        let mut api_keys = settings.api_keys.clone();
        let mut generated_api_key = None;
        if api_keys.is_empty() {
            let fresh = format!("tk_{}", random_token(24));
            let key = store.meta_put_if_absent("auth.api_key", &fresh)?;
            if key == fresh {
                generated_api_key = Some(key.clone());
            }
            api_keys.push(key);
        }

        // A cluster node loads the live state when it takes the lease over.
        let core = match postgres {
            Some(_) => Core::empty(&settings.kinds, &metrics),
            None => Core::load(&*store, &settings.kinds, clock.now(), &metrics)?,
        };

        let hub = Arc::new(Hub::new(epoch, metrics.clone(), clock.clone(), store.clone()));
        let (journal, _thread) = Journal::start(store.clone(), hub.clone());
        let (closing, _) = watch::channel(false);
        let rate = crate::http::rate::RateLimits::new(&settings.limits, metrics.clone());
        let webhooks = Arc::new(crate::webhooks::Webhooks::new(settings.webhooks.clone(), &*store)?);
        let app = Arc::new(App {
            core: Mutex::new(core),
            journal,
            hub,
            store,
            clock: clock.clone(),
            auth: Auth::new(jwt_secret, api_keys),
            metrics,
            demo: settings.demo,
            rate,
            ws_send_timeout: settings.limits.ws_send_timeout,
            wake: Notify::new(),
            wake_at: AtomicI64::new(i64::MAX),
            ready: AtomicBool::new(false),
            closing,
            generated_api_key,
            webhooks,
            cluster: std::sync::OnceLock::new(),
            postgres,
            runtime: std::sync::OnceLock::new(),
            cors: settings.cors.clone(),
            node_id: new_id(),
            started_at: clock.now(),
            advertise: std::sync::OnceLock::new(),
            kinds: settings.kinds.clone(),
        });
        Ok(app)
    }

    /// Whether this node owns the live state: always on one node; in a
    /// cluster, only while it holds the lease.
    pub fn owns_work(&self) -> bool {
        self.cluster.get().is_none_or(|c| c.is_owner())
    }

    /// Loads the live state from the store (a cluster node taking over),
    /// counting activity as no older than `activity_floor` (see `Engine::restore_since`).
    pub fn load_state(&self, activity_floor: Millis) -> Result<(), store::StoreError> {
        let core = Core::load(&*self.store, &self.kinds, activity_floor, &self.metrics)?;
        *self.core.lock() = core;
        Ok(())
    }

    /// Drops the live state (a cluster node that no longer owns it).
    pub fn clear_state(&self) {
        *self.core.lock() = Core::empty(&self.kinds, &self.metrics);
    }

    /// Wakes the deadline timer (after the state was replaced).
    pub fn wake_timer(&self) {
        self.wake.notify_one();
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Reads under the core lock. Nothing due is applied first: a read may see
    /// a session whose deadline passed a moment ago and is about to be ended.
    /// Keep `f` short: every operation and the deadline timer wait for it.
    pub fn read<T>(&self, f: impl FnOnce(&Core) -> T) -> T {
        f(&self.core.lock())
    }

    /// The one way to change the core. Under the lock: applies whatever is
    /// already due (so `op` never acts on a session past its deadline), runs
    /// `op` with the time and the change to add to, lets matching react,
    /// counts ends, wakes the timer if a deadline moved earlier, and queues
    /// the change to the journal. A failed `op` still commits what was due
    /// (and whatever it changed before failing) but is not waited for.
    pub fn change<T, E>(&self, op: impl FnOnce(&mut Core, Millis, &mut Change) -> Result<T, E>) -> Pending<T, E> {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let now = self.now();
        let mut change = core.tick(now);
        let outcome = op(core, now, &mut change);
        core.matching.settle(now, &mut core.engine, &mut change);
        self.count_ends(&change);
        self.nudge(core);
        if change.is_empty() {
            let barrier = outcome.is_ok().then(|| self.journal.clone());
            return Pending { outcome, ack: None, barrier };
        }
        match outcome {
            Ok(value) => Pending { outcome: Ok(value), ack: Some(self.journal.submit(change)), barrier: None },
            Err(e) => {
                self.journal.submit_detached(change);
                Pending { outcome: Err(e), ack: None, barrier: None }
            }
        }
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
    fn nudge(&self, core: &Core) {
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
            // Nothing to wait for: ends are published once durable, nobody answers.
            let _ = self.change(|_, _, _| Ok::<_, CommitError>(())).detach();
            // Published under the lock, so an operation that adds an earlier
            // deadline after this point sees it and wakes us.
            let next = self.read(|core| {
                let next = core.next_deadline();
                self.wake_at.store(next.unwrap_or(i64::MAX), Ordering::Release);
                next
            });
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
        // In a cluster another node may have to take over from the durable
        // state alone: a shorter interval leaves fewer heartbeats unwritten.
        let every = if self.postgres.is_some() { HEARTBEAT_FLUSH_CLUSTER } else { HEARTBEAT_FLUSH };
        let mut every = tokio::time::interval(every);
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
        let flushed = self.change(|core, _, change| {
            let dirty = core.engine.take_dirty();
            change.writes.extend(dirty.into_iter().map(|s| StoreWrite::Engine(Write::Session(s.into()))));
            Ok::<_, CommitError>(())
        });
        // Heartbeats are not acknowledged as durable (see above).
        let _ = flushed.detach();
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
            if !self.owns_work() {
                continue;
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
        let kinds = self.read(|core| core.engine.kinds().clone());
        let cutoff = move |kind: &str| {
            let retention = kinds.get(kind).map(|k| k.retention).unwrap_or(tether_engine::kind::DEFAULT_RETENTION);
            now - retention.millis()
        };
        self.store.purge(&cutoff, dry_run)
    }
}

/// Pages of decoded sessions the recovery reader may run ahead of the engine.
const PAGES_AHEAD: usize = 2;

/// How often heartbeat state is written on one node…
pub const HEARTBEAT_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// …and on a cluster node (see `cluster.rs`, "Takeover").
pub const HEARTBEAT_FLUSH_CLUSTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Hands memory freed after a large recovery back to the operating system:
/// the wire-form sessions read page by page leave the allocator's heap
/// fragmented, which (measured) kept RSS far above what the engine holds.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
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

//! Several nodes on one PostgreSQL (contract section 8): who owns the work,
//! how requests reach the owner, how events reach every node, and how the
//! work moves when a node stops or dies.
//!
//! ## Ownership: one lease, fenced
//! The live state (engine and matching, with every deadline in memory) is
//! owned by the one node holding the cluster lease (a row in PostgreSQL timed
//! by the database's clock, see `store::postgres`). The holder renews it every
//! [`Cluster::beat_every`]; the others read it as often and take it over once
//! it has expired, so a dead owner's work moves within `lease` + one beat.
//! Taking it over bumps a fencing epoch, and every commit of the owner checks
//! its epoch under a row lock in the same transaction: a node that lost the
//! lease (paused past it, then resumed) has every commit refused and applies
//! nothing; it notices at its next beat (or at the refused commit) and steps
//! down to a follower. On takeover the new owner first publishes every event
//! the old one committed, then loads the live sessions, invites and matching
//! state from the store and fires whatever is overdue at once.
//!
//! **Why one partition.** Every per-user decision (`per_user` policies across
//! kinds sharing a user, cascades from parent to child sessions of other
//! users, and pairing, which puts two users in one call) would cross
//! partitions keyed by user and need a distributed transaction; with one
//! owner they stay the single-node engine's local decisions, and the
//! contract's guarantees hold by construction. What a single owner bounds is
//! the write rate (that of one node; reads of ended sessions and the event
//! streams are served by every node). The lease and fencing are per row, so
//! partitioning later is a key change, not a new protocol.
//!
//! ## Takeover: deadlines keep their times
//! The new owner computes every deadline from the durable state, so a
//! deadline that fell during the outage fires at once (at most `lease` + one
//! beat after the death) and later ones on time — unlike a single node's
//! restart, which counts idle time again from the restart (its clients could
//! not reach it; a cluster's could reach the other nodes). Heartbeats are
//! written in batches ([`crate::app::HEARTBEAT_FLUSH_CLUSTER`], 200 ms on a
//! cluster node): a heartbeat the dead owner had not yet written is lost, so a
//! session whose only recent heartbeat was in its last 200 ms and whose idle
//! deadline fell before the takeover is ended `idle_timeout` at the takeover.
//! That needs an `idle_timeout` shorter than `lease` plus the client's
//! heartbeat interval; the SDK heartbeats at a third of it.
//!
//! ## Routing: forward to the owner
//! A follower forwards every `/v1/` request except the event streams and the
//! cluster listing to the owner's advertised URL (HTTP, keep-alive), marked
//! with [`FORWARDED_BY`]; the answer is the owner's, byte for byte. While no
//! owner is known (a takeover in progress), or the owner refused because it
//! is no longer the owner, or its address refused the connection (it just
//! exited), the follower waits and retries for up to `lease` + 2 s, then
//! answers `503` with `Retry-After`. A request that reached the owner and
//! then lost its connection is not retried (it may have been applied): `502`.
//! WebSocket messages on a follower (heartbeats, signals, WebRTC reports)
//! are forwarded the same way, and each node reports its users' open sockets
//! to the owner for `disconnect_grace` (re-reported to a new owner).
//!
//! ## Events: the event log, tailed
//! The owner writes each event to the store's event log in the commit of its
//! change (ids are cluster-wide: `term·2⁴⁰ + n`, the term bumped at every
//! takeover), then `NOTIFY tether_events`. Every other node's cluster thread
//! LISTENs and reads the log after the last id it published (also every
//! [`TAIL_POLL`] without a notification), and broadcasts to its own
//! subscribers. A `Last-Event-ID` from any node resumes on any node: the
//! hub replays from its memory or from the log. Measured choice: see
//! docs/ARCHITECTURE.md ("Fan-out between nodes").

use crate::app::App;
use crate::http::problem::ApiError;
use crate::store::postgres::{LeaseRow, Listener, NodeRow};
use crate::store::PostgresStore;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The header a forwarded request carries: the forwarding node's id.
pub const FORWARDED_BY: &str = "tether-forwarded-by";
/// The header of a `503` from a node that does not own the work (the forwarder retries elsewhere).
pub const NOT_OWNER: &str = "tether-not-owner";
/// How often a follower reads the event log when no notification came.
pub const TAIL_POLL: Duration = Duration::from_millis(200);
/// Events read from the log per query by the tail.
const TAIL_PAGE: usize = 4096;
/// A forwarded request's own timeout (the owner answers within its limits).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Forwards requests; tails the event log.
    Follower,
    /// Holds the lease with this fencing epoch: owns the live state.
    Owner { epoch: i64 },
    /// Handing the lease over before exit: forwards like a follower, still
    /// renews the lease (its last commits must pass the fence) until it gives it back.
    Leaving { epoch: i64 },
    /// Shutting down: forwards and tails like a follower, never bids for the lease.
    Retired,
}

pub struct Cluster {
    pub node_id: String,
    pub advertise: String,
    pub lease: Duration,
    pg: Arc<PostgresStore>,
    role: RwLock<Role>,
    /// The owner's advertised URL, as last read (`None`: none holds the lease).
    owner_url: RwLock<Option<String>>,
    /// Wakes forwarders waiting for an owner.
    owner_changed: Notify,
    http: reqwest::Client,
    /// Requests being handled locally as the owner (drained before handing over).
    in_flight: AtomicUsize,
    /// Set when the cluster thread should stop.
    stopping: AtomicBool,
    /// Users with open sockets on this node, and how many (reported to the owner).
    sockets: Mutex<HashMap<String, usize>>,
    /// Wakes the cluster thread at once (a refused commit, a hand-over).
    poke: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Cluster {
    pub fn new(pg: Arc<PostgresStore>, node_id: String, advertise: String, lease: Duration) -> Cluster {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FORWARD_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Cluster {
            node_id,
            advertise,
            lease,
            pg,
            role: RwLock::new(Role::Follower),
            owner_url: RwLock::new(None),
            owner_changed: Notify::new(),
            http,
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            sockets: Mutex::new(HashMap::new()),
            poke: Mutex::new(None),
        }
    }

    /// How often the lease is renewed by its holder and read by the others.
    pub fn beat_every(&self) -> Duration {
        (self.lease / 10).clamp(Duration::from_millis(100), Duration::from_millis(500))
    }

    pub fn role(&self) -> Role {
        *self.role.read()
    }

    pub fn is_owner(&self) -> bool {
        matches!(self.role(), Role::Owner { .. })
    }

    pub fn nodes(&self) -> Result<Vec<NodeRow>, crate::store::StoreError> {
        self.pg.nodes()
    }

    /// Joins the cluster and starts the cluster thread (lease, membership, tail).
    pub fn start(self: &Arc<Self>, app: Arc<App>) -> Result<(), crate::store::StoreError> {
        self.pg.set_fence(None);
        self.pg.node_join(&self.node_id, &self.advertise)?;
        let (tx, rx) = std::sync::mpsc::channel();
        *self.poke.lock() = Some(tx);
        let me = self.clone();
        let tail_from = self.pg.events_head()?;
        app.hub.set_clustered(tail_from);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        // The synchronous client must not be created on the server's runtime threads.
        std::thread::Builder::new()
            .name("tether-cluster".into())
            .spawn(move || match me.pg.listen() {
                Ok(listener) => {
                    let _ = started_tx.send(Ok(()));
                    me.run(app, listener, rx, tail_from)
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            })
            .map_err(|e| crate::store::StoreError::Backend(format!("cannot start the cluster thread: {e}")))?;
        started_rx.recv().map_err(|_| crate::store::StoreError::Backend("the cluster thread stopped".into()))?
    }

    fn poke(&self) {
        if let Some(tx) = &*self.poke.lock() {
            let _ = tx.send(());
        }
    }

    /// The cluster thread: beats (membership and lease), takes over an
    /// expired lease, steps down from a lost one, and tails the event log
    /// while a follower. Blocking, on its own thread.
    fn run(
        self: Arc<Self>,
        app: Arc<App>,
        mut listener: Listener,
        pokes: std::sync::mpsc::Receiver<()>,
        mut tail_at: u64,
    ) {
        let mut next_beat = Instant::now();
        let mut known_epoch: Option<i64> = None;
        while !self.stopping.load(Ordering::Acquire) {
            let wait = TAIL_POLL.min(next_beat.saturating_duration_since(Instant::now()));
            let woken = match listener.wait(wait) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener failed; reconnecting");
                    std::thread::sleep(Duration::from_millis(200));
                    match self.pg.listen() {
                        Ok(l) => listener = l,
                        Err(e) => tracing::warn!(error = %e, "cluster listener reconnect failed"),
                    }
                    Default::default()
                }
            };
            let poked = pokes.try_recv().is_ok();
            if !self.is_owner() {
                tail_at = self.tail(&app, &mut listener, tail_at);
            } else {
                tail_at = tail_at.max(app.hub.head());
            }
            let refused = self.pg.take_refused();
            if !(woken.lease || poked || refused || Instant::now() >= next_beat) {
                continue;
            }
            // A lease given back (SIGTERM): bid at once, before anything else,
            // so the deadlines of the hand-over wait as little as possible.
            if woken.lease && self.role() == Role::Follower {
                tail_at = self.bid(&app, &mut listener, tail_at);
            }
            next_beat = Instant::now() + self.beat_every();
            let lease = match self.pg.node_beat(&self.node_id, &self.advertise, self.forget_after()) {
                Ok(l) => l,
                Err(e) => {
                    // An owner that cannot renew may lose the lease; its commits are fenced by the database.
                    tracing::warn!(error = %e, "cluster beat failed");
                    continue;
                }
            };
            match self.role() {
                Role::Owner { epoch } => {
                    let renewed = !refused
                        && self.pg.lease_renew(&self.node_id, epoch, self.lease.as_millis() as i64).unwrap_or(false);
                    if !renewed {
                        tracing::warn!(epoch, "lost the cluster lease; stepping down");
                        self.step_down(&app);
                        tail_at = app.hub.head();
                    }
                }
                Role::Follower => {
                    if !lease.valid {
                        tail_at = self.bid(&app, &mut listener, tail_at);
                    }
                }
                Role::Leaving { epoch } => {
                    let _ = self.pg.lease_renew(&self.node_id, epoch, self.lease.as_millis() as i64);
                }
                Role::Retired => {}
            }
            let lease = if self.is_owner() { self.pg.lease().unwrap_or(lease) } else { lease };
            self.note_owner(&lease, &mut known_epoch, &app);
        }
    }

    /// Takes the lease if it is free or expired and, having published what
    /// the former owner committed, the work with it; returns where the tail stands.
    fn bid(&self, app: &Arc<App>, listener: &mut Listener, mut tail_at: u64) -> u64 {
        match self.pg.lease_acquire(&self.node_id, self.lease.as_millis() as i64) {
            Ok(Some((epoch, term))) => {
                tail_at = self.tail(app, listener, tail_at);
                if let Err(e) = self.take_over(app, epoch, term) {
                    tracing::error!(error = %e, "taking over the cluster's work failed; giving the lease back");
                    self.step_down(app);
                    let _ = self.pg.lease_release(&self.node_id, epoch);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bidding for the cluster lease failed"),
        }
        tail_at
    }

    /// Nodes silent for this long leave the membership listing.
    fn forget_after(&self) -> i64 {
        (self.lease.as_millis() as i64 * 6).max(30_000)
    }

    /// Remembers who owns the work; on a new owner, re-reports this node's sockets.
    fn note_owner(&self, lease: &LeaseRow, known_epoch: &mut Option<i64>, app: &Arc<App>) {
        let url = if lease.valid { lease.advertise.clone() } else { None };
        let changed = *self.owner_url.read() != url;
        if changed {
            *self.owner_url.write() = url.clone();
            self.owner_changed.notify_waiters();
        }
        if lease.valid && *known_epoch != Some(lease.epoch) {
            *known_epoch = Some(lease.epoch);
            if lease.holder.as_deref() != Some(self.node_id.as_str()) {
                let users: Vec<String> =
                    self.sockets.lock().iter().filter(|(_, n)| **n > 0).map(|(u, _)| u.clone()).collect();
                if !users.is_empty() {
                    if let Some(rt) = app.runtime.get() {
                        let app = app.clone();
                        rt.spawn(async move { report_presence(&app, users, true).await });
                    }
                }
            }
        }
    }

    /// Publishes what the log has after `at` to this node's subscribers.
    fn tail(&self, app: &App, listener: &mut Listener, mut at: u64) -> u64 {
        loop {
            match listener.events_after(at, TAIL_PAGE) {
                Ok(events) => {
                    let n = events.len();
                    if let Some(last) = events.last() {
                        at = last.seq;
                    }
                    app.hub.broadcast(events.into_iter().map(Arc::new).collect());
                    if n < TAIL_PAGE {
                        return at;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the event log failed");
                    return at;
                }
            }
        }
    }

    /// Becomes the owner: commits must hold this epoch from now on; the live
    /// state is loaded from the store; overdue deadlines fire at once.
    fn take_over(&self, app: &Arc<App>, epoch: i64, term: u64) -> Result<(), crate::store::StoreError> {
        let started = Instant::now();
        self.pg.set_fence(Some((self.node_id.clone(), epoch)));
        self.pg.take_refused();
        // Deadlines keep their durable times (see "Takeover" in the module doc).
        app.load_state(i64::MIN)?;
        app.hub.begin_term(term);
        *self.role.write() = Role::Owner { epoch };
        app.wake_timer();
        tracing::info!(
            epoch,
            live = app.read(|core| core.engine.live_count()),
            load_ms = started.elapsed().as_millis() as u64,
            "took over the cluster's work"
        );
        Ok(())
    }

    fn step_down(&self, app: &App) {
        *self.role.write() = Role::Follower;
        self.pg.set_fence(None);
        app.clear_state();
    }

    /// SIGTERM on the owner: stop taking requests locally, let those in
    /// flight finish (up to 2 s), make everything durable, give the lease
    /// back (the others are notified and bid at once), keep serving as a
    /// follower (forwarding) until the server has drained.
    pub async fn hand_over(&self, app: &Arc<App>) {
        let Role::Owner { epoch } = self.role() else {
            // A follower that is stopping must not take the work on either.
            *self.role.write() = Role::Retired;
            return;
        };
        *self.role.write() = Role::Leaving { epoch };
        let started = Instant::now();
        while self.in_flight.load(Ordering::Acquire) > 0 && started.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.flush_heartbeats();
        if let Err(e) = app.journal.flush().await {
            tracing::error!(error = %e, "final flush before hand-over failed");
        }
        self.pg.set_fence(None);
        app.clear_state();
        let pg = self.pg.clone();
        let node = self.node_id.clone();
        let released = tokio::task::spawn_blocking(move || pg.lease_release(&node, epoch)).await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!("could not release the cluster lease; it expires after `lease`");
        }
        *self.owner_url.write() = None;
        *self.role.write() = Role::Retired;
        self.poke();
        tracing::info!(epoch, handed_over_ms = started.elapsed().as_millis() as u64, "handed the cluster's work over");
    }

    /// Leaves the membership and stops the cluster thread.
    pub async fn leave(&self) {
        self.stopping.store(true, Ordering::Release);
        self.poke();
        let pg = self.pg.clone();
        let node = self.node_id.clone();
        let _ = tokio::task::spawn_blocking(move || pg.node_leave(&node)).await;
    }

    /// The owner's URL, waiting up to `until` for one to be known.
    async fn owner_url(&self, until: Instant) -> Option<String> {
        loop {
            if let Some(url) = self.owner_url.read().clone() {
                if url != self.advertise || !matches!(self.role(), Role::Leaving { .. } | Role::Retired) {
                    return Some(url);
                }
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let wait = (until - now).min(self.beat_every());
            let _ = tokio::time::timeout(wait, self.owner_changed.notified()).await;
        }
    }

    /// Forgets the owner's address after it refused (the next beat re-reads it).
    fn owner_gone(&self, url: &str) {
        let mut owner = self.owner_url.write();
        if owner.as_deref() == Some(url) {
            *owner = None;
        }
        drop(owner);
        self.poke();
    }

    /// Sends a request to the owner and returns its answer (see the module
    /// doc); `Err(OwnerNow)` when this node became the owner meanwhile, so
    /// the caller handles it itself.
    pub async fn forward(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Response, OwnerNow> {
        let until = Instant::now() + self.lease + Duration::from_secs(2);
        loop {
            if self.is_owner() {
                return Err(OwnerNow);
            }
            let Some(base) = self.owner_url(until).await else {
                return Ok(no_owner());
            };
            let mut request = self.http.request(method.clone(), format!("{base}{path_and_query}"));
            for (name, value) in headers {
                if !hop_by_hop(name) {
                    request = request.header(name, value);
                }
            }
            request = request.header(FORWARDED_BY, &self.node_id).body(body.clone());
            match request.send().await {
                Ok(answer)
                    if answer.status() == StatusCode::SERVICE_UNAVAILABLE
                        && answer.headers().contains_key(NOT_OWNER) =>
                {
                    self.owner_gone(&base);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(answer) => return Ok(relay(answer).await),
                Err(e) if e.is_connect() => {
                    self.owner_gone(&base);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Ok(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "Bad gateway",
                        format!("the node that owns the work did not answer ({e}); the request may or may not have been applied"),
                    )
                    .into_response());
                }
            }
            if Instant::now() >= until {
                return Ok(no_owner());
            }
        }
    }

    /// This node's users' sockets, for `disconnect_grace` on the owner.
    pub fn socket_opened(&self, user: &str) -> bool {
        let mut sockets = self.sockets.lock();
        let n = sockets.entry(user.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    pub fn socket_closed(&self, user: &str) -> bool {
        let mut sockets = self.sockets.lock();
        match sockets.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                sockets.remove(user);
                true
            }
            None => false,
        }
    }
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "proxy-authorization"
            | "proxy-connection"
    ) || name.as_str() == FORWARDED_BY
}

async fn relay(answer: reqwest::Response) -> Response {
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    match answer.bytes().await {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Bad gateway",
            format!("the owning node's answer was cut off ({e}); the request may or may not have been applied"),
        )
        .into_response(),
    }
}

fn no_owner() -> Response {
    let mut response = ApiError::unavailable(
        "no node of the cluster owns the work right now (a takeover is in progress); retry shortly",
    )
    .into_response();
    response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    response
}

/// The answer of a node asked, through another, to do what it does not own.
fn not_owner() -> Response {
    let mut response = ApiError::unavailable("this node does not own the cluster's work").into_response();
    response.headers_mut().insert(NOT_OWNER, HeaderValue::from_static("1"));
    response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    response
}

/// Which requests go to the owner: every `/v1/` route but the event
/// streams (served by every node from the event log), the cluster listing
/// and demo tokens (signed with the shared secret, no state).
pub fn forwarded(path: &str) -> bool {
    path.starts_with("/v1/") && !matches!(path, "/v1/events" | "/v1/ws" | "/v1/admin/cluster" | "/v1/demo/token")
}

/// The routing step of every request (in the router's edge layer,
/// `crate::http::Edge`): the owner handles requests itself (counted, so a
/// hand-over can drain them); a follower forwards them. `next` handles the
/// request on this node.
pub async fn route<F, Fut>(app: &App, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(cluster) = app.cluster.get() else { return next(req).await };
    if !forwarded(req.uri().path()) {
        return next(req).await;
    }
    if cluster.is_owner() {
        cluster.in_flight.fetch_add(1, Ordering::AcqRel);
        let _done = InFlight(cluster);
        return next(req).await;
    }
    if req.headers().contains_key(FORWARDED_BY) {
        return not_owner();
    }
    let (parts, body) = req.into_parts();
    // The connection layer already bounded the body (`[limits]` max_body).
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::bad_request("the request body could not be read").into_response();
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match cluster.forward(parts.method.clone(), path, &parts.headers, body.clone()).await {
        Ok(answer) => answer,
        Err(OwnerNow) => {
            cluster.in_flight.fetch_add(1, Ordering::AcqRel);
            let _done = InFlight(cluster);
            next(Request::from_parts(parts, Body::from(body))).await
        }
    }
}

/// [`Cluster::forward`]: this node owns the work now; handle the request here.
#[derive(Debug)]
pub struct OwnerNow;

struct InFlight<'a>(&'a Cluster);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells the owner that users' sockets on this node opened (or closed).
pub async fn report_presence(app: &Arc<App>, users: Vec<String>, open: bool) {
    let Some(cluster) = app.cluster.get() else { return };
    let Some(key) = app.auth.first_api_key() else { return };
    let body = serde_json::json!({"node": cluster.node_id, "users": &users, "open": open});
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}")) {
        headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match cluster.forward(reqwest::Method::POST, "/v1/internal/presence", &headers, body.to_string().into()).await {
        Ok(answer) if !answer.status().is_success() => {
            tracing::warn!(status = %answer.status(), "reporting sockets to the owning node failed");
        }
        Ok(_) => {}
        Err(OwnerNow) => {
            // This node took over: its own sockets count directly.
            let recorded = app.change(|core, now, _| {
                for user in &users {
                    if open {
                        core.engine.socket_opened(user);
                    } else {
                        core.engine.socket_closed(now, user);
                    }
                }
                Ok::<_, crate::app::CommitError>(())
            });
            let _ = recorded.detach();
        }
    }
}

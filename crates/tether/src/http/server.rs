//! The connection layer under the router (contract section 11): accepting,
//! capping, timing out and closing TCP connections, and making the refusals
//! hyper writes by itself problem+json. [`run`] is the accept loop
//! [`super::serve`] hands the router to.
//!
//! # What a connection may do
//!
//! - **Head in time.** A new connection must deliver its first request head
//!   within `header_timeout` of being accepted; on a kept-alive connection the
//!   clock starts with the first byte of the next head. Otherwise it is closed
//!   (no answer: the request never arrived).
//! - **Body in time.** A request's whole body must arrive within
//!   `body_timeout` of its head, else `408` problem+json and the connection
//!   closes ([`RequestLimits`], read by [`super::problem::read_body`]).
//! - **Idle.** A kept-alive connection with nothing in flight and no byte of a
//!   new head for `idle_timeout` is closed. A request is in flight from its
//!   head until its response body is dropped, so an SSE stream is never idle,
//!   and a WebSocket leaves this layer once upgraded: neither is cut.
//! - **Declared too large.** A `Content-Length` over `max_body` answers `413`
//!   before a byte of the body is read, and instead of `100 Continue` when
//!   the client sent `Expect: 100-continue` (hyper sends `100` only when the
//!   body is first read, and it never is).
//!
//! hyper's own `header_read_timeout` is not used for the first rule: hyper
//! starts it whenever the connection waits for a head, so it also times the
//! gap between kept-alive requests, and `idle_timeout` could never be longer
//! than `header_timeout`. A watchdog per connection ([`Activity`]) keeps the
//! three clocks apart instead; it learns of bytes from [`Tracked`], the
//! connection's IO, and of requests from the in-flight guard on each response.
//!
//! # The cap, and `/healthz` when it is reached
//!
//! At most `max_connections` connections are served at once (each holds a
//! semaphore permit until its socket closes, upgraded WebSockets included).
//! When they are all taken, a new connection is still accepted, into an
//! *overflow lane* of [`OVERFLOW_SLOTS`] connections that live at most
//! [`OVERFLOW_TIME`]: there `GET /healthz` is answered by the router as
//! usual and anything else gets `503` problem+json with `Retry-After`, then
//! the connection closes. When the lane is full the oldest connection in it is
//! closed to make room, without waiting for it to let go (the lane's
//! descriptors are bounded at twice its size): a probe sends its request at
//! once and is answered within milliseconds, so a flood of silent
//! connections cannot keep it out.
//! Already-open connections are untouched. Accepting rather than leaving
//! connections in the backlog is what lets a probe be answered at all; the
//! lane's bound is what keeps the process inside its open-file limit.
//!
//! The default cap comes from the open-file limit, which `tether serve` first
//! raises to its hard limit ([`raise_open_file_limit`]): the soft limit minus
//! a reserve of a tenth (at least 64) for the store, logs, the listener,
//! outbound webhooks and the overflow lane, and at most 10,000 (the contract's
//! example). With the common 1024: 922 connections.
//!
//! # Refusals hyper writes itself
//!
//! A request line or head hyper cannot parse is refused by hyper before the
//! router sees anything: `400` (malformed request line, method, URI, version
//! or header), `414` (URI of 64 KiB or more), `431` (more than 100 headers,
//! or a head over hyper's ~400 KiB read buffer). hyper offers no hook for
//! their bodies and writes them with `content-length: 0`; [`Tracked`]
//! recognises such a head written while no request is in flight (the router
//! never answers those statuses with an empty body) and writes a
//! problem+json response in its place, with `connection: close`, since hyper
//! closes the connection after it. A head larger than the read buffer leaves
//! unread bytes behind when the connection closes, so the kernel may answer
//! the client with a reset, and a client still sending may not see the `431`.
//!
//! The listen backlog is raised to [`LISTEN_BACKLOG`] (from tokio's 128),
//! so a burst of connects does not stall in SYN retries.

use crate::config::Limits;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::Service;

use super::problem::ApiError;

/// The listen backlog: connects beyond tokio's default 128 queue in the
/// kernel instead of waiting a SYN retry (about a second).
pub const LISTEN_BACKLOG: i32 = 1024;
/// Connections served in the overflow lane at once (see the module doc).
pub const OVERFLOW_SLOTS: usize = 16;
/// How long a connection may stay in the overflow lane.
pub const OVERFLOW_TIME: Duration = Duration::from_secs(1);
/// What the overflow lane's `503` asks the client to wait.
const RETRY_AFTER_SECS: u64 = 1;
/// How often reaching the connection cap is logged, at most.
const CAP_REPORT_EVERY: Duration = Duration::from_secs(10);
/// The contract's example cap, and the most the default derives.
const DEFAULT_CAP_CEILING: u64 = 10_000;

/// Raises the soft open-file limit to the hard limit; returns the soft limit
/// now in force. Every connection is a descriptor: a soft limit below the
/// hard one only makes the server refuse sooner than it has to.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(rlim_u64(lim.rlim_cur))
}

/// `rlim_t` is `u64` on Linux but not on every Unix.
#[allow(clippy::unnecessary_cast)]
fn rlim_u64(value: libc::rlim_t) -> u64 {
    value as u64
}

/// The soft open-file limit in force, if it can be read.
fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct passed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(rlim_u64(lim.rlim_cur))
}

/// The default `max_connections` for an open-file limit of `nofile`: a tenth
/// (at least 64) kept for everything that is not a client connection, at most
/// 10,000, at least 1.
pub fn default_max_connections(nofile: u64) -> usize {
    let reserve = (nofile / 10).max(64);
    nofile.saturating_sub(reserve).clamp(1, DEFAULT_CAP_CEILING) as usize
}

/// What the request layer needs: a body's size limit and its deadline.
/// Inserted into every request's extensions by [`limit_request`].
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    pub max_body: usize,
    pub body_timeout: Duration,
    /// When the whole body must have arrived (`body_timeout` after the head).
    pub body_deadline: Instant,
}

/// Refuses a declared `Content-Length` over `max_body` with `413` before the
/// body is read, and gives every request its [`RequestLimits`]. Called by the
/// connection's service before the router (not a router layer: those are
/// cloned and boxed per route and per request, which the heartbeat profile
/// showed).
fn limit_request(limits: &Limits, mut req: Request) -> Result<Request, Box<Response>> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > limits.max_body as u64) {
        let expects_continue = req
            .headers()
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if !expects_continue {
            // The client is sending anyway: read a little of it so that closing
            // does not reset the connection before the client reads the 413.
            tokio::spawn(super::problem::drain(req.into_body()));
        }
        return Err(Box::new(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!("the declared body of {len} bytes is over the limit of {} bytes", limits.max_body),
            )
            .with_header(header::CONNECTION, HeaderValue::from_static("close"))
            .into_response(),
        ));
    }
    let deadline = Instant::now() + limits.body_timeout;
    req.extensions_mut().insert(RequestLimits {
        max_body: limits.max_body,
        body_timeout: limits.body_timeout,
        body_deadline: deadline,
    });
    Ok(req)
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every connection finish its in-flight requests (idle ones
/// close at once) and returns when all have closed.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Err(e) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
        tracing::warn!(error = %e, "could not raise the listen backlog to {LISTEN_BACKLOG}");
    }
    let max_connections =
        limits.max_connections.unwrap_or_else(|| open_file_limit().map_or(1024, default_max_connections));
    tracing::info!(
        max_connections,
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        idle_timeout = ?limits.idle_timeout,
        max_body = limits.max_body,
        "connection limits"
    );
    let limits = Arc::new(limits.clone());
    let timeouts = Timeouts { header: limits.header_timeout, idle: limits.idle_timeout };
    let slots = Arc::new(Semaphore::new(max_connections));
    let overflow = Arc::new(OverflowLane::default());
    // At the edge of the cap connections come and go many times a second:
    // reaching it is reported once per CAP_REPORT_EVERY.
    let mut cap_reported_at: Option<Instant> = None;
    // Every connection task holds a receiver: `closed()` on the sender
    // resolves once the last one has finished (how axum::serve waits too).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of descriptors or memory: accepting again at once would spin.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Events are small writes on long-lived connections: without TCP_NODELAY,
        // Nagle's algorithm holds one back until the client's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection =
                    Connection { router: router.clone(), limits: limits.clone(), timeouts, stop: stop_rx.clone() };
                tokio::spawn(connection.serve(tcp, slot));
            }
            Err(_) => {
                if cap_reported_at.is_none_or(|at| at.elapsed() >= CAP_REPORT_EVERY) {
                    cap_reported_at = Some(Instant::now());
                    tracing::warn!(
                        max_connections,
                        "connection cap reached: new connections get only /healthz, others 503 ([limits].max_connections)"
                    );
                }
                let slot = overflow.admit().await;
                tokio::spawn(overflow.clone().serve(tcp, slot, router.clone(), limits.clone(), stop_rx.clone()));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

/// Errors about one connection that went away while being accepted, after
/// which accepting again at once is right.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// One connection in the main lane.
struct Connection {
    router: Router,
    limits: Arc<Limits>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream, slot: OwnedSemaphorePermit) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked::new(tcp, activity.clone(), Some(slot)));
        let service = tracked_service(self.router, self.limits.clone(), activity.clone(), Lane::Main);
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The watchdog below times heads (see the module doc), not hyper.
        builder.header_read_timeout(None);
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        let mut stopping = false;
        loop {
            let deadline = activity.deadline(self.timeouts);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = sleep_until(deadline.map(|(at, _)| at)) => {
                    // Re-read: a byte or a request may have arrived as the timer fired.
                    if let Some((at, why)) = activity.deadline(self.timeouts) {
                        if at <= Instant::now() {
                            tracing::debug!("closing a connection: {why}");
                            return;
                        }
                    }
                }
                _ = activity.changed.notified() => {}
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the watchdog of one connection knows: requests in flight, and when
/// the connection began waiting for a head or first received a byte of one.
struct Activity {
    in_flight: AtomicUsize,
    clocks: Mutex<Clocks>,
    /// Wakes the watchdog when its deadline may have moved.
    changed: Notify,
}

struct Clocks {
    /// Accepted, no request yet: the head clock runs from the accept.
    fresh: bool,
    /// When the last response finished (or the accept).
    waiting_since: Instant,
    /// The first byte of the next head, on a kept-alive connection.
    head_since: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            clocks: Mutex::new(Clocks { fresh: true, waiting_since: Instant::now(), head_since: None }),
            changed: Notify::new(),
        }
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, t: Timeouts) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let clocks = self.clocks.lock();
        Some(match (clocks.fresh, clocks.head_since) {
            (true, _) => (clocks.waiting_since + t.header, "no request head within header_timeout of the accept"),
            (false, Some(since)) => (since + t.header, "the request head did not complete within header_timeout"),
            (false, None) => (clocks.waiting_since + t.idle, "idle for idle_timeout"),
        })
    }

    /// Bytes arrived: if the connection was idle, a head has begun.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        let mut clocks = self.clocks.lock();
        if !clocks.fresh && clocks.head_since.is_none() {
            clocks.head_since = Some(Instant::now());
            drop(clocks);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut clocks = self.clocks.lock();
        clocks.fresh = false;
        clocks.head_since = None;
        InFlight(self.clone())
    }
}

/// Held by a response body: the request is in flight until hyper drops it
/// (after writing the last byte, or when the connection closes).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.clocks.lock().waiting_since = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

#[derive(Clone, Copy)]
enum Lane {
    Main,
    /// At the cap: `/healthz` only (see the module doc).
    Overflow,
}

/// The router as a hyper service that marks each request in flight for the
/// connection's watchdog until its response body is dropped, behind the
/// request-level limits ([`limit_request`]).
fn tracked_service(
    router: Router,
    limits: Arc<Limits>,
    activity: Arc<Activity>,
    lane: Lane,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = activity.request_started();
        let req = req.map(Body::new);
        let admitted = match lane {
            Lane::Overflow if !is_health_probe(&req) => Err(Box::new(at_capacity())),
            _ => limit_request(&limits, req),
        };
        let mut router = router.clone();
        async move {
            let response = match admitted {
                Ok(req) => match router.call(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Err(refused) => *refused,
            };
            Ok(response.map(|body| Body::new(InFlightBody { body, _in_flight: guard })))
        }
    })
}

/// A response body that keeps its request in flight until hyper drops it;
/// everything else, the size hint (hence `content-length`) included, is the body's.
struct InFlightBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn is_health_probe(req: &Request) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD) && req.uri().path() == "/healthz"
}

fn at_capacity() -> Response {
    ApiError::unavailable(
        "the server is at its connection limit ([limits].max_connections); retry shortly, or reuse an open connection",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS))
    .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    .into_response()
}

/// The connections accepted beyond the cap (see the module doc): at most
/// [`OVERFLOW_SLOTS`], the oldest closed to make room for a new one.
struct OverflowLane {
    /// One permit per connection in the lane, held until its socket closes:
    /// `2 × OVERFLOW_SLOTS`, the lane plus the connections it has just told
    /// to close, so the lane never holds more descriptors than that.
    slots: Arc<Semaphore>,
    /// Each connection's id and the sender that closes it, oldest first.
    open: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
}

impl Default for OverflowLane {
    fn default() -> OverflowLane {
        OverflowLane {
            slots: Arc::new(Semaphore::new(2 * OVERFLOW_SLOTS)),
            open: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl OverflowLane {
    /// A slot for a new connection, closing the oldest one in the lane if
    /// it is full. The closed one lets go of its descriptor a moment later;
    /// the slots (twice the lane) cover that moment, so admitting does not
    /// wait on it, and bound the descriptors if closing ever lags.
    async fn admit(&self) -> OwnedSemaphorePermit {
        let oldest = {
            let mut open = self.open.lock();
            if open.len() >= OVERFLOW_SLOTS {
                open.pop_front()
            } else {
                None
            }
        };
        // Dropping the sender closes that connection.
        drop(oldest);
        loop {
            if let Ok(Ok(slot)) = tokio::time::timeout(OVERFLOW_TIME, self.slots.clone().acquire_owned()).await {
                return slot;
            }
            // Still none after OVERFLOW_TIME, when every connection in the lane has ended on its own: not reached.
            tracing::warn!("the overflow lane's connections did not let go of their slots");
        }
    }

    async fn serve(
        self: Arc<Self>,
        tcp: TcpStream,
        slot: OwnedSemaphorePermit,
        router: Router,
        limits: Arc<Limits>,
        mut stop: watch::Receiver<bool>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (evict_tx, evict_rx) = oneshot::channel();
        self.open.lock().push_back((id, evict_tx));
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked::new(tcp, activity.clone(), Some(slot)));
        let service = tracked_service(router, limits, activity, Lane::Overflow);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(false).header_read_timeout(None);
        let conn = builder.serve_connection(io, service);
        tokio::select! {
            _ = conn => {}
            _ = tokio::time::sleep(OVERFLOW_TIME) => {}
            _ = evict_rx => {}
            _ = stop.changed() => {}
        }
        self.open.lock().retain(|(open_id, _)| *open_id != id);
    }
}

/// A connection's socket, as hyper (and an upgraded WebSocket) sees it: it
/// tells the watchdog when bytes arrive, holds the connection's slot under the
/// cap until the socket closes, and replaces hyper's empty refusals with
/// problem+json (see the module doc).
struct Tracked {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _slot: Option<OwnedSemaphorePermit>,
    /// A replacement refusal still being written: the bytes and how many are out.
    replacement: Option<(Bytes, usize)>,
}

impl Tracked {
    fn new(tcp: TcpStream, activity: Arc<Activity>, slot: Option<OwnedSemaphorePermit>) -> Tracked {
        Tracked { tcp, activity, _slot: slot, replacement: None }
    }

    /// Writes what is left of a replacement refusal.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.activity.in_flight.load(Ordering::Acquire) == 0 {
            if let Some(problem) = refusal_as_problem(buf) {
                // hyper's bytes count as written: what goes out is the problem.
                self.replacement = Some((problem, 0));
                let _ = self.poll_replacement(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// If `head` is one of hyper's own refusals (`400`, `414` or `431` with an
/// empty body, see the module doc), the problem+json response to send
/// instead.
///
/// Every response whose body is already done is written with nothing in
/// flight, so this runs for most answers: the status is matched on the
/// bytes first and the head is only searched for a refusal's status (the
/// heartbeat profile found a lowercased copy of every head here).
fn refusal_as_problem(head: &[u8]) -> Option<Bytes> {
    let code = head.strip_prefix(b"HTTP/1.1 ").or_else(|| head.strip_prefix(b"HTTP/1.0 "))?.get(..3)?;
    let (status, title, detail) = match code {
        b"400" => (400, "Bad request", "the request line or a header could not be parsed as HTTP/1.1"),
        b"414" => (414, "URI too long", "the request URI is too long (the limit is 64 KiB)"),
        b"431" => (
            431,
            "Request header fields too large",
            "the request head is too large (at most 100 headers and about 400 KiB)",
        ),
        _ => return None,
    };
    let head_text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if !head_text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let slug = title.to_ascii_lowercase().replace(' ', "-");
    let body = serde_json::json!({
        "type": format!("https://tether.dev/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string();
    let reason = StatusCode::from_u16(status).ok()?.canonical_reason().unwrap_or("");
    Some(Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_keeps_a_reserve() {
        assert_eq!(default_max_connections(1024), 922);
        assert_eq!(default_max_connections(256), 192, "at least 64 kept");
        assert_eq!(default_max_connections(40), 1);
        assert_eq!(default_max_connections(1 << 20), 10_000);
    }

    /// A full lane makes room at once: the oldest connection is told to
    /// close and the new one is admitted without waiting for it.
    #[tokio::test]
    async fn a_full_overflow_lane_evicts_its_oldest_at_once() {
        let lane = OverflowLane::default();
        let mut connections = Vec::new();
        for id in 0..OVERFLOW_SLOTS as u64 + 1 {
            let started = std::time::Instant::now();
            let slot = lane.admit().await;
            assert!(started.elapsed() < OVERFLOW_TIME / 4, "admitted after {:?}", started.elapsed());
            let (evict_tx, evict_rx) = oneshot::channel::<()>();
            lane.open.lock().push_back((id, evict_tx));
            // A connection: holds its slot until told to close.
            connections.push(tokio::spawn(async move {
                let _ = evict_rx.await;
                drop(slot);
                id
            }));
        }
        assert_eq!(connections.remove(0).await.unwrap(), 0, "the oldest made room");
        tokio::task::yield_now().await;
        assert!(connections.iter().all(|task| !task.is_finished()), "only the oldest was closed");
        assert_eq!(lane.open.lock().len(), OVERFLOW_SLOTS);
    }

    #[test]
    fn only_hypers_empty_refusals_are_replaced() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let problem = String::from_utf8(refusal_as_problem(hyper_431).unwrap().to_vec()).unwrap();
        assert!(problem.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{problem}");
        let (head, body) = problem.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["status"], 431);
        for code in ["400", "414"] {
            let head = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
            assert!(refusal_as_problem(head.as_bytes()).is_some(), "{code}");
        }
        // The router's own answers always have a body; other statuses are not hyper's refusals.
        assert!(refusal_as_problem(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 97\r\n\r\n{}").is_none());
        assert!(refusal_as_problem(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(refusal_as_problem(b"0\r\n\r\n").is_none());
    }
}

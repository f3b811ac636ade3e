//! Live events (contract section 5): Server-Sent Events with `Last-Event-ID`
//! resume (a `stream.gap` first when the resume point is older than the log
//! reaches), and a WebSocket carrying the same events plus client heartbeats,
//! call signals and WebRTC set-up reports (each counted against the caller's
//! rate limit), closed with `1001` on shutdown, `1009`/`1007` for a frame
//! too large or not UTF-8, and `1008` for a client that stops reading.
//! A user's WebSocket also drives `disconnect_grace`: the last one closing
//! starts it, a new one cancels it. `?kind=` must name a configured kind.

use super::access::StreamCaller;
use super::problem::{ApiError, QueryParams, BODY_LIMIT};
use super::rate::CallerKey;
use crate::app::{App, CommitError};
use crate::auth::Principal;
use crate::hub::{Gap, Published, Replay, Subscriber};
use crate::metrics::Stage;
use crate::wire::events::{Event, SessionForm, WsClientMessage, WsError, WsReply};
use crate::wire::problem::{MethodNotAllowed, Problem, Unauthorized};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The query of `GET /v1/events` (and of `GET /v1/ws`, which takes no resume point).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only events of sessions of this kind.
    kind: Option<String>,
    /// The bearer token, for clients that cannot set headers (EventSource, WebSocket).
    #[allow(dead_code)]
    token: Option<String>,
    /// Extension: resume after this event id (when `Last-Event-ID` cannot be set; on `/v1/ws` too).
    last_event_id: Option<u64>,
    /// Extension: `id` sends each event lean (`LeanEvent`: the session's id and the fields that
    /// change instead of the whole session); `full` (the default) sends `Event`.
    session: Option<SessionForm>,
}

/// `?session=`: whether the subscriber asked for lean events.
fn lean(form: Option<SessionForm>) -> bool {
    form == Some(SessionForm::Id)
}

/// `?kind=` must name a configured kind: a typo would otherwise give a
/// stream that can never deliver anything.
fn known_kind(app: &App, kind: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(kind) = kind else { return Ok(None) };
    app.read(|core| {
        let kinds = core.engine.kinds();
        if kinds.get(&kind).is_some() {
            return Ok(Some(kind));
        }
        let mut known: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
        known.sort_unstable();
        Err(ApiError::invalid("kind", format!("unknown kind {kind:?} (configured: {})", known.join(", "))))
    })
}

/// The resume point: `Last-Event-ID` (an empty one is absent, as the SSE spec
/// has it), else `?last_event_id=`. A header that is not an event id is a
/// `400` naming it: starting afresh instead would silently drop the events
/// the client meant to resume, which is what resume exists to prevent, and
/// browsers only ever send back ids the server gave them.
fn resume_point(headers: &HeaderMap, query: Option<u64>) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(query) };
    let text = value.to_str().ok().map(str::trim);
    if text == Some("") {
        return Ok(query);
    }
    text.and_then(|t| t.parse::<u64>().ok()).map(Some).ok_or_else(|| {
        ApiError::bad_request("Last-Event-ID must be an event id (a non-negative integer the stream sent as `id:`)")
            .with("field", Value::from("Last-Event-ID"))
    })
}

fn gap_json(gap: Gap) -> String {
    Event::gap_json(gap.from, gap.to)
}

fn subscriber(p: &Principal, kind: Option<String>) -> Subscriber {
    match p {
        Principal::ApiKey => Subscriber { user: None, session_scope: None, kind },
        Principal::User { id, scope } => Subscriber { user: Some(id.clone()), session_scope: scope.clone(), kind },
    }
}

/// Event stream (Server-Sent Events)
///
/// `id:` is the event's sequence number (monotonically increasing), `event:` its `type`, `data:`
/// the `Event` JSON. Reconnect with `Last-Event-ID` (or `?last_event_id=`) to resume from the
/// in-memory log. Comments keep the connection alive. The stream closes when the server shuts down.
#[utoipa::path(get, path = "/v1/events", operation_id = "events_sse", tag = "events", security(("bearer" = []), ("token_query" = [])),
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id."),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each event's `data:` is an `Event` (see the schema).",
            content_type = "text/event-stream", body = String,
            example = "id: 1099511627777\nevent: session.started\ndata: {\"id\":1099511627777,\"type\":\"session.started\",\"at\":\"2026-11-22T10:00:00.000Z\",\"session\":{…}}\n\n"),
        (status = 400, description = "`Last-Event-ID` is not an event id (a non-negative integer); `field` names it. \
            An id older than the resume log, or from before a restart, is not an error: the stream starts with `stream.gap`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 405, response = MethodNotAllowed),
        (status = 422, description = "`kind` names no configured kind, or a query parameter is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(
        ("x-event-schema" = json!({"$ref": "#/components/schemas/Event"})),
        ("x-lean-event-schema" = json!({"$ref": "#/components/schemas/LeanEvent"}))
    )
)]
pub async fn sse(
    State(app): State<Arc<App>>,
    StreamCaller(p, _): StreamCaller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(&headers, q.last_event_id)?;
    let lean = lean(q.session);
    let filter = subscriber(&p, known_kind(&app, q.kind)?);
    let (replay, rx) = app.hub.subscribe(after);
    let closing = app.closing.subscribe();
    let hub = app.hub.clone();
    // An open event stream counts as the user's presence for disconnect_grace,
    // like a WebSocket: a client that fell back to SSE is still there.
    let presence = Presence::open(app.clone(), p.user_id());
    let (tx, body) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, Infallible>>(8);
    tokio::spawn(async move {
        let _presence = presence;
        let mut feed = Feed::new(hub, rx, filter, replay);
        let mut closing = closing;
        let mut buf = String::new();
        // Deadline-driven ends in `buf`, for the `written` stage once it is sent.
        let mut timed: Vec<Arc<Published>> = Vec::new();
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        loop {
            if !buf.is_empty() {
                if tx.send(Ok(std::mem::take(&mut buf).into())).await.is_err() {
                    return;
                }
                feed.hub.reached(Stage::Written, timed.drain(..).as_slice());
            }
            tokio::select! {
                batch = feed.next_batch() => match batch {
                    Some(items) => {
                        for item in items {
                            match item {
                                Item::Event(e, timely) => {
                                    sse_frame(&mut buf, &e.seq.to_string(), e.event_type.as_str(), e.text(lean));
                                    if timely && e.deadline.is_some() {
                                        timed.push(e);
                                    }
                                }
                                Item::Gap(gap) => sse_frame(&mut buf, &gap.to.to_string(), "stream.gap", &gap_json(gap)),
                            }
                        }
                    }
                    None => return,
                },
                _ = keep_alive.tick() => buf.push_str(": keep-alive\n\n"),
                _ = tx.closed() => return,
                _ = closing.changed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(body);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
            (axum::http::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// SSE comments keep idle connections (and proxies) from timing out.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// A batch written to a client is at most about this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

fn sse_frame(buf: &mut String, id: &str, event_type: &str, data: &str) {
    // Event JSON is compact (no newlines), so one `data:` line carries it.
    buf.push_str("id: ");
    buf.push_str(id);
    buf.push_str("\nevent: ");
    buf.push_str(event_type);
    buf.push_str("\ndata: ");
    buf.push_str(data);
    buf.push_str("\n\n");
}

/// What a subscriber is sent: an event, or notice that events were lost
/// because it fell further behind than the resume log reaches.
enum Item {
    /// With whether it counts for the `written` stage of expiry lateness:
    /// not while replaying what a resume asked for (those ends are as old
    /// as the resume point, not late), but live and after a lag.
    Event(Arc<Published>, bool),
    Gap(Gap),
}

/// One subscriber's view of the hub: first what a resume owes it (a gap,
/// pages of the stored event log, the in-memory log), then live events —
/// waiting for the next one, then taking everything else already published
/// (so a burst is written in one batch), filtered by visibility. A
/// subscriber that lagged catches up the same way.
struct Feed {
    hub: Arc<crate::hub::Hub>,
    rx: tokio::sync::broadcast::Receiver<Arc<Published>>,
    filter: Subscriber,
    last: u64,
    /// A gap to report before anything else.
    gap: Option<Gap>,
    /// `(after, through)`: still to read from the store's event log.
    stored: Option<(u64, u64)>,
    /// In-memory log events owed after the stored range.
    logged: Vec<Arc<Published>>,
    /// Whether the resume the subscriber asked for has been delivered.
    live: bool,
}

/// Events read from the store per page while catching up.
const STORED_PAGE: usize = 2048;

impl Feed {
    fn new(
        hub: Arc<crate::hub::Hub>,
        rx: tokio::sync::broadcast::Receiver<Arc<Published>>,
        filter: Subscriber,
        replay: Replay,
    ) -> Feed {
        let mut feed = Feed { hub, rx, filter, last: 0, gap: None, stored: None, logged: Vec::new(), live: false };
        feed.owe(replay);
        feed
    }

    fn owe(&mut self, replay: Replay) {
        self.gap = replay.gap;
        self.stored = replay.stored;
        self.logged = replay.events;
        // Events at or before the resume point are never sent again.
        self.last = match (replay.gap, replay.stored) {
            (Some(gap), _) => gap.from - 1,
            (None, Some((after, _))) => after,
            (None, None) => self.logged.first().map(|e| e.seq - 1).unwrap_or(replay.position),
        };
        if replay.gap.is_none() && replay.stored.is_none() && self.logged.is_empty() {
            self.last = replay.position;
        }
    }

    /// The next batch; `None` when the hub is gone.
    async fn next_batch(&mut self) -> Option<Vec<Item>> {
        let mut items = Vec::new();
        let mut bytes = 0;
        // Returned before any await: a batch future dropped by `select!`
        // must not lose what it already took.
        if let Some(gap) = self.gap.take() {
            self.last = self.last.max(gap.to);
            return Some(vec![Item::Gap(gap)]);
        }
        if let Some((after, through)) = self.stored {
            let hub = self.hub.clone();
            let after = after.max(self.last);
            let page = tokio::task::spawn_blocking(move || hub.read_stored(after, through, STORED_PAGE)).await.ok()?;
            if let Some(gap) = page.gap {
                items.push(Item::Gap(gap));
                self.last = self.last.max(gap.to);
            }
            self.push(page.events, &mut items, &mut bytes);
            self.stored = (!page.done).then_some((page.position, through));
            self.last = self.last.max(page.position);
            return Some(items);
        }
        if !self.logged.is_empty() {
            let logged = std::mem::take(&mut self.logged);
            self.push(logged, &mut items, &mut bytes);
            return Some(items);
        }
        // What a resume owed is delivered: from here on events are live.
        self.live = true;
        let first = self.rx.recv().await;
        self.take(first, &mut items, &mut bytes)?;
        while bytes < BATCH_BYTES && self.gap.is_none() && self.stored.is_none() {
            match self.rx.try_recv() {
                Ok(e) => self.take(Ok(e), &mut items, &mut bytes)?,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    self.take(Err(RecvError::Lagged(n)), &mut items, &mut bytes)?
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => return None,
            }
        }
        Some(items)
    }

    fn take(&mut self, got: Result<Arc<Published>, RecvError>, items: &mut Vec<Item>, bytes: &mut usize) -> Option<()> {
        match got {
            Ok(e) => self.push(vec![e], items, bytes),
            Err(RecvError::Lagged(_)) => {
                // Owed from the logs; the next batches deliver it.
                let last = self.last;
                self.owe(self.hub.since(last));
                self.last = self.last.max(last);
            }
            Err(RecvError::Closed) => return None,
        }
        Some(())
    }

    fn push(&mut self, events: Vec<Arc<Published>>, items: &mut Vec<Item>, bytes: &mut usize) {
        for e in events {
            if e.seq <= self.last {
                continue;
            }
            self.last = e.seq;
            if e.visible(&self.filter) {
                *bytes += e.json.len();
                items.push(Item::Event(e, self.live));
            }
        }
    }
}

/// Event WebSocket
///
/// Carries the same events as `GET /v1/events`, each a JSON text frame (`Event`); with
/// `?last_event_id=` (extension) it first replays what the client missed, as SSE does. Clients may send
/// `WsClientMessage` frames: `{"type":"heartbeat","session_id"}`, `{"type":"signal","call_id","signal"}`,
/// `{"type":"webrtc.connected","call_id","setup_ms"}` and `{"type":"ping"}`; the server answers `pong`
/// and, for a failed message, an `error` frame (`WsReply`). A user's open sockets drive its
/// kinds' `disconnect_grace`: the last one closing starts it, a new one cancels it.
///
/// Each client text or binary frame counts against the caller's rate limit (as a request does):
/// over it, the frame is not handled and the answer is an `error` frame with `status` 429 (the
/// socket stays open). A binary frame answers an `error` frame with `status` 400. The socket
/// closes with `1009` for a message over 64 KiB, `1007` for a text frame that is not UTF-8,
/// `1002` for a protocol violation, `1008` when the client does not take its events within
/// `[limits]` `ws_send_timeout` (it stopped reading), and `1001` when the server shuts down.
#[utoipa::path(get, path = "/v1/ws", operation_id = "events_ws", tag = "events", security(("bearer" = []), ("token_query" = [])),
    params(
        ("kind" = Option<String>, Query, description = "Only events of sessions of this kind."),
        ("token" = Option<String>, Query, description = "The bearer token (browsers cannot set headers on WebSocket)."),
        ("last_event_id" = Option<u64>, Query, description = "Extension: resume after this event id, as SSE's `Last-Event-ID` (also accepted as that header): the missed events come first (a `stream.gap` frame where they are gone), on any node of a cluster."),
        ("session" = Option<SessionForm>, Query, description = "Extension: `id` sends each event lean (`LeanEvent`); `full` (the default) sends `Event`."),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "Not a valid WebSocket upgrade request (title \"WebSocket upgrade required\"; `detail` says which header is wrong), or `Last-Event-ID` is not an event id (`field` names it).", body = Problem, content_type = "application/problem+json",
            example = json!({"type":"https://tether.dev/problems/websocket-upgrade-required","title":"WebSocket upgrade required","status":400,"detail":"Connection header did not include 'upgrade'"})),
        (status = 401, response = Unauthorized),
        (status = 405, response = MethodNotAllowed),
        (status = 422, description = "`kind` names no configured kind, or a query parameter is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 426, description = "The connection cannot be upgraded (e.g. HTTP/2 without extended CONNECT); title \"WebSocket upgrade required\".", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-websocket" = json!({
        "server_messages": {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/WsReply"}]},
        "client_messages": {"$ref": "#/components/schemas/WsClientMessage"}
    })))
)]
pub async fn ws(
    State(app): State<Arc<App>>,
    StreamCaller(p, key): StreamCaller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Kept to act for the caller on the owning node, when this one is a follower.
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or(q.token.clone());
    let kind = match known_kind(&app, q.kind) {
        Ok(kind) => kind,
        Err(e) => return e.into_response(),
    };
    let after = match resume_point(&headers, q.last_event_id) {
        Ok(after) => after,
        Err(e) => return e.into_response(),
    };
    let lean = lean(q.session);
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => return ApiError::new(r.status(), "WebSocket upgrade required", r.body_text()).into_response(),
    };
    // tungstenite's default read buffer is 128 KiB per socket, which dominated
    // the soak's memory per idle socket; client frames are small and the
    // buffer still grows to take a large one.
    upgrade
        .read_buffer_size(4 * 1024)
        .max_message_size(BODY_LIMIT)
        .max_frame_size(FRAME_READ_LIMIT)
        .on_upgrade(move |socket| serve_socket(app, p, key, token, Stream { kind, after, lean }, socket))
}

/// A user's open event stream or WebSocket, for `disconnect_grace`: opening
/// cancels a running grace, dropping the last one starts it.
struct Presence {
    app: Arc<App>,
    user: Option<String>,
}

impl Presence {
    fn open(app: Arc<App>, user: Option<&str>) -> Presence {
        let user = user.map(str::to_string);
        if let Some(u) = &user {
            // A cluster node remembers its users' sockets, to report them to
            // whichever node owns the work (now or after a hand-over).
            let first_here = app.cluster.get().map(|c| c.socket_opened(u));
            if app.owns_work() {
                // In memory only: nothing to wait for.
                let opened = app.change(|core, _, _| {
                    core.engine.socket_opened(u);
                    Ok::<_, CommitError>(())
                });
                let _ = opened.detach();
            } else if first_here == Some(true) {
                let (app, u) = (app.clone(), u.clone());
                tokio::spawn(async move { crate::cluster::report_presence(&app, vec![u], true).await });
            }
        }
        Presence { app, user }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(u) = &self.user {
            let last_here = self.app.cluster.get().map(|c| c.socket_closed(u));
            if self.app.owns_work() {
                // Starts the grace deadline (the change wakes the timer); in memory only.
                let closed = self.app.change(|core, now, _| {
                    core.engine.socket_closed(now, u);
                    Ok::<_, CommitError>(())
                });
                let _ = closed.detach();
            } else if last_here == Some(true) {
                let (app, u) = (self.app.clone(), u.clone());
                tokio::spawn(async move { crate::cluster::report_presence(&app, vec![u], false).await });
            }
        }
    }
}

/// Frames up to this size are read whole before one over [`BODY_LIMIT`] is
/// refused with `1009`, so the close frame is not lost to a reset from
/// unread input; a larger frame is refused from its header alone, so no
/// socket ever buffers more than this for one frame.
const FRAME_READ_LIMIT: usize = 1024 * 1024;

/// How long the close frame after a protocol error or a stalled client may take to send.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

type Sink = futures::stream::SplitSink<WebSocket, Message>;

/// Sends `close` (bounded by [`CLOSE_TIMEOUT`]: the client may not be reading) and flushes it.
async fn close_with(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// The close frame for a frame the server could not read: `1009` for one
/// over the size limit, `1007` for a text frame that is not UTF-8, `1002`
/// for a protocol violation; `None` when the connection itself failed.
fn close_for(error: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{CapacityError, Error};
    let inner = error.into_inner();
    match inner.downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            Some((close_code::SIZE, "message too big: frames are limited to 64 KiB"))
        }
        Error::Utf8(_) => Some((close_code::INVALID, "text frames must be valid UTF-8")),
        Error::Protocol(_) => Some((close_code::PROTOCOL, "WebSocket protocol violation")),
        _ => None,
    }
}

/// Writes a batch of frames, bounded by the app's `ws_send_timeout`.
/// Fails when the socket failed or could not take them in time.
async fn write_all(app: &App, sink: &mut Sink, frames: Vec<String>) -> Result<(), Stalled> {
    let write = async {
        for text in frames {
            // Queued without flushing: a burst goes out in one write.
            sink.feed(Message::Text(text.into())).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(app.ws_send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stalled::Failed),
        Err(_) => Err(Stalled::TimedOut),
    }
}

/// What a WebSocket subscriber asked for: a kind, a resume point, lean events.
struct Stream {
    kind: Option<String>,
    after: Option<u64>,
    lean: bool,
}

enum Stalled {
    /// The connection failed (the client went away).
    Failed,
    /// The client did not take the frames within `ws_send_timeout`.
    TimedOut,
}

/// One socket: events out, client messages in. Everything the socket holds
/// is bounded: at most one batch of events ([`BATCH_BYTES`]) is in hand at a
/// time (a socket that falls behind catches up from the hub's shared log, or
/// gets `stream.gap`), and a batch the client does not take within
/// `ws_send_timeout` closes the socket (`1008`), which drops its subscription
/// and frees its buffers.
async fn serve_socket(
    app: Arc<App>,
    p: Principal,
    key: CallerKey,
    token: Option<String>,
    stream: Stream,
    socket: WebSocket,
) {
    let Stream { kind, after, lean } = stream;
    let _presence = Presence::open(app.clone(), p.user_id());
    let filter = subscriber(&p, kind);
    let (start, rx) = app.hub.subscribe(after);
    let mut feed = Feed::new(app.hub.clone(), rx, filter, start);
    let mut closing = app.closing.subscribe();
    let (mut sink, mut stream) = socket.split();
    // Deadline-driven ends in the batch being written, for the `written` stage.
    let mut timed: Vec<Arc<Published>> = Vec::new();
    loop {
        let frames: Vec<String> = tokio::select! {
            batch = feed.next_batch() => {
                let Some(items) = batch else { break };
                items
                    .into_iter()
                    .map(|item| match item {
                        Item::Event(e, timely) => {
                            let frame = e.text(lean).to_string();
                            if timely && e.deadline.is_some() {
                                timed.push(e);
                            }
                            frame
                        }
                        Item::Gap(gap) => gap_json(gap),
                    })
                    .collect()
            }
            incoming = stream.next() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => match app.rate.check(&key) {
                        Ok(()) => handle_client_message(&app, &p, token.as_deref(), text.as_str()).await,
                        Err(refusal) => Some(WsReply::Error(ws_error(refusal.into_problem(), None))),
                    },
                    Some(Ok(Message::Binary(_))) => match app.rate.check(&key) {
                        Ok(()) => Some(WsReply::Error(ws_error(
                            ApiError::bad_request("binary frames are not supported; send JSON text"),
                            None,
                        ))),
                        Err(refusal) => Some(WsReply::Error(ws_error(refusal.into_problem(), None))),
                    },
                    Some(Ok(Message::Close(_))) | None => break,
                    // Pings are answered by the protocol layer.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Err(e)) => {
                        if let Some((code, reason)) = close_for(e) {
                            close_with(&mut sink, code, reason).await;
                        }
                        break;
                    }
                };
                reply.map(|r| serde_json::to_string(&r).unwrap_or_default()).into_iter().collect()
            }
            _ = closing.changed() => {
                // 1001 "going away": the server is stopping; a client reconnects elsewhere or later.
                close_with(&mut sink, close_code::AWAY, "the server is shutting down").await;
                break;
            }
        };
        if frames.is_empty() {
            continue;
        }
        match write_all(&app, &mut sink, frames).await {
            Ok(()) => app.hub.reached(Stage::Written, timed.drain(..).as_slice()),
            Err(Stalled::Failed) => break,
            Err(Stalled::TimedOut) => {
                app.metrics.count_ws_slow_closed();
                tracing::info!(user = p.user_id(), "closing a WebSocket whose client stopped reading its events");
                close_with(&mut sink, close_code::POLICY, "the client did not read its events in time").await;
                break;
            }
        }
    }
}

/// Handles one client frame; returns a reply frame when there is one
/// (`pong`, or an error). Successful heartbeats and signals answer nothing.
async fn handle_client_message(app: &Arc<App>, p: &Principal, token: Option<&str>, text: &str) -> Option<WsReply> {
    let msg = match parse_client_message(text) {
        Ok(msg) => msg,
        Err(reply) => return Some(WsReply::Error(reply)),
    };
    let msg = match app.cluster.get().filter(|c| !c.is_owner()) {
        Some(cluster) if !matches!(msg, WsClientMessage::Ping) => {
            match forward_client_message(cluster, token, msg).await {
                Ok(reply) => return reply,
                // This node became the owner meanwhile: handled here.
                Err(msg) => msg,
            }
        }
        _ => msg,
    };
    let (result, about) = match msg {
        WsClientMessage::Ping => return Some(WsReply::Pong),
        WsClientMessage::Heartbeat { session_id } => (super::sessions::touch(app, p, &session_id).await, session_id),
        WsClientMessage::Signal { call_id, signal } => {
            (crate::matching::http::relay_signal(app, p, &call_id, signal).await, call_id)
        }
        WsClientMessage::WebrtcConnected { call_id, setup_ms } => {
            (crate::matching::http::record_setup(app, p, &call_id, setup_ms).await, call_id)
        }
    };
    result.err().map(|e| WsReply::Error(ws_error(e, Some(about))))
}

/// On a follower node: sends the message's HTTP equivalent to the owning
/// node as the caller, and turns a problem answer into the error frame.
async fn forward_client_message(
    cluster: &crate::cluster::Cluster,
    token: Option<&str>,
    msg: WsClientMessage,
) -> Result<Option<WsReply>, WsClientMessage> {
    let (path, body, about) = match &msg {
        WsClientMessage::Ping => return Ok(Some(WsReply::Pong)),
        WsClientMessage::Heartbeat { session_id } => {
            (format!("/v1/sessions/{}/heartbeat", encode(session_id)), None, session_id.clone())
        }
        WsClientMessage::Signal { call_id, signal } => (
            format!("/v1/calls/{}/signals", encode(call_id)),
            Some(serde_json::to_string(signal).unwrap_or_default()),
            call_id.clone(),
        ),
        WsClientMessage::WebrtcConnected { call_id, setup_ms } => (
            format!("/v1/calls/{}/webrtc", encode(call_id)),
            Some(serde_json::json!({ "setup_ms": setup_ms }).to_string()),
            call_id.clone(),
        ),
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = token.and_then(|t| axum::http::HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(axum::http::header::AUTHORIZATION, v);
    }
    if body.is_some() {
        headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    }
    let Ok(answer) = cluster.forward(reqwest::Method::POST, &path, &headers, body.unwrap_or_default().into()).await
    else {
        return Err(msg);
    };
    if answer.status().is_success() {
        return Ok(None);
    }
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), BODY_LIMIT).await.unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |k: &str| problem.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Some(WsReply::Error(WsError {
        status: status.as_u16(),
        title: text("title"),
        detail: text("detail").unwrap_or_else(|| status.to_string()),
        session_id: Some(about),
        field: text("field"),
        end_reason: problem.get("end_reason").and_then(|v| serde_json::from_value(v.clone()).ok()),
        status_now: problem.get("status_now").and_then(|v| serde_json::from_value(v.clone()).ok()),
    })))
}

/// A path segment, percent-encoded (ids are UUIDs, but a client may send anything).
fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A client frame, or the error frame it earns: `400` (without a title, as
/// ever) when it is not a JSON object, `422` naming the field serde refused
/// (an unknown or missing `type` names `type`).
fn parse_client_message(text: &str) -> Result<WsClientMessage, WsError> {
    let malformed = |why: String| WsError {
        status: 400,
        title: None,
        detail: format!("malformed message: {why}"),
        session_id: None,
        field: None,
        end_reason: None,
        status_now: None,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(malformed("a client message is a JSON object with a \"type\"".into()));
    }
    // The id of the message, for the error frame, whatever else is wrong with it.
    let about = ["session_id", "call_id"].iter().find_map(|k| value.get(k)?.as_str().map(str::to_string));
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path != "." {
            path
        } else if inner.starts_with("unknown variant") || inner.contains("missing field `type`") {
            "type".to_string()
        } else {
            backticked(&inner).unwrap_or_default()
        };
        let detail =
            if inner.starts_with("unknown variant") { format!("unknown message type: {inner}") } else { inner };
        let error = if field.is_empty() {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid field", detail)
        } else {
            ApiError::invalid(&field, detail)
        };
        ws_error(error, about)
    })
}

/// The first `name` quoted in a serde message (`missing field `session_id``).
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = message[start..].find('`')? + start;
    Some(message[start..end].to_string())
}

/// The error frame for a failed message: the members the equivalent HTTP
/// request's problem would carry.
fn ws_error(e: ApiError, about: Option<String>) -> WsError {
    let text = |k: &str| e.extra.get(k).and_then(Value::as_str).map(str::to_string);
    WsError {
        status: e.status.as_u16(),
        title: Some(e.title.to_string()),
        field: text("field"),
        end_reason: e.extra.get("end_reason").and_then(|v| serde_json::from_value(v.clone()).ok()),
        status_now: e.extra.get("status_now").and_then(|v| serde_json::from_value(v.clone()).ok()),
        detail: e.detail,
        session_id: about,
    }
}

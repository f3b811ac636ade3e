//! Live events (contract section 5): Server-Sent Events with `Last-Event-ID`
//! resume (a `stream.gap` first when the resume point is older than the log
//! reaches), and a WebSocket carrying the same events plus client heartbeats,
//! call signals and WebRTC set-up reports, closed with `1001` on shutdown.
//! A user's WebSocket also drives `disconnect_grace`: the last one closing
//! starts it, a new one cancels it. `?kind=` must name a configured kind.

use super::access::StreamCaller;
use super::problem::{ApiError, QueryParams};
use crate::app::App;
use crate::auth::Principal;
use crate::hub::{Gap, Published, Subscriber};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

#[derive(Deserialize)]
pub struct StreamQuery {
    kind: Option<String>,
    #[allow(dead_code)]
    token: Option<String>,
    /// Extension: resume point for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<u64>,
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
    json!({"type": "stream.gap", "from": gap.from, "to": gap.to}).to_string()
}

fn subscriber(p: &Principal, kind: Option<String>) -> Subscriber {
    match p {
        Principal::ApiKey => Subscriber { user: None, session_scope: None, kind },
        Principal::User { id, scope } => Subscriber { user: Some(id.clone()), session_scope: scope.clone(), kind },
    }
}

pub async fn sse(
    State(app): State<Arc<App>>,
    StreamCaller(p): StreamCaller,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(&headers, q.last_event_id)?;
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
        let mut feed = Feed { hub, rx, filter, last: replay.position };
        let mut closing = closing;
        let mut buf = String::new();
        if let Some(gap) = replay.gap {
            sse_frame(&mut buf, &gap.to.to_string(), "stream.gap", &gap_json(gap));
        }
        for e in replay.events {
            if e.visible(&feed.filter) {
                sse_frame(&mut buf, &e.seq.to_string(), e.event_type.as_str(), &e.json);
            }
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        loop {
            if !buf.is_empty() && tx.send(Ok(std::mem::take(&mut buf).into())).await.is_err() {
                return;
            }
            tokio::select! {
                batch = feed.next_batch() => match batch {
                    Some(items) => {
                        for item in items {
                            match item {
                                Item::Event(e) => sse_frame(&mut buf, &e.seq.to_string(), e.event_type.as_str(), &e.json),
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
    Event(Arc<Published>),
    Gap(Gap),
}

/// One subscriber's view of the hub: waits for the next event, then takes
/// everything else already published (so a burst is written in one batch),
/// filtered by visibility; catches up from the resume log after a lag.
struct Feed {
    hub: Arc<crate::hub::Hub>,
    rx: tokio::sync::broadcast::Receiver<Arc<Published>>,
    filter: Subscriber,
    last: u64,
}

impl Feed {
    /// The next batch; `None` when the hub is gone.
    async fn next_batch(&mut self) -> Option<Vec<Item>> {
        let mut items = Vec::new();
        let mut bytes = 0;
        let first = self.rx.recv().await;
        self.take(first, &mut items, &mut bytes)?;
        while bytes < BATCH_BYTES {
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
        let events = match got {
            Ok(e) => vec![e],
            Err(RecvError::Lagged(_)) => {
                let missed = self.hub.since(self.last);
                if let Some(gap) = missed.gap {
                    items.push(Item::Gap(gap));
                    self.last = gap.to;
                }
                missed.events
            }
            Err(RecvError::Closed) => return None,
        };
        for e in events {
            if e.seq <= self.last {
                continue;
            }
            self.last = e.seq;
            if e.visible(&self.filter) {
                *bytes += e.json.len();
                items.push(Item::Event(e));
            }
        }
        Some(())
    }
}

pub async fn ws(
    State(app): State<Arc<App>>,
    StreamCaller(p): StreamCaller,
    QueryParams(q): QueryParams<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let kind = match known_kind(&app, q.kind) {
        Ok(kind) => kind,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => return ApiError::new(r.status(), "WebSocket upgrade required", r.body_text()).into_response(),
    };
    upgrade.max_message_size(super::problem::BODY_LIMIT).on_upgrade(move |socket| serve_socket(app, p, kind, socket))
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
            app.core.lock().engine.socket_opened(u);
        }
        Presence { app, user }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(u) = &self.user {
            let mut core = self.app.core.lock();
            core.engine.socket_closed(self.app.now(), u);
            self.app.nudge(&core);
        }
    }
}

async fn serve_socket(app: Arc<App>, p: Principal, kind: Option<String>, socket: WebSocket) {
    let _presence = Presence::open(app.clone(), p.user_id());
    let filter = subscriber(&p, kind);
    let (start, rx) = app.hub.subscribe(None);
    let mut feed = Feed { hub: app.hub.clone(), rx, filter, last: start.position };
    let mut closing = app.closing.subscribe();
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            batch = feed.next_batch() => {
                let Some(items) = batch else { break };
                let mut failed = false;
                for item in items {
                    let text = match item {
                        Item::Event(e) => e.json.clone(),
                        Item::Gap(gap) => gap_json(gap),
                    };
                    // Queued without flushing: a burst goes out in one write.
                    if sink.feed(Message::Text(text.into())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || sink.flush().await.is_err() { break; }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = handle_client_message(&app, &p, text.as_str()).await {
                        if sink.send(Message::Text(reply.to_string().into())).await.is_err() { break; }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = closing.changed() => {
                // 1001 "going away": the server is stopping; a client reconnects elsewhere or later.
                let frame = CloseFrame { code: close_code::AWAY, reason: "the server is shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                break;
            }
        }
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    session_id: Option<String>,
    call_id: Option<String>,
    signal: Option<Value>,
    setup_ms: Option<f64>,
}

/// Handles one client frame; returns a reply frame when there is one
/// (`pong`, or an error). Successful heartbeats and signals answer nothing.
async fn handle_client_message(app: &Arc<App>, p: &Principal, text: &str) -> Option<Value> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return Some(json!({"type":"error","status":400,"detail":format!("malformed message: {e}")})),
    };
    let result: Result<(), ApiError> = match msg.kind.as_str() {
        "ping" => return Some(json!({"type":"pong"})),
        "heartbeat" => match &msg.session_id {
            Some(id) => super::sessions::touch(app, p, id).await,
            None => Err(ApiError::invalid("session_id", "session_id is required")),
        },
        "signal" => match (&msg.call_id, msg.signal) {
            (Some(call), Some(signal)) => crate::matching::http::relay_signal_value(app, p, call, signal).await,
            (None, _) => Err(ApiError::invalid("call_id", "call_id is required")),
            (_, None) => Err(ApiError::invalid("signal", "signal is required")),
        },
        "webrtc.connected" => match (&msg.call_id, msg.setup_ms) {
            (Some(call), Some(ms)) => crate::matching::http::record_setup(app, p, call, ms),
            _ => Err(ApiError::invalid("setup_ms", "call_id and setup_ms are required")),
        },
        other => Err(ApiError::invalid(
            "type",
            format!("unknown message type {other:?} (heartbeat, signal, webrtc.connected, ping)"),
        )),
    };
    result.err().map(|e| {
        let mut v = json!({"type":"error","status":e.status.as_u16(),"title":e.title,"detail":e.detail});
        if let Some(id) = msg.session_id.or(msg.call_id) {
            v["session_id"] = Value::from(id);
        }
        for (k, val) in e.extra {
            if k != "session" {
                v[k] = val;
            }
        }
        v
    })
}

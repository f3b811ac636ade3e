//! Live events (contract section 5): Server-Sent Events with `Last-Event-ID`
//! resume, and a WebSocket carrying the same events plus client heartbeats,
//! call signals and WebRTC set-up reports. A user's WebSocket also drives
//! `disconnect_grace`: the last one closing starts it, a new one cancels it.

use super::access::StreamCaller;
use super::problem::{ApiError, QueryParams};
use crate::app::App;
use crate::auth::Principal;
use crate::hub::{Published, Subscriber};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
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
    let after = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "Last-Event-ID must be an event id (an integer)"))?,
        ),
        None => q.last_event_id,
    };
    // An id from the future (a client of a server whose memory store was
    // restarted) would skip every event until the sequence caught up: start afresh.
    let after = after.filter(|a| *a <= app.hub.head());
    let filter = subscriber(&p, q.kind);
    let (backlog, mut rx) = app.hub.subscribe(after);
    let mut closing = app.closing.subscribe();
    let hub = app.hub.clone();
    // An open event stream counts as the user's presence for disconnect_grace,
    // like a WebSocket: a client that fell back to SSE is still there.
    let presence = Presence::open(app.clone(), p.user_id());
    let stream = async_stream_events(move |tx| async move {
        let _presence = presence;
        let mut last = after.unwrap_or(0);
        for e in backlog {
            last = e.seq;
            if e.visible(&filter) && tx.send(to_sse(&e)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(e) => {
                        if e.seq <= last { continue; }
                        last = e.seq;
                        if e.visible(&filter) && tx.send(to_sse(&e)).await.is_err() { return; }
                    }
                    Err(RecvError::Lagged(_)) => {
                        for e in hub.since(last) {
                            last = e.seq;
                            if e.visible(&filter) && tx.send(to_sse(&e)).await.is_err() { return; }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                _ = closing.changed() => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn to_sse(e: &Published) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().id(e.seq.to_string()).event(e.event_type).data(e.json.clone()))
}

/// A stream fed by a producer task through a small channel; the task stops
/// when the client goes away (send fails).
fn async_stream_events<F, Fut>(producer: F) -> impl futures::Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub async fn ws(
    State(app): State<Arc<App>>,
    StreamCaller(p): StreamCaller,
    QueryParams(q): QueryParams<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(r) => return ApiError::new(r.status(), "WebSocket upgrade required", r.body_text()).into_response(),
    };
    upgrade
        .max_message_size(super::problem::BODY_LIMIT)
        .on_upgrade(move |socket| serve_socket(app, p, q.kind, socket))
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
    let (_, mut rx) = app.hub.subscribe(None);
    let mut closing = app.closing.subscribe();
    let (mut sink, mut stream) = socket.split();
    let mut last = 0u64;
    loop {
        tokio::select! {
            got = rx.recv() => {
                let events = match got {
                    Ok(e) => vec![e],
                    Err(RecvError::Lagged(_)) => app.hub.since(last),
                    Err(RecvError::Closed) => break,
                };
                let mut failed = false;
                for e in events {
                    if e.seq <= last { continue; }
                    last = e.seq;
                    if e.visible(&filter) && sink.send(Message::Text(e.json.clone().into())).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed { break; }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = handle_client_message(&app, &p, text.as_str()) {
                        if sink.send(Message::Text(reply.to_string().into())).await.is_err() { break; }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = closing.changed() => {
                let _ = sink.send(Message::Close(None)).await;
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
fn handle_client_message(app: &Arc<App>, p: &Principal, text: &str) -> Option<Value> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return Some(json!({"type":"error","status":400,"detail":format!("malformed message: {e}")})),
    };
    let result: Result<(), ApiError> = match msg.kind.as_str() {
        "ping" => return Some(json!({"type":"pong"})),
        "heartbeat" => match &msg.session_id {
            Some(id) => super::sessions::touch(app, p, id),
            None => Err(ApiError::invalid("session_id", "session_id is required")),
        },
        "signal" => match (&msg.call_id, msg.signal) {
            (Some(call), Some(signal)) => crate::matching::http::relay_signal_value(app, p, call, signal),
            (None, _) => Err(ApiError::invalid("call_id", "call_id is required")),
            (_, None) => Err(ApiError::invalid("signal", "signal is required")),
        },
        "webrtc.connected" => match (&msg.call_id, msg.setup_ms) {
            (Some(call), Some(ms)) => crate::matching::http::record_setup(app, p, call, ms),
            _ => Err(ApiError::invalid("setup_ms", "call_id and setup_ms are required")),
        },
        other => Err(ApiError::invalid("type", format!("unknown message type {other:?} (heartbeat, signal, webrtc.connected, ping)"))),
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

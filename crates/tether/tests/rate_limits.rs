//! Contract section 11, rate limits and WebSocket edges, against a real
//! server (in process): a user over its burst gets `429` with `Retry-After`
//! while another user and API keys go on; an API key with `api_key_rate` is
//! limited; `"off"` lifts a limit; the beacon and WebSocket messages count
//! for their user; unauthenticated endpoints never count; refusals are in
//! `/metrics`. On the WebSocket: `1009` for a message over 64 KiB, `1007` for
//! text that is not UTF-8, an error frame for a binary frame, and a client
//! that stops reading is closed (and the others keep receiving).

mod support;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The standard test config with a `[limits]` table.
fn with_limits(limits: &str) -> String {
    format!("{}\n[limits]\n{limits}\n", config_text())
}

/// A request answered `429`, with its headers checked: `Retry-After` in
/// whole seconds (at least 1) and the `RateLimit-*` trio; returns the problem.
async fn expect_429(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
    let mut b = app.req(method.clone(), path, Some(token));
    if let Some(body) = &body {
        b = b.json(body);
    }
    let r = b.send().await.expect("send");
    assert_eq!(r.status().as_u16(), 429, "{method} {path}");
    let header = |name: &str| -> u64 {
        let v = r.headers().get(name).unwrap_or_else(|| panic!("{method} {path}: no {name} header"));
        v.to_str().unwrap().parse().unwrap_or_else(|_| panic!("{name} is not whole seconds: {v:?}"))
    };
    let retry = header("retry-after");
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(header("ratelimit-reset"), retry);
    assert_eq!(header("ratelimit-remaining"), 0);
    assert!(header("ratelimit-limit") >= 1);
    // And the same answer through the harness: problem+json, as /openapi.json documents it.
    let again = app.call(method, path, Some(token), body).await;
    let problem = again.problem(429, &["too many requests", "retry in"]).clone();
    assert_eq!(problem["retry_after"].as_u64(), Some(retry), "{problem}");
    problem
}

/// A user token limited to one session (the `sid` claim invite tokens carry).
fn scoped_token(sub: &str, sid: &str) -> String {
    let exp = now_ms() / 1000 + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "sid": sid, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The value of one sample line of `/metrics` (0 when absent).
async fn metric(app: &TestApp, sample: &str) -> u64 {
    let text = app.get("/metrics", None).await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_user_over_its_burst_gets_429_while_another_user_and_api_keys_are_unaffected() {
    let app = TestApp::in_process_with_config(&with_limits("user_rate = \"1/h\"\nuser_burst = 3")).await;
    let alice = user_token("alice");
    for _ in 0..3 {
        app.get("/v1/sessions", Some(&alice)).await.expect(200);
    }
    let problem = expect_429(&app, Method::GET, "/v1/sessions", &alice, None).await;
    assert_eq!(problem["caller"], "user");
    assert!(problem["retry_after"].as_u64().unwrap() > 3000, "1/h refills in about an hour: {problem}");
    // Every token of the user shares the bucket, one scoped to a session (`sid`) included.
    let alice_again = user_token("alice");
    expect_429(&app, Method::POST, "/v1/sessions", &alice_again, Some(json!({"kind": "plain"}))).await;
    let s = id_of(&app.start_session(API_KEY, json!({"kind": "plain", "user_id": "alice"})).await["session"]);
    expect_429(&app, Method::GET, &format!("/v1/sessions/{s}"), &scoped_token("alice", &s), None).await;

    // Another user, and the API key (api_key_rate is "off" by default), go on.
    let bob = user_token("bob");
    for _ in 0..3 {
        app.get("/v1/sessions", Some(&bob)).await.expect(200);
    }
    for _ in 0..20 {
        app.get("/v1/sessions", Some(API_KEY)).await.expect(200);
    }
    // Unauthenticated endpoints never count, whatever header they carry.
    for path in ["/healthz", "/readyz", "/openapi.json", "/sdk/tether.js"] {
        let r = app.req(Method::GET, path, Some(&alice)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // A bad token is a 401, not a count against anyone.
    app.get("/v1/sessions", Some(&forged_token("alice"))).await.expect(401);

    assert_eq!(metric(&app, "tether_rate_limited_total{caller=\"user\"}").await, 6);
    assert_eq!(metric(&app, "tether_rate_limited_total{caller=\"api_key\"}").await, 0);
}

#[tokio::test]
async fn the_beacon_counts_for_its_user() {
    let app = TestApp::in_process_with_config(&with_limits("user_rate = \"1/h\"\nuser_burst = 2")).await;
    let carol = user_token("carol");
    let s = id_of(&app.start_session(&carol, json!({"kind": "plain"})).await["session"]);
    app.get(&format!("/v1/sessions/{s}"), Some(&carol)).await.expect(200);
    let path = format!("/v1/sessions/{s}/beacon");
    let r = app.post_raw(&path, None, "text/plain", json!({"token": carol}).to_string()).await;
    assert_eq!(r.body["caller"], "user", "{}", r.text);
    r.problem(429, &["retry in"]);
    // Refused, so not closed.
    assert_eq!(app.session(&s).await["status"], "active");
}

#[tokio::test]
async fn an_api_key_with_a_rate_is_limited_and_off_lifts_the_user_limit() {
    let limits = "user_rate = \"off\"\napi_key_rate = \"1/h\"\napi_key_burst = 2";
    let app = TestApp::in_process_with_config(&with_limits(limits)).await;
    for _ in 0..2 {
        app.get("/v1/sessions", Some(API_KEY)).await.expect(200);
    }
    let problem = expect_429(&app, Method::GET, "/v1/admin/health", API_KEY, None).await;
    assert_eq!(problem["caller"], "api_key");
    assert!(problem["detail"].as_str().unwrap().contains("API key"), "{problem}");

    // user_rate = "off": well past the default burst (100), one user is never refused.
    let dave = user_token("dave");
    for _ in 0..150 {
        app.get("/v1/sessions", Some(&dave)).await.expect(200);
    }
    assert_eq!(metric(&app, "tether_rate_limited_total{caller=\"api_key\"}").await, 2);
    assert_eq!(metric(&app, "tether_rate_limited_total{caller=\"user\"}").await, 0);
}

#[tokio::test]
async fn websocket_messages_count_against_the_same_user_bucket() {
    let app = TestApp::in_process_with_config(&with_limits("user_rate = \"1/h\"\nuser_burst = 5")).await;
    let erin = user_token("erin");
    // The upgrade is one request and `ws()`'s ping → pong one message: 2 of 5.
    let mut ws = app.ws(&erin).await;
    for _ in 0..3 {
        ws.sync().await;
    }
    ws.send(json!({"type": "ping"})).await;
    let refused = ws.events.wait_for(ms(3000), "an error frame", |e| e.event == "error").await;
    assert_eq!(refused.data["status"], 429, "{}", refused.data);
    assert!(refused.data["detail"].as_str().unwrap().contains("retry in"), "{}", refused.data);
    // The socket stays open (it still receives events), and HTTP shares the bucket.
    app.get("/v1/sessions", Some(&erin)).await.problem(429, &[]);
    let s = id_of(&app.start_session(API_KEY, json!({"kind": "plain", "user_id": "erin"})).await["session"]);
    ws.events.wait_event(ms(3000), "session.started", &s).await;
    assert_eq!(metric(&app, "tether_rate_limited_total{caller=\"user\"}").await, 2);
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_ws(app: &TestApp) -> Socket {
    let url = format!("ws://{}/v1/ws?token={}", app.host, API_KEY);
    tokio_tungstenite::connect_async(url).await.expect("WebSocket connect").0
}

/// Reads until the server's close frame; returns its code.
async fn close_code(socket: &mut Socket) -> CloseCode {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a close frame in time") {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("no close frame with a code before the socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_message_over_64_kib_is_closed_with_1009() {
    let app = TestApp::in_process().await;
    let mut socket = raw_ws(&app).await;
    let big = json!({"type": "ping", "pad": "x".repeat(70 * 1024)}).to_string();
    socket.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut socket).await, CloseCode::Size);

    // Just under the limit is read and answered as usual (an unknown field: an error frame).
    let mut socket = raw_ws(&app).await;
    let fits = json!({"type": "ping", "pad": "x".repeat(60 * 1024)}).to_string();
    socket.send(Message::Text(fits.into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert!(t.contains("pong") || t.contains("\"error\""), "{t}"),
        other => panic!("expected an answer: {other:?}"),
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_is_closed_with_1007() {
    let app = TestApp::in_process().await;
    let mut socket = raw_ws(&app).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    socket.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut socket).await, CloseCode::Invalid);
}

#[tokio::test]
async fn a_binary_frame_gets_an_error_frame_and_the_socket_stays_open() {
    let app = TestApp::in_process().await;
    let mut socket = raw_ws(&app).await;
    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    let reply = match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
        other => panic!("expected an error frame: {other:?}"),
    };
    assert_eq!((reply["type"].as_str(), reply["status"].as_u64()), (Some("error"), Some(400)), "{reply}");
    assert!(reply["detail"].as_str().unwrap().contains("binary frames are not supported"), "{reply}");
    socket.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert!(t.contains("pong"), "{t}"),
        other => panic!("expected pong: {other:?}"),
    }
}

/// A WebSocket on a socket with a small receive buffer, so that a client
/// that stops reading fills up after little data.
async fn tight_ws(app: &TestApp) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.host.parse().unwrap()).await.expect("connect");
    let url = format!("ws://{}/v1/ws?token={}", app.host, API_KEY);
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.expect("handshake");
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert!(t.contains("pong"), "{t}"),
        other => panic!("expected pong: {other:?}"),
    }
    ws
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_the_others_keep_receiving() {
    let app = TestApp::in_process_with_config(&with_limits("ws_send_timeout = \"1s\"")).await;
    let mut stalled = tight_ws(&app).await;
    let mut reader = app.ws(API_KEY).await;

    // Publish ~120 KB of events per session until the server gives up on the
    // stalled client (its and the kernel's buffers hold a few MB at most).
    let client = app.client.clone();
    let url = app.url("/v1/sessions");
    let mut last = String::new();
    let mut published = 0;
    while metric(&app, "tether_ws_slow_closed_total").await == 0 {
        assert!(published < 2000, "the stalled WebSocket was never closed after {published} sessions");
        let answers = futures::future::join_all((0..8).map(|i| {
            let body = json!({"kind": "plain", "user_id": format!("bulk-{published}-{i}"),
                "metadata": {"blob": "x".repeat(60_000)}});
            client.post(&url).bearer_auth(API_KEY).json(&body).send()
        }))
        .await;
        for r in answers {
            let r = r.expect("create");
            assert_eq!(r.status().as_u16(), 201);
            last = r.json::<Value>().await.unwrap()["session"]["id"].as_str().unwrap().to_string();
        }
        published += 8;
    }
    assert_eq!(metric(&app, "tether_ws_slow_closed_total").await, 1, "only the stalled client is closed");

    // The reading client got everything, up to the last session.
    reader.events.wait_event(ms(10_000), "session.activated", &last).await;
    reader.sync().await;

    // The stalled client, reading again, finds what was buffered, then the end.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stalled.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server did not close the stalled WebSocket");
}

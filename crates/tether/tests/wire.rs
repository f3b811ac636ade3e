//! The typed wire against the running server: display names are held to the
//! schemas' `maxLength`, optional bodies may be empty but never JSON `null`,
//! WebSocket client messages are parsed as a tagged enum whose errors name the
//! field, and the events the server publishes read as the typed `Event`.

mod support;

use serde_json::{json, Value};
use support::*;
use tether::wire::events::Event as WireEvent;
use tether::wire::NAME_MAX_CHARS;

#[tokio::test]
async fn a_name_longer_than_the_schema_allows_is_refused() {
    let app = TestApp::start().await;
    let token = user_token("nia");
    // Characters, not bytes: 200 two-byte characters fit.
    let longest: String = "é".repeat(NAME_MAX_CHARS);
    let r = app.post("/v1/sessions", Some(&token), json!({"kind": "plain", "name": longest})).await;
    let s = r.expect(201);
    assert_eq!(s["session"]["participants"][0]["name"], longest.as_str(), "{s}");

    let too_long: String = "x".repeat(NAME_MAX_CHARS + 1);
    let r = app.post("/v1/sessions", Some(&user_token("noa")), json!({"kind": "plain", "name": too_long})).await;
    let p = r.problem(422, &["name", "200"]);
    assert_eq!(p["field"], "name");
    // Nothing was started for noa.
    let list = app.get("/v1/sessions?user_id=noa", Some(API_KEY)).await;
    assert_eq!(list.expect(200)["sessions"], json!([]));
}

#[tokio::test]
async fn optional_bodies_may_be_empty_but_not_null() {
    let app = TestApp::start().await;
    let token = user_token("ola");
    let id = app.start_session(&token, json!({"kind": "plain"})).await["session"]["id"].as_str().unwrap().to_string();
    for path in [format!("/v1/sessions/{id}/invites"), format!("/v1/sessions/{id}/participants")] {
        let r = app.post_raw(&path, Some(&token), "application/json", "null").await;
        r.problem(400, &["object"]);
    }
    let r = app.post_raw(&format!("/v1/sessions/{id}/end"), Some(&token), "application/json", "null").await;
    r.problem(400, &["object"]);
    assert_eq!(app.session(&id).await["status"], "active", "a refused body changed nothing");
    let ended = app.post_empty(&format!("/v1/sessions/{id}/end"), Some(&token)).await;
    assert_eq!(ended.expect(200)["end_reason"], "ended");
}

/// Sends `frame` and returns the error frame it earns.
async fn error_for(ws: &mut Ws, frame: Value) -> Value {
    ws.send(frame.clone()).await;
    let e = ws.events.wait_for(ms(3000), "error frame", |e| e.event == "error").await;
    assert_eq!(e.data["type"], "error", "{frame}: {}", e.data);
    e.data
}

#[tokio::test]
async fn websocket_messages_are_a_tagged_enum_whose_errors_name_the_field() {
    let app = TestApp::start().await;
    let token = user_token("pia");
    let mut ws = app.ws(&token).await;
    ws.sync().await;

    let e = error_for(&mut ws, json!({"type": "hearbeat", "session_id": "s1"})).await;
    assert_eq!((e["status"].as_u64(), e["field"].as_str()), (Some(422), Some("type")), "{e}");
    let detail = e["detail"].as_str().unwrap();
    for known in ["heartbeat", "signal", "webrtc.connected", "ping"] {
        assert!(detail.contains(known), "the detail lists {known}: {e}");
    }
    assert_eq!(e["session_id"], "s1", "the error names the message's session: {e}");

    let e = error_for(&mut ws, json!({"session_id": "s1"})).await;
    assert_eq!((e["status"].as_u64(), e["field"].as_str()), (Some(422), Some("type")), "{e}");

    let e = error_for(&mut ws, json!({"type": "heartbeat"})).await;
    assert_eq!((e["status"].as_u64(), e["field"].as_str()), (Some(422), Some("session_id")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("session_id"), "{e}");

    let e = error_for(&mut ws, json!({"type": "webrtc.connected", "call_id": "c1", "setup_ms": "fast"})).await;
    assert_eq!(e["status"], 422, "{e}");
    assert_eq!(e["call_id"], Value::Null, "no stray members: {e}");
    assert_eq!(e["session_id"], "c1", "{e}");

    let e = error_for(&mut ws, json!({"type": "heartbeat", "session_id": 7})).await;
    assert_eq!(e["status"], 422, "{e}");

    // Not a JSON object: malformed (400), without a title, as before.
    for frame in ["{not json", "[\"heartbeat\"]", "\"ping\""] {
        let e = raw_reply(&app, &token, frame).await;
        assert_eq!(e["status"], 400, "{frame}: {e}");
        assert!(e["detail"].as_str().unwrap().starts_with("malformed message"), "{frame}: {e}");
        assert!(e.get("title").is_none(), "{frame}: {e}");
    }

    // A well-formed heartbeat on an unknown session answers as HTTP does: 404 with the problem's title.
    let e = error_for(&mut ws, json!({"type": "heartbeat", "session_id": "nope"})).await;
    assert_eq!((e["status"].as_u64(), e["title"].as_str()), (Some(404), Some("Not found")), "{e}");

    // And a good heartbeat answers nothing; ping answers pong.
    let id = app.start_session(&token, json!({"kind": "plain"})).await["session"]["id"].as_str().unwrap().to_string();
    ws.send(json!({"type": "heartbeat", "session_id": id})).await;
    ws.sync().await;
    assert!(ws.events.seen.iter().all(|e| !(e.event == "error" && e.data["session_id"] == id.as_str())));
}

/// Sends one raw text frame on a fresh socket and returns the server's reply.
async fn raw_reply(app: &TestApp, token: &str, frame: &str) -> Value {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = app.url(&format!("/v1/ws?token={token}")).replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
    socket.send(Message::Text(frame.into())).await.expect("send");
    let reply = tokio::time::timeout(ms(3000), socket.next()).await.expect("a reply in time");
    match reply {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).expect("the reply is JSON"),
        other => panic!("{frame}: unexpected reply {other:?}"),
    }
}

#[tokio::test]
async fn published_events_read_as_the_typed_event() {
    let app = TestApp::start().await;
    let mut events = app.sse(API_KEY, "", None).await;
    let owner = user_token("quin");
    let id = app.start_session(&owner, json!({"kind": "plain"})).await["session"]["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/sessions/{id}/participants"), Some(API_KEY), json!({"user_id": "rue", "name": "Rue"}))
        .await
        .expect(201);
    app.post(&format!("/v1/sessions/{id}/end"), Some(&owner), json!({"reason": "done"})).await.expect(200);
    events.wait_event(ms(3000), "session.ended", &id).await;
    let mut types = Vec::new();
    for e in events.seen.iter().filter(|e| e.session_id() == id) {
        let typed: WireEvent = serde_json::from_value(e.data.clone())
            .unwrap_or_else(|err| panic!("{} does not read as the typed Event: {err}: {}", e.event, e.data));
        assert_eq!(typed.event_type().as_str(), e.event, "{}", e.data);
        types.push(e.event.clone());
    }
    assert_eq!(types, ["session.started", "session.activated", "participant.joined", "session.ended"]);
}

/// Web assets are read-only: only GET and HEAD, anything else (TRACE included)
/// `405` problem+json with `Allow`, as on the routed pages.
#[tokio::test]
async fn web_assets_answer_only_get_and_head() {
    let app = TestApp::in_process().await;
    for path in ["/sdk/lib/client.js", "/admin/admin.js", "/sdk/tether.d.ts", "/admin", "/sdk/tether.js"] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = app.req(method.clone(), path, None).send().await.unwrap();
            assert_eq!(r.status(), 200, "{method} {path}");
        }
        for method in [reqwest::Method::TRACE, reqwest::Method::POST, reqwest::Method::PUT] {
            let r = app.req(method.clone(), path, None).send().await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{method} {path}");
        }
    }
}

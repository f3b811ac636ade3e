//! Bad input gets a clear problem+json (never a 500, never a hang), and a bad
//! configuration stops the server at start with the key and line named.
//! (`TestApp::send` checks problem+json and "no 5xx" on every answer.)

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

/// 400 or 422 whose `detail` names `field`.
#[track_caller]
fn names_field(r: &Resp, field: &str) {
    assert!(matches!(r.status.as_u16(), 400 | 422), "expected 400/422 naming {field:?}, got {}: {}", r.status, r.text);
    assert!(r.detail().contains(field), "detail should name {field:?}: {}", r.text);
}

#[tokio::test]
async fn bad_bodies_are_clear_problems() {
    let app = TestApp::start().await;
    let u = user_token("ursula");
    let s = id_of(&app.start_session(&u, json!({"kind": "plain"})).await["session"]);

    // Malformed JSON: 400.
    for body in ["{\"kind\":", "{kind: plain}", "[1,2", "\u{0}", "{\"kind\":\"plain\"} trailing"] {
        let r = app.post_raw("/v1/sessions", Some(&u), "application/json", body.to_string()).await;
        assert_eq!(r.status.as_u16(), 400, "{body:?}: {}", r.text);
        assert!(r.detail().to_lowercase().contains("json"), "{}", r.text);
    }
    // Not UTF-8.
    let r = app.post_raw("/v1/sessions", Some(&u), "application/json", vec![0xff, 0xfe, 0x7b]).await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.text);

    // Wrong types, missing fields, unknown kinds, unknown fields: the field is named.
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": 5})).await, "kind");
    names_field(&app.post("/v1/sessions", Some(&u), json!({})).await, "kind");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"metadata": {}})).await, "kind");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "no-such-kind"})).await, "kind");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": ""})).await, "kind");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "metadata": [1, 2]})).await, "metadata");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "metadata": "x"})).await, "metadata");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "parent_id": 7})).await, "parent_id");
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "parent_id": "nope"})).await, "parent_id");
    names_field(
        &app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "on_conflict": true})).await,
        "on_conflict",
    );
    names_field(&app.post("/v1/sessions", Some(&u), json!({"kind": "plain", "colour": "red"})).await, "colour");
    names_field(&app.post("/v1/sessions", Some(API_KEY), json!({"kind": "plain"})).await, "user_id");
    names_field(&app.post("/v1/sessions", Some(API_KEY), json!({"kind": "plain", "user_id": 42})).await, "user_id");
    let r = app.post_raw("/v1/sessions", Some(&u), "application/json", "null".to_string()).await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.text);
    let r = app.post_raw("/v1/sessions", Some(&u), "application/json", "[]".to_string()).await;
    assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.text);

    names_field(&app.post(&format!("/v1/sessions/{s}/end"), Some(&u), json!({"reason": 5})).await, "reason");
    names_field(&app.post(&format!("/v1/sessions/{s}/end"), Some(&u), json!({"why": "x"})).await, "why");
    names_field(&app.post(&format!("/v1/sessions/{s}/invites"), Some(&u), json!({"ttl": "5x"})).await, "ttl");
    names_field(&app.post(&format!("/v1/sessions/{s}/invites"), Some(&u), json!({"ttl": 60})).await, "ttl");
    names_field(&app.post(&format!("/v1/sessions/{s}/invites"), Some(&u), json!({"ttl": "0s"})).await, "ttl");
    names_field(
        &app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"user_id": "x", "name": ["a"]}))
            .await,
        "name",
    );
    names_field(
        &app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"name": "no user"})).await,
        "user_id",
    );
    names_field(&app.post("/v1/invites/whatever/join", None, json!({"name": 1})).await, "name");
    let r = app.post_raw("/v1/invites/whatever/join", None, "application/json", "{".to_string()).await;
    r.expect(400);
    let r = app.post_raw(&format!("/v1/sessions/{s}/beacon"), None, "text/plain", "{\"token\":".to_string()).await;
    assert!(matches!(r.status.as_u16(), 400 | 401), "{}", r.text);

    // Oversize bodies: 413.
    let big = json!({"kind": "plain", "metadata": {"blob": "x".repeat(200 * 1024)}}).to_string();
    app.post_raw("/v1/sessions", Some(&u), "application/json", big.clone()).await.expect(413);
    app.post_raw(&format!("/v1/sessions/{s}/beacon"), None, "text/plain", big.clone()).await.expect(413);
    app.post_raw(&format!("/v1/sessions/{s}/end"), Some(&u), "application/json", big).await.expect(413);

    // The session went through all of that untouched, and good input still works.
    assert_eq!(app.session(&s).await["status"], "active");
    app.start_session(&u, json!({"kind": "plain", "metadata": {"ok": true}})).await;
}

#[tokio::test]
async fn bad_query_params_and_routes() {
    let app = TestApp::start().await;
    for (query, field) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=100000", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("status=sleeping", "status"),
    ] {
        let r = app.get(&format!("/v1/sessions?{query}"), Some(API_KEY)).await;
        names_field(&r, field);
    }
    // Sensible odd-but-valid queries work.
    app.get("/v1/sessions?cursor=&kind=nope", Some(API_KEY)).await.expect(200);
    app.get("/v1/sessions?unknown=1", Some(API_KEY)).await;

    // Bad Last-Event-ID.
    let r = app
        .send(
            "GET",
            "/v1/events",
            app.req(Method::GET, "/v1/events", Some(API_KEY)).header("Last-Event-ID", "yesterday"),
        )
        .await;
    names_field(&r, "Last-Event-ID");

    // Unknown routes and methods: problem+json.
    for (method, path) in [
        (Method::GET, "/v1/nope"),
        (Method::POST, "/v1/sessions/abc/bogus"),
        (Method::GET, "/v1/sessions/abc/heartbeat/extra"),
        (Method::GET, "/definitely/not/here"),
        (Method::GET, "/v1/sessions/%00"),
    ] {
        let r = app.call(method.clone(), path, Some(API_KEY), None).await;
        assert_eq!(r.status.as_u16(), 404, "{method} {path}: {}", r.text);
    }
    let r = app.call(Method::DELETE, "/v1/sessions", Some(API_KEY), None).await;
    assert_eq!(r.status.as_u16(), 405, "{}", r.text);
    let r = app.call(Method::PUT, "/v1/sessions/abc/heartbeat", Some(API_KEY), None).await;
    assert_eq!(r.status.as_u16(), 405, "{}", r.text);

    // /v1/ws without a WebSocket upgrade is a problem too.
    let r = app.get("/v1/ws", Some(API_KEY)).await;
    assert!(matches!(r.status.as_u16(), 400 | 426), "{}", r.text);

    // A WebSocket client sending garbage gets an error frame, not a dropped server.
    let mut ws = app.ws(API_KEY).await;
    ws.send(json!({"type": "heartbeat"})).await;
    let e = ws.events.wait_for(ms(2000), "error frame", |e| e.event == "error").await;
    assert!(e.data["detail"].as_str().unwrap().contains("session_id"), "{}", e.data);
    ws.send(json!({"type": "heartbeat", "session_id": "nope"})).await;
    let e = ws.events.wait_for(ms(2000), "error frame", |e| e.event == "error").await;
    assert_eq!(e.data["status"], 404);
    ws.send(json!("just a string")).await;
    ws.events.wait_for(ms(2000), "error frame", |e| e.event == "error").await;
    ws.sync().await;
    app.get("/healthz", None).await.expect(200);
}

/// The line of the first occurrence of `needle` in `text` (1-based).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in config") + 1
}

#[test]
fn bad_config_stops_the_server_naming_key_and_line() {
    let cases = [
        ("kinds.broken.idle_timeout", "idle_timeout = \"5x\""),
        ("kinds.broken.max_duration", "max_duration = \"ten minutes\""),
        ("kinds.broken.waiting_timeout", "waiting_timeout = \"0s\""),
        ("kinds.broken.completing_timeout", "completing_timeout = 30"),
        ("kinds.broken.per_user", "per_user = \"sometimes\""),
        ("kinds.broken.idle_timout", "idle_timout = \"5s\""),
        ("kinds.broken.quorum", "quorum = 0"),
    ];
    for (key, line) in cases {
        let config = format!(
            "[auth]\njwt_secret = \"s\"\napi_keys = [\"k\"]\n\n[kinds.fine]\nidle_timeout = \"30s\"\n\n[kinds.broken]\nretention = \"1d\"\n{line}\n"
        );
        let (status, stderr) = TestApp::spawn_expect_failure(&config);
        assert!(!status.success(), "{key}: exit {status:?}");
        let want_line = line_of(&config, line);
        assert!(stderr.contains(key), "{key}: stderr should name the key: {stderr}");
        assert!(stderr.contains(&format!("line {want_line}")), "{key}: stderr should name line {want_line}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Broken TOML: the line is named.
    let (status, stderr) = TestApp::spawn_expect_failure("[auth]\napi_keys = [\"k\"\n\n[kinds.x]\n");
    assert!(!status.success());
    assert!(stderr.contains("line"), "{stderr}");
}

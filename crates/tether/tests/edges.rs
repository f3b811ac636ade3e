//! The server's edges, against the real binary: resume that names what it
//! cannot replay (`stream.gap` after log eviction and after a restart),
//! `?kind=` refusing unknown kinds, WebSocket close `1001` on shutdown, token
//! checks (`sub` rules, `nbf`, `WWW-Authenticate`, readable details), a
//! duplicated query parameter named, floats answered as given, and `410`s
//! that carry the real end reason while the end is still being written.

mod support;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// `2⁴⁰`: ids are `epoch·2⁴⁰ + n` (see `hub.rs`).
const EPOCH_UNIT: u64 = 1 << 40;

/// Metadata large enough that a few hundred sessions overflow the resume log's
/// byte bound (32 MiB), while each request stays under the 64 KiB body limit.
fn bulky_metadata() -> Value {
    json!({"blob": "x".repeat(60_000)})
}

/// The first event of an SSE stream opened with `Last-Event-ID: after`.
async fn first_after(app: &TestApp, after: u64) -> Event {
    let mut stream = app.sse(API_KEY, "", Some(after)).await;
    stream.wait_for(ms(5000), "the first replayed frame", |_| true).await
}

#[tokio::test]
async fn a_resume_older_than_the_memory_log_is_replayed_from_the_event_log() {
    let app = TestApp::start().await;
    let mut live = app.sse(API_KEY, "", None).await;
    let first = id_of(&app.start_for("early", "plain").await);
    let first_id = live.wait_event(ms(3000), "session.started", &first).await.id.unwrap();
    drop(live);

    // ~120 KB of events per session (started + activated): 320 sessions are
    // well past the in-memory log's 32 MiB, so the first events are evicted
    // from memory — but not from the store's event log.
    let client = app.client.clone();
    let url = app.url("/v1/sessions");
    let mut last = String::new();
    for batch in 0..40 {
        let answers = futures::future::join_all((0..8).map(|i| {
            let body = json!({"kind": "plain", "user_id": format!("bulk-{batch}-{i}"), "metadata": bulky_metadata()});
            client.post(&url).bearer_auth(API_KEY).json(&body).send()
        }))
        .await;
        for r in answers {
            let r = r.expect("create");
            assert_eq!(r.status().as_u16(), 201);
            last = r.json::<Value>().await.unwrap()["session"]["id"].as_str().unwrap().to_string();
        }
    }

    let mut resumed = app.sse(API_KEY, "", Some(first_id)).await;
    let next = resumed.wait_for(ms(5000), "the first frame", |_| true).await;
    assert_ne!(next.event, "stream.gap", "the event log still has every event: {:?}", next.data);
    assert!(next.is("session.activated", &first), "{}", next.short());
    assert_eq!(next.id, Some(first_id + 1), "the replay starts right after Last-Event-ID");
    resumed.wait_event(ms(20_000), "session.activated", &last).await;
    // Every event after the resume point: the first session's activation and two per bulk session.
    while resumed.seen.len() < 2 * 320 + 1 {
        resumed.wait_for(ms(20_000), "the rest of the replay", |_| true).await;
    }
    let ids: Vec<u64> = resumed.seen.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "replayed ids are contiguous, from the store then from memory");
}

#[tokio::test]
async fn a_resume_from_before_a_restart_is_replayed_from_the_event_log() {
    let mut app = TestApp::start().await;
    let mut live = app.sse(API_KEY, "", None).await;
    let before = id_of(&app.start_for("runner", "plain").await);
    let first_before = live.wait_event(ms(3000), "session.started", &before).await.id.unwrap();
    drop(live);

    app.restart().await;
    let after = id_of(&app.start_for("walker", "plain").await);

    // The previous run's events come from the store, then this run's, no gap.
    let mut resumed = app.sse(API_KEY, "", Some(first_before)).await;
    let activated = resumed.wait_for(ms(5000), "the first frame", |_| true).await;
    assert!(activated.is("session.activated", &before), "{}", activated.short());
    let started = resumed.wait_event(ms(3000), "session.started", &after).await;
    assert_eq!(started.id.unwrap() % EPOCH_UNIT, 1, "the new run's ids start a new epoch");
    assert!(started.id > activated.id);
    assert_eq!(resumed.seen.len(), 2, "{:?}", resumed.summary());

    // The history of the earlier run's session survived the restart too.
    let history = app.get(&format!("/v1/sessions/{before}/history"), Some(API_KEY)).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let types: Vec<&str> =
        history.body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["session.started", "session.activated"]);

    // An id from the future (a made-up one) replays this run from its start
    // rather than waiting for the sequence to catch up.
    let future = first_after(&app, started.id.unwrap() + 10 * EPOCH_UNIT).await;
    assert!(future.is("session.started", &after), "{}", future.short());
    // 0 means "from the beginning" of this run: its events, no gap.
    let zero = first_after(&app, 0).await;
    assert!(zero.is("session.started", &after), "{}", zero.short());
}

#[tokio::test]
async fn unknown_kinds_and_bad_resume_points_are_refused() {
    let app = TestApp::start().await;
    for path in ["/v1/events?kind=plian", &format!("/v1/ws?kind=plian&token={API_KEY}")] {
        let r = app.get(path, Some(API_KEY)).await;
        r.problem(422, &["kind", "plian"]);
        assert_eq!(r.body["field"], "kind", "{}", r.text);
    }
    let r = app
        .send(
            "GET",
            "/v1/events",
            app.req(Method::GET, "/v1/events", Some(API_KEY)).header("Last-Event-ID", "yesterday"),
        )
        .await;
    r.problem(400, &["Last-Event-ID"]);
    assert_eq!(r.body["field"], "Last-Event-ID");

    // An empty Last-Event-ID is no resume point (the SSE spec's reset), and a known kind streams.
    let r = app
        .req(Method::GET, "/v1/events?kind=plain", Some(API_KEY))
        .header("Last-Event-ID", "")
        .send()
        .await
        .expect("open the stream");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn websockets_close_with_1001_on_shutdown() {
    let mut app = TestApp::start().await;
    let url = format!("ws://{}/v1/ws?token={}", app.host, API_KEY);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connect");
    socket.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("pong in time") {
            Some(Ok(Message::Text(t))) if t.contains("pong") => break,
            Some(Ok(_)) => {}
            other => panic!("socket ended before pong: {other:?}"),
        }
    }
    app.sigterm();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("close in time") {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("no close frame before the socket ended: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away), "shutdown closes sockets with 1001 (going away)");
    app.wait_exit(Duration::from_secs(10)).await.expect("the server exits");
}

fn mint(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// GETs the session list with `token` and returns the 401 (its challenge and detail).
async fn refused(app: &TestApp, token: Option<&str>) -> (String, String) {
    let mut b = app.req(Method::GET, "/v1/sessions", None);
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    let r = b.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers().get("www-authenticate").expect("401 carries WWW-Authenticate").to_str().unwrap();
    let challenge = challenge.to_string();
    let body: Value = r.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap().to_string();
    for internal in ["ExpiredSignature", "InvalidSignature", "InvalidToken", "ImmatureSignature", "Error(", "kind:"] {
        assert!(!detail.contains(internal), "detail echoes a library internal ({internal}): {detail}");
    }
    (challenge, detail)
}

#[tokio::test]
async fn tokens_are_checked_and_refusals_explain_themselves() {
    let app = TestApp::start().await;
    let hour = now_ms() / 1000 + 3600;

    let (challenge, detail) = refused(&app, None).await;
    assert_eq!(challenge, "Bearer", "no credential: a bare challenge (RFC 6750 §3.1)");
    assert!(detail.contains("bearer"), "{detail}");

    let invalid = "Bearer error=\"invalid_token\"";
    let cases = [
        (mint(json!({"sub": "x".repeat(40_000), "exp": hour})), "sub"),
        (mint(json!({"sub": "nul\u{0}byte", "exp": hour})), "control"),
        (mint(json!({"sub": "   ", "exp": hour})), "sub"),
        (mint(json!({"sub": "early", "exp": hour, "nbf": hour - 1800})), "nbf"),
        (expired_token("late"), "expired"),
        (forged_token("forger"), "signature"),
        (mint(json!({"sub": "nobody"})), "exp"),
        ("not-a-token".to_string(), "token"),
    ];
    for (token, mention) in cases {
        let (challenge, detail) = refused(&app, Some(&token)).await;
        assert_eq!(challenge, invalid);
        assert!(detail.to_lowercase().contains(mention), "detail should mention {mention:?}: {detail}");
    }

    // A sub at the limit is a user like any other; nbf in the past is fine.
    let ok = mint(json!({"sub": "y".repeat(256), "exp": hour, "nbf": now_ms() / 1000 - 60}));
    app.get("/v1/sessions", Some(&ok)).await.expect(200);
    // The same rule for an API key's user_id.
    let r = app.post("/v1/sessions", Some(API_KEY), json!({"kind": "plain", "user_id": "nul\u{0}byte"})).await;
    r.problem(422, &["user_id"]);
    let r = app.post("/v1/sessions", Some(API_KEY), json!({"kind": "plain", "user_id": "x".repeat(257)})).await;
    r.problem(422, &["user_id"]);
}

#[tokio::test]
async fn a_duplicated_query_parameter_is_named() {
    let app = TestApp::start().await;
    let r = app.get("/v1/sessions?limit=1&limit=2", Some(API_KEY)).await;
    r.problem(422, &["limit"]);
    assert_eq!(r.body["field"], "limit", "{}", r.text);
}

#[tokio::test]
async fn personality_is_answered_as_given() {
    let app = TestApp::start().await;
    let profile = json!({"name": "Flo", "age": 30, "interests": ["chess"], "personality": [0.1, 0.2, 0.3, 0.7, 0.9]});
    let put = app.call(Method::PUT, "/v1/profiles/flo", Some(API_KEY), Some(profile)).await;
    put.expect(200);
    let got = app.get("/v1/profiles/flo", Some(API_KEY)).await;
    for answer in [&put, &got] {
        assert!(answer.text.contains("[0.1,0.2,0.3,0.7,0.9]"), "personality widened: {}", answer.text);
    }
}

/// Hammers `POST /v1/sessions/{id}/heartbeat` from `workers` clients until
/// each has had three `410`s; returns every `410`'s `end_reason`.
fn hammer(app: &TestApp, id: &str, workers: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let client = app.client.clone();
    let url = app.url(&format!("/v1/sessions/{id}/heartbeat"));
    tokio::spawn(async move {
        let loops = (0..workers).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let mut reasons = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(15);
                while reasons.len() < 3 {
                    assert!(std::time::Instant::now() < deadline, "no 410 within 15 s; got {reasons:?}");
                    let r = client.post(&url).bearer_auth(API_KEY).send().await.expect("heartbeat");
                    match r.status().as_u16() {
                        200 => {}
                        410 => reasons.push(r.json::<Value>().await.unwrap()["end_reason"].as_str().unwrap().into()),
                        other => panic!("heartbeat answered {other}: {}", r.text().await.unwrap_or_default()),
                    }
                }
                reasons
            }
        });
        futures::future::join_all(loops).await.into_iter().flatten().collect()
    })
}

#[tokio::test]
async fn a_410_carries_the_real_end_reason_while_the_end_is_written() {
    let app = TestApp::start().await;
    for round in 0..8 {
        // Parent end: the child ends `parent_ended` in the same change.
        let parent = id_of(&app.start_for(&format!("pa-{round}"), "job").await);
        let child = app
            .start_session(API_KEY, json!({"kind": "chat", "user_id": format!("pa-{round}"), "parent_id": parent}))
            .await;
        let child = id_of(&child["session"]);
        let beats = hammer(&app, &child, 6);
        app.post(&format!("/v1/sessions/{parent}/end"), Some(API_KEY), json!({})).await.expect(200);
        let reasons = beats.await.unwrap();
        assert!(reasons.iter().all(|r| r == "parent_ended"), "round {round}: 410s said {reasons:?}");

        // Takeover: the blocking session ends `taken_over`.
        let user = format!("tk-{round}");
        let old = id_of(&app.start_for(&user, "interview").await);
        let beats = hammer(&app, &old, 6);
        app.start_session(API_KEY, json!({"kind": "interview", "user_id": user, "on_conflict": "takeover"})).await;
        let reasons = beats.await.unwrap();
        assert!(reasons.iter().all(|r| r == "taken_over"), "round {round}: 410s said {reasons:?}");
    }
}

/// CORS (`cors_origins`, extension): by default any origin may call the API
/// with a bearer token (preflight answered, the headers clients read
/// exposed); a list allows only those origins.
#[tokio::test]
async fn browsers_on_other_origins_may_call_the_api() {
    let app = TestApp::start().await;
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, app.url("/v1/sessions"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    let r = client
        .get(app.url("/v1/sessions"))
        .header("Origin", "https://app.example.com")
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let exposed = r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("retry-after") && exposed.contains("tether-expires-at"), "{exposed}");
    drop(app);

    let only =
        TestApp::start_with_config(&format!("cors_origins = [\"https://app.example.com\"]\n{}", config_text())).await;
    let ask = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, only.url("/v1/sessions"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let ok = ask("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    let other = ask("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
}

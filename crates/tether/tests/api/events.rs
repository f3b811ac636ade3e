//! Live events: SSE resume with `Last-Event-ID`, the WebSocket carrying the
//! same events and heartbeats, and `disconnect_grace`.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn sse_last_event_id_resumes_missed_events() {
    let app = TestApp::start().await;
    let mut first = app.sse(API_KEY, "", None).await;
    let s1 = id_of(&app.start_for("rita", "plain").await);
    let activated = first.wait_event(ms(2000), "session.activated", &s1).await;
    let started = first.seen[0].clone();
    assert!(started.is("session.started", &s1));
    assert!(activated.id.unwrap() > started.id.unwrap(), "ids increase");
    let last_id = activated.id.unwrap();
    drop(first);

    // Missed while disconnected.
    app.post(&format!("/v1/sessions/{s1}/end"), Some(API_KEY), json!({})).await.expect(200);
    let other = id_of(&app.start_for("someone-else", "plain").await);
    let s2 = id_of(&app.start_for("rita", "plain").await);
    app.post(&format!("/v1/sessions/{s2}/participants"), Some(API_KEY), json!({"user_id": "pal"})).await.expect(201);

    let mut resumed = app.sse(API_KEY, "", Some(last_id)).await;
    let e = resumed.wait_event(ms(2000), "participant.joined", &s2).await;
    let got: Vec<(String, String)> =
        resumed.seen.iter().map(|e| (e.event.clone(), e.session_id().to_string())).collect();
    let want: Vec<(String, String)> = [
        ("session.ended", &s1),
        ("session.started", &other),
        ("session.activated", &other),
        ("session.started", &s2),
        ("session.activated", &s2),
        ("participant.joined", &s2),
    ]
    .iter()
    .map(|(t, id)| (t.to_string(), id.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(resumed.seen[0].reason(), "ended");
    let ids: Vec<u64> = resumed.seen.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids[0] > last_id && ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Every event carries id, type, at and session.
    for e in &resumed.seen {
        assert_eq!(e.data["id"].as_u64(), e.id);
        assert_eq!(e.data["type"], e.event.as_str());
        ts(&e.data["at"]);
        assert!(e.data["session"]["id"].is_string());
    }
    assert_eq!(e.data["participant"]["id"], "pal");

    // Live events keep coming on the resumed stream.
    app.post(&format!("/v1/sessions/{s2}/end"), Some(API_KEY), json!({})).await.expect(200);
    let ended = resumed.wait_event(ms(2000), "session.ended", &s2).await;
    assert_eq!(ended.id.unwrap(), ids.last().unwrap() + 1);

    // A user's resume replays only its own sessions' events.
    let mut rita = app.sse(&user_token("rita"), "", Some(last_id)).await;
    rita.wait_event(ms(2000), "session.ended", &s2).await;
    assert!(rita.seen.iter().all(|e| e.session_id() == s1 || e.session_id() == s2), "{:?}", rita.summary());
    assert_eq!(rita.seen.len(), 5, "{:?}", rita.summary());

    // ?kind= filters for API keys.
    let mut interviews = app.sse(API_KEY, "?kind=interview", Some(0)).await;
    let i = id_of(&app.start_for("rita", "interview").await);
    interviews.wait_event(ms(2000), "session.activated", &i).await;
    assert!(interviews.seen.iter().all(|e| e.data["session"]["kind"] == "interview"), "{:?}", interviews.summary());
}

#[tokio::test]
async fn websocket_receives_the_same_events_as_sse() {
    let app = TestApp::start().await;
    let mut sse = app.sse(API_KEY, "", None).await;
    let mut ws = app.ws(API_KEY).await;
    let wes = user_token("wes");
    let mut wes_ws = app.ws(&wes).await;

    let s = id_of(&app.start_session(&wes, json!({"kind": "interview"})).await["session"]);
    app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"user_id": "wil"})).await.expect(201);
    app.post_empty(&format!("/v1/sessions/{s}/complete"), Some(&wes)).await.expect(200);
    app.post(&format!("/v1/sessions/{s}/end"), Some(&wes), json!({})).await.expect(200);

    sse.wait_event(ms(3000), "session.ended", &s).await;
    ws.events.wait_event(ms(3000), "session.ended", &s).await;
    wes_ws.events.wait_event(ms(3000), "session.ended", &s).await;
    let from_sse: Vec<_> = sse.seen.iter().map(|e| e.data.clone()).collect();
    let from_ws: Vec<_> = ws.events.seen.iter().filter(|e| e.event != "pong").map(|e| e.data.clone()).collect();
    let from_user_ws: Vec<_> =
        wes_ws.events.seen.iter().filter(|e| e.event != "pong").map(|e| e.data.clone()).collect();
    let types: Vec<&str> = from_sse.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["session.started", "session.activated", "participant.joined", "session.completing", "session.ended"]
    );
    assert_eq!(from_ws, from_sse, "the WebSocket carries the same events");
    assert_eq!(from_user_ws, from_sse, "the owner's WebSocket too");
}

#[tokio::test]
async fn websocket_heartbeats_keep_a_session_alive() {
    let app = TestApp::start().await;
    let hal = user_token("hal");
    let mut ws = app.ws(&hal).await;
    let s = app.start_session(&hal, json!({"kind": "presence"})).await["session"].clone(); // idle 800ms
    let id = id_of(&s);

    let until = ts(&s["created_at"]) + 2000;
    while now_ms() < until {
        ws.send(json!({"type": "heartbeat", "session_id": id})).await;
        ws.events.expect_none(ms(200), "end or error", |e| e.is("session.ended", &id) || e.event == "error").await;
    }
    ws.sync().await;
    let now = app.session(&id).await;
    assert_eq!(now["status"], "active", "{now}");
    assert!(ts(&now["last_seen_at"]) > ts(&s["last_seen_at"]) + 1000, "{now}");

    // Another user's heartbeat over WS: an error frame, as over HTTP (404).
    let mut other = app.ws(&user_token("ida")).await;
    other.send(json!({"type": "heartbeat", "session_id": id})).await;
    let err = other.events.wait_for(ms(2000), "error frame", |e| e.event == "error").await;
    assert_eq!(err.data["status"], 404);

    let e = ws.events.wait_event(ms(3000), "session.ended", &id).await;
    assert_eq!(e.reason(), "idle_timeout");
    // The other user's socket never saw hal's session.
    assert!(other.events.seen.iter().all(|e| e.session_id() != id));
}

#[tokio::test]
async fn disconnect_grace_ends_disconnected() {
    let app = TestApp::start().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let dora = user_token("dora");
    let ws = app.ws(&dora).await;
    let s = id_of(&app.start_session(&dora, json!({"kind": "grace"})).await["session"]);
    // Another user's socket does not keep dora's session.
    let _bystander = app.ws(&user_token("bystander")).await;

    let closed_at = now_ms();
    ws.close().await;
    let e = admin.wait_event(ms(3000), "session.ended", &s).await;
    assert_eq!(e.reason(), "disconnected");
    let after = ts(&e.data["session"]["ended_at"]) - closed_at;
    assert!((450..=1200).contains(&after), "ended {after} ms after the socket closed (grace 500ms)");
}

#[tokio::test]
async fn reconnecting_within_disconnect_grace_cancels_it() {
    let app = TestApp::start().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let ed = user_token("ed");
    let ws = app.ws(&ed).await;
    let s = app.start_session(&ed, json!({"kind": "grace"})).await["session"].clone();
    let id = id_of(&s);
    assert!(ts(&s["expires_at"]) > now_ms() + 50_000, "idle 1m while connected: {s}");

    ws.close().await;
    // The grace is in force once the server has seen the close (no event marks it).
    let started = std::time::Instant::now();
    loop {
        let now = app.session(&id).await;
        if ts(&now["expires_at"]) <= now_ms() + 600 {
            break;
        }
        assert!(started.elapsed() < ms(400), "the grace did not start: {now}");
        tokio::time::sleep(ms(10)).await;
    }
    let ws2 = app.ws(&ed).await;
    let now = app.session(&id).await;
    assert!(ts(&now["expires_at"]) > now_ms() + 50_000, "reconnecting cancels the grace: {now}");
    admin.expect_none(ms(900), "end of the reconnected session", |e| e.is("session.ended", &id)).await;
    assert_eq!(app.session(&id).await["status"], "active");

    // Closing again starts a new grace, which runs out.
    ws2.close().await;
    let e = admin.wait_event(ms(3000), "session.ended", &id).await;
    assert_eq!(e.reason(), "disconnected");
}

/// A client that fell back to Server-Sent Events is still present: its open
/// stream keeps the session through `disconnect_grace`, and closing it starts the grace.
#[tokio::test]
async fn an_open_event_stream_counts_as_presence() {
    let app = TestApp::start().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let fay = user_token("fay");
    let stream = app.sse(&fay, "", None).await;
    let s = id_of(&app.start_session(&fay, json!({"kind": "grace"})).await["session"]);
    // Longer than the 500 ms grace: the stream is open, so nothing may end.
    tokio::time::sleep(ms(900)).await;
    assert_eq!(app.session(&s).await["status"], "active");

    let closed_at = now_ms();
    drop(stream);
    let e = admin.wait_event(ms(3000), "session.ended", &s).await;
    assert_eq!(e.reason(), "disconnected");
    let after = ts(&e.data["session"]["ended_at"]) - closed_at;
    assert!((450..=1500).contains(&after), "ended {after} ms after the stream closed (grace 500ms)");
}

/// A `Last-Event-ID` ahead of the server (its memory store restarted) must not
/// silence the stream until the sequence catches up.
#[tokio::test]
async fn a_resume_id_from_the_future_starts_afresh() {
    let app = TestApp::start().await;
    let mut stream = app.sse(API_KEY, "", Some(u64::MAX / 4)).await;
    let s = id_of(&app.start_session(API_KEY, json!({"kind": "grace", "user_id": "gil"})).await["session"]);
    let e = stream.wait_event(ms(3000), "session.started", &s).await;
    assert_eq!(e.session_id(), s);
}

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

    // `?last_event_id=` (extension) resumes a WebSocket as Last-Event-ID does SSE.
    let first = sse.seen[0].id.unwrap();
    let mut resumed = app.ws(&format!("{wes}&last_event_id={first}")).await;
    // Connecting waits for a pong, so the replay may already have been taken.
    if !resumed.events.seen.iter().any(|e| e.is("session.ended", &s)) {
        resumed.events.wait_event(ms(3000), "session.ended", &s).await;
    }
    let replayed: Vec<_> = resumed.events.seen.iter().filter(|e| e.event != "pong").map(|e| e.data.clone()).collect();
    assert_eq!(replayed, from_sse[1..], "everything after the resume point, in order");
}

#[tokio::test]
async fn websocket_heartbeats_keep_a_session_alive() {
    let app = TestApp::in_process().await;
    let hal = user_token("hal");
    let mut ws = app.ws(&hal).await;
    let s = app.start_session(&hal, json!({"kind": "presence"})).await["session"].clone(); // idle 800ms
    let id = id_of(&s);

    // Heartbeats every 700 ms carry it past twice the idle timeout.
    for _ in 0..3 {
        app.advance(ms(700));
        ws.send(json!({"type": "heartbeat", "session_id": id})).await;
        ws.sync().await; // handled in order, before the pong
    }
    assert!(
        ws.events.seen.iter().all(|e| !e.is("session.ended", &id) && e.event != "error"),
        "{:?}",
        ws.events.summary()
    );
    let now = app.session(&id).await;
    assert_eq!(now["status"], "active", "{now}");
    assert_eq!(ts(&now["last_seen_at"]), app.now(), "{now}");

    // Another user's heartbeat over WS: an error frame, as over HTTP (404).
    let mut other = app.ws(&user_token("ida")).await;
    other.send(json!({"type": "heartbeat", "session_id": id})).await;
    let err = other.events.wait_for(ms(2000), "error frame", |e| e.event == "error").await;
    assert_eq!(err.data["status"], 404);

    let last_beat = app.now();
    app.advance(ms(800));
    let e = ws.events.wait_event(ms(2000), "session.ended", &id).await;
    assert_eq!(e.reason(), "idle_timeout");
    assert_eq!(ts(&e.data["session"]["ended_at"]), last_beat + 800);
    // The other user's socket never saw hal's session.
    assert!(other.events.seen.iter().all(|e| e.session_id() != id));
}

#[tokio::test]
async fn disconnect_grace_ends_disconnected() {
    let app = TestApp::in_process().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let dora = user_token("dora");
    let ws = app.ws(&dora).await;
    let s = id_of(&app.start_session(&dora, json!({"kind": "grace"})).await["session"]);
    // Another user's socket does not keep dora's session.
    let _bystander = app.ws(&user_token("bystander")).await;

    let closed_at = app.now();
    ws.close().await;
    app.session_until(&s, "the disconnect grace", |now| ts(&now["expires_at"]) == closed_at + 500).await;
    app.advance(ms(499));
    assert_eq!(app.session(&s).await["status"], "active", "1 ms before the grace runs out");
    app.advance(ms(1));
    let e = admin.wait_event(ms(2000), "session.ended", &s).await;
    assert_eq!(e.reason(), "disconnected");
    assert_eq!(ts(&e.data["session"]["ended_at"]), closed_at + 500, "ended when the 500 ms grace ran out");
}

#[tokio::test]
async fn reconnecting_within_disconnect_grace_cancels_it() {
    let app = TestApp::in_process().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let ed = user_token("ed");
    let ws = app.ws(&ed).await;
    let s = app.start_session(&ed, json!({"kind": "grace"})).await["session"].clone();
    let id = id_of(&s);
    assert_eq!(ts(&s["expires_at"]), app.now() + 60_000, "idle 1m while connected: {s}");

    ws.close().await;
    // The grace is in force once the server has seen the close (no event marks it).
    let closed_at = app.now();
    app.session_until(&id, "the disconnect grace", |now| ts(&now["expires_at"]) == closed_at + 500).await;
    app.advance(ms(499));
    let ws2 = app.ws(&ed).await;
    let now = app.session(&id).await;
    assert_eq!(ts(&now["expires_at"]), ts(&now["last_seen_at"]) + 60_000, "reconnecting cancels the grace: {now}");
    app.advance(ms(501));
    assert_eq!(app.session(&id).await["status"], "active", "past the cancelled grace");

    // Closing again starts a new grace, which runs out.
    let closed_again = app.now();
    ws2.close().await;
    app.session_until(&id, "the second grace", |now| ts(&now["expires_at"]) == closed_again + 500).await;
    app.advance(ms(500));
    let e = admin.wait_event(ms(2000), "session.ended", &id).await;
    assert_eq!(e.reason(), "disconnected");
}

/// A client that fell back to Server-Sent Events is still present: its open
/// stream keeps the session through `disconnect_grace`, and closing it starts the grace.
#[tokio::test]
async fn an_open_event_stream_counts_as_presence() {
    let app = TestApp::in_process().await;
    let mut admin = app.sse(API_KEY, "?kind=grace", None).await;
    let fay = user_token("fay");
    let stream = app.sse(&fay, "", None).await;
    let s = id_of(&app.start_session(&fay, json!({"kind": "grace"})).await["session"]);
    // Longer than the 500 ms grace: the stream is open, so nothing may end.
    app.advance(ms(900));
    assert_eq!(app.session(&s).await["status"], "active");

    let closed_at = app.now();
    drop(stream);
    app.session_until(&s, "the disconnect grace", |now| ts(&now["expires_at"]) == closed_at + 500).await;
    app.advance(ms(500));
    let e = admin.wait_event(ms(2000), "session.ended", &s).await;
    assert_eq!(e.reason(), "disconnected");
    assert_eq!(ts(&e.data["session"]["ended_at"]), closed_at + 500, "ended when the 500 ms grace ran out");
}

/// A `Last-Event-ID` ahead of the server (its memory store restarted) must not
/// silence the stream until the sequence catches up.
#[tokio::test]
async fn a_resume_id_from_the_future_starts_afresh() {
    if cluster_mode().is_some() {
        // A cluster node cannot tell an id from the future from one it has not
        // tailed yet: it continues after it (docs/ARCHITECTURE.md, "Resume").
        return;
    }
    let app = TestApp::start().await;
    let mut stream = app.sse(API_KEY, "", Some(u64::MAX / 4)).await;
    let s = id_of(&app.start_session(API_KEY, json!({"kind": "grace", "user_id": "gil"})).await["session"]);
    let e = stream.wait_event(ms(3000), "session.started", &s).await;
    assert_eq!(e.session_id(), s);
}

/// `GET /v1/sessions/{id}/history`: every event of the session, in order,
/// exactly as the stream delivered it; the session's own visibility.
#[tokio::test]
async fn history_lists_every_event_of_a_session_in_order() {
    let app = TestApp::start().await;
    let rita = user_token("rita");
    let mut stream = app.sse(API_KEY, "", None).await;
    let s = id_of(&app.start_session(&rita, json!({"kind": "interview"})).await["session"]);
    let other = id_of(&app.start_for("someone-else", "plain").await);
    app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"user_id": "pal"})).await.expect(201);
    app.post_empty(&format!("/v1/sessions/{s}/complete"), Some(&rita)).await.expect(200);
    // completing_timeout (600 ms) ends it.
    stream.wait_event(ms(3000), "session.ended", &s).await;

    let history = app.get(&format!("/v1/sessions/{s}/history"), Some(&rita)).await.expect(200).clone();
    let events = history["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["session.started", "session.activated", "participant.joined", "session.completing", "session.ended"],
        "{history}"
    );
    assert_eq!(events.last().unwrap()["reason"], "completing_timeout");
    // Exactly the frames the stream delivered for this session.
    let streamed: Vec<&serde_json::Value> =
        stream.seen.iter().filter(|e| e.session_id() == s).map(|e| &e.data).collect();
    assert_eq!(events.iter().collect::<Vec<_>>(), streamed);
    assert!(events.iter().all(|e| e["session"]["id"] == s.as_str()), "only this session's events");

    // Same visibility as the session: the owner, a participant and API keys; 404 to others.
    app.get(&format!("/v1/sessions/{s}/history"), Some(API_KEY)).await.expect(200);
    app.get(&format!("/v1/sessions/{s}/history"), Some(&user_token("pal"))).await.expect(200);
    let stranger = app.get(&format!("/v1/sessions/{s}/history"), Some(&user_token("mallory"))).await;
    stranger.expect(404);
    app.get("/v1/sessions/0190aaaa-0000-7000-8000-000000000000/history", Some(API_KEY)).await.expect(404);
    let theirs = app.get(&format!("/v1/sessions/{other}/history"), Some(API_KEY)).await.expect(200).clone();
    assert_eq!(theirs["events"].as_array().unwrap().len(), 2, "{theirs}");
}

/// `?session=id` (extension) sends each event lean: the session's id and the
/// fields that change, not the whole session; on SSE and WebSocket alike,
/// resumes included. Each lean event is checked against `LeanEvent`.
#[tokio::test]
async fn lean_events_carry_the_session_id_and_what_changed() {
    let app = TestApp::start().await;
    let mut full = app.sse(API_KEY, "", None).await;
    let mut lean = app.sse(API_KEY, "?session=id", None).await;
    let mut lean_ws = app.ws(&format!("{API_KEY}&session=id")).await;
    let s = id_of(&app.start_for("lena", "plain").await);
    app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"user_id": "pal"})).await.expect(201);
    app.post(&format!("/v1/sessions/{s}/end"), Some(API_KEY), json!({"reason": "done"})).await.expect(200);
    full.wait_event(ms(3000), "session.ended", &s).await;
    let ended = lean.wait_event(ms(3000), "session.ended", &s).await;
    lean_ws.events.wait_event(ms(3000), "session.ended", &s).await;

    let whole: Vec<&serde_json::Value> = full.seen.iter().map(|e| &e.data).collect();
    let slim: Vec<&serde_json::Value> = lean.seen.iter().map(|e| &e.data).collect();
    assert_eq!(slim.len(), whole.len());
    for (w, l) in whole.iter().zip(&slim) {
        assert_eq!(l["id"], w["id"]);
        assert_eq!(l["type"], w["type"]);
        assert_eq!(l["session_id"], w["session"]["id"]);
        assert_eq!(l["status"], w["session"]["status"]);
        assert_eq!(l["expires_at"], w["session"]["expires_at"]);
        assert!(l.get("session").is_none(), "no whole session: {l}");
    }
    assert_eq!(ended.data["end_reason"], "ended");
    assert_eq!(ended.data["reason"], "ended");
    let joined = lean.seen.iter().find(|e| e.event == "participant.joined").unwrap();
    assert_eq!(joined.data["participant"]["id"], "pal", "the event's own fields stay");
    let from_ws: Vec<&serde_json::Value> =
        lean_ws.events.seen.iter().filter(|e| e.event != "pong").map(|e| &e.data).collect();
    assert_eq!(from_ws, slim, "the WebSocket sends the same lean events");

    // A resume in lean form.
    let first = lean.seen[0].id.unwrap();
    let mut resumed = app.sse(API_KEY, "?session=id", Some(first)).await;
    resumed.wait_event(ms(3000), "session.ended", &s).await;
    assert_eq!(resumed.seen.iter().map(|e| &e.data).collect::<Vec<_>>(), slim[1..]);

    let r = app.get("/v1/events?session=lean", Some(API_KEY)).await;
    r.problem(422, &["session"]);
    assert_eq!(r.body["field"], "session");
}

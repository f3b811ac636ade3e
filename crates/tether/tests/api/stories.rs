//! The seed applications' stories, end to end against the real server.

use crate::helpers::*;
use serde_json::json;

/// Dating app: opening the app again must never be refused because of the
/// previous session — the new one supersedes it.
#[tokio::test]
async fn replace_never_blocks() {
    let app = TestApp::start().await;
    let alice = user_token("alice");
    let mut events = app.sse(API_KEY, "?kind=swipe", None).await;

    let first = app.start_session(&alice, json!({"kind": "swipe"})).await;
    assert_eq!(first["superseded"], json!([]));
    assert_eq!(first["session"]["status"], "active");
    assert_eq!(first["session"]["user_id"], "alice");
    let first_id = id_of(&first["session"]);

    let second = app.start_session(&alice, json!({"kind": "swipe"})).await;
    let second_id = id_of(&second["session"]);
    assert_ne!(first_id, second_id);
    assert_eq!(second["superseded"], json!([first_id]), "the answer names the superseded session");
    assert_eq!(second["session"]["status"], "active");

    let ended = events.wait_event(ms(2000), "session.ended", &first_id).await;
    assert_eq!(ended.reason(), "superseded");
    assert_eq!(ended.data["session"]["end_reason"], "superseded");

    let old = app.get(&format!("/v1/sessions/{first_id}"), Some(&alice)).await;
    let old = old.expect(200);
    assert_eq!(old["status"], "ended");
    assert_eq!(old["end_reason"], "superseded");
    assert!(old["ended_at"].is_string());
    assert!(old["expires_at"].is_null());

    // The old session answers 410 with its reason; the new one is alive.
    let hb = app.post_empty(&format!("/v1/sessions/{first_id}/heartbeat"), Some(&alice)).await;
    assert_eq!(hb.problem(410, &[])["end_reason"], "superseded");
    app.post_empty(&format!("/v1/sessions/{second_id}/heartbeat"), Some(&alice)).await.expect(200);

    // Another user's swipe session is not touched by alice's.
    let bob = app.start_for("bob", "swipe").await;
    let third = app.start_session(&alice, json!({"kind": "swipe"})).await;
    assert_eq!(third["superseded"], json!([second_id]));
    assert_eq!(app.session(&id_of(&bob)).await["status"], "active");
}

/// AI interview: one interview at a time; a second start answers 409 with the
/// blocking session, and `on_conflict: takeover` ends it `taken_over`.
#[tokio::test]
async fn reject_answers_409_and_takeover_clears_it() {
    let app = TestApp::start().await;
    let ann = user_token("ann");
    let mut events = app.sse(API_KEY, "", None).await;

    let first = app.start_session(&ann, json!({"kind": "interview", "metadata": {"role": "backend"}})).await;
    let first_id = id_of(&first["session"]);

    let refused = app.post("/v1/sessions", Some(&ann), json!({"kind": "interview"})).await;
    let problem = refused.problem(409, &[&first_id]);
    assert_eq!(problem["blocking_session"]["id"], first_id.as_str());
    assert_eq!(problem["blocking_session"]["status"], "active");
    assert_eq!(problem["blocking_session"]["metadata"], json!({"role": "backend"}));
    assert_eq!(app.session(&first_id).await["status"], "active", "a refused start changes nothing");

    let bad = app.post("/v1/sessions", Some(&ann), json!({"kind": "interview", "on_conflict": "steal"})).await;
    assert!(bad.status.as_u16() == 400 || bad.status.as_u16() == 422, "{}", bad.text);
    assert!(bad.detail().contains("on_conflict"), "{}", bad.text);

    let taken = app.start_session(&ann, json!({"kind": "interview", "on_conflict": "takeover"})).await;
    let taken_id = id_of(&taken["session"]);
    assert_eq!(taken["superseded"], json!([first_id]));
    assert_eq!(taken["session"]["status"], "active");
    let ended = events.wait_event(ms(2000), "session.ended", &first_id).await;
    assert_eq!(ended.reason(), "taken_over");
    let old = app.session(&first_id).await;
    assert_eq!((old["status"].as_str(), old["end_reason"].as_str()), (Some("ended"), Some("taken_over")));

    // The new one now blocks in turn.
    let again = app.post("/v1/sessions", Some(&ann), json!({"kind": "interview"})).await;
    assert_eq!(again.problem(409, &[])["blocking_session"]["id"], taken_id.as_str());
    // Other users are not blocked by ann's interview.
    app.start_for("ben", "interview").await;
}

/// A tab closed without a word ends `idle_timeout` at its deadline, not a
/// millisecond before; a client that heartbeats stays alive well past the
/// idle timeout, and ends one idle timeout after its last heartbeat.
#[tokio::test]
async fn silent_client_ends_idle_timeout_heartbeating_one_stays() {
    let app = TestApp::in_process().await;
    let mut events = app.sse(API_KEY, "?kind=presence", None).await;
    let started = app.now();
    let silent = app.start_for("sam", "presence").await;
    let beating = app.start_for("bea", "presence").await;
    let (silent_id, beating_id) = (id_of(&silent), id_of(&beating));
    let idle = 800;
    assert_eq!(ts(&silent["expires_at"]), started + idle, "expires_at is the idle deadline");
    let beat = format!("/v1/sessions/{beating_id}/heartbeat");
    let bea = user_token("bea");

    app.advance(ms(idle as u64 - 1));
    let b = app.post_empty(&beat, Some(&bea)).await.expect(200).clone();
    assert_eq!(ts(&b["expires_at"]), app.now() + idle, "a heartbeat grants a full idle timeout: {b}");
    assert_eq!(app.session(&silent_id).await["status"], "active", "1 ms before its deadline");
    app.advance(ms(1));
    let ended = events.wait_event(ms(2000), "session.ended", &silent_id).await;
    assert_eq!(ended.reason(), "idle_timeout");
    let s = app.session(&silent_id).await;
    assert_eq!(s["end_reason"], "idle_timeout");
    assert_eq!(ts(&s["ended_at"]), started + idle, "ended at its deadline: {s}");

    // Heartbeats every 700 ms carry it past twice the idle timeout.
    for _ in 0..3 {
        app.advance(ms(700));
        app.post_empty(&beat, Some(&bea)).await.expect(200);
    }
    assert!(app.now() > started + 2 * idle);
    let b = app.session(&beating_id).await;
    assert_eq!(b["status"], "active", "{b}");
    assert_eq!(ts(&b["expires_at"]), app.now() + idle, "heartbeats move expires_at: {b}");

    // Once it falls silent, it ends one idle timeout after its last heartbeat.
    let last_beat = app.now();
    app.advance(ms(idle as u64));
    let ended = events.wait_event(ms(2000), "session.ended", &beating_id).await;
    assert_eq!(ended.reason(), "idle_timeout");
    assert_eq!(ts(&ended.data["session"]["ended_at"]), last_beat + idle, "{}", ended.data);

    let gone = app.post_empty(&format!("/v1/sessions/{silent_id}/heartbeat"), Some(&user_token("sam"))).await;
    assert_eq!(gone.problem(410, &[])["end_reason"], "idle_timeout");
}

/// Mechanic marketplace: a request nobody accepts ends `waiting_timeout`, and
/// the customer can ask again at once.
#[tokio::test]
async fn waiting_request_times_out_and_customer_can_start_again() {
    let app = TestApp::in_process().await;
    let carol = user_token("carol");
    let mut events = app.sse(API_KEY, "?kind=request", None).await;

    let r1 = app.start_session(&carol, json!({"kind": "request", "metadata": {"car": "vw"}})).await["session"].clone();
    let r1_id = id_of(&r1);
    assert_eq!(r1["status"], "waiting");
    assert!(r1["activated_at"].is_null());
    assert_eq!(ts(&r1["expires_at"]) - ts(&r1["created_at"]), 700);

    // While it waits it blocks a second request (per_user = reject) …
    let blocked = app.post("/v1/sessions", Some(&carol), json!({"kind": "request"})).await;
    assert_eq!(blocked.problem(409, &[])["blocking_session"]["id"], r1_id.as_str());

    // … until it times out, at its deadline.
    app.advance(ms(699));
    assert_eq!(app.session(&r1_id).await["status"], "waiting", "1 ms before the waiting deadline");
    app.advance(ms(1));
    let ended = events.wait_event(ms(2000), "session.ended", &r1_id).await;
    assert_eq!(ended.reason(), "waiting_timeout");
    assert_eq!(app.session(&r1_id).await["end_reason"], "waiting_timeout");

    let r2 = app.start_session(&carol, json!({"kind": "request"})).await;
    assert_eq!(r2["superseded"], json!([]), "the timed-out request is not taken over, it already ended");
    let r2_id = id_of(&r2["session"]);
    assert_eq!(r2["session"]["status"], "waiting");
    let r2_waiting_deadline = ts(&r2["session"]["expires_at"]);

    // A mechanic accepting reaches the quorum.
    let joined = app
        .post(
            &format!("/v1/sessions/{r2_id}/participants"),
            Some(API_KEY),
            json!({"user_id": "mechanic-mo", "name": "Mo"}),
        )
        .await;
    let joined = joined.expect(201);
    assert_eq!(joined["status"], "active");
    assert!(joined["activated_at"].is_string());
    events.wait_event(ms(2000), "session.activated", &r2_id).await;
    // The waiting deadline no longer applies (a read applies whatever is due first).
    app.advance_to(r2_waiting_deadline);
    assert_eq!(app.session(&r2_id).await["status"], "active");
}

/// Ending a parent ends its children `parent_ended`; a `keep` child stays.
#[tokio::test]
async fn ending_a_parent_ends_its_children() {
    let app = TestApp::start().await;
    let pat = user_token("pat");
    let mut events = app.sse(&pat, "", None).await;

    let parent = id_of(&app.start_session(&pat, json!({"kind": "job"})).await["session"]);
    let chat = app.start_session(&pat, json!({"kind": "chat", "parent_id": parent})).await["session"].clone();
    assert_eq!(chat["parent_id"], parent.as_str());
    let chat = id_of(&chat);
    let note = id_of(&app.start_session(&pat, json!({"kind": "note", "parent_id": parent})).await["session"]);
    // A grandchild cascades through its parent.
    let grandchild = id_of(&app.start_session(&pat, json!({"kind": "chat", "parent_id": chat})).await["session"]);

    let ended = app.post(&format!("/v1/sessions/{parent}/end"), Some(&pat), json!({})).await;
    let ended = ended.expect(200).clone();
    assert_eq!((ended["status"].as_str(), ended["end_reason"].as_str()), (Some("ended"), Some("ended")));

    for child in [&chat, &grandchild] {
        let e = events.wait_event(ms(2000), "session.ended", child).await;
        assert_eq!(e.reason(), "parent_ended");
        let s = app.session(child).await;
        assert_eq!((s["status"].as_str(), s["end_reason"].as_str()), (Some("ended"), Some("parent_ended")));
    }
    assert_eq!(app.session(&note).await["status"], "active", "on_parent_end = keep");

    // Idempotent: ending again answers 200 unchanged.
    let again = app.post(&format!("/v1/sessions/{parent}/end"), Some(&pat), json!({})).await;
    assert_eq!(again.expect(200)["ended_at"], ended["ended_at"]);

    // A child of an ended parent is refused, naming the field.
    let r = app.post("/v1/sessions", Some(&pat), json!({"kind": "chat", "parent_id": parent})).await;
    assert!(matches!(r.status.as_u16(), 400 | 409 | 422), "{}", r.text);
    assert!(r.detail().contains("parent"), "{}", r.text);
}

/// Reading room: a room lives while any participant heartbeats, even with its owner silent.
#[tokio::test]
async fn room_lives_while_any_participant_heartbeats() {
    let app = TestApp::in_process().await;
    let olga = user_token("olga");
    let mut events = app.sse(API_KEY, "?kind=room", None).await;
    let room = app.start_session(&olga, json!({"kind": "room", "name": "Olga"})).await["session"].clone();
    let room_id = id_of(&room);

    let joined = app
        .post(
            &format!("/v1/sessions/{room_id}/participants"),
            Some(API_KEY),
            json!({"user_id": "pete", "name": "Pete"}),
        )
        .await;
    let joined = joined.expect(201);
    assert_eq!(joined["participants"].as_array().unwrap().len(), 2);
    events
        .wait_for(ms(2000), "participant.joined", |e| {
            e.is("participant.joined", &room_id) && e.data["participant"]["id"] == "pete"
        })
        .await;

    // The owner stays silent for more than twice the idle timeout (800ms) while Pete heartbeats.
    let pete = user_token("pete");
    for _ in 0..3 {
        app.advance(ms(700));
        app.post_empty(&format!("/v1/sessions/{room_id}/participants/me/heartbeat"), Some(&pete)).await.expect(200);
    }
    assert!(app.now() > ts(&room["created_at"]) + 2 * 800);
    let s = app.get(&format!("/v1/sessions/{room_id}"), Some(&olga)).await.expect(200).clone();
    assert_eq!(s["status"], "active", "{s}");

    let last_beat = app.now();
    app.advance(ms(800));
    let e = events.wait_event(ms(2000), "session.ended", &room_id).await;
    assert_eq!(e.reason(), "idle_timeout");
    assert_eq!(ts(&e.data["session"]["ended_at"]), last_beat + 800, "{}", e.data);
}

/// Invites: a live invite lets a guest in; an expired one answers 410 saying
/// the invitation expired; one to an ended session says the session ended.
#[tokio::test]
async fn invites_expire_with_410() {
    let app = TestApp::in_process().await;
    let ivy = user_token("ivy");
    let s = id_of(&app.start_session(&ivy, json!({"kind": "reading"})).await["session"]);

    let inv = app.post(&format!("/v1/sessions/{s}/invites"), Some(&ivy), json!({})).await;
    let inv = inv.expect(201).clone();
    let token = inv["token"].as_str().unwrap().to_string();
    assert_eq!(ts(&inv["expires_at"]), app.now() + 3_600_000, "invite_ttl 1h: {inv}");
    let join = app.post(&format!("/v1/invites/{token}/join"), None, json!({"name": "Guest"})).await;
    let join = join.expect(201).clone();
    let guest = join["token"].as_str().unwrap().to_string();
    let pid = join["participant_id"].as_str().unwrap().to_string();
    assert_eq!(join["session"]["id"], s.as_str());
    let seen = app.get(&format!("/v1/sessions/{s}"), Some(&guest)).await;
    let seen = seen.expect(200);
    assert!(
        seen["participants"].as_array().unwrap().iter().any(|p| p["id"] == pid.as_str() && p["name"] == "Guest"),
        "{seen}"
    );
    app.post_empty(&format!("/v1/sessions/{s}/participants/me/heartbeat"), Some(&guest)).await.expect(200);

    // A short explicit ttl.
    let short = app.post(&format!("/v1/sessions/{s}/invites"), Some(&ivy), json!({"ttl": "300ms"})).await;
    let short = short.expect(201).clone();
    let expires = ts(&short["expires_at"]);
    assert_eq!(expires, app.now() + 300, "{short}");
    let short_join = format!("/v1/invites/{}/join", short["token"].as_str().unwrap());
    app.advance_to(expires - 1);
    app.post(&short_join, None, json!({"name": "Just in time"})).await.expect(201);
    app.advance_to(expires);
    let late = app.post(&short_join, None, json!({})).await;
    late.problem(410, &["invitation", "expired"]);

    let unknown = app.post("/v1/invites/no-such-invite/join", None, json!({})).await;
    unknown.expect(404);

    // An invite to a session that ended.
    let third = app.post(&format!("/v1/sessions/{s}/invites"), Some(&ivy), json!({})).await;
    let third = third.expect(201)["token"].as_str().unwrap().to_string();
    app.post(&format!("/v1/sessions/{s}/end"), Some(&ivy), json!({})).await.expect(200);
    let r = app.post(&format!("/v1/invites/{third}/join"), None, json!({})).await;
    r.problem(410, &["session", "ended"]);
    assert!(!r.detail().contains("expired"), "the session ended, the invite did not expire: {}", r.text);
}

/// `participant_idle_timeout`: a participant that stops heartbeating is marked left.
#[tokio::test]
async fn participant_idle_timeout_marks_left() {
    let app = TestApp::in_process().await;
    let lou = user_token("lou");
    let mut events = app.sse(&lou, "", None).await;
    let s = id_of(&app.start_session(&lou, json!({"kind": "lobby"})).await["session"]);
    app.post(&format!("/v1/sessions/{s}/participants"), Some(API_KEY), json!({"user_id": "gus"})).await.expect(201);
    let gus_joined = app.now();

    // The owner heartbeats; gus does not. 1 ms before his 600 ms, he is still in.
    app.advance(ms(599));
    app.post_empty(&format!("/v1/sessions/{s}/heartbeat"), Some(&lou)).await.expect(200);
    let now = app.session(&s).await;
    let gus = now["participants"].as_array().unwrap().iter().find(|p| p["id"] == "gus").unwrap().clone();
    assert!(gus["left_at"].is_null(), "gus left early: {now}");
    app.advance(ms(1));

    let left = events.wait_for(ms(2000), "participant.left of gus", |e| e.is("participant.left", &s)).await;
    assert_eq!(left.data["participant"]["id"], "gus", "{}", left.data);
    assert_eq!(left.data["session"]["status"], "active");
    let now = app.session(&s).await;
    let parts = now["participants"].as_array().unwrap();
    let gus = parts.iter().find(|p| p["id"] == "gus").unwrap();
    let lou_p = parts.iter().find(|p| p["id"] == "lou").unwrap();
    assert_eq!(ts(&gus["left_at"]), gus_joined + 600, "{now}");
    assert_eq!(ts(&gus["left_at"]) - ts(&gus["last_seen_at"]), 600, "{now}");
    assert!(lou_p["left_at"].is_null(), "the heartbeating owner stays: {now}");
    assert_eq!(now["status"], "active");

    // A participant that left no longer heartbeats as one.
    let r = app.post_empty(&format!("/v1/sessions/{s}/participants/me/heartbeat"), Some(&user_token("gus"))).await;
    r.expect(404);
}

/// AI interview wrap-up: complete → completing → completing_timeout.
#[tokio::test]
async fn complete_then_completing_timeout() {
    let app = TestApp::in_process().await;
    let cody = user_token("cody");
    let mut events = app.sse(&cody, "", None).await;
    let s = id_of(&app.start_session(&cody, json!({"kind": "interview"})).await["session"]);

    let c = app.post_empty(&format!("/v1/sessions/{s}/complete"), Some(&cody)).await;
    let c = c.expect(200).clone();
    assert_eq!(c["status"], "completing");
    let deadline = ts(&c["expires_at"]);
    assert_eq!(deadline, app.now() + 600, "expires_at is the completing deadline: {c}");
    events.wait_event(ms(2000), "session.completing", &s).await;

    app.advance_to(deadline - 1);
    assert_eq!(app.session(&s).await["status"], "completing", "1 ms before the completing deadline");
    app.advance_to(deadline);
    let e = events.wait_event(ms(2000), "session.ended", &s).await;
    assert_eq!(e.reason(), "completing_timeout");
    let s2 = app.session(&s).await;
    assert_eq!(s2["end_reason"], "completing_timeout");
    assert_eq!(ts(&s2["ended_at"]), deadline);

    let again = app.post_empty(&format!("/v1/sessions/{s}/complete"), Some(&cody)).await;
    assert_eq!(again.problem(410, &[])["end_reason"], "completing_timeout");
}

/// `navigator.sendBeacon` on pagehide: a text/plain `{"token"}` body ends the
/// session `closed`; a forged or invalid token is refused and changes nothing.
#[tokio::test]
async fn text_plain_beacon_ends_closed_forged_refused() {
    let app = TestApp::start().await;
    let bob = user_token("bob");
    let mut events = app.sse(&bob, "", None).await;
    let s = id_of(&app.start_session(&bob, json!({"kind": "plain"})).await["session"]);
    let path = format!("/v1/sessions/{s}/beacon");

    for (what, body) in [
        ("forged", json!({"token": forged_token("bob")}).to_string()),
        ("expired", json!({"token": expired_token("bob")}).to_string()),
        ("garbage", json!({"token": "not-a-token"}).to_string()),
        ("empty token", json!({"token": ""}).to_string()),
        ("no body", String::new()),
    ] {
        let r = app.post_raw(&path, None, "text/plain;charset=UTF-8", body).await;
        assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.text);
    }
    // The session is untouched.
    let live = app.session(&s).await;
    assert_eq!((live["status"].as_str(), live["end_reason"].as_str()), (Some("active"), None));

    let r = app.post_raw(&path, None, "text/plain;charset=UTF-8", json!({"token": bob}).to_string()).await;
    r.expect(204);
    let e = events.wait_event(ms(2000), "session.ended", &s).await;
    assert_eq!(e.reason(), "closed");
    let ended = app.session(&s).await;
    assert_eq!((ended["status"].as_str(), ended["end_reason"].as_str()), (Some("ended"), Some("closed")));

    // A second beacon (pagehide fires twice) is harmless.
    app.post_raw(&path, None, "text/plain;charset=UTF-8", json!({"token": bob}).to_string()).await.expect(204);
    assert_eq!(app.session(&s).await["ended_at"], ended["ended_at"]);
}

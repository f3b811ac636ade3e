//! A user can never read, change or receive events of another user's session;
//! admin endpoints need an API key; bad tokens are 401.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Every session endpoint, for session `id`, as (method, path, body).
fn session_endpoints(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/v1/sessions/{id}"), None),
        (Method::GET, format!("/v1/sessions/{id}/history"), None),
        (Method::POST, format!("/v1/sessions/{id}/heartbeat"), None),
        (Method::POST, format!("/v1/sessions/{id}/end"), Some(json!({}))),
        (Method::POST, format!("/v1/sessions/{id}/complete"), None),
        (Method::POST, format!("/v1/sessions/{id}/participants"), Some(json!({"name": "intruder"}))),
        (Method::POST, format!("/v1/sessions/{id}/participants/me/heartbeat"), None),
        (Method::DELETE, format!("/v1/sessions/{id}/participants/me"), None),
        (Method::POST, format!("/v1/sessions/{id}/invites"), Some(json!({}))),
    ]
}

#[tokio::test]
async fn another_users_session_is_404_everywhere() {
    let app = TestApp::start().await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let a =
        app.start_session(&alice, json!({"kind": "plain", "metadata": {"secret": "alice's"}})).await["session"].clone();
    let a_id = id_of(&a);
    let b_id = id_of(&app.start_session(&bob, json!({"kind": "plain"})).await["session"]);

    for (method, path, body) in session_endpoints(&a_id) {
        let r = app.call(method.clone(), &path, Some(&bob), body.clone()).await;
        assert_eq!(r.status.as_u16(), 404, "bob: {method} {path}: {}", r.text);
        // Exactly like a session that does not exist.
        let missing_path = path.replace(&a_id, "0190aaaa-0000-7000-8000-000000000000");
        let m = app.call(method.clone(), &missing_path, Some(&bob), body).await;
        assert_eq!(
            (m.status, m.body["title"].clone(), m.body["detail"].clone()),
            (r.status, r.body["title"].clone(), r.body["detail"].clone()),
            "{method} {path}"
        );
    }
    let beacon = app
        .post_raw(&format!("/v1/sessions/{a_id}/beacon"), None, "text/plain", json!({"token": bob}).to_string())
        .await;
    assert_eq!(beacon.status.as_u16(), 404, "beacon with bob's token: {}", beacon.text);
    // Acting for another user is refused.
    let r = app.post("/v1/sessions", Some(&bob), json!({"kind": "plain", "user_id": "alice"})).await;
    r.expect(403);

    // Nothing changed.
    let after = app.get(&format!("/v1/sessions/{a_id}"), Some(&alice)).await.expect(200).clone();
    assert_eq!(after["status"], "active");
    assert_eq!(after["participants"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["last_seen_at"], a["last_seen_at"], "bob's heartbeat must not count");

    // Listing.
    let listed = app.get("/v1/sessions", Some(&bob)).await.expect(200).clone();
    let ids: Vec<&str> = listed["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![b_id.as_str()]);
    let filtered = app.get("/v1/sessions?user_id=alice", Some(&bob)).await.expect(200).clone();
    assert_eq!(filtered["sessions"], json!([]));
    let own = app.get("/v1/sessions", Some(&alice)).await.expect(200).clone();
    let ids: Vec<&str> = own["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![a_id.as_str()]);
    let all = app.get("/v1/sessions", Some(API_KEY)).await.expect(200).clone();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 2, "the API key sees all");

    // An invite guest sees only its session.
    let inv = app.post(&format!("/v1/sessions/{a_id}/invites"), Some(&alice), json!({})).await.expect(201).clone();
    let join = app
        .post(&format!("/v1/invites/{}/join", inv["token"].as_str().unwrap()), None, json!({}))
        .await
        .expect(201)
        .clone();
    let guest = join["token"].as_str().unwrap();
    app.get(&format!("/v1/sessions/{a_id}"), Some(guest)).await.expect(200);
    app.get(&format!("/v1/sessions/{b_id}"), Some(guest)).await.expect(404);
    app.post_empty(&format!("/v1/sessions/{b_id}/heartbeat"), Some(guest)).await.expect(404);
}

#[tokio::test]
async fn another_users_events_are_never_delivered() {
    let app = TestApp::start().await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let mut bob_sse = app.sse(&bob, "", None).await;
    let mut bob_sse_q = app.sse_query_token(&bob).await;
    let mut bob_ws = app.ws(&bob).await;
    let mut alice_sse = app.sse(&alice, "", None).await;

    // Alice's lifecycle: start, join, invite guest, complete, end; another start and end.
    let a = id_of(&app.start_session(&alice, json!({"kind": "interview"})).await["session"]);
    app.post(&format!("/v1/sessions/{a}/participants"), Some(API_KEY), json!({"user_id": "carl"})).await.expect(201);
    app.post_empty(&format!("/v1/sessions/{a}/complete"), Some(&alice)).await.expect(200);
    app.post(&format!("/v1/sessions/{a}/end"), Some(&alice), json!({})).await.expect(200);
    let a2 = id_of(&app.start_session(&alice, json!({"kind": "plain"})).await["session"]);
    app.post(&format!("/v1/sessions/{a2}/end"), Some(API_KEY), json!({})).await.expect(200);

    // Then bob's own session: when its end arrives, everything published
    // before it has been delivered, so alice's events would have shown up.
    let b = id_of(&app.start_session(&bob, json!({"kind": "plain"})).await["session"]);
    app.post(&format!("/v1/sessions/{b}/end"), Some(&bob), json!({})).await.expect(200);

    for (name, stream) in [("SSE", &mut bob_sse), ("SSE ?token=", &mut bob_sse_q), ("WS", &mut bob_ws.events)] {
        stream.wait_event(ms(3000), "session.ended", &b).await;
        let lifecycle: Vec<&Event> = stream.seen.iter().filter(|e| e.event != "pong").collect();
        let types: Vec<&str> = lifecycle.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            types,
            vec!["session.started", "session.activated", "session.ended"],
            "{name}: {:?}",
            stream.summary()
        );
        assert!(lifecycle.iter().all(|e| e.session_id() == b), "{name} leaked: {:?}", stream.summary());
    }

    // Alice sees her own, and none of bob's.
    alice_sse.wait_event(ms(3000), "session.ended", &a2).await;
    assert!(alice_sse.seen.iter().any(|e| e.is("participant.joined", &a)));
    assert!(alice_sse.seen.iter().any(|e| e.is("session.completing", &a)));
    alice_sse.expect_none(ms(300), "bob's events", |e| e.session_id() == b).await;
    assert!(alice_sse.seen.iter().all(|e| e.session_id() != b));
}

#[tokio::test]
async fn admin_needs_api_key_and_bad_tokens_are_401() {
    let app = TestApp::start().await;
    let bob = user_token("bob");
    for (method, path) in
        [(Method::GET, "/v1/admin/health"), (Method::GET, "/v1/admin/cleanup"), (Method::POST, "/v1/admin/cleanup")]
    {
        let r = app.call(method.clone(), path, Some(&bob), None).await;
        assert_eq!(r.status.as_u16(), 403, "{method} {path} with a user token: {}", r.text);
        let r = app.call(method.clone(), path, Some(API_KEY), None).await;
        assert_eq!(r.status.as_u16(), 200, "{method} {path} with the API key: {}", r.text);
    }

    let s = id_of(&app.start_session(&bob, json!({"kind": "plain"})).await["session"]);
    let expired = expired_token("bob");
    let forged = forged_token("bob");
    let bad_tokens: Vec<(&str, Option<&str>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-token")),
        ("expired", Some(&expired)),
        ("forged", Some(&forged)),
        ("wrong API key", Some("test-api-key-012345678X")),
    ];
    let endpoints = [
        (Method::GET, "/v1/sessions".to_string()),
        (Method::POST, "/v1/sessions".to_string()),
        (Method::GET, format!("/v1/sessions/{s}")),
        (Method::POST, format!("/v1/sessions/{s}/heartbeat")),
        (Method::POST, format!("/v1/sessions/{s}/end")),
        (Method::GET, "/v1/events".to_string()),
        (Method::GET, "/v1/ws".to_string()),
        (Method::GET, "/v1/admin/health".to_string()),
    ];
    for (what, token) in &bad_tokens {
        for (method, path) in &endpoints {
            let body = (*method == Method::POST).then(|| json!({"kind": "plain"}));
            let r = app.call(method.clone(), path, *token, body).await;
            assert_eq!(r.status.as_u16(), 401, "{what} token: {method} {path}: {}", r.text);
        }
    }
    let r = app.get(&format!("/v1/sessions/{s}"), Some(&expired)).await;
    r.problem(401, &["expired"]);
    // ?token= works only where documented, and a bad one is 401 too.
    app.get(&format!("/v1/events?token={forged}"), None).await.expect(401);
    app.get(&format!("/v1/sessions/{s}?token={bob}"), None).await.expect(401);
    // Wrong scheme.
    let r = app
        .send(
            "GET",
            "/v1/sessions",
            app.req(Method::GET, "/v1/sessions", None).header("Authorization", format!("Basic {bob}")),
        )
        .await;
    r.expect(401);
    // The session is untouched by all that.
    assert_eq!(app.session(&s).await["status"], "active");
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let app = TestApp::start().await;
    let lena = user_token("lena");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(id_of(&app.start_session(&lena, json!({"kind": "plain"})).await["session"]));
    }
    let other = id_of(&app.start_for("leo", "plain").await);
    app.post(&format!("/v1/sessions/{}/end", ids[1]), Some(API_KEY), json!({"reason": "admin"})).await.expect(200);
    assert_eq!(app.session(&ids[1]).await["end_reason"], "admin");

    // Pages of 2 with the cursor: every session once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/sessions?limit=2&cursor={c}"),
            None => "/v1/sessions?limit=2".to_string(),
        };
        let page = app.get(&path, Some(&lena)).await.expect(200).clone();
        let sessions = page["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 2);
        seen.extend(sessions.iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "lena's sessions, each once, none of leo's ({other})");

    let ended = app.get("/v1/sessions?status=ended", Some(&lena)).await.expect(200).clone();
    assert_eq!(ended["sessions"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![ids[1].clone()]);
    let by_user = app.get("/v1/sessions?user_id=leo&kind=plain", Some(API_KEY)).await.expect(200).clone();
    assert_eq!(by_user["sessions"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![other]);
}

//! Lean heartbeats (issue 12): `Prefer: return=minimal` (RFC 7240) answers
//! `204` with the new deadline in `Tether-Expires-At` and
//! `Preference-Applied`, for the session and the participant heartbeat;
//! without it (or with another preference) the answer is the Session as
//! before. Every answer is checked against `/openapi.json`, whose 204 must
//! name both headers.

use crate::helpers::contract::Answer;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

/// A heartbeat POST with the given `Prefer` headers; the answer (checked
/// like every other) and its headers.
async fn beat(app: &TestApp, path: &str, token: &str, prefer: &[&str]) -> (Resp, reqwest::header::HeaderMap) {
    let mut b = app.req(Method::POST, path, Some(token));
    for p in prefer {
        b = b.header("Prefer", *p);
    }
    let r = b.send().await.unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
    let status = r.status();
    let headers = r.headers().clone();
    let content_type =
        headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let resp = Resp { status, content_type, text, body };
    check_answer("POST", path, &resp);
    let answer =
        Answer { status: status.as_u16(), content_type: &resp.content_type, text: &resp.text, body: &resp.body };
    app.contract().check("POST", path, &answer);
    (resp, headers)
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().expect("ASCII header"))
}

#[tokio::test]
async fn return_minimal_answers_204_with_the_new_deadline_in_a_header() {
    let app = TestApp::in_process().await;
    let idle = 800; // kinds.presence
    let s = app.start_for("bea", "presence").await;
    let id = id_of(&s);
    let bea = user_token("bea");
    let path = format!("/v1/sessions/{id}/heartbeat");

    app.advance(ms(300));
    let (r, h) = beat(&app, &path, &bea, &["return=minimal"]).await;
    r.expect(204);
    assert!(r.text.is_empty(), "a 204 has no body: {:?}", r.text);
    assert_eq!(header(&h, "preference-applied"), Some("return=minimal"));
    let expires = header(&h, "tether-expires-at").expect("Tether-Expires-At");
    assert_eq!(ts(&json!(expires)), app.now() + idle, "the heartbeat moved the deadline: {expires}");
    // Same format as the session's `expires_at`, and the same instant.
    let read = app.session(&id).await;
    assert_eq!(read["expires_at"], json!(expires), "the header is the session's expires_at: {read}");

    // The heartbeat counted: the session outlives its first deadline.
    app.advance(ms(idle as u64 - 1));
    assert_eq!(app.session(&id).await["status"], "active");

    // Preferences are a list, tokens are case-insensitive, values may be quoted,
    // and the header may repeat (RFC 7240 section 2).
    for prefer in [&["respond-async, RETURN=\"minimal\"; x=1"][..], &["wait=5", "return=minimal"]] {
        let (r, h) = beat(&app, &path, &bea, prefer).await;
        r.expect(204);
        assert_eq!(ts(&json!(header(&h, "tether-expires-at").unwrap())), app.now() + idle, "{prefer:?}");
    }

    // Without the preference, or with another one: the Session, as before.
    for prefer in [&[][..], &["return=representation"], &["return-minimal"]] {
        let (r, h) = beat(&app, &path, &bea, prefer).await;
        let body = r.expect(200);
        assert_eq!(body["id"], json!(id), "{prefer:?}: {body}");
        assert_eq!(ts(&body["expires_at"]), app.now() + idle);
        assert!(header(&h, "preference-applied").is_none(), "{prefer:?}");
        assert!(header(&h, "tether-expires-at").is_none(), "{prefer:?}");
    }
}

#[tokio::test]
async fn minimal_heartbeats_fail_as_full_ones_and_omit_a_deadline_there_is_none() {
    let app = TestApp::in_process().await;
    let ada = user_token("ada");

    // A session without any deadline: a 204 with no Tether-Expires-At.
    let job = app.start_session(&ada, json!({"kind": "job"})).await["session"].clone();
    assert_eq!(job["expires_at"], Value::Null, "{job}");
    let (r, h) = beat(&app, &format!("/v1/sessions/{}/heartbeat", id_of(&job)), &ada, &["return=minimal"]).await;
    r.expect(204);
    assert_eq!(header(&h, "preference-applied"), Some("return=minimal"));
    assert!(header(&h, "tether-expires-at").is_none(), "no deadline, no header");

    // An ended session: the same 410 with its end_reason; an unknown one 404;
    // another user's 404.
    let s = app.start_session(&ada, json!({"kind": "presence"})).await["session"].clone();
    let path = format!("/v1/sessions/{}/heartbeat", id_of(&s));
    let (r, _) = beat(&app, &path, &user_token("eve"), &["return=minimal"]).await;
    r.expect(404);
    app.advance(ms(800));
    app.session_until(&id_of(&s), "idle end", |s| s["status"] == "ended").await;
    let (r, h) = beat(&app, &path, &ada, &["return=minimal"]).await;
    assert_eq!(r.expect(410)["end_reason"], "idle_timeout");
    assert!(header(&h, "preference-applied").is_none());
    let (r, _) = beat(&app, "/v1/sessions/nope/heartbeat", &ada, &["return=minimal"]).await;
    r.expect(404);
}

#[tokio::test]
async fn the_participant_heartbeat_takes_return_minimal_too() {
    let app = TestApp::in_process().await;
    let idle = 800; // kinds.room: presence = "any"
    let room = app.start_session(&user_token("ann"), json!({"kind": "room"})).await["session"].clone();
    let id = id_of(&room);
    let bob = user_token("bob");
    // Another user joins through the backend (API key) or an invitation.
    app.post(&format!("/v1/sessions/{id}/participants"), Some(API_KEY), json!({"user_id": "bob"})).await.expect(201);
    let path = format!("/v1/sessions/{id}/participants/me/heartbeat");

    app.advance(ms(500));
    let (r, h) = beat(&app, &path, &bob, &["return=minimal"]).await;
    r.expect(204);
    assert_eq!(header(&h, "preference-applied"), Some("return=minimal"));
    let expires = header(&h, "tether-expires-at").expect("Tether-Expires-At");
    assert_eq!(ts(&json!(expires)), app.now() + idle, "bob's presence counts in a presence=any room");
    let read = app.session(&id).await;
    assert_eq!(read["expires_at"], json!(expires));
    let bob_seen = read["participants"].as_array().unwrap().iter().find(|p| p["id"] == "bob").unwrap().clone();
    assert_eq!(ts(&bob_seen["last_seen_at"]), app.now(), "{read}");

    let (r, _) = beat(&app, &path, &bob, &[]).await;
    assert_eq!(r.expect(200)["id"], json!(id));
    // An API key is no participant: 403 whatever it prefers.
    let (r, _) = beat(&app, &path, API_KEY, &["return=minimal"]).await;
    r.expect(403);
}

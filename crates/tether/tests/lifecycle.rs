//! Lifecycle extensions (contract section 10) against the real server: the
//! `session.expiring` warning `warn_before` ahead of a deadline, and
//! `POST /v1/sessions/{id}/revive` within `revive_window`. The server runs in
//! process on a manual clock, so every instant is exact and nothing sleeps for
//! a deadline; every answer and event is checked against `/openapi.json`.
//!
//! "Nothing happened before instant T" is shown with a sentinel: time is
//! moved to T − 1 ms, then a request publishes an event of its own. A change
//! applies everything already due before its operation (and the journal
//! publishes in order), so a warning or end due by then would come first.

mod support;

use serde_json::{json, Value};
use support::*;

const LIFECYCLE_KINDS: &str = r#"
[kinds.warned]
idle_timeout = "10s"
warn_before = "3s"

[kinds.revivable]
per_user = "reject"
idle_timeout = "10s"
max_duration = "1h"
revive_window = "1m"

[kinds.swapped]
per_user = "replace"
idle_timeout = "10s"
revive_window = "1m"

[kinds.unrevivable]
idle_timeout = "10s"
"#;

async fn app() -> TestApp {
    TestApp::in_process_with_config(&format!("{}{LIFECYCLE_KINDS}", config_text())).await
}

/// Publishes a `session.started` of a fresh `plain` session and waits for it,
/// failing if an event matching `unwanted` comes first.
async fn sentinel(app: &TestApp, events: &mut EventStream, what: &str, unwanted: impl Fn(&Event) -> bool) {
    let marker = id_of(&app.start_for("sentinel", "plain").await);
    let waiting_for = format!("the sentinel, with no {what} before it");
    events
        .wait_for(ms(5000), &waiting_for, |e| {
            assert!(!unwanted(e), "{what} came too early: {}", e.data);
            e.is("session.started", &marker)
        })
        .await;
}

fn expiring_of(id: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e: &Event| e.is("session.expiring", id)
}

async fn revive(app: &TestApp, id: &str, token: &str, body: Option<Value>) -> Resp {
    let path = format!("/v1/sessions/{id}/revive");
    match body {
        Some(b) => app.post(&path, Some(token), b).await,
        None => app.post_empty(&path, Some(token)).await,
    }
}

// ---------------------------------------------------------------- session.expiring

#[tokio::test]
async fn expiring_comes_exactly_warn_before_the_deadline_once_and_a_heartbeat_moves_it() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;
    let owner = user_token("wendy");
    let mut mine = app.sse(&owner, "", None).await;
    let t0 = app.now();
    let s = app.start_session(&owner, json!({"kind": "warned"})).await["session"].clone();
    let id = id_of(&s);
    assert_eq!(ts(&s["expires_at"]), t0 + 10_000);

    // Not one millisecond early.
    app.advance_to(t0 + 7_000 - 1);
    sentinel(&app, &mut all, "session.expiring", expiring_of(&id)).await;
    app.advance_to(t0 + 7_000);
    let w = all.wait_event(ms(5000), "session.expiring", &id).await;
    assert_eq!(ts(&w.data["at"]), t0 + 7_000);
    assert_eq!(ts(&w.data["deadline"]), t0 + 10_000);
    assert_eq!(w.data["reason"], "idle_timeout");
    assert_eq!(w.data["session"]["status"], "active");
    assert_eq!(ts(&w.data["session"]["expires_at"]), t0 + 10_000, "the warning does not move the deadline");
    // The owner's stream carries it too (a page can ask "still there?").
    let own = mine.wait_event(ms(5000), "session.expiring", &id).await;
    assert_eq!(own.data["deadline"], w.data["deadline"]);

    // Once per deadline.
    app.advance_to(t0 + 8_000);
    sentinel(&app, &mut all, "second session.expiring", expiring_of(&id)).await;

    // "Still there?" — a heartbeat moves the deadline: no end at the old one...
    let hb = app.post_empty(&format!("/v1/sessions/{id}/heartbeat"), Some(&owner)).await;
    assert_eq!(ts(&hb.expect(200)["expires_at"]), t0 + 18_000);
    app.advance_to(t0 + 10_000);
    let ended_or_warned = |e: &Event| e.is("session.ended", &id) || e.is("session.expiring", &id);
    sentinel(&app, &mut all, "end or warning at the old deadline", ended_or_warned).await;
    assert_eq!(app.session(&id).await["status"], "active");
    // ...and a new warning warn_before ahead of the new one, exactly.
    app.advance_to(t0 + 15_000 - 1);
    sentinel(&app, &mut all, "the new warning", expiring_of(&id)).await;
    app.advance_to(t0 + 15_000);
    let w2 = all.wait_event(ms(5000), "session.expiring", &id).await;
    assert_eq!((ts(&w2.data["at"]), ts(&w2.data["deadline"])), (t0 + 15_000, t0 + 18_000));
    assert!(w2.id > w.id);

    // Left alone, it ends at the deadline it was warned of.
    app.advance_to(t0 + 18_000);
    let end = all.wait_event(ms(5000), "session.ended", &id).await;
    assert_eq!(end.reason(), "idle_timeout");
    assert_eq!(ts(&end.data["session"]["ended_at"]), t0 + 18_000);
    let warnings = all.seen.iter().filter(|e| e.is("session.expiring", &id)).count();
    assert_eq!(warnings, 2, "one per deadline: {:?}", all.summary());
}

#[tokio::test]
async fn the_kinds_endpoint_reports_warn_before_and_revive_window() {
    let app = app().await;
    let kinds = app.get("/v1/kinds", Some(API_KEY)).await;
    let kinds = kinds.expect(200)["kinds"].as_array().unwrap().clone();
    let kind = |name: &str| kinds.iter().find(|k| k["name"] == name).unwrap_or_else(|| panic!("no {name}")).clone();
    assert_eq!(
        (kind("warned")["warn_before_ms"].clone(), kind("warned")["revive_window_ms"].clone()),
        (json!(3000), Value::Null)
    );
    assert_eq!(kind("revivable")["revive_window_ms"], 60_000);
    assert_eq!(kind("default")["warn_before_ms"], Value::Null);
}

#[tokio::test]
async fn kinds_without_warn_before_publish_no_warning() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;
    let t0 = app.now();
    let id = id_of(&app.start_for("nora", "unrevivable").await);
    app.advance_to(t0 + 10_000);
    let end = all.wait_event(ms(5000), "session.ended", &id).await;
    assert_eq!(end.reason(), "idle_timeout");
    assert!(!all.seen.iter().any(|e| e.event == "session.expiring"), "{:?}", all.summary());
}

// ---------------------------------------------------------------- revive

/// Starts a `kind` session for `user` (with its own token) and lets it end
/// `idle_timeout` 10 s later; returns (id, ended_at).
async fn ended_idle(app: &TestApp, events: &mut EventStream, user: &str, kind: &str) -> (String, i64) {
    let t = app.now();
    let s = app.start_session(&user_token(user), json!({"kind": kind})).await["session"].clone();
    let id = id_of(&s);
    app.advance_to(t + 10_000);
    let end = events.wait_event(ms(5000), "session.ended", &id).await;
    assert_eq!(end.reason(), "idle_timeout");
    (id, t + 10_000)
}

#[tokio::test]
async fn revive_within_the_window_brings_the_session_back_with_deadlines_counted_from_now() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;
    let owner = user_token("rose");
    let (id, ended_at) = ended_idle(&app, &mut all, "rose", "revivable").await;
    let before = app.session(&id).await;
    assert_eq!(before["status"], "ended");

    // The last millisecond of the window.
    let now = app.advance_to(ended_at + 60_000 - 1);
    let r = revive(&app, &id, &owner, None).await;
    let s = r.expect(200);
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["status"], "active");
    assert_eq!((s["kind"].clone(), s["user_id"].clone()), (json!("revivable"), json!("rose")));
    assert_eq!(s["created_at"], before["created_at"], "the same session, not a new one");
    assert_eq!((ts(&s["activated_at"]), ts(&s["last_seen_at"])), (now, now));
    assert_eq!((s["ended_at"].clone(), s["end_reason"].clone()), (Value::Null, Value::Null));
    assert_eq!(ts(&s["expires_at"]), now + 10_000, "idle counts from the revive");
    assert_eq!(s["participants"].as_array().unwrap().len(), 1);
    assert_eq!(s["participants"][0]["id"], "rose");
    assert_eq!(s["participants"][0]["left_at"], Value::Null);
    let revived = all.wait_event(ms(5000), "session.revived", &id).await;
    assert_eq!(revived.data["session"], *s);
    assert_eq!(app.session(&id).await, *s, "reads agree: it is live again");

    // Revived sessions count as live for listings and per_user.
    let live = app.get("/v1/sessions?status=live&user_id=rose", Some(API_KEY)).await;
    assert_eq!(live.expect(200)["sessions"][0]["id"], id.as_str());
    let blocked = app.post("/v1/sessions", Some(&owner), json!({"kind": "revivable"})).await;
    assert_eq!(blocked.problem(409, &[])["blocking_session"]["id"], id.as_str());

    // A second revive (a retry) finds it live: 200, unchanged, no second event.
    let again = revive(&app, &id, &owner, Some(json!({}))).await;
    assert_eq!(again.expect(200), s);

    // Its deadlines count from the revive: it ends idle 10 s after it, not before.
    app.advance_to(now + 10_000 - 1);
    sentinel(&app, &mut all, "the revived session's end", |e| e.is("session.ended", &id)).await;
    app.advance_to(now + 10_000);
    let end = all.wait_event(ms(5000), "session.ended", &id).await;
    assert_eq!(end.reason(), "idle_timeout");
    assert_eq!(all.seen.iter().filter(|e| e.is("session.revived", &id)).count(), 1);
}

#[tokio::test]
async fn revive_is_refused_outside_the_window_after_other_reasons_and_without_a_window() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;

    // The window is [end, end + revive_window): at its very end, 409.
    let (late, ended_at) = ended_idle(&app, &mut all, "lou", "revivable").await;
    app.advance_to(ended_at + 60_000);
    let r = revive(&app, &late, &user_token("lou"), None).await;
    r.problem(409, &["revive window", "closed"]);
    assert_eq!(app.session(&late).await["status"], "ended", "a refusal changes nothing");

    // Ended by its user: not revivable.
    let kim = user_token("kim");
    let id = id_of(&app.start_session(&kim, json!({"kind": "revivable"})).await["session"]);
    app.post(&format!("/v1/sessions/{id}/end"), Some(&kim), json!({})).await.expect(200);
    revive(&app, &id, &kim, None).await.problem(409, &["end reason is ended", "idle_timeout or disconnected"]);

    // A kind without revive_window.
    let (id, _) = ended_idle(&app, &mut all, "nat", "unrevivable").await;
    revive(&app, &id, &user_token("nat"), None).await.problem(409, &["unrevivable", "revive_window"]);

    assert!(!all.seen.iter().any(|e| e.event == "session.revived"), "{:?}", all.summary());
}

#[tokio::test]
async fn revive_is_subject_to_per_user_like_a_start() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;

    // reject: the live session blocks the revive (409 with it); takeover ends it.
    let ria = user_token("ria");
    let (old, _) = ended_idle(&app, &mut all, "ria", "revivable").await;
    let new = id_of(&app.start_session(&ria, json!({"kind": "revivable"})).await["session"]);
    let r = revive(&app, &old, &ria, None).await;
    let problem = r.problem(409, &["already has a live revivable session", "takeover"]);
    assert_eq!(problem["blocking_session"]["id"], new.as_str());
    assert_eq!(app.session(&old).await["status"], "ended");
    let r = revive(&app, &old, &ria, Some(json!({"on_conflict": "takeover"}))).await;
    assert_eq!(r.expect(200)["status"], "active");
    let taken = app.session(&new).await;
    assert_eq!((taken["status"].clone(), taken["end_reason"].clone()), (json!("ended"), json!("taken_over")));
    let end = all.wait_event(ms(5000), "session.ended", &new).await;
    assert_eq!(end.reason(), "taken_over");
    all.wait_event(ms(5000), "session.revived", &old).await;

    // replace: the live one is superseded.
    let sam = user_token("sam");
    let (old, _) = ended_idle(&app, &mut all, "sam", "swapped").await;
    let new = id_of(&app.start_session(&sam, json!({"kind": "swapped"})).await["session"]);
    assert_eq!(revive(&app, &old, &sam, None).await.expect(200)["status"], "active");
    assert_eq!(app.session(&new).await["end_reason"], "superseded");

    // on_conflict names only "takeover".
    let r = revive(&app, &old, &sam, Some(json!({"on_conflict": "force"}))).await;
    assert_eq!(r.problem(422, &["on_conflict"])["field"], "on_conflict");
}

#[tokio::test]
async fn only_the_owner_or_an_api_key_may_revive() {
    let app = app().await;
    let mut all = app.sse(API_KEY, "", None).await;
    let (id, _) = ended_idle(&app, &mut all, "olga", "revivable").await;

    // Strangers see nothing: 404, as for every session route; a missing id is the same.
    revive(&app, &id, &user_token("mallory"), None).await.expect(404);
    revive(&app, "0192f3c4-5b6a-7c8d-9e0f-000000000000", &user_token("olga"), None).await.expect(404);

    // The backend may revive any session.
    let s = revive(&app, &id, API_KEY, None).await;
    assert_eq!(s.expect(200)["user_id"], "olga");

    // A participant who is not the owner sees it but may not bring it back.
    let t = app.now();
    let id = id_of(&app.start_for("otto", "revivable").await);
    app.post(&format!("/v1/sessions/{id}/participants"), Some(API_KEY), json!({"user_id": "pia"})).await.expect(201);
    app.advance_to(t + 10_000);
    all.wait_event(ms(5000), "session.ended", &id).await;
    revive(&app, &id, &user_token("pia"), None).await.problem(403, &["owner"]);
    let s = revive(&app, &id, &user_token("otto"), None).await;
    let participants: Vec<&str> =
        s.expect(200)["participants"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(participants, ["otto", "pia"], "the same participants");
}

// ---------------------------------------------------------------- durability

/// A `200` from revive means the revived session is on disk: after `kill -9`
/// it is live again (the binary on its SQLite file, on the wall clock; the
/// test waits for the end event, never for time). Idle 2 s: after the
/// restart the session has 2 s again, ample for the two reads below.
#[tokio::test]
async fn a_revive_survives_kill_9() {
    let config = format!("{}\n[kinds.blink]\nidle_timeout = \"2s\"\nrevive_window = \"10m\"\n", config_text());
    let mut app = TestApp::start_with_config(&config).await;
    let mut all = app.sse(API_KEY, "?kind=blink", None).await;
    let token = user_token("kai");
    let id = id_of(&app.start_session(&token, json!({"kind": "blink"})).await["session"]);
    assert_eq!(all.wait_event(ms(10_000), "session.ended", &id).await.reason(), "idle_timeout");
    let revived = revive(&app, &id, &token, None).await;
    assert_eq!(revived.expect(200)["status"], "active");
    drop(all);

    app.kill9();
    app.restart().await;
    let s = app.session(&id).await;
    assert_eq!((s["status"].clone(), s["end_reason"].clone()), (json!("active"), Value::Null), "{s}");
    // Live in the engine too: a heartbeat answers 200, not 410.
    app.post_empty(&format!("/v1/sessions/{id}/heartbeat"), Some(&token)).await.expect(200);
}

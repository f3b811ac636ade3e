//! `POST /v1/sessions/batch` (extension): many sessions in one request and
//! one commit, each item as `POST /v1/sessions` would treat it.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_batch_starts_each_session_as_a_single_start_would() {
    let app = TestApp::start().await;
    let mut events = app.sse(API_KEY, "", None).await;
    let held = id_of(&app.start_for("rex", "interview").await);
    let body = json!({"sessions": [
        {"kind": "plain", "user_id": "b1", "metadata": {"room": 1}},
        {"kind": "interview", "user_id": "rex"},
        {"kind": "interview", "user_id": "ria"},
        {"kind": "interview", "user_id": "ria"},
        {"kind": "swipe", "user_id": "b2"},
    ]});
    let r = app.post("/v1/sessions/batch", Some(API_KEY), body).await.expect(200).clone();
    let results = r["results"].as_array().unwrap();
    let statuses: Vec<u64> = results.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    // interview is per_user = "reject": rex already holds one, and the batch's second ria conflicts with its first.
    assert_eq!(statuses, [201, 409, 201, 409, 201], "{r}");
    assert_eq!(results[0]["session"]["metadata"]["room"], 1);
    assert_eq!(results[1]["problem"]["blocking_session"]["id"], held.as_str());
    assert_eq!(results[3]["problem"]["blocking_session"]["id"], results[2]["session"]["id"]);
    // Started sessions are real: readable, and their events published.
    for i in [0, 2, 4] {
        let id = results[i]["session"]["id"].as_str().unwrap();
        assert_eq!(app.session(id).await["status"], "active");
        events.wait_event(ms(3000), "session.started", id).await;
    }

    // A malformed item refuses the whole batch, naming it.
    let r = app
        .post(
            "/v1/sessions/batch",
            Some(API_KEY),
            json!({"sessions": [{"kind": "plain", "user_id": "ok"}, {"kind": "nope", "user_id": "x"}]}),
        )
        .await;
    r.problem(422, &["sessions[1]"]);
    assert_eq!(r.body["field"], "sessions[1].kind", "{}", r.text);
    let listed = app.get("/v1/sessions?user_id=ok", Some(API_KEY)).await.expect(200).clone();
    assert_eq!(listed["sessions"], json!([]), "nothing of a refused batch starts");
    // Empty, too large, another user's id.
    app.post("/v1/sessions/batch", Some(API_KEY), json!({"sessions": []})).await.problem(422, &["sessions"]);
    let many: Vec<_> = (0..1001).map(|i| json!({"kind": "plain", "user_id": format!("m{i}")})).collect();
    let r = app.post("/v1/sessions/batch", Some(API_KEY), json!({"sessions": many})).await;
    assert!(matches!(r.status.as_u16(), 413 | 422), "{}", r.text);
    let r = app
        .post(
            "/v1/sessions/batch",
            Some(&user_token("uma")),
            json!({"sessions": [{"kind": "plain", "user_id": "zed"}]}),
        )
        .await;
    r.expect(403);
    // A user starts its own.
    let r = app.post("/v1/sessions/batch", Some(&user_token("uma")), json!({"sessions": [{"kind": "plain"}]})).await;
    assert_eq!(r.expect(200)["results"][0]["session"]["user_id"], "uma");
}

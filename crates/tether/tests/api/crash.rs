//! `kill -9` and restart on the same SQLite file: every acknowledged session
//! and its history survive; idle deadlines are re-granted from the restart;
//! absolute deadlines keep their times.

use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test]
async fn sigkill_restart_keeps_sessions_and_regrants_idle() {
    if cluster_mode().is_some() {
        // Restarting one process is a single node's story; the cluster suite kills nodes itself.
        return;
    }
    let mut app = TestApp::start().await;

    // History: ended sessions with different reasons.
    let ended = app.start_for("u-ended", "plain").await;
    app.post(&format!("/v1/sessions/{}/end", id_of(&ended)), Some(API_KEY), json!({"reason": "done"}))
        .await
        .expect(200);
    let old_swipe = app.start_for("u-swipe", "swipe").await;
    let new_swipe = app.start_for("u-swipe", "swipe").await;
    let parent = app.start_for("u-parent", "job").await;
    let child = app
        .start_session(API_KEY, json!({"kind": "chat", "user_id": "u-parent", "parent_id": id_of(&parent)}))
        .await["session"]
        .clone();
    app.post(&format!("/v1/sessions/{}/end", id_of(&parent)), Some(API_KEY), json!({})).await.expect(200);
    let another = app.start_for("u-another", "plain").await;

    // Live sessions, acknowledged one after the other right up to the kill.
    let mut live = Vec::new();
    for i in 0..15 {
        let s = app
            .start_session(API_KEY, json!({"kind": "plain", "user_id": format!("u{i}"), "metadata": {"n": i}}))
            .await;
        live.push(s["session"].clone());
    }
    let waiting = app.start_for("u-request", "request").await; // waiting_timeout 700ms
    let idle = app.start_for("u-idle", "brief").await; // idle_timeout 1s
    let capped = app.start_for("u-capped", "capped").await; // max_duration 3s
    let joined = app
        .post(
            &format!("/v1/sessions/{}/participants", id_of(&live[0])),
            Some(API_KEY),
            json!({"user_id": "guest", "name": "G"}),
        )
        .await;
    live[0] = joined.expect(201).clone();
    let invite = app
        .post(&format!("/v1/sessions/{}/invites", id_of(&live[1])), Some(API_KEY), json!({}))
        .await
        .expect(201)
        .clone();
    let last = app.start_for("u-last", "plain").await;
    live.push(last);

    // Snapshots of everything that ended (what GET shows now).
    let mut history: Vec<Value> = Vec::new();
    for s in [&ended, &old_swipe, &parent, &child] {
        history.push(app.session(&id_of(s)).await);
    }
    assert_eq!(history[1]["end_reason"], "superseded");
    assert_eq!(history[3]["end_reason"], "parent_ended");

    app.kill9();

    // Down past the idle deadline (and the waiting one).
    let idle_deadline = ts(&idle["expires_at"]);
    assert_eq!(idle_deadline - ts(&idle["created_at"]), 1000);
    sleep_until_ms(idle_deadline.max(ts(&waiting["expires_at"])) + 150).await;
    let restart_at = now_ms();
    app.restart().await;
    // Replays every event published since the restart.
    let mut events = app.sse(API_KEY, "", Some(0)).await;

    for h in &history {
        let now = app.session(&id_of(h)).await;
        assert_eq!(&now, h, "ended history survives unchanged");
    }
    for s in live.iter().chain([&new_swipe, &another]) {
        let now = app.session(&id_of(s)).await;
        for field in [
            "id",
            "kind",
            "user_id",
            "status",
            "created_at",
            "activated_at",
            "metadata",
            "parent_id",
            "ended_at",
            "end_reason",
        ] {
            assert_eq!(now[field], s[field], "{field} of {}", id_of(s));
        }
        assert_eq!(now["participants"].as_array().unwrap().len(), s["participants"].as_array().unwrap().len(), "{now}");
    }
    // The invite still works.
    app.post(&format!("/v1/invites/{}/join", invite["token"].as_str().unwrap()), None, json!({})).await.expect(201);

    // The idle session is not ended at start: its idle timeout counts again from the restart.
    let idle_now = app.session(&id_of(&idle)).await;
    assert_eq!(idle_now["status"], "active", "ended at once after restart: {idle_now}");
    assert!(ts(&idle_now["expires_at"]) >= restart_at + 1000 - 20, "re-granted idle deadline: {idle_now}");
    // The absolute deadline keeps its original time.
    let capped_now = app.session(&id_of(&capped)).await;
    assert_eq!(capped_now["status"], "active");
    assert_eq!(capped_now["expires_at"], capped["expires_at"], "max_duration keeps its time");

    // The waiting request was past its absolute deadline: it ends at once, with its real reason.
    let w = events.wait_event(ms(2000), "session.ended", &id_of(&waiting)).await;
    assert_eq!(w.reason(), "waiting_timeout");

    let e = events.wait_event(ms(4000), "session.ended", &id_of(&idle)).await;
    assert_eq!(e.reason(), "idle_timeout");
    let ended_at = ts(&e.data["session"]["ended_at"]);
    assert!(
        ended_at - restart_at >= 1000 - 50,
        "ended {} ms after restart, before its idle timeout passed again",
        ended_at - restart_at
    );
    assert!(ended_at - app.spawned_at <= 1000 + 1500, "ended {} ms after restart", ended_at - app.spawned_at);

    let c = events.wait_event(ms(4000), "session.ended", &id_of(&capped)).await;
    assert_eq!(c.reason(), "max_duration");
    let late = ts(&c.data["session"]["ended_at"]) - ts(&capped["expires_at"]);
    assert!((0..=150).contains(&late), "max_duration ended {late} ms after its original deadline");

    // And the live ones are still live.
    assert_eq!(app.session(&id_of(&live[3])).await["status"], "active");
}

/// A second crash right after acknowledged writes, with a burst of concurrent
/// starts: every 201 is on disk.
#[tokio::test]
async fn every_acknowledged_start_survives_sigkill() {
    if cluster_mode().is_some() {
        // Restarting one process is a single node's story; the cluster suite kills nodes itself.
        return;
    }
    let mut app = TestApp::start().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url("/v1/sessions");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(API_KEY)
                .json(&json!({"kind": "plain", "user_id": format!("burst{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            r.json::<Value>().await.unwrap()["session"]["id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    app.kill9();
    app.restart().await;
    for id in &ids {
        assert_eq!(app.session(id).await["status"], "active");
    }
    let listed = app.get("/v1/sessions?kind=plain&limit=1000", Some(API_KEY)).await.expect(200).clone();
    assert_eq!(listed["sessions"].as_array().unwrap().len(), ids.len());
}

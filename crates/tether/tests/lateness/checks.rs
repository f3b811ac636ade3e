//! A deadline-driven end is published within 100 ms of the deadline: measured
//! from each session's `expires_at` to the SSE client receiving its end.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashMap;

#[tokio::test]
async fn deadline_to_sse_receipt_within_100ms() {
    let app = TestApp::start().await;
    let mut events = app.sse(API_KEY, "?kind=late", None).await;
    // Sessions with idle deadlines (400ms), spread over the time it takes to start them.
    let mut deadlines = HashMap::new();
    for i in 0..25 {
        let s =
            app.start_session(API_KEY, json!({"kind": "late", "user_id": format!("late{i}")})).await["session"].clone();
        deadlines.insert(id_of(&s), ts(&s["expires_at"]));
    }
    // A few heartbeats move deadlines; the new expires_at is the one that counts.
    let beaten: Vec<String> = deadlines.keys().take(5).cloned().collect();
    for id in beaten {
        let s = app.post_empty(&format!("/v1/sessions/{id}/heartbeat"), Some(API_KEY)).await.expect(200).clone();
        assert!(ts(&s["expires_at"]) >= deadlines[&id], "a heartbeat never moves the deadline earlier: {s}");
        deadlines.insert(id, ts(&s["expires_at"]));
    }

    let mut lateness = Vec::new();
    while lateness.len() < deadlines.len() {
        let e = events.wait_for(ms(3000), "the next idle end", |e| e.event == "session.ended").await;
        assert_eq!(e.reason(), "idle_timeout");
        let deadline = deadlines[e.session_id()];
        let late = e.received_at - deadline;
        assert!(late >= -2, "{} ended {} ms before its deadline", e.session_id(), -late);
        assert!(ts(&e.data["session"]["ended_at"]) >= deadline, "ended_at before the deadline: {}", e.data);
        lateness.push(late);
    }
    lateness.sort();
    let max = *lateness.last().unwrap();
    eprintln!("deadline -> SSE receipt lateness (ms): p50 {} max {max}: {lateness:?}", lateness[lateness.len() / 2]);
    assert!(max <= 100, "a deadline-driven end reached the SSE client {max} ms after its deadline: {lateness:?}");
}

//! Continuous matching, calls and signaling (CONTRACT §6, issue 3), end to
//! end over HTTP, SSE and WebSocket with a real SQLite file: the real
//! `tether` binary where a process matters (kill -9), an in-process server
//! on a manual clock wherever a deadline does (call timers, waiting and
//! decision timeouts, disconnect grace), so those advance time instead of
//! sleeping.
//!
//! Pairing happens inside the request that makes a user free (entering the
//! pool, a decision, a cancelled call), so "not paired" is checked right
//! after that request with `GET /v1/matching/next`, without waiting. Events
//! are awaited, never slept for; a read applies whatever is due before it
//! answers, so right after the clock moves a read shows the deadline's effect.

mod support;

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string()
}

#[tokio::test]
async fn two_users_are_paired_and_both_told() {
    let app = TestApp::start().await;
    app.profile("alice", 30, &["Chess", "jazz"]).await;
    app.profile("bob", 32, &["jazz", "hiking"]).await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_sse = app.sse(&bob, "", None).await;
    let mut backend = app.sse(API_KEY, "?kind=call", None).await;

    let alice_session = app.enter_as(&alice, json!({"min_age": 25, "max_age": 40})).await;
    let session = app.session(&alice_session).await;
    assert_eq!(session["kind"], "matching");
    assert_eq!(session["user_id"], "alice");
    assert_eq!(session["status"], "active");
    // Alone in the pool.
    app.assert_waiting(&alice_session, "alice").await;

    let bob_session = app.enter_as(&bob, json!({"min_age": 25, "max_age": 40})).await;
    let fa = alice_ws.events.wait_for(WAIT, "match.found for alice", |e| e.event == "match.found").await;
    let fb = bob_sse.wait_for(WAIT, "match.found for bob", |e| e.event == "match.found").await;
    let call = call_of(&fa);
    assert_eq!(call_of(&fb), call, "both are told about the same call");
    assert_eq!(fa.data["at"], fb.data["at"], "both are told at once");
    assert_eq!(fa.session_id(), call);
    assert_eq!(fa.data["session"]["kind"], "call");
    assert_eq!(fa.data["session"]["status"], "waiting");
    assert_eq!(fa.data["session"]["user_id"], "alice", "the call belongs to the user who waited longer");

    let partner = &fa.data["match"]["partner"];
    assert_eq!(partner["user_id"], "bob");
    assert_eq!(partner["name"], "Bob");
    assert_eq!(partner["age"], 32);
    assert_eq!(partner["bio"], "I am bob");
    assert_eq!(partner["interests"], json!(["jazz", "hiking"]));
    assert_eq!(partner_of(&fb), "alice");
    assert_eq!(fb.data["match"]["partner"]["interests"], json!(["Chess", "jazz"]));
    let score = fa.data["match"]["compatibility_score"].as_f64().expect("compatibility_score");
    assert!((0.0..=1.0).contains(&score), "score {score}");
    assert_eq!(fb.data["match"]["compatibility_score"], fa.data["match"]["compatibility_score"]);

    // The backend's stream sees both notifications.
    let mut told = HashSet::new();
    while told.len() < 2 {
        let e = backend.wait_for(WAIT, "match.found on the backend stream", |e| e.event == "match.found").await;
        assert_eq!(call_of(&e), call);
        told.insert(partner_of(&e));
    }

    // Polling clients see the same match (with their own tokens).
    for (token, session, other) in [(&alice, &alice_session, "bob"), (&bob, &bob_session, "alice")] {
        let n = app.get(&format!("/v1/matching/next?session_id={session}"), Some(token)).await;
        let n = n.expect(200);
        assert_eq!(n["match_found"], true, "{n}");
        assert_eq!(n["match"]["call_id"], call.as_str());
        assert_eq!(n["match"]["partner"]["user_id"], other);
    }
    // Someone else's matching session is not there for bob.
    app.get(&format!("/v1/matching/next?session_id={alice_session}"), Some(&bob)).await.expect(404);

    // Both may read the call; nobody has joined yet; an outsider gets 404.
    for token in [&alice, &bob] {
        let c = app.get(&format!("/v1/calls/{call}"), Some(token)).await;
        let c = c.expect(200);
        assert_eq!(c["kind"], "call");
        assert_eq!(c["status"], "waiting");
        assert_eq!(c["participants"], json!([]));
    }
    app.get(&format!("/v1/calls/{call}"), Some(&user_token("mallory"))).await.expect(404);
}

#[tokio::test]
async fn the_newcomer_gets_the_best_of_several_waiting_users() {
    let app = TestApp::start().await;
    // Three waiting users who cannot pair with each other: each wants only
    // 40-year-olds and none of them is 40.
    app.profile("low", 20, &["chess"]).await;
    app.profile("mid", 21, &["chess", "jazz"]).await;
    app.profile("best", 22, &["chess", "jazz", "hiking"]).await;
    let mut waiting = HashMap::new();
    // The best candidate enters last: the choice is not by waiting time.
    for user in ["low", "mid", "best"] {
        waiting.insert(user, app.enter(user, prefs(40, 40, &[])).await);
    }
    for (user, session) in &waiting {
        app.assert_waiting(session, user).await;
    }

    // Newcomers compatible with all three, wanting chess, jazz, hiking, sushi.
    let wants = ["chess", "jazz", "hiking", "sushi"];
    let mut got = Vec::new();
    for newcomer in ["n1", "n2", "n3"] {
        app.profile(newcomer, 40, &["chess", "jazz", "hiking"]).await;
        let session = app.enter(newcomer, prefs(18, 99, &wants)).await;
        let n = app.next(&session).await;
        assert_eq!(n["match_found"], true, "{newcomer}: {n}");
        got.push((s(&n["match"]["partner"]["user_id"]), n["match"]["compatibility_score"].as_f64().unwrap()));
    }
    // Scores (personality weight 0): (wanted∩theirs / |wanted| + Jaccard(theirs, mine)) / 2.
    let expected = [
        ("best", (3.0 / 4.0 + 1.0) / 2.0),
        ("mid", (2.0 / 4.0 + 2.0 / 3.0) / 2.0),
        ("low", (1.0 / 4.0 + 1.0 / 3.0) / 2.0),
    ];
    for ((user, score), (want_user, want_score)) in got.iter().zip(expected) {
        assert_eq!(user, want_user, "newcomers should get the best remaining candidate: {got:?}");
        assert!((score - want_score).abs() < 0.002, "{user}: score {score}, expected {want_score}");
    }
}

#[tokio::test]
async fn an_out_of_range_user_is_never_paired() {
    let app = TestApp::start().await;
    let x = {
        app.profile("x", 30, &["a"]).await;
        app.enter("x", prefs(25, 35, &[])).await
    };
    // y accepts x, but x does not accept y (50 > 35): the waiting side's range rules y out.
    app.profile("y", 50, &["a"]).await;
    let y = app.enter("y", prefs(18, 120, &[])).await;
    app.assert_waiting(&x, "x").await;
    app.assert_waiting(&y, "y").await;

    // x would accept z, but z does not accept x (30 < 45): the newcomer's range rules x out.
    // z and y accept each other: they pair.
    app.profile("z", 30, &["a"]).await;
    let z = app.enter("z", prefs(45, 60, &[])).await;
    assert_eq!(app.current_call(&y).await, app.current_call(&z).await, "y and z accept each other");
    assert!(app.current_call(&z).await.is_some());
    app.assert_waiting(&x, "x").await;

    // Just outside x's range on either side: never paired with x.
    app.profile("u", 24, &["a"]).await;
    let u = app.enter("u", prefs(30, 30, &[])).await;
    app.profile("v", 36, &["a"]).await;
    let v = app.enter("v", prefs(30, 30, &[])).await;
    for (session, who) in [(&x, "x"), (&u, "u"), (&v, "v")] {
        app.assert_waiting(session, who).await;
    }

    // Exactly on both edges: paired with x (ranges are inclusive).
    app.profile("w", 35, &["a"]).await;
    let w = app.enter("w", prefs(30, 30, &[])).await;
    let n = app.next(&w).await;
    assert_eq!(n["match"]["partner"]["user_id"], "x", "{n}");
    app.assert_waiting(&u, "u").await;
    app.assert_waiting(&v, "v").await;
}

#[tokio::test]
async fn signals_arrive_in_order_to_the_other_side_only() {
    let app = TestApp::start().await;
    let p = app.pair_up("alice", "bob").await;
    let call = p.call.clone();
    let (alice, bob, carol) = (user_token("alice"), user_token("bob"), user_token("carol"));
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_ws = app.ws(&bob).await;
    let signals = format!("/v1/calls/{call}/signals");

    // Seven signals from alice: HTTP, then WebSocket, then HTTP again.
    let kinds =
        ["offer", "ice-candidate", "ice-candidate", "ice-candidate", "ice-candidate", "ice-candidate", "ice-candidate"];
    for (seq, kind) in kinds.iter().enumerate().take(3) {
        let r = app.post(&signals, Some(&alice), json!({"type": kind, "data": {"seq": seq, "sdp": "v=0"}})).await;
        r.expect(202);
    }
    for (seq, kind) in kinds.iter().enumerate().take(6).skip(3) {
        alice_ws.send(json!({"type": "signal", "call_id": call, "signal": {"type": kind, "data": {"seq": seq}}})).await;
    }
    alice_ws.sync().await; // handled, in order, before the next HTTP signal
    app.post(&signals, Some(&alice), json!({"type": "ice-candidate", "data": {"seq": 6}})).await.expect(202);

    // Bob's WebSocket: call.signal events, in order, from alice.
    for (seq, kind) in kinds.iter().enumerate() {
        let e = bob_ws.events.wait_for(WAIT, "call.signal", |e| e.event == "call.signal").await;
        assert_eq!(e.session_id(), call);
        assert_eq!(e.data["signal"]["type"], *kind);
        assert_eq!(e.data["signal"]["data"]["seq"], seq, "in order: {}", e.data);
        assert_eq!(e.data["signal"]["from"], "alice");
    }
    // Bob's HTTP queue: the same, in order, drained once.
    let drained = app.get(&signals, Some(&bob)).await;
    let drained = drained.expect(200)["signals"].as_array().unwrap().clone();
    let seqs: Vec<u64> = drained.iter().map(|s| s["data"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..7).collect::<Vec<u64>>());
    assert!(drained.iter().all(|s| s["from"] == "alice" && s["at"].is_string()));
    assert_eq!(drained[0]["type"], "offer");
    assert_eq!(drained[0]["data"]["sdp"], "v=0");
    assert_eq!(app.get(&signals, Some(&bob)).await.expect(200)["signals"], json!([]), "a drain empties the queue");
    // The sender gets none of its own.
    assert_eq!(app.get(&signals, Some(&alice)).await.expect(200)["signals"], json!([]));

    // Bob answers over the WebSocket; the first call.signal alice ever sees is that answer
    // (events arrive in order, so any echo of her own would have come first).
    bob_ws
        .send(json!({"type": "signal", "call_id": call, "signal": {"type": "answer", "data": {"sdp": "answer"}}}))
        .await;
    let e = alice_ws.events.wait_for(WAIT, "call.signal", |e| e.event == "call.signal").await;
    assert_eq!(e.data["signal"]["type"], "answer");
    assert_eq!(e.data["signal"]["from"], "bob");
    assert!(alice_ws
        .events
        .seen
        .iter()
        .filter(|e| e.event == "call.signal")
        .all(|e| e.data["signal"]["from"] == "bob"));
    let for_alice = app.get(&signals, Some(&alice)).await;
    let for_alice = for_alice.expect(200)["signals"].as_array().unwrap().clone();
    assert_eq!(for_alice.len(), 1);
    assert_eq!(for_alice[0]["type"], "answer");
    // The backend may relay for a user of the call.
    app.post(&signals, Some(API_KEY), json!({"type": "ice-candidate", "data": {"c": 1}, "user_id": "bob"}))
        .await
        .expect(202);
    let e = alice_ws.events.wait_for(WAIT, "call.signal", |e| e.event == "call.signal").await;
    assert_eq!(e.data["signal"]["data"]["c"], 1);
    bob_ws.sync().await;
    assert!(bob_ws
        .events
        .seen
        .iter()
        .filter(|e| e.event == "call.signal")
        .all(|e| e.data["signal"]["from"] == "alice"));

    // An outsider: 404 on the call and its signals, whatever the channel.
    app.get(&format!("/v1/calls/{call}"), Some(&carol)).await.expect(404);
    app.post(&signals, Some(&carol), json!({"type": "offer", "data": {}})).await.expect(404);
    app.get(&signals, Some(&carol)).await.expect(404);
    app.post(&format!("/v1/calls/{call}/join"), Some(&carol), json!({})).await.expect(404);
    app.post(&signals, Some(API_KEY), json!({"type": "offer", "data": {}, "user_id": "carol"})).await.expect(404);
    app.get(&format!("{signals}?user_id=carol"), Some(API_KEY)).await.expect(404);
    let mut carol_ws = app.ws(&carol).await;
    carol_ws.send(json!({"type": "signal", "call_id": call, "signal": {"type": "offer", "data": {}}})).await;
    let err = carol_ws.events.wait_for(WAIT, "error frame", |e| e.event == "error").await;
    assert_eq!(err.data["status"], 404, "{}", err.data);
    // Nothing reached alice or bob from carol.
    assert_eq!(app.get(&signals, Some(&alice)).await.expect(200)["signals"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&signals, Some(&bob)).await.expect(200)["signals"], json!([]));
}

#[tokio::test]
async fn the_timer_starts_on_the_second_join_and_the_call_ends_at_max_duration() {
    let app = TestApp::in_process().await; // call max_duration 1s
    let mut events = app.sse(API_KEY, "?kind=call", None).await;
    let p = app.pair_up("alice", "bob").await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let join = format!("/v1/calls/{}/join", p.call);

    let first = app.post(&join, Some(&alice), json!({})).await;
    let first = first.expect(200);
    assert_eq!(first["timer_started"], false);
    assert_eq!(first["ends_at"], Value::Null);
    let c = app.get(&format!("/v1/calls/{}", p.call), Some(&alice)).await.expect(200).clone();
    assert_eq!(c["status"], "waiting");
    assert_eq!(c["participants"].as_array().unwrap().len(), 1);
    assert_eq!(c["activated_at"], Value::Null);
    // Joining twice is not two users.
    let again = app.post(&join, Some(&alice), json!({})).await;
    assert_eq!(again.expect(200)["timer_started"], false);

    app.advance(ms(250)); // the timer counts from the second join, not the first
    let joined_at = app.now();
    let second = app.post(&join, Some(&bob), json!({})).await;
    let second = second.expect(200).clone();
    assert_eq!(second["timer_started"], true, "{second}");
    let ends_at = ts(&second["ends_at"]);
    assert_eq!(ends_at, joined_at + 1000, "ends_at is 1s after the second join");

    let activated = events.wait_event(WAIT, "session.activated", &p.call).await;
    assert_eq!(ts(&activated.data["session"]["activated_at"]) + 1000, ends_at);
    app.advance_to(ends_at - 1);
    let c = app.get(&format!("/v1/calls/{}", p.call), Some(&bob)).await.expect(200).clone();
    assert_eq!(c["status"], "active", "1 ms before max_duration: {c}");
    app.advance_to(ends_at);
    let ended = events.wait_event(WAIT, "session.ended", &p.call).await;
    assert_eq!(ended.reason(), "max_duration");
    assert_eq!(ts(&ended.data["session"]["ended_at"]), ends_at, "{}", ended.data);

    // An ended call (not cancelled) still answers 200.
    let c = app.get(&format!("/v1/calls/{}", p.call), Some(&bob)).await.expect(200).clone();
    assert_eq!(c["status"], "ended");
    assert_eq!(c["end_reason"], "max_duration");
    // Both owe a decision now.
    for session in [&p.a_session, &p.b_session] {
        let n = app.next(session).await;
        assert_eq!(n["match_found"], false);
        assert_eq!(n["awaiting_decision"], p.call.as_str(), "{n}");
    }
    app.post(&join, Some(&alice), json!({})).await.expect(410);
}

#[tokio::test]
async fn a_partner_who_leaves_ends_the_call_with_410() {
    let app = TestApp::start_with_config(&config_with(&[("call", "max_duration", "1m")])).await;
    let p = app.pair_up("alice", "bob").await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let mut bob_sse = app.sse(&bob, "", None).await;
    app.activate(&p).await;

    // Alice stops matching: her call ends partner_left at once.
    let r = app.post(&format!("/v1/sessions/{}/end", p.a_session), Some(&alice), json!({})).await;
    assert_eq!(r.expect(200)["status"], "ended");
    let ended = bob_sse.wait_event(WAIT, "session.ended", &p.call).await;
    assert_eq!(ended.reason(), "partner_left");
    for _ in 0..2 {
        for token in [&alice, &bob] {
            let r = app.get(&format!("/v1/calls/{}", p.call), Some(token)).await;
            assert_eq!(r.expect(410)["end_reason"], "partner_left", "{}", r.text);
        }
    }
    app.post(&format!("/v1/calls/{}/join", p.call), Some(&bob), json!({})).await.expect(410);
    app.post(&format!("/v1/calls/{}/signals", p.call), Some(&bob), json!({"type": "offer", "data": {}}))
        .await
        .expect(410);
    app.get(&format!("/v1/calls/{}/signals", p.call), Some(&bob)).await.expect(410);
    app.post(&format!("/v1/calls/{}/end", p.call), Some(&bob), json!({})).await.expect(410);
    // The call was active: bob owes a decision, then is back in the pool.
    assert_eq!(app.next(&p.b_session).await["awaiting_decision"], p.call.as_str());
    app.decide(&p.call, "bob", "skip").await.expect(200);
    app.assert_waiting(&p.b_session, "bob").await;
    app.leave(&p.b_session).await;

    // A waiting call whose user restarts matching: cancelled (410); both are
    // back at once and, never having talked, are paired afresh.
    let q = app.pair_up("carol", "dave").await;
    let mut carol_sse = app.sse(&user_token("carol"), "", None).await;
    let dave_again = app.enter("dave", prefs(18, 99, &[])).await;
    let ended = carol_sse.wait_event(WAIT, "session.ended", &q.call).await;
    assert_eq!(ended.reason(), "partner_left");
    app.get(&format!("/v1/calls/{}", q.call), Some(&user_token("carol"))).await.expect(410);
    let found = carol_sse.wait_for(WAIT, "a new match.found", |e| e.event == "match.found").await;
    assert_ne!(call_of(&found), q.call);
    assert_eq!(partner_of(&found), "dave");
    assert_eq!(app.current_call(&dave_again).await, Some(call_of(&found)));

    // A user who ends the call itself: 200 "ended", and 200 from then on.
    let r = app.pair_up("erin", "frank").await;
    app.activate(&r).await;
    let ended = app.end_call(&r.call, "frank").await;
    let ended = ended.expect(200);
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "ended");
    let again = app.end_call(&r.call, "erin").await;
    assert_eq!(again.expect(200)["end_reason"], "ended");
    for user in ["erin", "frank"] {
        let c = app.get(&format!("/v1/calls/{}", r.call), Some(&user_token(user))).await;
        assert_eq!(c.expect(200)["end_reason"], "ended");
    }
}

#[tokio::test]
async fn a_call_nobody_joins_ends_waiting_timeout_and_frees_both() {
    let app = TestApp::in_process_with_config(&config_with(&[("call", "waiting_timeout", "400ms")])).await;
    let mut events = app.sse(API_KEY, "?kind=call", None).await;
    let p = app.pair_up("alice", "bob").await;
    app.join(&p.call, "alice").await;
    app.advance(ms(399));
    let c = app.get(&format!("/v1/calls/{}", p.call), Some(&user_token("alice"))).await.expect(200).clone();
    assert_eq!(c["status"], "waiting", "1 ms before waiting_timeout: {c}");
    app.advance(ms(1));
    let ended = events.wait_event(WAIT, "session.ended", &p.call).await;
    assert_eq!(ended.reason(), "waiting_timeout");
    // Never active: no decision owed, no exclusion — they are paired again at once.
    let found =
        events.wait_for(WAIT, "a new match.found", |e| e.event == "match.found" && e.session_id() != p.call).await;
    let again = call_of(&found);
    assert_eq!(app.current_call(&p.a_session).await, Some(again.clone()));
    assert_eq!(app.current_call(&p.b_session).await, Some(again));
    let old = app.get(&format!("/v1/calls/{}", p.call), Some(&user_token("alice"))).await;
    assert_eq!(old.expect(200)["end_reason"], "waiting_timeout");
}

#[tokio::test]
async fn the_pair_never_meets_again() {
    let app = TestApp::in_process_with_config(&config_with(&[("call", "max_duration", "1m")])).await; // decision_timeout 1s
    let p = app.pair_up("alice", "bob").await;
    app.activate(&p).await;
    app.end_call(&p.call, "alice").await.expect(200);
    for session in [&p.a_session, &p.b_session] {
        assert_eq!(app.next(session).await["awaiting_decision"], p.call.as_str());
    }
    // Alice decides: back in the pool, alone (bob still owes his decision).
    app.decide(&p.call, "alice", "skip").await.expect(200);
    app.assert_waiting(&p.a_session, "alice").await;
    // Bob never decides: back after decision_timeout (1s from the call's end), and not paired with alice.
    app.advance(ms(999));
    assert_eq!(app.next(&p.b_session).await["awaiting_decision"], p.call.as_str(), "1 ms before decision_timeout");
    app.advance(ms(1));
    let n = app.next(&p.b_session).await;
    assert_eq!(n, json!({"match_found": false}), "bob must not be paired with alice again");
    app.assert_waiting(&p.a_session, "alice").await;
    // His decision window has closed.
    app.decide(&p.call, "bob", "continue").await.problem(409, &["decision window"]);
    // Not even with brand-new matching sessions.
    let alice_again = app.enter("alice", prefs(18, 99, &[])).await;
    app.assert_waiting(&alice_again, "alice").await;
    app.assert_waiting(&p.b_session, "bob").await;

    // Third and fourth compatible users get paired with them instead.
    app.profile("carol", 30, &["music"]).await;
    app.profile("dave", 30, &["music"]).await;
    let carol = app.enter("carol", prefs(18, 99, &[])).await;
    let dave = app.enter("dave", prefs(18, 99, &[])).await;
    let mut partners = HashSet::new();
    for session in [&carol, &dave] {
        let n = app.next(session).await;
        assert_eq!(n["match_found"], true, "{n}");
        partners.insert(s(&n["match"]["partner"]["user_id"]));
    }
    assert_eq!(partners, HashSet::from(["alice".to_string(), "bob".to_string()]));
}

#[tokio::test]
async fn both_continue_makes_a_mutual_match_skip_does_not() {
    let app = TestApp::start_with_config(&config_with(&[("call", "max_duration", "1m")])).await;
    let mut backend = app.sse(API_KEY, "?kind=call", None).await;

    // continue + skip: no match.
    let q = app.pair_up("carol", "dave").await;
    app.activate(&q).await;
    app.end_call(&q.call, "carol").await.expect(200);
    assert_eq!(app.decide(&q.call, "carol", "continue").await.expect(200)["mutual"], false);
    assert_eq!(app.decide(&q.call, "dave", "skip").await.expect(200)["mutual"], false);
    assert!(app.matches_of("carol").await.is_empty());
    assert!(app.matches_of("dave").await.is_empty());
    app.leave(&q.a_session).await;
    app.leave(&q.b_session).await;

    // continue + continue: a mutual match.
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let p = app.pair_up("alice", "bob").await;
    let mut alice_ws = app.ws(&alice).await;
    let mut bob_sse = app.sse(&bob, "", None).await;
    let decide = |token: &str, decision: &str| {
        let body = json!({"call_id": p.call, "decision": decision});
        let token = token.to_string();
        let app = &app;
        async move { app.post("/v1/matching/decision", Some(&token), body).await }
    };
    // Not while the call is live: waiting, then active.
    decide(&alice, "continue").await.problem(409, &["live"]);
    app.activate(&p).await;
    let r = decide(&bob, "continue").await;
    assert_eq!(r.expect(409)["call_status"], "active", "{}", r.text);
    // Outsiders and unknown calls: 404.
    decide(&user_token("mallory"), "continue").await.expect(404);
    app.post("/v1/matching/decision", Some(&alice), json!({"call_id": "no-such-call", "decision": "skip"}))
        .await
        .expect(404);

    app.post(&format!("/v1/calls/{}/end", p.call), Some(&alice), json!({})).await.expect(200);
    let r = decide(&alice, "continue").await;
    assert_eq!(r.expect(200)["mutual"], false);
    assert!(app.matches_of("alice").await.is_empty(), "one continue is not a match");
    decide(&alice, "continue").await.expect(200); // the same decision again is harmless
    decide(&alice, "skip").await.expect(409); // changing it is not
    let r = decide(&bob, "continue").await;
    assert_eq!(r.expect(200)["mutual"], true);

    let ma = alice_ws.events.wait_for(WAIT, "match.mutual", |e| e.event == "match.mutual").await;
    let mb = bob_sse.wait_for(WAIT, "match.mutual", |e| e.event == "match.mutual").await;
    assert_eq!(ma.session_id(), p.call);
    assert_eq!(mb.session_id(), p.call);
    assert_eq!(ma.data["match"]["user_id"], "bob");
    assert_eq!(mb.data["match"]["user_id"], "alice");
    // The backend saw exactly the two match.mutual of alice and bob's call, none for carol and dave.
    let first = backend.wait_for(WAIT, "match.mutual", |e| e.event == "match.mutual").await;
    let second = backend.wait_for(WAIT, "match.mutual", |e| e.event == "match.mutual").await;
    assert_eq!((first.session_id(), second.session_id()), (p.call.as_str(), p.call.as_str()));

    for (token, other) in [(&alice, "bob"), (&bob, "alice")] {
        let r = app.get("/v1/matches", Some(token)).await;
        let list = r.expect(200)["matches"].as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["user_id"], other);
        assert_eq!(list[0]["name"], name_of(other));
        assert!(ts(&list[0]["matched_at"]) > 0);
    }
    assert!(app.matches_of("carol").await.is_empty());
    app.leave(&p.a_session).await;
    app.leave(&p.b_session).await;

    // A call that never became active owes no decision.
    let r = app.pair_up("erin", "frank").await;
    app.end_call(&r.call, "erin").await.expect(200);
    app.decide(&r.call, "erin", "continue").await.problem(409, &["never became active"]);
}

#[tokio::test]
async fn two_hundred_users_entering_at_once_end_up_in_disjoint_pairs() {
    const N: usize = 200;
    let app = TestApp::start().await;
    let vocab = ["music", "film", "chess", "hiking", "jazz", "art", "food", "travel"];
    // Ages 20..=59 and ranges ±3: many compatible partners, some not.
    let age = |i: usize| 20 + (i % 40) as u32;
    let users: Vec<String> = (0..N).map(|i| format!("u{i:03}")).collect();
    futures::future::join_all(users.iter().enumerate().map(|(i, u)| {
        let interests: Vec<&str> = (0..3).map(|k| vocab[(i * 7 + k * 3) % vocab.len()]).collect();
        let app = &app;
        async move { app.put_profile(u, profile_body(u, age(i), &interests)).await.expect(200).clone() }
    }))
    .await;

    let mut backend = app.sse(API_KEY, "?kind=call", None).await;
    let client = reqwest::Client::new();
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let client = client.clone();
            let url = app.url("/v1/matching/start");
            let a = age(i);
            let body = json!({"user_id": u, "min_age": (a - 3).max(18), "max_age": a + 3, "preferred_interests": ["music", "jazz"]});
            tokio::spawn(async move {
                let r = client.post(url).bearer_auth(API_KEY).json(&body).send().await.expect("start");
                assert_eq!(r.status().as_u16(), 201);
                let v: Value = r.json().await.unwrap();
                s(&v["session_id"])
            })
        })
        .collect();
    let mut sessions = HashMap::new();
    for (u, t) in users.iter().zip(tasks) {
        sessions.insert(u.clone(), t.await.expect("task"));
    }

    // Every user's current call, as the polling endpoint tells it.
    let mut call_of_user: HashMap<String, String> = HashMap::new();
    let nexts = futures::future::join_all(users.iter().map(|u| {
        let app = &app;
        let session = sessions[u].clone();
        async move { (u.clone(), app.next(&session).await) }
    }))
    .await;
    let mut unpaired = Vec::new();
    for (u, n) in nexts {
        if n["match_found"] == true {
            call_of_user.insert(u, s(&n["match"]["call_id"]));
        } else {
            unpaired.push(u);
        }
    }
    // Calls from the backend's match.found events: each names its two users.
    let (calls, told) = calls_from_events(&mut backend, call_of_user.len(), WAIT).await;
    check_pool_pairs(&calls, &told, &call_of_user, &users, &unpaired, age);
}

#[tokio::test]
async fn bad_profiles_preferences_signals_and_decisions_are_clear_4xx() {
    let app = TestApp::start().await;
    let good = || profile_body("pat", 30, &["a", "b"]);
    let with = |key: &str, v: Value| {
        let mut b = good();
        b[key] = v;
        b
    };
    let without = |key: &str| {
        let mut b = good();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    let too_many: Vec<String> = (0..33).map(|i| format!("i{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (with("age", json!(17)), "age"),
        (with("age", json!(121)), "age"),
        (with("age", json!("thirty")), "age"),
        (without("age"), "age"),
        (without("name"), "name"),
        (with("name", json!("   ")), "name"),
        (without("interests"), "interests"),
        (with("interests", json!(too_many)), "interests"),
        (with("interests", json!(["ok", ""])), "interests[1]"),
        (with("personality", json!([0.1, 0.2, 0.3, 0.4])), "personality"),
        (with("personality", json!([0.1, 0.2, 1.5, 0.4, 0.5])), "personality[2]"),
        (with("personality", json!([0.1, 0.2, 0.3, 0.4, -0.1])), "personality[4]"),
    ];
    for (body, field) in cases {
        let r = app.put_profile("pat", body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{body} should be refused: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
        assert!(r.detail().contains(field), "detail should name {field}: {}", r.text);
    }
    let r = app.put_profile("pat", json!(null)).await;
    assert!(r.status.is_client_error());
    let r = app
        .send(
            "PUT",
            "/v1/profiles/pat",
            app.req(reqwest::Method::PUT, "/v1/profiles/pat", Some(API_KEY))
                .header("content-type", "application/json")
                .body("{\"name\":"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text);
    // Nothing bad was stored; a good profile is accepted and normalised.
    app.get("/v1/profiles/pat", Some(API_KEY)).await.expect(404);
    let r = app.put_profile("pat", with("interests", json!([" Chess ", "chess", "Jazz"]))).await;
    assert_eq!(r.expect(200)["interests"], json!(["Chess", "Jazz"]));
    // Users write their own profile only in demo mode.
    app.call(reqwest::Method::PUT, "/v1/profiles/pat", Some(&user_token("pat")), Some(good())).await.expect(403);

    // Preferences.
    let start_cases: Vec<(Value, &str)> = vec![
        (json!({"user_id": "pat", "min_age": 17, "max_age": 30}), "min_age"),
        (json!({"user_id": "pat", "min_age": 20, "max_age": 121}), "max_age"),
        (json!({"user_id": "pat", "min_age": 40, "max_age": 30}), "max_age"),
        (json!({"user_id": "pat", "max_age": 30}), "min_age"),
        (json!({"user_id": "pat", "min_age": 20, "max_age": 30, "personality_weight": 1.5}), "personality_weight"),
        (
            json!({"user_id": "pat", "min_age": 20, "max_age": 30, "preferred_interests": too_many}),
            "preferred_interests",
        ),
    ];
    for (body, field) in start_cases {
        let r = app.post("/v1/matching/start", Some(API_KEY), body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
    }
    app.get("/v1/matching/next", Some(API_KEY)).await.problem(422, &["session_id"]);

    // Signals.
    let p = app.pair_up("sam", "kim").await;
    let signals = format!("/v1/calls/{}/signals", p.call);
    let sam = user_token("sam");
    let signal_cases: Vec<(Value, &str)> = vec![
        (json!({"type": "hello", "data": {}}), "type"),
        (json!({"type": "Offer", "data": {}}), "type"),
        (json!({"data": {}}), "type"),
        (json!({"type": 7, "data": {}}), "type"),
        (json!({"type": "offer"}), "data"),
        (json!({"type": "offer", "data": "sdp"}), "data"),
        (json!({"type": "offer", "data": {"sdp": "x".repeat(40_000)}}), "data"),
    ];
    for (body, field) in signal_cases {
        let r = app.post(&signals, Some(&sam), body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{}: {}", body.to_string().chars().take(80).collect::<String>(), r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    assert_eq!(
        app.get(&signals, Some(&user_token("kim"))).await.expect(200)["signals"],
        json!([]),
        "no bad signal was relayed"
    );
    let mut ws = app.ws(&sam).await;
    for (frame, field) in [
        (json!({"type": "signal", "call_id": p.call, "signal": {"type": "bogus", "data": {}}}), "type"),
        (json!({"type": "signal", "call_id": p.call, "signal": {"type": "offer"}}), "data"),
        (json!({"type": "signal", "signal": {"type": "offer", "data": {}}}), "call_id"),
        (json!({"type": "signal", "call_id": p.call}), "signal"),
    ] {
        ws.send(frame.clone()).await;
        let e = ws.events.wait_for(WAIT, "error frame", |e| e.event == "error").await;
        assert_eq!(e.data["status"], 422, "{frame}: {}", e.data);
        assert_eq!(e.data["field"], field, "{frame}: {}", e.data);
    }

    // Decisions.
    app.activate(&p).await;
    app.end_call(&p.call, "sam").await.expect(200);
    let decision_cases: Vec<(Value, &str)> = vec![
        (json!({"call_id": p.call, "decision": "maybe"}), "decision"),
        (json!({"call_id": p.call}), "decision"),
        (json!({"decision": "skip"}), "call_id"),
        (
            json!({"call_id": p.call, "decision": "skip", "personality_rating": [0.5, 2, 0.5, 0.5, 0.5]}),
            "personality_rating[1]",
        ),
        (json!({"call_id": p.call, "decision": "skip", "personality_rating": [0.5, 0.5]}), "personality_rating"),
    ];
    for (body, field) in decision_cases {
        let r = app.post("/v1/matching/decision", Some(&sam), body.clone()).await;
        assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.text);
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
    }
    let ok = app
        .post(
            "/v1/matching/decision",
            Some(&sam),
            json!({"call_id": p.call, "decision": "skip", "personality_rating": [0.1, 0.2, 0.3, 0.4, 0.5]}),
        )
        .await;
    ok.expect(200);
}

#[tokio::test]
async fn a_blocked_user_is_never_paired() {
    let app = TestApp::start().await;
    for u in ["alice", "bob", "carol", "dave"] {
        app.profile(u, 30, &["music"]).await;
    }
    let alice = user_token("alice");
    let r = app.post("/v1/blocks", Some(&alice), json!({"user_id": "bob"})).await;
    r.expect(200);
    app.post("/v1/blocks", Some(&alice), json!({"user_id": "alice"})).await.problem(422, &["user_id"]);
    app.post("/v1/blocks", Some(&alice), json!({})).await.problem(422, &["user_id"]);
    // With the API key, `by` names the blocker.
    let r = app.post("/v1/blocks", Some(API_KEY), json!({"user_id": "bob"})).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.text);
    assert_eq!(r.body["field"], "by", "{}", r.text);

    // bob waits first, alice enters: blocked, in either direction.
    let bob = app.enter("bob", prefs(18, 99, &[])).await;
    let alice_session = app.enter_as(&alice, prefs(18, 99, &[])).await;
    app.assert_waiting(&bob, "bob").await;
    app.assert_waiting(&alice_session, "alice").await;
    // Others pair with them.
    let carol = app.enter("carol", prefs(18, 99, &[])).await;
    let dave = app.enter("dave", prefs(18, 99, &[])).await;
    let mut partners = HashSet::new();
    for session in [&carol, &dave] {
        let n = app.next(session).await;
        assert_eq!(n["match_found"], true, "{n}");
        partners.insert(s(&n["match"]["partner"]["user_id"]));
    }
    assert_eq!(partners, HashSet::from(["alice".to_string(), "bob".to_string()]));
}

#[tokio::test]
async fn profiles_ratings_exclusions_blocks_and_matches_survive_kill_9() {
    if cluster_mode().is_some() {
        // Restarting one process is a single node's story; the cluster suite kills nodes itself.
        return;
    }
    let mut app = TestApp::start_with_config(&config_with(&[("call", "max_duration", "1m")])).await;
    // A mutual match between alice and bob, who rate each other (neither has
    // a declared personality, so the ratings become their personality).
    let p = app.pair_up("alice", "bob").await;
    app.activate(&p).await;
    app.end_call(&p.call, "alice").await.expect(200);
    let rate = |user: &str, value: f64| json!({"call_id": p.call, "decision": "continue", "user_id": user, "personality_rating": vec![value; 5]});
    app.post("/v1/matching/decision", Some(API_KEY), rate("alice", 1.0)).await.expect(200);
    let r = app.post("/v1/matching/decision", Some(API_KEY), rate("bob", 0.0)).await;
    assert_eq!(r.expect(200)["mutual"], true);
    // carol (personality all 1) blocked dave (personality all 0); erin has a profile and nothing else.
    for (u, personality) in [("carol", 1.0), ("dave", 0.0)] {
        let mut body = profile_body(u, 30, &["music"]);
        body["personality"] = json!(vec![personality; 5]);
        app.put_profile(u, body).await.expect(200);
    }
    app.profile("erin", 44, &["Tea"]).await;
    app.post("/v1/blocks", Some(&user_token("carol")), json!({"user_id": "dave"})).await.expect(200);

    app.kill9();
    app.restart().await;

    let erin = app.get("/v1/profiles/erin", Some(API_KEY)).await;
    let erin = erin.expect(200);
    assert_eq!(erin["age"], 44);
    assert_eq!(erin["interests"], json!(["Tea"]));
    for (user, other) in [("alice", "bob"), ("bob", "alice")] {
        let list = app.matches_of(user).await;
        assert_eq!(list.len(), 1, "{user}: {list:?}");
        assert_eq!(list[0]["user_id"], other);
        assert_eq!(list[0]["name"], name_of(other));
    }
    // alice and bob's matching sessions from before the crash are back in
    // the pool: still never paired with each other.
    app.assert_waiting(&p.a_session, "alice").await;
    app.assert_waiting(&p.b_session, "bob").await;
    app.leave(&p.a_session).await;
    app.leave(&p.b_session).await;
    // carol and dave: still blocked. Everyone now matches on personality only.
    let by_personality = || {
        let mut v = prefs(18, 99, &[]);
        v["personality_weight"] = json!(1.0);
        v
    };
    let carol = app.enter("carol", by_personality()).await;
    let dave = app.enter("dave", by_personality()).await;
    app.assert_waiting(&carol, "carol").await;
    app.assert_waiting(&dave, "dave").await;
    // alice and bob enter anew: never paired with each other, and each gets
    // the one whose personality matches the rating it received (with the
    // ratings lost, both candidates would score 0.5 and carol, waiting
    // longer, would win alice).
    for (user, want) in [("alice", "dave"), ("bob", "carol")] {
        let session = app.enter(user, by_personality()).await;
        let n = app.next(&session).await;
        assert_eq!(n["match_found"], true, "{user}: {n}");
        assert_eq!(n["match"]["partner"]["user_id"], want, "{user}: {n}");
        assert_eq!(n["match"]["compatibility_score"], 1.0, "{user}: {n}");
    }
}

#[tokio::test]
async fn a_user_without_a_profile_waits_until_it_has_one() {
    let app = TestApp::start().await;
    app.profile("alice", 30, &["music"]).await;
    let alice = app.enter("alice", prefs(18, 99, &[])).await;
    let mut bob_sse = app.sse(&user_token("bob"), "", None).await;
    let bob = app.enter("bob", prefs(18, 99, &[])).await;
    app.assert_waiting(&alice, "alice").await;
    app.assert_waiting(&bob, "bob").await;
    // The profile arrives: bob is paired at once, and told.
    app.profile("bob", 31, &["music"]).await;
    let found = bob_sse.wait_for(WAIT, "match.found", |e| e.event == "match.found").await;
    assert_eq!(partner_of(&found), "alice");
    assert_eq!(app.current_call(&alice).await, Some(call_of(&found)));
}

#[tokio::test]
async fn a_closed_websocket_ends_matching_disconnected_and_the_call_partner_left() {
    let app = TestApp::in_process().await; // matching disconnect_grace 300ms
    app.profile("alice", 30, &["music"]).await;
    app.profile("bob", 30, &["music"]).await;
    let (alice, bob) = (user_token("alice"), user_token("bob"));
    let mut backend = app.sse(API_KEY, "", None).await;
    let alice_ws = app.ws(&alice).await;
    let alice_session = app.enter_as(&alice, prefs(18, 99, &[])).await;
    let bob_session = app.enter_as(&bob, prefs(18, 99, &[])).await;
    let call = app.current_call(&bob_session).await.expect("paired");
    let mut bob_sse = app.sse(&bob, "", None).await;

    let closed_at = app.now();
    alice_ws.close().await;
    app.session_until(&alice_session, "the disconnect grace", |s| ts(&s["expires_at"]) == closed_at + 300).await;
    app.advance(ms(299));
    assert_eq!(app.session(&alice_session).await["status"], "active", "1 ms before the grace runs out");
    app.advance(ms(1));
    let ended = backend.wait_event(WAIT, "session.ended", &alice_session).await;
    assert_eq!(ended.reason(), "disconnected");
    assert_eq!(ts(&ended.data["session"]["ended_at"]), closed_at + 300, "{}", ended.data);
    let call_ended = bob_sse.wait_event(WAIT, "session.ended", &call).await;
    assert_eq!(call_ended.reason(), "partner_left");
    let r = app.get(&format!("/v1/calls/{call}"), Some(&bob)).await;
    assert_eq!(r.expect(410)["end_reason"], "partner_left");
    app.get(&format!("/v1/sessions/{alice_session}"), Some(&alice)).await.expect(200);
    // The call never became active: bob is back in the pool at once, owing nothing.
    app.assert_waiting(&bob_session, "bob").await;
}

//! Several nodes on one PostgreSQL (contract section 8, issue 11), end to end
//! with real processes on a fresh schema: three `tether serve` nodes with
//! `[cluster] lease = "2s"`, requests spread over them, and nodes killed
//! (`kill -9`), paused (SIGSTOP past the lease, then SIGCONT) and stopped
//! (SIGTERM) while clients keep working.
//!
//! The cluster is a black box: which node holds the lease is read from
//! `GET /v1/admin/cluster`, and every claim is checked through the public API
//! against what the clients were told (their log of 2xx answers) and what
//! a subscriber on a surviving node received. Takeovers happen between
//! processes, so they are waited for in real time (bounded by the lease);
//! deadlines are measured from `expires_at` to the ended event's `at` (the
//! server's stamp) and to its receipt.
//!
//! The tests run one at a time (each is three nodes and PostgreSQL on a
//! machine that may have two cores, and several measure time).
//!
//! PostgreSQL: `TETHER_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); `off` skips this file.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{Cluster, Spread, LEASE_MS};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

/// Kinds the cluster tests add to the standard ones (support/app.rs `KINDS`).
const EXTRA: &str = r#"
# An idle deadline set long before a kill and due just after it (it must
# fire within lease + 1 s of the death), or due well after the takeover (on time).
[kinds.later]
idle_timeout = "6s"
"#;

/// How late a deadline may fire across a SIGTERM hand-over here (see its test).
const HAND_OVER_MS: i64 = 300;

/// How long a takeover may take by the contract: the lease, plus one second.
const TAKEOVER_MS: i64 = LEASE_MS + 1_000;

/// One cluster test at a time (see the module comment). Async, so that a
/// waiting test blocks no thread; a test that fails releases it as it unwinds.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pg_off() -> bool {
    let off = pg_base().is_none();
    if off {
        eprintln!("TETHER_TEST_POSTGRES=off: skipped");
    }
    off
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string()
}

/// The event ids of `events`, in arrival order (WebSocket `pong` frames have none).
fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().filter_map(|e| e.id).collect()
}

#[track_caller]
fn assert_increasing(ids: &[u64], what: &str) {
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "{what}: event ids out of order or repeated ({} then {}): {ids:?}", w[0], w[1]);
    }
}

/// A WebSocket on `app` that resumes after event `after`. The harness's
/// [`TestApp::ws`] puts its token last in the query, so the resume point
/// rides along after it (`?token=T&last_event_id=N`, the query form the SSE
/// endpoint takes too).
async fn ws_resuming(app: &TestApp, token: &str, after: u64) -> Ws {
    app.ws(&format!("{token}&last_event_id={after}")).await
}

/// `got` is `want` as read after the work changed hands: the same in every
/// field, except that a live session's `expires_at` may have moved later
/// (the new owner counts activity as recent as the takeover allows, since
/// heartbeats may be written in batches — the restart rule of contract section 4).
#[track_caller]
fn same_after_takeover(got: &Value, want: &Value, what: &str) {
    let (mut g, mut w) = (got.clone(), want.clone());
    if want["status"] != "ended" {
        assert!(
            ts(&got["expires_at"]) >= ts(&want["expires_at"]),
            "{what}: the deadline moved earlier: {got} vs {want}"
        );
        g["expires_at"] = Value::Null;
        w["expires_at"] = Value::Null;
    }
    assert_eq!(g, w, "{what}");
}

/// Takes every event already received (or arriving within `quiet`) off `stream`.
async fn drain(stream: &mut EventStream, quiet: Duration) {
    while let Next::Event(_) = stream.next(quiet).await {}
}

/// Waits (up to `limit`) for the `session.ended` of every session in `ids`
/// on `stream`, each once; on a timeout, names the ones missing with their
/// state as `reader` answers it.
async fn ends_of(
    stream: &mut EventStream,
    ids: &HashSet<String>,
    limit: Duration,
    reader: &TestApp,
) -> HashMap<String, Event> {
    let deadline = Instant::now() + limit;
    let mut ended: HashMap<String, Event> = HashMap::new();
    while ended.len() < ids.len() {
        match stream.next(deadline.saturating_duration_since(Instant::now())).await {
            Next::Event(e) if e.event == "session.ended" && ids.contains(e.session_id()) => {
                if let Some(first) = ended.insert(e.session_id().to_string(), e.clone()) {
                    panic!("{} ended twice: {} and {}", e.session_id(), first.data, e.data);
                }
            }
            Next::Event(_) => {}
            Next::Closed | Next::Timeout => {
                let mut missing = Vec::new();
                for id in ids.iter().filter(|id| !ended.contains_key(*id)) {
                    missing
                        .push(format!("{id}: {}", reader.get(&format!("/v1/sessions/{id}"), Some(API_KEY)).await.text));
                }
                panic!(
                    "{} of {} ends did not arrive within {limit:?}; missing, as read now:\n{}\nthe stream saw: {:?}",
                    missing.len(),
                    ids.len(),
                    missing.join("\n"),
                    stream.summary()
                );
            }
        }
    }
    ended
}

// ---------------------------------------------------------------- membership

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_form_one_cluster_that_every_node_lists() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start_together(3, "").await;
    let all = [0, 1, 2];
    let leader = cluster.await_leader(&all, Duration::from_secs(10)).await;
    let bases: HashSet<String> = cluster.bases().into_iter().collect();

    let mut first_view = HashMap::new();
    for i in all {
        let members = cluster.members(i).await;
        assert_eq!(members.len(), 3, "node {i} lists three nodes: {members:?}");
        let advertised: HashSet<String> = members.iter().map(|m| m.advertise.clone()).collect();
        assert_eq!(advertised, bases, "node {i} lists every node by the URL it is reached at: {members:?}");
        let node_ids: HashSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(node_ids.len(), 3, "node ids are distinct: {members:?}");
        let leaders: Vec<_> = members.iter().filter(|m| m.leader).collect();
        assert_eq!(leaders.len(), 1, "node {i}: exactly one lease holder: {members:?}");
        assert_eq!(cluster.node_of(&leaders[0].advertise), Some(leader));
        for m in &members {
            assert!(m.started_at <= m.last_seen_at, "started after last seen: {m:?}");
            assert!(m.last_seen_at <= now_ms() + 50, "last seen in the future: {m:?}");
        }
        if i == 0 {
            first_view = members.into_iter().map(|m| (m.id.clone(), m)).collect();
        }
    }

    // Every node keeps its entry fresh: a lease later, each was seen again.
    tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 + 500)).await;
    for m in cluster.members(1).await {
        let before = &first_view[&m.id];
        assert_eq!(m.started_at, before.started_at, "started_at does not move: {m:?}");
        assert!(m.last_seen_at > before.last_seen_at, "{} was not seen again within a lease: {m:?}", m.advertise);
    }

    // An admin endpoint: a user token is refused, as for every /v1/admin/*.
    cluster.app(2).get("/v1/admin/cluster", Some(&user_token("someone"))).await.expect(403);
    cluster.app(2).get("/v1/admin/cluster", None).await.expect(401);
    // Operations on every node: ready, its own metrics, and a health report listing every node.
    for i in all {
        let app = cluster.app(i);
        app.get("/readyz", None).await.expect(200);
        let metrics = app.client.get(app.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(metrics.status().as_u16(), 200, "/metrics on node {i}");
        let health = app.get("/v1/admin/health", Some(API_KEY)).await.expect(200).clone();
        let listed: HashSet<String> = health["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("node {i}: no nodes in the health report: {health}"))
            .iter()
            .map(|n| s(&n["advertise"]).trim_end_matches('/').to_string())
            .collect();
        assert_eq!(listed, bases, "node {i}: the health report lists every node: {health}");
    }
}

// ---------------------------------------------------------------- one answer on every node

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_node_is_kept_alive_on_another_and_ended_on_a_third() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, "").await;
    let (a, b, c) = (cluster.app(0), cluster.app(1), cluster.app(2));
    let token = user_token("walker");
    let mut on_b = b.sse(API_KEY, "?kind=plain", None).await;
    let mut ws_on_c = c.ws(&token).await;

    // Started through A by its user, kept alive through B, joined and ended through C.
    let started = a.start_session(&token, json!({"kind": "plain", "metadata": {"via": "a"}})).await;
    let session = started["session"].clone();
    let id = id_of(&session);
    assert_eq!(session["user_id"], "walker");
    assert_eq!(session["status"], "active");
    tokio::time::sleep(Duration::from_millis(5)).await; // a heartbeat a few ms later moves expires_at
    let beaten = b.post_empty(&format!("/v1/sessions/{id}/heartbeat"), Some(&token)).await.expect(200).clone();
    assert!(ts(&beaten["expires_at"]) > ts(&session["expires_at"]), "the heartbeat through B moved the deadline");
    let joined = c
        .post(&format!("/v1/sessions/{id}/participants"), Some(API_KEY), json!({"user_id": "guest", "name": "Guest"}))
        .await
        .expect(201)
        .clone();
    assert_eq!(joined["participants"].as_array().map(Vec::len), Some(2), "{joined}");

    // Any node gives the same answer.
    let view = a.session(&id).await;
    assert_eq!(view, joined, "A's answer after the join through C");
    for i in 0..3 {
        assert_eq!(cluster.app(i).session(&id).await, view, "GET on node {i}");
        let list = cluster.app(i).get("/v1/sessions?user_id=walker", Some(API_KEY)).await.expect(200).clone();
        assert_eq!(list["sessions"], json!([view.clone()]), "list on node {i}");
        let mine = cluster.app(i).get(&format!("/v1/sessions/{id}"), Some(&token)).await.expect(200).clone();
        assert_eq!(mine, view, "the owner's token on node {i}");
        cluster.app(i).get(&format!("/v1/sessions/{id}"), Some(&user_token("stranger"))).await.expect(404);
    }

    let ended = c.post(&format!("/v1/sessions/{id}/end"), Some(&token), json!({"reason": "done"})).await;
    let ended = ended.expect(200).clone();
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "ended");
    assert_eq!(a.post(&format!("/v1/sessions/{id}/end"), Some(API_KEY), json!({})).await.expect(200), &ended);
    let gone = b.post_empty(&format!("/v1/sessions/{id}/heartbeat"), Some(&token)).await;
    assert_eq!(gone.problem(410, &[])["end_reason"], "ended");
    for i in 0..3 {
        assert_eq!(cluster.app(i).session(&id).await, ended, "the ended session on node {i}");
    }

    // B's subscriber got the changes made through A and C, in order.
    let last = on_b.wait_event(WAIT, "session.ended", &id).await;
    let types: Vec<&str> = on_b.seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        ["session.started", "session.activated", "participant.joined", "session.ended"],
        "B's stream: {:?}",
        on_b.summary()
    );
    let on_b_ids = ids(&on_b.seen);
    assert_eq!(on_b_ids.len(), 4, "every event has an id: {:?}", on_b.summary());
    assert_increasing(&on_b_ids, "B's stream");
    assert_eq!(last.reason(), "ended");
    assert_eq!(last.data["session"], ended, "the ended event carries the session as every node answers it");
    // The user's WebSocket on C got the same events, with the same ids.
    ws_on_c.events.wait_event(WAIT, "session.ended", &id).await;
    let ws_ids: Vec<u64> = ws_on_c.events.seen.iter().filter(|e| e.session_id() == id).filter_map(|e| e.id).collect();
    assert_eq!(ws_ids, on_b_ids, "the WebSocket on C: {:?}", ws_on_c.events.summary());

    // Resume on another node than the one the ids came from: every missed event, in order.
    for (k, app) in [(0, a), (2, c)] {
        let mut resumed = app.sse(API_KEY, "?kind=plain", Some(on_b_ids[k])).await;
        let got = resumed.wait_event(WAIT, "session.ended", &id).await;
        assert_eq!(got.data, last.data, "the same event, word for word");
        assert_eq!(
            ids(&resumed.seen),
            on_b_ids[k + 1..].to_vec(),
            "resumed after {}: {:?}",
            on_b_ids[k],
            resumed.summary()
        );
    }
    let mut ws_resumed = ws_resuming(b, &token, on_b_ids[0]).await;
    let deadline = Instant::now() + WAIT;
    while ids(&ws_resumed.events.seen).len() < on_b_ids.len() - 1 && Instant::now() < deadline {
        let _ = ws_resumed.events.next(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ids(&ws_resumed.events.seen),
        on_b_ids[1..].to_vec(),
        "a WebSocket opened on B with ?last_event_id={} gets the session's later events: {:?}",
        on_b_ids[0],
        ws_resumed.events.summary()
    );
}

// ---------------------------------------------------------------- per-user policy across nodes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_reject_starts_for_one_user_give_one_201_and_one_409() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, "").await;
    const USERS: usize = 20;
    let races = futures::future::join_all((0..USERS).map(|u| {
        let cluster = &cluster;
        async move {
            let user = format!("racer{u}");
            let body = json!({"kind": "interview", "user_id": user});
            let (x, y) = (u % 3, (u + 1) % 3);
            let (r1, r2) = tokio::join!(
                cluster.app(x).post("/v1/sessions", Some(API_KEY), body.clone()),
                cluster.app(y).post("/v1/sessions", Some(API_KEY), body.clone()),
            );
            (user, r1, r2)
        }
    }))
    .await;
    for (user, r1, r2) in races {
        let mut statuses = [r1.status.as_u16(), r2.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{user}: {} / {}", r1.text, r2.text);
        let (won, lost) = if r1.status.as_u16() == 201 { (&r1, &r2) } else { (&r2, &r1) };
        let winner = id_of(&won.body["session"]);
        assert_eq!(lost.body["blocking_session"]["id"], winner.as_str(), "{user}: the 409 names the winner");
        let list = cluster.app(2).get(&format!("/v1/sessions?user_id={user}"), Some(API_KEY)).await.expect(200).clone();
        let sessions = list["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), 1, "{user} has one session: {list}");
        assert_eq!(sessions[0]["id"], winner.as_str());
    }

    // Takeover through two nodes at once: each start ends what it found, so
    // exactly one session is live at the end, and every other one ended
    // `taken_over`.
    for u in 0..5 {
        let user = format!("racer{u}");
        let body = json!({"kind": "interview", "user_id": user, "on_conflict": "takeover"});
        let (r1, r2) = tokio::join!(
            cluster.app(u % 3).post("/v1/sessions", Some(API_KEY), body.clone()),
            cluster.app((u + 2) % 3).post("/v1/sessions", Some(API_KEY), body.clone()),
        );
        assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (201, 201), "{user}: {} / {}", r1.text, r2.text);
        let list = cluster.app(u % 3).get(&format!("/v1/sessions?user_id={user}"), Some(API_KEY)).await;
        let sessions = list.expect(200)["sessions"].as_array().expect("sessions").clone();
        assert_eq!(sessions.len(), 3, "{user}: {sessions:?}");
        let live: Vec<&Value> = sessions.iter().filter(|s| s["status"] != "ended").collect();
        assert_eq!(live.len(), 1, "{user}: one live session after two takeovers: {sessions:?}");
        for s in sessions.iter().filter(|s| s["status"] == "ended") {
            assert_eq!(s["end_reason"], "taken_over", "{user}: {s}");
        }
    }
}

// ---------------------------------------------------------------- matching across nodes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_entering_through_three_nodes_end_in_disjoint_pairs() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, "").await;
    const N: usize = 200;
    let vocab = ["music", "film", "chess", "hiking", "jazz", "art", "food", "travel"];
    // Ages 20..=59 and ranges ±3: many compatible partners, some not.
    let age = |i: usize| 20 + (i % 40) as u32;
    let users: Vec<String> = (0..N).map(|i| format!("u{i:03}")).collect();
    futures::future::join_all(users.iter().enumerate().map(|(i, u)| {
        let interests: Vec<&str> = (0..3).map(|k| vocab[(i * 7 + k * 3) % vocab.len()]).collect();
        let app = cluster.app(i % 3);
        async move { app.put_profile(u, profile_body(u, age(i), &interests)).await.expect(200).clone() }
    }))
    .await;

    let mut backend = cluster.app(1).sse(API_KEY, "?kind=call", None).await;
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let node = cluster.app((i + 1) % 3);
            let client = node.client.clone();
            let url = node.url("/v1/matching/start");
            let a = age(i);
            let body = json!({"user_id": u, "min_age": (a - 3).max(18), "max_age": a + 3, "preferred_interests": ["music", "jazz"]});
            tokio::spawn(async move {
                let r = client.post(url).bearer_auth(API_KEY).json(&body).send().await.expect("start");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, 201, "{text}");
                let v: Value = serde_json::from_str(&text).expect("JSON");
                s(&v["session_id"])
            })
        })
        .collect();
    let mut sessions = HashMap::new();
    for (u, t) in users.iter().zip(tasks) {
        sessions.insert(u.clone(), t.await.expect("task"));
    }

    // Every user's current call, each asked of a node other than the one it entered through.
    let mut call_of_user: HashMap<String, String> = HashMap::new();
    let nexts = futures::future::join_all(users.iter().enumerate().map(|(i, u)| {
        let app = cluster.app((i + 2) % 3);
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
    // Calls from the match.found events on node 1: each names its two users.
    let (calls, told) = calls_from_events(&mut backend, call_of_user.len(), WAIT).await;
    backend
        .expect_none(Duration::from_millis(500), "a match.found beyond one per paired user", |e| {
            e.event == "match.found"
        })
        .await;
    // Pairing is eager across nodes too, with every guarantee of one node.
    check_pool_pairs(&calls, &told, &call_of_user, &users, &unpaired, age);
    // A call reads the same on every node.
    let call = calls.keys().next().expect("a call").clone();
    let views: Vec<Value> = futures::future::join_all((0..3).map(|i| {
        let app = cluster.app(i);
        let path = format!("/v1/calls/{call}");
        async move { app.get(&path, Some(API_KEY)).await.expect(200).clone() }
    }))
    .await;
    assert!(views.iter().all(|v| *v == views[0]), "GET /v1/calls/{call} differs between nodes: {views:#?}");
}

// ---------------------------------------------------------------- kill -9 under churn

const WS_USER: &str = "wsuser";

/// What a churn client was told about one session.
#[derive(Debug, Default, Clone)]
struct Told {
    user: String,
    /// Participants whose join was answered 201.
    joined: Vec<String>,
    end: EndAsked,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum EndAsked {
    /// Never asked to end: it must still be live.
    #[default]
    No,
    /// Its end was answered 200.
    Acked,
    /// Asked, answer lost: either is right.
    Unknown,
}

/// The outcome of one churn request.
enum Outcome {
    /// The expected 2xx: the change is acknowledged.
    Acked(Value),
    /// No answer, or an answer to a request that had to be sent again (the
    /// first try may have been applied): the change may or may not be there.
    Unknown,
}

/// What the churn clients saw besides acknowledgements.
#[derive(Default)]
struct Tally {
    /// A 5xx other than 502 and 503, an answer `/openapi.json` does not
    /// allow, or an unexpected status on a first try.
    failures: Vec<String>,
    /// 502 and 503 answers (documented ones): a node that lost its
    /// connection to the work's owner mid-request (the outcome is unknown) or
    /// could not reach one while the lease changed hands. Not acknowledged,
    /// and not a failure: a kill -9 may cost these, never an acknowledged change.
    unavailable: Vec<String>,
}

/// A churn client's request: the expected 2xx, or an unknown outcome, or a
/// failure recorded in `tally`.
async fn churn_op(
    spread: &Spread,
    method: Method,
    path: &str,
    body: Option<Value>,
    expect: u16,
    tally: &Mutex<Tally>,
) -> Outcome {
    let Ok(via) = spread.send(method.clone(), path, API_KEY, body.as_ref()).await else { return Outcome::Unknown };
    let status = via.resp.status.as_u16();
    if status == 502 || status == 503 {
        let mut tally = tally.lock().unwrap();
        tally.unavailable.push(format!("node {}: {method} {path}: {} {}", via.node, status, via.resp.text));
        if let Err(e) = spread.agrees(&method, path, &via.resp) {
            tally.failures.push(format!("node {}: {e}", via.node));
        }
        return Outcome::Unknown;
    }
    if let Err(e) = spread.verdict(&method, path, &via.resp) {
        tally.lock().unwrap().failures.push(format!("node {}: {e}", via.node));
        return Outcome::Unknown;
    }
    if status == expect {
        return Outcome::Acked(via.resp.body);
    }
    if via.closed.is_empty() {
        tally.lock().unwrap().failures.push(format!(
            "node {}: {method} {path} answered {} (expected {expect}): {}",
            via.node, via.resp.status, via.resp.text
        ));
    }
    // Otherwise an answer to a request sent again: the first try may have been applied.
    Outcome::Unknown
}

/// One churn client: starts sessions (every fifth for [`WS_USER`]), heartbeats
/// them, adds participants and ends some, through the nodes in turn, until
/// `stop`; returns what it was told.
async fn churn(w: usize, spread: Spread, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) -> HashMap<String, Told> {
    let mut told: HashMap<String, Told> = HashMap::new();
    let mut live: Vec<String> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let user = if i.is_multiple_of(5) { WS_USER.to_string() } else { format!("churn{w}-{i}") };
        let body = json!({"kind": "plain", "user_id": user});
        if let Outcome::Acked(v) = churn_op(&spread, Method::POST, "/v1/sessions", Some(body), 201, &tally).await {
            let id = id_of(&v["session"]);
            told.insert(id.clone(), Told { user, ..Told::default() });
            live.push(id);
        }
        let Some(target) = live.get(i % live.len().max(1)).cloned() else { continue };
        let beat = format!("/v1/sessions/{target}/heartbeat");
        churn_op(&spread, Method::POST, &beat, None, 200, &tally).await;
        match i % 3 {
            1 => {
                let guest = format!("guest{w}-{i}");
                let path = format!("/v1/sessions/{target}/participants");
                let body = json!({"user_id": guest});
                if let Outcome::Acked(_) = churn_op(&spread, Method::POST, &path, Some(body), 201, &tally).await {
                    told.get_mut(&target).expect("told").joined.push(guest);
                }
            }
            2 if live.len() > 3 => {
                let oldest = live.remove(0);
                let path = format!("/v1/sessions/{oldest}/end");
                let outcome = churn_op(&spread, Method::POST, &path, Some(json!({})), 200, &tally).await;
                told.get_mut(&oldest).expect("told").end = match outcome {
                    Outcome::Acked(_) => EndAsked::Acked,
                    Outcome::Unknown => EndAsked::Unknown,
                };
            }
            _ => {}
        }
    }
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_lease_holder_under_churn_loses_nothing_acknowledged() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, EXTRA).await;
    let holder = cluster.await_leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    let (watcher, reader) = (survivors[0], survivors[1]);
    let mut watch = cluster.app(watcher).sse(API_KEY, "", None).await;
    let ws_token = user_token(WS_USER);
    let mut ws = cluster.app(holder).ws(&ws_token).await;

    let spread = cluster.spread();
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let workers: Vec<_> = (0..4).map(|w| tokio::spawn(churn(w, spread.clone(), stop.clone(), tally.clone()))).collect();
    let t0 = Instant::now();

    // Deadlines around the kill (at about t0 + 5.5 s), started through any
    // node: idle (`later`, 6 s) and max_duration (`capped`, 3 s) deadlines
    // set long before it and due just after it; `brief` (idle 1 s) ones due
    // while nobody owns them, one of them the WebSocket user's; `later` ones
    // due well after the takeover, which must fire on time.
    let mut probes: BTreeMap<String, (i64, &str)> = BTreeMap::new();
    let mut probe = async |kind: &'static str, user: String| {
        let via =
            spread.call(Method::POST, "/v1/sessions", API_KEY, Some(json!({"kind": kind, "user_id": user}))).await;
        let session = &via.resp.expect(201)["session"];
        probes.insert(id_of(session), (ts(&session["expires_at"]), kind));
    };
    for k in 0..3 {
        probe("later", format!("early{k}")).await;
    }
    tokio::time::sleep(Duration::from_millis(3_000).saturating_sub(t0.elapsed())).await;
    for k in 0..3 {
        probe("capped", format!("capped{k}")).await;
    }
    tokio::time::sleep(Duration::from_millis(5_500).saturating_sub(t0.elapsed())).await;
    probe("brief", WS_USER.to_string()).await;
    for k in 0..6 {
        probe("brief", format!("brief{k}")).await;
    }
    for k in 0..3 {
        probe("later", format!("late{k}")).await;
    }
    cluster.kill9(holder);
    let killed_at = now_ms();

    // The WebSocket of the dead node closes; its client resumes on a
    // survivor with the last id it got — only after the takeover, so that
    // it has missed events (the end of its `brief` session, its churn).
    loop {
        match ws.events.next(WAIT).await {
            Next::Event(_) => {}
            Next::Closed => break,
            Next::Timeout => panic!("the WebSocket of the killed node stayed open"),
        }
    }
    let before: Vec<Event> = ws.events.seen.iter().filter(|e| e.id.is_some()).cloned().collect();
    let last = before.last().and_then(|e| e.id).expect("the WebSocket got events before the kill");

    // Every probe ends once, on a survivor: those due while nobody owned them
    // at most lease + 1 s after the kill, the later ones on time.
    let last_deadline = probes.values().map(|p| p.0).max().unwrap();
    let limit = Duration::from_millis((last_deadline + TAKEOVER_MS - now_ms()).max(0) as u64 + 2_000);
    let probe_ids: HashSet<String> = probes.keys().cloned().collect();
    let ended = ends_of(&mut watch, &probe_ids, limit, cluster.app(reader)).await;
    let mut ws = ws_resuming(cluster.app(reader), &ws_token, last).await;
    // Measured now, asserted after the durability check (one must not hide the other).
    let mut report = Vec::new();
    let mut late = Vec::new();
    for (id, (deadline, kind)) in &probes {
        let e = &ended[id];
        let reason = if *kind == "capped" { "max_duration" } else { "idle_timeout" };
        assert_eq!(e.reason(), reason, "{}", e.data);
        let at = ts(&e.data["at"]);
        assert!(at >= *deadline, "{id} ended before its deadline: {}", e.data);
        assert!(e.received_at - at <= 1_000, "{id}: received {} ms after its `at`", e.received_at - at);
        let line = format!(
            "{kind} {id}: due {:+} ms after the kill, ended {:+} ms after it ({:+} ms after its deadline; received {:+} ms after it)",
            deadline - killed_at,
            at - killed_at,
            at - deadline,
            e.received_at - deadline
        );
        // Due before a takeover can be counted on: by lease + 1 s after the death; later ones on time.
        let bound = if *deadline <= killed_at + TAKEOVER_MS { killed_at + TAKEOVER_MS } else { deadline + 100 };
        if at > bound {
            late.push(line.clone());
        }
        report.push(line);
    }
    eprintln!("killed at {killed_at}; probes:\n  {}", report.join("\n  "));

    stop.store(true, Ordering::Relaxed);
    let mut told: HashMap<String, Told> = HashMap::new();
    for w in workers {
        told.extend(w.await.expect("churn worker"));
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    // What fails from here on (but a lost change) is gathered, so that one
    // run names every broken promise.
    let mut broken: Vec<String> = Vec::new();
    if !tally.failures.is_empty() {
        broken.push(format!("requests failed ({}):\n  {}", tally.failures.len(), tally.failures.join("\n  ")));
    }
    eprintln!(
        "{} churn sessions acknowledged; {} answers were 502/503 while the lease changed hands{}",
        told.len(),
        tally.unavailable.len(),
        tally.unavailable.first().map(|u| format!(" (first: {u})")).unwrap_or_default()
    );

    // Every acknowledged change is in the final state, read from a survivor.
    let read = cluster.app(reader);
    let mut checked = 0;
    for (id, t) in &told {
        let got = read.get(&format!("/v1/sessions/{id}"), Some(API_KEY)).await.body;
        assert_eq!(got["id"], id.as_str(), "the acknowledged start of {id} ({}) is lost: {got}", t.user);
        assert_eq!(got["user_id"], t.user.as_str(), "{got}");
        let participants: HashSet<String> =
            got["participants"].as_array().expect("participants").iter().map(|p| s(&p["id"])).collect();
        for g in &t.joined {
            assert!(participants.contains(g), "{id}: the acknowledged join of {g} is lost: {got}");
        }
        match t.end {
            EndAsked::Acked => {
                assert_eq!(got["status"], "ended", "{id}: the acknowledged end is lost: {got}");
                assert_eq!(got["end_reason"], "ended", "{got}");
            }
            EndAsked::Unknown => {}
            EndAsked::No => assert_ne!(got["status"], "ended", "{id} ended though nobody asked: {got}"),
        }
        checked += 1;
    }
    eprintln!("{checked} acknowledged sessions checked after the kill");
    assert!(checked > 20, "the churn got too little done to prove anything: {checked} sessions");
    cluster.await_leader(&survivors, Duration::from_secs(5)).await;
    if !late.is_empty() {
        broken.push(format!(
            "deadlines fired late (bound: lease + 1 s after the death, or on time (100 ms) when due after that):\n  {}",
            late.join("\n  ")
        ));
    }

    // The WebSocket client missed nothing: its events (before the kill and
    // after the resume) are exactly the ones the survivor's subscriber saw
    // for its sessions.
    drain(&mut watch, Duration::from_millis(500)).await;
    let all = watch.seen.clone();
    assert_increasing(&ids(&all), "the survivor's stream");
    let visible = |e: &Event| {
        e.data["session"]["user_id"] == WS_USER
            || e.data["session"]["participants"].as_array().is_some_and(|p| p.iter().any(|p| p["id"] == WS_USER))
    };
    let expected: Vec<u64> = all.iter().filter(|e| visible(e)).filter_map(|e| e.id).collect();
    let last_expected = *expected.last().expect("the WebSocket user had events");
    let deadline = Instant::now() + WAIT;
    while ws.events.seen.iter().filter_map(|e| e.id).max().unwrap_or(0) < last_expected && Instant::now() < deadline {
        let _ = ws.events.next(Duration::from_millis(100)).await;
    }
    let after: Vec<Event> = ws.events.seen.iter().filter(|e| e.id.is_some()).cloned().collect();
    // Both subscribed before the first change, so they must agree from the first event on.
    let got: Vec<u64> = ids(&before).into_iter().chain(ids(&after)).collect();
    if got != expected {
        let missed: Vec<u64> = expected.iter().filter(|id| !got.contains(id)).copied().collect();
        let extra: Vec<u64> = got.iter().filter(|id| !expected.contains(id)).copied().collect();
        broken.push(format!(
            "the WebSocket user's events (before the kill, then after resuming with {last} on node {reader}) differ from the \
             survivor's: {} got, {} expected; missed {missed:?}; not expected {extra:?}; after the resume: {:?}",
            got.len(),
            expected.len(),
            ws.events.summary()
        ));
    }
    assert!(broken.is_empty(), "{}\n{}", broken.join("\n"), cluster.logs());
}

// ---------------------------------------------------------------- a paused lease holder

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_paused_past_its_lease_applies_nothing_when_it_resumes_and_rejoins() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, "").await;
    let old = cluster.await_leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let mut watch = cluster.app(others[0]).sse(API_KEY, "", None).await;
    let holder = cluster.app(old);

    // Work the holder has in hand when it stops: a session due during the
    // pause, one a change will be made to elsewhere (with a heartbeat the
    // holder may still have in memory), one another node will end.
    let doomed = holder.start_for("doomed", "brief").await; // idle 1 s
    let doomed_deadline = ts(&doomed["expires_at"]);
    let kept = holder.start_for("kept", "plain").await;
    let finished = holder.start_for("finished", "plain").await;
    let (doomed, kept, finished) = (id_of(&doomed), id_of(&kept), id_of(&finished));
    holder.post_empty(&format!("/v1/sessions/{kept}/heartbeat"), Some(API_KEY)).await.expect(200);
    cluster.sigstop(old);
    let paused_at = now_ms();

    // Another node takes over and ends the doomed session, once.
    let new = cluster.await_leader(&others, Duration::from_millis(3 * LEASE_MS as u64 + 5_000)).await;
    let end = watch.wait_event(Duration::from_millis(3 * LEASE_MS as u64 + 5_000), "session.ended", &doomed).await;
    assert_eq!(end.reason(), "idle_timeout");
    let at = ts(&end.data["at"]);
    assert!(
        at <= paused_at.max(doomed_deadline) + TAKEOVER_MS,
        "the doomed session ended {} ms after the pause (bound: lease + 1 s)",
        at - paused_at
    );
    // Changes through the new owner to what the paused node still thinks it owns.
    let new_owner = cluster.app(new);
    let joined = new_owner
        .post(&format!("/v1/sessions/{kept}/participants"), Some(API_KEY), json!({"user_id": "guest"}))
        .await
        .expect(201)
        .clone();
    let ended =
        new_owner.post(&format!("/v1/sessions/{finished}/end"), Some(API_KEY), json!({})).await.expect(200).clone();
    watch.wait_event(WAIT, "participant.joined", &kept).await;
    watch.wait_event(WAIT, "session.ended", &finished).await;
    let kept_now = new_owner.session(&kept).await;
    assert_eq!(kept_now, joined);
    let doomed_now = new_owner.session(&doomed).await;
    assert_eq!(doomed_now["end_reason"], "idle_timeout");

    // The paused node resumes: whatever it had in hand, it applies nothing.
    cluster.sigcont(old);
    let resumed_at = now_ms();
    let touched = [doomed.clone(), kept.clone(), finished.clone()];
    watch
        .expect_none(
            Duration::from_millis(LEASE_MS as u64 + 1_000),
            "an event from the resumed node's stale state",
            |e| touched.iter().any(|id| e.session_id() == id),
        )
        .await;
    for i in 0..3 {
        let app = cluster.app(i);
        assert_eq!(app.session(&kept).await, kept_now, "the change through the new owner, read on node {i}");
        assert_eq!(app.session(&doomed).await, doomed_now, "the doomed session, read on node {i}");
        assert_eq!(app.session(&finished).await, ended, "the ended session, read on node {i}");
    }
    let history =
        cluster.app(new).get(&format!("/v1/sessions/{doomed}/history"), Some(API_KEY)).await.expect(200).clone();
    let ends = history["events"].as_array().expect("events").iter().filter(|e| e["type"] == "session.ended").count();
    assert_eq!(ends, 1, "the doomed session ended once: {history}");

    // It rejoins: listed again, seen after it resumed, answering requests.
    let deadline = Instant::now() + Duration::from_millis(2 * LEASE_MS as u64 + 3_000);
    loop {
        let members = cluster.members(new).await;
        let entry = members.iter().find(|m| cluster.node_of(&m.advertise) == Some(old));
        if entry.is_some_and(|m| m.last_seen_at >= resumed_at) {
            break;
        }
        assert!(Instant::now() < deadline, "the resumed node did not rejoin: {members:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = cluster.await_leader(&[0, 1, 2], Duration::from_secs(5)).await;
    eprintln!("lease holder {old} paused; {new} took over; {leader} holds the lease after the resume");
    let fresh = cluster.app(old).start_for("after", "plain").await;
    assert_eq!(cluster.app(others[1]).session(&id_of(&fresh)).await, fresh);

    // What is durable agrees too: kill the lease holder, and whoever loads
    // the state next finds the sessions as the new owner left them (a write
    // of the resumed node's stale state would show here, not in memory).
    cluster.kill9(leader);
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let next = cluster.await_leader(&rest, Duration::from_millis(3 * LEASE_MS as u64 + 5_000)).await;
    for &i in &rest {
        let app = cluster.app(i);
        let what = format!("node {i} after {next} loaded the state");
        same_after_takeover(&app.session(&kept).await, &kept_now, &what);
        same_after_takeover(&app.session(&doomed).await, &doomed_now, &what);
        same_after_takeover(&app.session(&finished).await, &ended, &what);
        same_after_takeover(&app.session(&id_of(&fresh)).await, &fresh, &what);
    }
}

// ---------------------------------------------------------------- SIGTERM under load

/// What a load client saw.
#[derive(Default)]
struct Load {
    ok: usize,
    /// Attempts whose connection failed (and were sent again to the next node).
    closed: Vec<String>,
    failures: Vec<String>,
    /// Sessions whose start was answered 201.
    started: Vec<String>,
}

/// Starts, heartbeats and ends sessions through the nodes in turn until `stop`.
async fn load(w: usize, spread: Spread, stop: Arc<AtomicBool>) -> Load {
    let mut out = Load::default();
    let mut live: Vec<String> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (method, path, body, expect) = match (i % 4, live.last()) {
            (0, _) | (_, None) => (
                Method::POST,
                "/v1/sessions".to_string(),
                Some(json!({"kind": "plain", "user_id": format!("load{w}-{i}")})),
                201,
            ),
            (3, Some(_)) if live.len() > 2 => {
                (Method::POST, format!("/v1/sessions/{}/end", live.remove(0)), Some(json!({})), 200)
            }
            (_, Some(id)) => (Method::POST, format!("/v1/sessions/{id}/heartbeat"), None, 200),
        };
        match spread.send(method.clone(), &path, API_KEY, body.as_ref()).await {
            Err(closed) => {
                out.failures.push(format!("{method} {path}: no node answered: {closed:?}"));
            }
            Ok(via) => {
                out.closed.extend(via.closed.iter().cloned());
                if let Err(e) = spread.verdict(&method, &path, &via.resp) {
                    out.failures.push(format!("node {}: {e}", via.node));
                } else if via.resp.status.as_u16() != expect {
                    out.failures.push(format!(
                        "node {}: {method} {path} answered {}: {}",
                        via.node, via.resp.status, via.resp.text
                    ));
                } else {
                    out.ok += 1;
                    if expect == 201 {
                        let id = id_of(&via.resp.body["session"]);
                        out.started.push(id.clone());
                        live.push(id);
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_and_the_node_exits_0_within_10_s() {
    if pg_off() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, "").await;
    let holder = cluster.await_leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    let (watcher, second) = (followers[0], followers[1]);
    let mut watch = cluster.app(watcher).sse(API_KEY, "?kind=late", None).await;
    let spread = cluster.spread();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4).map(|w| tokio::spawn(load(w, spread.clone(), stop.clone()))).collect();

    // Deadlines that keep falling through both hand-overs: a `late` (idle 400 ms) session every 100 ms.
    let probe_stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (spread, probe_stop) = (spread.clone(), probe_stop.clone());
        tokio::spawn(async move {
            let mut deadlines = HashMap::new();
            let mut k = 0;
            while !probe_stop.load(Ordering::Relaxed) {
                k += 1;
                let body = json!({"kind": "late", "user_id": format!("late{k}")});
                let via = spread.call(Method::POST, "/v1/sessions", API_KEY, Some(body)).await;
                let session = &via.resp.expect(201)["session"];
                deadlines.insert(id_of(session), ts(&session["expires_at"]));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            deadlines
        })
    };

    let mut exits = Vec::new();
    for node in [holder, second] {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let began = Instant::now();
        cluster.sigterm(node);
        let status = cluster.wait_exit(node, Duration::from_secs(10)).await;
        let took = began.elapsed();
        let status =
            status.unwrap_or_else(|| panic!("node {node} did not exit within 10 s of SIGTERM\n{}", cluster.logs()));
        assert!(status.success(), "node {node} exited {status:?} after SIGTERM\n{}", cluster.logs());
        let rest: Vec<usize> = cluster.running();
        let next = cluster.await_leader(&rest, Duration::from_millis(3 * LEASE_MS as u64 + 5_000)).await;
        exits.push(format!(
            "node {node} exited 0 {} ms after SIGTERM, node {next} named lease holder by every node left {} ms after it",
            took.as_millis(),
            began.elapsed().as_millis()
        ));
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    probe_stop.store(true, Ordering::Relaxed);
    let deadlines = prober.await.expect("prober");
    stop.store(true, Ordering::Relaxed);
    let mut total = Load::default();
    for w in workers {
        let l = w.await.expect("load worker");
        total.ok += l.ok;
        total.closed.extend(l.closed);
        total.failures.extend(l.failures);
        total.started.extend(l.started);
    }
    eprintln!(
        "{}; {} requests answered as expected, {} connections closed on the clients and retried elsewhere",
        exits.join("; "),
        total.ok,
        total.closed.len()
    );
    assert!(
        total.failures.is_empty(),
        "{} requests failed:\n{}\n{}",
        total.failures.len(),
        total.failures.join("\n"),
        cluster.logs()
    );
    assert!(total.ok > 100, "the load got too little done to prove anything: {}", total.ok);

    // No deadline was delayed beyond the bound by either hand-over.
    let probe_ids: HashSet<String> = deadlines.keys().cloned().collect();
    let ended = ends_of(&mut watch, &probe_ids, Duration::from_secs(3), cluster.app(watcher)).await;
    let mut lateness = Vec::new();
    for (id, e) in &ended {
        assert_eq!(e.reason(), "idle_timeout", "{}", e.data);
        lateness.push((ts(&e.data["at"]) - deadlines[id], e.received_at - deadlines[id]));
    }
    lateness.sort();
    eprintln!("probe lateness (ms, at / received): {lateness:?}");
    let worst = lateness.last().expect("probes").0;
    // A deadline that falls between the leaving owner giving the lease back
    // and its successor having loaded the state waits for that load: tens of
    // ms on a quiet machine, over 100 ms seen on two cores busy with this
    // test's load and three nodes. The bound checked is therefore HAND_OVER_MS;
    // the 100 ms bound of healthy nodes is measured by the bench.
    assert!(
        worst <= HAND_OVER_MS,
        "a deadline fired {worst} ms late across a hand-over ({}): {lateness:?}\n{}",
        exits.join("; "),
        cluster.logs()
    );

    // Every acknowledged start is there on the node left.
    let last = cluster.app(watcher);
    for id in &total.started {
        assert_eq!(last.get(&format!("/v1/sessions/{id}"), Some(API_KEY)).await.status.as_u16(), 200, "{id} is lost");
    }
}

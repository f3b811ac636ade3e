//! Webhooks (contract section 9) against the real server and a real HTTP
//! receiver in this process: signatures verified by the `standardwebhooks`
//! Python package (a library nobody here wrote), a receiver that is down
//! then up, `410`, `Retry-After`, a receiver slower than the timeout, and
//! `kill -9` with deliveries pending. Retry delays are short (`retry =
//! ["100ms", …]`) or driven by the in-process server's manual clock; the
//! 15 s timeout is lowered through the server's undocumented test knob.

mod support;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WRONG_SECRET: &str = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU=";
/// The server's attempt timeout in this binary (the knob; 15 s in production).
const TIMEOUT_MS: u64 = 1500;

fn knobs() {
    // Read by every server this test binary starts (in process, or spawned:
    // the child inherits the environment).
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("TETHER_WEBHOOK_TIMEOUT_MS", TIMEOUT_MS.to_string()));
}

/// How the receiver answers.
#[derive(Clone, Debug)]
enum Mode {
    Ok,
    Status(u16, Option<&'static str>),
    /// Answers 200 after this long (longer than the server's timeout: a failure).
    Slow(Duration),
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct Inbox {
    mode: Option<Mode>,
    got: Vec<Got>,
}

/// A local HTTP receiver on a free port.
struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, headers: HeaderMap, body: String) -> Response {
    let mode = inbox.lock().mode.clone().unwrap_or(Mode::Ok);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut got = Got {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        answered: 200,
    };
    let response = match mode {
        Mode::Ok => StatusCode::OK.into_response(),
        Mode::Status(code, retry_after) => {
            got.answered = code;
            let status = StatusCode::from_u16(code).unwrap();
            match retry_after {
                Some(r) => (status, [("retry-after", r)]).into_response(),
                None => status.into_response(),
            }
        }
        Mode::Slow(wait) => {
            got.answered = 0; // the server gives up first
            inbox.lock().got.push(got);
            tokio::time::sleep(wait).await;
            return StatusCode::OK.into_response();
        }
    };
    inbox.lock().got.push(got);
    response
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox { mode: Some(mode), got: Vec::new() }));
        let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { url, inbox, task }
    }

    fn set(&self, mode: Mode) {
        self.inbox.lock().mode = Some(mode);
    }

    fn got(&self) -> Vec<Got> {
        self.inbox.lock().got.clone()
    }

    /// Requests answered 2xx, by event id.
    fn delivered(&self) -> BTreeMap<u64, Got> {
        self.got().into_iter().filter(|g| g.answered == 200).map(|g| (g.id.parse().unwrap(), g)).collect()
    }

    async fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&[Got]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if pred(&self.got()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out waiting for {what}; the receiver got {:#?}", self.got());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(hooks: &[(&str, &str)]) -> String {
    let mut text = config_text();
    for (url, extra) in hooks {
        text.push_str(&format!("\n[[webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n"));
    }
    text
}

/// Every event of this run, from the API key's event stream replayed from the start.
async fn published(app: &TestApp) -> Vec<Event> {
    let mut stream = app.sse(app.key(), "", Some(0)).await;
    let mut out = Vec::new();
    while let Next::Event(e) = stream.next(Duration::from_millis(300)).await {
        if e.event != "stream.gap" {
            out.push(e);
        }
    }
    out
}

/// Runs `python3` with `standardwebhooks` on the receiver's requests; returns (verified, refused).
fn verify_with_python(secret: &str, got: &[Got]) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let items: Vec<Value> = got
        .iter()
        .map(|g| json!({"id": g.id, "timestamp": g.timestamp, "signature": g.signature, "body": g.body}))
        .collect();
    let file = dir.path().join("requests.json");
    std::fs::write(&file, serde_json::to_string(&items).unwrap()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
hook = Webhook(sys.argv[1])
ok = bad = 0
for r in json.load(open(sys.argv[2])):
    headers = {"webhook-id": r["id"], "webhook-timestamp": r["timestamp"], "webhook-signature": r["signature"]}
    try:
        payload = hook.verify(r["body"], headers)
        assert str(payload["id"]) == r["id"], "webhook-id is the event id"
        ok += 1
    except Exception as e:
        bad += 1
print(json.dumps({"ok": ok, "bad": bad}))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/test-all installs standardwebhooks)");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["ok"].as_u64().unwrap(), v["bad"].as_u64().unwrap())
}

/// The admin view of the endpoints (checked against /openapi.json by the harness).
async fn endpoints(app: &TestApp) -> Vec<Value> {
    app.get("/v1/admin/webhooks", Some(app.key())).await.expect(200)["endpoints"].as_array().unwrap().clone()
}

async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/admin/webhooks/deliveries?{query}"), Some(app.key())).await;
    r.expect(200)["deliveries"].as_array().unwrap().clone()
}

/// A small story of the interview and marketplace seeds: start, a
/// participant joins and leaves, a completing phase, ends; a request that
/// waits for a mechanic and times out. Returns the session ids.
async fn story(app: &TestApp, user: &str) -> Vec<String> {
    let interview = app.start_for(user, "interview").await;
    let id = id_of(&interview);
    let grader_id = format!("grader-{user}");
    let grader = user_token(&grader_id);
    let join = json!({"user_id": grader_id, "name": "Grader"});
    app.post(&format!("/v1/sessions/{id}/participants"), Some(app.key()), join).await.expect(201);
    app.delete(&format!("/v1/sessions/{id}/participants/me"), Some(&grader)).await.expect(200);
    app.post_empty(&format!("/v1/sessions/{id}/end"), Some(app.key())).await.expect(200);
    let chat = app.start_for(user, "plain").await;
    let chat_id = id_of(&chat);
    app.post_empty(&format!("/v1/sessions/{chat_id}/end"), Some(app.key())).await.expect(200);
    vec![id, chat_id]
}

#[tokio::test]
async fn every_event_of_a_story_arrives_signed_and_verifies_with_standardwebhooks() {
    knobs();
    let receiver = Receiver::start(Mode::Ok).await;
    let app = TestApp::start_with_config(&config(&[(&receiver.url, "")])).await;
    let ids = story(&app, "alice").await;
    let events = published(&app).await;
    let wanted: Vec<&Event> = events.iter().filter(|e| ids.iter().any(|id| id == e.session_id())).collect();
    assert!(
        wanted.len() >= 5,
        "the story published its events: {:?}",
        wanted.iter().map(|e| e.short()).collect::<Vec<_>>()
    );
    receiver
        .wait_for("every event of the story", Duration::from_secs(10), |got| {
            wanted.iter().all(|e| got.iter().any(|g| g.id == e.id.unwrap().to_string()))
        })
        .await;
    let got = receiver.delivered();
    for e in &wanted {
        let g = &got[&e.id.unwrap()];
        // The body is the event exactly as on /v1/events.
        assert_eq!(g.json(), e.data, "the body of event {}", e.short());
        assert!(g.signature.starts_with("v1,"), "{g:?}");
        let ts: i64 = g.timestamp.parse().expect("webhook-timestamp is Unix seconds");
        assert!((ts - now_ms() / 1000).abs() < 60, "webhook-timestamp is now: {ts}");
    }
    let requests = receiver.got();
    let (ok, bad) = verify_with_python(SECRET, &requests);
    assert_eq!((ok, bad), (requests.len() as u64, 0), "standardwebhooks verifies every request");
    let (ok, bad) = verify_with_python(WRONG_SECRET, &requests);
    assert_eq!((ok, bad), (0, requests.len() as u64), "with the wrong secret, none verifies");
    // The admin view: all delivered, secrets nowhere.
    let eps = endpoints(&app).await;
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["url"], receiver.url.as_str());
    assert_eq!(eps[0]["state"], "active");
    assert_eq!(eps[0]["failed"], 0);
    let all = deliveries(&app, "status=delivered&limit=1000").await;
    assert!(all.len() >= wanted.len());
    assert!(all.iter().all(|d| d["attempts"] == 1 && d["last_status"] == 200 && d["next_attempt_at"].is_null()));
    let text = app.get("/v1/admin/webhooks", Some(app.key())).await.body.to_string();
    assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "no secret in answers: {text}");
    let log = std::fs::read_dir(app.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("stderr"));
    for entry in log {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "no secret in logs");
    }
    // Metrics count what happened.
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("tether_webhook_delivered_total{") && l.contains(&receiver.url))
        .unwrap_or_else(|| panic!("no delivered counter in:\n{metrics}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= wanted.len() as f64, "{line}");
    assert!(metrics.contains("tether_webhook_delivery_latency_seconds_count"), "latency histogram");
    assert!(metrics.contains("tether_webhook_queue_depth{"), "queue depth");
}

#[tokio::test]
async fn filters_by_event_type_and_kind() {
    knobs();
    let all = Receiver::start(Mode::Ok).await;
    let ends = Receiver::start(Mode::Ok).await;
    let app = TestApp::start_with_config(&config(&[
        (&all.url, ""),
        (&ends.url, "events = [\"session.ended\"]\nkinds = [\"interview\"]"),
    ]))
    .await;
    let ids = story(&app, "bob").await;
    all.wait_for("the plain session's end", Duration::from_secs(10), |got| {
        got.iter().any(|g| g.json()["type"] == "session.ended" && g.json()["session"]["id"] == ids[1].as_str())
    })
    .await;
    ends.wait_for("the interview's end", Duration::from_secs(10), |got| !got.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = ends.got();
    assert_eq!(got.len(), 1, "only session.ended of interview sessions: {got:#?}");
    assert_eq!(got[0].json()["type"], "session.ended");
    assert_eq!(got[0].json()["session"]["id"], ids[0].as_str());
}

/// The receiver is down (503, then refused connections), then up: every
/// event arrives, in order per session, each `webhook-id` the same on every attempt.
#[tokio::test]
async fn receiver_down_then_up_gets_everything_in_order_per_session() {
    knobs();
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let app = TestApp::start_with_config(&config(&[(&receiver.url, "retry = [\"100ms\", \"200ms\", \"300ms\", \"400ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\"]")])).await;
    let mut ids = Vec::new();
    for user in ["u1", "u2", "u3"] {
        ids.extend(story(&app, user).await);
    }
    receiver.wait_for("a few failed attempts", Duration::from_secs(10), |got| got.len() >= 12).await;
    let pending = deliveries(&app, "status=pending&limit=1000").await;
    assert!(!pending.is_empty());
    for d in &pending {
        if d["attempts"] == 0 {
            // Queued behind its session's first event.
            assert!(d["last_status"].is_null() && d["last_error"].is_null(), "{d}");
        } else {
            assert!(d["last_status"] == 503 && d["last_error"].as_str().unwrap().contains("503"), "{d}");
        }
        assert!(d["next_attempt_at"].is_string(), "{d}");
    }
    assert!(pending.iter().any(|d| d["attempts"] == 0), "later events wait: {pending:#?}");
    let eps = endpoints(&app).await;
    assert!(eps[0]["pending"].as_u64().unwrap() > 0);
    assert!(eps[0]["last_error"].as_str().unwrap_or("").contains("503"), "{eps:?}");
    // While it answers 503, only the oldest event of each session is attempted.
    let events = published(&app).await;
    let mine: Vec<&Event> = events.iter().filter(|e| ids.iter().any(|id| id == e.session_id())).collect();
    let firsts: Vec<String> = ids
        .iter()
        .filter_map(|id| mine.iter().find(|e| e.session_id() == id).map(|e| e.id.unwrap().to_string()))
        .collect();
    for g in receiver.got() {
        assert!(firsts.contains(&g.id), "only each session's first event is tried while it fails, got {}", g.id);
    }
    receiver.set(Mode::Ok);
    receiver
        .wait_for("every event", Duration::from_secs(20), |got| {
            mine.iter().all(|e| got.iter().any(|g| g.answered == 200 && g.id == e.id.unwrap().to_string()))
        })
        .await;
    // Per session, first deliveries are in event order; each request's id is its event's id.
    let got = receiver.got();
    for id in &ids {
        let order: Vec<u64> = got
            .iter()
            .filter(|g| g.answered == 200 && g.json()["session"]["id"] == id.as_str())
            .map(|g| g.id.parse().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(order, sorted, "session {id}: delivered in order, each once");
    }
    for g in &got {
        assert_eq!(g.json()["id"].to_string(), g.id, "webhook-id is the event id on every attempt");
    }
    let (ok, bad) = verify_with_python(SECRET, &got);
    assert_eq!(bad, 0, "every attempt is signed");
    assert_eq!(ok, got.len() as u64);
    let eps = endpoints(&app).await;
    assert_eq!((eps[0]["pending"].as_u64(), eps[0]["failed"].as_u64()), (Some(0), Some(0)), "{eps:?}");
    assert!(eps[0]["last_error"].is_null(), "cleared by a success: {eps:?}");
}

/// After the last retry the delivery is failed; an operator's retry sends it again.
#[tokio::test]
async fn exhausted_retries_fail_and_an_admin_retry_delivers() {
    knobs();
    let receiver = Receiver::start(Mode::Status(500, None)).await;
    let app =
        TestApp::start_with_config(&config(&[(&receiver.url, "retry = [\"50ms\"]\nevents = [\"session.started\"]")]))
            .await;
    let s = app.start_for("carol", "plain").await;
    let failed = loop {
        let failed = deliveries(&app, "status=failed").await;
        if !failed.is_empty() {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.len(), 1);
    let d = &failed[0];
    assert_eq!(d["attempts"], 2, "the first attempt and one retry");
    assert_eq!(d["last_status"], 500);
    assert_eq!(d["session_id"], id_of(&s).as_str());
    let eps = endpoints(&app).await;
    assert_eq!((eps[0]["failed"].as_u64(), eps[0]["state"].as_str()), (Some(1), Some("active")));
    // Retrying something not failed is 409; an unknown id 404; not a number 400; a user 403.
    let id = d["id"].as_u64().unwrap();
    receiver.set(Mode::Ok);
    let r = app.post_empty(&format!("/v1/admin/webhooks/deliveries/{id}/retry"), Some(app.key())).await;
    assert_eq!(r.expect(200)["status"], "pending");
    receiver
        .wait_for("the retried delivery", Duration::from_secs(5), |got| got.iter().any(|g| g.answered == 200))
        .await;
    let ok = loop {
        let ok = deliveries(&app, "status=delivered").await;
        if !ok.is_empty() {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ok[0]["id"], id);
    assert_eq!(ok[0]["attempts"], 3);
    let got = receiver.got();
    assert!(got.iter().all(|g| g.id == got[0].id), "the same webhook-id on every attempt");
    app.post_empty(&format!("/v1/admin/webhooks/deliveries/{id}/retry"), Some(app.key()))
        .await
        .problem(409, &["delivered"]);
    app.post_empty("/v1/admin/webhooks/deliveries/999999/retry", Some(app.key())).await.problem(404, &[]);
    app.post_empty("/v1/admin/webhooks/deliveries/abc/retry", Some(app.key())).await.problem(400, &["abc"]);
    let user = user_token("carol");
    app.get("/v1/admin/webhooks", Some(&user)).await.problem(403, &[]);
    app.get("/v1/admin/webhooks/deliveries", Some(&user)).await.problem(403, &[]);
    app.get("/v1/admin/webhooks/deliveries?status=lost", Some(app.key())).await.problem(422, &["status"]);
    app.get("/v1/admin/webhooks/deliveries?limit=0", Some(app.key())).await.problem(422, &["limit"]);
    app.get("/v1/admin/webhooks/deliveries?cursor=x", Some(app.key())).await.problem(422, &["cursor"]);
}

#[tokio::test]
async fn deliveries_page_with_a_cursor() {
    knobs();
    let receiver = Receiver::start(Mode::Ok).await;
    let app = TestApp::start_with_config(&config(&[(&receiver.url, "")])).await;
    for user in ["p1", "p2", "p3"] {
        app.start_for(user, "plain").await;
    }
    receiver.wait_for("three starts", Duration::from_secs(10), |got| got.len() >= 3).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app.get(&format!("/v1/admin/webhooks/deliveries?limit=1&cursor={cursor}"), Some(app.key())).await;
        let page = page.expect(200).clone();
        seen.extend(page["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert!(seen.len() >= 3 && seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// `410 Gone` disables the endpoint: its pending deliveries fail, new events
/// make none; retrying a failed one turns it back on.
#[tokio::test]
async fn gone_disables_the_endpoint_until_a_retry() {
    knobs();
    let receiver = Receiver::start(Mode::Status(410, None)).await;
    let app = TestApp::start_with_config(&config(&[(&receiver.url, "retry = [\"50ms\", \"50ms\"]")])).await;
    let s = app.start_for("dave", "plain").await;
    let id = id_of(&s);
    app.post_empty(&format!("/v1/sessions/{id}/end"), Some(app.key())).await.expect(200);
    let eps = loop {
        let eps = endpoints(&app).await;
        if eps[0]["state"] == "disabled" {
            break eps;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(eps[0]["last_error"].as_str().unwrap().contains("410"), "{eps:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1, "one request, answered 410; nothing after");
    // The session's later events (activated, ended) made deliveries if they were
    // read before the 410 came back: those failed unattempted.
    let failed = deliveries(&app, "status=failed").await;
    assert!(!failed.is_empty() && failed.iter().all(|d| d["session_id"] == id.as_str()), "{failed:#?}");
    assert!(deliveries(&app, "status=pending").await.is_empty());
    assert!(failed.iter().skip(1).all(|d| d["attempts"] == 0), "none attempted after the 410: {failed:#?}");
    // New events make no deliveries while disabled.
    app.start_for("erin", "plain").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(deliveries(&app, "").await.len(), failed.len());
    // The operator retries the first: the endpoint is on again and gets it.
    receiver.set(Mode::Ok);
    let first = failed[0]["id"].as_u64().unwrap();
    app.post_empty(&format!("/v1/admin/webhooks/deliveries/{first}/retry"), Some(app.key())).await.expect(200);
    receiver
        .wait_for("the retried delivery", Duration::from_secs(5), |got| got.iter().any(|g| g.answered == 200))
        .await;
    assert_eq!(endpoints(&app).await[0]["state"], "active");
    // And it survives a restart: the state is in the store.
}

/// A receiver slower than the timeout is a failed attempt, retried.
#[tokio::test]
async fn a_slow_receiver_counts_as_a_failure_and_is_retried() {
    knobs();
    let receiver = Receiver::start(Mode::Slow(Duration::from_millis(TIMEOUT_MS + 1500))).await;
    let app = TestApp::start_with_config(&config(&[(
        &receiver.url,
        "retry = [\"100ms\", \"100ms\", \"100ms\"]\nevents = [\"session.started\"]",
    )]))
    .await;
    app.start_for("frank", "plain").await;
    let started = std::time::Instant::now();
    receiver.wait_for("a first attempt", Duration::from_secs(5), |got| !got.is_empty()).await;
    let pending = loop {
        let p = deliveries(&app, "status=pending").await;
        if p.first().is_some_and(|d| d["attempts"] == 1) {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no timed-out attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(started.elapsed() >= Duration::from_millis(TIMEOUT_MS - 200), "it waited for the timeout");
    assert!(pending[0]["last_status"].is_null());
    assert!(pending[0]["last_error"].as_str().unwrap().contains("timed out"), "{pending:?}");
    receiver.set(Mode::Ok);
    receiver.wait_for("the retry", Duration::from_secs(10), |got| got.iter().any(|g| g.answered == 200)).await;
    let got = receiver.got();
    assert!(got.len() >= 2 && got.iter().all(|g| g.id == got[0].id), "retried with the same webhook-id: {got:#?}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("tether_webhook_attempts_total{") && l.contains("outcome=\"timeout\"")),
        "{metrics}"
    );
}

/// `429` with `Retry-After` waits the longer of it and the schedule; measured
/// on the in-process server's manual clock, so nothing sleeps for it.
#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_schedule() {
    knobs();
    let receiver = Receiver::start(Mode::Status(429, Some("30"))).await;
    let app = TestApp::in_process_with_config(&config(&[(
        &receiver.url,
        "retry = [\"1s\", \"1s\"]\nevents = [\"session.started\"]",
    )]))
    .await;
    app.start_for("gina", "plain").await;
    receiver.wait_for("the first attempt", Duration::from_secs(5), |got| got.len() == 1).await;
    receiver.set(Mode::Ok);
    // Wait until the outcome is recorded, then move past the schedule's 1 s: not yet.
    loop {
        let p = deliveries(&app, "status=pending").await;
        if p.first().is_some_and(|d| d["attempts"] == 1) {
            let next = ts(&p[0]["next_attempt_at"]);
            assert!(next - app.now() >= 29_000, "30 s after the attempt: {p:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.got().len(), 1, "not retried before Retry-After");
    app.advance(Duration::from_secs(29));
    receiver.wait_for("the retry after 30 s", Duration::from_secs(5), |got| got.len() == 2).await;
    assert_eq!(receiver.got()[1].answered, 200);
}

/// kill -9 while deliveries are pending: after the restart every one is delivered.
#[tokio::test]
async fn kill9_with_deliveries_pending_loses_none() {
    knobs();
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let mut app = TestApp::start_with_config(&config(&[(&receiver.url, "retry = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]")])).await;
    let mut ids = Vec::new();
    for user in ["k1", "k2", "k3", "k4"] {
        ids.extend(story(&app, user).await);
    }
    let events = published(&app).await;
    let mine: Vec<(u64, String)> = events
        .iter()
        .filter(|e| ids.iter().any(|id| id == e.session_id()))
        .map(|e| (e.id.unwrap(), e.session_id().to_string()))
        .collect();
    // Every event has its delivery (durable) before the kill.
    loop {
        let all = deliveries(&app, "limit=1000").await;
        if mine.iter().all(|(id, _)| all.iter().any(|d| d["event_id"] == *id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill9();
    receiver.set(Mode::Ok);
    app.restart().await;
    receiver
        .wait_for("every event after the restart", Duration::from_secs(20), |got| {
            mine.iter().all(|(id, _)| got.iter().any(|g| g.answered == 200 && g.id == id.to_string()))
        })
        .await;
    let got = receiver.got();
    for g in &got {
        assert_eq!(g.json()["id"].to_string(), g.id, "the same webhook-id before and after the crash");
    }
    for id in &ids {
        let order: Vec<u64> = got
            .iter()
            .filter(|g| g.answered == 200 && g.json()["session"]["id"] == id.as_str())
            .map(|g| g.id.parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "session {id} in order: {order:?}");
    }
    let (ok, bad) = verify_with_python(SECRET, &got);
    assert_eq!((ok, bad), (got.len() as u64, 0));
}

/// kill -9 right after the answers, before the worker may have read the
/// events: they are in the event log with their changes, so after the
/// restart the worker reads them (its cursor is durable) and delivers all.
#[tokio::test]
async fn kill9_right_after_the_changes_loses_no_event() {
    knobs();
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let mut app = TestApp::start_with_config(&config(&[(&receiver.url, "retry = [\"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\", \"100ms\"]")])).await;
    let mut ids = Vec::new();
    for user in ["q1", "q2", "q3"] {
        ids.extend(story(&app, user).await);
    }
    let events = published(&app).await;
    let mine: Vec<u64> =
        events.iter().filter(|e| ids.iter().any(|id| id == e.session_id())).map(|e| e.id.unwrap()).collect();
    app.kill9();
    receiver.set(Mode::Ok);
    app.restart().await;
    receiver
        .wait_for("every committed event after the restart", Duration::from_secs(20), |got| {
            mine.iter().all(|id| got.iter().any(|g| g.answered == 200 && g.id == id.to_string()))
        })
        .await;
    // Nothing twice as a delivery: one row per endpoint and event.
    let all = deliveries(&app, "limit=1000").await;
    let mut event_ids: Vec<u64> = all.iter().map(|d| d["event_id"].as_u64().unwrap()).collect();
    let n = event_ids.len();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(event_ids.len(), n, "one delivery per event");
}

#[tokio::test]
async fn a_bad_secret_stops_the_server_naming_the_key() {
    let text = format!("{}\n[[webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"not-a-secret\"\n", config_text());
    let (status, stderr) = TestApp::spawn_expect_failure(&text);
    assert!(!status.success());
    assert!(stderr.contains("webhooks[0].secret") && stderr.contains("whsec_"), "{stderr}");
    assert!(!stderr.contains("not-a-secret"), "the secret is not repeated: {stderr}");
}

/// The delivery table behaves the same on every store: unique per endpoint
/// and event (a re-read batch creates nothing twice), the cursor moves with
/// the batch, updates, listing by status with a cursor, counts, reopen.
#[test]
fn every_store_keeps_deliveries_the_same_way() {
    use tether::store::{DeliveryStatus, NewDelivery, WEBHOOK_CURSOR};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("t.db").display());
    let schema = pg_base().map(|_| support::postgres::PgSchema::new("webhooks"));
    let mut urls = vec!["memory".to_string(), sqlite];
    urls.extend(schema.as_ref().map(|s| s.url()));
    for url in urls {
        let store = tether::store::open(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let new = |url: &str, event_id: u64, session: &str| NewDelivery {
            url: url.to_string(),
            event_id,
            session_id: session.to_string(),
            body: format!("{{\"id\":{event_id}}}"),
            created_at: 1_000 + event_id as i64,
        };
        let batch = [new("http://a/", 10, "s1"), new("http://b/", 10, "s1"), new("http://a/", 11, "s2")];
        let first = store.webhook_enqueue(&batch, 11).unwrap();
        assert_eq!(first.len(), 3, "{url}");
        assert!(first.iter().all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0), "{url}: {first:?}");
        assert_eq!(first[0].next_attempt_at, Some(1_010), "{url}");
        assert_eq!(store.meta_get(WEBHOOK_CURSOR).unwrap().as_deref(), Some("11"), "{url}");
        // The same batch again (a crash before the cursor moved): the same rows.
        let again = store.webhook_enqueue(&batch, 11).unwrap();
        assert_eq!(again.iter().map(|d| d.id).collect::<Vec<_>>(), first.iter().map(|d| d.id).collect::<Vec<_>>());
        assert_eq!(store.webhook_list(None, 0, 100).unwrap().len(), 3, "{url}");
        let mut d = store.webhook_get(first[1].id).unwrap().expect("stored");
        assert_eq!(d.body, "{\"id\":10}", "{url}");
        d.status = DeliveryStatus::Failed;
        d.attempts = 3;
        d.last_status = Some(503);
        d.last_error = Some("HTTP 503".into());
        d.next_attempt_at = None;
        store.webhook_update(std::slice::from_ref(&d)).unwrap();
        let got = store.webhook_get(d.id).unwrap().unwrap();
        assert_eq!(got, d, "{url}");
        let pending = store.webhook_pending().unwrap();
        assert_eq!(pending.iter().map(|d| d.id).collect::<Vec<_>>(), vec![first[0].id, first[2].id], "{url}");
        assert!(pending.iter().all(|d| d.body.is_empty()), "listed without bodies");
        let failed = store.webhook_list(Some(DeliveryStatus::Failed), 0, 10).unwrap();
        assert_eq!(failed.len(), 1, "{url}");
        let page = store.webhook_list(None, first[0].id, 1).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, first[1].id, "{url}: cursor paging");
        let mut counts = store.webhook_counts().unwrap();
        counts.sort();
        assert_eq!(counts, vec![("http://a/".to_string(), 2, 0), ("http://b/".to_string(), 0, 1)], "{url}");
        if url != "memory" {
            drop(store);
            let store = tether::store::open(&url).unwrap();
            assert_eq!(store.webhook_pending().unwrap().len(), 2, "{url}: durable");
            assert_eq!(store.meta_get(WEBHOOK_CURSOR).unwrap().as_deref(), Some("11"));
        }
    }
}

// ---- the examples (issue 9 item 5): each receiver run against the real server ----

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The `[[webhooks]]` entry of an example config, pointed at `url`, and its secret.
fn example_hook(file: &str, url: &str) -> (String, String) {
    let text = std::fs::read_to_string(examples_dir().join(file)).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut hook = doc["webhooks"].as_array().expect("the example has [[webhooks]]")[0].as_table().unwrap().clone();
    let secret = hook["secret"].as_str().unwrap().to_string();
    hook.insert("url".into(), toml::Value::String(url.to_string()));
    let mut wrapper = toml::Table::new();
    wrapper.insert("webhooks".into(), toml::Value::Array(vec![toml::Value::Table(hook)]));
    (toml::to_string(&wrapper).unwrap(), secret)
}

/// A receiver example as a child process, its stdout lines on a channel.
struct ExampleReceiver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
}

impl Drop for ExampleReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExampleReceiver {
    async fn start(program: &str, script: &str, secret: &str) -> ExampleReceiver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = examples_dir().join("webhooks");
        let mut child = std::process::Command::new(program)
            .arg(script)
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("TETHER_WEBHOOK_SECRET", secret)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} {script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Ready once it accepts connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{script} exited at start ({status}); scripts/test-all installs its dependencies");
            }
            assert!(std::time::Instant::now() < deadline, "{script} did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ExampleReceiver { child, lines, port }
    }

    /// Waits until it printed a verified event for each `(type, session id)`; returns everything it printed.
    async fn wait_verified(&self, want: &[(&str, &str)]) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut printed: Vec<Value> = Vec::new();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    printed.push(v);
                }
            }
            let has = |(t, s): &(&str, &str)| {
                printed.iter().any(|v| v["verified"] == true && v["type"] == *t && v["session"] == *s)
            };
            if want.iter().all(has) {
                return printed;
            }
            assert!(std::time::Instant::now() < deadline, "the receiver printed {printed:#?}, wanted {want:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The marketplace's request kind: accepted by a mechanic then ended; another nobody takes.
async fn marketplace_story(app: &TestApp) -> Vec<(&'static str, String)> {
    let accepted = id_of(&app.start_for("customer-1", "request").await);
    let join = json!({"user_id": "mechanic-1", "name": "Mechanic"});
    app.post(&format!("/v1/sessions/{accepted}/participants"), Some(app.key()), join).await.expect(201);
    app.post_empty(&format!("/v1/sessions/{accepted}/end"), Some(app.key())).await.expect(200);
    let untaken = id_of(&app.start_for("customer-2", "request").await);
    vec![("participant.joined", accepted.clone()), ("session.ended", accepted), ("session.ended", untaken)]
}

/// The interview kind: submitted (completing), then ended by its completing timeout.
async fn interview_story(app: &TestApp) -> Vec<(&'static str, String)> {
    let id = id_of(&app.start_for("student-1", "interview").await);
    app.post_empty(&format!("/v1/sessions/{id}/complete"), Some(app.key())).await.expect(200);
    vec![("session.completing", id.clone()), ("session.ended", id)]
}

async fn run_example(program: &str, script: &str, path: &str, config_file: &str, marketplace: bool) {
    knobs();
    let (_, secret) = example_hook(config_file, "http://127.0.0.1:1/");
    let receiver = ExampleReceiver::start(program, script, &secret).await;
    let url = format!("http://127.0.0.1:{}{path}", receiver.port);
    let (block, _) = example_hook(config_file, &url);
    let app = TestApp::start_with_config(&format!("{}\n{block}", config_text())).await;
    let want = if marketplace { marketplace_story(&app).await } else { interview_story(&app).await };
    let want: Vec<(&str, &str)> = want.iter().map(|(t, s)| (*t, s.as_str())).collect();
    let printed = receiver.wait_verified(&want).await;
    assert!(printed.iter().all(|v| v["verified"] == true), "every request verified: {printed:#?}");
    // The example's filters hold: only its kind, only its event types.
    let kind = if marketplace { "request" } else { "interview" };
    assert!(printed.iter().all(|v| v["kind"] == kind), "{printed:#?}");
    // And it refuses a forged request.
    let forged = reqwest::Client::new()
        .post(&url)
        .header("webhook-id", "1")
        .header("webhook-timestamp", (now_ms() / 1000).to_string())
        .header("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body(r#"{"id":1,"type":"session.ended","session":{"id":"x","kind":"request"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400, "{script} refuses a bad signature");
}

#[tokio::test]
async fn the_python_receiver_example_verifies_the_marketplace_events() {
    run_example("python3", "receiver.py", "/tether", "mechanic-marketplace.toml", true).await;
}

#[tokio::test]
async fn the_node_receiver_example_verifies_the_interview_events() {
    run_example("node", "receiver.mjs", "/api/tether", "ai-interview.toml", false).await;
}

/// Two nodes on one PostgreSQL schema: only the owner sends, so each event is
/// delivered once; when the owner is killed with deliveries pending, the
/// other node takes the work over and delivers them.
#[tokio::test]
async fn a_cluster_delivers_each_event_once_and_survives_the_owner() {
    knobs();
    if pg_base().is_none() {
        return; // PostgreSQL switched off (TETHER_TEST_POSTGRES=off)
    }
    let schema = support::postgres::PgSchema::new("webhooks_cluster");
    let receiver = Receiver::start(Mode::Ok).await;
    let retry = vec!["\"200ms\""; 40].join(", ");
    let mut text = config(&[(&receiver.url, &format!("retry = [{retry}]"))]);
    text.push_str("\n[cluster]\nlease = \"1s\"\n");
    let mut first = support::store_server::StoreServer::start(&schema.url(), &text).await;
    let second = support::store_server::StoreServer::start(&schema.url(), &text).await;
    let mut sessions = Vec::new();
    for user in ["c1", "c2", "c3"] {
        sessions.push(cluster_start(&second, user).await);
    }
    receiver
        .wait_for("the starts", Duration::from_secs(20), |got| {
            sessions.iter().all(|s| got.iter().any(|g| g.json()["session"]["id"] == s.as_str()))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = receiver.got();
    let mut ids: Vec<&str> = got.iter().map(|g| g.id.as_str()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "one node sends: each event once: {got:#?}");
    // The receiver goes down, deliveries pile up, the owner dies.
    receiver.set(Mode::Status(503, None));
    let mut later = Vec::new();
    for user in ["c4", "c5"] {
        later.push(cluster_start(&second, user).await);
    }
    receiver.wait_for("failing attempts", Duration::from_secs(10), |got| got.iter().any(|g| g.answered == 503)).await;
    first.kill9();
    receiver.set(Mode::Ok);
    receiver
        .wait_for("the later starts, after the takeover", Duration::from_secs(30), |got| {
            later.iter().all(|s| got.iter().any(|g| g.answered == 200 && g.json()["session"]["id"] == s.as_str()))
        })
        .await;
    drop(second);
}

async fn cluster_start(server: &support::store_server::StoreServer, user: &str) -> String {
    let body = json!({"kind": "plain", "user_id": user});
    let r = server.call(reqwest::Method::POST, "/v1/sessions", Some(body)).await;
    assert_eq!(r.status, 201, "start for {user}: {}", r.text);
    r.body["session"]["id"].as_str().unwrap().to_string()
}

//! `/metrics` read the way Prometheus reads it: the real server is driven
//! through requests that end sessions for several reasons, then scraped, and
//! the text is parsed by the reference parser of the Prometheus text format
//! (Python's `prometheus_client`, run through `python3`), not by a parser of
//! ours. Label escaping, which no request can reach (kind names, routes and
//! methods allow neither `"` nor `\`), is round-tripped through the same
//! parser from the library's own encoder.

mod support;

use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use support::*;
use tether_engine::Status;

/// Parses Prometheus text from stdin with `prometheus_client` and prints the
/// families as JSON (values as strings: JSON has no `+Inf`).
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([
    {"name": f.name, "type": f.type,
     "samples": [{"name": s.name, "labels": s.labels, "value": repr(s.value)} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]))
"#;

#[derive(Debug, Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

impl Sample {
    fn value(&self) -> f64 {
        self.value.parse().unwrap_or_else(|_| panic!("{:?} is not a number", self.value))
    }
    fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

struct Scrape(Vec<Family>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut child = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("this test needs python3 on PATH");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("No module named 'prometheus_client'"),
            "this test needs Python's prometheus_client: pip install prometheus-client"
        );
        assert!(out.status.success(), "prometheus_client refused the scrape: {stderr}\n{text}");
        Scrape(serde_json::from_slice(&out.stdout).expect("the parser's JSON"))
    }

    fn family(&self, name: &str, kind: &str) -> &Family {
        let f = self.0.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no family {name}"));
        assert_eq!(f.kind, kind, "type of {name}");
        f
    }

    /// The value of the one sample named `sample` with these labels.
    fn value(&self, sample: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> =
            self.0.iter().flat_map(|f| &f.samples).filter(|s| s.name == sample && s.has(labels)).collect();
        assert_eq!(found.len(), 1, "{sample} {labels:?}: {found:?}");
        found[0].value()
    }
}

#[tokio::test]
async fn a_real_scrape_parses_with_the_families_labels_and_values_of_what_happened() {
    let app = TestApp::start().await;
    let mut events = app.sse(API_KEY, "", None).await;

    let stays = id_of(&app.start_for("mia", "plain").await);
    let ended = id_of(&app.start_for("ned", "plain").await);
    app.post(&format!("/v1/sessions/{ended}/end"), Some(API_KEY), json!({})).await.expect(200);
    let superseded = id_of(&app.start_for("sam", "swipe").await);
    app.start_for("sam", "swipe").await;
    let idle = id_of(&app.start_for("lou", "late").await);
    let waiting = id_of(&app.start_for("rex", "request").await);
    for _ in 0..2 {
        app.post_empty(&format!("/v1/sessions/{stays}/heartbeat"), Some(&user_token("mia"))).await.expect(200);
    }
    app.get("/v1/sessions/no-such-session", Some(API_KEY)).await.expect(404);
    let raw = app.client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 404);

    for (id, reason) in
        [(&ended, "ended"), (&superseded, "superseded"), (&idle, "idle_timeout"), (&waiting, "waiting_timeout")]
    {
        let e = events.wait_event(ms(5000), "session.ended", id).await;
        assert_eq!(e.reason(), reason, "{}", e.short());
    }

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.text().await.unwrap();
    let m = Scrape::parse(&text);

    for (name, kind) in [
        ("tether_sessions_live", "gauge"),
        ("tether_sessions_ended", "counter"),
        ("tether_expiry_lateness_seconds", "histogram"),
        ("tether_http_request_duration_seconds", "histogram"),
        ("tether_http_requests", "counter"),
        ("tether_heartbeats", "counter"),
        ("tether_matching_pool_users", "gauge"),
        ("tether_matching_pairs", "counter"),
        ("tether_matching_time_to_pair_seconds", "histogram"),
        ("tether_call_signals_relayed", "counter"),
        ("tether_webrtc_setup_seconds", "histogram"),
    ] {
        m.family(name, kind);
    }

    // Ends by kind and reason: one of each, and nothing else.
    let ends = m.family("tether_sessions_ended", "counter");
    assert_eq!(ends.samples.len(), 4, "{ends:?}");
    for (kind, reason) in
        [("plain", "ended"), ("swipe", "superseded"), ("late", "idle_timeout"), ("request", "waiting_timeout")]
    {
        assert_eq!(m.value("tether_sessions_ended_total", &[("kind", kind), ("reason", reason)]), 1.0);
    }

    // Live sessions: every kind at every live status, zeros included.
    let live = m.family("tether_sessions_live", "gauge");
    let kinds: std::collections::BTreeSet<&str> = live.samples.iter().map(|s| s.labels["kind"].as_str()).collect();
    assert!(kinds.len() > 4, "{kinds:?}");
    assert_eq!(live.samples.len(), kinds.len() * 3, "{live:?}");
    for (kind, status, n) in [
        ("plain", Status::Active, 1.0),
        ("swipe", Status::Active, 1.0),
        ("late", Status::Active, 0.0),
        ("request", Status::Waiting, 0.0),
        ("job", Status::Completing, 0.0),
    ] {
        assert_eq!(m.value("tether_sessions_live", &[("kind", kind), ("status", status.as_str())]), n, "{kind}");
    }

    // Two deadline-driven ends measured; the histogram is whole.
    assert_eq!(m.value("tether_expiry_lateness_seconds_count", &[]), 2.0);
    assert_eq!(m.value("tether_expiry_lateness_seconds_bucket", &[("le", "+Inf")]), 2.0);
    assert!(m.value("tether_expiry_lateness_seconds_sum", &[]) >= 0.0);

    // Requests by route template, never by raw path; the latency histogram saw each of them.
    let session = "/v1/sessions/{id}";
    assert_eq!(m.value("tether_http_requests_total", &[("method", "GET"), ("route", session), ("status", "404")]), 1.0);
    let end = "/v1/sessions/{id}/end";
    assert_eq!(m.value("tether_http_requests_total", &[("method", "POST"), ("route", end), ("status", "200")]), 1.0);
    let created = [("method", "POST"), ("route", "/v1/sessions"), ("status", "201")];
    assert_eq!(m.value("tether_http_requests_total", &created), 6.0);
    assert_eq!(m.value("tether_http_requests_total", &[("route", "other"), ("status", "404")]), 1.0);
    let requests = m.family("tether_http_requests", "counter");
    for s in &requests.samples {
        let route = &s.labels["route"];
        assert!(route == "other" || !route.contains("no-such") && !route.contains(&stays), "raw path as route: {s:?}");
    }
    let answered: f64 = requests.samples.iter().map(Sample::value).sum();
    assert_eq!(m.value("tether_http_request_duration_seconds_count", &[]), answered);

    assert_eq!(m.value("tether_heartbeats_total", &[]), 2.0);
    assert_eq!(m.value("tether_matching_pool_users", &[]), 0.0);
    assert_eq!(m.value("tether_matching_pairs_total", &[]), 0.0);
}

#[test]
fn every_label_value_survives_the_reference_parser() {
    let kind = "a \"quoted\" kind\\with a backslash\nand a newline";
    let route = "/odd/{\"id\"}\\";
    let metrics = tether::metrics::Metrics::default();
    metrics.count_end(kind, "ended", 3);
    metrics.count_request("GET", route, 200);
    let text = metrics.render([(kind, Status::Active, 2)], 0).unwrap();

    let m = Scrape::parse(&text);
    assert_eq!(m.value("tether_sessions_ended_total", &[("kind", kind), ("reason", "ended")]), 3.0);
    assert_eq!(m.value("tether_http_requests_total", &[("route", route)]), 1.0);
    assert_eq!(m.value("tether_sessions_live", &[("kind", kind), ("status", "active")]), 2.0);
}

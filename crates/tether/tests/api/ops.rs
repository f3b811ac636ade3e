//! Operations: health and readiness, metrics, admin health and cleanup,
//! and graceful shutdown on SIGTERM.

use crate::helpers::*;
use serde_json::json;

fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn health_ready_metrics_admin() {
    let app = TestApp::in_process().await;
    let r = app.get("/healthz", None).await;
    r.expect(200);
    app.get("/readyz", None).await.expect(200);

    let mut events = app.sse(API_KEY, "?kind=late", None).await;
    app.start_for("mia", "plain").await;
    let short = id_of(&app.start_for("max", "late").await);
    app.advance(ms(400)); // kind late: idle 400ms
    events.wait_event(ms(2000), "session.ended", &short).await;

    let m = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status().as_u16(), 200);
    assert!(m.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = m.text().await.unwrap();
    assert!(text.contains("tether_sessions_live"), "{text}");
    assert_eq!(metric_value(&text, "tether_sessions_live{kind=\"plain\",status=\"active\"}"), Some(1.0), "{text}");
    assert!(text.contains("tether_expiry_lateness_seconds"), "{text}");
    assert_eq!(metric_value(&text, "tether_expiry_lateness_seconds_count"), Some(1.0), "{text}");
    assert!(
        metric_value(&text, "tether_sessions_ended_total{kind=\"late\",reason=\"idle_timeout\"}") == Some(1.0),
        "{text}"
    );

    let h = app.get("/v1/admin/health", Some(API_KEY)).await.expect(200).clone();
    assert!(h["health"] == "healthy" || h["health"] == "degraded", "{h}");
    assert_eq!(h["sessions"]["total"], 1, "{h}");
    assert_eq!(h["sessions"]["by_status"]["active"], 1, "{h}");
    assert_eq!(h["sessions"]["by_kind"]["plain"], 1, "{h}");
    assert_eq!(h["sessions"]["overdue"], 0, "{h}");
    assert!(h["problems"].is_array() && h["recommendations"].is_array(), "{h}");
    assert_eq!(h["health"], "healthy", "{h}");

    let dry = app.get("/v1/admin/cleanup", Some(API_KEY)).await.expect(200).clone();
    assert!(dry["would_end"].is_array() && dry["orphans"].is_array(), "{dry}");
    assert!(dry["expired_invites"].is_u64() && dry["purgeable"].is_u64(), "{dry}");
    assert_eq!(dry["would_end"], json!([]));
    let done = app.post_empty("/v1/admin/cleanup", Some(API_KEY)).await.expect(200).clone();
    for field in ["ended", "orphans", "purged"] {
        assert!(done[field].is_u64(), "{field}: {done}");
    }
    assert_eq!(done["ended"], 0, "nothing was overdue: {done}");

    let doc = app.get("/openapi.json", None).await.expect(200).clone();
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"), "{doc}");
}

#[tokio::test]
async fn sigterm_exits_zero_with_an_open_stream() {
    if cluster_mode().is_some() {
        // Restarting one process is a single node's story; the cluster suite kills nodes itself.
        return;
    }
    let mut app = TestApp::start().await;
    let mut sse = app.sse(API_KEY, "", None).await;
    let ws = app.ws(API_KEY).await;
    let s = id_of(&app.start_for("sig", "plain").await);
    sse.wait_event(ms(2000), "session.started", &s).await;

    let sent = std::time::Instant::now();
    app.sigterm();
    // The stream is closed by the server.
    loop {
        match sse.next(ms(10_000)).await {
            Next::Event(_) => {}
            Next::Closed => break,
            Next::Timeout => panic!("the SSE stream stayed open after SIGTERM"),
        }
    }
    let status = app.wait_exit(ms(10_000)).await.expect("exited within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < ms(10_000));
    drop(ws);

    // What it acknowledged is there after a restart.
    app.restart().await;
    assert_eq!(app.session(&s).await["status"], "active");
}

/// `tether health` and `tether cleanup [--dry-run]` talk to a running server.
#[tokio::test]
async fn health_and_cleanup_commands() {
    let app = TestApp::start().await;
    app.start_for("cli-user", "plain").await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .args(["--url", &app.base, "--api-key", API_KEY])
            .output()
            .expect("run tether")
    };
    let health = run(&["health"]);
    assert_eq!(health.status.code(), Some(0), "{}", String::from_utf8_lossy(&health.stderr));
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).expect("health prints JSON");
    assert_eq!(report["health"], "healthy");
    assert_eq!(report["sessions"]["total"], 1);

    let dry = run(&["cleanup", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let preview: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(preview["would_end"].is_array() && preview["purgeable"].is_number(), "{preview}");
    let done = run(&["cleanup"]);
    assert_eq!(done.status.code(), Some(0));
    let result: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert!(result["ended"].is_number() && result["purged"].is_number(), "{result}");

    let wrong_key = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["health", "--url", &app.base, "--api-key", "not-a-key"])
        .output()
        .unwrap();
    assert_eq!(wrong_key.status.code(), Some(2), "a refused call is an error exit");
}

/// Demo mode mints tokens without auth, so it refuses non-loopback addresses;
/// without it the demo token endpoint and page do not exist.
#[tokio::test]
async fn demo_mode_is_loopback_only_and_off_by_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["serve", "--demo", "--store", "memory", "--listen", "0.0.0.0:0"])
        .output()
        .expect("run tether");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen") && stderr.contains("loopback"), "{stderr}");

    let app = TestApp::start().await;
    let r = app.client.post(app.url("/v1/demo/token")).body(r#"{"user_id":"x"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app.client.get(app.url("/demo")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = app.client.get(app.url("/sdk/tether.js")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().contains("javascript"));
}

//! `webhooks`: webhook deliveries per second to a local receiver and the
//! latency from an event's commit (its `at`) to the receiver having the
//! request, while sessions are started as fast as `http_conns` connections
//! can (saturated: the latency is mostly queueing), then at 200 starts/s on
//! one connection (the latency without a backlog); also the start rate with
//! webhooks on (compare `durable-starts`).
//! Reported, not asserted. No peer has webhooks (the apps poll or hold streams).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::{ms, scenario_run, Params, TetherSource};
use crate::http::{parse_ts, Conn};
use crate::load::timed_loop;
use crate::report::{Metric, ScenarioRun, SystemRun};
use crate::server::{config_toml, wait_ready, KindTimes, ServerFiles};
use crate::stats::Samples;

pub const NAME: &str = "webhooks";

/// A Standard Webhooks secret for the run (the receiver does not verify: the
/// tests do; here only throughput and latency count).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// webhook-id → (receipt, wall ms; commit→receipt ms).
type Receipts = Arc<Mutex<HashMap<String, (Instant, Option<f64>)>>>;

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} connections starting sessions, one endpoint)", p.http_conns),
        json!({"conns": p.http_conns, "duration_s": p.starts_duration.as_secs_f64(), "store": "sqlite"}),
        vec![],
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    run
}

/// A local receiver answering 204 to every POST, recording each first receipt.
async fn receiver() -> Result<(String, Receipts, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let got: Receipts = Arc::default();
    let got2 = got.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let got = got2.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        let id =
                            req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let now = Instant::now();
                        let wall = chrono::Utc::now().timestamp_micros() as f64 / 1000.0;
                        let at = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["at"].as_str().and_then(parse_ts));
                        got.lock().unwrap().entry(id).or_insert((now, at.map(|at| wall - at)));
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(http_body_util::Empty::<Bytes>::new())
                                .expect("a static response"),
                        )
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((url, got, task))
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let TetherSource::Bin(bin) = src else {
        bail!("needs --tether-bin: the harness writes the server's [[webhooks]] config");
    };
    let (url, got, task) = receiver().await?;
    let dir = tempfile::Builder::new().prefix("tether-bench-webhooks-").tempdir()?;
    let files = ServerFiles { bin: bin.clone(), dir: dir.path().to_path_buf() };
    let config = format!(
        "{}\n[[webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = [\"session.started\"]\nkinds = [\"bench_start\"]\n",
        config_toml(&KindTimes::default())
    );
    std::fs::write(files.config(), config)?;
    let server = files.spawn(Duration::from_secs(60))?;
    let api = server.api();
    wait_ready(&api, Duration::from_secs(60)).await?;
    let warm = Duration::from_millis(500).min(p.starts_duration / 4);
    let (start_rate, _, failures, first) = timed_loop(&api, p.http_conns, warm, p.starts_duration, |w, i| {
        (
            Method::POST,
            "/v1/sessions".to_string(),
            Some(Bytes::from(format!(r#"{{"kind":"bench_start","user_id":"w{w}-{i}"}}"#))),
        )
    })
    .await?;
    let mut conn = Conn::connect(api.addr).await?;
    let pending = drain(&mut conn, &api.key).await?;
    let receipts: Vec<(Instant, Option<f64>)> = got.lock().unwrap().drain().map(|(_, v)| v).collect();
    // Then at a pace the receiver keeps up with: latency without a backlog.
    let paced = (p.starts_duration.as_secs_f64() * PACED_RATE) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / PACED_RATE));
    for i in 0..paced {
        tick.tick().await;
        let body = json!({"kind": "bench_start", "user_id": format!("paced-{i}")});
        conn.ok(Method::POST, "/v1/sessions", &api.key, Some(&body)).await?;
    }
    drain(&mut conn, &api.key).await?;
    let mut paced_lat = Samples::new();
    for l in got.lock().unwrap().values().filter_map(|r| r.1) {
        paced_lat.push(l);
    }
    let v = conn.ok(Method::GET, "/v1/admin/webhooks", &api.key, None).await?;
    let failed = v["endpoints"][0]["failed"].as_u64().unwrap_or(0);
    server.stop();
    task.abort();
    let mut s = SystemRun::new("Tether");
    let (Some(first_at), Some(last_at)) = (receipts.iter().map(|r| r.0).min(), receipts.iter().map(|r| r.0).max())
    else {
        bail!("the receiver got nothing");
    };
    let span = last_at.duration_since(first_at).as_secs_f64();
    let rate = if span > 0.0 { Some(receipts.len() as f64 / span) } else { None };
    s.metric(Metric::new("rate", "deliveries per second (first to last receipt)", rate, "/s"));
    s.metric(Metric::new("delivered", "deliveries received", Some(receipts.len() as f64), ""));
    let mut lat = Samples::new();
    for l in receipts.iter().filter_map(|r| r.1) {
        lat.push(l);
    }
    s.latency("latency", "commit → receipt, saturated (queueing)", &mut lat);
    s.latency("paced_latency", &format!("commit → receipt at {PACED_RATE} starts/s"), &mut paced_lat);
    s.metric(Metric::new("start_rate", "session starts per second with webhooks on", Some(start_rate), "/s"));
    s.metric(Metric::new("failures", "failed starts", Some(failures as f64), ""));
    if let Some(f) = first {
        s.note(format!("first failed start: {f}"));
    }
    s.note(format!(
        "one endpoint (session.started of bench_start), receiver on loopback answering 204; SQLite store; \
         {pending} pending and {failed} failed when measured; receipts spanned {:.0} ms",
        ms(last_at.saturating_duration_since(first_at))
    ));
    Ok(s)
}

/// Starts per second of the paced phase (one connection).
const PACED_RATE: f64 = 200.0;

/// Waits until the endpoint has nothing pending (at most 120 s); returns what is left.
async fn drain(conn: &mut Conn, key: &str) -> Result<u64> {
    // The last events may not be read from the log yet: give the worker a round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drained_by = Instant::now() + Duration::from_secs(120);
    loop {
        let v = conn.ok(Method::GET, "/v1/admin/webhooks", key, None).await?;
        let pending = v["endpoints"][0]["pending"].as_u64().unwrap_or(u64::MAX);
        if pending == 0 || Instant::now() >= drained_by {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `expiry-lateness`: how late a session's end is noticed after its idle
//! deadline, with N live sessions in the background. Tether's probes are
//! sessions with a short `idle_timeout`, timed from the `expires_at` their
//! creation answered to the `session.ended` received by an SSE subscriber
//! (and, to tell the SSE path from the rest, a WebSocket subscriber); the
//! peers get probes at the same deadline offsets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use serde_json::Value;
use tether_engine::EventType;
use tokio_tungstenite::tungstenite::Message;

use super::{at_a_million, ms, scrape_stages, stage_metrics, subscribe_ended, Params, Tether};
use crate::http::{now_ms, wait_until, ws_connect};
use crate::load::create_many;
use crate::peers::{lateness, Latencies};
use crate::report::{SystemRun, Target};
use crate::server::API_KEY;
use crate::stats::Samples;

pub const NAME: &str = "expiry-lateness";

pub fn targets(n: usize) -> Vec<Target> {
    at_a_million(n, Target::le("lateness_p99_ms", 10.0, "p99 ≤ 10 ms at 1M"))
}

/// Tether's row, and the probes' deadline offsets (ms after the first) for the peers.
pub async fn tether(t: &Tether, p: &Params, n: usize) -> Result<(SystemRun, Vec<f64>)> {
    probes(t, p, n, "Tether").await
}

/// The same probes again, on the same server, while something watches it as
/// an operator would: `/metrics` scraped every second, and the dashboard's
/// traffic (web/admin/admin.js: an unfiltered whole-event SSE stream, and
/// health, `/metrics` and the three live-session
/// lists, refreshed every second here where the page does so every 3 s and
/// 400 ms after events). The rule: within 1.2× of the unwatched run.
pub async fn tether_watched(t: &Tether, p: &Params, n: usize) -> Result<SystemRun> {
    let watchers = watch(t).await?;
    let result = probes(t, p, n, "Tether, watched (/metrics every 1 s + dashboard)").await;
    for w in watchers {
        w.abort();
    }
    let (mut row, _) = result?;
    row.note("the same probes while /metrics is scraped every second and the dashboard's requests and event stream run (see `tether_watched` in expiry_lateness.rs)");
    Ok(row)
}

async fn watch(t: &Tether) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = vec![];
    let api = t.api.clone();
    tasks.push(tokio::spawn(async move {
        let Ok(mut c) = api.conn().await else { return };
        loop {
            let _ = c.request(http::Method::GET, "/metrics", &api.key, None).await;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }));
    tasks.push(crate::http::spawn_sse(t.api.addr, "/v1/events", &t.api.key, |_| {}).await?);
    let api = t.api.clone();
    tasks.push(tokio::spawn(async move {
        let Ok(mut c) = api.conn().await else { return };
        loop {
            for path in [
                "/v1/admin/health",
                "/metrics",
                "/v1/sessions?status=waiting&limit=50",
                "/v1/sessions?status=active&limit=50",
                "/v1/sessions?status=completing&limit=50",
            ] {
                let _ = c.request(http::Method::GET, path, &api.key, None).await;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }));
    Ok(tasks)
}

async fn probes(t: &Tether, p: &Params, n: usize, system: &str) -> Result<(SystemRun, Vec<f64>)> {
    eprintln!("  {system}: expiry-lateness with {} probes", p.probes);
    let (rec, h) = subscribe_ended(&t.api, "?kind=bench_probe", None).await?;
    let ws_rec: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let ws_h = {
        let mut ws = ws_connect(t.api.addr, API_KEY, "&kind=bench_probe").await?;
        let ws_rec = ws_rec.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let t = now_ms();
                let Message::Text(txt) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(txt.as_str()) else { continue };
                if v["type"] == EventType::Ended.as_str() {
                    if let Some(id) = v["session"]["id"].as_str() {
                        ws_rec.lock().unwrap().entry(id.to_string()).or_insert(t);
                    }
                }
            }
        })
    };
    let stages_before = scrape_stages(&t.api).await?;
    let probes = create_many(&t.api, &["bench_probe"], p.probes, 32.min(p.probes), "probe", |_| true).await?;
    if probes.failures > 0 {
        bail!("probe creation failed: {}", probes.first_failure.unwrap_or_default());
    }
    let deadlines: Vec<(String, f64)> =
        probes.kept.iter().filter_map(|(_, id, e)| e.map(|e| (id.clone(), e))).collect();
    if deadlines.len() < probes.kept.len() {
        bail!("probe sessions came back without `expires_at`");
    }
    let last = deadlines.iter().map(|d| d.1).fold(0.0, f64::max);
    let first = deadlines.iter().map(|d| d.1).fold(f64::MAX, f64::min);
    wait_until(last + ms(p.tether_window), || {
        rec.lock().unwrap().len() >= deadlines.len() && ws_rec.lock().unwrap().len() >= deadlines.len()
    })
    .await;
    h.abort();
    ws_h.abort();
    let stages_after = scrape_stages(&t.api).await?;
    let rec = rec.lock().unwrap().clone();
    let ws_rec = ws_rec.lock().unwrap().clone();
    let mut ws_lat = lateness(deadlines.iter().map(|(id, d)| (id.clone(), d)), &ws_rec, Some(p.tether_window));
    let mut lat = Samples::new();
    let mut server_lat = Samples::new();
    let mut wrong_reason = 0;
    for (id, d) in &deadlines {
        match rec.get(id) {
            Some((r, at, reason)) => {
                lat.push(r - d);
                if let Some(at) = at {
                    server_lat.push(at - d);
                }
                if reason != "idle_timeout" {
                    wrong_reason += 1;
                }
            }
            None => lat.missing += 1,
        }
    }
    lat.window_ms = Some(ms(p.tether_window));
    let offsets = deadlines.iter().map(|d| d.1 - first).collect();
    let mut s = SystemRun::new(system);
    s.latency("lateness", "lateness (deadline → SSE receipt)", &mut lat);
    s.latency("ws_lateness", "lateness (deadline → WebSocket receipt, second subscriber)", &mut ws_lat);
    s.latency("server_lateness", "server-stamped lateness (event `at` − deadline)", &mut server_lat);
    stage_metrics(&mut s, &stages_before, &stages_after);
    s.note(format!(
        "{} probe sessions (idle_timeout {} s) created over {:.0} ms on top of {n} live sessions; deadline = `expires_at` of the create answer (ms resolution); one SSE subscriber `GET /v1/events?kind=bench_probe` (the lateness row) and one API-key WebSocket `?kind=bench_probe`",
        p.probes,
        p.probe_idle_s,
        last - first
    ));
    if wrong_reason > 0 {
        s.note(format!("{wrong_reason} probes ended with a reason other than idle_timeout"));
    }
    s.distribution = Some(lat);
    Ok((s, offsets))
}

pub fn peer_row(system: &str, mut l: Latencies) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.latency("lateness", "lateness (deadline → SSE receipt)", &mut l.samples);
    s.note(l.note);
    s.distribution = Some(l.samples);
    s
}

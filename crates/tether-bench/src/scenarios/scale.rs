//! `scale`: ten million live sessions on one node (SQLite), as a backend
//! that opens many rooms at once would create them: `POST /v1/sessions/batch`
//! (1000 per request) over several connections, with the population
//! scenarios' long-lived background kinds. At that size it measures what it
//! costs (RSS and disk bytes per live session), whether the server still
//! keeps time (the expiry-lateness probes of [`super::expiry_lateness`]) and
//! answers its operators (`/metrics`, `/v1/admin/health`), and how long a
//! restart after `kill -9` takes and what the recovered process holds.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use http::Method;
use serde_json::json;

use super::{expiry_lateness, ms, scenario_run, Params, Tether, TetherSource};
use crate::http::Api;
use crate::load::create_batched;
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::{KindTimes, StoreFiles};
use crate::stats::Samples;

pub const NAME: &str = "scale";

/// Sessions per `POST /v1/sessions/batch` (the endpoint's maximum).
const BATCH: usize = 1000;
/// Connections creating the population (each batch is one durable commit;
/// a few in flight let the journal group them).
const CONNS: usize = 8;
/// Requests per operator endpoint whose answer times are reported.
const OPERATOR_REQUESTS: usize = 20;

/// Issue 12's targets, set for ten million; runs under a million have none.
pub fn targets(n: usize) -> Vec<Target> {
    if n < 1_000_000 {
        return vec![];
    }
    vec![
        Target::le("lateness_p99_ms", 10.0, "p99 ≤ 10 ms"),
        Target::le("rss_per_session", 300.0, "≤ 300 B per live session"),
        Target::le("rss_per_session_recovered", 300.0, "≤ 300 B per live session after recovery"),
        Target::le("ready_ms", 30_000.0, "recovery ≤ 30 s"),
    ]
}

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let n = p.scale_sessions;
    let mut run = scenario_run(
        NAME,
        format!("{NAME} (N={n})"),
        json!({"n": n, "batch": BATCH, "conns": CONNS, "probes": p.probes, "store": "sqlite"}),
        targets(n),
    );
    match tether(src, p, n).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    run
}

async fn tether(src: &TetherSource, p: &Params, n: usize) -> Result<SystemRun> {
    let kt = KindTimes { probe_idle: format!("{}s", p.probe_idle_s), ..Default::default() };
    let mut t = Tether::fresh(src, &kt).await?;
    if t.files.is_none() {
        bail!("needs the harness to own the server process and its files (--tether-bin, not --url)");
    }
    let mut s = SystemRun::new("Tether");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = t.rss();

    eprintln!("  tether: creating {n} live sessions in batches of {BATCH}");
    let created = create_batched(&t.api, &["bench_bg_a", "bench_bg_b", "bench_bg_c"], n, BATCH, CONNS, "bg").await?;
    if created.failures > 0 {
        bail!("{} of {n} creations failed; first: {}", created.failures, created.first_failure.unwrap_or_default());
    }
    let rate = n as f64 / created.elapsed.as_secs_f64();
    eprintln!("  tether: {n} sessions in {:.1} s ({rate:.0}/s)", created.elapsed.as_secs_f64());
    s.metric(Metric::new("create_rate", "creation rate (batches of 1000)", Some(rate), "/s"));
    s.latency("batch", "batch latency", &mut created.latency.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = t.rss();
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        s.metric(Metric::new("rss_before", "RSS before", Some(before as f64), "B"));
        s.metric(Metric::new("rss_after", "RSS with N live sessions", Some(after as f64), "B"));
        let per = (after as f64 - before as f64) / n as f64;
        s.metric(Metric::new("rss_per_session", "RSS per live session", Some(per), "B"));
    }
    let disk = t.files.as_ref().map(|f| f.disk_bytes()).unwrap_or_default();
    disk_metrics(&mut s, "", "", disk, n);

    operator_metrics(&mut s, &t.api, "").await?;
    let (probes, _) = expiry_lateness::tether(&t, p, n).await?;
    s.metrics.extend(probes.metrics);
    s.notes.extend(probes.notes);
    s.distribution = probes.distribution;

    eprintln!("  tether: kill -9 and restart with {n} live sessions");
    let (listen, ready) = t.kill9_restart(None).await?;
    s.metric(Metric::new("listen_ms", "restart: spawn → `listening on` line", Some(ms(listen)), "ms"));
    s.metric(Metric::new("ready_ms", "restart: spawn → /readyz 200", Some(ms(ready)), "ms"));
    let rss_recovered = t.rss();
    if let (Some(before), Some(after)) = (rss_before, rss_recovered) {
        s.metric(Metric::new("rss_recovered", "RSS after recovery", Some(after as f64), "B"));
        let per = (after as f64 - before as f64) / n as f64;
        s.metric(Metric::new("rss_per_session_recovered", "RSS per live session after recovery", Some(per), "B"));
    }
    operator_metrics(&mut s, &t.api, "_recovered").await?;
    let disk = t.files.as_ref().map(|f| f.disk_bytes()).unwrap_or_default();
    disk_metrics(&mut s, "_recovered", " after recovery", disk, n);

    s.note(format!(
        "{n} sessions (kinds bench_bg_a/b/c, deadlines 75 min – 4 h) created with POST /v1/sessions/batch, {BATCH} per request over {CONNS} connections, on a fresh SQLite store; RSS = VmRSS 1 s after the last creation, minus the idle server's before; disk = database + -wal + -shm files (every start also writes its session.started event to the log)"
    ));
    s.note(format!(
        "/metrics and /v1/admin/health: {OPERATOR_REQUESTS} requests each, one at a time, at N live sessions and again right after recovery"
    ));
    s.note(
        "recovery: SIGKILL, restart on the same file, /readyz polled every 5 ms; RSS read as soon as it answers 200",
    );
    t.stop().await;
    Ok(s)
}

/// The store's files, and bytes per live session.
fn disk_metrics(s: &mut SystemRun, key: &str, label: &str, d: StoreFiles, n: usize) {
    s.metric(Metric::new(&format!("disk_db{key}"), &format!("database file{label}"), Some(d.db as f64), "B"));
    s.metric(Metric::new(&format!("disk_wal{key}"), &format!("-wal file{label}"), Some(d.wal as f64), "B"));
    s.metric(Metric::new(
        &format!("disk_per_session{key}"),
        &format!("disk bytes per live session (db + wal + shm){label}"),
        Some(d.total() as f64 / n as f64),
        "B",
    ));
}

/// Answer times of `/metrics` and `/v1/admin/health`, one request at a time.
async fn operator_metrics(s: &mut SystemRun, api: &Api, key: &str) -> Result<()> {
    let mut c = api.conn().await?;
    for (path, name) in [("/metrics", "metrics"), ("/v1/admin/health", "health")] {
        let mut lat = Samples::new();
        for _ in 0..OPERATOR_REQUESTS {
            let t = Instant::now();
            let (status, body) = c.request(Method::GET, path, &api.key, None).await?;
            if !status.is_success() {
                bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
            }
            lat.push(ms(t.elapsed()));
        }
        s.latency(&format!("{name}{key}"), &format!("GET {path} answer time{}", key.replace('_', " ")), &mut lat);
    }
    Ok(())
}

//! The scenarios: each drives Tether and, where the work is comparable, the
//! peers with the same N, deadlines, connection counts and durations, and
//! returns one [`ScenarioRun`] per scenario and size.
//!
//! `memory`, `expiry-lateness`, `recovery` and `mass-expiry` share one
//! population of N live sessions per size (creating a million sessions is the
//! expensive part): memory is read after the population is created, the
//! lateness probes run on top of it, recovery kills that server with `kill -9`
//! and restarts it, and mass expiry restarts it once more with the
//! population's `idle_timeout` shortened, so that the contract's restart rule
//! ("idle deadlines are granted again from the restart") gives every live
//! session one shared deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::http::{now_ms, parse_ts, spawn_sse, ws_connect, Api, Ws};
use crate::load::{create_many, timed_loop};
use crate::peers::etcd::EtcdPeer;
use crate::peers::postgres::PgPeer;
use crate::peers::redis::{wait_until, RedisPeer};
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::{wait_ready, KindTimes, Server, ServerFiles, API_KEY, JWT_SECRET};
use crate::stats::Samples;

pub const ALL: &[&str] = &[
    "expiry-lateness",
    "mass-expiry",
    "heartbeats-http",
    "heartbeats-ws",
    "durable-starts",
    "memory",
    "recovery",
    "time-to-pair",
    "signaling-relay",
];

/// Sizes and durations of one `--size`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Params {
    pub size: String,
    /// Live-session populations for expiry-lateness / memory / recovery / mass-expiry.
    pub populations: Vec<usize>,
    pub probes: usize,
    /// idle_timeout of the probes, whole seconds (etcd leases need ≥ 2 s).
    pub probe_idle_s: u64,
    /// How long a peer is waited for after the last probe deadline.
    pub peer_window: Duration,
    pub tether_window: Duration,
    pub hb_sessions: usize,
    pub hb_duration: Duration,
    pub http_conns: usize,
    pub ws_conns: usize,
    pub starts_duration: Duration,
    pub pair_waiting: usize,
    pub pair_rounds: usize,
    pub relay_messages: usize,
    pub pg_sweep: Duration,
    /// etcd leases are capped at this many (granting 1M leases takes too long).
    pub etcd_max_leases: usize,
    pub create_conns: usize,
}

impl Params {
    pub fn for_size(size: &str) -> Params {
        match size {
            "full" => Params {
                size: size.into(),
                populations: vec![100_000, 1_000_000],
                probes: 1000,
                probe_idle_s: 3,
                peer_window: Duration::from_secs(60),
                tether_window: Duration::from_secs(30),
                hb_sessions: 10_000,
                hb_duration: Duration::from_secs(15),
                http_conns: 64,
                ws_conns: 16,
                starts_duration: Duration::from_secs(15),
                pair_waiting: 100_000,
                pair_rounds: 200,
                relay_messages: 5000,
                pg_sweep: Duration::from_secs(30),
                etcd_max_leases: 100_000,
                create_conns: 64,
            },
            _ => Params {
                size: "smoke".into(),
                populations: vec![300],
                probes: 50,
                probe_idle_s: 2,
                peer_window: Duration::from_secs(3),
                tether_window: Duration::from_secs(5),
                hb_sessions: 100,
                hb_duration: Duration::from_secs(1),
                http_conns: 8,
                ws_conns: 2,
                starts_duration: Duration::from_secs(1),
                pair_waiting: 20,
                pair_rounds: 3,
                relay_messages: 50,
                pg_sweep: Duration::from_secs(1),
                etcd_max_leases: 300,
                create_conns: 8,
            },
        }
    }
}

/// How to reach Tether: a binary the harness runs, or a URL of a running server.
#[derive(Clone)]
pub enum TetherSource {
    Bin(PathBuf),
    Url(Api),
    /// `--no-tether`: measure the peers only.
    None,
}

/// A Tether instance for one scenario.
pub struct Tether {
    pub api: Api,
    pub server: Option<Server>,
    pub files: Option<ServerFiles>,
    _dir: Option<tempfile::TempDir>,
}

impl Tether {
    pub async fn fresh(src: &TetherSource, kt: &KindTimes) -> Result<Tether> {
        match src {
            TetherSource::Url(api) => Ok(Tether { api: api.clone(), server: None, files: None, _dir: None }),
            TetherSource::None => bail!("Tether not run (--no-tether)"),
            TetherSource::Bin(bin) => {
                let dir = tempfile::Builder::new().prefix("tether-bench-").tempdir()?;
                let files = ServerFiles { bin: bin.clone(), dir: dir.path().to_path_buf() };
                files.write_config(kt)?;
                let server = files.spawn(Duration::from_secs(60))?;
                let api = server.api();
                wait_ready(&api, Duration::from_secs(60)).await?;
                Ok(Tether { api, server: Some(server), files: Some(files), _dir: Some(dir) })
            }
        }
    }

    fn need_process(&self, what: &str) -> Result<()> {
        if self.server.is_none() {
            bail!("{what} needs the harness to own the server process (run with --tether-bin, not --url)");
        }
        Ok(())
    }

    pub fn rss(&self) -> Option<u64> {
        self.server.as_ref().and_then(|s| s.rss_bytes().ok())
    }

    /// kill -9, optionally rewrite the config, start again; returns
    /// (spawn → listening line, spawn → /readyz 200).
    pub async fn kill9_restart(&mut self, kt: Option<&KindTimes>) -> Result<(Duration, Duration)> {
        self.need_process("a restart")?;
        let files = self.files.as_ref().unwrap();
        self.server.as_mut().unwrap().kill9();
        if let Some(kt) = kt {
            files.write_config(kt)?;
        }
        let t0 = Instant::now();
        let server = files.spawn(Duration::from_secs(600))?;
        let listen = server.startup;
        self.api = server.api();
        self.server = Some(server);
        wait_ready(&self.api, Duration::from_secs(600)).await?;
        Ok((listen, t0.elapsed()))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            tokio::task::spawn_blocking(move || s.stop()).await.ok();
        }
    }
}

/// The peers started for this run (each optional).
pub struct Peers {
    pub redis: Option<RedisPeer>,
    pub etcd_enabled: bool,
    pub pg: Option<PgPeer>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kib(v: u64) -> f64 {
    v as f64
}

/// Records a peer failure as a note instead of failing the scenario.
fn peer_failed(system: &str, e: anyhow::Error) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.note(format!("failed: {e:#}"));
    s
}

// ---------------------------------------------------------------------------
// population: memory, expiry-lateness, recovery, mass-expiry

pub async fn population(
    src: &TetherSource,
    p: &Params,
    peers: &mut Peers,
    n: usize,
    want: &[&str],
) -> Vec<ScenarioRun> {
    let has = |s: &str| want.contains(&s);
    let label = |s: &str| format!("{s} (N={n})");
    let mut runs: HashMap<&str, ScenarioRun> = HashMap::new();
    for s in ["memory", "expiry-lateness", "recovery", "mass-expiry"] {
        if has(s) {
            let targets = match s {
                "memory" if n >= 1_000_000 => vec![Target::le("rss_per_session", 512.0, "≤ 512 B at 1M")],
                "expiry-lateness" if n >= 1_000_000 => vec![Target::le("lateness_p99_ms", 10.0, "p99 ≤ 10 ms at 1M")],
                "recovery" if n >= 1_000_000 => vec![Target::le("ready_ms", 5000.0, "≤ 5 s at 1M")],
                "mass-expiry" if n >= 1_000_000 => vec![Target::le("all_ended_ms", 5000.0, "≤ 5 s at 1M")],
                _ => vec![],
            };
            runs.insert(
                s,
                ScenarioRun {
                    scenario: s.into(),
                    label: label(s),
                    params: json!({"n": n, "probes": p.probes, "probe_idle_s": p.probe_idle_s, "create_conns": p.create_conns}),
                    targets,
                    systems: vec![],
                    error: None,
                },
            );
        }
    }
    // --- Tether
    let mut probe_offsets: Vec<f64> = vec![];
    let mut mass_idle_s = 5u64;
    match tether_population(src, p, n, want, &mut runs, &mut probe_offsets, &mut mass_idle_s).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("  tether population N={n} failed: {e:#}");
            for r in runs.values_mut() {
                if r.systems.iter().all(|s| s.system != "Tether") {
                    r.error = Some(format!("Tether: {e:#}"));
                }
            }
        }
    }
    if probe_offsets.is_empty() {
        // Tether gave no deadlines (failed or --url without probes): spread like a fast creation
        probe_offsets = (0..p.probes).map(|i| i as f64 * 0.2).collect();
    }
    // --- Redis
    if let Some(r) = peers.redis.as_ref() {
        eprintln!("  redis N={n}");
        let res = redis_population(r, p, n, want, &probe_offsets, &mut runs).await;
        if let Err(e) = res {
            for s in ["memory", "expiry-lateness", "mass-expiry"] {
                if let Some(run) = runs.get_mut(s) {
                    if !run.systems.iter().any(|x| x.system == "Redis") {
                        run.systems.push(peer_failed("Redis", anyhow!("{e:#}")));
                    }
                }
            }
        }
    }
    // --- etcd
    let etcd_dup = n > p.etcd_max_leases && p.populations.contains(&p.etcd_max_leases);
    if peers.etcd_enabled && etcd_dup {
        for s in ["memory", "expiry-lateness", "recovery", "mass-expiry"] {
            if let Some(run) = runs.get_mut(s) {
                let mut e = SystemRun::new("etcd");
                e.note(format!(
                    "capped at {} leases: the same work as the N={} table, not repeated",
                    p.etcd_max_leases, p.etcd_max_leases
                ));
                run.systems.push(e);
            }
        }
    }
    if peers.etcd_enabled && !etcd_dup {
        eprintln!("  etcd N={}", n.min(p.etcd_max_leases));
        let res = etcd_population(p, n, want, &mut runs).await;
        if let Err(e) = res {
            for s in ["memory", "expiry-lateness", "recovery", "mass-expiry"] {
                if let Some(run) = runs.get_mut(s) {
                    if !run.systems.iter().any(|x| x.system == "etcd") {
                        run.systems.push(peer_failed("etcd", anyhow!("{e:#}")));
                    }
                }
            }
        }
    }
    // --- PostgreSQL
    if let Some(pg) = peers.pg.as_ref() {
        eprintln!("  postgres N={n}");
        let res = pg_population(pg, p, n, want, &probe_offsets, &mut runs).await;
        if let Err(e) = res {
            for s in ["memory", "expiry-lateness", "mass-expiry"] {
                if let Some(run) = runs.get_mut(s) {
                    if !run.systems.iter().any(|x| x.system == "PostgreSQL") {
                        run.systems.push(peer_failed("PostgreSQL", anyhow!("{e:#}")));
                    }
                }
            }
        }
    }
    let _ = mass_idle_s;
    let mut out = vec![];
    for s in ["memory", "expiry-lateness", "recovery", "mass-expiry"] {
        if let Some(r) = runs.remove(s) {
            out.push(r);
        }
    }
    out
}

/// The parts of a `session.ended` event the harness reads.
#[derive(serde::Deserialize)]
struct EndedEv {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    session: EndedSess,
}
#[derive(serde::Deserialize)]
struct EndedSess {
    id: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    end_reason: Option<String>,
}

/// Receipts of `session.ended` events: id → (receipt ms, server `at` ms, reason).
type Receipts = Arc<Mutex<HashMap<String, (f64, Option<f64>, String)>>>;

async fn subscribe_ended(
    api: &Api,
    query: &str,
    kind_prefix: Option<&'static str>,
) -> Result<(Receipts, tokio::task::JoinHandle<()>)> {
    let rec: Receipts = Arc::default();
    let r2 = rec.clone();
    let h = spawn_sse(api.addr, &format!("/v1/events{query}"), &api.key, move |ev| {
        let is_ended = ev.event == "session.ended" || (ev.event.is_empty() && ev.data.contains("\"session.ended\""));
        if !is_ended {
            return;
        }
        let Ok(e) = serde_json::from_str::<EndedEv>(&ev.data) else { return };
        if let Some(pre) = kind_prefix {
            if !e.session.kind.as_deref().unwrap_or("").starts_with(pre) {
                return;
            }
        }
        let reason = e.reason.or(e.session.end_reason).unwrap_or_default();
        let at = e.at.as_deref().and_then(parse_ts);
        r2.lock().unwrap().entry(e.session.id).or_insert((ev.received_ms, at, reason));
    })
    .await?;
    Ok((rec, h))
}

async fn tether_population(
    src: &TetherSource,
    p: &Params,
    n: usize,
    want: &[&str],
    runs: &mut HashMap<&str, ScenarioRun>,
    probe_offsets: &mut Vec<f64>,
    mass_idle_s: &mut u64,
) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    let kt = KindTimes { probe_idle: format!("{}s", p.probe_idle_s), ..Default::default() };
    let mut t = Tether::fresh(src, &kt).await?;
    eprintln!("  tether: creating {n} live sessions");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = t.rss();
    let sample_every = (n / 200).max(1);
    let created = create_many(&t.api, &["bench_bg_a", "bench_bg_b", "bench_bg_c"], n, p.create_conns, "bg", move |i| {
        i % sample_every == 0
    })
    .await?;
    if created.failures > 0 {
        bail!("{} of {n} creations failed; first: {}", created.failures, created.first_failure.unwrap_or_default());
    }
    let mut create_lat = created.latency;
    let create_rate = n as f64 / created.elapsed.as_secs_f64();
    eprintln!("  tether: {n} sessions in {:.1} s ({create_rate:.0}/s)", created.elapsed.as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = t.rss();
    if let Some(run) = runs.get_mut("memory") {
        let mut s = SystemRun::new("Tether");
        match (rss0, rss1) {
            (Some(a), Some(b)) => {
                s.metric(Metric::new("rss_before", "RSS before", Some(kib(a)), "B"));
                s.metric(Metric::new("rss_after", "RSS with N live sessions", Some(kib(b)), "B"));
                s.metric(Metric::new(
                    "rss_per_session",
                    "RSS per live session",
                    Some((b as f64 - a as f64) / n as f64),
                    "B",
                ));
                s.note("RSS = VmRSS of the server process from /proc/PID/status, 0.5 s after the last creation");
            }
            _ => {
                s.note("RSS not readable (server not owned by the harness)");
            }
        }
        s.metric(Metric::new("create_rate", "creation rate while populating", Some(create_rate), "/s"));
        s.latency("create", "creation latency", &mut create_lat);
        run.systems.push(s);
    }

    // expiry lateness
    if has("expiry-lateness") {
        eprintln!("  tether: expiry-lateness with {} probes", p.probes);
        let (rec, h) = subscribe_ended(&t.api, "?kind=bench_probe", None).await?;
        // a second subscriber on a WebSocket, to tell the SSE path from the rest
        let ws_rec: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let ws_h = {
            let mut ws = ws_connect(t.api.addr, API_KEY, "&kind=bench_probe").await?;
            let ws_rec = ws_rec.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    let t = now_ms();
                    let Message::Text(txt) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(txt.as_str()) else { continue };
                    if v["type"] == "session.ended" {
                        if let Some(id) = v["session"]["id"].as_str() {
                            ws_rec.lock().unwrap().entry(id.to_string()).or_insert(t);
                        }
                    }
                }
            })
        };
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
        let rec = rec.lock().unwrap().clone();
        let ws_rec = ws_rec.lock().unwrap().clone();
        let mut ws_lat = Samples::new();
        for (id, d) in &deadlines {
            match ws_rec.get(id) {
                Some(r) => ws_lat.push(r - d),
                None => ws_lat.missing += 1,
            }
        }
        ws_lat.window_ms = Some(ms(p.tether_window));
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
        *probe_offsets = deadlines.iter().map(|d| d.1 - first).collect();
        let mut s = SystemRun::new("Tether");
        s.latency("lateness", "lateness (deadline → SSE receipt)", &mut lat);
        s.latency("ws_lateness", "lateness (deadline → WebSocket receipt, second subscriber)", &mut ws_lat);
        s.latency("server_lateness", "server-stamped lateness (event `at` − deadline)", &mut server_lat);
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
        if let Some(run) = runs.get_mut("expiry-lateness") {
            run.systems.push(s);
        }
    }

    // recovery
    let mut ready_ms = 2000.0;
    if has("recovery") || has("mass-expiry") {
        if t.server.is_none() {
            for k in ["recovery", "mass-expiry"] {
                if let Some(run) = runs.get_mut(k) {
                    run.error = Some("needs the harness to own the server process (--tether-bin, not --url)".into());
                }
            }
            return Ok(());
        }
        eprintln!("  tether: kill -9 and restart with {n} live sessions");
        let (listen, ready) = t.kill9_restart(None).await?;
        ready_ms = ms(ready);
        let mut s = SystemRun::new("Tether");
        s.metric(Metric::new("listen_ms", "spawn → `listening on` line", Some(ms(listen)), "ms"));
        s.metric(Metric::new("ready_ms", "spawn → /readyz 200", Some(ready_ms), "ms"));
        if let Some(r) = t.rss() {
            s.metric(Metric::new("rss_after_recovery", "RSS after recovery", Some(kib(r)), "B"));
        }
        s.note(format!("SIGKILL with {n} live sessions (+ {} probes, ended) in SQLite; restart on the same file; /readyz polled every 5 ms", p.probes));
        if let Some(run) = runs.get_mut("recovery") {
            run.systems.push(s);
        }
    }

    // mass expiry: restart once more with the population's idle_timeout shortened
    if has("mass-expiry") {
        let x = ((2.0 * ready_ms + 3000.0) / 1000.0).ceil().max(3.0) as u64;
        *mass_idle_s = x;
        eprintln!("  tether: mass-expiry, restart with idle_timeout {x}s");
        let kt2 = KindTimes { bg_idle: Some(format!("{x}s")), ..kt.clone() };
        let restart_at = now_ms();
        let (_, ready) = t.kill9_restart(Some(&kt2)).await?;
        let (rec, h) = subscribe_ended(&t.api, "", Some("bench_bg")).await?;
        // sample the shared deadline
        let mut c = t.api.conn().await?;
        let mut sample_deadlines = vec![];
        for (_, id, _) in created.kept.iter().take(50) {
            let (st, v) = c.json(Method::GET, &format!("/v1/sessions/{id}"), &t.api.key, None).await?;
            if st.is_success() {
                if let Some(e) = v["expires_at"].as_str().and_then(parse_ts) {
                    sample_deadlines.push((id.clone(), e));
                }
            }
        }
        let mut s = SystemRun::new("Tether");
        if sample_deadlines.is_empty() {
            h.abort();
            bail!("mass-expiry: no sampled session had an expires_at after the restart");
        }
        let dmin = sample_deadlines.iter().map(|d| d.1).fold(f64::MAX, f64::min);
        let dmax = sample_deadlines.iter().map(|d| d.1).fold(0.0, f64::max);
        if dmin > now_ms() + (x as f64 * 1000.0) + 60_000.0 {
            h.abort();
            s.note(format!(
                "after a restart with idle_timeout {x}s the sessions' deadlines are still {:.0} s away: the server keeps the idle_timeout a session was created with, so a shared deadline cannot be arranged this way",
                (dmin - now_ms()) / 1000.0
            ));
            if let Some(run) = runs.get_mut("mass-expiry") {
                run.error = Some("no shared deadline could be arranged (see note)".into());
                run.systems.push(s);
            }
            t.stop().await;
            return Ok(());
        }
        let window = ms(p.tether_window) + n as f64 / 10.0; // 30 s + 100 s per million
                                                            // server side: poll /v1/admin/health (live-session count) every 500 ms
        let zero_at: Arc<Mutex<(Option<f64>, Option<u64>)>> = Arc::default();
        let poller = {
            let (api, zero_at) = (t.api.clone(), zero_at.clone());
            tokio::spawn(async move {
                let Ok(mut c) = api.conn().await else { return };
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let Ok((st, v)) = c.json(Method::GET, "/v1/admin/health", &api.key, None).await else { continue };
                    let t = now_ms();
                    if !st.is_success() {
                        continue;
                    }
                    let live = v["sessions"]["total"].as_u64();
                    let mut z = zero_at.lock().unwrap();
                    z.1 = live;
                    if live == Some(0) && z.0.is_none() {
                        z.0 = Some(t);
                        return;
                    }
                }
            })
        };
        wait_until(dmax + window, || rec.lock().unwrap().len() >= n).await;
        h.abort();
        // give the poller one more look if the server got there but it has not seen it yet
        if zero_at.lock().unwrap().0.is_none() {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        poller.abort();
        let (zero, live_left) = *zero_at.lock().unwrap();
        let rec = rec.lock().unwrap().clone();
        let got = rec.len();
        let last = rec.values().map(|r| r.0).fold(0.0, f64::max);
        let mut sampled = Samples::new();
        for (id, d) in &sample_deadlines {
            match rec.get(id) {
                Some(r) => sampled.push(r.0 - d),
                None => sampled.missing += 1,
            }
        }
        s.metric(Metric::new(
            "all_ended_ms",
            "shared deadline → all N `session.ended` received",
            if got >= n { Some(last - dmin) } else { None },
            "ms",
        ));
        if got < n {
            s.metrics.last_mut().unwrap().display =
                Some(format!("> {} ({got} of {n} received)", crate::report::fmt_ms(dmax + window - dmin)));
        }
        s.metric(Metric::text("received", "ended events received", format!("{got} of {n}")));
        s.metric(Metric::new(
            "server_zero_live_ms",
            "shared deadline → server reports 0 live sessions (/v1/admin/health, polled every 500 ms)",
            zero.map(|z| z - dmin),
            "ms",
        ));
        if zero.is_none() {
            s.metrics.last_mut().unwrap().display = Some(format!(
                "not within the window ({} still live at the last poll)",
                live_left.map(|l| l.to_string()).unwrap_or("?".into())
            ));
        }
        s.metric(Metric::new(
            "deadline_spread_ms",
            "spread of the shared deadline (50 sampled sessions)",
            Some(dmax - dmin),
            "ms",
        ));
        s.latency("sampled", "lateness of the 50 sampled sessions", &mut sampled);
        s.note(format!(
            "N live sessions created with idle_timeout 2h; SIGKILL; restart with idle_timeout {x}s (restart → ready {:.0} ms); the contract re-grants idle deadlines from the restart, so all N share one deadline ≈ restart + {x}s ({:.0} ms after the spawn); one SSE subscriber without filter",
            ms(ready),
            dmin - restart_at
        ));
        if let Some(run) = runs.get_mut("mass-expiry") {
            run.params["tether_idle_after_restart_s"] = json!(x);
            run.systems.push(s);
        }
    }
    t.stop().await;
    Ok(())
}

async fn redis_population(
    r: &RedisPeer,
    p: &Params,
    n: usize,
    want: &[&str],
    offsets: &[f64],
    runs: &mut HashMap<&str, ScenarioRun>,
) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    r.flushall().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let used0 = r.used_memory().await?;
    let rss0 = crate::server::rss_of(r.pid()).unwrap_or(0);
    let took = r.populate_background(n).await?;
    let used1 = r.used_memory().await?;
    let rss1 = crate::server::rss_of(r.pid()).unwrap_or(0);
    if let Some(run) = runs.get_mut("memory") {
        let mut s = SystemRun::new("Redis");
        s.metric(Metric::new("rss_before", "RSS before", Some(kib(rss0)), "B"));
        s.metric(Metric::new("rss_after", "RSS with N live sessions", Some(kib(rss1)), "B"));
        s.metric(Metric::new(
            "rss_per_session",
            "RSS per live session",
            Some((rss1 as f64 - rss0 as f64) / n as f64),
            "B",
        ));
        s.metric(Metric::new(
            "used_memory_per_session",
            "INFO used_memory per key",
            Some((used1 as f64 - used0 as f64) / n as f64),
            "B",
        ));
        s.note(format!(
            "N keys with ~120-byte values and TTLs, written by pipelined SET PX in {:.1} s (not durable)",
            took.as_secs_f64()
        ));
        run.systems.push(s);
    }
    if has("expiry-lateness") {
        let base = now_ms() + 1500.0;
        let deadlines: Vec<f64> = offsets.iter().map(|o| (base + o).round()).collect();
        let mut lat = r.expiry_lateness(&deadlines, p.peer_window).await?;
        let mut s = SystemRun::new("Redis");
        s.latency("lateness", "lateness (deadline → SSE receipt)", &mut lat);
        s.note(format!(
            "{} probe keys with the same deadline offsets as Tether's probes (PEXPIREAT), on top of N keys with far TTLs; receipt = `expired` message on a subscriber; waited {} s after the last deadline",
            deadlines.len(),
            p.peer_window.as_secs()
        ));
        s.distribution = Some(lat);
        if let Some(run) = runs.get_mut("expiry-lateness") {
            run.systems.push(s);
        }
    }
    if has("mass-expiry") {
        r.flushall().await?;
        let window = p.peer_window + Duration::from_secs_f64(n as f64 / 10_000.0);
        let (all, got, _) = r.mass_expiry(n, window).await?;
        let mut s = SystemRun::new("Redis");
        s.metric(Metric::new("all_ended_ms", "shared deadline → all N `session.ended` received", all, "ms"));
        if all.is_none() {
            s.metrics.last_mut().unwrap().display =
                Some(format!("> {} ({got} of {n} received)", crate::report::fmt_ms(ms(window))));
        }
        s.metric(Metric::text("received", "ended events received", format!("{got} of {n}")));
        s.metric(Metric::new(
            "deadline_spread_ms",
            "spread of the shared deadline (50 sampled sessions)",
            Some(0.0),
            "ms",
        ));
        s.note("N keys given one PEXPIREAT deadline; all `expired` messages counted on one subscriber");
        if let Some(run) = runs.get_mut("mass-expiry") {
            run.systems.push(s);
        }
    }
    r.flushall().await?;
    Ok(())
}

async fn etcd_population(p: &Params, n: usize, want: &[&str], runs: &mut HashMap<&str, ScenarioRun>) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    let ne = n.min(p.etcd_max_leases);
    let capped = if ne < n {
        format!(" (capped at {ne} leases: granting is bounded by etcd's commit rate)")
    } else {
        String::new()
    };
    let mut e = EtcdPeer::start().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = crate::server::rss_of(e.pid()).unwrap_or(0);
    let took = e.populate_background(ne, p.create_conns).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = crate::server::rss_of(e.pid()).unwrap_or(0);
    let grant_rate = ne as f64 / took.as_secs_f64();
    if let Some(run) = runs.get_mut("memory") {
        let mut s = SystemRun::new("etcd");
        s.metric(Metric::new("rss_before", "RSS before", Some(kib(rss0)), "B"));
        s.metric(Metric::new("rss_after", "RSS with N live sessions", Some(kib(rss1)), "B"));
        s.metric(Metric::new(
            "rss_per_session",
            "RSS per live session",
            Some((rss1 as f64 - rss0 as f64) / ne as f64),
            "B",
        ));
        s.metric(Metric::new("create_rate", "creation rate while populating", Some(grant_rate), "/s"));
        s.note(format!("{ne} leases without keys{capped}"));
        run.systems.push(s);
    }
    if has("expiry-lateness") {
        let mut lat = e.expiry_lateness(p.probes, p.probe_idle_s.max(2), p.peer_window, 32.min(p.probes)).await?;
        let mut s = SystemRun::new("etcd");
        s.latency("lateness", "lateness (deadline → SSE receipt)", &mut lat);
        s.note(format!(
            "{} probe leases (TTL {} s) each with a key, on top of {ne} leases{capped}; deadline = grant answer + TTL; receipt = DELETE on a watch",
            p.probes,
            p.probe_idle_s.max(2)
        ));
        s.distribution = Some(lat);
        if let Some(run) = runs.get_mut("expiry-lateness") {
            run.systems.push(s);
        }
    }
    if has("recovery") {
        let t = e.restart_after_kill9().await?;
        let mut s = SystemRun::new("etcd");
        s.metric(Metric::new("ready_ms", "spawn → /readyz 200", Some(ms(t)), "ms"));
        s.note(format!(
            "SIGKILL with {ne} live leases{capped}; restart on the same data dir; time until GET /health says true"
        ));
        if let Some(run) = runs.get_mut("recovery") {
            run.systems.push(s);
        }
    }
    drop(e);
    if has("mass-expiry") {
        let e = EtcdPeer::start().await?;
        let window = p.peer_window + Duration::from_secs_f64(ne as f64 / 500.0);
        let ttl = 5u64;
        let (all, got, spread) = e.mass_expiry(ne, ttl, window, p.create_conns).await?;
        let mut s = SystemRun::new("etcd");
        s.metric(Metric::new("all_ended_ms", "shared deadline → all N `session.ended` received", all, "ms"));
        if all.is_none() {
            s.metrics.last_mut().unwrap().display =
                Some(format!("> {} ({got} of {ne} received)", crate::report::fmt_ms(ms(window))));
        }
        s.metric(Metric::text("received", "ended events received", format!("{got} of {ne}")));
        s.metric(Metric::new(
            "deadline_spread_ms",
            "spread of the shared deadline (50 sampled sessions)",
            Some(spread),
            "ms",
        ));
        s.note(format!(
            "{ne} leases of TTL {ttl} s granted as fast as possible (their deadlines spread over the grant time), key each; measured from the LAST deadline{capped}"
        ));
        if let Some(run) = runs.get_mut("mass-expiry") {
            run.systems.push(s);
        }
    }
    Ok(())
}

async fn pg_population(
    pg: &PgPeer,
    p: &Params,
    n: usize,
    want: &[&str],
    offsets: &[f64],
    runs: &mut HashMap<&str, ScenarioRun>,
) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    pg.truncate().await?;
    let size0 = pg.size_bytes().await?;
    let took = pg.populate_background(n).await?;
    let size1 = pg.size_bytes().await?;
    if let Some(run) = runs.get_mut("memory") {
        let mut s = SystemRun::new("PostgreSQL");
        s.metric(Metric::new(
            "table_per_session",
            "table + index bytes per session (disk, not RSS)",
            Some((size1 - size0) as f64 / n as f64),
            "B",
        ));
        s.note(format!("N rows by one INSERT … SELECT generate_series in {:.1} s", took.as_secs_f64()));
        run.systems.push(s);
    }
    if has("expiry-lateness") {
        let idle_ms = p.probe_idle_s as f64 * 1000.0;
        let base = now_ms() + 1500.0;
        let deadlines: Vec<f64> = offsets.iter().map(|o| base + o).collect();
        let window = p.pg_sweep + Duration::from_secs(5);
        let mut lat = pg.expiry_lateness(&deadlines, idle_ms, window).await?;
        let mut s = SystemRun::new("PostgreSQL");
        s.latency("lateness", "lateness (deadline → SSE receipt)", &mut lat);
        s.note(format!(
            "{} probe rows with Tether's deadline offsets, on top of N rows; sweep every {} s; receipt = the sweep's RETURNING row reaching the sweeper",
            deadlines.len(),
            p.pg_sweep.as_secs_f64()
        ));
        s.distribution = Some(lat);
        if let Some(run) = runs.get_mut("expiry-lateness") {
            run.systems.push(s);
        }
    }
    if has("mass-expiry") {
        pg.truncate().await?;
        let window = p.pg_sweep * 2 + Duration::from_secs(10);
        let (all, got) = pg.mass_expiry(n, p.probe_idle_s as f64 * 1000.0, window).await?;
        let mut s = SystemRun::new("PostgreSQL");
        s.metric(Metric::new("all_ended_ms", "shared deadline → all N `session.ended` received", all, "ms"));
        s.metric(Metric::text("received", "ended events received", format!("{got} of {n}")));
        s.metric(Metric::new(
            "deadline_spread_ms",
            "spread of the shared deadline (50 sampled sessions)",
            Some(0.0),
            "ms",
        ));
        s.note(format!("N rows with one shared deadline; sweep every {} s", p.pg_sweep.as_secs_f64()));
        if let Some(run) = runs.get_mut("mass-expiry") {
            run.systems.push(s);
        }
    }
    pg.truncate().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// heartbeats over HTTP keep-alive

pub async fn heartbeats_http(src: &TetherSource, p: &Params, peers: &mut Peers) -> ScenarioRun {
    let label = format!("heartbeats-http ({} live sessions, {} connections)", p.hb_sessions, p.http_conns);
    let mut run = ScenarioRun {
        scenario: "heartbeats-http".into(),
        label: label.clone(),
        params: json!({"sessions": p.hb_sessions, "conns": p.http_conns, "duration_s": p.hb_duration.as_secs_f64()}),
        targets: vec![Target::ge("rate", 50_000.0, "≥ 50k/s"), Target::le("latency_p99_ms", 5.0, "p99 ≤ 5 ms")],
        systems: vec![],
        error: None,
    };
    match tether_heartbeats_http(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    if let Some(r) = peers.redis.as_ref() {
        let mut s = SystemRun::new("Redis");
        match r.renewals(p.hb_sessions, p.http_conns, p.hb_duration).await {
            Ok((rate, mut lat)) => {
                s.metric(Metric::new("rate", "heartbeats per second", Some(rate), "/s"));
                s.latency("latency", "latency", &mut lat);
                s.note("PEXPIRE key 60000, one command at a time per connection (not durable)");
            }
            Err(e) => {
                s.note(format!("failed: {e:#}"));
            }
        }
        run.systems.push(s);
    }
    if peers.etcd_enabled {
        let s = async {
            let e = EtcdPeer::start().await?;
            let (rate, mut lat) = e.keepalives(p.hb_sessions.min(p.etcd_max_leases), p.http_conns, p.hb_duration).await?;
            let mut s = SystemRun::new("etcd");
            s.metric(Metric::new("rate", "heartbeats per second", Some(rate), "/s"));
            s.latency("latency", "latency", &mut lat);
            s.note("POST /v3/lease/keepalive, one at a time per kept-alive connection (JSON gateway; a native gRPC client would be cheaper)");
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        run.systems.push(s.unwrap_or_else(|e| peer_failed("etcd", e)));
    }
    if let Some(pg) = peers.pg.as_ref() {
        let s = async {
            pg.truncate().await?;
            let (rate, mut lat) = pg.heartbeats(p.hb_sessions, p.http_conns, p.hb_duration).await?;
            pg.truncate().await?;
            let mut s = SystemRun::new("PostgreSQL");
            s.metric(Metric::new("rate", "heartbeats per second", Some(rate), "/s"));
            s.latency("latency", "latency", &mut lat);
            s.note("UPDATE … SET last_active=now() WHERE id=$1, autocommit, one at a time per connection");
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        run.systems.push(s.unwrap_or_else(|e| peer_failed("PostgreSQL", e)));
    }
    run
}

async fn hb_sessions(t: &Tether, p: &Params) -> Result<Arc<Vec<String>>> {
    let c = create_many(&t.api, &["bench_hb"], p.hb_sessions, p.create_conns, "hb", |_| true).await?;
    if c.failures > 0 {
        bail!("creating heartbeat sessions failed: {}", c.first_failure.unwrap_or_default());
    }
    Ok(Arc::new(c.kept.into_iter().map(|k| k.1).collect()))
}

async fn tether_heartbeats_http(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let ids = hb_sessions(&t, p).await?;
    let conns = p.http_conns;
    let paths: Arc<Vec<String>> = Arc::new(ids.iter().map(|id| format!("/v1/sessions/{id}/heartbeat")).collect());
    let warm = Duration::from_secs_f64((p.hb_duration.as_secs_f64() / 10.0).min(2.0));
    let (rate, mut lat, failures, first) = timed_loop(&t.api, conns, warm, p.hb_duration, move |w, i| {
        (Method::POST, paths[(w + i * conns) % paths.len()].clone(), None)
    })
    .await?;
    let mut s = SystemRun::new("Tether");
    s.metric(Metric::new("rate", "heartbeats per second", Some(rate), "/s"));
    s.latency("latency", "latency", &mut lat);
    s.metric(Metric::new("failures", "failed requests", Some(failures as f64), ""));
    if let Some(f) = first {
        s.note(format!("first failure: {f}"));
    }
    s.note(format!("POST /v1/sessions/{{id}}/heartbeat with the API key, one request at a time per keep-alive connection, {:.1} s warm-up not counted", warm.as_secs_f64()));
    t.stop().await;
    Ok(s)
}

// ---------------------------------------------------------------------------
// heartbeats over WebSocket

pub async fn heartbeats_ws(src: &TetherSource, p: &Params, peers: &mut Peers) -> ScenarioRun {
    let label = format!("heartbeats-ws ({} live sessions, {} WebSockets)", p.hb_sessions, p.ws_conns);
    let mut run = ScenarioRun {
        scenario: "heartbeats-ws".into(),
        label: label.clone(),
        params: json!({"sessions": p.hb_sessions, "ws_conns": p.ws_conns, "duration_s": p.hb_duration.as_secs_f64(), "ping_every": WS_PING_EVERY, "max_pings_in_flight": WS_PINGS_IN_FLIGHT}),
        targets: vec![Target::ge("rate", 200_000.0, "≥ 200k/s"), Target::le("latency_p99_ms", 5.0, "p99 ≤ 5 ms")],
        systems: vec![],
        error: None,
    };
    match tether_heartbeats_ws(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    let _ = peers;
    run
}

async fn tether_heartbeats_ws(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let ids = hb_sessions(&t, p).await?;
    let start = Instant::now();
    let warm = Duration::from_secs_f64((p.hb_duration.as_secs_f64() / 10.0).min(2.0));
    let t_begin = start + warm;
    let t_end = t_begin + p.hb_duration;
    let mut tasks = vec![];
    for w in 0..p.ws_conns {
        let ws = ws_connect(t.api.addr, API_KEY, "").await?;
        let ids = ids.clone();
        let conns = p.ws_conns;
        tasks.push(tokio::spawn(async move { ws_heartbeat_worker(ws, ids, w, conns, t_begin, t_end).await }));
    }
    let mut lat = Samples::new();
    let (mut sent, mut errors, mut first_err) = (0usize, 0usize, None);
    let mut finished = t_end;
    for task in tasks {
        let r = task.await??;
        sent += r.0;
        lat.values.extend(r.1.values);
        errors += r.2;
        if first_err.is_none() {
            first_err = r.3;
        }
        finished = finished.max(r.4);
    }
    let secs = (finished - t_begin).as_secs_f64();
    let rate = sent as f64 / secs;
    // check the heartbeats took effect: last_seen_at of a sample is recent
    let mut c = t.api.conn().await?;
    let (_, v) = c.json(Method::GET, &format!("/v1/sessions/{}", ids[0]), &t.api.key, None).await?;
    let fresh = v["last_seen_at"].as_str().and_then(parse_ts).map(|ls| now_ms() - ls);
    let mut s = SystemRun::new("Tether");
    s.metric(Metric::new("rate", "heartbeats per second", Some(rate), "/s"));
    s.latency("latency", "latency", &mut lat);
    s.metric(Metric::new("failures", "failed requests", Some(errors as f64), ""));
    s.note(format!(
        "`{{\"type\":\"heartbeat\",\"session_id\"}}` frames (fire-and-forget) on {} API-key WebSockets; rate = frames sent / time until the pong of a final ping (all earlier frames processed); latency = `ping` → `pong` round trip interleaved every {WS_PING_EVERY} frames, at most {WS_PINGS_IN_FLIGHT} pings in flight per socket (so a ping waits behind at most {} heartbeat frames)",
        p.ws_conns,
        WS_PING_EVERY * WS_PINGS_IN_FLIGHT
    ));
    if let Some(f) = fresh {
        s.note(format!("check: last_seen_at of a heartbeated session was {:.0} ms old after the run", f));
    }
    if let Some(e) = first_err {
        s.note(format!("first error frame: {e}"));
    }
    t.stop().await;
    Ok(s)
}

/// Heartbeat frames between two pings on a WebSocket.
const WS_PING_EVERY: usize = 50;
/// Pings outstanding per WebSocket (bounds the queue a ping waits behind).
const WS_PINGS_IN_FLIGHT: usize = 2;

/// Sends heartbeats as fast as the socket takes them, a ping every 50, and
/// matches pongs in order. Returns (heartbeats sent in the counted window,
/// ping RTTs, error frames, first error, time the final pong came).
async fn ws_heartbeat_worker(
    ws: Ws,
    ids: Arc<Vec<String>>,
    w: usize,
    conns: usize,
    t_begin: Instant,
    t_end: Instant,
) -> Result<(usize, Samples, usize, Option<String>, Instant)> {
    let (mut tx, mut rx) = ws.split();
    let pings: Arc<Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(WS_PINGS_IN_FLIGHT));
    let (p2, f2) = (pings.clone(), in_flight.clone());
    let reader = tokio::spawn(async move {
        let mut lat = Samples::new();
        let mut errors = 0usize;
        let mut first = None;
        let mut last_pong = Instant::now();
        while let Some(Ok(m)) = rx.next().await {
            let Message::Text(txt) = m else { continue };
            let txt = txt.as_str();
            if txt.contains("\"pong\"") {
                let now = Instant::now();
                if let Some(t) = p2.lock().unwrap().pop_front() {
                    if t >= t_begin && t < t_end {
                        lat.push((now - t).as_secs_f64() * 1000.0);
                    }
                    last_pong = now;
                    f2.add_permits(1);
                    if t >= t_end {
                        break; // the final ping
                    }
                }
            } else if txt.contains("\"error\"") {
                errors += 1;
                first.get_or_insert_with(|| txt.to_string());
            }
        }
        (lat, errors, first, last_pong)
    });
    let mut sent = 0usize;
    let mut i = w;
    let ping = Message::Text(r#"{"type":"ping"}"#.into());
    loop {
        let now = Instant::now();
        if now >= t_end {
            break;
        }
        for _ in 0..WS_PING_EVERY {
            let f = format!(r#"{{"type":"heartbeat","session_id":"{}"}}"#, ids[i % ids.len()]);
            i += conns;
            tx.feed(Message::Text(f.into())).await?;
        }
        if now >= t_begin {
            sent += WS_PING_EVERY;
        }
        in_flight.acquire().await?.forget();
        pings.lock().unwrap().push_back(Instant::now());
        tx.send(ping.clone()).await?;
    }
    // final ping: its pong means every earlier frame was read
    in_flight.acquire().await?.forget();
    pings.lock().unwrap().push_back(Instant::now().max(t_end));
    tx.send(ping).await?;
    let (lat, errors, first, last) =
        tokio::time::timeout(Duration::from_secs(60), reader).await.map_err(|_| anyhow!("final pong never came"))??;
    let _ = tx.close().await;
    Ok((sent, lat, errors, first, last))
}

// ---------------------------------------------------------------------------
// durable starts

pub async fn durable_starts(src: &TetherSource, p: &Params, peers: &mut Peers) -> ScenarioRun {
    let label = format!("durable-starts ({} connections)", p.http_conns);
    let mut run = ScenarioRun {
        scenario: "durable-starts".into(),
        label: label.clone(),
        params: json!({"conns": p.http_conns, "duration_s": p.starts_duration.as_secs_f64(), "store": "sqlite"}),
        targets: vec![Target::ge("rate", 10_000.0, "≥ 10k/s"), Target::le("latency_p99_ms", 20.0, "p99 ≤ 20 ms")],
        systems: vec![],
        error: None,
    };
    let r = async {
        let t = Tether::fresh(src, &KindTimes::default()).await?;
        let warm = Duration::from_millis(500).min(p.starts_duration / 4);
        let (rate, mut lat, failures, first) = timed_loop(&t.api, p.http_conns, warm, p.starts_duration, |w, i| {
            (
                Method::POST,
                "/v1/sessions".to_string(),
                Some(Bytes::from(format!(r#"{{"kind":"bench_start","user_id":"s{w}-{i}"}}"#))),
            )
        })
        .await?;
        let mut s = SystemRun::new("Tether");
        s.metric(Metric::new("rate", "starts per second", Some(rate), "/s"));
        s.latency("latency", "latency", &mut lat);
        s.metric(Metric::new("failures", "failed requests", Some(failures as f64), ""));
        if let Some(f) = first {
            s.note(format!("first failure: {f}"));
        }
        s.note("POST /v1/sessions (kind bench_start, distinct users) on a fresh SQLite store; a 201 means durable");
        t.stop().await;
        Ok::<_, anyhow::Error>(s)
    }
    .await;
    match r {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    if peers.etcd_enabled {
        let s = async {
            let e = EtcdPeer::start().await?;
            let (rate, mut lat) = e.starts(p.http_conns, p.starts_duration).await?;
            let mut s = SystemRun::new("etcd");
            s.metric(Metric::new("rate", "starts per second", Some(rate), "/s"));
            s.latency("latency", "latency", &mut lat);
            s.note("lease grant + put of a key attached to it (two commits), one start at a time per connection");
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        run.systems.push(s.unwrap_or_else(|e| peer_failed("etcd", e)));
    }
    if let Some(pg) = peers.pg.as_ref() {
        let s = async {
            pg.truncate().await?;
            let (rate, mut lat) = pg.starts(p.http_conns, p.starts_duration).await?;
            pg.truncate().await?;
            let mut s = SystemRun::new("PostgreSQL");
            s.metric(Metric::new("rate", "starts per second", Some(rate), "/s"));
            s.latency("latency", "latency", &mut lat);
            s.note("INSERT … RETURNING id, autocommit, one at a time per connection");
            Ok::<_, anyhow::Error>(s)
        }
        .await;
        run.systems.push(s.unwrap_or_else(|e| peer_failed("PostgreSQL", e)));
    }
    if peers.redis.is_some() {
        let mut s = SystemRun::new("Redis");
        s.note("not comparable: this Redis keeps nothing on disk (--appendonly no), so no start is durable");
        run.systems.push(s);
    }
    run
}

// ---------------------------------------------------------------------------
// matching: time-to-pair and signaling relay

async fn put_profile(c: &mut crate::http::Conn, key: &str, user: &str, age: u32, interests: &[&str]) -> Result<()> {
    c.ok(
        Method::PUT,
        &format!("/v1/profiles/{user}"),
        key,
        Some(&json!({"name": user, "age": age, "bio": "", "interests": interests})),
    )
    .await?;
    Ok(())
}

async fn start_matching(
    c: &mut crate::http::Conn,
    api: &Api,
    user: &str,
    min: u32,
    max: u32,
    interests: &[&str],
) -> Result<String> {
    let tok = api.user_token(user);
    let v = c
        .ok(
            Method::POST,
            "/v1/matching/start",
            &tok,
            Some(&json!({"min_age": min, "max_age": max, "preferred_interests": interests, "user_id": user})),
        )
        .await?;
    v["session_id"].as_str().map(String::from).ok_or_else(|| anyhow!("no session_id in {v}"))
}

/// Waits on a WebSocket for the first event of `ty`, returning it and the receipt instant.
async fn ws_wait(ws: &mut Ws, ty: &str, timeout: Duration) -> Result<(Value, Instant)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next()).await.map_err(|_| anyhow!("no {ty} within {timeout:?}"))?;
        let Some(m) = m else { bail!("websocket closed while waiting for {ty}") };
        let now = Instant::now();
        if let Message::Text(t) = m? {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if v["type"] == ty {
                return Ok((v, now));
            }
        }
    }
}

fn call_id_of(ev: &Value) -> Option<String> {
    ev["match"]["call_id"].as_str().or(ev["session"]["id"].as_str()).map(String::from)
}

pub async fn time_to_pair(src: &TetherSource, p: &Params) -> ScenarioRun {
    let label = format!("time-to-pair ({} waiting)", p.pair_waiting);
    let mut run = ScenarioRun {
        scenario: "time-to-pair".into(),
        label: label.clone(),
        params: json!({"waiting": p.pair_waiting, "rounds": p.pair_rounds}),
        targets: if p.pair_waiting >= 100_000 {
            vec![Target::le("both_p99_ms", 10.0, "p99 ≤ 10 ms with 100k waiting")]
        } else {
            vec![]
        },
        systems: vec![],
        error: None,
    };
    match tether_time_to_pair(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => {
            run.error = Some(format!("{e:#}"));
        }
    }
    run
}

async fn tether_time_to_pair(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    eprintln!("  tether: {} users waiting", p.pair_waiting);
    // waiting pool: age 30, wants age 18..18 — no two of them ever pair
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fill_start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..p.create_conns.min(p.pair_waiting.max(1)) {
        let (api, next) = (api.clone(), next.clone());
        let n = p.pair_waiting;
        tasks.push(tokio::spawn(async move {
            let mut c = api.conn().await?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let u = format!("w{i}");
                put_profile(&mut c, &api.key, &u, 30, &["waiting"]).await?;
                start_matching(&mut c, &api, &u, 18, 18, &[]).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let fill = fill_start.elapsed();
    // an API-key observer sees every user's `match.found` (one event per user, each with its audience)
    let seen: Arc<Mutex<HashMap<String, Vec<f64>>>> = Arc::default();
    let s2 = seen.clone();
    let obs = spawn_sse(api.addr, "/v1/events?kind=call", &api.key, move |ev| {
        if ev.event != "match.found" {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return };
        if let Some(call) = call_id_of(&v) {
            s2.lock().unwrap().entry(call).or_default().push(ev.received_ms);
        }
    })
    .await?;
    let mut c = api.conn().await?;
    let mut partner_lat = Samples::new();
    let mut both = Samples::new();
    let mut incomplete = 0usize;
    for k in 0..p.pair_rounds {
        let pu = format!("p{k}");
        put_profile(&mut c, &api.key, &pu, 18, &["waiting"]).await?;
        let mut pws = ws_connect(api.addr, &api.user_token(&pu), "").await?;
        let tok = api.user_token(&pu);
        let body = json!({"min_age": 30, "max_age": 30, "user_id": pu});
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t0 = now_ms();
        let v = c.ok(Method::POST, "/v1/matching/start", &tok, Some(&body)).await?;
        let ps = v["session_id"].as_str().unwrap_or_default().to_string();
        let (pev, _) = ws_wait(&mut pws, "match.found", Duration::from_secs(10)).await?;
        partner_lat.push(now_ms() - t0);
        let call = call_id_of(&pev).ok_or_else(|| anyhow!("match.found without a call id: {pev}"))?;
        wait_until(now_ms() + 5000.0, || seen.lock().unwrap().get(&call).is_some_and(|r| r.len() >= 2)).await;
        match seen.lock().unwrap().get(&call) {
            Some(r) if r.len() >= 2 => both.push(r.iter().cloned().fold(0.0, f64::max) - t0),
            _ => incomplete += 1,
        }
        // the partner leaves: its call ends (never active) and the waiting user returns to the pool
        let _ = c.json(Method::POST, &format!("/v1/sessions/{ps}/end"), &api.key, Some(&json!({}))).await;
        let _ = pws.close(None).await;
    }
    obs.abort();
    let mut s = SystemRun::new("Tether");
    s.latency("both", "partner enters → both `match.found` (API-key observer)", &mut both);
    s.latency("partner", "→ entering user's `match.found` on its own WebSocket", &mut partner_lat);
    s.note(format!(
        "{} users waiting (age 30, wanting 18–18: never pair with each other; filled in {:.1} s); per round a new user (age 18, wanting 30–30) enters with POST /v1/matching/start (user token) and is paired with one of the waiting; 'both' = until an API-key SSE observer (`?kind=call`) has received the `match.found` of both users; then the entering user ends its matching session (the call ends, the waiting user returns to the pool); {} rounds",
        p.pair_waiting,
        fill.as_secs_f64(),
        p.pair_rounds
    ));
    if incomplete > 0 {
        s.note(format!("{incomplete} rounds: the observer did not get both users' match.found within 5 s"));
    }
    t.stop().await;
    Ok(s)
}

pub async fn signaling_relay(src: &TetherSource, p: &Params, peers: &mut Peers) -> ScenarioRun {
    let label = "signaling-relay".to_string();
    let mut run = ScenarioRun {
        scenario: "signaling-relay".into(),
        label: label.clone(),
        params: json!({"messages": p.relay_messages}),
        targets: vec![Target::le("relay_p99_ms", 2.0, "p99 ≤ 2 ms")],
        systems: vec![],
        error: None,
    };
    match tether_relay(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    if let Some(r) = peers.redis.as_ref() {
        let mut s = SystemRun::new("Redis");
        match r.relay(p.relay_messages).await {
            Ok(mut lat) => {
                s.latency("relay", "offer sent → received by the peer", &mut lat);
                s.note("PUBLISH → a SUBSCRIBEd connection, one message at a time");
            }
            Err(e) => {
                s.note(format!("failed: {e:#}"));
            }
        }
        run.systems.push(s);
    }
    run
}

async fn tether_relay(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    let mut c = api.conn().await?;
    put_profile(&mut c, &api.key, "a", 25, &["x"]).await?;
    put_profile(&mut c, &api.key, "b", 25, &["x"]).await?;
    let mut aws = ws_connect(api.addr, &api.user_token("a"), "").await?;
    let mut bws = ws_connect(api.addr, &api.user_token("b"), "").await?;
    start_matching(&mut c, &api, "a", 18, 99, &[]).await?;
    start_matching(&mut c, &api, "b", 18, 99, &[]).await?;
    let (ev, _) = ws_wait(&mut aws, "match.found", Duration::from_secs(10)).await?;
    let _ = ws_wait(&mut bws, "match.found", Duration::from_secs(10)).await?;
    let call = call_id_of(&ev).ok_or_else(|| anyhow!("match.found without a call id: {ev}"))?;
    for u in ["a", "b"] {
        c.ok(Method::POST, &format!("/v1/calls/{call}/join"), &api.user_token(u), Some(&json!({}))).await?;
    }
    let mut lat = Samples::new();
    for i in 0..p.relay_messages {
        let f = json!({"type": "signal", "call_id": call, "signal": {"type": "offer", "data": {"seq": i}}}).to_string();
        let t0 = Instant::now();
        aws.send(Message::Text(f.into())).await?;
        loop {
            let (v, at) = ws_wait(&mut bws, "call.signal", Duration::from_secs(5)).await?;
            if v["signal"]["data"]["seq"].as_u64() == Some(i as u64) {
                lat.push((at - t0).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let mut s = SystemRun::new("Tether");
    s.latency("relay", "offer sent → received by the peer", &mut lat);
    s.note("two users paired and joined to their call; A sends `{\"type\":\"signal\",\"call_id\",\"signal\":{\"type\":\"offer\",…}}` on its WebSocket; timed until B's WebSocket delivers the `call.signal` event; one at a time");
    let _ = aws.close(None).await;
    let _ = bws.close(None).await;
    t.stop().await;
    Ok(s)
}

/// Prints the configuration a server must run with for `--url` mode.
pub fn print_config() {
    println!("{}", crate::server::config_toml(&KindTimes::default()));
    let _ = JWT_SECRET;
}

pub fn check_scenarios(names: &[String]) -> Result<()> {
    for n in names {
        if !ALL.contains(&n.as_str()) {
            bail!("unknown scenario {n:?}; known: {}", ALL.join(", "));
        }
    }
    Ok(())
}

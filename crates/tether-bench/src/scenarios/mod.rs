//! The scenarios: the registry of their names, the runner that runs the named
//! ones in order, and what they share — the sizes of a `--size`, the Tether
//! instance each starts, the rows Tether and the peers are described by.
//!
//! One file per scenario, each with its `NAME`, its targets and what it does
//! for Tether and, through [`Peer`], for every peer with the same N,
//! deadlines, connection counts and durations:
//! - [`memory`], [`expiry_lateness`], [`recovery`], [`mass_expiry`] share one
//!   population of N live sessions per size ([`population`]; creating a
//!   million sessions is the expensive part);
//! - [`heartbeats_http`], [`heartbeats_ws`], [`durable_starts`],
//!   [`time_to_pair`], [`pairing_throughput`], [`signaling_relay`], [`webhooks`] stand alone;
//! - [`cluster`] starts its own nodes (three on PostgreSQL, one on
//!   PostgreSQL, one on SQLite) and has no peer counterpart;
//! - [`scale`] (ten million live sessions on one node, created in batches)
//!   and [`wal`] (the SQLite WAL under sustained starts and ends) measure
//!   Tether alone.

pub mod cluster;
pub mod durable_starts;
pub mod expiry_lateness;
pub mod heartbeats_http;
pub mod heartbeats_ws;
pub mod mass_expiry;
pub mod memory;
pub mod pairing_throughput;
pub mod population;
pub mod recovery;
pub mod scale;
pub mod signaling_relay;
pub mod time_to_pair;
pub mod wal;
pub mod webhooks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use futures_util::StreamExt;
use http::Method;
use serde_json::{json, Value};
use tether_engine::EventType;
use tokio_tungstenite::tungstenite::Message;

use crate::http::{parse_ts, spawn_sse, Api, Conn, Ws};
use crate::load::create_many;
use crate::peers::{Peer, Throughput};
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::{wait_ready, KindTimes, Server, ServerFiles};

/// Every scenario, in the order they run and are reported.
pub const ALL: &[&str] = &[
    expiry_lateness::NAME,
    mass_expiry::NAME,
    heartbeats_http::NAME,
    heartbeats_ws::NAME,
    durable_starts::NAME,
    memory::NAME,
    recovery::NAME,
    time_to_pair::NAME,
    pairing_throughput::NAME,
    signaling_relay::NAME,
    cluster::NAME,
    webhooks::NAME,
    scale::NAME,
    wal::NAME,
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
    /// Live sessions of the `scale` scenario (`--scale-sessions`).
    pub scale_sessions: usize,
    /// How long `wal` sustains starts and ends.
    pub wal_duration: Duration,
    /// The steady live population of `wal` (one live session per user).
    pub wal_users: usize,
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
                scale_sessions: 10_000_000,
                wal_duration: Duration::from_secs(600),
                wal_users: 100_000,
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
                scale_sessions: 3000,
                wal_duration: Duration::from_secs(3),
                wal_users: 500,
            },
        }
    }
}

/// Refuses a scenario name that is not in [`ALL`], naming the known ones.
pub fn check_scenarios(names: &[String]) -> Result<()> {
    for n in names {
        if !ALL.contains(&n.as_str()) {
            bail!("unknown scenario {n:?}; known: {}", ALL.join(", "));
        }
    }
    Ok(())
}

/// Prints the configuration a server must run with for `--url` mode.
pub fn print_config() {
    println!("{}", crate::server::config_toml(&KindTimes::default()));
}

/// Runs the scenarios of `want` (in [`ALL`]'s order) `repeat` times: the
/// population scenarios together once per population size, then the others
/// one by one. A scenario that cannot be measured says why in its run.
pub async fn run(
    src: &TetherSource,
    p: &Params,
    peers: &mut [Box<dyn Peer>],
    want: &[&str],
    repeat: usize,
) -> Vec<ScenarioRun> {
    let mut runs = vec![];
    let on_population: Vec<&str> = want.iter().copied().filter(|s| population::SCENARIOS.contains(s)).collect();
    for rep in 0..repeat {
        if repeat > 1 {
            eprintln!("== repetition {}/{}", rep + 1, repeat);
        }
        if !on_population.is_empty() {
            for &n in &p.populations {
                eprintln!("== population N={n}: {}", on_population.join(", "));
                runs.extend(population::run(src, p, peers, n, &on_population).await);
            }
        }
        for name in want {
            let r = match *name {
                heartbeats_http::NAME => heartbeats_http::run(src, p, peers).await,
                heartbeats_ws::NAME => heartbeats_ws::run(src, p).await,
                durable_starts::NAME => durable_starts::run(src, p, peers).await,
                time_to_pair::NAME => time_to_pair::run(src, p).await,
                pairing_throughput::NAME => pairing_throughput::run(src, p).await,
                signaling_relay::NAME => signaling_relay::run(src, p, peers).await,
                cluster::NAME => cluster::run(src, p).await,
                webhooks::NAME => webhooks::run(src, p).await,
                scale::NAME => scale::run(src, p).await,
                wal::NAME => wal::run(src, p).await,
                _ => continue, // a population scenario, run above
            };
            eprintln!(
                "== {} done{}",
                r.label,
                r.error.as_deref().map(|e| format!(" (error: {e})")).unwrap_or_default()
            );
            runs.push(r);
        }
    }
    runs
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
    /// A server on a fresh SQLite store with the kinds' times `kt` (or the
    /// `--url` server as it is).
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

    pub fn rss(&self) -> Option<u64> {
        self.server.as_ref().and_then(|s| s.rss_bytes().ok())
    }

    /// kill -9, optionally rewrite the config, start again; returns
    /// (spawn → listening line, spawn → /readyz 200).
    pub async fn kill9_restart(&mut self, kt: Option<&KindTimes>) -> Result<(Duration, Duration)> {
        let (Some(files), Some(server)) = (self.files.as_ref(), self.server.as_mut()) else {
            bail!("a restart needs the harness to own the server process (run with --tether-bin, not --url)");
        };
        server.kill9();
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

/// A scenario's run before anyone is measured.
fn scenario_run(name: &str, label: String, params: Value, targets: Vec<Target>) -> ScenarioRun {
    ScenarioRun { scenario: name.into(), label, params, targets, systems: vec![], error: None }
}

/// The targets are set for a population of a million; smaller runs have none.
fn at_a_million(n: usize, target: Target) -> Vec<Target> {
    if n >= 1_000_000 {
        vec![target]
    } else {
        vec![]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Records a peer failure as a note instead of failing the scenario.
fn peer_failed(system: &str, e: anyhow::Error) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.note(format!("failed: {e:#}"));
    s
}

/// Asks every peer for its counterpart of one measurement: a row per peer
/// that has one (made by `row`), a "failed" row per peer whose attempt failed,
/// nothing for a peer without a counterpart.
async fn peer_rows<T>(
    peers: &mut [Box<dyn Peer>],
    mut measure: impl AsyncFnMut(&mut dyn Peer) -> Result<Option<T>>,
    row: impl Fn(&str, T) -> SystemRun,
) -> Vec<SystemRun> {
    let mut rows = vec![];
    for peer in peers.iter_mut() {
        match measure(peer.as_mut()).await {
            Ok(Some(t)) => rows.push(row(peer.name(), t)),
            Ok(None) => {}
            Err(e) => rows.push(peer_failed(peer.name(), e)),
        }
    }
    rows
}

/// A row of a throughput table: the rate, its latencies, and (for Tether) the
/// failed requests with the first one's answer.
fn throughput_row(
    system: &str,
    rate_label: &str,
    mut t: Throughput,
    failures: Option<(usize, Option<String>)>,
) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.metric(Metric::new("rate", rate_label, Some(t.rate), "/s"));
    s.latency("latency", "latency", &mut t.latency);
    if let Some((count, first)) = failures {
        s.metric(Metric::new("failures", "failed requests", Some(count as f64), ""));
        if let Some(f) = first {
            s.note(format!("first failure: {f}"));
        }
    }
    s.note(t.note);
    s
}

/// The "all ended" figures of a mass expiry, with "more than the window"
/// shown when not all ended within it.
fn all_ended_metrics(
    s: &mut SystemRun,
    all_ended_ms: Option<f64>,
    received: usize,
    sessions: usize,
    window_ms: Option<f64>,
) {
    s.metric(Metric::new("all_ended_ms", "shared deadline → all N `session.ended` received", all_ended_ms, "ms"));
    if let (None, Some(w)) = (all_ended_ms, window_ms) {
        s.metrics.last_mut().expect("pushed above").display =
            Some(format!("> {} ({received} of {sessions} received)", crate::report::fmt_ms(w)));
    }
    s.metric(Metric::text("received", "ended events received", format!("{received} of {sessions}")));
}

/// The parts of a `session.ended` event the harness reads: whole (`session`
/// holds the session) or lean (`?session=id`: its id, kind and end reason
/// beside the event's fields).
#[derive(serde::Deserialize)]
struct EndedEv {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    session: Option<EndedSess>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    end_reason: Option<String>,
}
#[derive(serde::Deserialize)]
struct EndedSess {
    id: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    end_reason: Option<String>,
}

impl EndedEv {
    /// (id, kind, end reason) of either form.
    fn parts(self) -> Option<(String, Option<String>, Option<String>)> {
        match self.session {
            Some(s) => Some((s.id, s.kind, s.end_reason)),
            None => Some((self.session_id?, self.kind, self.end_reason)),
        }
    }
}

/// Receipts of `session.ended` events: id → (receipt ms, server `at` ms, reason).
type Receipts = Arc<Mutex<HashMap<String, (f64, Option<f64>, String)>>>;

/// Subscribes to `GET /v1/events{query}` and records the first `session.ended`
/// of every session (of a kind starting with `kind_prefix`, if given).
async fn subscribe_ended(
    api: &Api,
    query: &str,
    kind_prefix: Option<&'static str>,
) -> Result<(Receipts, tokio::task::JoinHandle<()>)> {
    let rec: Receipts = Arc::default();
    let r2 = rec.clone();
    let ended = EventType::Ended.as_str();
    let ended_in_data = format!("\"{ended}\"");
    let h = spawn_sse(api.addr, &format!("/v1/events{query}"), &api.key, move |ev| {
        let is_ended = ev.event == ended || (ev.event.is_empty() && ev.data.contains(&ended_in_data));
        if !is_ended {
            return;
        }
        let Ok(mut e) = serde_json::from_str::<EndedEv>(&ev.data) else { return };
        let (at, reason) = (e.at.take(), e.reason.take());
        let Some((id, kind, end_reason)) = e.parts() else { return };
        if let Some(pre) = kind_prefix {
            if !kind.as_deref().unwrap_or("").starts_with(pre) {
                return;
            }
        }
        let reason = reason.or(end_reason).unwrap_or_default();
        let at = at.as_deref().and_then(parse_ts);
        r2.lock().unwrap().entry(id).or_insert((ev.received_ms, at, reason));
    })
    .await?;
    Ok((rec, h))
}

/// The server's `tether_expiry_stage_lateness_seconds` histogram, scraped
/// from `/metrics`: per stage, (upper bound in ms, cumulative count).
pub type Stages = HashMap<String, Vec<(f64, u64)>>;

pub async fn scrape_stages(api: &Api) -> Result<Stages> {
    let mut c = api.conn().await?;
    let (status, body) = c.request(Method::GET, "/metrics", &api.key, None).await?;
    if !status.is_success() {
        bail!("GET /metrics answered {status}");
    }
    let mut stages: Stages = HashMap::new();
    for line in String::from_utf8_lossy(&body).lines() {
        let Some(rest) = line.strip_prefix("tether_expiry_stage_lateness_seconds_bucket{") else { continue };
        let Some((labels, count)) = rest.split_once("} ") else { continue };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"').map(str::to_string))
        };
        let (Some(stage), Some(le)) = (label("stage"), label("le")) else { continue };
        let le_ms = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().unwrap_or(f64::NAN) * 1000.0 };
        stages.entry(stage).or_default().push((le_ms, count.trim().parse().unwrap_or(0)));
    }
    Ok(stages)
}

/// Adds, per stage of a deadline-driven end (the server's own timestamps:
/// ended by the engine, committed, published, written to a subscriber's
/// stream), the bucket bounds holding the p50, the p99 and the last of the
/// ends observed between the scrapes `before` and `after`.
pub fn stage_metrics(s: &mut SystemRun, before: &Stages, after: &Stages) {
    for stage in ["ended", "committed", "published", "written"] {
        let Some(now) = after.get(stage) else { continue };
        let then = before.get(stage);
        let counts: Vec<(f64, u64)> = now
            .iter()
            .map(|&(le, n)| {
                let was = then.and_then(|t| t.iter().find(|(l, _)| *l == le || (l.is_infinite() && le.is_infinite())));
                (le, n - was.map(|w| w.1).unwrap_or(0).min(n))
            })
            .collect();
        let total = counts.last().map(|c| c.1).unwrap_or(0);
        let bound = |q: f64| {
            let want = (q * total as f64).ceil().max(1.0) as u64;
            counts.iter().find(|(_, n)| *n >= want).map(|c| c.0)
        };
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
            let v = if total == 0 { None } else { bound(q) };
            let mut m = Metric::new(
                &format!("stage_{stage}_{name}_ms"),
                &format!("server stage `{stage}` {name} (≤ bucket bound, deadline → {stage})"),
                v.filter(|v| v.is_finite()),
                "ms",
            );
            if v.is_some_and(|v| v.is_infinite()) {
                m.display = Some("> 60 s".into());
            }
            if total == 0 {
                m.display = Some("no deadline ends observed".into());
            }
            s.metric(m);
        }
    }
}

/// `p.hb_sessions` live sessions of kind `bench_hb` to heartbeat.
async fn hb_sessions(t: &Tether, p: &Params) -> Result<Arc<Vec<String>>> {
    let c = create_many(&t.api, &["bench_hb"], p.hb_sessions, p.create_conns, "hb", |_| true).await?;
    if c.failures > 0 {
        bail!("creating heartbeat sessions failed: {}", c.first_failure.unwrap_or_default());
    }
    Ok(Arc::new(c.kept.into_iter().map(|k| k.1).collect()))
}

/// The warm-up before a heartbeat loop is counted: a tenth of the run, at most 2 s.
fn hb_warmup(p: &Params) -> Duration {
    Duration::from_secs_f64((p.hb_duration.as_secs_f64() / 10.0).min(2.0))
}

// --- matching (time-to-pair, pairing-throughput, signaling-relay)

/// Puts `n` users in the matching pool who never pair with each other (age
/// 30, wanting 18–18), over `conns` connections; returns how long it took.
async fn fill_waiting_pool(api: &Api, n: usize, conns: usize) -> Result<Duration> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conns.min(n.max(1)) {
        let (api, next) = (api.clone(), next.clone());
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
    Ok(started.elapsed())
}

async fn put_profile(c: &mut Conn, key: &str, user: &str, age: u32, interests: &[&str]) -> Result<()> {
    c.ok(
        Method::PUT,
        &format!("/v1/profiles/{user}"),
        key,
        Some(&json!({"name": user, "age": age, "bio": "", "interests": interests})),
    )
    .await?;
    Ok(())
}

async fn start_matching(c: &mut Conn, api: &Api, user: &str, min: u32, max: u32, interests: &[&str]) -> Result<String> {
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

/// Waits on a WebSocket for the first event of type `ty`, returning it and the receipt instant.
async fn ws_wait(ws: &mut Ws, ty: EventType, timeout: Duration) -> Result<(Value, Instant)> {
    let ty = ty.as_str();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_name_is_known_once() {
        let mut names = ALL.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for s in population::SCENARIOS {
            assert!(ALL.contains(&s), "{s}");
        }
    }

    #[test]
    fn an_unknown_scenario_is_refused_with_the_known_ones() {
        assert!(check_scenarios(&["memory".into(), "time-to-pair".into()]).is_ok());
        let e = check_scenarios(&["mass_expiry".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown scenario \"mass_expiry\""), "{e}");
        assert!(e.contains("mass-expiry"), "{e}");
    }

    #[test]
    fn a_call_id_is_read_from_match_found_or_the_call_session() {
        assert_eq!(call_id_of(&json!({"match": {"call_id": "c1"}})).as_deref(), Some("c1"));
        assert_eq!(call_id_of(&json!({"session": {"id": "c2"}})).as_deref(), Some("c2"));
        assert_eq!(call_id_of(&json!({"type": "session.ended"})), None);
    }

    #[test]
    fn all_ended_says_more_than_the_window_when_not_all_came() {
        let mut s = SystemRun::new("Redis");
        all_ended_metrics(&mut s, None, 7, 10, Some(3000.0));
        assert!(s.metrics[0].display.as_deref().unwrap().ends_with("(7 of 10 received)"));
        assert_eq!(s.metrics[1].display.as_deref(), Some("7 of 10"));
        let mut s = SystemRun::new("PostgreSQL");
        all_ended_metrics(&mut s, None, 7, 10, None);
        assert_eq!(s.metrics[0].display, None);
    }
}

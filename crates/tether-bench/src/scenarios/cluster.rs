//! `cluster`: Tether as several nodes on one PostgreSQL (contract section 8,
//! issue 11), beside one node on PostgreSQL and one on SQLite, all started by
//! the harness on this machine. For each: session starts per second and
//! heartbeats per second (connections spread over the nodes), expiry
//! lateness (probes started through every node, their ends received on
//! another node than the first), cross-node event delivery (a start sent
//! through node A → its `session.started` received by a subscriber of node
//! B; the same node for one node), and, for the cluster, failover time:
//! `kill -9` of the lease holder → the first end of an overdue deadline
//! received on a survivor, over several runs (the killed node is started
//! again between runs).
//!
//! Every node shares the machine's cores with PostgreSQL and this client,
//! so the cluster's throughput here is bounded by the machine, not by the
//! design; the report says so. PostgreSQL is `TETHER_BENCH_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`), on a fresh schema per setup,
//! dropped afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use tether_engine::EventType;

use super::{ms, scenario_run, subscribe_ended, Params, TetherSource};
use crate::http::{now_ms, spawn_sse, wait_until, Api};
use crate::load::{create_many, timed_loop};
use crate::report::{Metric, ScenarioRun, SystemRun};
use crate::server::{config_toml, wait_ready, KindTimes, Server, ServerFiles};
use crate::stats::Samples;

pub const NAME: &str = "cluster";

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Kinds this scenario adds to the harness's configuration.
const KINDS: &str = r#"
# cross-node delivery: started through one node, received on another
[kinds.bench_xnode]
idle_timeout = "1h"
per_user = "allow"

# failover: due right after the lease holder is killed
[kinds.bench_fail]
idle_timeout = "300ms"
per_user = "allow"
"#;

/// The sizes of a `--size` that only this scenario uses.
struct Sizes {
    /// `[cluster] lease`.
    lease: &'static str,
    lease_ms: u64,
    failover_runs: usize,
    /// Starts timed through node A and received on node B.
    deliveries: usize,
    /// Starts and heartbeats whose PostgreSQL round trips are counted (many,
    /// so the idle cluster's own round trips subtracted from them matter little).
    trips: usize,
}

fn sizes(p: &Params) -> Sizes {
    if p.size == "full" {
        Sizes { lease: "5s", lease_ms: 5_000, failover_runs: 10, deliveries: 1000, trips: 2000 }
    } else {
        Sizes { lease: "2s", lease_ms: 2_000, failover_runs: 1, deliveries: 50, trips: 300 }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Postgres,
    Sqlite,
}

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let z = sizes(p);
    let mut run = scenario_run(
        NAME,
        format!("{NAME} (Tether = 3 nodes on one PostgreSQL, beside 1 node on PostgreSQL and 1 on SQLite)"),
        json!({
            "conns": p.http_conns, "duration_s": p.starts_duration.as_secs_f64(), "hb_sessions": p.hb_sessions,
            "probes": p.probes, "deliveries": z.deliveries, "failover_runs": z.failover_runs, "lease": z.lease,
        }),
        vec![],
    );
    let TetherSource::Bin(bin) = src else {
        run.error = Some("needs the harness to start the nodes (run with --tether-bin, not --url)".into());
        return run;
    };
    let setups = [
        ("Tether", Store::Postgres, 3),
        ("1 node, PostgreSQL", Store::Postgres, 1),
        ("1 node, SQLite", Store::Sqlite, 1),
    ];
    let mut errors = vec![];
    for (system, store, n) in setups {
        eprintln!("  {system}: {n} node(s)");
        match measure(bin, p, &z, system, store, n).await {
            Ok(s) => run.systems.push(s),
            Err(e) => {
                let mut s = SystemRun::new(system);
                s.note(format!("failed: {e:#}"));
                run.systems.push(s);
                errors.push(format!("{system}: {e:#}"));
            }
        }
    }
    if !errors.is_empty() {
        run.error = Some(errors.join("; "));
    }
    run
}

/// One node process and its files.
struct Node {
    files: ServerFiles,
    _dir: tempfile::TempDir,
    server: Option<Server>,
}

/// `n` nodes on one store.
struct Nodes {
    nodes: Vec<Node>,
    store: String,
    /// The PostgreSQL schema to drop at the end.
    schema: Option<(String, String)>,
    /// What the nodes send PostgreSQL passes through here (PostgreSQL only).
    counter: Option<PgCounter>,
}

impl Nodes {
    async fn start(bin: &std::path::Path, p: &Params, z: &Sizes, store: Store, n: usize) -> Result<Nodes> {
        let kt = KindTimes { probe_idle: format!("{}s", p.probe_idle_s), ..KindTimes::default() };
        let mut config = config_toml(&kt) + KINDS;
        let (store_url, schema, counter) = match store {
            Store::Postgres => {
                let base = std::env::var("TETHER_BENCH_PG").unwrap_or_else(|_| DEFAULT_PG.into());
                let name = format!("tether_bench_cluster_{}_{}", std::process::id(), rand::random::<u32>());
                let sep = if base.contains('?') { '&' } else { '?' };
                config.push_str(&format!("\n[cluster]\nlease = \"{}\"\n", z.lease));
                // The nodes reach PostgreSQL through the counter.
                let (before, server, after) = split_host(&base)?;
                let counter = PgCounter::start(&server).await?;
                let via = format!("{before}{}{after}", counter.addr);
                (format!("{via}{sep}schema={name}"), Some((base, name)), Some(counter))
            }
            Store::Sqlite => (String::new(), None, None),
        };
        let mut nodes = Nodes { nodes: vec![], store: store_url, schema, counter };
        for _ in 0..n {
            let dir = tempfile::Builder::new().prefix("tether-bench-cluster-").tempdir()?;
            let files = ServerFiles { bin: bin.to_path_buf(), dir: dir.path().to_path_buf() };
            std::fs::write(files.config(), &config)?;
            if nodes.store.is_empty() {
                nodes.store = format!("sqlite://{}", files.db().display());
            }
            nodes.nodes.push(Node { files, _dir: dir, server: None });
            let i = nodes.nodes.len() - 1;
            nodes.spawn(i).await?;
        }
        Ok(nodes)
    }

    async fn spawn(&mut self, i: usize) -> Result<()> {
        let server = self.nodes[i].files.spawn_on(&self.store, Duration::from_secs(60))?;
        wait_ready(&server.api(), Duration::from_secs(60)).await?;
        self.nodes[i].server = Some(server);
        Ok(())
    }

    fn api(&self, i: usize) -> Api {
        self.nodes[i].server.as_ref().expect("a running node").api()
    }

    fn apis(&self) -> Vec<Api> {
        self.nodes.iter().filter_map(|n| n.server.as_ref().map(Server::api)).collect()
    }

    /// The node `GET /v1/admin/cluster` on node `ask` names as the lease holder.
    async fn leader(&self, ask: usize) -> Result<usize> {
        let api = self.api(ask);
        let v = api.conn().await?.ok(Method::GET, "/v1/admin/cluster", &api.key, None).await?;
        let nodes = v["nodes"].as_array().ok_or_else(|| anyhow!("no nodes in {v}"))?;
        let leader = nodes.iter().find(|m| m["leader"] == true).ok_or_else(|| anyhow!("no lease holder in {v}"))?;
        let advertise = leader["advertise"].as_str().unwrap_or_default().trim_end_matches('/').to_string();
        self.nodes
            .iter()
            .position(|n| n.server.as_ref().is_some_and(|s| format!("http://{}", s.addr) == advertise))
            .ok_or_else(|| anyhow!("the lease holder {advertise} is none of ours: {v}"))
    }

    /// Waits until every running node names the same lease holder.
    async fn agreed_leader(&self, limit: Duration) -> Result<usize> {
        let t0 = Instant::now();
        loop {
            let mut views = vec![];
            for i in (0..self.nodes.len()).filter(|&i| self.nodes[i].server.is_some()) {
                views.push(self.leader(i).await.ok());
            }
            if let Some(Some(l)) = views.first() {
                if views.iter().all(|v| *v == Some(*l)) {
                    return Ok(*l);
                }
            }
            if t0.elapsed() > limit {
                bail!("no agreed lease holder within {limit:?}: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].server.take() {
            s.kill9();
        }
    }

    async fn stop(mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(s) = n.server.take() {
                tokio::task::spawn_blocking(move || s.stop()).await.ok();
            }
        }
        if let Some(c) = self.counter.take() {
            c.task.abort();
        }
        if let Some((base, name)) = self.schema.take() {
            if let Ok((client, conn)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
                let h = tokio::spawn(conn);
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")).await;
                drop(client);
                let _ = h.await;
            }
        }
    }
}

async fn measure(
    bin: &std::path::Path,
    p: &Params,
    z: &Sizes,
    system: &str,
    store: Store,
    n: usize,
) -> Result<SystemRun> {
    let mut nodes = Nodes::start(bin, p, z, store, n).await?;
    let r = measure_on(&mut nodes, p, z, system, store).await;
    nodes.stop().await;
    r
}

async fn measure_on(nodes: &mut Nodes, p: &Params, z: &Sizes, system: &str, store: Store) -> Result<SystemRun> {
    let n = nodes.nodes.len();
    let mut s = SystemRun::new(system);
    let leader = if n > 1 { Some(nodes.agreed_leader(Duration::from_secs(30)).await?) } else { None };
    // A = a node that does not hold the lease (its requests are forwarded), B = another one.
    let (a, b) = match leader {
        Some(l) => {
            let others: Vec<usize> = (0..n).filter(|&i| i != l).collect();
            (others[0], others.get(1).copied().unwrap_or(l))
        }
        None => (0, 0),
    };
    let apis = nodes.apis();

    // Starts per second, connections spread over the nodes.
    let warm = Duration::from_millis(500).min(p.starts_duration / 4);
    let (rate, mut lat, failures, first) = spread_loop(&apis, p.http_conns, warm, p.starts_duration, |node, w, i| {
        let body = format!(r#"{{"kind":"bench_start","user_id":"s{node}-{w}-{i}"}}"#);
        (Method::POST, "/v1/sessions".to_string(), Some(Bytes::from(body)))
    })
    .await?;
    s.metric(Metric::new("starts_rate", "starts per second", Some(rate), "/s"));
    s.latency("starts_latency", "start latency", &mut lat);
    failure_metric(&mut s, "starts_failures", "failed starts", failures, first);

    // Heartbeats per second on live sessions, connections spread over the nodes.
    let hb = create_many(&apis[0], &["bench_hb"], p.hb_sessions, p.create_conns, "hb", |_| true).await?;
    if hb.failures > 0 {
        bail!("creating heartbeat sessions failed: {}", hb.first_failure.unwrap_or_default());
    }
    let paths: Arc<Vec<String>> = Arc::new(hb.kept.iter().map(|k| format!("/v1/sessions/{}/heartbeat", k.1)).collect());
    let conns = p.http_conns;
    let warm = Duration::from_secs_f64((p.hb_duration.as_secs_f64() / 10.0).min(2.0));
    let (rate, mut lat, failures, first) = spread_loop(&apis, conns, warm, p.hb_duration, move |node, w, i| {
        (Method::POST, paths[(node * 7919 + w + i * conns) % paths.len()].clone(), None)
    })
    .await?;
    s.metric(Metric::new("hb_rate", "heartbeats per second", Some(rate), "/s"));
    s.latency("hb_latency", "heartbeat latency", &mut lat);
    failure_metric(&mut s, "hb_failures", "failed heartbeats", failures, first);

    // Expiry lateness: probes started through every node, ends received on B.
    let (rec, h) = subscribe_ended(&nodes.api(b), "?kind=bench_probe", None).await?;
    let mut deadlines: Vec<(String, f64)> = vec![];
    let per_node = p.probes.div_ceil(apis.len());
    for (k, api) in apis.iter().enumerate() {
        let c = create_many(api, &["bench_probe"], per_node, 8.min(per_node), &format!("probe{k}-"), |_| true).await?;
        if c.failures > 0 {
            bail!("probe creation failed: {}", c.first_failure.unwrap_or_default());
        }
        deadlines.extend(c.kept.into_iter().filter_map(|(_, id, e)| e.map(|e| (id, e))));
    }
    let last = deadlines.iter().map(|d| d.1).fold(0.0, f64::max);
    wait_until(last + ms(p.tether_window), || rec.lock().unwrap().len() >= deadlines.len()).await;
    h.abort();
    let rec = rec.lock().unwrap().clone();
    let (mut late, mut server_late) = (Samples::new(), Samples::new());
    for (id, d) in &deadlines {
        match rec.get(id) {
            Some((r, at, _)) => {
                late.push(r - d);
                if let Some(at) = at {
                    server_late.push(at - d);
                }
            }
            None => late.missing += 1,
        }
    }
    late.window_ms = Some(ms(p.tether_window));
    s.latency("lateness", "expiry lateness (deadline → end received on node B)", &mut late);
    s.latency("server_lateness", "expiry lateness, server-stamped (`at` − deadline)", &mut server_late);

    // PostgreSQL round trips per start and per heartbeat, through A, one at a time.
    if let Some(counter) = &nodes.counter {
        let trips = round_trips(counter, &nodes.api(a), z.trips).await?;
        s.metric(Metric::new(
            "trips_idle",
            "PostgreSQL round trips per second, idle cluster",
            Some(trips.idle_per_s),
            "",
        ));
        s.metric(Metric::new(
            "trips_start",
            "PostgreSQL round trips per start (through A)",
            Some(trips.per_start),
            "trips",
        ));
        s.metric(Metric::new(
            "trips_hb",
            "PostgreSQL round trips per heartbeat (through A)",
            Some(trips.per_hb),
            "trips",
        ));
    }

    // Cross-node delivery: a start through A, its session.started received on B.
    let mut delivery = deliveries(&nodes.api(a), &nodes.api(b), z.deliveries).await?;
    let label = if a == b {
        "start sent → `session.started` received (same node)"
    } else {
        "start sent through node A → `session.started` received on node B"
    };
    s.latency("delivery", label, &mut delivery);

    // Failover: kill -9 of the lease holder → the first overdue end received on a survivor.
    if leader.is_some() {
        let mut failover = Samples::new();
        let mut server_failover = Samples::new();
        for run in 0..z.failover_runs {
            let (rx, at) = failover_once(nodes, z).await.with_context(|| format!("failover run {}", run + 1))?;
            failover.push(rx);
            server_failover.push(at);
        }
        s.latency("failover", "kill -9 of the lease holder → first overdue end received on a survivor", &mut failover);
        s.latency("server_failover", "kill -9 of the lease holder → that end's `at`", &mut server_failover);
    } else {
        s.metric(Metric::text(
            "failover_p50_ms",
            "kill -9 of the lease holder → first overdue end received on a survivor p50",
            "no other node".into(),
        ));
    }

    s.note(match store {
        Store::Postgres => format!(
            "{n} node(s) on one fresh PostgreSQL schema, [cluster] lease = \"{}\"{}; all processes (nodes, PostgreSQL, this client) share this machine's cores, so the cluster's throughput here is bounded by the machine, not the design",
            z.lease,
            leader.map(|l| format!("; node {l} held the lease, A = node {a}, B = node {b}")).unwrap_or_default()
        ),
        Store::Sqlite => "one node on a fresh SQLite file (no cluster)".into(),
    });
    s.note(format!(
        "starts: POST /v1/sessions (kind bench_start, distinct users), heartbeats: POST /v1/sessions/{{id}}/heartbeat on {} sessions, {} connections in all spread over the nodes; {} probes (idle {} s) started through every node; {} deliveries one at a time; round trips: a pass-through in front of PostgreSQL counts each Sync and simple Query the nodes send, over {} starts then {} heartbeats one at a time, less the idle cluster's rate",
        p.hb_sessions, p.http_conns, p.probes, p.probe_idle_s, z.deliveries, z.trips, z.trips
    ));
    Ok(s)
}

fn failure_metric(s: &mut SystemRun, key: &str, label: &str, failures: usize, first: Option<String>) {
    s.metric(Metric::new(key, label, Some(failures as f64), ""));
    if let Some(f) = first {
        s.note(format!("{label}, first: {f}"));
    }
}

/// [`timed_loop`] on every node at once, `conns` connections in all; the
/// request of worker `w` of node `node` is `req(node, w, i)`. Returns the
/// summed rate, the merged latencies, the failures and the first one.
async fn spread_loop<F>(
    apis: &[Api],
    conns: usize,
    warm: Duration,
    dur: Duration,
    req: F,
) -> Result<(f64, Samples, usize, Option<String>)>
where
    F: Fn(usize, usize, usize) -> (Method, String, Option<Bytes>) + Send + Sync + Clone + 'static,
{
    let per_node = (conns / apis.len()).max(1);
    let loops = apis.iter().enumerate().map(|(node, api)| {
        let req = req.clone();
        timed_loop(api, per_node, warm, dur, move |w, i| req(node, w, i))
    });
    let mut rate = 0.0;
    let mut all = Samples::new();
    let (mut failures, mut first) = (0, None);
    for r in futures_util::future::join_all(loops).await {
        let (r, l, f, ff) = r?;
        rate += r;
        all.values.extend(l.values);
        failures += f;
        first = first.or(ff);
    }
    Ok((rate, all, failures, first))
}

/// `count` starts through `a`, one at a time; for each, the time from
/// sending it to a subscriber of `b` receiving its `session.started` (ms).
async fn deliveries(a: &Api, b: &Api, count: usize) -> Result<Samples> {
    let received: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
    let started = EventType::Started.as_str();
    let h = {
        let received = received.clone();
        spawn_sse(b.addr, "/v1/events?kind=bench_xnode", &b.key, move |ev| {
            if ev.event != started {
                return;
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return };
            if let Some(id) = v["session"]["id"].as_str() {
                received.lock().unwrap().entry(id.to_string()).or_insert(ev.received_ms);
            }
        })
        .await?
    };
    let mut c = a.conn().await?;
    let mut sent: Vec<(String, f64)> = vec![];
    for i in 0..count {
        let t0 = now_ms();
        let body = json!({"kind": "bench_xnode", "user_id": format!("x{i}")});
        let v = c.ok(Method::POST, "/v1/sessions", &a.key, Some(&body)).await?;
        let id = v["session"]["id"].as_str().ok_or_else(|| anyhow!("no session id in {v}"))?.to_string();
        sent.push((id, t0));
        // Paced, so each delivery is timed alone rather than behind a queue of them.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let window = 5_000.0;
    wait_until(now_ms() + window, || received.lock().unwrap().len() >= sent.len()).await;
    h.abort();
    let received = received.lock().unwrap().clone();
    let mut out = Samples::new();
    for (id, t0) in sent {
        match received.get(&id) {
            Some(r) => out.push(r - t0),
            None => out.missing += 1,
        }
    }
    out.window_ms = Some(window);
    Ok(out)
}

/// One failover: sessions due 300 ms on (kind `bench_fail`) are started
/// through a survivor-to-be, the lease holder is killed at once, and the
/// first of their ends to reach a subscriber of the survivor is timed from
/// the kill (receipt, and the event's `at`). The killed node is started again.
async fn failover_once(nodes: &mut Nodes, z: &Sizes) -> Result<(f64, f64)> {
    let holder = nodes.agreed_leader(Duration::from_millis(3 * z.lease_ms + 10_000)).await?;
    let survivor =
        (0..nodes.nodes.len()).find(|&i| i != holder && nodes.nodes[i].server.is_some()).expect("a survivor");
    let api = nodes.api(survivor);
    let (rec, h) = subscribe_ended(&api, "?kind=bench_fail", None).await?;
    let c = create_many(&api, &["bench_fail"], 5, 1, "fail", |_| true).await?;
    if c.failures > 0 {
        bail!("starting the failover sessions failed: {}", c.first_failure.unwrap_or_default());
    }
    let killed_at = now_ms();
    nodes.kill9(holder);
    let limit = killed_at + 3.0 * z.lease_ms as f64 + 10_000.0;
    wait_until(limit, || !rec.lock().unwrap().is_empty()).await;
    h.abort();
    let first =
        rec.lock().unwrap().values().map(|(r, at, _)| (*r, at.unwrap_or(f64::NAN))).min_by(|x, y| x.0.total_cmp(&y.0));
    let Some((received, at)) = first else {
        bail!("no overdue deadline fired on a survivor within {} ms of the kill", limit - killed_at)
    };
    let deadline = c.kept.iter().filter_map(|k| k.2).fold(f64::MAX, f64::min);
    if deadline > killed_at + z.lease_ms as f64 {
        bail!("the failover sessions were due after the lease ran out; the measurement would time the deadline");
    }
    nodes.spawn(holder).await?;
    Ok((received - killed_at, at - killed_at))
}

/// The PostgreSQL URL around its `host:port`: (`postgres://user@`, `host:port`, `/db…`).
fn split_host(url: &str) -> Result<(String, String, String)> {
    let scheme_end = url.find("://").map(|i| i + 3).ok_or_else(|| anyhow!("not a postgres:// URL: {url}"))?;
    let host_start = url[scheme_end..].find('@').map(|i| scheme_end + i + 1).unwrap_or(scheme_end);
    let host_end = url[host_start..].find(['/', '?']).map(|i| host_start + i).unwrap_or(url.len());
    let host = &url[host_start..host_end];
    let host = if host.contains(':') { host.to_string() } else { format!("{host}:5432") };
    Ok((url[..host_start].to_string(), host, url[host_end..].to_string()))
}

/// A TCP pass-through in front of PostgreSQL that counts the round trips
/// its clients make: each `Sync` (the end of an extended-protocol exchange)
/// and each simple `Query` the clients send is one. Bytes pass unchanged
/// both ways; only the client's side is parsed (message type and length).
struct PgCounter {
    addr: std::net::SocketAddr,
    trips: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PgCounter {
    async fn start(server: &str) -> Result<PgCounter> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let trips = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (server, counted) = (server.to_string(), trips.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (server, counted) = (server.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(upstream) = tokio::net::TcpStream::connect(&server).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let down = tokio::spawn(async move { tokio::io::copy(&mut ur, &mut cw).await });
                    let mut parser = PgParser::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counted.fetch_add(parser.feed(&buf[..n]), std::sync::atomic::Ordering::Relaxed);
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut uw).await;
                    down.abort();
                });
            }
        });
        Ok(PgCounter { addr, trips, task })
    }

    fn count(&self) -> u64 {
        self.trips.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The client side of the PostgreSQL protocol, as far as counting needs:
/// untyped messages (length, code) until the startup message, then typed ones
/// (type byte, length).
#[derive(Default)]
struct PgParser {
    started: bool,
    header: Vec<u8>,
    skip: usize,
}

/// The codes of the untyped requests that precede the startup message.
const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;

impl PgParser {
    /// Reads `data`; returns the round trips it completed.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut trips = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let want = if self.started { 5 } else { 8 };
            let n = (want - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < want {
                break;
            }
            let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if self.started {
                let ty = self.header[0];
                self.skip = be(&self.header[1..5]).saturating_sub(4);
                if ty == b'S' || ty == b'Q' {
                    trips += 1;
                }
            } else {
                let code = be(&self.header[4..8]) as u32;
                self.skip = be(&self.header[0..4]).saturating_sub(8);
                self.started = code != SSL_REQUEST && code != GSSENC_REQUEST;
            }
            self.header.clear();
        }
        trips
    }
}

struct Trips {
    idle_per_s: f64,
    per_start: f64,
    per_hb: f64,
}

/// Round trips of an idle cluster per second (lease beats, event-log tails), then of
/// `n` starts and of `n` heartbeats sent one at a time through `a`, each less
/// the idle rate over its duration.
async fn round_trips(counter: &PgCounter, a: &Api, n: usize) -> Result<Trips> {
    let t0 = Instant::now();
    let c0 = counter.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_per_s = (counter.count() - c0) as f64 / t0.elapsed().as_secs_f64();
    let mut c = a.conn().await?;
    let mut ids = vec![];
    let (t0, c0) = (Instant::now(), counter.count());
    for i in 0..n {
        let body = json!({"kind": "bench_start", "user_id": format!("trips{i}")});
        let v = c.ok(Method::POST, "/v1/sessions", &a.key, Some(&body)).await?;
        ids.push(v["session"]["id"].as_str().ok_or_else(|| anyhow!("no session id in {v}"))?.to_string());
    }
    let per_start = ((counter.count() - c0) as f64 - idle_per_s * t0.elapsed().as_secs_f64()) / n as f64;
    let (t0, c0) = (Instant::now(), counter.count());
    for id in &ids {
        c.ok(Method::POST, &format!("/v1/sessions/{id}/heartbeat"), &a.key, None).await?;
    }
    // Heartbeats are written in batches, once a second: let the last batch go out before counting.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let per_hb = ((counter.count() - c0) as f64 - idle_per_s * t0.elapsed().as_secs_f64()) / n as f64;
    Ok(Trips { idle_per_s, per_start, per_hb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_postgres_url_is_found() {
        let (a, h, b) = split_host("postgres://postgres@127.0.0.1:5432/test").unwrap();
        assert_eq!((a.as_str(), h.as_str(), b.as_str()), ("postgres://postgres@", "127.0.0.1:5432", "/test"));
        let (a, h, b) = split_host("postgres://localhost/db?x=1").unwrap();
        assert_eq!((a.as_str(), h.as_str(), b.as_str()), ("postgres://", "localhost:5432", "/db?x=1"));
    }

    #[test]
    fn round_trips_are_syncs_and_simple_queries_after_startup() {
        let msg = |ty: u8, body: &[u8]| {
            let mut m = vec![ty];
            m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            m.extend_from_slice(body);
            m
        };
        let mut stream = vec![];
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let startup = b"\0\x03\0\0user\0postgres\0\0";
        stream.extend_from_slice(&(startup.len() as u32 + 4).to_be_bytes());
        stream.extend_from_slice(startup);
        stream.extend(msg(b'Q', b"SELECT 1\0"));
        stream.extend(msg(b'P', b"\0SELECT $1\0\0\0"));
        stream.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
        stream.extend(msg(b'E', b"\0\0\0\0\0"));
        stream.extend(msg(b'S', b""));
        // Whole, and one byte at a time.
        assert_eq!(PgParser::default().feed(&stream), 2);
        let mut p = PgParser::default();
        assert_eq!(stream.iter().map(|b| p.feed(std::slice::from_ref(b))).sum::<u64>(), 2);
    }
}

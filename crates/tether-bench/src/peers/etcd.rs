//! etcd as a session store: one lease per session (`/v3/lease/grant`), a key
//! attached to it (`/v3/kv/put`), renewals by lease keep-alive, and a watch on
//! the keys' prefix whose DELETE events are the "session ended" signal.
//!
//! The harness installs nothing itself: it runs Debian's `etcd` binary
//! (package `etcd-server`) as a single member on free loopback ports with a
//! temporary data directory, and talks to it through etcd's own HTTP/JSON
//! gRPC gateway (no protoc, no gRPC client). A keep-alive is one
//! `POST /v3/lease/keepalive {"ID":…}` on a kept-alive connection: etcd 3.4's
//! gateway (Go 1.19 net/http, HTTP/1.1) cannot stream several requests in one
//! request body, it answers the first only. The watch is one long streamed
//! answer to one `POST /v3/watch`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::{closed_loops, lateness, Latencies, MassExpiry, MemoryUse, Peer, PeerInfo, Recovery, Throughput};
use crate::http::{free_port, now_ms, wait_until, Conn};
use crate::report::Metric;
use crate::scenarios::Params;
use crate::server::rss_of;
use crate::stats::Samples;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// etcd as a [`Peer`]: each population and each stand-alone scenario gets a
/// fresh single-member cluster, so no scenario measures leases another left.
pub struct EtcdPeer {
    info: PeerInfo,
    /// The member holding the current population, between
    /// [`Peer::populate`] and [`Peer::clear`].
    member: Option<EtcdMember>,
    /// The N the current population stands for (the member holds it capped).
    population: usize,
}

/// A single-member etcd process owned by the harness.
struct EtcdMember {
    child: Child,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    addr: SocketAddr,
}

impl EtcdPeer {
    /// Starts a member once to read its version, and stops it again: the
    /// scenarios start their own.
    pub async fn start() -> Result<EtcdPeer> {
        let member = EtcdMember::start().await?;
        let mut c = Conn::connect(member.addr).await?;
        let (_, v) = c.json(http::Method::GET, "/version", "", None).await?;
        let info = PeerInfo {
            name: "etcd".into(),
            version: format!("etcd {}", v["etcdserver"].as_str().unwrap_or("?")),
            settings: vec![
                format!(
                    "single member on 127.0.0.1:{}, temp data dir on the same disk, started by the harness",
                    member.client_port
                ),
                "defaults: heartbeat 100 ms, election 1000 ms, snapshot-count 100000, fsync on every commit".into(),
                "client: etcd's HTTP/JSON gRPC gateway (`/v3/lease/grant`, `/v3/kv/put`, `/v3/lease/keepalive` one request per POST on kept-alive connections, one streamed `/v3/watch`)".into(),
                "one lease + one attached key per session; ended = watch DELETE event; lease TTL is whole seconds, minimum enforced by etcd".into(),
                "built-in limits: expired leases are checked every 500 ms and revoked at most 1000/s (etcd 3.4 lessor)".into(),
            ],
        };
        Ok(EtcdPeer { info, member: None, population: 0 })
    }

    fn populated(&mut self) -> Result<&mut EtcdMember> {
        self.member.as_mut().ok_or_else(|| anyhow!("no etcd population: populate() runs first"))
    }
}

/// Leases given to a population of `n` (capped), and the note saying so.
fn capped(n: usize, p: &Params) -> (usize, String) {
    let leases = n.min(p.etcd_max_leases);
    let note = if leases < n {
        format!(" (capped at {leases} leases: granting is bounded by etcd's commit rate)")
    } else {
        String::new()
    };
    (leases, note)
}

impl EtcdMember {
    fn spawn(dir: &std::path::Path, client_port: u16, peer_port: u16) -> Result<Child> {
        let c = format!("http://127.0.0.1:{client_port}");
        let p = format!("http://127.0.0.1:{peer_port}");
        Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
            .args(["--initial-cluster", &format!("bench={p}"), "--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn etcd (apt-get install etcd-server)")
    }

    async fn start() -> Result<EtcdMember> {
        let dir = tempfile::tempdir()?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let child = Self::spawn(dir.path(), client_port, peer_port)?;
        let addr: SocketAddr = format!("127.0.0.1:{client_port}").parse()?;
        let mut me = EtcdMember { child, dir, client_port, peer_port, addr };
        me.wait_healthy(Duration::from_secs(20)).await?;
        Ok(me)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            if let Ok(mut c) = Conn::connect(self.addr).await {
                if let Ok((s, v)) = c.json(http::Method::GET, "/health", "", None).await {
                    if s.is_success() && v["health"] == "true" {
                        return Ok(t0.elapsed());
                    }
                }
            }
            if t0.elapsed() > timeout {
                bail!("etcd not healthy within {timeout:?}");
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("etcd exited: {st}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// kill -9 and start again on the same data dir; time until `/health` is true.
    async fn restart_after_kill9(&mut self) -> Result<Duration> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let t0 = Instant::now();
        self.child = Self::spawn(self.dir.path(), self.client_port, self.peer_port)?;
        self.wait_healthy(Duration::from_secs(120)).await?;
        Ok(t0.elapsed())
    }

    /// Runs `f(conn, i)` for i in 0..n over `conns` connections.
    async fn fan_out<F, Fut>(&self, n: usize, conns: usize, f: F) -> Result<()>
    where
        F: Fn(Conn, usize) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<Conn>> + Send,
    {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..conns.min(n.max(1)) {
            let mut c = Conn::connect(self.addr).await?;
            let next = next.clone();
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    c = f(c, i).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    /// N background leases with TTLs spread between 75 and 240 minutes (no keys).
    async fn populate_background(&self, n: usize, conns: usize) -> Result<Duration> {
        let t0 = Instant::now();
        self.fan_out(n, conns, |mut c, i| async move {
            let ttl = 75 * 60 + (i as u64 * 7919) % (165 * 60);
            grant(&mut c, ttl).await?;
            Ok(c)
        })
        .await?;
        Ok(t0.elapsed())
    }

    /// Opens a watch on `prefix` and records the receipt time of each DELETE.
    async fn watch_deletes(
        &self,
        prefix: &str,
    ) -> Result<(Arc<Mutex<HashMap<String, f64>>>, tokio::task::JoinHandle<()>)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let body = json!({"create_request": {"key": b64(prefix), "range_end": b64(std::str::from_utf8(&end)?)}});
        let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let s2 = seen.clone();
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        let h = stream_lines(
            self.addr,
            "/v3/watch",
            vec![Bytes::from(body.to_string())],
            None,
            move |line, t| {
                let Ok(v) = serde_json::from_slice::<Value>(line) else { return };
                if let Some(r) = v.get("result") {
                    if r.get("created").and_then(Value::as_bool) == Some(true) {
                        // signalled once below
                    }
                    if let Some(evs) = r.get("events").and_then(Value::as_array) {
                        let mut m = s2.lock().unwrap();
                        for e in evs {
                            if e["type"] == "DELETE" {
                                m.insert(unb64(e["kv"]["key"].as_str().unwrap_or("")), t);
                            }
                        }
                    }
                }
            },
            Some(created_tx),
        )
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), created_rx).await;
        Ok((seen, h))
    }

    /// Expiry lateness: `probes` leases of `ttl_s` with a key `p/{i}` each;
    /// deadline = grant answer received + TTL (an underestimate of lateness by
    /// at most one round trip); lateness = watch DELETE receipt − deadline.
    async fn expiry_lateness(&self, probes: usize, ttl_s: u64, window: Duration, conns: usize) -> Result<Samples> {
        let (seen, h) = self.watch_deletes("p/").await?;
        let deadlines: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(vec![0.0; probes]));
        let d2 = deadlines.clone();
        self.fan_out(probes, conns, move |mut c, i| {
            let d2 = d2.clone();
            async move {
                let id = grant(&mut c, ttl_s).await?;
                d2.lock().unwrap()[i] = now_ms() + ttl_s as f64 * 1000.0;
                put(&mut c, &format!("p/{i}"), &id).await?;
                Ok(c)
            }
        })
        .await?;
        let deadlines = deadlines.lock().unwrap().clone();
        let last = deadlines.iter().cloned().fold(0.0, f64::max);
        wait_until(last + window.as_secs_f64() * 1000.0, || seen.lock().unwrap().len() >= probes).await;
        h.abort();
        let seen = seen.lock().unwrap();
        Ok(lateness(deadlines.iter().enumerate().map(|(i, d)| (format!("p/{i}"), d)), &seen, Some(window)))
    }

    /// Mass expiry: N leases of the same TTL granted as fast as possible, a key
    /// `m/{i}` each. Returns (last deadline → last DELETE in ms, or None if not
    /// all arrived within `window`; how many arrived; spread of the deadlines in ms).
    async fn mass_expiry(
        &self,
        n: usize,
        ttl_s: u64,
        window: Duration,
        conns: usize,
    ) -> Result<(Option<f64>, usize, f64)> {
        let (seen, h) = self.watch_deletes("m/").await?;
        let first = now_ms();
        self.fan_out(n, conns, move |mut c, i| async move {
            let id = grant(&mut c, ttl_s).await?;
            put(&mut c, &format!("m/{i}"), &id).await?;
            Ok(c)
        })
        .await?;
        let last_deadline = now_ms() + ttl_s as f64 * 1000.0;
        let spread = last_deadline - (first + ttl_s as f64 * 1000.0);
        wait_until(last_deadline + window.as_secs_f64() * 1000.0, || seen.lock().unwrap().len() >= n).await;
        h.abort();
        let seen = seen.lock().unwrap();
        let got = seen.len();
        let last = seen.values().cloned().fold(0.0, f64::max);
        Ok((if got >= n { Some((last - last_deadline).max(0.0)) } else { None }, got, spread))
    }

    /// Keep-alives per second over `conns` keep-alive connections, on
    /// `leases` leases (60 s TTL), for `dur`.
    async fn keepalives(&self, leases: usize, conns: usize, dur: Duration) -> Result<(f64, Samples)> {
        let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![String::new(); leases]));
        let i2 = ids.clone();
        self.fan_out(leases, conns, move |mut c, i| {
            let i2 = i2.clone();
            async move {
                let id = grant(&mut c, 60).await?;
                i2.lock().unwrap()[i] = id;
                Ok(c)
            }
        })
        .await?;
        let ids = Arc::new(ids.lock().unwrap().clone());
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(Conn::connect(self.addr).await?);
        }
        closed_loops(clients, dur, move |mut c, w, i| {
            let id = ids[(w + i * conns) % ids.len()].clone();
            async move {
                let v = post(&mut c, "/v3/lease/keepalive", &json!({ "ID": id })).await?;
                if v.get("result").is_none() {
                    bail!("keepalive answered {v}");
                }
                Ok(c)
            }
        })
        .await
    }

    /// Durable starts: lease grant + put of an attached key, per start.
    async fn starts(&self, conns: usize, dur: Duration) -> Result<(f64, Samples)> {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(Conn::connect(self.addr).await?);
        }
        closed_loops(clients, dur, |mut c, w, i| async move {
            let id = grant(&mut c, 3600).await?;
            put(&mut c, &format!("s/{w}/{i}"), &id).await?;
            Ok(c)
        })
        .await
    }
}

#[async_trait]
impl Peer for EtcdPeer {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn info(&self) -> &PeerInfo {
        &self.info
    }

    fn population_cap(&self, p: &Params) -> Option<usize> {
        Some(p.etcd_max_leases)
    }

    async fn populate(&mut self, n: usize, p: &Params) -> Result<MemoryUse> {
        let (leases, capped) = capped(n, p);
        self.member = None;
        self.population = n;
        let member = self.member.insert(EtcdMember::start().await?);
        // RSS readings a moment after start-up and after the last grant, once the member is idle
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = rss_of(member.child.id()).unwrap_or(0);
        let took = member.populate_background(leases, p.create_conns).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss1 = rss_of(member.child.id()).unwrap_or(0);
        let grant_rate = leases as f64 / took.as_secs_f64();
        Ok(MemoryUse {
            sessions: leases,
            rss: Some((rss0, rss1)),
            metrics: vec![Metric::new("create_rate", "creation rate while populating", Some(grant_rate), "/s")],
            note: format!("{leases} leases without keys{capped}"),
        })
    }

    async fn expiry_lateness(&mut self, _offsets: &[f64], p: &Params) -> Result<Latencies> {
        // etcd cannot be given a deadline, only a whole-second TTL from the grant
        let ttl = p.probe_idle_s.max(2);
        let member = self.populated()?;
        let samples = member.expiry_lateness(p.probes, ttl, p.peer_window, 32.min(p.probes)).await?;
        let (leases, capped) = capped(self.population, p);
        let note = format!(
            "{} probe leases (TTL {ttl} s) each with a key, on top of {leases} leases{capped}; deadline = grant answer + TTL; receipt = DELETE on a watch",
            p.probes
        );
        Ok(Latencies { samples, note })
    }

    async fn recover_after_kill9(&mut self, p: &Params) -> Result<Option<Recovery>> {
        let ready = self.populated()?.restart_after_kill9().await?;
        let (leases, capped) = capped(self.population, p);
        let note = format!(
            "SIGKILL with {leases} live leases{capped}; restart on the same data dir; time until GET /health says true"
        );
        Ok(Some(Recovery { ready, note }))
    }

    async fn mass_expiry(&mut self, n: usize, p: &Params) -> Result<MassExpiry> {
        let (leases, capped) = capped(n, p);
        self.member = None;
        let member = EtcdMember::start().await?;
        let window = p.peer_window + Duration::from_secs_f64(leases as f64 / 500.0);
        let ttl = 5u64;
        let (all_ended_ms, received, spread_ms) = member.mass_expiry(leases, ttl, window, p.create_conns).await?;
        Ok(MassExpiry {
            all_ended_ms,
            received,
            sessions: leases,
            spread_ms,
            window: Some(window),
            note: format!(
                "{leases} leases of TTL {ttl} s granted as fast as possible (their deadlines spread over the grant time), key each; measured from the LAST deadline{capped}"
            ),
        })
    }

    async fn clear(&mut self) -> Result<()> {
        self.member = None;
        Ok(())
    }

    async fn heartbeats(&mut self, p: &Params) -> Result<Option<Throughput>> {
        let member = EtcdMember::start().await?;
        let leases = p.hb_sessions.min(p.etcd_max_leases);
        let (rate, latency) = member.keepalives(leases, p.http_conns, p.hb_duration).await?;
        let note = "POST /v3/lease/keepalive, one at a time per kept-alive connection (JSON gateway; a native gRPC client would be cheaper)".into();
        Ok(Some(Throughput { rate, latency, note }))
    }

    async fn starts(&mut self, p: &Params) -> Result<Option<Throughput>> {
        let member = EtcdMember::start().await?;
        let (rate, latency) = member.starts(p.http_conns, p.starts_duration).await?;
        let note = "lease grant + put of a key attached to it (two commits), one start at a time per connection".into();
        Ok(Some(Throughput { rate, latency, note }))
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(c: &mut Conn, path: &str, body: &Value) -> Result<Value> {
    let (s, v) = c.json(http::Method::POST, path, "", Some(body)).await?;
    if !s.is_success() || v.get("error").is_some() {
        bail!("etcd {path}: {s} {v}");
    }
    Ok(v)
}

async fn grant(c: &mut Conn, ttl: u64) -> Result<String> {
    let v = post(c, "/v3/lease/grant", &json!({ "TTL": ttl })).await?;
    v["ID"].as_str().map(String::from).ok_or_else(|| anyhow!("no lease ID in {v}"))
}

async fn put(c: &mut Conn, key: &str, lease: &str) -> Result<()> {
    post(c, "/v3/kv/put", &json!({ "key": b64(key), "value": b64("1"), "lease": lease })).await?;
    Ok(())
}

/// POSTs a (possibly streaming) body to `path` and calls `on_line` for every
/// newline-separated line of the streamed answer, with its receipt time.
async fn stream_lines<F>(
    addr: SocketAddr,
    path: &str,
    first: Vec<Bytes>,
    more: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    mut on_line: F,
    mut first_line: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<tokio::task::JoinHandle<()>>
where
    F: FnMut(&[u8], f64) + Send + 'static,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let body_stream = futures_util::stream::unfold((first.into_iter(), more), |(mut first, mut more)| async move {
        if let Some(b) = first.next() {
            return Some((Ok::<_, Infallible>(Frame::data(b)), (first, more)));
        }
        match more.as_mut() {
            Some(rx) => rx.recv().await.map(|b| (Ok(Frame::data(b)), (first, more))),
            None => None,
        }
    });
    let body = StreamBody::new(body_stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    // the answer's head may only come with the first answer line; do not block on it here
    Ok(tokio::spawn(async move {
        let Ok(resp) = sender.send_request(req).await else { return };
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(chunk) = frame.into_data() else { continue };
            let t = now_ms();
            buf.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(pos) = buf[start..].iter().position(|&c| c == b'\n') {
                let line = &buf[start..start + pos];
                start += pos + 1;
                if !line.is_empty() {
                    if let Some(tx) = first_line.take() {
                        let _ = tx.send(());
                    }
                    on_line(line, t);
                }
            }
            buf.drain(..start);
        }
    }))
}

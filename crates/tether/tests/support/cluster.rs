//! Several real `tether serve` processes on one fresh PostgreSQL schema — a
//! cluster as contract section 8 describes it — for `tests/cluster.rs`.
//!
//! A [`Cluster`] owns the node processes (spawned like every other process
//! test: `--listen 127.0.0.1:0`, the `listening on` line read from stdout), a
//! shared config file (the standard test kinds, API key and JWT secret, plus
//! `[cluster] lease`), and the schema, dropped with it. It signals nodes
//! (`kill -9`, SIGSTOP, SIGCONT, SIGTERM), reads `/v1/admin/cluster`, and
//! hands out a [`TestApp`] client per node, so every request helper, event
//! stream and `/openapi.json` check of the single-node tests works against
//! one node of the cluster.
//!
//! [`Spread`] is the client a load balancer would be: each request goes to
//! the next node in turn, and a request whose connection fails (a node that
//! died or is shutting down) is sent again to the next node. The cluster is a
//! black box here: which node owns what is only ever read from
//! `/v1/admin/cluster`, never assumed.

// Each test binary uses part of it (like the rest of `support`).
#![allow(dead_code)]

use super::app::{check_answer, config_text, listening_addr, Resp, TestApp, API_KEY};
use super::contract::{Answer, Contract};
use super::postgres::PgSchema;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[cluster] lease` of every test cluster: short, so takeovers (waited for
/// in real time, since they happen between processes) keep the tests short.
pub const LEASE: &str = "2s";
pub const LEASE_MS: i64 = 2_000;

/// The standard test config (kinds, API key, JWT secret) with `[cluster] lease = LEASE`
/// and `extra` (more kinds, say) appended.
pub fn cluster_config(extra: &str) -> String {
    format!("{}\n{extra}\n[cluster]\nlease = \"{LEASE}\"\n", config_text())
}

/// What the harness knows of a node's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOP: the process exists but answers nothing until SIGCONT.
    Paused,
    /// Killed, or exited after SIGTERM.
    Gone,
}

/// One node: its process and a client of it.
pub struct Node {
    pub index: usize,
    child: Option<Child>,
    pid: u32,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT` — also the node's default `--advertise`.
    pub base: String,
    /// Requests, event streams and WebSockets to this node, checked as in the single-node tests.
    pub app: TestApp,
    stderr: PathBuf,
    pub state: NodeState,
}

/// One `/v1/admin/cluster` entry.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub advertise: String,
    pub started_at: i64,
    pub last_seen_at: i64,
    pub leader: bool,
}

impl Member {
    fn parse(v: &Value) -> Member {
        let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("cluster member without {k}: {v}")).to_string();
        Member {
            id: text("id"),
            advertise: text("advertise").trim_end_matches('/').to_string(),
            started_at: super::app::ts(&v["started_at"]),
            last_seen_at: super::app::ts(&v["last_seen_at"]),
            leader: v["leader"].as_bool().unwrap_or_else(|| panic!("cluster member without a boolean leader: {v}")),
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub schema: PgSchema,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Shared with every [`Spread`]: nodes a client must not send to (paused ones hang).
    out: Arc<Vec<AtomicBool>>,
    contract: Arc<Contract>,
}

fn command(store: &str, config: &std::path::Path, stderr: &std::path::Path) -> Command {
    // `TETHER_TEST_CLUSTER_LOG=info` (say) to see what the nodes did in a failure's logs.
    let log = std::env::var("TETHER_TEST_CLUSTER_LOG").unwrap_or_else(|_| "warn".into());
    super::app::serve_command(store, config, stderr, &log)
}

impl Cluster {
    /// `n` nodes on a fresh schema with [`cluster_config`]`(extra)`, started
    /// one after another (each has printed its listening line before the next
    /// is spawned), so the first node is the one that sets the schema up.
    pub async fn start(n: usize, extra: &str) -> Cluster {
        Cluster::launch(n, extra, false).await
    }

    /// `n` nodes spawned at once, racing to set up the schema and take the lease.
    pub async fn start_together(n: usize, extra: &str) -> Cluster {
        Cluster::launch(n, extra, true).await
    }

    async fn launch(n: usize, extra: &str, together: bool) -> Cluster {
        let schema = PgSchema::new("cluster");
        schema.with_client(|_| ()); // a clear message when PostgreSQL is down
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("tether.toml");
        std::fs::write(&config, cluster_config(extra)).expect("write the config");
        let store = schema.url();
        let mut pending = Vec::new();
        for index in 0..n {
            let stderr = dir.path().join(format!("node{index}.stderr.log"));
            let mut child = command(&store, &config, &stderr).spawn().expect("spawn tether");
            let rx = listening_addr(child.stdout.take().expect("piped stdout"));
            pending.push((index, child, rx, stderr));
            if !together {
                let last = pending.last_mut().expect("just pushed");
                let addr = Cluster::listening(&mut last.2, &last.3).await;
                last.2 = ready(addr);
            }
        }
        let mut nodes = Vec::new();
        for (index, child, mut rx, stderr) in pending {
            let addr = Cluster::listening(&mut rx, &stderr).await;
            let app = TestApp::attach(&addr).await;
            let pid = child.id();
            nodes.push(Node {
                index,
                child: Some(child),
                pid,
                base: format!("http://{addr}"),
                addr,
                app,
                stderr,
                state: NodeState::Running,
            });
        }
        let out = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
        // The process-wide contract every TestApp checks against (the nodes run one build).
        let doc = nodes[0].app.client.get(nodes[0].app.url("/openapi.json")).send().await.expect("GET /openapi.json");
        let doc = doc.text().await.expect("read /openapi.json");
        let contract = Contract::shared(&doc);
        Cluster { nodes, schema, dir, config, out, contract }
    }

    async fn listening(rx: &mut tokio::sync::oneshot::Receiver<String>, stderr: &PathBuf) -> String {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "a node did not print its listening line; stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The client of node `i`.
    pub fn app(&self, i: usize) -> &TestApp {
        &self.nodes[i].app
    }

    pub fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }

    /// Indexes of the nodes that are running (neither paused nor gone).
    pub fn running(&self) -> Vec<usize> {
        self.nodes.iter().filter(|n| n.state == NodeState::Running).map(|n| n.index).collect()
    }

    /// The node whose base URL is `advertise`.
    pub fn node_of(&self, advertise: &str) -> Option<usize> {
        let a = advertise.trim_end_matches('/');
        self.nodes.iter().position(|n| n.base == a)
    }

    /// Every node's stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log = std::fs::read_to_string(&n.stderr).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- node {} ({}, {:?}) stderr, last lines:\n", n.index, n.base, n.state));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn signal(&self, i: usize, sig: libc::c_int, name: &str) {
        let pid = self.nodes[i].pid as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill -{name} node {i}");
    }

    /// SIGKILL: no hand-over, no flush.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].state = NodeState::Gone;
    }

    /// SIGSTOP: the node stops answering, holding its sockets and its idea of what it owns.
    /// [`Spread`] clients stop sending to it (their requests would hang).
    pub fn sigstop(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP, "STOP");
        self.nodes[i].state = NodeState::Paused;
        self.out[i].store(true, Ordering::SeqCst);
    }

    pub fn sigcont(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT, "CONT");
        self.nodes[i].state = NodeState::Running;
        self.out[i].store(false, Ordering::SeqCst);
    }

    /// SIGTERM: the node hands its work over and exits (see [`Cluster::wait_exit`]).
    /// [`Spread`] clients keep sending to it, as a load balancer would until
    /// its health check noticed, and retry elsewhere when the connection fails.
    pub fn sigterm(&self, i: usize) {
        self.signal(i, libc::SIGTERM, "TERM");
    }

    /// Waits (up to `limit`) for node `i` to exit; `None` if it did not.
    pub async fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.nodes[i].child.as_mut().expect("node process");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.nodes[i].child = None;
                self.nodes[i].state = NodeState::Gone;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /v1/admin/cluster` on node `i` (API key; checked like every answer).
    pub async fn members(&self, i: usize) -> Vec<Member> {
        let body = self.app(i).get("/v1/admin/cluster", Some(API_KEY)).await.expect(200).clone();
        body["nodes"].as_array().unwrap_or_else(|| panic!("no nodes array: {body}")).iter().map(Member::parse).collect()
    }

    /// The node `i` names as the lease holder, if it names exactly one of ours.
    pub async fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let leaders: Vec<Member> = self.members(i).await.into_iter().filter(|m| m.leader).collect();
        match leaders.as_slice() {
            [one] => self.node_of(&one.advertise),
            _ => None,
        }
    }

    /// Waits (up to `limit`) until every node of `among` names the same lease
    /// holder, itself one of `among`; returns it.
    pub async fn await_leader(&self, among: &[usize], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut last = Vec::new();
        loop {
            last.clear();
            for &i in among {
                last.push(self.leader_seen_by(i).await);
            }
            if let Some(Some(l)) = last.first() {
                if among.contains(l) && last.iter().all(|x| *x == Some(*l)) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed lease holder among nodes {among:?} within {limit:?} (each one's view: {last:?})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A load-balancer-like client over every node (see [`Spread`]).
    pub fn spread(&self) -> Spread {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("HTTP client");
        Spread {
            bases: Arc::new(self.bases()),
            out: self.out.clone(),
            next: Arc::new(AtomicUsize::new(0)),
            client,
            contract: self.contract.clone(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process; the schema is dropped after (field order).
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// An already-received address as a receiver (sequential start reads each line once).
fn ready(addr: String) -> tokio::sync::oneshot::Receiver<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(addr);
    rx
}

/// An answer through [`Spread`]: which node gave it, and how many attempts
/// before it failed on their connection (the node died or was shutting down).
#[derive(Debug)]
pub struct Via {
    pub node: usize,
    pub resp: Resp,
    pub closed: Vec<String>,
}

/// Requests spread over the nodes in turn, as a load balancer would: a
/// connection that fails is retried on the next node (up to every node three
/// times over). Clones share the turn.
#[derive(Clone)]
pub struct Spread {
    bases: Arc<Vec<String>>,
    out: Arc<Vec<AtomicBool>>,
    next: Arc<AtomicUsize>,
    pub client: reqwest::Client,
    contract: Arc<Contract>,
}

impl Spread {
    /// Sends to the next node; on a connection error, to the one after it.
    /// `Err` lists the errors when every attempt failed to connect. The
    /// answer is not checked (see [`Spread::verdict`] and [`Spread::call`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Via, Vec<String>> {
        let n = self.bases.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut closed = Vec::new();
        for k in 0..3 * n {
            let node = (start + k) % n;
            if self.out[node].load(Ordering::SeqCst) {
                continue;
            }
            let mut b = self.client.request(method.clone(), format!("{}{path}", self.bases[node])).bearer_auth(token);
            if let Some(body) = body {
                b = b.json(body);
            }
            match b.send().await {
                Ok(r) => {
                    let status = r.status();
                    let content_type = r
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    match r.text().await {
                        Ok(text) => {
                            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                            return Ok(Via { node, resp: Resp { status, content_type, text, body }, closed });
                        }
                        Err(e) => closed.push(format!("node {node}: {method} {path}: reading the answer: {e}")),
                    }
                }
                Err(e) => closed.push(format!("node {node}: {method} {path}: {e}")),
            }
            // A node that went away: the next one, after a breath (not a spin on refusals).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(closed)
    }

    /// Whether an answer keeps the rules every answer follows (no 5xx,
    /// agreement with `/openapi.json`), without panicking: for load loops
    /// that count failures and report them all at the end.
    pub fn verdict(&self, method: &Method, path: &str, r: &Resp) -> Result<(), String> {
        if r.status.is_server_error() {
            return Err(format!("{method} {path} answered {}: {}", r.status, r.text));
        }
        self.agrees(method, path, r)
    }

    /// Whether an answer (of any status) agrees with `/openapi.json`.
    pub fn agrees(&self, method: &Method, path: &str, r: &Resp) -> Result<(), String> {
        let answer = Answer { status: r.status.as_u16(), content_type: &r.content_type, text: &r.text, body: &r.body };
        self.contract.verify(method.as_str(), path, &answer).map_err(|e| format!("{method} {path}: {e}"))
    }

    /// [`Spread::send`] whose answer must come and is checked like every
    /// answer of the harness (panics otherwise).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Via {
        let via = self
            .send(method.clone(), path, token, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no node answered: {e:#?}"));
        check_answer(method.as_str(), path, &via.resp);
        let r = &via.resp;
        let answer = Answer { status: r.status.as_u16(), content_type: &r.content_type, text: &r.text, body: &r.body };
        self.contract.check(method.as_str(), path, &answer);
        via
    }
}

//! The test server and its client: a [`TestApp`] is a `tether` server on a
//! free port with its own temporary directory, SQLite file and config, plus
//! typed helpers (requests whose every answer is checked — never a 5xx,
//! errors are problem+json, and status and body agree with the server's own
//! `/openapi.json` — user tokens, an SSE reader, a WebSocket client).
//!
//! Two backends behind the same request methods:
//! - [`TestApp::start`]: the real binary in its own process, on the wall
//!   clock. For what only a process can show: `kill9`, `restart`,
//!   `sigterm`, start-up errors, and lateness measured in real time.
//! - [`TestApp::in_process`]: `App::build` + `http::serve` on a thread of
//!   this process with a [`ManualClock`]: time stands still until the test
//!   calls [`TestApp::advance`], so deadline tests move time by exactly what
//!   they mean and never sleep for a deadline.

use super::contract::{Answer, Contract};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tether::clock::{Clock, ManualClock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The address a spawned `tether serve` prints as `listening on http://ADDR`,
/// read from its piped stdout on a thread that then keeps draining stdout so
/// the server never blocks on it. Shared by every test that runs the binary.
pub fn listening_addr(stdout: std::process::ChildStdout) -> tokio::sync::oneshot::Receiver<String> {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        }
    });
    rx
}

pub const API_KEY: &str = "test-api-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-for-integration-tests";

/// The kinds every test server knows. Short timeouts keep the suite fast.
pub const KINDS: &str = r#"
# A long-lived kind for tests that need a session that does not end by itself.
[kinds.plain]
idle_timeout = "1m"

# Dating app: a new swipe session replaces the old one.
[kinds.swipe]
per_user = "replace"
idle_timeout = "1m"

# AI interview: one at a time (takeover), completing phase.
[kinds.interview]
per_user = "reject"
idle_timeout = "1m"
completing_timeout = "600ms"

# Silent vs heartbeating clients.
[kinds.presence]
idle_timeout = "800ms"

# Mechanic marketplace: a request waits for a mechanic (quorum 2).
[kinds.request]
per_user = "reject"
quorum = 2
waiting_timeout = "700ms"

# Parent / child cascade.
[kinds.job]
[kinds.chat]
on_parent_end = "end"
[kinds.note]
on_parent_end = "keep"

# Reading room: anyone present keeps it alive.
[kinds.room]
presence = "any"
idle_timeout = "800ms"

# Invites (explicit ttl in the test; invite_ttl keeps them alive by default).
[kinds.reading]
invite_ttl = "1h"

# Participants who stop heartbeating are marked left.
[kinds.lobby]
participant_idle_timeout = "600ms"

# Crashed browsers: the owner's last WebSocket closing starts the grace.
[kinds.grace]
disconnect_grace = "500ms"
idle_timeout = "1m"

# Crash recovery.
[kinds.brief]
idle_timeout = "1s"
[kinds.capped]
max_duration = "3s"

# Lateness measurement.
[kinds.late]
idle_timeout = "400ms"

# Matching and calls (tests/matching.rs): short windows keep the suite fast.
[kinds.matching]
idle_timeout = "1m"
disconnect_grace = "300ms"
decision_timeout = "1s"
[kinds.call]
max_duration = "1s"
waiting_timeout = "1m"
"#;

pub fn config_text() -> String {
    format!("[auth]\njwt_secret = \"{JWT_SECRET}\"\napi_keys = [\"{API_KEY}\"]\n{KINDS}")
}

/// The standard config with some `(kind, key, duration)` replaced, e.g.
/// `("call", "max_duration", "5s")` (each must name a key of [`KINDS`]).
pub fn config_with(overrides: &[(&str, &str, &str)]) -> String {
    let mut kind = String::new();
    let mut out = String::new();
    let mut used = 0;
    for line in config_text().lines() {
        let t = line.trim();
        if let Some(k) = t.strip_prefix("[kinds.").and_then(|r| r.strip_suffix(']')) {
            kind = k.to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        match overrides.iter().find(|(k, name, _)| *k == kind && *name == key) {
            Some((_, name, value)) => {
                used += 1;
                out.push_str(&format!("{name} = \"{value}\"\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert_eq!(used, overrides.len(), "every override must name a key of KINDS: {overrides:?}");
    out
}

/// Wall-clock Unix milliseconds (for a [`TestApp::in_process`] server, use [`TestApp::now`]).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Parses an RFC 3339 timestamp field of a JSON value into Unix milliseconds.
pub fn ts(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a timestamp string, got {v}"));
    tether_engine::time::parse_rfc3339(s).unwrap_or_else(|| panic!("bad timestamp {s:?}"))
}

/// Sleeps until the wall-clock Unix-millisecond instant `at`. Only for a
/// binary server across a restart (the in-process one advances time instead).
pub async fn sleep_until_ms(at: i64) {
    let wait = at - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn mint(secret: &str, sub: &str, exp: i64) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid user token for `sub` (HS256, one hour).
pub fn user_token(sub: &str) -> String {
    mint(JWT_SECRET, sub, now_ms() / 1000 + 3600)
}

/// A user token whose `exp` has passed.
pub fn expired_token(sub: &str) -> String {
    mint(JWT_SECRET, sub, now_ms() / 1000 - 120)
}

/// A well-formed token signed with the wrong secret.
pub fn forged_token(sub: &str) -> String {
    mint("not-the-server-secret", sub, now_ms() / 1000 + 3600)
}

/// One HTTP answer, already read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// Asserts the status (and, for errors, that it is a proper problem) and returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        &self.body
    }

    /// Asserts an error with this status whose `detail` mentions every word in `mentions`.
    #[track_caller]
    pub fn problem(&self, status: u16, mentions: &[&str]) -> &Value {
        self.expect(status);
        let detail = self.body["detail"].as_str().unwrap_or("").to_lowercase();
        for m in mentions {
            assert!(detail.contains(&m.to_lowercase()), "detail {detail:?} should mention {m:?}; body: {}", self.text);
        }
        &self.body
    }

    pub fn detail(&self) -> String {
        self.body["detail"].as_str().unwrap_or("").to_string()
    }
}

/// Checks the rules every answer follows: never a 5xx; every error is
/// `application/problem+json` with `type`, `title`, `status` and `detail`.
#[track_caller]
pub fn check_answer(method: &str, path: &str, r: &Resp) {
    assert!(r.status.as_u16() < 500, "{method} {path} answered {}: {}", r.status, r.text);
    if r.status.as_u16() >= 400 {
        assert!(
            r.content_type.starts_with("application/problem+json"),
            "{method} {path} answered {} with content-type {:?}: {}",
            r.status,
            r.content_type,
            r.text
        );
        for field in ["type", "title", "detail"] {
            assert!(r.body[field].is_string(), "{method} {path}: problem lacks {field}: {}", r.text);
        }
        assert_eq!(
            r.body["status"].as_u64(),
            Some(r.status.as_u16() as u64),
            "{method} {path}: problem status: {}",
            r.text
        );
    }
}

/// The server's time as the test sees it.
#[derive(Clone)]
pub enum Time {
    Wall,
    Manual(Arc<ManualClock>),
}

impl Time {
    pub fn now(&self) -> i64 {
        match self {
            Time::Wall => now_ms(),
            Time::Manual(clock) => clock.now(),
        }
    }
}

/// A server running on a thread of the test process.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Closed when the server's thread is done (store flushed and closed).
    done: std::sync::mpsc::Receiver<()>,
}

impl InProcess {
    /// Asks for a graceful shutdown and waits (bounded) for the journal's final flush.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = self.done.recv_timeout(Duration::from_secs(10));
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub host: String,
    child: Option<Child>,
    in_process: Option<InProcess>,
    /// The server's clock: the wall clock, or the manual one of an in-process server.
    pub time: Time,
    contract: Option<Arc<Contract>>,
    dir: tempfile::TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
    pub client: reqwest::Client,
    /// For streams: no overall timeout.
    stream_client: reqwest::Client,
    /// Unix ms just before the current process was spawned.
    pub spawned_at: i64,
    /// `TETHER_TEST_CLUSTER=N` (N ≥ 2): the other nodes of a cluster on one
    /// PostgreSQL schema, and every node's base URL; requests rotate over them.
    cluster: Option<ClusterNodes>,
}

/// The suites' cluster mode (see [`cluster_mode`]).
struct ClusterNodes {
    schema: super::postgres::PgSchema,
    others: Vec<Child>,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
}

/// `TETHER_TEST_CLUSTER=N`: every binary server of the API and matching
/// suites is N nodes on one fresh PostgreSQL schema, and each request goes to
/// the next node (event streams to the first). Tests that restart or signal
/// the process, or rely on one node's restart rules, skip themselves.
pub fn cluster_mode() -> Option<usize> {
    std::env::var("TETHER_TEST_CLUSTER").ok().and_then(|v| v.parse().ok()).filter(|n: &usize| *n >= 2)
}

/// `tether serve` on a free loopback port with `store` and `config`, its
/// stderr to a file and stdout piped (for the `listening on` line), the
/// `TETHER_*` variables of the test's own environment removed, logs at `log`.
pub fn serve_command(store: &str, config: &Path, stderr: &Path, log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--store")
        .arg(store)
        .arg("--config")
        .arg(config)
        .env_remove("TETHER_CONFIG")
        .env_remove("TETHER_LISTEN")
        .env_remove("TETHER_STORE")
        .env_remove("TETHER_ADVERTISE")
        .env("TETHER_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(stderr).expect("stderr log")));
    cmd
}

/// Spawns a server ([`serve_command`], logs at `warn`); returns it and its
/// address once it listens.
async fn spawn_node(store: &str, config: &Path, stderr_path: &Path) -> (Child, String) {
    let mut child = serve_command(store, config, stderr_path, "warn").spawn().expect("spawn tether");
    let rx = listening_addr(child.stdout.take().expect("piped stdout"));
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok(addr)) => (child, addr),
        _ => {
            let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
            panic!("the server did not print its listening line; stderr:\n{log}");
        }
    }
}

impl TestApp {
    /// Starts a server with the standard test config.
    pub async fn start() -> TestApp {
        TestApp::start_with_config(&config_text()).await
    }

    pub async fn start_with_config(config: &str) -> TestApp {
        let mut app = TestApp::prepare(config, Time::Wall);
        app.spawn().await;
        app.load_contract().await;
        app
    }

    /// A client of a server started elsewhere (a node of a
    /// [`Cluster`](super::cluster::Cluster)) at `addr`: every helper and
    /// check of a `TestApp`, on the wall clock. It owns no process, so
    /// dropping it stops nothing.
    pub async fn attach(addr: &str) -> TestApp {
        let mut app = TestApp::prepare("", Time::Wall);
        app.host = addr.to_string();
        app.base = format!("http://{addr}");
        app.load_contract().await;
        app
    }

    /// Starts an in-process server with the standard test config and a manual clock.
    pub async fn in_process() -> TestApp {
        TestApp::in_process_with_config(&config_text()).await
    }

    /// Starts `App::build` + `http::serve` on a thread of this process, with
    /// `config`, a SQLite file and a [`ManualClock`] stopped at the wall-clock
    /// time: server time moves only through [`TestApp::advance`].
    pub async fn in_process_with_config(config: &str) -> TestApp {
        let clock = Arc::new(ManualClock::starting_now());
        let mut app = TestApp::prepare(config, Time::Manual(clock.clone()));
        app.spawned_at = clock.now();
        let settings = app.settings();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("tether-in-process".into())
            .spawn(move || {
                // Its own runtime, like the binary's: the server does not
                // depend on the test's runtime being polled.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let limits = settings.limits.clone();
                    let app = match tether::app::App::build(settings, clock) {
                        Ok(app) => app,
                        Err(e) => return drop(addr_tx.send(Err(format!("App::build: {e}")))),
                    };
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => return drop(addr_tx.send(Err(format!("bind 127.0.0.1:0: {e}")))),
                    };
                    let addr = listener.local_addr().expect("local address").to_string();
                    let _ = addr_tx.send(Ok(addr));
                    let stopped = async move {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = tether::http::serve(listener, app, &limits, stopped).await {
                        eprintln!("in-process server: {e}");
                    }
                });
                drop(done_tx);
            })
            .expect("spawn the server thread");
        let addr = match addr_rx.await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => panic!("the in-process server did not start: {e}"),
            Err(_) => panic!("the in-process server's thread died while starting"),
        };
        app.in_process = Some(InProcess { stop: Some(stop_tx), done: done_rx });
        app.host = addr.clone();
        app.base = format!("http://{addr}");
        app.load_contract().await;
        app
    }

    /// The server settings the binary would derive from the same config
    /// file and store (through the same flag/file merging).
    fn settings(&self) -> tether::app::Settings {
        use clap::Parser;
        let store = format!("sqlite://{}", self.db.display());
        let argv = ["tether", "serve", "--listen", "127.0.0.1:0", "--store", &store, "--config"];
        let cli = tether::cli::Cli::try_parse_from(
            argv.iter().map(|a| a.to_string()).chain([self.config.display().to_string()]),
        )
        .unwrap_or_else(|e| panic!("serve flags: {e}"));
        let tether::cli::Command::Serve(args) = cli.command else { panic!("not a serve command") };
        match tether::cli::resolve(&args) {
            Ok((_listen, settings, _log)) => settings,
            Err(e) => panic!("the test config does not load: {e}"),
        }
    }

    /// Fetches the server's `/openapi.json` (once per test process; see [`Contract`]).
    async fn load_contract(&mut self) {
        let r = self.client.get(self.url("/openapi.json")).send().await.expect("GET /openapi.json");
        assert_eq!(r.status(), StatusCode::OK, "GET /openapi.json");
        let text = r.text().await.expect("read /openapi.json");
        self.contract = Some(Contract::shared(&text));
    }

    /// The `/openapi.json` check every answer goes through.
    pub fn contract(&self) -> &Contract {
        self.contract.as_deref().expect("loaded at start")
    }

    /// The server's time: the wall clock, or the in-process server's manual clock.
    pub fn now(&self) -> i64 {
        self.time.now()
    }

    /// Moves the in-process server's clock forward by `by` and returns the new
    /// time. Deadlines now due fire (the deadline timer is woken); what they
    /// publish is awaited as usual, and any request after this sees them.
    pub fn advance(&self, by: Duration) -> i64 {
        self.manual_clock().advance(by.as_millis() as i64)
    }

    /// Moves the in-process server's clock forward to `at` (Unix ms).
    pub fn advance_to(&self, at: i64) -> i64 {
        self.manual_clock().advance_to(at)
    }

    fn manual_clock(&self) -> &ManualClock {
        match &self.time {
            Time::Manual(clock) => clock,
            Time::Wall => panic!("only an in-process server (TestApp::in_process) has a clock to advance"),
        }
    }

    fn prepare(config: &str, time: Time) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("tether.db");
        let cfg = dir.path().join("tether.toml");
        std::fs::write(&cfg, config).unwrap();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let stream_client = reqwest::Client::builder().build().unwrap();
        TestApp {
            base: String::new(),
            host: String::new(),
            child: None,
            in_process: None,
            time,
            contract: None,
            dir,
            db,
            config: cfg,
            client,
            stream_client,
            spawned_at: 0,
            cluster: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn key(&self) -> &'static str {
        API_KEY
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running binary (TestApp::start)").id()
    }

    async fn spawn(&mut self) {
        if let Some(n) = cluster_mode() {
            return self.spawn_cluster(n).await;
        }
        let stderr_path = self.dir.path().join(format!("stderr-{}.log", now_ms()));
        self.spawned_at = now_ms();
        let store = format!("sqlite://{}", self.db.display());
        let (child, addr) = spawn_node(&store, &self.config, &stderr_path).await;
        self.child = Some(child);
        self.host = addr.clone();
        self.base = format!("http://{addr}");
    }

    /// `n` nodes on a fresh schema, the config's own plus a short lease; waits
    /// until one owns the work, so the first request does not wait for it.
    async fn spawn_cluster(&mut self, n: usize) {
        let schema = super::postgres::PgSchema::new("suite");
        let config = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, format!("[cluster]\nlease = \"2s\"\n{config}")).unwrap();
        self.spawned_at = now_ms();
        let mut children = Vec::new();
        let mut bases = Vec::new();
        for i in 0..n {
            let stderr_path = self.dir.path().join(format!("stderr-node{i}-{}.log", now_ms()));
            let (child, addr) = spawn_node(&schema.url(), &self.config, &stderr_path).await;
            if i == 0 {
                self.host = addr.clone();
                self.base = format!("http://{addr}");
            }
            bases.push(format!("http://{addr}"));
            children.push(child);
        }
        self.child = Some(children.remove(0));
        let probe = self.client.clone();
        let owner_known = async {
            loop {
                let r = probe.get(format!("{}/v1/admin/cluster", bases[n - 1])).bearer_auth(API_KEY).send().await;
                if let Ok(r) = r {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                    if nodes.len() == n && nodes.iter().any(|x| x["leader"] == true) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), owner_known).await.expect("a cluster node took the lease");
        self.cluster = Some(ClusterNodes { schema, others: children, bases, next: Default::default() });
    }

    /// SIGKILL: no shutdown, no flush (the binary only).
    pub fn kill9(&mut self) {
        assert!(self.in_process.is_none(), "kill -9 needs the binary (TestApp::start)");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same SQLite file and config (after `kill9` or a stop).
    pub async fn restart(&mut self) {
        assert!(self.in_process.is_none(), "restart needs the binary (TestApp::start)");
        self.kill9();
        self.spawn().await;
    }

    pub fn sigterm(&self) {
        let pid = self.pid() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
    }

    /// Waits for the process to exit (up to `limit`); None if it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("server running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ---- HTTP ----

    /// The URL of `path` on the server — in cluster mode, on the next node
    /// (event streams always on the first, so a test's streams share one node).
    pub fn url(&self, path: &str) -> String {
        match &self.cluster {
            Some(c) if !path.starts_with("/v1/events") && !path.starts_with("/v1/ws") => {
                let i = c.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % c.bases.len();
                format!("{}{}", c.bases[i], path)
            }
            _ => format!("{}{}", self.base, path),
        }
    }

    /// A request builder (no checks) for special cases.
    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut b = self.client.request(method, self.url(path));
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        b
    }

    /// Sends and reads the answer, checking the problem+json / no-5xx rules.
    pub async fn send(&self, method: &str, path: &str, b: reqwest::RequestBuilder) -> Resp {
        let r = b.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = r.status();
        let content_type =
            r.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let resp = Resp { status, content_type, text, body };
        check_answer(method, path, &resp);
        if let Some(contract) = &self.contract {
            let answer = Answer {
                status: status.as_u16(),
                content_type: &resp.content_type,
                text: &resp.text,
                body: &resp.body,
            };
            contract.check(method, path, &answer);
        }
        resp
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let name = method.to_string();
        let mut b = self.req(method, path, token);
        if let Some(body) = body {
            b = b.json(&body);
        }
        self.send(&name, path, b).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// POST with no body at all.
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::POST, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::DELETE, path, token, None).await
    }

    /// POST with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let b = self.req(Method::POST, path, token).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send("POST", path, b).await
    }

    // ---- sessions ----

    /// `POST /v1/sessions` expecting 201; returns `{"session","superseded"}`.
    pub async fn start_session(&self, token: &str, body: Value) -> Value {
        let r = self.post("/v1/sessions", Some(token), body).await;
        r.expect(201).clone()
    }

    /// Starts a session for `user` with the API key; returns the session.
    pub async fn start_for(&self, user: &str, kind: &str) -> Value {
        self.start_session(API_KEY, json!({"kind": kind, "user_id": user})).await["session"].clone()
    }

    /// Reads a session with the API key (expects 200).
    pub async fn session(&self, id: &str) -> Value {
        self.get(&format!("/v1/sessions/{id}"), Some(API_KEY)).await.expect(200).clone()
    }

    /// Reads the session (API key) until `pred` holds, for changes no event
    /// marks, such as a disconnect grace starting once the server has seen a
    /// socket close. Waits for the server, not for time: fails after 5 s.
    pub async fn session_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let limit = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.session(id).await;
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < limit, "timed out waiting for {what}: {s}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // ---- events ----

    /// Opens `GET /v1/events{query}` (query like `?kind=x`, may be empty) with a bearer token.
    pub async fn sse(&self, token: &str, query: &str, last_event_id: Option<u64>) -> EventStream {
        let path = format!("/v1/events{query}");
        let mut b = self.stream_client.get(self.url(&path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            b = b.header("Last-Event-ID", id.to_string());
        }
        self.open_sse(&path, b).await
    }

    /// Opens `GET /v1/events?token=…` (the browser way).
    pub async fn sse_query_token(&self, token: &str) -> EventStream {
        let path = format!("/v1/events?token={token}");
        let b = self.stream_client.get(self.url(&path));
        self.open_sse(&path, b).await
    }

    async fn open_sse(&self, path: &str, b: reqwest::RequestBuilder) -> EventStream {
        let r = b.send().await.expect("open SSE");
        assert_eq!(r.status(), StatusCode::OK, "SSE: {}", r.text().await.unwrap_or_default());
        let ct = r.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ct.starts_with("text/event-stream"), "SSE content-type {ct:?}");
        if let Some(contract) = &self.contract {
            // The stream's status and content type; its frames are not a JSON body.
            contract.check("GET", path, &Answer { status: 200, content_type: &ct, text: "", body: &Value::Null });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let time = self.time.clone();
        let task = tokio::spawn(async move {
            let mut bytes = r.bytes_stream();
            let mut buf = String::new();
            while let Some(chunk) = bytes.next().await {
                let Ok(chunk) = chunk else { break };
                let received = time.now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                if buf.contains('\r') {
                    buf = buf.replace("\r\n", "\n").replace('\r', "\n");
                }
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf[..end].to_string();
                    buf.drain(..end + 2);
                    if let Some(e) = parse_sse_frame(&frame, received) {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        EventStream { rx, task, seen: Vec::new(), contract: self.contract.clone(), transport: "SSE" }
    }

    /// Opens `GET /v1/ws?token=…` and waits until the server is serving it (ping → pong).
    pub async fn ws(&self, token: &str) -> Ws {
        let url = format!("ws://{}/v1/ws?token={}", self.host, token);
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connect");
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let time = self.time.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { break };
                let received = time.now();
                match msg {
                    tokio_tungstenite::tungstenite::Message::Text(text) => {
                        let data: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        let e = Event {
                            id: data["id"].as_u64(),
                            event: data["type"].as_str().unwrap_or("").to_string(),
                            data,
                            received_at: received,
                        };
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    tokio_tungstenite::tungstenite::Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        let events =
            EventStream { rx, task, seen: Vec::new(), contract: self.contract.clone(), transport: "WebSocket" };
        let mut ws = Ws { sink, events };
        ws.sync().await;
        ws
    }

    /// Spawns the binary with `config` and expects it to refuse to start:
    /// returns its exit status and stderr.
    pub fn spawn_expect_failure(config: &str) -> (ExitStatus, String) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--store")
            .arg(format!("sqlite://{}", dir.path().join("t.db").display()))
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(_status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).to_string();
                assert!(!stdout.contains("listening on"), "a bad config must not start the server: {stdout}");
                return (out.status, String::from_utf8_lossy(&out.stderr).to_string());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("the server started with a bad config: {}", String::from_utf8_lossy(&out.stdout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        match &mut self.in_process {
            Some(server) => server.stop(),
            None => self.kill9(),
        }
        if let Some(cluster) = &mut self.cluster {
            for child in &mut cluster.others {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// One event from SSE (`id:`/`event:`/`data:`) or a WebSocket frame.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: Option<u64>,
    /// The SSE `event:` field or the frame's `type`.
    pub event: String,
    pub data: Value,
    /// Unix ms (server time, see [`TestApp::now`]) when the client received it.
    pub received_at: i64,
}

impl Event {
    /// The session's id, from a whole event or a lean one (`session_id`; a
    /// WebSocket error frame's `session_id` names the failed message's target, not an event's).
    pub fn session_id(&self) -> &str {
        let lean = if self.event == "error" { None } else { self.data["session_id"].as_str() };
        self.data["session"]["id"].as_str().or(lean).unwrap_or("")
    }
    pub fn reason(&self) -> &str {
        self.data["reason"].as_str().unwrap_or("")
    }
    /// An event of `event_type` about session `id`.
    pub fn is(&self, event_type: &str, id: &str) -> bool {
        self.event == event_type && self.session_id() == id
    }
    pub fn short(&self) -> String {
        format!("{:?} {} {} {}", self.id, self.event, self.session_id(), self.reason())
    }
}

fn parse_sse_frame(frame: &str, received_at: i64) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, String::from("message"), Vec::new());
    let mut any = false;
    for line in frame.lines() {
        if line.starts_with(':') {
            continue; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => {
                id = Some(value.parse::<u64>().unwrap_or_else(|_| panic!("SSE id is not an integer: {value:?}")));
                any = true;
            }
            "event" => {
                event = value.to_string();
                any = true;
            }
            "data" => {
                data.push(value.to_string());
                any = true;
            }
            _ => {}
        }
    }
    if !any || data.is_empty() {
        return None;
    }
    let text = data.join("\n");
    let data = serde_json::from_str(&text).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {text}"));
    Some(Event { id, event, data, received_at })
}

pub enum Next {
    Event(Event),
    Closed,
    Timeout,
}

/// Events as they arrive (read by a background task, so receipt times are true).
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
    /// Every event taken from this stream so far.
    pub seen: Vec<Event>,
    /// Checks each event taken (WebSocket `pong` and `error` frames are not events).
    contract: Option<Arc<Contract>>,
    transport: &'static str,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventStream {
    pub async fn next(&mut self, timeout: Duration) -> Next {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(e)) => {
                if let Some(contract) = &self.contract {
                    if !(self.transport == "WebSocket" && matches!(e.event.as_str(), "pong" | "error")) {
                        contract.check_event(self.transport, &e.data);
                    }
                }
                self.seen.push(e.clone());
                Next::Event(e)
            }
            Ok(None) => Next::Closed,
            Err(_) => Next::Timeout,
        }
    }

    /// Waits for the first event matching `pred`; panics (listing what came) on timeout or close.
    pub async fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Event(e) if pred(&e) => return e,
                Next::Event(_) => {}
                Next::Closed => panic!("stream closed while waiting for {what}; saw: {:#?}", self.summary()),
                Next::Timeout => panic!("timed out after {timeout:?} waiting for {what}; saw: {:#?}", self.summary()),
            }
        }
    }

    /// `event_type` for session `id`.
    pub async fn wait_event(&mut self, timeout: Duration, event_type: &str, id: &str) -> Event {
        self.wait_for(timeout, &format!("{event_type} of {id}"), |e| e.is(event_type, id)).await
    }

    /// Waits `timeout` and panics if an event matching `pred` arrives meanwhile.
    pub async fn expect_none(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Event) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Event(e) if pred(&e) => panic!("unexpected {what}: {}", e.data),
                Next::Event(_) => {}
                Next::Closed => panic!("stream closed while checking that no {what} arrives"),
                Next::Timeout => return,
            }
        }
    }

    pub fn summary(&self) -> Vec<String> {
        self.seen.iter().map(Event::short).collect()
    }
}

/// A WebSocket client: send JSON frames, read events like an [`EventStream`].
pub struct Ws {
    sink: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        tokio_tungstenite::tungstenite::Message,
    >,
    pub events: EventStream,
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.sink
            .send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// Ping → pong: everything sent before has been handled, and the server's
    /// subscription is in place.
    pub async fn sync(&mut self) {
        self.send(json!({"type": "ping"})).await;
        self.events.wait_for(Duration::from_secs(5), "pong", |e| e.event == "pong").await;
    }

    /// Closes with a close frame and waits for the server's answer.
    pub async fn close(mut self) {
        let _ = self.sink.send(tokio_tungstenite::tungstenite::Message::Close(None)).await;
        let _ = self.sink.close().await;
        // The reader task ends when the server's close frame (or EOF) arrives.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while let Some(_e) = self.events.rx.recv().await {} })
                .await;
    }
}

/// Posts to `path` every `every` until stopped; every answer must be 200.
pub struct Heartbeater {
    task: JoinHandle<()>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl TestApp {
    pub fn keep_alive(&self, path: &str, token: &str, every: Duration) -> Heartbeater {
        let client = self.client.clone();
        let url = self.url(path);
        let token = token.to_string();
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (ok2, failure2) = (ok.clone(), failure.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match client.post(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        ok2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        *failure2.lock().unwrap() = Some(format!("{url} answered {status}: {text}"));
                        return;
                    }
                    Err(e) => {
                        *failure2.lock().unwrap() = Some(format!("{url}: {e}"));
                        return;
                    }
                }
            }
        });
        Heartbeater { task, ok, failure }
    }
}

impl Heartbeater {
    /// Stops; panics if any heartbeat failed. Returns how many succeeded.
    pub fn stop(self) -> u64 {
        self.task.abort();
        if let Some(f) = self.failure.lock().unwrap().take() {
            panic!("heartbeat failed: {f}");
        }
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Heartbeater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

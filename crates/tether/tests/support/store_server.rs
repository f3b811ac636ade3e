//! The real `tether` binary on any store URL — a SQLite file or a PostgreSQL
//! schema — for tests that `kill -9` and restart it many times and must run
//! the same steps on both stores. [`TestApp`](super::app::TestApp) is the
//! binary on SQLite only; this is the store-agnostic form of the process
//! `tests/postgres_crash.rs` spawns.
//!
//! Answers read through [`StoreServer::call`] go through the same checks as
//! the harness's ([`check_answer`] and `/openapi.json`); the raw
//! [`StoreServer::client`] is for churn, where a request cut short by a kill
//! is an expected outcome, not a failure.

// Each test binary uses part of it (like the rest of `support`).
#![allow(dead_code)]

use crate::support::app::{check_answer, listening_addr, Resp, API_KEY};
use crate::support::contract::{Answer, Contract};
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One `tether serve` process at a time on one store, restartable.
pub struct StoreServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the current process.
    pub base: String,
    store: String,
    config: PathBuf,
    logs: tempfile::TempDir,
    spawns: usize,
    pub client: reqwest::Client,
    contract: Option<Arc<Contract>>,
}

impl StoreServer {
    /// Starts the binary on `store` (`sqlite://…` or `postgres://…?schema=…`) with `config`.
    pub async fn start(store: &str, config: &str) -> StoreServer {
        let logs = tempfile::tempdir().expect("temp dir");
        let path = logs.path().join("tether.toml");
        std::fs::write(&path, config).expect("write the config");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("HTTP client");
        let mut server = StoreServer {
            child: None,
            base: String::new(),
            store: store.to_string(),
            config: path,
            logs,
            spawns: 0,
            client,
            contract: None,
        };
        server.spawn().await;
        let doc = server.client.get(server.url("/openapi.json")).send().await.expect("GET /openapi.json");
        server.contract = Some(Contract::shared(&doc.text().await.expect("read /openapi.json")));
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running server").id()
    }

    /// The stderr of the current (or last) process, for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("stderr-{}.log", self.spawns))).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        self.spawns += 1;
        let stderr_path = self.logs.path().join(format!("stderr-{}.log", self.spawns));
        let mut child =
            super::app::serve_command(&self.store, &self.config, &stderr_path, "warn").spawn().expect("spawn tether");
        let rx = listening_addr(child.stdout.take().expect("piped stdout"));
        self.child = Some(child);
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => self.base = format!("http://{addr}"),
            _ => panic!("the server did not print its listening line; stderr:\n{}", self.stderr()),
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same store and config; returns how long
    /// it took until it printed its listening line (recovery included).
    pub async fn restart(&mut self) -> Duration {
        self.kill9();
        let began = Instant::now();
        self.spawn().await;
        began.elapsed()
    }

    /// A request with the API key whose answer is checked like the harness's
    /// (never a 5xx, problem+json errors, agreement with `/openapi.json`).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let name = method.to_string();
        let mut b = self.client.request(method, self.url(path)).bearer_auth(API_KEY);
        if let Some(body) = body {
            b = b.json(&body);
        }
        let r = b.send().await.unwrap_or_else(|e| panic!("{name} {path}: {e}; stderr:\n{}", self.stderr()));
        let status = r.status();
        let content_type =
            r.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let resp = Resp { status, content_type, text, body };
        check_answer(&name, path, &resp);
        if let Some(contract) = &self.contract {
            let answer = Answer {
                status: status.as_u16(),
                content_type: &resp.content_type,
                text: &resp.text,
                body: &resp.body,
            };
            contract.check(&name, path, &answer);
        }
        resp
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

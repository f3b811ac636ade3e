//! The real `tether` binary on the PostgreSQL store (a fresh schema, dropped
//! afterwards): every acknowledged change survives `kill -9`; the restarted
//! node takes the lease over once it expires and fires the deadlines that
//! fell meanwhile at once (idle and `max_duration` keep their durable times); a second node on the same schema joins the
//! cluster as a follower and answers for the owner; SIGTERM exits 0.
//!
//! PostgreSQL: `TETHER_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); `off` skips this file.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::{id_of, listening_addr, now_ms, pg_base, serve_command, ts, PgSchema};

const API_KEY: &str = "pg-test-api-key-0123456789";

const CONFIG: &str = r#"
[cluster]
lease = "1s"

[auth]
jwt_secret = "pg-test-jwt-secret"
api_keys = ["pg-test-api-key-0123456789"]

[kinds.plain]
idle_timeout = "1m"

[kinds.brief]
idle_timeout = "1500ms"

[kinds.capped]
max_duration = "4s"

[kinds.swipe]
per_user = "replace"
idle_timeout = "1m"
"#;

/// One `tether serve` process on a PostgreSQL URL.
struct Server {
    child: Option<Child>,
    base: String,
    stderr: PathBuf,
    client: reqwest::Client,
}

fn command(store: &str, config: &std::path::Path, stderr: &std::path::Path) -> Command {
    serve_command(store, config, stderr, "warn,tether::cluster=info")
}

impl Server {
    async fn spawn(store: &str, config: &std::path::Path, stderr: PathBuf) -> Server {
        let mut child = command(store, config, &stderr).spawn().expect("spawn tether");
        let rx = listening_addr(child.stdout.take().expect("piped stdout"));
        let addr = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("the server did not start; stderr:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default()),
        };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        Server { child: Some(child), base: format!("http://{addr}"), stderr, client }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut b = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(API_KEY);
        if let Some(body) = body {
            b = b.json(&body);
        }
        let r = b.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn start(&self, kind: &str, user: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/sessions",
                Some(json!({"kind": kind, "user_id": user, "metadata": {"u": user}})),
            )
            .await;
        assert_eq!(status, 201, "start {kind}: {body}");
        body["session"].clone()
    }

    async fn session(&self, id: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/v1/sessions/{id}"), None).await;
        assert_eq!(status, 200, "GET {id}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_restart_on_postgres_keeps_every_acknowledged_session() {
    let Some(_) = pg_base() else {
        eprintln!("TETHER_TEST_POSTGRES=off: skipped");
        return;
    };
    let schema = PgSchema::new("kill");
    schema.with_client(|_| ()); // a clear message when PostgreSQL is down
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tether.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let url = schema.url();

    let mut server = Server::spawn(&url, &config, dir.path().join("stderr-1.log")).await;

    // History: an ended and a superseded session.
    let ended = server.start("plain", "u-ended").await;
    let (st, _) = server
        .call(reqwest::Method::POST, &format!("/v1/sessions/{}/end", id_of(&ended)), Some(json!({"reason": "done"})))
        .await;
    assert_eq!(st, 200);
    let old_swipe = server.start("swipe", "u-swipe").await;
    let new_swipe = server.start("swipe", "u-swipe").await;
    let history = [server.session(&id_of(&ended)).await, server.session(&id_of(&old_swipe)).await];
    assert_eq!(history[1]["end_reason"], "superseded");

    // A burst of concurrent starts, each acknowledged right up to the kill.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = server.client.clone();
        let url = format!("{}/v1/sessions", server.base);
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(API_KEY)
                .json(&json!({"kind": "plain", "user_id": format!("burst{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            r.json::<Value>().await.unwrap()["session"].clone()
        }));
    }
    let mut live = Vec::new();
    for t in tasks {
        live.push(t.await.unwrap());
    }
    live.push(new_swipe.clone());
    // A participant and an invite.
    let (st, joined) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/sessions/{}/participants", id_of(&live[0])),
            Some(json!({"user_id": "guest", "name": "G"})),
        )
        .await;
    assert_eq!(st, 201, "{joined}");
    live[0] = joined;
    let (st, invite) =
        server.call(reqwest::Method::POST, &format!("/v1/sessions/{}/invites", id_of(&live[1])), Some(json!({}))).await;
    assert_eq!(st, 201, "{invite}");
    let idle = server.start("brief", "u-idle").await; // idle_timeout 1500ms
    let capped = server.start("capped", "u-capped").await; // max_duration 4s
    let last = server.start("plain", "u-last").await;
    live.push(last);

    server.kill9();

    // Down past the idle deadline.
    let idle_deadline = ts(&idle["expires_at"]);
    let wait = idle_deadline + 200 - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let restart_at = now_ms();
    let server = Server::spawn(&url, &config, dir.path().join("stderr-2.log")).await;

    for h in &history {
        assert_eq!(&server.session(&id_of(h)).await, h, "ended history survives unchanged");
    }
    for s in &live {
        let now = server.session(&id_of(s)).await;
        for field in [
            "id",
            "kind",
            "user_id",
            "status",
            "created_at",
            "activated_at",
            "metadata",
            "parent_id",
            "ended_at",
            "end_reason",
        ] {
            assert_eq!(now[field], s[field], "{field} of {}", id_of(s));
        }
        assert_eq!(now["participants"].as_array().unwrap().len(), s["participants"].as_array().unwrap().len(), "{now}");
    }
    let (st, listed) = server.call(reqwest::Method::GET, "/v1/sessions?status=active&kind=plain&limit=100", None).await;
    assert_eq!(st, 200);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 41, "{listed}");
    // The invite still works.
    let (st, _) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/invites/{}/join", invite["token"].as_str().unwrap()),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 201);

    // A second node on the same schema joins as a follower (checked while the rest runs).
    let second_stderr = dir.path().join("stderr-second.log");
    let second = Server::spawn(&url, &config, second_stderr.clone()).await;

    // max_duration keeps its original time...
    let capped_now = server.session(&id_of(&capped)).await;
    assert_eq!(capped_now["expires_at"], capped["expires_at"], "max_duration keeps its time");

    // ...and so does the idle deadline, which fell while no node ran: the
    // node that takes the lease over ends the session at once (a cluster
    // computes deadlines from the durable state; the others' clients could
    // reach it meanwhile).
    let give_up = Instant::now() + Duration::from_secs(10);
    let ended_idle = loop {
        let s = server.session(&id_of(&idle)).await;
        if s["status"] == "ended" {
            break s;
        }
        assert!(Instant::now() < give_up, "the idle session never ended: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended_idle["end_reason"], "idle_timeout");
    let after = ts(&ended_idle["ended_at"]) - restart_at;
    assert!((0..=3000).contains(&after), "ended {after} ms after the restart (lease 1 s)");
    let capped_end = loop {
        let s = server.session(&id_of(&capped)).await;
        if s["status"] == "ended" {
            break s;
        }
        assert!(Instant::now() < give_up, "the capped session never ended: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(capped_end["end_reason"], "max_duration");
    let late = ts(&capped_end["ended_at"]) - ts(&capped["expires_at"]);
    assert!((0..=150).contains(&late), "max_duration ended {late} ms after its original deadline");
    assert_eq!(server.session(&id_of(&live[3])).await["status"], "active");

    // The second node answers for the owner, and both are listed.
    assert_eq!(second.session(&id_of(&live[3])).await["status"], "active");
    let (st, cluster) = second.call(reqwest::Method::GET, "/v1/admin/cluster", None).await;
    assert_eq!(st, 200, "{cluster}");
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["leader"] == true).count(), 1, "{cluster}");
    assert!(nodes.iter().any(|n| n["advertise"] == second.base.as_str()), "{cluster}");
    drop(second);

    // What the database holds, read directly: the rows are where they belong.
    let name = schema.name.clone();
    let (rows, live_rows): (i64, i64) = schema.with_client(move |c| {
        let r = c
            .query_one(
                &format!("SELECT count(*), count(*) FILTER (WHERE status <> 'ended') FROM \"{name}\".sessions"),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    });
    assert_eq!(rows, 2 + 1 + 41 + 2);
    assert_eq!(live_rows, 41 + 1);

    let log = std::fs::read_to_string(&server.stderr).unwrap();
    assert!(log.contains("took over the cluster's work"), "the restarted node took the lease over: {log}");

    // SIGTERM: a clean exit.
    let mut server = server;
    let pid = server.child.as_ref().unwrap().id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.as_mut().unwrap().try_wait().unwrap() {
            server.child = None;
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

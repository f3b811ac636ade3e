//! Soak: many concurrent WebSockets, one per user, each keeping its user's
//! session alive with `{"type":"heartbeat"}` frames for minutes. Passes when
//! no session ended (0 false expiries), no socket dropped and no heartbeat
//! was refused; reports the server's memory per socket (RSS delta / sockets).
//!
//! Full size only, never in CI (`#[ignore]`): `scripts/soak` runs it —
//! `scripts/soak --sockets 50000 --minutes 10` is the documented size, and
//! needs `ulimit -n` above the socket count for both processes (see
//! docs/RELIABILITY.md). Size here: `TETHER_SOAK_SOCKETS` (default 500),
//! `TETHER_SOAK_MINUTES` (default 1).
//!
//! Client sockets are spread over local addresses 127.0.0.1, 127.0.0.2, …
//! (20,000 each) so the test never runs out of ephemeral ports on one
//! source address.

mod support;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::store_server::StoreServer;
use support::{config_text, user_token, API_KEY};
use tokio_tungstenite::tungstenite::Message;

/// Idle timeout of the soaked kind, and the heartbeat period: a socket
/// beats 4 times per timeout, so a false expiry needs several lost beats in a row.
const IDLE_TIMEOUT: &str = "20s";
const BEAT_EVERY: Duration = Duration::from_secs(5);
/// Sockets per local source address.
const PER_SOURCE: usize = 20_000;
/// Concurrent session starts and WebSocket handshakes while setting up.
const SETUP_CONCURRENCY: usize = 128;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// Resident set size of a process, in bytes (Linux `/proc`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// What every socket counts.
#[derive(Default)]
struct Tally {
    beats: AtomicU64,
    error_frames: AtomicU64,
    ended_events: AtomicU64,
    dropped: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

impl Tally {
    fn problem(&self, what: String) {
        self.first_problem.lock().unwrap().get_or_insert(what);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "full-size soak: run by scripts/soak, not in CI"]
async fn websockets_heartbeating_for_minutes_never_expire() {
    let sockets = env_number("TETHER_SOAK_SOCKETS", 500) as usize;
    let minutes = env_number("TETHER_SOAK_MINUTES", 1);
    assert!(sockets > 0 && minutes > 0, "TETHER_SOAK_SOCKETS and TETHER_SOAK_MINUTES must be positive");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("tether.db").display());
    let config = format!("{}\n[kinds.soak]\nidle_timeout = \"{IDLE_TIMEOUT}\"\n", config_text());
    let server = StoreServer::start(&store, &config).await;
    let pid = server.pid();
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().expect("server address");

    // One session per user, started by the backend.
    let began = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..sockets)
        .map(|i| {
            let (client, url) = (server.client.clone(), server.url("/v1/sessions"));
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(API_KEY)
                    .json(&json!({"kind": "soak", "user_id": format!("soak-{i}")}))
                    .send()
                    .await
                    .expect("start a session");
                assert_eq!(r.status().as_u16(), 201, "start: {}", r.text().await.unwrap_or_default());
                r.json::<Value>().await.unwrap()["session"]["id"].as_str().unwrap().to_string()
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    eprintln!("{sockets} sessions started in {:.1} s", began.elapsed().as_secs_f64());
    let rss_before = rss_bytes(pid);

    // Every user opens a WebSocket and heartbeats its session until the end.
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let began = Instant::now();
    let opened = futures::stream::iter(ids.iter().cloned().enumerate())
        .map(|(i, id)| open(addr, i, id))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    eprintln!("{sockets} WebSockets open in {:.1} s", began.elapsed().as_secs_f64());
    let rss_open = rss_bytes(pid);
    let tasks: Vec<_> =
        opened.into_iter().map(|(ws, id)| tokio::spawn(heartbeat(ws, id, end, tally.clone()))).collect();

    // Memory at its steadiest: halfway, every socket has beaten several times.
    tokio::time::sleep(end.saturating_duration_since(Instant::now()) / 2).await;
    let rss_mid = rss_bytes(pid);
    for t in tasks {
        t.await.expect("a socket task panicked");
    }

    // The store's word: every session still live.
    let mut live = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sessions?kind=soak&status=live&limit=1000&cursor={c}"),
            None => "/v1/sessions?kind=soak&status=live&limit=1000".to_string(),
        };
        let page = server.call(Method::GET, &path, None).await.expect(200).clone();
        live += page["sessions"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let health = server.call(Method::GET, "/v1/admin/health", None).await.expect(200).clone();

    let per_socket = |rss: u64| (rss as f64 - rss_before as f64) / sockets as f64;
    eprintln!(
        "soak: {sockets} WebSockets × {minutes} min, {} heartbeats; {} sessions live at the end; \
         {} ended events, {} error frames, {} sockets dropped; server RSS {:.1} MiB before the sockets, \
         {:.1} MiB with them open, {:.1} MiB halfway: {:.1} KiB per socket open, {:.1} KiB halfway",
        tally.beats.load(Ordering::Relaxed),
        live,
        tally.ended_events.load(Ordering::Relaxed),
        tally.error_frames.load(Ordering::Relaxed),
        tally.dropped.load(Ordering::Relaxed),
        rss_before as f64 / 1048576.0,
        rss_open as f64 / 1048576.0,
        rss_mid as f64 / 1048576.0,
        per_socket(rss_open) / 1024.0,
        per_socket(rss_mid) / 1024.0,
    );
    let problem = tally.first_problem.lock().unwrap().clone().unwrap_or_default();
    assert_eq!(tally.ended_events.load(Ordering::Relaxed), 0, "false expiries; first: {problem}");
    assert_eq!(tally.error_frames.load(Ordering::Relaxed), 0, "heartbeats refused; first: {problem}");
    assert_eq!(tally.dropped.load(Ordering::Relaxed), 0, "sockets dropped; first: {problem}");
    assert_eq!(live, sockets, "sessions no longer live at the end");
    assert_eq!(health["sessions"]["overdue"], 0, "{health}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects socket `i` from its source address, as user `soak-{i}`, and waits
/// until the server serves it (ping → pong).
async fn open(server: SocketAddr, i: usize, id: String) -> (Socket, String) {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (i / PER_SOURCE) as u8);
    let tcp = tokio::net::TcpSocket::new_v4().expect("a TCP socket (is `ulimit -n` high enough?)");
    tcp.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = tcp.connect(server).await.unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let url = format!("ws://{server}/v1/ws?token={}", user_token(&format!("soak-{i}")));
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("WebSocket handshake");
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.expect("send ping");
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"pong\"") => return (ws, id),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket {i}: no pong after connecting: {other:?}"),
        }
    }
}

/// Beats every [`BEAT_EVERY`] (first beat at a random offset, so beats are
/// spread evenly) until `end`, counting what the server says back.
async fn heartbeat(ws: Socket, id: String, end: Instant, tally: Arc<Tally>) {
    let (mut tx, mut rx) = ws.split();
    let reader_tally = tally.clone();
    let reader = tokio::spawn(async move {
        while let Some(frame) = rx.next().await {
            match frame {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("error") => {
                            reader_tally.error_frames.fetch_add(1, Ordering::Relaxed);
                            reader_tally.problem(format!("error frame: {t}"));
                        }
                        Some("session.ended") => {
                            reader_tally.ended_events.fetch_add(1, Ordering::Relaxed);
                            reader_tally.problem(format!("session ended: {t}"));
                        }
                        _ => {}
                    }
                }
                Ok(Message::Close(frame)) => return Some(format!("closed by the server: {frame:?}")),
                Ok(_) => {}
                Err(e) => return Some(format!("read: {e}")),
            }
        }
        Some("the server ended the stream".to_string())
    });
    let offset = Duration::from_millis(rand::thread_rng().gen_range(0..BEAT_EVERY.as_millis() as u64));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, BEAT_EVERY);
    let frame = json!({"type": "heartbeat", "session_id": id}).to_string();
    let end = tokio::time::Instant::from_std(end);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => break,
        }
        if let Err(e) = tx.send(Message::Text(frame.clone().into())).await {
            tally.dropped.fetch_add(1, Ordering::Relaxed);
            tally.problem(format!("send: {e}"));
            reader.abort();
            return;
        }
        tally.beats.fetch_add(1, Ordering::Relaxed);
    }
    if reader.is_finished() {
        if let Ok(Some(why)) = reader.await {
            tally.dropped.fetch_add(1, Ordering::Relaxed);
            tally.problem(why);
        }
    } else {
        reader.abort();
    }
    let _ = tx.close().await;
}

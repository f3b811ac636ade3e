//! `heartbeats-ws`: heartbeats per second over a few API-key WebSockets,
//! sent as fast as each socket takes them (fire-and-forget frames), with the
//! latency of a `ping` → `pong` interleaved among them. Tether only: no peer
//! has a comparable one-way renewal over a shared connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures_util::{SinkExt, StreamExt};
use http::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{hb_sessions, hb_warmup, scenario_run, throughput_row, Params, Tether, TetherSource};
use crate::http::{now_ms, parse_ts, ws_connect, Ws};
use crate::peers::Throughput;
use crate::report::{ScenarioRun, SystemRun, Target};
use crate::server::{KindTimes, API_KEY};
use crate::stats::Samples;

pub const NAME: &str = "heartbeats-ws";

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} live sessions, {} WebSockets)", p.hb_sessions, p.ws_conns),
        json!({"sessions": p.hb_sessions, "ws_conns": p.ws_conns, "duration_s": p.hb_duration.as_secs_f64(), "ping_every": WS_PING_EVERY, "max_pings_in_flight": WS_PINGS_IN_FLIGHT}),
        vec![Target::ge("rate", 200_000.0, "≥ 200k/s"), Target::le("latency_p99_ms", 5.0, "p99 ≤ 5 ms")],
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    run
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let ids = hb_sessions(&t, p).await?;
    let start = Instant::now();
    let warm = hb_warmup(p);
    let t_begin = start + warm;
    let t_end = t_begin + p.hb_duration;
    let mut tasks = vec![];
    for w in 0..p.ws_conns {
        let ws = ws_connect(t.api.addr, API_KEY, "").await?;
        let ids = ids.clone();
        let conns = p.ws_conns;
        tasks.push(tokio::spawn(async move { ws_heartbeat_worker(ws, ids, w, conns, t_begin, t_end).await }));
    }
    let mut latency = Samples::new();
    let (mut sent, mut errors, mut first_err) = (0usize, 0usize, None);
    let mut finished = t_end;
    for task in tasks {
        let r = task.await??;
        sent += r.0;
        latency.values.extend(r.1.values);
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
    let note = format!(
        "`{{\"type\":\"heartbeat\",\"session_id\"}}` frames (fire-and-forget) on {} API-key WebSockets; rate = frames sent / time until the pong of a final ping (all earlier frames processed); latency = `ping` → `pong` round trip interleaved every {WS_PING_EVERY} frames, at most {WS_PINGS_IN_FLIGHT} pings in flight per socket (so a ping waits behind at most {} heartbeat frames)",
        p.ws_conns,
        WS_PING_EVERY * WS_PINGS_IN_FLIGHT
    );
    let mut s =
        throughput_row("Tether", "heartbeats per second", Throughput { rate, latency, note }, Some((errors, None)));
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
    let pings: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
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

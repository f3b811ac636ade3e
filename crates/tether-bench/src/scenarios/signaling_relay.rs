//! `signaling-relay`: the time from one user of a call sending a WebRTC
//! offer on its WebSocket to the other user's WebSocket delivering it, one
//! message at a time. Redis's counterpart is a `PUBLISH` to a subscriber.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures_util::SinkExt;
use http::Method;
use serde_json::json;
use tether_engine::EventType;
use tokio_tungstenite::tungstenite::Message;

use super::{call_id_of, peer_rows, put_profile, scenario_run, start_matching, ws_wait, Params, Tether, TetherSource};
use crate::http::ws_connect;
use crate::peers::{Latencies, Peer};
use crate::report::{ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;
use crate::stats::Samples;

pub const NAME: &str = "signaling-relay";

const RELAY: &str = "offer sent → received by the peer";

pub async fn run(src: &TetherSource, p: &Params, peers: &mut [Box<dyn Peer>]) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        NAME.to_string(),
        json!({"messages": p.relay_messages}),
        vec![Target::le("relay_p99_ms", 2.0, "p99 ≤ 2 ms")],
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    run.systems.extend(peer_rows(peers, async |peer| peer.relay(p).await, relay_row).await);
    run
}

fn relay_row(system: &str, mut l: Latencies) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.latency("relay", RELAY, &mut l.samples);
    s.note(l.note);
    s
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    let mut c = api.conn().await?;
    put_profile(&mut c, &api.key, "a", 25, &["x"]).await?;
    put_profile(&mut c, &api.key, "b", 25, &["x"]).await?;
    let mut aws = ws_connect(api.addr, &api.user_token("a"), "").await?;
    let mut bws = ws_connect(api.addr, &api.user_token("b"), "").await?;
    start_matching(&mut c, &api, "a", 18, 99, &[]).await?;
    start_matching(&mut c, &api, "b", 18, 99, &[]).await?;
    let (ev, _) = ws_wait(&mut aws, EventType::MatchFound, Duration::from_secs(10)).await?;
    let _ = ws_wait(&mut bws, EventType::MatchFound, Duration::from_secs(10)).await?;
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
            let (v, at) = ws_wait(&mut bws, EventType::CallSignal, Duration::from_secs(5)).await?;
            if v["signal"]["data"]["seq"].as_u64() == Some(i as u64) {
                lat.push((at - t0).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let note = "two users paired and joined to their call; A sends `{\"type\":\"signal\",\"call_id\",\"signal\":{\"type\":\"offer\",…}}` on its WebSocket; timed until B's WebSocket delivers the `call.signal` event; one at a time";
    let s = relay_row("Tether", Latencies { samples: lat, note: note.into() });
    let _ = aws.close(None).await;
    let _ = bws.close(None).await;
    t.stop().await;
    Ok(s)
}

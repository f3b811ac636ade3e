//! `heartbeats-http`: heartbeats per second and their latency over N
//! keep-alive connections, one request at a time on each. Tether answers
//! `POST /v1/sessions/{id}/heartbeat`; each peer renews its own way (Redis
//! `PEXPIRE`, etcd lease keep-alive, the seeds' PostgreSQL `UPDATE`).

use std::sync::Arc;

use anyhow::Result;
use http::Method;
use serde_json::json;

use super::{hb_sessions, hb_warmup, peer_rows, scenario_run, throughput_row, Params, Tether, TetherSource};
use crate::load::timed_loop_with;
use crate::peers::{Peer, Throughput};
use crate::report::{ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;

pub const NAME: &str = "heartbeats-http";

const RATE: &str = "heartbeats per second";

pub async fn run(src: &TetherSource, p: &Params, peers: &mut [Box<dyn Peer>]) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} live sessions, {} connections)", p.hb_sessions, p.http_conns),
        json!({"sessions": p.hb_sessions, "conns": p.http_conns, "duration_s": p.hb_duration.as_secs_f64()}),
        vec![Target::ge("rate", 50_000.0, "≥ 50k/s"), Target::le("latency_p99_ms", 5.0, "p99 ≤ 5 ms")],
    );
    match tether(src, p).await {
        Ok(rows) => run.systems.extend(rows),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    let rows = peer_rows(peers, async |peer| peer.heartbeats(p).await, |name, t| throughput_row(name, RATE, t, None));
    run.systems.extend(rows.await);
    run
}

async fn tether(src: &TetherSource, p: &Params) -> Result<Vec<SystemRun>> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let ids = hb_sessions(&t, p).await?;
    let conns = p.http_conns;
    let paths: Arc<Vec<String>> = Arc::new(ids.iter().map(|id| format!("/v1/sessions/{id}/heartbeat")).collect());
    let warm = hb_warmup(p);
    let mut rows = Vec::new();
    // The full answer (the Session), then `Prefer: return=minimal` (204 + Tether-Expires-At), as the SDK sends.
    let minimal = [(http::HeaderName::from_static("prefer"), http::HeaderValue::from_static("return=minimal"))];
    for (system, headers, answer) in [
        ("Tether", &[][..], "200 + the Session"),
        ("Tether (Prefer: return=minimal)", &minimal[..], "204 + Tether-Expires-At"),
    ] {
        let paths = paths.clone();
        let (rate, latency, failures, first) =
            timed_loop_with(&t.api, conns, warm, p.hb_duration, headers, move |w, i| {
                (Method::POST, paths[(w + i * conns) % paths.len()].clone(), None)
            })
            .await?;
        let note = format!(
            "POST /v1/sessions/{{id}}/heartbeat with the API key ({answer}), one request at a time per keep-alive connection, {:.1} s warm-up not counted",
            warm.as_secs_f64()
        );
        rows.push(throughput_row(system, RATE, Throughput { rate, latency, note }, Some((failures, first))));
    }
    t.stop().await;
    Ok(rows)
}

//! `durable-starts`: session starts per second that survive a crash, over N
//! connections one at a time. Tether's `201` means the session is on disk
//! (SQLite); etcd commits a lease and a key, PostgreSQL an `INSERT`. Redis,
//! which this harness runs without persistence, is listed as not comparable.

use anyhow::Result;
use bytes::Bytes;
use http::Method;
use serde_json::json;

use super::{peer_rows, scenario_run, throughput_row, Params, Tether, TetherSource};
use crate::load::timed_loop;
use crate::peers::{Peer, Throughput};
use crate::report::{ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;

pub const NAME: &str = "durable-starts";

const RATE: &str = "starts per second";

pub async fn run(src: &TetherSource, p: &Params, peers: &mut [Box<dyn Peer>]) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} connections)", p.http_conns),
        json!({"conns": p.http_conns, "duration_s": p.starts_duration.as_secs_f64(), "store": "sqlite"}),
        vec![Target::ge("rate", 10_000.0, "≥ 10k/s"), Target::le("latency_p99_ms", 20.0, "p99 ≤ 20 ms")],
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    let rows = peer_rows(peers, async |peer| peer.starts(p).await, |name, t| throughput_row(name, RATE, t, None));
    run.systems.extend(rows.await);
    for peer in peers.iter() {
        if let Some(why) = peer.not_comparable(NAME) {
            let mut s = SystemRun::new(peer.name());
            s.note(why);
            run.systems.push(s);
        }
    }
    run
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let warm = std::time::Duration::from_millis(500).min(p.starts_duration / 4);
    let (rate, latency, failures, first) = timed_loop(&t.api, p.http_conns, warm, p.starts_duration, |w, i| {
        (
            Method::POST,
            "/v1/sessions".to_string(),
            Some(Bytes::from(format!(r#"{{"kind":"bench_start","user_id":"s{w}-{i}"}}"#))),
        )
    })
    .await?;
    let note =
        "POST /v1/sessions (kind bench_start, distinct users) on a fresh SQLite store; a 201 means durable".into();
    t.stop().await;
    Ok(throughput_row("Tether", RATE, Throughput { rate, latency, note }, Some((failures, first))))
}

//! `pairing-throughput` (issue 12): pairs per second under a steady stream of
//! entering users, with time-to-pair measured on the same pairs. N users wait
//! in the pool and never pair with each other; W workers each loop: a new
//! user enters (`POST /v1/matching/start`), is paired with one of the waiting
//! (both users' `match.found` seen by an API-key observer), then leaves (its
//! matching session ends, the call ends, the waiting user returns to the
//! pool). Tether only: no peer matches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use http::Method;
use serde_json::json;
use tether_engine::EventType;
use tokio::sync::oneshot;

use super::{fill_waiting_pool, put_profile, scenario_run, start_matching, Params, Tether, TetherSource};
use crate::http::{now_ms, spawn_sse};
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;
use crate::stats::Samples;

pub const NAME: &str = "pairing-throughput";

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let targets = if p.pair_waiting >= 100_000 {
        vec![
            Target::ge("pairs_per_s", 20_000.0, "≥ 20k pairs/s"),
            Target::le("pair_p99_ms", 10.0, "p99 ≤ 10 ms with 100k waiting"),
        ]
    } else {
        vec![]
    };
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} waiting, {} workers)", p.pair_waiting, p.http_conns),
        json!({"waiting": p.pair_waiting, "workers": p.http_conns, "seconds": p.starts_duration.as_secs_f64()}),
        targets,
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("{e:#}")),
    }
    run
}

/// The parts of a `match.found` the observer reads.
#[derive(serde::Deserialize)]
struct Found {
    #[serde(rename = "match")]
    found: FoundMatch,
}
#[derive(serde::Deserialize)]
struct FoundMatch {
    call_id: String,
    partner: FoundPartner,
}
#[derive(serde::Deserialize)]
struct FoundPartner {
    user_id: String,
}

/// What the observer has seen of calls whose users were not both told yet,
/// and the workers waiting for them. A worker registers its entering user
/// before `POST /v1/matching/start` and is woken once, when the second
/// `match.found` of its call arrives (waking every worker on every event, as
/// before, cost the client more CPU than the server spent per pair).
#[derive(Default)]
struct Pending {
    /// call → receipt times of its `match.found`s so far, and its entering
    /// user once an event named it as the partner.
    calls: HashMap<String, (Vec<f64>, Option<String>)>,
    /// entering user → its worker, told the receipt time of the later event.
    waiters: HashMap<String, oneshot::Sender<f64>>,
}

impl Pending {
    fn found(&mut self, f: Found, received_ms: f64) {
        let FoundMatch { call_id, partner } = f.found;
        let call = self.calls.entry(call_id.clone()).or_default();
        call.0.push(received_ms);
        // The waiting user's event names the entering user (`q…`) as partner.
        if partner.user_id.starts_with('q') {
            call.1 = Some(partner.user_id);
        }
        if call.0.len() < 2 {
            return;
        }
        let Some((times, entering)) = self.calls.remove(&call_id) else { return };
        let both = times.into_iter().fold(0.0, f64::max);
        if let Some(w) = entering.and_then(|u| self.waiters.remove(&u)) {
            let _ = w.send(both);
        }
    }
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    eprintln!("  tether: {} users waiting", p.pair_waiting);
    // waiting pool: age 30, wants age 18..18 — no two of them ever pair
    let fill = fill_waiting_pool(&api, p.pair_waiting, p.create_conns).await?;

    let pending: Arc<Mutex<Pending>> = Arc::default();
    let p2 = pending.clone();
    let found = EventType::MatchFound.as_str();
    let obs = spawn_sse(api.addr, "/v1/events?kind=call", &api.key, move |ev| {
        if ev.event != found {
            return;
        }
        if let Ok(f) = serde_json::from_str::<Found>(&ev.data) {
            p2.lock().unwrap().found(f, ev.received_ms);
        }
    })
    .await?;

    let until = Instant::now() + p.starts_duration;
    let started = Instant::now();
    let mut workers = vec![];
    for w in 0..p.http_conns.max(1) {
        let (api, pending) = (api.clone(), pending.clone());
        workers.push(tokio::spawn(async move {
            let mut c = api.conn().await?;
            let (mut lat, mut missed) = (Samples::new(), 0usize);
            let mut k = 0usize;
            while Instant::now() < until {
                let u = format!("q{w}-{k}");
                k += 1;
                put_profile(&mut c, &api.key, &u, 18, &["waiting"]).await?;
                let (tx, rx) = oneshot::channel();
                pending.lock().unwrap().waiters.insert(u.clone(), tx);
                let t0 = now_ms();
                let ps = start_matching(&mut c, &api, &u, 30, 30, &[]).await?;
                match tokio::time::timeout(Duration::from_secs(5), rx).await {
                    Ok(Ok(both)) => lat.push(both - t0),
                    _ => {
                        pending.lock().unwrap().waiters.remove(&u);
                        missed += 1;
                    }
                }
                // leaving ends the call; the waiting user returns to the pool
                c.json(Method::POST, &format!("/v1/sessions/{ps}/end"), &api.key, Some(&json!({}))).await?;
            }
            Ok::<_, anyhow::Error>((lat, missed))
        }));
    }
    let mut both = Samples::new();
    let mut missed = 0;
    for w in workers {
        let (lat, m) = w.await.map_err(|e| anyhow!("worker: {e}"))??;
        both.extend(&lat);
        missed += m;
    }
    let elapsed = started.elapsed().as_secs_f64();
    obs.abort();
    let mut s = SystemRun::new("Tether");
    let pairs = both.len();
    s.metric(Metric::new("pairs_per_s", "pairs per second (both users told)", Some(pairs as f64 / elapsed), "/s"));
    s.latency("pair", "enter → both users' `match.found` (API-key observer)", &mut both);
    s.note(format!(
        "{} users waiting (filled in {:.1} s); {} workers, each: PUT profile, POST /v1/matching/start as a new user, wait until an API-key SSE observer has both users' match.found, end the new user's matching session (the call ends, the waiting user returns to the pool); {pairs} pairs in {elapsed:.1} s",
        p.pair_waiting,
        fill.as_secs_f64(),
        p.http_conns
    ));
    if both.is_empty() {
        s.note("no pair completed");
    }
    if missed > 0 {
        s.note(format!("{missed} entering users were not seen paired within 5 s"));
    }
    t.stop().await;
    Ok(s)
}

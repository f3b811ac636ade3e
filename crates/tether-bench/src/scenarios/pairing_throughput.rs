//! `pairing-throughput` (issue 12): pairs per second under a steady stream of
//! entering users, with time-to-pair measured on the same pairs. N users wait
//! in the pool and never pair with each other; W workers each loop: a new
//! user enters (`POST /v1/matching/start`), is paired with one of the waiting
//! (both users' `match.found` seen by an API-key observer), then leaves (its
//! matching session ends, the call ends, the waiting user returns to the
//! pool). Tether only: no peer matches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Result};
use http::Method;
use serde_json::{json, Value};
use tether_engine::EventType;

use super::{call_id_of, fill_waiting_pool, put_profile, scenario_run, start_matching, Params, Tether, TetherSource};
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

/// What the observer saw: per call, when each `match.found` arrived; per
/// entering user, its call (from the waiting user's event naming it as partner).
#[derive(Default)]
struct Seen {
    calls: HashMap<String, Vec<f64>>,
    call_of: HashMap<String, String>,
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    eprintln!("  tether: {} users waiting", p.pair_waiting);
    // waiting pool: age 30, wants age 18..18 — no two of them ever pair
    let fill = fill_waiting_pool(&api, p.pair_waiting, p.create_conns).await?;

    let seen: Arc<Mutex<Seen>> = Arc::default();
    // Workers wait on this rather than polling, so the wait measures the server.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (s2, a2) = (seen.clone(), arrived.clone());
    let obs = spawn_sse(api.addr, "/v1/events?kind=call", &api.key, move |ev| {
        if ev.event != EventType::MatchFound.as_str() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return };
        let Some(call) = call_id_of(&v) else { return };
        let mut seen = s2.lock().unwrap();
        seen.calls.entry(call.clone()).or_default().push(ev.received_ms);
        if let Some(partner) = v["match"]["partner"]["user_id"].as_str() {
            seen.call_of.insert(partner.to_string(), call);
        }
        a2.notify_waiters();
    })
    .await?;

    let until = Instant::now() + p.starts_duration;
    let started = Instant::now();
    let mut workers = vec![];
    for w in 0..p.http_conns.max(1) {
        let (api, seen, arrived) = (api.clone(), seen.clone(), arrived.clone());
        workers.push(tokio::spawn(async move {
            let mut c = api.conn().await?;
            let (mut lat, mut missed) = (Samples::new(), 0usize);
            let mut k = 0usize;
            while Instant::now() < until {
                let u = format!("q{w}-{k}");
                k += 1;
                put_profile(&mut c, &api.key, &u, 18, &["waiting"]).await?;
                let both_told = |seen: &Seen| {
                    seen.call_of.get(&u).and_then(|call| seen.calls.get(call)).is_some_and(|r| r.len() >= 2)
                };
                let t0 = now_ms();
                let ps = start_matching(&mut c, &api, &u, 30, 30, &[]).await?;
                let give_up = Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    let notified = arrived.notified();
                    if both_told(&seen.lock().unwrap()) || Instant::now() >= give_up {
                        break;
                    }
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), notified).await;
                }
                if both_told(&seen.lock().unwrap()) {
                    let seen = seen.lock().unwrap();
                    let call = &seen.call_of[&u];
                    lat.push(seen.calls[call].iter().cloned().fold(0.0, f64::max) - t0);
                } else {
                    missed += 1;
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

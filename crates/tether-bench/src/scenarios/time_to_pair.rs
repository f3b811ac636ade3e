//! `time-to-pair`: with N users waiting in the matching pool, the time from a
//! new user entering until both users of the pair have their `match.found`.
//! The waiting users never pair with each other, so each round pairs the
//! newcomer with one of them. Tether only: no peer matches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use http::Method;
use serde_json::{json, Value};
use tether_engine::EventType;

use super::{call_id_of, fill_waiting_pool, put_profile, scenario_run, ws_wait, Params, Tether, TetherSource};
use crate::http::{now_ms, spawn_sse, wait_until, ws_connect};
use crate::report::{ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;
use crate::stats::Samples;

pub const NAME: &str = "time-to-pair";

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let targets = if p.pair_waiting >= 100_000 {
        vec![Target::le("both_p99_ms", 10.0, "p99 ≤ 10 ms with 100k waiting")]
    } else {
        vec![]
    };
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} waiting)", p.pair_waiting),
        json!({"waiting": p.pair_waiting, "rounds": p.pair_rounds}),
        targets,
    );
    match tether(src, p).await {
        Ok(s) => run.systems.push(s),
        Err(e) => run.error = Some(format!("{e:#}")),
    }
    run
}

async fn tether(src: &TetherSource, p: &Params) -> Result<SystemRun> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let api = t.api.clone();
    eprintln!("  tether: {} users waiting", p.pair_waiting);
    // waiting pool: age 30, wants age 18..18 — no two of them ever pair
    let fill = fill_waiting_pool(&api, p.pair_waiting, p.create_conns).await?;
    // an API-key observer sees every user's `match.found` (one event per user, each with its audience)
    let seen: Arc<Mutex<HashMap<String, Vec<f64>>>> = Arc::default();
    let s2 = seen.clone();
    let obs = spawn_sse(api.addr, "/v1/events?kind=call", &api.key, move |ev| {
        if ev.event != EventType::MatchFound.as_str() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return };
        if let Some(call) = call_id_of(&v) {
            s2.lock().unwrap().entry(call).or_default().push(ev.received_ms);
        }
    })
    .await?;
    let mut c = api.conn().await?;
    let mut partner_lat = Samples::new();
    let mut both = Samples::new();
    let mut incomplete = 0usize;
    for k in 0..p.pair_rounds {
        let pu = format!("p{k}");
        put_profile(&mut c, &api.key, &pu, 18, &["waiting"]).await?;
        let mut pws = ws_connect(api.addr, &api.user_token(&pu), "").await?;
        let tok = api.user_token(&pu);
        let body = json!({"min_age": 30, "max_age": 30, "user_id": pu});
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t0 = now_ms();
        let v = c.ok(Method::POST, "/v1/matching/start", &tok, Some(&body)).await?;
        let ps = v["session_id"].as_str().unwrap_or_default().to_string();
        let (pev, _) = ws_wait(&mut pws, EventType::MatchFound, Duration::from_secs(10)).await?;
        partner_lat.push(now_ms() - t0);
        let call = call_id_of(&pev).ok_or_else(|| anyhow!("match.found without a call id: {pev}"))?;
        wait_until(now_ms() + 5000.0, || seen.lock().unwrap().get(&call).is_some_and(|r| r.len() >= 2)).await;
        match seen.lock().unwrap().get(&call) {
            Some(r) if r.len() >= 2 => both.push(r.iter().cloned().fold(0.0, f64::max) - t0),
            _ => incomplete += 1,
        }
        // the partner leaves: its call ends (never active) and the waiting user returns to the pool
        let _ = c.json(Method::POST, &format!("/v1/sessions/{ps}/end"), &api.key, Some(&json!({}))).await;
        let _ = pws.close(None).await;
    }
    obs.abort();
    let mut s = SystemRun::new("Tether");
    s.latency("both", "partner enters → both `match.found` (API-key observer)", &mut both);
    s.latency("partner", "→ entering user's `match.found` on its own WebSocket", &mut partner_lat);
    s.note(format!(
        "{} users waiting (age 30, wanting 18–18: never pair with each other; filled in {:.1} s); per round a new user (age 18, wanting 30–30) enters with POST /v1/matching/start (user token) and is paired with one of the waiting; 'both' = until an API-key SSE observer (`?kind=call`) has received the `match.found` of both users; then the entering user ends its matching session (the call ends, the waiting user returns to the pool); {} rounds",
        p.pair_waiting,
        fill.as_secs_f64(),
        p.pair_rounds
    ));
    if incomplete > 0 {
        s.note(format!("{incomplete} rounds: the observer did not get both users' match.found within 5 s"));
    }
    t.stop().await;
    Ok(s)
}

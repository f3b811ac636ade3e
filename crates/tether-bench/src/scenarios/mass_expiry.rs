//! `mass-expiry`: N live sessions sharing one deadline, and the time until
//! every end has been received. Tether gets the shared deadline from the
//! contract's restart rule: the population, created with a long
//! `idle_timeout`, is restarted with a short one, and every idle deadline is
//! granted again from the restart. One SSE subscriber asking for lean events
//! (`?session=id`: the session's id and changed fields, not the whole
//! session) counts the ends; `/v1/admin/health` says when the server itself
//! has none left, and the server's stage histograms (`/metrics`) when the
//! last end was committed and published.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use http::Method;
use serde_json::json;

use super::{all_ended_metrics, at_a_million, ms, scrape_stages, stage_metrics, subscribe_ended, Params, Tether};
use crate::http::{now_ms, parse_ts, wait_until};
use crate::load::Created;
use crate::peers::{lateness, MassExpiry};
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::KindTimes;

pub const NAME: &str = "mass-expiry";

/// Sessions whose deadline is read back after the restart, to find the shared deadline.
const SAMPLED: usize = 50;

pub fn targets(n: usize) -> Vec<Target> {
    at_a_million(n, Target::le("all_ended_ms", 5000.0, "≤ 5 s at 1M"))
}

/// Tether's side, on the population `created` of server `t` (already
/// restarted once, ready after `ready_ms`): adds its row to `run`, or says in
/// `run` why no shared deadline could be arranged.
pub async fn tether(
    t: &mut Tether,
    p: &Params,
    n: usize,
    kt: &KindTimes,
    created: &Created,
    ready_ms: f64,
    run: &mut ScenarioRun,
) -> Result<()> {
    let x = ((2.0 * ready_ms + 3000.0) / 1000.0).ceil().max(3.0) as u64;
    eprintln!("  tether: mass-expiry, restart with idle_timeout {x}s");
    let shortened = KindTimes { bg_idle: Some(format!("{x}s")), ..kt.clone() };
    let restart_at = now_ms();
    let (_, ready) = t.kill9_restart(Some(&shortened)).await?;
    let stages_before = scrape_stages(&t.api).await?;
    let (rec, h) = subscribe_ended(&t.api, "?session=id", Some("bench_bg")).await?;
    let mut c = t.api.conn().await?;
    let mut sample_deadlines = vec![];
    for (_, id, _) in created.kept.iter().take(SAMPLED) {
        let (st, v) = c.json(Method::GET, &format!("/v1/sessions/{id}"), &t.api.key, None).await?;
        if st.is_success() {
            if let Some(e) = v["expires_at"].as_str().and_then(parse_ts) {
                sample_deadlines.push((id.clone(), e));
            }
        }
    }
    let mut s = SystemRun::new("Tether");
    if sample_deadlines.is_empty() {
        h.abort();
        bail!("mass-expiry: no sampled session had an expires_at after the restart");
    }
    let dmin = sample_deadlines.iter().map(|d| d.1).fold(f64::MAX, f64::min);
    let dmax = sample_deadlines.iter().map(|d| d.1).fold(0.0, f64::max);
    if dmin > now_ms() + (x as f64 * 1000.0) + 60_000.0 {
        h.abort();
        s.note(format!(
            "after a restart with idle_timeout {x}s the sessions' deadlines are still {:.0} s away: the server keeps the idle_timeout a session was created with, so a shared deadline cannot be arranged this way",
            (dmin - now_ms()) / 1000.0
        ));
        run.error = Some("no shared deadline could be arranged (see note)".into());
        run.systems.push(s);
        return Ok(());
    }
    let window = ms(p.tether_window) + n as f64 / 10.0; // 30 s + 100 s per million
    let zero_at: Arc<Mutex<(Option<f64>, Option<u64>)>> = Arc::default();
    let poller = {
        let (api, zero_at) = (t.api.clone(), zero_at.clone());
        tokio::spawn(async move {
            let Ok(mut c) = api.conn().await else { return };
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok((st, v)) = c.json(Method::GET, "/v1/admin/health", &api.key, None).await else { continue };
                let t = now_ms();
                if !st.is_success() {
                    continue;
                }
                let live = v["sessions"]["total"].as_u64();
                let mut z = zero_at.lock().unwrap();
                z.1 = live;
                if live == Some(0) && z.0.is_none() {
                    z.0 = Some(t);
                    return;
                }
            }
        })
    };
    wait_until(dmax + window, || rec.lock().unwrap().len() >= n).await;
    h.abort();
    // give the poller one more look if the server got there but it has not seen it yet
    if zero_at.lock().unwrap().0.is_none() {
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    poller.abort();
    let stages_after = scrape_stages(&t.api).await?;
    let (zero, live_left) = *zero_at.lock().unwrap();
    let rec = rec.lock().unwrap().clone();
    let got = rec.len();
    let last = rec.values().map(|r| r.0).fold(0.0, f64::max);
    let received = rec.into_iter().map(|(id, r)| (id, r.0)).collect();
    let mut sampled = lateness(sample_deadlines.iter().map(|(id, d)| (id.clone(), d)), &received, None);
    all_ended_metrics(&mut s, if got >= n { Some(last - dmin) } else { None }, got, n, Some(dmax + window - dmin));
    s.metric(Metric::new(
        "server_zero_live_ms",
        "shared deadline → server reports 0 live sessions (/v1/admin/health, polled every 500 ms)",
        zero.map(|z| z - dmin),
        "ms",
    ));
    if zero.is_none() {
        s.metrics.last_mut().expect("pushed above").display = Some(format!(
            "not within the window ({} still live at the last poll)",
            live_left.map(|l| l.to_string()).unwrap_or("?".into())
        ));
    }
    spread_metric(&mut s, dmax - dmin);
    stage_metrics(&mut s, &stages_before, &stages_after);
    s.latency("sampled", "lateness of the 50 sampled sessions", &mut sampled);
    s.note(format!(
        "N live sessions created with idle_timeout 2h; SIGKILL; restart with idle_timeout {x}s (restart → ready {:.0} ms); the contract re-grants idle deadlines from the restart, so all N share one deadline ≈ restart + {x}s ({:.0} ms after the spawn); one SSE subscriber (lean events)",
        ms(ready),
        dmin - restart_at
    ));
    s.note("the subscriber: one SSE stream `GET /v1/events?session=id` (lean events); the stage rows are the server's own histogram (`tether_expiry_stage_lateness_seconds`): the `max` of `published` is when the last end had been committed and handed to subscribers");
    run.params["tether_idle_after_restart_s"] = json!(x);
    run.systems.push(s);
    Ok(())
}

pub fn peer_row(system: &str, m: MassExpiry) -> SystemRun {
    let mut s = SystemRun::new(system);
    all_ended_metrics(&mut s, m.all_ended_ms, m.received, m.sessions, m.window.map(ms));
    spread_metric(&mut s, m.spread_ms);
    s.note(m.note);
    s
}

fn spread_metric(s: &mut SystemRun, spread_ms: f64) {
    s.metric(Metric::new(
        "deadline_spread_ms",
        "spread of the shared deadline (50 sampled sessions)",
        Some(spread_ms),
        "ms",
    ));
}

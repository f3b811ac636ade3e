//! The population shared by `memory`, `expiry-lateness`, `recovery` and
//! `mass-expiry`: N live sessions per size, created once per system because
//! creating a million sessions is the expensive part.
//!
//! On Tether, memory is read after the population is created, the lateness
//! probes run on top of it, recovery kills that server with `kill -9` and
//! restarts it, and mass expiry restarts it once more with the population's
//! `idle_timeout` shortened, so that the contract's restart rule ("idle
//! deadlines are granted again from the restart") gives every live session
//! one shared deadline. Each peer then takes the same steps in the same order
//! through [`Peer`], with Tether's probe deadline offsets.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use serde_json::json;

use super::{expiry_lateness, mass_expiry, memory, peer_failed, recovery, scenario_run, Params, Tether, TetherSource};
use crate::load::create_many;
use crate::peers::Peer;
use crate::report::{ScenarioRun, SystemRun};
use crate::server::KindTimes;

/// The scenarios measured on the population, in the order they are reported.
pub const SCENARIOS: [&str; 4] = [memory::NAME, expiry_lateness::NAME, recovery::NAME, mass_expiry::NAME];

/// The runs of the wanted population scenarios at population `n`, Tether first, then every peer.
pub async fn run(
    src: &TetherSource,
    p: &Params,
    peers: &mut [Box<dyn Peer>],
    n: usize,
    want: &[&str],
) -> Vec<ScenarioRun> {
    let mut runs: HashMap<&str, ScenarioRun> = HashMap::new();
    for s in SCENARIOS.into_iter().filter(|s| want.contains(s)) {
        let targets = match s {
            memory::NAME => memory::targets(n),
            expiry_lateness::NAME => expiry_lateness::targets(n),
            recovery::NAME => recovery::targets(n),
            _ => mass_expiry::targets(n),
        };
        let params =
            json!({"n": n, "probes": p.probes, "probe_idle_s": p.probe_idle_s, "create_conns": p.create_conns});
        runs.insert(s, scenario_run(s, format!("{s} (N={n})"), params, targets));
    }

    let mut probe_offsets: Vec<f64> = vec![];
    if let Err(e) = tether(src, p, n, want, &mut runs, &mut probe_offsets).await {
        eprintln!("  tether population N={n} failed: {e:#}");
        for r in runs.values_mut() {
            if r.systems.iter().all(|s| s.system != "Tether") {
                r.error = Some(format!("Tether: {e:#}"));
            }
        }
    }
    if probe_offsets.is_empty() {
        // Tether gave no deadlines (failed or --url without probes): spread like a fast creation
        probe_offsets = (0..p.probes).map(|i| i as f64 * 0.2).collect();
    }

    for peer in peers.iter_mut() {
        let peer = peer.as_mut();
        let cap = peer.population_cap(p);
        if let Some(cap) = cap.filter(|&cap| n > cap && p.populations.contains(&cap)) {
            // the capped population is the one already measured at N = cap
            for run in runs.values_mut() {
                let mut row = SystemRun::new(peer.name());
                row.note(format!("capped at {cap} leases: the same work as the N={cap} table, not repeated"));
                run.systems.push(row);
            }
            continue;
        }
        eprintln!("  {} N={}", peer.name(), cap.map_or(n, |cap| n.min(cap)));
        if let Err(e) = on_peer(peer, p, n, want, &probe_offsets, &mut runs).await {
            for run in runs.values_mut() {
                if !run.systems.iter().any(|x| x.system == peer.name()) {
                    run.systems.push(peer_failed(peer.name(), anyhow!("{e:#}")));
                }
            }
        }
    }

    SCENARIOS.iter().filter_map(|s| runs.remove(s)).collect()
}

/// Tether's side: one server, populated, then each wanted step in order.
async fn tether(
    src: &TetherSource,
    p: &Params,
    n: usize,
    want: &[&str],
    runs: &mut HashMap<&str, ScenarioRun>,
    probe_offsets: &mut Vec<f64>,
) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    let kt = KindTimes { probe_idle: format!("{}s", p.probe_idle_s), ..Default::default() };
    let mut t = Tether::fresh(src, &kt).await?;
    eprintln!("  tether: creating {n} live sessions");
    // RSS readings once the server is idle after start-up and after the last creation
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let rss_before = t.rss();
    let sample_every = (n / 200).max(1);
    let created = create_many(&t.api, &["bench_bg_a", "bench_bg_b", "bench_bg_c"], n, p.create_conns, "bg", move |i| {
        i % sample_every == 0
    })
    .await?;
    if created.failures > 0 {
        bail!("{} of {n} creations failed; first: {}", created.failures, created.first_failure.unwrap_or_default());
    }
    eprintln!(
        "  tether: {n} sessions in {:.1} s ({:.0}/s)",
        created.elapsed.as_secs_f64(),
        n as f64 / created.elapsed.as_secs_f64()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let rss_after = t.rss();
    if let Some(run) = runs.get_mut(memory::NAME) {
        run.systems.push(memory::tether_row(n, rss_before.zip(rss_after), &created));
    }

    if has(expiry_lateness::NAME) {
        let (row, offsets) = expiry_lateness::tether(&t, p, n).await?;
        *probe_offsets = offsets;
        let watched = expiry_lateness::tether_watched(&t, p, n).await?;
        if let Some(run) = runs.get_mut(expiry_lateness::NAME) {
            run.systems.push(row);
            run.systems.push(watched);
        }
    }

    let mut ready_ms = 2000.0;
    if has(recovery::NAME) || has(mass_expiry::NAME) {
        if t.server.is_none() {
            for k in [recovery::NAME, mass_expiry::NAME] {
                if let Some(run) = runs.get_mut(k) {
                    run.error = Some("needs the harness to own the server process (--tether-bin, not --url)".into());
                }
            }
            return Ok(());
        }
        let row = recovery::tether(&mut t, p, n).await?;
        ready_ms = row.0;
        if let Some(run) = runs.get_mut(recovery::NAME) {
            run.systems.push(row.1);
        }
    }

    if let Some(run) = runs.get_mut(mass_expiry::NAME) {
        mass_expiry::tether(&mut t, p, n, &kt, &created, ready_ms, run).await?;
    }
    t.stop().await;
    Ok(())
}

/// One peer's side: populated, then the same steps as Tether's, then emptied.
async fn on_peer(
    peer: &mut dyn Peer,
    p: &Params,
    n: usize,
    want: &[&str],
    probe_offsets: &[f64],
    runs: &mut HashMap<&str, ScenarioRun>,
) -> Result<()> {
    let has = |s: &str| want.contains(&s);
    let name = peer.name();
    let memory_use = peer.populate(n, p).await?;
    if let Some(run) = runs.get_mut(memory::NAME) {
        run.systems.push(memory::peer_row(name, memory_use));
    }
    if has(expiry_lateness::NAME) {
        let lateness = peer.expiry_lateness(probe_offsets, p).await?;
        if let Some(run) = runs.get_mut(expiry_lateness::NAME) {
            run.systems.push(expiry_lateness::peer_row(name, lateness));
        }
    }
    if has(recovery::NAME) {
        if let Some(r) = peer.recover_after_kill9(p).await? {
            if let Some(run) = runs.get_mut(recovery::NAME) {
                run.systems.push(recovery::peer_row(name, r));
            }
        }
    }
    if has(mass_expiry::NAME) {
        let m = peer.mass_expiry(n, p).await?;
        if let Some(run) = runs.get_mut(mass_expiry::NAME) {
            run.systems.push(mass_expiry::peer_row(name, m));
        }
    }
    peer.clear().await
}

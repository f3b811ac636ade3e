//! `recovery`: `kill -9` with N live sessions, and the time until the
//! restarted server is ready again (Tether: `/readyz` answers 200 on the same
//! SQLite file; etcd: `/health` on the same data dir).

use anyhow::Result;

use super::{at_a_million, ms, Params, Tether};
use crate::peers::Recovery;
use crate::report::{Metric, SystemRun, Target};

pub const NAME: &str = "recovery";

pub fn targets(n: usize) -> Vec<Target> {
    at_a_million(n, Target::le("ready_ms", 5000.0, "≤ 5 s at 1M"))
}

/// Restarts Tether after `kill -9`; returns the spawn → ready time (ms), which
/// mass-expiry needs, and Tether's row.
pub async fn tether(t: &mut Tether, p: &Params, n: usize) -> Result<(f64, SystemRun)> {
    eprintln!("  tether: kill -9 and restart with {n} live sessions");
    let (listen, ready) = t.kill9_restart(None).await?;
    let ready_ms = ms(ready);
    let mut s = SystemRun::new("Tether");
    s.metric(Metric::new("listen_ms", "spawn → `listening on` line", Some(ms(listen)), "ms"));
    s.metric(Metric::new("ready_ms", "spawn → /readyz 200", Some(ready_ms), "ms"));
    if let Some(r) = t.rss() {
        s.metric(Metric::new("rss_after_recovery", "RSS after recovery", Some(r as f64), "B"));
    }
    s.note(format!(
        "SIGKILL with {n} live sessions (+ {} probes, ended) in SQLite; restart on the same file; /readyz polled every 5 ms",
        p.probes
    ));
    Ok((ready_ms, s))
}

pub fn peer_row(system: &str, r: Recovery) -> SystemRun {
    let mut s = SystemRun::new(system);
    s.metric(Metric::new("ready_ms", "spawn → /readyz 200", Some(ms(r.ready)), "ms"));
    s.note(r.note);
    s
}

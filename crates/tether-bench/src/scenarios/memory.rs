//! `memory`: what N live sessions cost. Tether and the peers started by the
//! harness are read as the resident set size of their process before and
//! after the population is created; PostgreSQL as the size of its table and
//! index on disk.

use super::at_a_million;
use crate::load::Created;
use crate::peers::MemoryUse;
use crate::report::{Metric, SystemRun, Target};

pub const NAME: &str = "memory";

pub fn targets(n: usize) -> Vec<Target> {
    at_a_million(n, Target::le("rss_per_session", 512.0, "≤ 512 B at 1M"))
}

/// Tether's row: RSS around the creation of `n` sessions (when the harness
/// owns the process), and how fast they were created.
pub fn tether_row(n: usize, rss: Option<(u64, u64)>, created: &Created) -> SystemRun {
    let mut s = SystemRun::new("Tether");
    match rss {
        Some(rss) => {
            rss_metrics(&mut s, rss, n);
            s.note("RSS = VmRSS of the server process from /proc/PID/status, 0.5 s after the last creation");
        }
        None => {
            s.note("RSS not readable (server not owned by the harness)");
        }
    }
    let create_rate = n as f64 / created.elapsed.as_secs_f64();
    s.metric(Metric::new("create_rate", "creation rate while populating", Some(create_rate), "/s"));
    s.latency("create", "creation latency", &mut created.latency.clone());
    s
}

pub fn peer_row(system: &str, m: MemoryUse) -> SystemRun {
    let mut s = SystemRun::new(system);
    if let Some(rss) = m.rss {
        rss_metrics(&mut s, rss, m.sessions);
    }
    for metric in m.metrics {
        s.metric(metric);
    }
    s.note(m.note);
    s
}

fn rss_metrics(s: &mut SystemRun, (before, after): (u64, u64), sessions: usize) {
    s.metric(Metric::new("rss_before", "RSS before", Some(before as f64), "B"));
    s.metric(Metric::new("rss_after", "RSS with N live sessions", Some(after as f64), "B"));
    s.metric(Metric::new(
        "rss_per_session",
        "RSS per live session",
        Some((after as f64 - before as f64) / sessions as f64),
        "B",
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_per_session_is_the_growth_over_the_sessions() {
        let row = peer_row(
            "Redis",
            MemoryUse { sessions: 1000, rss: Some((1_000_000, 1_250_000)), metrics: vec![], note: "n".into() },
        );
        let per = row.metrics.iter().find(|m| m.key == "rss_per_session").unwrap();
        assert_eq!(per.value, Some(250.0));
    }
}

//! The peers Tether is compared with, measured by the same harness in the
//! same run: Redis key TTLs with keyspace notifications ([`redis`]), etcd
//! leases watched through the JSON gateway ([`etcd`]), and the seeds'
//! PostgreSQL table with a periodic sweep ([`postgres`]).
//!
//! Every peer is driven through one trait, [`Peer`]: a scenario asks each
//! peer for its counterpart of the work Tether did (same N, same probe
//! deadline offsets, same connection counts and durations) and gets back
//! figures plus a note saying how the peer did it, or `None` where the peer
//! has nothing comparable. The scenario turns the figures into report rows, so
//! Tether and every peer of one table are described by the same code.
//!
//! Each peer is started (Redis, etcd) or reached (PostgreSQL) on loopback by
//! [`start`], reports its version and settings, and cleans up after itself
//! in [`Peer::stop`] or on drop.

pub mod etcd;
pub mod postgres;
pub mod redis;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use async_trait::async_trait;
use serde::Serialize;

use crate::report::Metric;
use crate::scenarios::Params;
use crate::stats::Samples;

/// What the report says about one peer: what it is and how it was set up.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub name: String,
    pub version: String,
    pub settings: Vec<String>,
}

/// Requests per second and their latencies, from closed loops over N connections.
pub struct Throughput {
    pub rate: f64,
    pub latency: Samples,
    /// How the peer did the work (one line of the report).
    pub note: String,
}

/// Latencies of one kind of event (an expiry noticed, a message relayed).
pub struct Latencies {
    pub samples: Samples,
    pub note: String,
}

/// Memory taken by a population of live sessions.
pub struct MemoryUse {
    /// How many sessions the peer was given (etcd caps its leases).
    pub sessions: usize,
    /// Resident set size of the peer's process before and after, where the
    /// harness owns the process.
    pub rss: Option<(u64, u64)>,
    /// Figures only this peer has (Redis's own accounting, a table's size).
    pub metrics: Vec<Metric>,
    pub note: String,
}

/// Sessions sharing one deadline, and how long the peer took to end them all.
pub struct MassExpiry {
    /// Shared deadline → last end noticed, `None` when not all ended in the window.
    pub all_ended_ms: Option<f64>,
    pub received: usize,
    pub sessions: usize,
    /// How far the "shared" deadline is spread (etcd cannot give leases one deadline).
    pub spread_ms: f64,
    /// The waiting window, to say "more than this" when not all ended; `None`
    /// leaves the figure blank.
    pub window: Option<Duration>,
    pub note: String,
}

/// Restart after `kill -9` until the peer answers as healthy.
pub struct Recovery {
    pub ready: Duration,
    pub note: String,
}

/// One system Tether is compared with. The population steps
/// ([`populate`](Peer::populate) → [`expiry_lateness`](Peer::expiry_lateness)
/// → [`recover_after_kill9`](Peer::recover_after_kill9) →
/// [`mass_expiry`](Peer::mass_expiry) → [`clear`](Peer::clear)) run in that
/// order on one population, like Tether's; the others stand alone. A method
/// answering `None` means the peer has no counterpart, and the peer is left
/// out of that table.
#[async_trait]
pub trait Peer: Send + Sync {
    /// The system's name in the report's tables.
    fn name(&self) -> &'static str;
    /// Version and set-up, for the report's header.
    fn info(&self) -> &PeerInfo;
    /// The largest population this peer is given, if it is capped.
    fn population_cap(&self, _p: &Params) -> Option<usize> {
        None
    }
    /// Why the peer is shown without figures in `scenario`, where it has no
    /// counterpart that would be fair to measure.
    fn not_comparable(&self, _scenario: &str) -> Option<&'static str> {
        None
    }

    /// Empties the peer and fills it with `n` live sessions (far deadlines),
    /// measuring the memory they take.
    async fn populate(&mut self, n: usize, p: &Params) -> Result<MemoryUse>;
    /// Probe sessions whose deadlines are `offsets` (ms) apart, like
    /// Tether's probes, on top of the population: deadline → end noticed.
    async fn expiry_lateness(&mut self, offsets: &[f64], p: &Params) -> Result<Latencies>;
    /// `kill -9` with the population in place, and the restart.
    async fn recover_after_kill9(&mut self, _p: &Params) -> Result<Option<Recovery>> {
        Ok(None)
    }
    /// `n` sessions sharing one deadline, on an emptied peer.
    async fn mass_expiry(&mut self, n: usize, p: &Params) -> Result<MassExpiry>;
    /// Empties the peer after the population scenarios.
    async fn clear(&mut self) -> Result<()>;

    /// Renewals of `p.hb_sessions` sessions over `p.http_conns` connections.
    async fn heartbeats(&mut self, p: &Params) -> Result<Option<Throughput>>;
    /// Durable session starts over `p.http_conns` connections.
    async fn starts(&mut self, _p: &Params) -> Result<Option<Throughput>> {
        Ok(None)
    }
    /// A message relayed from one client to another, one at a time.
    async fn relay(&mut self, _p: &Params) -> Result<Option<Latencies>> {
        Ok(None)
    }

    /// Leaves nothing behind on shared servers (the peers' own processes stop on drop).
    async fn stop(&mut self) {}
}

/// Starts or reaches every peer named in `wanted` (`redis`, `etcd`,
/// `postgres`). A peer that is not installed or does not answer is left out
/// with a line on stderr saying why, so a run measures what it can.
pub async fn start(wanted: &[String], pg_url: &str, pg_sweep: Duration) -> Vec<Box<dyn Peer>> {
    let wants = |n: &str| wanted.iter().any(|w| w == n);
    let mut peers: Vec<Box<dyn Peer>> = vec![];
    let mut add = |name: &str, started: Result<Box<dyn Peer>>| match started {
        Ok(p) => peers.push(p),
        Err(e) => eprintln!("{name} peer skipped: {e:#}"),
    };
    if wants("redis") {
        match which("redis-server") {
            None => eprintln!("redis-server not installed: Redis peer skipped (apt-get install redis-server)"),
            Some(_) => add("Redis", redis::RedisPeer::start().await.map(|r| Box::new(r) as Box<dyn Peer>)),
        }
    }
    if wants("etcd") {
        match which("etcd") {
            None => eprintln!("etcd not installed: etcd peer skipped (apt-get install etcd-server)"),
            Some(_) => add("etcd", etcd::EtcdPeer::start().await.map(|e| Box::new(e) as Box<dyn Peer>)),
        }
    }
    if wants("postgres") {
        add("PostgreSQL", postgres::PgPeer::start(pg_url, pg_sweep).await.map(|p| Box::new(p) as Box<dyn Peer>));
    }
    peers
}

/// Finds an executable on PATH.
pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file())
}

/// Lateness of each probe: when its end was noticed (`seen`, by key) minus
/// its deadline; probes never seen count as missing, after waiting `window`
/// (when one was waited).
pub fn lateness<'a>(
    deadlines: impl IntoIterator<Item = (String, &'a f64)>,
    seen: &HashMap<String, f64>,
    window: Option<Duration>,
) -> Samples {
    let mut s = Samples::new();
    for (key, deadline) in deadlines {
        match seen.get(&key) {
            Some(t) => s.push(t - deadline),
            None => s.missing += 1,
        }
    }
    s.window_ms = window.map(|w| w.as_secs_f64() * 1000.0);
    s
}

/// Runs one closed loop per client for `dur`: each sends `op(client, worker,
/// i)` and waits for it before the next, as an app's request handlers would.
/// Returns completed operations per second and their latencies (ms).
pub async fn closed_loops<C, F, Fut>(clients: Vec<C>, dur: Duration, op: F) -> Result<(f64, Samples)>
where
    C: Send + 'static,
    F: Fn(C, usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<C>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (worker, mut client) in clients.into_iter().enumerate() {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::new();
            let mut i = 0;
            while start.elapsed() < dur {
                let t = Instant::now();
                client = op(client, worker, i).await?;
                s.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            Ok::<Samples, anyhow::Error>(s)
        }));
    }
    let mut all = Samples::new();
    for t in tasks {
        all.values.extend(t.await??.values);
    }
    Ok((all.values.len() as f64 / start.elapsed().as_secs_f64(), all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_counts_unseen_probes_as_missing() {
        let deadlines = [100.0, 200.0, 300.0];
        let seen = HashMap::from([("p:0".to_string(), 103.0), ("p:2".to_string(), 310.0)]);
        let mut s = lateness(
            deadlines.iter().enumerate().map(|(i, d)| (format!("p:{i}"), d)),
            &seen,
            Some(Duration::from_secs(2)),
        );
        assert_eq!(s.values, vec![3.0, 10.0]);
        assert_eq!(s.missing, 1);
        assert_eq!(s.summary().window_ms, Some(2000.0));
    }

    #[tokio::test]
    async fn closed_loops_run_each_client_one_operation_at_a_time() {
        let (rate, s) = closed_loops(vec![0usize, 0], Duration::from_millis(30), |n, _w, i| async move {
            assert_eq!(n, i, "each worker sees its own count");
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(n + 1)
        })
        .await
        .unwrap();
        assert!(!s.values.is_empty());
        assert!(rate > 0.0);
    }

    #[tokio::test]
    async fn closed_loops_report_an_operation_error() {
        let r = closed_loops(vec![()], Duration::from_secs(5), |_, _, _| async { anyhow::bail!("refused") }).await;
        assert_eq!(r.unwrap_err().to_string(), "refused");
    }
}

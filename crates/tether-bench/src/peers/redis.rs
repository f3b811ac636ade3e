//! Redis as a session store: one key per session with a TTL, renewed by
//! `PEXPIRE`, and `__keyevent@0__:expired` keyspace notifications as the
//! "session ended" signal.
//!
//! The harness starts its own `redis-server` on a free loopback port with
//! `--save "" --appendonly no --notify-keyspace-events Ex`, so the machine's
//! shared Redis is never touched. Probe keys get exact absolute deadlines with
//! `PEXPIREAT`; background keys get TTLs spread far past the run, which is
//! what makes Redis's sampling expiry cycle slow to find the probes.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use futures_util::StreamExt;
use rand::Rng;

use super::{closed_loops, lateness, Latencies, MassExpiry, MemoryUse, Peer, PeerInfo, Throughput};
use crate::http::{free_port, now_ms, wait_until};
use crate::report::Metric;
use crate::scenarios::{durable_starts, Params};
use crate::server::rss_of;
use crate::stats::Samples;

/// A value of the size an app would store per session (about 120 bytes).
const VALUE: &str =
    r#"{"user_id":"u000000","kind":"interview","status":"active","created_at":"2026-11-22T10:00:00.000Z","meta":{}}"#;

/// A `redis-server` child process owned by the harness.
pub struct RedisPeer {
    child: Child,
    _dir: tempfile::TempDir,
    client: redis::Client,
    pub info: PeerInfo,
}

impl RedisPeer {
    pub async fn start() -> Result<RedisPeer> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--notify-keyspace-events", "Ex", "--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server (apt-get install redis-server)")?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let t0 = Instant::now();
        let mut con = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => break c,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => bail!("redis did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut con).await?;
        let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
        let hz: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("hz").query_async(&mut con).await.unwrap_or_default();
        let effort: Vec<String> =
            redis::cmd("CONFIG").arg("GET").arg("active-expire-effort").query_async(&mut con).await.unwrap_or_default();
        let info = PeerInfo {
            name: "Redis".into(),
            version: format!("redis-server {version}"),
            settings: vec![
                format!("own process on 127.0.0.1:{port}, started by the harness"),
                "--save \"\" --appendonly no (nothing persisted: not durable)".into(),
                "--notify-keyspace-events Ex; ended = `__keyevent@0__:expired` message".into(),
                format!(
                    "hz {}, active-expire-effort {} (defaults)",
                    hz.get(1).cloned().unwrap_or_default(),
                    effort.get(1).cloned().unwrap_or_default()
                ),
                "one key per session (~120-byte JSON value), renewal = PEXPIRE".into(),
            ],
        };
        Ok(RedisPeer { child, _dir: dir, client, info })
    }

    async fn con(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(self.client.get_multiplexed_async_connection().await?)
    }

    async fn flushall(&self) -> Result<()> {
        let mut c = self.con().await?;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await?;
        Ok(())
    }

    /// `used_memory` from INFO memory, in bytes.
    async fn used_memory(&self) -> Result<u64> {
        let mut c = self.con().await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        Ok(info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    }

    /// N background keys `bg:{i}` with TTLs spread between 75 and 240 minutes.
    async fn populate_background(&self, n: usize) -> Result<Duration> {
        let mut c = self.con().await?;
        let t0 = Instant::now();
        let mut i = 0;
        while i < n {
            let mut p = redis::pipe();
            {
                // thread_rng is not Send: it must not live across the await below
                let mut rng = rand::thread_rng();
                for j in i..(i + 10_000).min(n) {
                    let ttl_ms: u64 = rng.gen_range(75 * 60_000..240 * 60_000);
                    p.cmd("SET").arg(format!("bg:{j}")).arg(VALUE).arg("PX").arg(ttl_ms).ignore();
                }
            }
            let _: () = p.query_async(&mut c).await?;
            i += 10_000;
        }
        Ok(t0.elapsed())
    }

    /// Subscribes to expired events and records the receipt time of every key
    /// starting with `prefix`. Returns the shared map (key → receipt ms).
    async fn watch_expired(
        &self,
        prefix: &'static str,
    ) -> Result<(Arc<Mutex<HashMap<String, f64>>>, tokio::task::JoinHandle<()>)> {
        let mut ps = self.client.get_async_pubsub().await?;
        ps.subscribe("__keyevent@0__:expired").await?;
        let seen: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let s2 = seen.clone();
        let h = tokio::spawn(async move {
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                let t = now_ms();
                let key: String = msg.get_payload().unwrap_or_default();
                if key.starts_with(prefix) {
                    s2.lock().unwrap().insert(key, t);
                }
            }
        });
        Ok((seen, h))
    }

    /// Expiry lateness: probe keys `p:{i}` expire at exactly `deadlines[i]`
    /// (PEXPIREAT); lateness = expired-event receipt − deadline. Waits until
    /// `window` after the last deadline.
    async fn expiry_lateness_at(&self, deadlines: &[f64], window: Duration) -> Result<Samples> {
        let (seen, h) = self.watch_expired("p:").await?;
        let mut c = self.con().await?;
        let mut p = redis::pipe();
        for (i, d) in deadlines.iter().enumerate() {
            p.cmd("SET").arg(format!("p:{i}")).arg(VALUE).ignore();
            p.cmd("PEXPIREAT").arg(format!("p:{i}")).arg(*d as u64).ignore();
        }
        let _: () = p.query_async(&mut c).await?;
        let last = deadlines.iter().cloned().fold(0.0, f64::max);
        wait_until(last + window.as_secs_f64() * 1000.0, || seen.lock().unwrap().len() >= deadlines.len()).await;
        h.abort();
        let seen = seen.lock().unwrap();
        Ok(lateness(deadlines.iter().enumerate().map(|(i, d)| (format!("p:{i}"), d)), &seen, Some(window)))
    }

    /// Mass expiry: N keys `m:{i}` sharing one deadline. Returns (deadline →
    /// last expired event in ms or None if not all arrived, how many arrived).
    async fn mass_expiry_within(&self, n: usize, window: Duration) -> Result<(Option<f64>, usize)> {
        let (seen, h) = self.watch_expired("m:").await?;
        let mut c = self.con().await?;
        // first the keys without TTL, timed, so the shared deadline can be set after
        let t0 = Instant::now();
        let mut i = 0;
        while i < n {
            let mut p = redis::pipe();
            for j in i..(i + 10_000).min(n) {
                p.cmd("SET").arg(format!("m:{j}")).arg(VALUE).ignore();
            }
            let _: () = p.query_async(&mut c).await?;
            i += 10_000;
        }
        let set_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let deadline = (now_ms() + 1000.0 + 2.0 * set_ms).round();
        let mut i = 0;
        while i < n {
            let mut p = redis::pipe();
            for j in i..(i + 10_000).min(n) {
                p.cmd("PEXPIREAT").arg(format!("m:{j}")).arg(deadline as u64).ignore();
            }
            let _: () = p.query_async(&mut c).await?;
            i += 10_000;
        }
        if now_ms() > deadline {
            bail!("redis mass-expiry setup overran the shared deadline");
        }
        wait_until(deadline + window.as_secs_f64() * 1000.0, || seen.lock().unwrap().len() >= n).await;
        h.abort();
        let seen = seen.lock().unwrap();
        let got = seen.len();
        let last = seen.values().cloned().fold(0.0, f64::max);
        Ok((if got >= n { Some(last - deadline) } else { None }, got))
    }

    /// Renewals: `conns` connections each sending PEXPIRE one at a time over
    /// `keys` keys for `dur`. Returns (renewals/s, latency samples).
    async fn renewals(&self, keys: usize, conns: usize, dur: Duration) -> Result<(f64, Samples)> {
        {
            let mut c = self.con().await?;
            let mut p = redis::pipe();
            for j in 0..keys {
                p.cmd("SET").arg(format!("hb:{j}")).arg(VALUE).arg("PX").arg(60_000).ignore();
            }
            let _: () = p.query_async(&mut c).await?;
        }
        // a separate TCP connection per worker, like HTTP keep-alive workers
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(self.con().await?);
        }
        closed_loops(clients, dur, move |mut c, w, i| async move {
            let key = format!("hb:{}", (w + i * conns) % keys);
            let _: i64 = redis::cmd("PEXPIRE").arg(key).arg(60_000).query_async(&mut c).await?;
            Ok(c)
        })
        .await
    }

    /// Relay: PUBLISH on one connection → message on a subscriber, one at a time.
    async fn relay_messages(&self, count: usize) -> Result<Samples> {
        let mut ps = self.client.get_async_pubsub().await?;
        ps.subscribe("call:bench").await?;
        let mut stream = ps.into_on_message();
        let mut c = self.con().await?;
        let mut s = Samples::new();
        for i in 0..count {
            let payload = format!(r#"{{"type":"offer","data":{{"seq":{i}}}}}"#);
            let t = Instant::now();
            let _: i64 = redis::cmd("PUBLISH").arg("call:bench").arg(&payload).query_async(&mut c).await?;
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(_)) => s.push(t.elapsed().as_secs_f64() * 1000.0),
                _ => s.missing += 1,
            }
        }
        Ok(s)
    }
}

#[async_trait]
impl Peer for RedisPeer {
    fn name(&self) -> &'static str {
        "Redis"
    }

    fn info(&self) -> &PeerInfo {
        &self.info
    }

    fn not_comparable(&self, scenario: &str) -> Option<&'static str> {
        (scenario == durable_starts::NAME)
            .then_some("not comparable: this Redis keeps nothing on disk (--appendonly no), so no start is durable")
    }

    async fn populate(&mut self, n: usize, _p: &Params) -> Result<MemoryUse> {
        self.flushall().await?;
        // let the freed memory settle before the "before" reading
        tokio::time::sleep(Duration::from_millis(200)).await;
        let used0 = self.used_memory().await?;
        let rss0 = rss_of(self.child.id()).unwrap_or(0);
        let took = self.populate_background(n).await?;
        let used1 = self.used_memory().await?;
        let rss1 = rss_of(self.child.id()).unwrap_or(0);
        Ok(MemoryUse {
            sessions: n,
            rss: Some((rss0, rss1)),
            metrics: vec![Metric::new(
                "used_memory_per_session",
                "INFO used_memory per key",
                Some((used1 as f64 - used0 as f64) / n as f64),
                "B",
            )],
            note: format!(
                "N keys with ~120-byte values and TTLs, written by pipelined SET PX in {:.1} s (not durable)",
                took.as_secs_f64()
            ),
        })
    }

    async fn expiry_lateness(&mut self, offsets: &[f64], p: &Params) -> Result<Latencies> {
        let base = now_ms() + 1500.0;
        let deadlines: Vec<f64> = offsets.iter().map(|o| (base + o).round()).collect();
        let samples = self.expiry_lateness_at(&deadlines, p.peer_window).await?;
        let note = format!(
            "{} probe keys with the same deadline offsets as Tether's probes (PEXPIREAT), on top of N keys with far TTLs; receipt = `expired` message on a subscriber; waited {} s after the last deadline",
            deadlines.len(),
            p.peer_window.as_secs()
        );
        Ok(Latencies { samples, note })
    }

    async fn mass_expiry(&mut self, n: usize, p: &Params) -> Result<MassExpiry> {
        self.flushall().await?;
        let window = p.peer_window + Duration::from_secs_f64(n as f64 / 10_000.0);
        let (all_ended_ms, received) = self.mass_expiry_within(n, window).await?;
        Ok(MassExpiry {
            all_ended_ms,
            received,
            sessions: n,
            spread_ms: 0.0,
            window: Some(window),
            note: "N keys given one PEXPIREAT deadline; all `expired` messages counted on one subscriber".into(),
        })
    }

    async fn clear(&mut self) -> Result<()> {
        self.flushall().await
    }

    async fn heartbeats(&mut self, p: &Params) -> Result<Option<Throughput>> {
        let (rate, latency) = self.renewals(p.hb_sessions, p.http_conns, p.hb_duration).await?;
        let note = "PEXPIRE key 60000, one command at a time per connection (not durable)".into();
        Ok(Some(Throughput { rate, latency, note }))
    }

    async fn relay(&mut self, p: &Params) -> Result<Option<Latencies>> {
        let samples = self.relay_messages(p.relay_messages).await?;
        Ok(Some(Latencies { samples, note: "PUBLISH → a SUBSCRIBEd connection, one message at a time".into() }))
    }
}

impl Drop for RedisPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

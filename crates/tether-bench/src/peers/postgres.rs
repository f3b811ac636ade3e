//! PostgreSQL as the seeds use it: a `sessions` table with a `last_active`
//! column updated on every heartbeat, and a periodic sweep
//! `UPDATE … SET status='ended' WHERE status='active' AND last_active < cutoff`.
//!
//! The harness uses the machine's PostgreSQL (default
//! `postgres://postgres@127.0.0.1:5432/test`, settings as found), creates its
//! own table named `tether_bench_<pid>` with an index on
//! `(status, last_active)`, and drops it at the end. A row's deadline is
//! `last_active + idle`; it "ends" when a sweep's `RETURNING` hands it back to
//! the sweeper, which is where a seed app would publish the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_trait::async_trait;
use tokio_postgres::{Client, NoTls};

use super::{closed_loops, Latencies, MassExpiry, MemoryUse, Peer, PeerInfo, Throughput};
use crate::http::now_ms;
use crate::report::Metric;
use crate::scenarios::Params;
use crate::stats::Samples;

/// A connection factory plus the harness's table.
pub struct PgPeer {
    url: String,
    table: String,
    admin: Client,
    info: PeerInfo,
    /// Sweep period used by the lateness scenarios.
    pub sweep: Duration,
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connect {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl PgPeer {
    pub async fn start(url: &str, sweep: Duration) -> Result<PgPeer> {
        let admin = connect(url).await?;
        let table = format!("tether_bench_{}", std::process::id());
        let show = |k: &'static str| {
            let admin = &admin;
            async move {
                admin
                    .query_one(&format!("SHOW {k}"), &[])
                    .await
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_else(|_| "?".into())
            }
        };
        let version = show("server_version").await;
        let settings = vec![
            "the machine's PostgreSQL server on 127.0.0.1:5432 (database `test`), settings as found".into(),
            format!(
                "synchronous_commit={} fsync={} shared_buffers={} wal_level={}",
                show("synchronous_commit").await,
                show("fsync").await,
                show("shared_buffers").await,
                show("wal_level").await
            ),
            format!("table {table}(id bigserial pk, user_id, kind, status, created_at, last_active, ended_at) + index (status, last_active)"),
            "heartbeat = `UPDATE … SET last_active=now() WHERE id=$1` (one autocommit statement)".into(),
            format!(
                "sweep every {:?} = `UPDATE … SET status='ended' WHERE status='active' AND last_active < now() - idle RETURNING …`",
                sweep
            ),
        ];
        admin
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (
                   id bigserial PRIMARY KEY, user_id text NOT NULL, kind text NOT NULL,
                   status text NOT NULL DEFAULT 'active', created_at timestamptz NOT NULL DEFAULT now(),
                   last_active timestamptz NOT NULL DEFAULT now(), ended_at timestamptz);
                 CREATE INDEX ON {table} (status, last_active);"
            ))
            .await?;
        Ok(PgPeer {
            url: url.into(),
            table,
            admin,
            info: PeerInfo { name: "PostgreSQL".into(), version: format!("PostgreSQL {version}"), settings },
            sweep,
        })
    }

    async fn truncate(&self) -> Result<()> {
        self.admin.batch_execute(&format!("TRUNCATE {}", self.table)).await?;
        Ok(())
    }

    /// Bytes of table + indexes.
    async fn size_bytes(&self) -> Result<i64> {
        let r = self.admin.query_one(&format!("SELECT pg_total_relation_size('{}')", self.table), &[]).await?;
        Ok(r.get(0))
    }

    /// N background rows whose deadlines lie 75–240 minutes ahead (as if just
    /// heartbeated); one `INSERT … SELECT generate_series` statement.
    async fn populate_background(&self, n: usize) -> Result<Duration> {
        let t0 = Instant::now();
        self.admin
            .execute(
                &format!(
                    "INSERT INTO {} (user_id, kind, last_active)
                     SELECT 'u' || g, 'bg', now() + (75 + (g * 7919) % 165) * interval '1 minute'
                     FROM generate_series(1, $1::bigint) g",
                    self.table
                ),
                &[&(n as i64)],
            )
            .await?;
        self.admin.batch_execute(&format!("ANALYZE {}", self.table)).await?;
        Ok(t0.elapsed())
    }

    /// Inserts rows of `kind` whose deadlines (last_active + idle) are `deadlines`.
    async fn insert_with_deadlines(&self, kind: &str, deadlines: &[f64], idle_ms: f64) -> Result<()> {
        let last_active: Vec<f64> = deadlines.iter().map(|d| (d - idle_ms) / 1000.0).collect();
        self.admin
            .execute(
                &format!(
                    "INSERT INTO {} (user_id, kind, last_active)
                     SELECT 'p' || o, $1, to_timestamp(t) FROM unnest($2::float8[]) WITH ORDINALITY AS x(t, o)",
                    self.table
                ),
                &[&kind, &last_active],
            )
            .await?;
        Ok(())
    }

    /// Runs the sweep every `self.sweep` until `stop_ms`, or until `expect`
    /// rows of `kind` came back; returns (deadline ms, receipt ms) per ended row.
    async fn sweep_until(&self, kind: &str, idle_ms: f64, expect: usize, stop_ms: f64) -> Result<Vec<(f64, f64)>> {
        let c = connect(&self.url).await?;
        let sql = format!(
            "UPDATE {t} SET status='ended', ended_at=now()
             WHERE status='active' AND last_active < now() - $1 * interval '1 millisecond'
             RETURNING kind, extract(epoch from last_active)::float8 * 1000",
            t = self.table
        );
        let stmt = c.prepare(&sql).await?;
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(self.sweep);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // a cron job's first run is not aligned with any deadline
        loop {
            tick.tick().await;
            let rows = c.query(&stmt, &[&idle_ms]).await?;
            let t = now_ms();
            for r in rows {
                let k: String = r.get(0);
                if k == kind {
                    let la: f64 = r.get(1);
                    out.push((la + idle_ms, t));
                }
            }
            if out.len() >= expect || now_ms() > stop_ms {
                return Ok(out);
            }
        }
    }

    /// Expiry lateness of probe rows with exactly `deadlines`, idle `idle_ms`.
    async fn expiry_lateness_at(&self, deadlines: &[f64], idle_ms: f64, window: Duration) -> Result<Samples> {
        self.insert_with_deadlines("probe", deadlines, idle_ms).await?;
        let last = deadlines.iter().cloned().fold(0.0, f64::max);
        let stop = last + window.as_secs_f64() * 1000.0;
        let ended = self.sweep_until("probe", idle_ms, deadlines.len(), stop).await?;
        let mut s = Samples::new();
        for (d, t) in &ended {
            s.push(t - d);
        }
        s.missing = deadlines.len().saturating_sub(ended.len());
        s.window_ms = Some(window.as_secs_f64() * 1000.0);
        Ok(s)
    }

    /// Mass expiry: N rows sharing one deadline; (deadline → the sweep that
    /// returned the last of them, rows ended).
    async fn mass_expiry_within(&self, n: usize, idle_ms: f64, window: Duration) -> Result<(Option<f64>, usize)> {
        let deadline = (now_ms() + 2000.0).round();
        self.admin
            .execute(
                &format!(
                    "INSERT INTO {} (user_id, kind, last_active)
                     SELECT 'm' || g, 'mass', to_timestamp($2::float8) FROM generate_series(1, $1::bigint) g",
                    self.table
                ),
                &[&(n as i64), &((deadline - idle_ms) / 1000.0)],
            )
            .await?;
        let ended = self.sweep_until("mass", idle_ms, n, deadline + window.as_secs_f64() * 1000.0).await?;
        let last = ended.iter().map(|(_, t)| *t).fold(0.0, f64::max);
        Ok((if ended.len() >= n { Some(last - deadline) } else { None }, ended.len()))
    }

    /// Heartbeats: `conns` connections each running the seeds' UPDATE one at a
    /// time over `rows` rows, for `dur`.
    async fn heartbeat_loops(&self, rows: usize, conns: usize, dur: Duration) -> Result<(f64, Samples)> {
        self.admin
            .execute(
                &format!(
                    "INSERT INTO {} (user_id, kind) SELECT 'h' || g, 'hb' FROM generate_series(1, $1::bigint) g",
                    self.table
                ),
                &[&(rows as i64)],
            )
            .await?;
        let r =
            self.admin.query_one(&format!("SELECT min(id), max(id) FROM {} WHERE kind='hb'", self.table), &[]).await?;
        let (lo, hi): (i64, i64) = (r.get(0), r.get(1));
        let sql = Arc::new(format!("UPDATE {} SET last_active = now() WHERE id = $1", self.table));
        closed_loops(self.connections(conns).await?, dur, move |c, w, i| {
            let sql = sql.clone();
            async move {
                let id = lo + ((w as i64 + i as i64 * conns as i64) % (hi - lo + 1));
                c.execute(sql.as_str(), &[&id]).await?;
                Ok(c)
            }
        })
        .await
    }

    /// Durable starts: `INSERT … RETURNING id`, autocommit, synchronous_commit as found.
    async fn start_loops(&self, conns: usize, dur: Duration) -> Result<(f64, Samples)> {
        let sql = Arc::new(format!("INSERT INTO {} (user_id, kind) VALUES ($1, 'start') RETURNING id", self.table));
        closed_loops(self.connections(conns).await?, dur, move |c, w, i| {
            let sql = sql.clone();
            async move {
                c.query_one(sql.as_str(), &[&format!("s{w}-{i}")]).await?;
                Ok(c)
            }
        })
        .await
    }

    async fn connections(&self, n: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(connect(&self.url).await?);
        }
        Ok(clients)
    }
}

#[async_trait]
impl Peer for PgPeer {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn info(&self) -> &PeerInfo {
        &self.info
    }

    async fn populate(&mut self, n: usize, _p: &Params) -> Result<MemoryUse> {
        self.truncate().await?;
        let size0 = self.size_bytes().await?;
        let took = self.populate_background(n).await?;
        let size1 = self.size_bytes().await?;
        Ok(MemoryUse {
            sessions: n,
            rss: None,
            metrics: vec![Metric::new(
                "table_per_session",
                "table + index bytes per session (disk, not RSS)",
                Some((size1 - size0) as f64 / n as f64),
                "B",
            )],
            note: format!("N rows by one INSERT … SELECT generate_series in {:.1} s", took.as_secs_f64()),
        })
    }

    async fn expiry_lateness(&mut self, offsets: &[f64], p: &Params) -> Result<Latencies> {
        let idle_ms = p.probe_idle_s as f64 * 1000.0;
        let base = now_ms() + 1500.0;
        let deadlines: Vec<f64> = offsets.iter().map(|o| base + o).collect();
        let window = p.pg_sweep + Duration::from_secs(5);
        let samples = self.expiry_lateness_at(&deadlines, idle_ms, window).await?;
        let note = format!(
            "{} probe rows with Tether's deadline offsets, on top of N rows; sweep every {} s; receipt = the sweep's RETURNING row reaching the sweeper",
            deadlines.len(),
            p.pg_sweep.as_secs_f64()
        );
        Ok(Latencies { samples, note })
    }

    async fn mass_expiry(&mut self, n: usize, p: &Params) -> Result<MassExpiry> {
        self.truncate().await?;
        let window = p.pg_sweep * 2 + Duration::from_secs(10);
        let (all_ended_ms, received) = self.mass_expiry_within(n, p.probe_idle_s as f64 * 1000.0, window).await?;
        Ok(MassExpiry {
            all_ended_ms,
            received,
            sessions: n,
            spread_ms: 0.0,
            window: None,
            note: format!("N rows with one shared deadline; sweep every {} s", p.pg_sweep.as_secs_f64()),
        })
    }

    async fn clear(&mut self) -> Result<()> {
        self.truncate().await
    }

    async fn heartbeats(&mut self, p: &Params) -> Result<Option<Throughput>> {
        self.truncate().await?;
        let (rate, latency) = self.heartbeat_loops(p.hb_sessions, p.http_conns, p.hb_duration).await?;
        self.truncate().await?;
        let note = "UPDATE … SET last_active=now() WHERE id=$1, autocommit, one at a time per connection".into();
        Ok(Some(Throughput { rate, latency, note }))
    }

    async fn starts(&mut self, p: &Params) -> Result<Option<Throughput>> {
        self.truncate().await?;
        let (rate, latency) = self.start_loops(p.http_conns, p.starts_duration).await?;
        self.truncate().await?;
        let note = "INSERT … RETURNING id, autocommit, one at a time per connection".into();
        Ok(Some(Throughput { rate, latency, note }))
    }

    async fn stop(&mut self) {
        let _ = self.admin.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table)).await;
    }
}

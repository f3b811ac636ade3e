//! `wal`: the SQLite store stays bounded on disk under sustained writes.
//! A steady population of one live session per user (kind `bench_wal`,
//! `per_user = "replace"`), then, for the run's duration, batches of starts
//! for those same users as fast as the server takes them: every start ends
//! the user's previous session (`superseded`) in the same commit, so each
//! item is one start and one end (two session rows, two events) while the
//! live population stays the same. The `-wal` file is sampled every second.
//!
//! The bound: the store checkpoints every 500 ms and cuts the WAL back with a
//! `TRUNCATE` checkpoint once it passes `WAL_LIMIT` (crates/tether/src/store/
//! sqlite.rs), so it can pass the limit by at most the writes of one
//! checkpoint interval plus those of the commit in flight, which a
//! `TRUNCATE` checkpoint has to wait for. Those writes are taken from the
//! fastest growth of the WAL seen between two samples, over 0.5 s plus the
//! longest batch the client saw (a batch's answer comes after its commit,
//! so it bounds the commit).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::{ms, scenario_run, Params, Tether, TetherSource};
use crate::load::{batch_body, create_batched, send_batch};
use crate::report::{Metric, ScenarioRun, SystemRun, Target};
use crate::server::{KindTimes, StoreFiles};
use crate::stats::Samples;

pub const NAME: &str = "wal";

/// The server's `store::sqlite::WAL_LIMIT` (the bench does not link the server).
const WAL_LIMIT: f64 = 256.0 * 1024.0 * 1024.0;
/// The server's checkpoint interval (`CHECKPOINT_EVERY` beside `WAL_LIMIT`).
const CHECKPOINT_EVERY_S: f64 = 0.5;
/// Starts per request.
const BATCH: usize = 500;
/// Connections sending batches.
const CONNS: usize = 8;

pub async fn run(src: &TetherSource, p: &Params) -> ScenarioRun {
    let mut run = scenario_run(
        NAME,
        format!("{NAME} ({} s, {} live)", p.wal_duration.as_secs(), p.wal_users),
        json!({"duration_s": p.wal_duration.as_secs_f64(), "users": p.wal_users, "batch": BATCH, "conns": CONNS, "store": "sqlite"}),
        vec![],
    );
    match tether(src, p).await {
        Ok((s, bound)) => {
            run.targets.push(Target::le(
                "wal_max",
                bound,
                "≤ WAL_LIMIT (256 MiB) + the writes of one 500 ms checkpoint interval and of the commit in flight",
            ));
            run.systems.push(s);
        }
        Err(e) => run.error = Some(format!("Tether: {e:#}")),
    }
    run
}

/// Tether's row and the WAL bound it is checked against (bytes).
async fn tether(src: &TetherSource, p: &Params) -> Result<(SystemRun, f64)> {
    let t = Tether::fresh(src, &KindTimes::default()).await?;
    let Some(files) = t.files.as_ref() else {
        bail!("needs the harness to own the server's files (--tether-bin, not --url)");
    };
    let users = p.wal_users;
    eprintln!("  tether: {users} live sessions, then {} s of starts that end them", p.wal_duration.as_secs());
    let created = create_batched(&t.api, &["bench_wal"], users, 1000, CONNS, "w").await?;
    if created.failures > 0 {
        bail!("creating the population failed: {}", created.first_failure.unwrap_or_default());
    }

    // the sampler: the store's files once a second, until told to stop
    let samples: Arc<Mutex<Vec<StoreFiles>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        let files = crate::server::ServerFiles { bin: files.bin.clone(), dir: files.dir.clone() };
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                samples.lock().unwrap().push(files.disk_bytes());
            }
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let t_end = Instant::now() + p.wal_duration;
    let started_at = Instant::now();
    let mut tasks = vec![];
    for _ in 0..CONNS {
        let mut c = t.api.conn().await?;
        let key = t.api.key.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let kinds = vec!["bench_wal".to_string()];
            let (mut lat, mut started, mut ended, mut refused, mut first) = (Samples::new(), 0, 0, 0, None);
            while Instant::now() < t_end {
                let from = next.fetch_add(BATCH, Ordering::Relaxed);
                let body = batch_body(&kinds, from, from + BATCH, "w", |i| i % users);
                let t0 = Instant::now();
                let b = send_batch(&mut c, &key, body, BATCH).await?;
                lat.push(ms(t0.elapsed()));
                started += b.started;
                ended += b.superseded;
                refused += b.refused;
                first = first.or(b.first_refusal);
            }
            Ok::<_, anyhow::Error>((lat, started, ended, refused, first))
        }));
    }
    let (mut lat, mut started, mut ended, mut refused, mut first) = (Samples::new(), 0, 0, 0, None);
    for task in tasks {
        let (l, s, e, r, f) = task.await??;
        lat.extend(&l);
        started += s;
        ended += e;
        refused += r;
        first = first.or(f);
    }
    let secs = started_at.elapsed().as_secs_f64();
    let at_end = files.disk_bytes();
    // idle: the ordinary checkpoints run, the WAL is trimmed to `journal_size_limit`
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = files.disk_bytes();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    if refused > 0 {
        bail!("{refused} starts refused; first: {}", first.unwrap_or_default());
    }

    let samples = samples.lock().unwrap().clone();
    let wal_max = samples.iter().map(|s| s.wal).max().unwrap_or(0).max(at_end.wal);
    let growth = samples.windows(2).map(|w| w[1].wal.saturating_sub(w[0].wal)).max().unwrap_or(0);
    let cut_back = samples.windows(2).filter(|w| w[1].wal < w[0].wal).count();
    let longest_commit_s = lat.summary().max.unwrap_or(0.0) / 1000.0;
    let bound = WAL_LIMIT + growth as f64 * (CHECKPOINT_EVERY_S + longest_commit_s);

    let mut s = SystemRun::new("Tether");
    s.metric(Metric::new(
        "start_rate",
        "starts per second (each ends the user's previous session)",
        Some(started as f64 / secs),
        "/s",
    ));
    s.metric(Metric::new("end_rate", "ends per second (superseded)", Some(ended as f64 / secs), "/s"));
    s.latency("batch", &format!("batch of {BATCH} latency"), &mut lat);
    s.metric(Metric::new("wal_max", "largest -wal file seen (sampled every second)", Some(wal_max as f64), "B"));
    s.metric(Metric::new("wal_end", "-wal file when the writes stop", Some(at_end.wal as f64), "B"));
    s.metric(Metric::new("wal_idle", "-wal file 2 s later (idle)", Some(idle.wal as f64), "B"));
    s.metric(Metric::new("wal_growth", "fastest WAL growth between two samples", Some(growth as f64), "B/s"));
    s.metric(Metric::new(
        "wal_bound",
        "bound: WAL_LIMIT + that growth over 0.5 s plus the longest batch (the commit a TRUNCATE checkpoint waits for)",
        Some(bound),
        "B",
    ));
    s.metric(Metric::new("wal_cut_back", "times the WAL file shrank between samples", Some(cut_back as f64), ""));
    s.metric(Metric::new("disk_db", "database file at the end", Some(at_end.db as f64), "B"));
    s.metric(Metric::new(
        "disk_per_session",
        "disk bytes per live session at the end (db + wal + shm; the event log keeps every ended session's events)",
        Some(at_end.total() as f64 / users as f64),
        "B",
    ));
    s.note(format!(
        "{users} live sessions (one per user, kind bench_wal, per_user = \"replace\"); {CONNS} connections each sending POST /v1/sessions/batch with {BATCH} of those users for {:.0} s: {started} starts, {ended} ends; fresh SQLite store",
        secs
    ));
    t.stop().await;
    Ok((s, bound))
}

//! Measures the engine alone, without any IO: resident memory per live
//! session and the cost of creating, touching, heartbeating and expiring them.
//!
//! `cargo run --release -p tether-engine --example engine_mem [N] [ROUNDS]`
//! (defaults: 1,000,000 sessions, 3 rounds).
//!
//! Each round runs in a fresh child process, so its RSS figure is not
//! flattered by memory an earlier round freed; the report is the median of
//! the rounds, with their range. One round:
//!
//! 1. create N sessions of an idle-60s kind, one owner each, created over one
//!    second (so their deadlines differ); RSS per session = RSS growth / N,
//!    measured after creation (everything the engine keeps, including
//!    allocator overhead and the outcomes' churn); then the time of the reads
//!    metrics and health make under the server's lock, `live_counts()` summed
//!    plus `overdue_count(now)` (mean of 1,000): it should be the same at
//!    N = 10 and N = 1,000,000;
//! 2. touch every session once, in a shuffled order, arriving over one
//!    second (the i-th at `i/N` s, as a server would receive them); ids are
//!    built before the clock starts;
//! 3. heartbeat every session once more (the call that also returns a
//!    snapshot), shuffled likewise but all at one instant — the worst case
//!    for the deadline queue (every entry moves to a random place among a
//!    million equal times) — after which all share one deadline;
//! 4. `expire_due` at that deadline: every session ends in one call
//!    (the mass-expiry case); then the time to drop its outcome.

use std::process::Command;
use std::time::Instant;
use tether_engine::{Dur, Engine, KindPolicy, Kinds, NewSession};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn id(i: usize) -> String {
    format!("0192f3c4-5b6a-7c8d-9e0f-{i:012}")
}

fn user(i: usize) -> String {
    format!("user-{i}")
}

/// A fixed pseudo-random permutation of 0..n (xorshift + Fisher–Yates).
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

const FIELDS: [&str; 7] = [
    "rss_bytes_per_session",
    "create_ns",
    "counts_read_ns",
    "touch_ns",
    "heartbeat_ns",
    "expire_ns_per_session",
    "drop_outcome_ns_per_session",
];

/// One round; prints one line of `FIELDS` values.
fn round(n: usize) {
    let mut kinds = Kinds::builtin();
    let mut k = KindPolicy::new("bench");
    k.idle_timeout = Some(Dur::from_secs(60));
    kinds.insert(k);
    let before = rss_kib();
    let mut engine = Engine::new(kinds);
    let now = 1_800_000_000_000i64;

    let t = Instant::now();
    for i in 0..n {
        let req = NewSession {
            id: id(i),
            kind: "bench".into(),
            owner: user(i),
            metadata: serde_json::Value::Null,
            ..NewSession::default()
        };
        let _ = engine.create(now + (i as i64 % 1000), req).expect("create");
    }
    let create_ns = t.elapsed().as_nanos() as f64 / n as f64;
    let rss = (rss_kib() - before) as f64 * 1024.0 / n as f64;

    const READS: u32 = 1_000;
    let t = Instant::now();
    for _ in 0..READS {
        let live: usize = engine.live_counts().map(|(_, _, count)| count).sum();
        let overdue = engine.overdue_count(std::hint::black_box(now + 1000));
        assert_eq!((live, overdue), (n, 0));
    }
    let counts_ns = t.elapsed().as_nanos() as f64 / f64::from(READS);

    let order = shuffled(n);
    let calls: Vec<(String, String)> = order.iter().map(|&i| (id(i), user(i))).collect();
    let t = Instant::now();
    for (k, (id, user)) in calls.iter().enumerate() {
        engine.touch(now + 1000 + (k * 1000 / n) as i64, id, user).expect("live");
    }
    let touch_ns = t.elapsed().as_nanos() as f64 / n as f64;

    let t = Instant::now();
    for (id, user) in &calls {
        let _ = engine.heartbeat(now + 2000, id, user).expect("live");
    }
    let heartbeat_ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop(calls);

    let deadline = now + 2000 + 60_000;
    assert_eq!(engine.next_deadline(), Some(deadline), "one shared deadline");
    let t = Instant::now();
    let out = engine.expire_due(deadline);
    let expire_ns = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(out.events.len(), n);
    assert_eq!(engine.live_count(), 0);
    let t = Instant::now();
    drop(out);
    let drop_ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{rss:.1} {create_ns:.1} {counts_ns:.1} {touch_ns:.1} {heartbeat_ns:.1} {expire_ns:.1} {drop_ns:.1}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--round") {
        round(args[2].parse().expect("N"));
        return;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let exe = std::env::current_exe().expect("own path");
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); FIELDS.len()];
    for r in 1..=rounds {
        let output = Command::new(&exe).args(["--round", &n.to_string()]).output().expect("run a round");
        assert!(output.status.success(), "round failed: {}", String::from_utf8_lossy(&output.stderr));
        let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
        eprintln!("round {r}: {line}");
        for (i, v) in line.split_whitespace().enumerate() {
            results[i].push(v.parse().expect("number"));
        }
    }
    println!("{n} sessions, median of {rounds} rounds (min–max):");
    for (name, values) in FIELDS.iter().zip(results) {
        let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        println!("  {name:<30} {:>9.0}   ({lo:.0}–{hi:.0})", median(values));
    }
}

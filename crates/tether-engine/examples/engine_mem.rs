//! Measures the engine's resident memory per live session and the cost of
//! creating, heartbeating and expiring them, without any IO:
//! `cargo run --release -p tether-engine --example engine_mem [N]`.

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

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut kinds = Kinds::builtin();
    let mut k = KindPolicy::new("bench");
    k.idle_timeout = Some(Dur::from_secs(60));
    kinds.insert(k);
    let mut engine = Engine::new(kinds);
    let before = rss_kib();
    let t = Instant::now();
    let now = 1_800_000_000_000i64;
    for i in 0..n {
        let req = NewSession {
            id: format!("0192f3c4-5b6a-7c8d-9e0f-{i:012}"),
            kind: "bench".into(),
            owner: format!("user-{i}"),
            metadata: serde_json::Value::Null,
            ..NewSession::default()
        };
        let _ = engine.create(now + (i as i64 % 1000), req).expect("create");
    }
    let created = t.elapsed();
    let after = rss_kib();
    println!("{n} sessions: {:.0} bytes/session RSS, create {:.0} ns/op", (after - before) as f64 * 1024.0 / n as f64, created.as_nanos() as f64 / n as f64);
    let t = Instant::now();
    for i in 0..n {
        let _ = engine.heartbeat(now + 1000, &format!("0192f3c4-5b6a-7c8d-9e0f-{i:012}"), &format!("user-{i}"));
    }
    println!("heartbeat {:.0} ns/op", t.elapsed().as_nanos() as f64 / n as f64);
    let t = Instant::now();
    let out = engine.expire_due(now + 10_000_000);
    println!("expire all {} in {:?} ({:.0} ns/session)", out.events.len(), t.elapsed(), t.elapsed().as_nanos() as f64 / n as f64);
}

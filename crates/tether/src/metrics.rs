//! Prometheus metrics, written by hand in the text format: counters and
//! histograms are atomics updated on the hot path; gauges of live sessions
//! are read from the engine at scrape time.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-bucket histogram of seconds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if seconds <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        self.sum_micros.fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }

    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), or None if empty.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            if cumulative >= want {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }
}

const LATENCY_BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const LATENESS_BOUNDS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Counters keyed by a label set, for the few labelled counters we have.
#[derive(Default)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabelledCounter {
    pub fn inc(&self, labels: String, by: u64) {
        *self.values.lock().entry(labels).or_default() += by;
    }
    pub fn render(&self, out: &mut String, name: &str) {
        for (labels, v) in self.values.lock().iter() {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    pub fn get(&self, labels: &str) -> u64 {
        self.values.lock().get(labels).copied().unwrap_or(0)
    }
}

pub struct Metrics {
    pub expiry_lateness: Histogram,
    pub request_latency: Histogram,
    pub requests: LabelledCounter,
    pub ends: LabelledCounter,
    pub heartbeats: AtomicU64,
    /// Matching and calls (seed 002's monitoring list).
    pub pairs: AtomicU64,
    pub time_to_pair: Histogram,
    pub call_outcomes: LabelledCounter,
    pub signals_relayed: AtomicU64,
    pub decisions: LabelledCounter,
    pub webrtc_setup: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            expiry_lateness: Histogram::new(LATENESS_BOUNDS),
            request_latency: Histogram::new(LATENCY_BOUNDS),
            requests: LabelledCounter::default(),
            ends: LabelledCounter::default(),
            heartbeats: AtomicU64::new(0),
            pairs: AtomicU64::new(0),
            time_to_pair: Histogram::new(LATENCY_BOUNDS),
            call_outcomes: LabelledCounter::default(),
            signals_relayed: AtomicU64::new(0),
            decisions: LabelledCounter::default(),
            webrtc_setup: Histogram::new(&[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
        }
    }
}

impl Metrics {
    pub fn observe_lateness(&self, millis: i64) {
        self.expiry_lateness.observe(millis as f64 / 1000.0);
    }

    pub fn count_end(&self, kind: &str, reason: &str, n: u64) {
        self.ends.inc(format!("kind=\"{}\",reason=\"{reason}\"", escape(kind)), n);
    }

    /// Renders everything; `live` holds (kind, status, count) read from the engine.
    pub fn render(&self, live: &[(String, &'static str, usize)], pool_size: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP tether_sessions_live Live sessions by kind and status.\n# TYPE tether_sessions_live gauge\n",
        );
        for (kind, status, n) in live {
            let _ = writeln!(out, "tether_sessions_live{{kind=\"{}\",status=\"{status}\"}} {n}", escape(kind));
        }
        out.push_str("# HELP tether_sessions_ended_total Sessions ended, by kind and reason.\n# TYPE tether_sessions_ended_total counter\n");
        self.ends.render(&mut out, "tether_sessions_ended_total");
        out.push_str("# HELP tether_expiry_lateness_seconds Deadline to publication of deadline-driven ends.\n# TYPE tether_expiry_lateness_seconds histogram\n");
        self.expiry_lateness.render(&mut out, "tether_expiry_lateness_seconds", "");
        out.push_str("# HELP tether_http_request_duration_seconds HTTP request latency.\n# TYPE tether_http_request_duration_seconds histogram\n");
        self.request_latency.render(&mut out, "tether_http_request_duration_seconds", "");
        out.push_str("# HELP tether_http_requests_total HTTP requests by route and status.\n# TYPE tether_http_requests_total counter\n");
        self.requests.render(&mut out, "tether_http_requests_total");
        out.push_str("# HELP tether_heartbeats_total Heartbeats received (HTTP and WebSocket).\n# TYPE tether_heartbeats_total counter\n");
        let _ = writeln!(out, "tether_heartbeats_total {}", self.heartbeats.load(Ordering::Relaxed));
        out.push_str("# HELP tether_matching_pool_users Users waiting in the matching pool.\n# TYPE tether_matching_pool_users gauge\n");
        let _ = writeln!(out, "tether_matching_pool_users {pool_size}");
        out.push_str("# HELP tether_matching_pairs_total Pairs made (rate() gives pairs per second).\n# TYPE tether_matching_pairs_total counter\n");
        let _ = writeln!(out, "tether_matching_pairs_total {}", self.pairs.load(Ordering::Relaxed));
        out.push_str("# HELP tether_matching_time_to_pair_seconds Entering the pool to being paired.\n# TYPE tether_matching_time_to_pair_seconds histogram\n");
        self.time_to_pair.render(&mut out, "tether_matching_time_to_pair_seconds", "");
        out.push_str(
            "# HELP tether_call_outcomes_total Calls by outcome.\n# TYPE tether_call_outcomes_total counter\n",
        );
        self.call_outcomes.render(&mut out, "tether_call_outcomes_total");
        out.push_str("# HELP tether_call_signals_relayed_total WebRTC signals relayed.\n# TYPE tether_call_signals_relayed_total counter\n");
        let _ = writeln!(out, "tether_call_signals_relayed_total {}", self.signals_relayed.load(Ordering::Relaxed));
        out.push_str("# HELP tether_matching_decisions_total Decisions after calls, by kind.\n# TYPE tether_matching_decisions_total counter\n");
        self.decisions.render(&mut out, "tether_matching_decisions_total");
        out.push_str("# HELP tether_webrtc_setup_seconds WebRTC connection set-up time reported by clients.\n# TYPE tether_webrtc_setup_seconds histogram\n");
        self.webrtc_setup.render(&mut out, "tether_webrtc_setup_seconds", "");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

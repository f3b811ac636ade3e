//! Prometheus metrics: every family Tether exposes on `/metrics`, registered
//! once in a `prometheus-client` [`Registry`] and written by its Prometheus
//! text encoder (format 0.0.4), which owns the names, `# HELP`/`# TYPE` lines
//! and the escaping of every label value.
//!
//! Counters and histograms are updated on the hot path without any shared
//! lock: plain atomics, and for labelled counters a [`Family`] keyed by a
//! typed label set (a read lock that many requests hold at once; the write
//! lock is taken once per new label set). The gauges of live sessions and of
//! the matching pool are not kept up to date between scrapes: the `/metrics`
//! handler reads them from the core and hands them to [`Metrics::render`].

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::{
    prometheus_text, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tether_engine::Status;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const LATENCY_BOUNDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const LATENESS_BOUNDS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// The stages of a deadline-driven end, at the clock's millisecond
/// resolution, fine enough below 10 ms to tell where a p99 goes, and in
/// half seconds up to a few seconds to tell when a mass expiry was through.
const STAGE_BOUNDS: &[f64] = &[
    0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0,
    2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
];
/// Webhook delivery latency, commit to 2xx: milliseconds when the receiver is
/// up, up to the hours of the retry schedule when it was down.
const WEBHOOK_LATENCY_BOUNDS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 36000.0];
const WEBRTC_SETUP_BOUNDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// A fixed-bucket histogram of seconds, encoded by `prometheus-client`.
///
/// Kept instead of the crate's own `Histogram` for two reasons: that one takes
/// a mutex on every observation (the request-latency histogram is observed by
/// every request on every worker), and it offers no read of its buckets, which
/// the health report needs for [`Histogram::quantile_bound`].
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds, ascending; observations above the last go to the `+Inf` bucket.
    bounds: &'static [f64],
    /// One count per bound plus the `+Inf` bucket, not cumulative: an
    /// observation touches one counter, and the total is their sum, so a
    /// scrape's `_count` always equals its `+Inf` bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must ascend: {bounds:?}");
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { inner: Arc::new(HistogramInner { bounds, counts, sum_bits: AtomicU64::new(0f64.to_bits()) }) }
    }

    /// Records one observation; a NaN is dropped (it belongs to no bucket and would poison the sum).
    pub fn observe(&self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let inner = &*self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < seconds);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // An f64 add has no atomic instruction: retry until no other thread added in between.
        let _ = inner.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + seconds).to_bits())
        });
    }

    pub fn count(&self) -> u64 {
        self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), or None if
    /// empty; infinity when it falls above the last finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut cumulative = 0;
        for (count, bound) in counts.iter().zip(self.upper_bounds()) {
            cumulative += count;
            if cumulative >= want {
                return Some(bound);
            }
        }
        Some(f64::INFINITY)
    }

    fn upper_bounds(&self) -> impl Iterator<Item = f64> + '_ {
        self.inner.bounds.iter().copied().chain(std::iter::once(f64::INFINITY))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> =
            self.upper_bounds().zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(self.inner.sum_bits.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LiveLabels {
    kind: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    kind: String,
    reason: &'static str,
}

/// `route` is the router's template (`/v1/sessions/{id}`), never the raw
/// path, so the number of series stays bounded by the number of routes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    route: Route,
    status: u16,
}

/// A stage of a deadline-driven end (see [`Stage`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// Where a deadline-driven end stands, each measured from the deadline by
/// the server's clock: the engine ended it (`ended`: the timer's wake-up and
/// the tick), its write committed (`committed`: the journal's group commit),
/// it was handed to subscribers (`published`, also
/// `tether_expiry_lateness_seconds`), and a subscriber's stream took it
/// (`written`: once per subscriber that receives it). The difference between
/// two stages is what that step cost; a client's receipt minus `written` is
/// the network and the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Ended,
    Committed,
    Published,
    Written,
}

impl Stage {
    /// In declaration order: a stage's discriminant indexes its histogram handle.
    pub const ALL: [Stage; 4] = [Stage::Ended, Stage::Committed, Stage::Published, Stage::Written];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ended => "ended",
            Stage::Committed => "committed",
            Stage::Published => "published",
            Stage::Written => "written",
        }
    }
}

fn stage_histogram() -> Histogram {
    Histogram::new(STAGE_BOUNDS)
}

/// A route template as a label value, shared from [`Metrics::routes`]
/// rather than copied for every request.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Route(Arc<str>);

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// The standard methods as static strings; another method is copied.
fn method_label(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.to_owned()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// A webhook endpoint's URL (a handful of configured endpoints: bounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    url: String,
}

/// A webhook attempt's outcome: `2xx`, `4xx`, `5xx`, `410`, `timeout`, `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookAttemptLabels {
    url: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabels {
    caller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

/// Every metric of the server. The fields are handles into the registry
/// (each metric type is a shared handle), kept so the hot path reaches its
/// counter without a lookup by name.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes: each one rewrites the live-session gauges before
    /// encoding, and two interleaved would show each other's half-written set.
    scrape: Mutex<()>,
    sessions_live: Family<LiveLabels, Gauge>,
    sessions_ended: Family<EndLabels, Counter>,
    pub expiry_lateness: Histogram,
    expiry_stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// The handles of `expiry_stages`, in [`Stage::ALL`] order (no lookup per event).
    stage_handles: [Histogram; 4],
    pub request_latency: Histogram,
    requests: Family<RequestLabels, Counter>,
    /// The route templates seen so far (bounded by the router's routes), so
    /// a request's labels are built without copying its route.
    routes: RwLock<HashSet<Arc<str>>>,
    heartbeats: Counter,
    pool_users: Gauge,
    pairs: Counter,
    pub time_to_pair: Histogram,
    call_outcomes: Family<OutcomeLabels, Counter>,
    signals_relayed: Counter,
    decisions: Family<DecisionLabels, Counter>,
    pub webrtc_setup: Histogram,
    rate_limited: Family<CallerLabels, Counter>,
    ws_slow_closed: Counter,
    webhook_delivered: Family<WebhookLabels, Counter>,
    webhook_failed: Family<WebhookLabels, Counter>,
    webhook_attempts: Family<WebhookAttemptLabels, Counter>,
    webhook_queue: Family<WebhookLabels, Gauge>,
    pub webhook_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            registry: Registry::with_prefix("tether"),
            scrape: Mutex::new(()),
            sessions_live: Family::default(),
            sessions_ended: Family::default(),
            expiry_lateness: Histogram::new(LATENESS_BOUNDS),
            expiry_stages: Family::new_with_constructor(stage_histogram),
            stage_handles: std::array::from_fn(|_| stage_histogram()),
            request_latency: Histogram::new(LATENCY_BOUNDS),
            requests: Family::default(),
            routes: RwLock::default(),
            heartbeats: Counter::default(),
            pool_users: Gauge::default(),
            pairs: Counter::default(),
            time_to_pair: Histogram::new(LATENCY_BOUNDS),
            call_outcomes: Family::default(),
            signals_relayed: Counter::default(),
            decisions: Family::default(),
            webrtc_setup: Histogram::new(WEBRTC_SETUP_BOUNDS),
            rate_limited: Family::default(),
            ws_slow_closed: Counter::default(),
            webhook_delivered: Family::default(),
            webhook_failed: Family::default(),
            webhook_attempts: Family::default(),
            webhook_queue: Family::default(),
            webhook_latency: Histogram::new(WEBHOOK_LATENCY_BOUNDS),
        };
        metrics.registered()
    }
}

impl Metrics {
    /// Registers every handle under its exposed name. The encoder appends
    /// `_total` to counters and the unit to histograms, and a `.` to each help
    /// text; the names are those dashboards and alerts already use.
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register("sessions_live", "Live sessions by kind and status", self.sessions_live.clone());
        r.register("sessions_ended", "Sessions ended, by kind and reason", self.sessions_ended.clone());
        r.register_with_unit(
            "expiry_lateness",
            "Deadline to publication of deadline-driven ends",
            Unit::Seconds,
            self.expiry_lateness.clone(),
        );
        // Every stage has its series from the start, so a reader's query
        // finds all four before the first deadline falls.
        for stage in Stage::ALL {
            self.stage_handles[stage as usize] =
                self.expiry_stages.get_or_create(&StageLabels { stage: stage.as_str() }).clone();
        }
        r.register_with_unit(
            "expiry_stage_lateness",
            "Deadline to each stage of a deadline-driven end (ended, committed, published, written to a subscriber's stream)",
            Unit::Seconds,
            self.expiry_stages.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "HTTP request latency",
            Unit::Seconds,
            self.request_latency.clone(),
        );
        r.register("http_requests", "HTTP requests by route and status", self.requests.clone());
        r.register("heartbeats", "Heartbeats received (HTTP and WebSocket)", self.heartbeats.clone());
        r.register("matching_pool_users", "Users waiting in the matching pool", self.pool_users.clone());
        r.register("matching_pairs", "Pairs made (rate() gives pairs per second)", self.pairs.clone());
        r.register_with_unit(
            "matching_time_to_pair",
            "Entering the pool to being paired",
            Unit::Seconds,
            self.time_to_pair.clone(),
        );
        r.register("call_outcomes", "Calls by outcome", self.call_outcomes.clone());
        r.register("call_signals_relayed", "WebRTC signals relayed", self.signals_relayed.clone());
        r.register("matching_decisions", "Decisions after calls, by kind", self.decisions.clone());
        r.register_with_unit(
            "webrtc_setup",
            "WebRTC connection set-up time reported by clients",
            Unit::Seconds,
            self.webrtc_setup.clone(),
        );
        r.register(
            "rate_limited",
            "Requests and WebSocket messages refused by the rate limits, by caller type (user, api_key)",
            self.rate_limited.clone(),
        );
        r.register(
            "ws_slow_closed",
            "WebSockets closed because the client did not take its events in time",
            self.ws_slow_closed.clone(),
        );
        r.register(
            "webhook_delivered",
            "Webhook deliveries answered 2xx, by endpoint URL",
            self.webhook_delivered.clone(),
        );
        r.register(
            "webhook_failed",
            "Webhook deliveries failed for good (retries exhausted, or 410), by endpoint URL",
            self.webhook_failed.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook attempts by endpoint URL and outcome (2xx, 4xx, 5xx, 410, timeout, error)",
            self.webhook_attempts.clone(),
        );
        r.register("webhook_queue_depth", "Webhook deliveries pending, by endpoint URL", self.webhook_queue.clone());
        r.register_with_unit(
            "webhook_delivery_latency",
            "Webhook delivery latency, from the event's commit to the 2xx answer",
            Unit::Seconds,
            self.webhook_latency.clone(),
        );
        // Both caller types exist from the start, so a refusal rate reads 0 rather than no data.
        for caller in ["user", "api_key"] {
            let _created = self.rate_limited.get_or_create(&CallerLabels { caller });
        }
        self
    }

    pub fn observe_lateness(&self, millis: i64) {
        self.expiry_lateness.observe(millis as f64 / 1000.0);
        self.observe_stage(Stage::Published, millis);
    }

    /// `millis` after its deadline, a deadline-driven end reached `stage`.
    pub fn observe_stage(&self, stage: Stage, millis: i64) {
        self.stage_handles[stage as usize].observe(millis.max(0) as f64 / 1000.0);
    }

    pub fn count_end(&self, kind: &str, reason: &'static str, n: u64) {
        self.sessions_ended.get_or_create(&EndLabels { kind: kind.to_owned(), reason }).inc_by(n);
    }

    /// One answered request; `route` is the matched route template.
    pub fn count_request(&self, method: &str, route: &str, status: u16) {
        let labels = RequestLabels { method: method_label(method), route: self.route(route), status };
        self.requests.get_or_create(&labels).inc();
    }

    fn route(&self, route: &str) -> Route {
        if let Some(known) = self.routes.read().get(route) {
            return Route(known.clone());
        }
        let mut routes = self.routes.write();
        if let Some(known) = routes.get(route) {
            return Route(known.clone());
        }
        let new: Arc<str> = Arc::from(route);
        routes.insert(new.clone());
        Route(new)
    }

    pub fn count_heartbeat(&self) {
        self.heartbeats.inc();
    }

    pub fn count_pair(&self) {
        self.pairs.inc();
    }

    pub fn count_call_outcome(&self, outcome: &'static str) {
        self.call_outcomes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn count_signal_relayed(&self) {
        self.signals_relayed.inc();
    }

    /// One request or WebSocket message refused; `caller` is `user` or `api_key`.
    pub fn count_rate_limited(&self, caller: &'static str) {
        self.rate_limited.get_or_create(&CallerLabels { caller }).inc();
    }

    pub fn count_ws_slow_closed(&self) {
        self.ws_slow_closed.inc();
    }

    pub fn count_decision(&self, decision: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { decision }).inc();
    }

    /// A webhook endpoint exists: its series read 0 from the start rather than no data.
    pub fn webhook_endpoint(&self, url: &str) {
        let labels = WebhookLabels { url: url.to_owned() };
        let _created = self.webhook_delivered.get_or_create(&labels);
        let _created = self.webhook_failed.get_or_create(&labels);
        let _created = self.webhook_queue.get_or_create(&labels);
    }

    /// One webhook attempt and its outcome (`2xx`, `4xx`, `5xx`, `410`, `timeout`, `error`).
    pub fn count_webhook_attempt(&self, url: &str, outcome: &'static str) {
        self.webhook_attempts.get_or_create(&WebhookAttemptLabels { url: url.to_owned(), outcome }).inc();
    }

    /// A delivery answered 2xx, `latency_ms` after its event's commit.
    pub fn count_webhook_delivered(&self, url: &str, latency_ms: i64) {
        self.webhook_delivered.get_or_create(&WebhookLabels { url: url.to_owned() }).inc();
        self.webhook_latency.observe(latency_ms.max(0) as f64 / 1000.0);
    }

    pub fn count_webhook_failed(&self, url: &str) {
        self.webhook_failed.get_or_create(&WebhookLabels { url: url.to_owned() }).inc();
    }

    pub fn set_webhook_queue(&self, url: &str, pending: usize) {
        self.webhook_queue.get_or_create(&WebhookLabels { url: url.to_owned() }).set(pending as i64);
    }

    /// Writes every metric in the Prometheus text format. `live` is the number
    /// of live sessions per kind and status and `pool_users` the size of the
    /// matching pool, both read by the caller at scrape time; a kind or status
    /// left out of `live` has no series in this scrape.
    pub fn render<K: Into<String>>(
        &self,
        live: impl IntoIterator<Item = (K, Status, u64)>,
        pool_users: usize,
    ) -> Result<String, std::fmt::Error> {
        let _one_scrape_at_a_time = self.scrape.lock();
        // Cleared, not only overwritten: a kind whose last session ended since
        // the previous scrape must not keep showing its old count.
        self.sessions_live.clear();
        for (kind, status, n) in live {
            let labels = LiveLabels { kind: kind.into(), status: status.as_str() };
            self.sessions_live.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.pool_users.set(i64::try_from(pool_users).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(8192);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn every_label_value_is_escaped() {
        let m = Metrics::default();
        m.count_end("a\"b\\c\nd", "idle_timeout", 2);
        m.count_request("GET", "/odd/\"route\"", 200);
        let text = m.render([("x\\y", Status::Active, 1)], 0).unwrap();
        assert_eq!(
            line_of(&text, "tether_sessions_ended_total{"),
            Some(r#"tether_sessions_ended_total{kind="a\"b\\c\nd",reason="idle_timeout"} 2"#),
            "{text}"
        );
        assert_eq!(
            line_of(&text, "tether_http_requests_total{"),
            Some(r#"tether_http_requests_total{method="GET",route="/odd/\"route\"",status="200"} 1"#),
            "{text}"
        );
        assert_eq!(
            line_of(&text, "tether_sessions_live{"),
            Some(r#"tether_sessions_live{kind="x\\y",status="active"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn names_and_types_are_the_ones_readers_use() {
        let m = Metrics::default();
        m.count_end("plain", "ended", 1);
        m.count_request("POST", "/v1/sessions", 201);
        m.count_call_outcome("completed");
        m.count_decision("continue");
        let text = m.render([("plain", Status::Waiting, 0)], 3).unwrap();
        for (name, kind) in [
            ("tether_sessions_live", "gauge"),
            ("tether_sessions_ended_total", "counter"),
            ("tether_expiry_lateness_seconds", "histogram"),
            ("tether_expiry_stage_lateness_seconds", "histogram"),
            ("tether_http_request_duration_seconds", "histogram"),
            ("tether_http_requests_total", "counter"),
            ("tether_heartbeats_total", "counter"),
            ("tether_matching_pool_users", "gauge"),
            ("tether_matching_pairs_total", "counter"),
            ("tether_matching_time_to_pair_seconds", "histogram"),
            ("tether_call_outcomes_total", "counter"),
            ("tether_call_signals_relayed_total", "counter"),
            ("tether_matching_decisions_total", "counter"),
            ("tether_webrtc_setup_seconds", "histogram"),
            ("tether_rate_limited_total", "counter"),
            ("tether_ws_slow_closed_total", "counter"),
        ] {
            assert!(text.contains(&format!("\n# TYPE {name} {kind}\n")), "{name} {kind}:\n{text}");
        }
        assert_eq!(line_of(&text, "tether_matching_pool_users "), Some("tether_matching_pool_users 3"));
        assert_eq!(line_of(&text, "tether_webrtc_setup_seconds_count"), Some("tether_webrtc_setup_seconds_count 0"));
    }

    #[test]
    fn each_stage_is_observed_in_its_own_series() {
        let m = Metrics::default();
        for (n, stage) in Stage::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                m.observe_stage(stage, 3);
            }
        }
        let text = m.render(Vec::<(&str, Status, u64)>::new(), 0).unwrap();
        for (n, stage) in Stage::ALL.into_iter().enumerate() {
            let line = format!("tether_expiry_stage_lateness_seconds_count{{stage=\"{}\"}} {}", stage.as_str(), n + 1);
            assert!(text.contains(&line), "{line}\n{text}");
        }
    }

    #[test]
    fn a_kind_gone_since_the_last_scrape_loses_its_series() {
        let m = Metrics::default();
        assert!(m.render([("brief", Status::Active, 4)], 0).unwrap().contains("kind=\"brief\""));
        let text = m.render([("plain", Status::Active, 1)], 0).unwrap();
        assert!(!text.contains("kind=\"brief\""), "{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        // Binary fractions, so the sum is exact.
        let h = Histogram::new(&[0.25, 0.5, 1.0]);
        for s in [0.125, 0.25, 0.375, 0.75, 7.0, f64::NAN] {
            h.observe(s);
        }
        assert_eq!(h.count(), 5, "NaN is dropped");
        assert_eq!(h.quantile_bound(0.4), Some(0.25), "0.25 falls in the bucket le=0.25");
        assert_eq!(h.quantile_bound(0.6), Some(0.5));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(Histogram::new(&[1.0]).quantile_bound(0.99), None);

        let mut registry = Registry::default();
        registry.register_with_unit("probe", "probe", Unit::Seconds, h);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "probe_seconds_bucket{le=\"0.25\"} 2",
                "probe_seconds_bucket{le=\"0.5\"} 3",
                "probe_seconds_bucket{le=\"1\"} 4",
                "probe_seconds_bucket{le=\"+Inf\"} 5",
                "probe_seconds_sum 8.5",
                "probe_seconds_count 5",
            ]
        );
    }
}

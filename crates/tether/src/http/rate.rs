//! Per-caller rate limits (contract section 11): one token bucket per user
//! (every token of a user, invite-scoped ones included, draws on the same
//! bucket) and one per API key, each from `[limits]`. Every authenticated
//! request is counted once, when its token is verified
//! ([`super::access::authenticate`], which the bearer extractors and the
//! beacon's body token go through), and so is every data frame a client
//! sends on a WebSocket. Unauthenticated endpoints are never counted.
//!
//! The buckets are `governor`'s keyed GCRA limiters on a `DashMap`, on the
//! wall clock (not the server's injectable clock: a rate is about real time,
//! and a test's stopped clock must not stop refilling). A key whose bucket
//! has refilled is indistinguishable from one never seen, so the map is
//! swept of those with `retain_recent` (and shrunk) at most once every
//! [`SWEEP_EVERY`]: the request that finds the sweep due starts it on the
//! blocking pool. The map therefore holds only callers seen within about
//! the last minute plus the time their bucket takes to refill.

use super::problem::ApiError;
use crate::auth::Principal;
use crate::config::{Limits, Rate};
use crate::metrics::Metrics;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the buckets of callers gone quiet are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Whose bucket a request or WebSocket message is counted in.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum CallerKey {
    /// A user id: all of that user's tokens share it.
    User(Arc<str>),
    /// An API key (the key itself: only configured keys get this far).
    ApiKey(Arc<str>),
}

impl CallerKey {
    /// The key for a verified `token` that authenticated as `principal`.
    pub fn of(principal: &Principal, token: &str) -> CallerKey {
        match principal {
            Principal::User { id, .. } => CallerKey::User(id.as_str().into()),
            Principal::ApiKey => CallerKey::ApiKey(token.trim().into()),
        }
    }

    /// The `caller` label of the refusal metric and problem.
    pub fn kind(&self) -> &'static str {
        match self {
            CallerKey::User(_) => "user",
            CallerKey::ApiKey(_) => "api_key",
        }
    }
}

type Limiter = RateLimiter<Arc<str>, DashMapStateStore<Arc<str>>, DefaultClock, StateInformationMiddleware>;

/// One kind of caller's buckets.
struct Buckets {
    limiter: Arc<Limiter>,
    rate: Rate,
    burst: NonZeroU32,
    /// When the last sweep started, in ms since `epoch`.
    last_sweep_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl Buckets {
    fn new(rate: Rate, burst: NonZeroU32) -> Buckets {
        // One token every per/count: 50/s refills one every 20 ms.
        let period = (rate.per / rate.count.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(rate.count)).allow_burst(burst);
        Buckets {
            limiter: Arc::new(RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>()),
            rate,
            burst,
            last_sweep_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    fn check(&self, key: &Arc<str>) -> Result<(), Duration> {
        self.sweep_if_due();
        match self.limiter.check_key(key) {
            Ok(_) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.limiter.clock().now())),
        }
    }

    /// Drops the buckets that have refilled, at most once per [`SWEEP_EVERY`].
    fn sweep_if_due(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        // One request wins the sweep; the others go on.
        if self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let limiter = self.limiter.clone();
        let sweep = move || {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        };
        // O(callers seen lately): off the async workers when there is a runtime.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(sweep)),
            Err(_) => sweep(),
        }
    }
}

/// A refused request or message: how long until one more would pass.
#[derive(Debug)]
pub struct Refusal {
    pub caller: &'static str,
    pub rate: Rate,
    pub burst: NonZeroU32,
    pub wait: Duration,
}

impl Refusal {
    /// `Retry-After` in whole seconds, at least 1 (rounded up: a client that
    /// waits exactly this long is let through).
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        secs.max(1)
    }

    pub fn detail(&self) -> String {
        let who = if self.caller == "user" { "this user" } else { "this API key" };
        format!(
            "too many requests: {who} is limited to {} (bursts of {}); retry in {} s",
            self.rate,
            self.burst,
            self.retry_after_secs()
        )
    }

    /// The `429` problem with `Retry-After` and the `RateLimit-*` headers
    /// (`RateLimit-Limit` is the burst, `RateLimit-Reset` seconds until a request passes).
    pub fn into_problem(self) -> ApiError {
        let retry = self.retry_after_secs();
        let number = |n: u64| HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("1"));
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", self.detail())
            .with("retry_after", Value::from(retry))
            .with("caller", Value::from(self.caller))
            .with_header(header::RETRY_AFTER, number(retry))
            .with_header(HeaderName::from_static("ratelimit-limit"), number(u64::from(self.burst.get())))
            .with_header(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from_static("0"))
            .with_header(HeaderName::from_static("ratelimit-reset"), number(retry))
    }
}

/// The buckets of every caller; `None` where `[limits]` says `"off"`.
pub struct RateLimits {
    users: Option<Buckets>,
    api_keys: Option<Buckets>,
    metrics: Arc<Metrics>,
}

impl RateLimits {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> RateLimits {
        RateLimits {
            users: limits.user_rate.map(|rate| Buckets::new(rate, limits.user_burst)),
            api_keys: limits.api_key_rate.map(|rate| Buckets::new(rate, limits.api_key_burst)),
            metrics,
        }
    }

    /// Counts one request or message of `key`; a refusal is counted in the metrics.
    pub fn check(&self, key: &CallerKey) -> Result<(), Refusal> {
        let (buckets, name) = match key {
            CallerKey::User(id) => (&self.users, id),
            CallerKey::ApiKey(k) => (&self.api_keys, k),
        };
        let Some(buckets) = buckets else { return Ok(()) };
        buckets.check(name).map_err(|wait| {
            self.metrics.count_rate_limited(key.kind());
            Refusal { caller: key.kind(), rate: buckets.rate, burst: buckets.burst, wait }
        })
    }

    /// How many callers have a bucket now (swept ones are gone).
    pub fn tracked(&self) -> usize {
        [&self.users, &self.api_keys].iter().filter_map(|b| b.as_ref()).map(|b| b.limiter.len()).sum()
    }

    /// Drops the buckets that have refilled, now (the periodic sweep does this on its own).
    pub fn sweep(&self) {
        for buckets in [&self.users, &self.api_keys].into_iter().flatten() {
            buckets.limiter.retain_recent();
            buckets.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(user: &str, burst: u32, api_key: &str) -> Limits {
        Limits {
            user_rate: Rate::parse(user).unwrap(),
            user_burst: NonZeroU32::new(burst).unwrap(),
            api_key_rate: Rate::parse(api_key).unwrap(),
            api_key_burst: NonZeroU32::new(burst).unwrap(),
            ..Limits::default()
        }
    }

    fn user(id: &str) -> CallerKey {
        CallerKey::User(id.into())
    }

    #[test]
    fn a_user_gets_its_burst_then_a_refusal_with_a_whole_second_retry() {
        let rates = RateLimits::new(&limits("1/h", 3, "off"), Arc::new(Metrics::default()));
        for _ in 0..3 {
            rates.check(&user("u1")).unwrap();
        }
        let refusal = rates.check(&user("u1")).unwrap_err();
        assert_eq!(refusal.caller, "user");
        assert!((3590..=3600).contains(&refusal.retry_after_secs()), "{}", refusal.retry_after_secs());
        // Another user, and API keys (off), are not affected.
        rates.check(&user("u2")).unwrap();
        for _ in 0..100 {
            rates.check(&CallerKey::ApiKey("k".into())).unwrap();
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let refusal = Refusal {
            caller: "user",
            rate: Limits::DEFAULT_USER_RATE,
            burst: Limits::DEFAULT_USER_BURST,
            wait: Duration::from_millis(20),
        };
        assert_eq!(refusal.retry_after_secs(), 1);
        let refusal = Refusal { wait: Duration::from_millis(1001), ..refusal };
        assert_eq!(refusal.retry_after_secs(), 2);
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let rates = RateLimits::new(&limits("1000/s", 1, "1000/s"), Arc::new(Metrics::default()));
        for i in 0..50 {
            rates.check(&user(&format!("u{i}"))).unwrap();
            rates.check(&CallerKey::ApiKey(format!("k{i}").into())).unwrap();
        }
        assert_eq!(rates.tracked(), 100);
        // One token per millisecond: every bucket is full again after a few.
        std::thread::sleep(Duration::from_millis(5));
        rates.sweep();
        assert_eq!(rates.tracked(), 0);
    }
}

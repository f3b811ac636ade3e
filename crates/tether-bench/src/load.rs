//! Load helpers against Tether's HTTP API: bulk session creation over N
//! keep-alive connections, and timed request loops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::http::{parse_ts, Api};
use crate::stats::Samples;

/// What [`create_many`] hands back.
pub struct Created {
    pub elapsed: Duration,
    /// Per-request latency (ms) of the successful creations.
    pub latency: Samples,
    /// (index, id, expires_at ms) of the sessions asked to be kept.
    pub kept: Vec<(usize, String, Option<f64>)>,
    pub failures: usize,
    /// The first failure's status and body, to say why.
    pub first_failure: Option<String>,
}

/// Creates `n` sessions: the i-th has kind `kinds[i % kinds.len()]` and user
/// `{user_prefix}{i}`, over `conns` connections. Keeps id and `expires_at` of
/// every i with `keep(i)`.
pub async fn create_many(
    api: &Api,
    kinds: &[&str],
    n: usize,
    conns: usize,
    user_prefix: &str,
    keep: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> Result<Created> {
    let next = Arc::new(AtomicUsize::new(0));
    let keep = Arc::new(keep);
    let kept = Arc::new(Mutex::new(Vec::new()));
    let first_failure: Arc<Mutex<Option<String>>> = Arc::default();
    let kinds: Arc<Vec<String>> = Arc::new(kinds.iter().map(|s| s.to_string()).collect());
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conns.min(n.max(1)) {
        let mut c = api.conn().await?;
        let (next, keep, kept, kinds, ff) =
            (next.clone(), keep.clone(), kept.clone(), kinds.clone(), first_failure.clone());
        let key = api.key.clone();
        let prefix = user_prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Samples::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = format!(r#"{{"kind":"{}","user_id":"{}{}"}}"#, kinds[i % kinds.len()], prefix, i);
                let t = Instant::now();
                match c.request(Method::POST, "/v1/sessions", &key, Some(Bytes::from(body))).await {
                    Ok((s, b)) if s.is_success() => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        if keep(i) {
                            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                            let sess = if v.get("session").is_some() { &v["session"] } else { &v };
                            let id = sess["id"].as_str().unwrap_or_default().to_string();
                            let exp = sess["expires_at"].as_str().and_then(parse_ts);
                            kept.lock().unwrap().push((i, id, exp));
                        }
                    }
                    Ok((s, b)) => {
                        failures += 1;
                        let mut f = ff.lock().unwrap();
                        if f.is_none() {
                            *f = Some(format!("{s}: {}", String::from_utf8_lossy(&b)));
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        {
                            let mut f = ff.lock().unwrap();
                            if f.is_none() {
                                *f = Some(format!("{e:#}"));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (lat, failures)
        }));
    }
    let mut latency = Samples::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await?;
        latency.values.extend(l.values);
        failures += f;
    }
    let mut kept = std::mem::take(&mut *kept.lock().unwrap());
    kept.sort_by_key(|k| k.0);
    let first_failure = first_failure.lock().unwrap().clone();
    Ok(Created { elapsed: start.elapsed(), latency, kept, failures, first_failure })
}

/// Runs `conns` workers, each sending `req(worker, i)` one at a time on its
/// own keep-alive connection for `dur` after `warmup` (not counted).
/// Returns (successful requests/s, latency samples, failures, first failure).
pub async fn timed_loop<F>(
    api: &Api,
    conns: usize,
    warmup: Duration,
    dur: Duration,
    req: F,
) -> Result<(f64, Samples, usize, Option<String>)>
where
    F: Fn(usize, usize) -> (Method, String, Option<Bytes>) + Send + Sync + Clone + 'static,
{
    timed_loop_with(api, conns, warmup, dur, &[], req).await
}

/// [`timed_loop`] with headers sent on every request.
pub async fn timed_loop_with<F>(
    api: &Api,
    conns: usize,
    warmup: Duration,
    dur: Duration,
    headers: &[(http::HeaderName, http::HeaderValue)],
    req: F,
) -> Result<(f64, Samples, usize, Option<String>)>
where
    F: Fn(usize, usize) -> (Method, String, Option<Bytes>) + Send + Sync + Clone + 'static,
{
    let t_begin = Instant::now() + warmup;
    let t_end = t_begin + dur;
    let mut tasks = vec![];
    for w in 0..conns {
        let mut c = api.conn().await?;
        c.headers = headers.to_vec();
        let req = req.clone();
        let key = api.key.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Samples::new();
            let mut failures = 0usize;
            let mut first = None;
            let mut i = 0;
            loop {
                let now = Instant::now();
                if now >= t_end {
                    break;
                }
                let (m, path, body) = req(w, i);
                i += 1;
                let t = Instant::now();
                let r = c.request(m, &path, &key, body).await;
                let counted = t >= t_begin;
                match r {
                    Ok((s, _)) if s.is_success() => {
                        if counted {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0)
                        }
                    }
                    Ok((s, b)) => {
                        if counted {
                            failures += 1;
                        }
                        first.get_or_insert_with(|| format!("{s}: {}", String::from_utf8_lossy(&b)));
                    }
                    Err(e) => {
                        if counted {
                            failures += 1;
                        }
                        first.get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (lat, failures, first)
        }));
    }
    let mut all = Samples::new();
    let mut failures = 0;
    let mut first = None;
    for t in tasks {
        let (l, f, ff) = t.await?;
        all.values.extend(l.values);
        failures += f;
        if first.is_none() {
            first = ff;
        }
    }
    let rate = all.values.len() as f64 / dur.as_secs_f64();
    Ok((rate, all, failures, first))
}

/// What [`create_batched`] hands back.
#[derive(Default)]
pub struct Batched {
    pub elapsed: Duration,
    /// Per-request latency (ms) of the batches answered without a refusal.
    pub latency: Samples,
    /// Sessions answered `201`.
    pub created: usize,
    /// Items refused, and the items of failed requests.
    pub failures: usize,
    /// The first failure's status and body, to say why.
    pub first_failure: Option<String>,
}

/// What the harness reads of a batch answer (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}
#[derive(serde::Deserialize)]
struct BatchResult {
    status: u16,
    #[serde(default)]
    superseded: Vec<serde::de::IgnoredAny>,
}

/// The body of one `POST /v1/sessions/batch`: items `from..to`, the i-th of
/// kind `kinds[i % kinds.len()]` for user `{user_prefix}{user(i)}`.
pub fn batch_body(kinds: &[String], from: usize, to: usize, user_prefix: &str, user: impl Fn(usize) -> usize) -> Bytes {
    use std::fmt::Write as _;
    let mut body = String::with_capacity((to - from) * 48 + 16);
    body.push_str(r#"{"sessions":["#);
    for i in from..to {
        if i > from {
            body.push(',');
        }
        let _ = write!(body, r#"{{"kind":"{}","user_id":"{}{}"}}"#, kinds[i % kinds.len()], user_prefix, user(i));
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// What one `POST /v1/sessions/batch` answered.
#[derive(Default)]
pub struct BatchOutcome {
    /// Sessions answered `201`.
    pub started: usize,
    /// Sessions the starts ended (`superseded`, for a `per_user = "replace"` kind).
    pub superseded: usize,
    /// Items refused, or all `items` when the request itself was refused.
    pub refused: usize,
    pub first_refusal: Option<String>,
}

/// Sends one batch of `items` sessions and counts its answer.
pub async fn send_batch(c: &mut crate::http::Conn, key: &str, body: Bytes, items: usize) -> Result<BatchOutcome> {
    let (s, b) = c.request(Method::POST, "/v1/sessions/batch", key, Some(body)).await?;
    let mut out = BatchOutcome::default();
    if !s.is_success() {
        out.refused = items;
        out.first_refusal = Some(format!("{s}: {}", String::from_utf8_lossy(&b)));
        return Ok(out);
    }
    let answer: BatchAnswer = serde_json::from_slice(&b)?;
    for r in answer.results {
        if r.status == 201 {
            out.started += 1;
            out.superseded += r.superseded.len();
        } else {
            out.refused += 1;
            out.first_refusal.get_or_insert_with(|| format!("an item answered {}", r.status));
        }
    }
    Ok(out)
}

/// Creates `n` sessions through `POST /v1/sessions/batch`, `batch` per
/// request, over `conns` connections: the i-th of kind `kinds[i % kinds.len()]`
/// for user `{user_prefix}{i}`. Prints progress every tenth of `n` from a
/// million on.
pub async fn create_batched(
    api: &Api,
    kinds: &[&str],
    n: usize,
    batch: usize,
    conns: usize,
    user_prefix: &str,
) -> Result<Batched> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let kinds: Arc<Vec<String>> = Arc::new(kinds.iter().map(|s| s.to_string()).collect());
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conns.min(n.div_ceil(batch)).max(1) {
        let mut c = api.conn().await?;
        let (next, done, kinds) = (next.clone(), done.clone(), kinds.clone());
        let key = api.key.clone();
        let prefix = user_prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Batched::default();
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= n {
                    break;
                }
                let to = (from + batch).min(n);
                let body = batch_body(&kinds, from, to, &prefix, |i| i);
                let t = Instant::now();
                match send_batch(&mut c, &key, body, to - from).await {
                    Ok(b) => {
                        if b.refused == 0 {
                            out.latency.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        out.created += b.started;
                        out.failures += b.refused;
                        if out.first_failure.is_none() {
                            out.first_failure = b.first_refusal;
                        }
                    }
                    Err(e) => {
                        out.failures += to - from;
                        out.first_failure.get_or_insert_with(|| format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                let (before, tenth) = (done.fetch_add(to - from, Ordering::Relaxed), (n / 10).max(1));
                if n >= 1_000_000 && (before + to - from) / tenth > before / tenth {
                    eprintln!("    {} of {n} in {:.0} s", before + to - from, start.elapsed().as_secs_f64());
                }
            }
            out
        }));
    }
    let mut all = Batched::default();
    for t in tasks {
        let b = t.await?;
        all.latency.values.extend(b.latency.values);
        all.created += b.created;
        all.failures += b.failures;
        if all.first_failure.is_none() {
            all.first_failure = b.first_failure;
        }
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

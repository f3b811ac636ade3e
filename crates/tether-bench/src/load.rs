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

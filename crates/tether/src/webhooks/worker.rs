//! The delivery worker: one task that turns the event log into deliveries
//! and attempts them (the rules are in the module doc of [`super`]).
//!
//! It owns the in-memory queues: per endpoint and session, the pending
//! deliveries in event order, each with its row and, while the bodies held
//! stay under [`BODY_CACHE`], its body (beyond that, or after a restart, an
//! attempt reads the body from the store: a long outage costs the row's few
//! dozen bytes per pending delivery). Attempts run as separate tasks and
//! report back over a channel; only the worker changes the queues, and it
//! saves each round's outcomes in one store call.

use super::{sign, Command, Webhooks, MAX_IN_FLIGHT};
use crate::app::App;
use crate::store::{DeliveryRecord, DeliveryStatus, NewDelivery, StoreError, WEBHOOK_CURSOR};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tether_engine::{EventType, Millis};
use tokio::sync::mpsc;

/// Events read from the log per store call.
const LOG_PAGE: usize = 500;
/// How often the worker looks at the log without being woken, and re-checks
/// that this node still owns the work.
const POLL: Duration = Duration::from_millis(500);
/// How often pending rows the worker does not know (a retry asked on another
/// node of a cluster) are loaded from the store.
const RELOAD: Duration = Duration::from_secs(10);

/// An event of the log, as the worker needs it.
struct LogEvent {
    seq: u64,
    event_type: EventType,
    kind: String,
    session_id: String,
    json: String,
}

/// A pending delivery in its queue.
#[derive(Debug)]
struct Entry {
    id: u64,
    next_at: Millis,
    in_flight: bool,
    /// The row as last known (without its body).
    record: DeliveryRecord,
    /// The body, while the cache has room ([`BODY_CACHE`]); otherwise each
    /// attempt reads the row from the store.
    body: Option<Arc<str>>,
}

/// At most this many bytes of bodies are kept with the queues: a long outage
/// costs a few dozen bytes of memory per pending delivery beyond that.
const BODY_CACHE: usize = 64 << 20;

/// What an attempt task reports.
struct Done {
    endpoint: usize,
    /// The queue's session (known when the attempt started).
    session: String,
    record: DeliveryRecord,
    /// The endpoint answered 410.
    gone: bool,
    /// The record is an attempt's outcome to save (not a row that could not be read).
    save: bool,
}

type QueueKey = (usize, String);

struct Worker {
    app: Arc<App>,
    hooks: Arc<Webhooks>,
    client: reqwest::Client,
    cursor: u64,
    queues: HashMap<QueueKey, VecDeque<Entry>>,
    /// Every delivery id in a queue.
    known: HashSet<u64>,
    in_flight: usize,
    /// Bytes of bodies held by the queues' entries.
    cached_bytes: usize,
    done_tx: mpsc::UnboundedSender<Done>,
}

/// Runs until the server closes. Started beside the other background tasks.
pub async fn run(app: Arc<App>) {
    let hooks = app.webhooks.clone();
    let Some(mut inbox) = hooks.inbox.lock().take() else { return };
    if hooks.endpoints().is_empty() {
        return;
    }
    let mut closing = app.closing.subscribe();
    let (_, mut published) = app.hub.subscribe(None);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tether-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; no deliveries will be sent");
            return;
        }
    };
    for e in hooks.endpoints() {
        app.metrics.webhook_endpoint(e.url());
    }
    let mut w = Worker {
        app: app.clone(),
        hooks,
        client,
        cursor: 0,
        queues: HashMap::new(),
        known: HashSet::new(),
        in_flight: 0,
        cached_bytes: 0,
        done_tx,
    };
    let mut loaded = false;
    let mut finished: Vec<Done> = Vec::new();
    let mut last_reload = tokio::time::Instant::now();
    loop {
        if *closing.borrow() {
            return;
        }
        if !app.owns_work() {
            // Another node sends; forget what we held, reload when we own it again.
            if loaded {
                w.queues.clear();
                w.known.clear();
                loaded = false;
            }
        } else {
            if !loaded || last_reload.elapsed() >= RELOAD {
                match w.load().await {
                    Ok(()) => loaded = true,
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot load pending deliveries"),
                }
                last_reload = tokio::time::Instant::now();
            }
            if loaded {
                if let Err(e) = w.ingest().await {
                    tracing::warn!(error = %e, "webhooks: cannot read the event log");
                }
                w.dispatch();
            }
        }
        let next = w.next_due();
        let sleep: crate::clock::Wakeup = match next {
            Some(at) => app.clock.sleep_until(at),
            None => Box::pin(std::future::pending()),
        };
        tokio::select! {
            _ = closing.changed() => return,
            r = published.recv() => {
                // Lagging is fine: the log, not the broadcast, is the source.
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    return;
                }
            }
            Some(done) = done_rx.recv() => finished.push(done),
            Some(cmd) = inbox.recv() => w.command(cmd),
            _ = sleep => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        // Take whatever else is ready before the next round: one read of the
        // log covers every event announced so far, however many they are.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = published.try_recv() {}
        while let Ok(done) = done_rx.try_recv() {
            finished.push(done);
        }
        if !finished.is_empty() {
            w.finish(std::mem::take(&mut finished)).await;
        }
        while let Ok(cmd) = inbox.try_recv() {
            w.command(cmd);
        }
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(e.to_string()))?
}

impl Worker {
    /// The cursor and every pending delivery from the store. Without a cursor
    /// (webhooks configured for the first time) it starts at the first event
    /// of this owner's term (ids are `term·2⁴⁰ + n`), so an existing
    /// database's history is not replayed, and writes that cursor at once so
    /// a later owner starts there too. (Not from the store's `event_epoch`:
    /// every node bumps it when it starts, so it can be ahead of the owner's
    /// term.)
    async fn load(&mut self) -> Result<(), StoreError> {
        let store = self.app.store.clone();
        let term_start = (self.app.hub.head() >> 40) << 40;
        let (cursor, pending) = blocking(move || {
            let cursor = match store.meta_get(WEBHOOK_CURSOR)?.and_then(|c| c.parse::<u64>().ok()) {
                Some(c) => c,
                None => {
                    store.meta_put(WEBHOOK_CURSOR, &term_start.to_string())?;
                    term_start
                }
            };
            Ok((cursor, store.webhook_pending()?))
        })
        .await?;
        self.cursor = self.cursor.max(cursor);
        for record in pending {
            self.push(record, None);
        }
        self.update_gauges();
        Ok(())
    }

    /// Adds a pending delivery to its queue, in event order, unless already
    /// there; with its body when given and the cache has room.
    fn push(&mut self, record: DeliveryRecord, body: Option<&str>) {
        let Some((index, endpoint)) = self.hooks.endpoint(&record.url) else { return };
        if endpoint.is_disabled() || record.status != DeliveryStatus::Pending || !self.known.insert(record.id) {
            return;
        }
        let body = body.filter(|b| self.cached_bytes + b.len() <= BODY_CACHE).map(Arc::<str>::from);
        self.cached_bytes += body.as_ref().map_or(0, |b| b.len());
        let queue = self.queues.entry((index, record.session_id.clone())).or_default();
        let entry =
            Entry { id: record.id, next_at: record.next_attempt_at.unwrap_or(0), in_flight: false, record, body };
        // Ids grow with event order; a retried old delivery goes back to its place
        // (behind one in flight, which is already being attempted).
        let at = queue.iter().position(|e| e.id > entry.id && !e.in_flight).unwrap_or(queue.len());
        queue.insert(at, entry);
    }

    /// Reads the log after the cursor and creates the deliveries, page by page.
    async fn ingest(&mut self) -> Result<(), StoreError> {
        loop {
            let events = self.read_log(self.cursor, LOG_PAGE).await?;
            let Some(last) = events.last().map(|e| e.seq) else { return Ok(()) };
            let mut new = Vec::new();
            for e in &events {
                for endpoint in self.hooks.endpoints() {
                    if !endpoint.is_disabled() && endpoint.wants(e.event_type, &e.kind) {
                        new.push(NewDelivery {
                            url: endpoint.url().to_string(),
                            event_id: e.seq,
                            session_id: e.session_id.clone(),
                            body: e.json.clone(),
                            created_at: event_time(&e.json).unwrap_or_else(|| self.app.now()),
                        });
                    }
                }
            }
            let store = self.app.store.clone();
            let (new, records) = blocking(move || {
                let records = store.webhook_enqueue(&new, last)?;
                Ok((new, records))
            })
            .await?;
            // In the same order as `new`.
            for (record, made) in records.into_iter().zip(&new) {
                self.push(record, Some(&made.body));
            }
            self.cursor = last;
            self.update_gauges();
            if events.len() < LOG_PAGE {
                return Ok(());
            }
        }
    }

    /// Events with id > `after` from the durable event log.
    async fn read_log(&self, after: u64, limit: usize) -> Result<Vec<LogEvent>, StoreError> {
        let store = self.app.store.clone();
        let events = blocking(move || store.events_after(after, limit)).await?;
        Ok(events
            .into_iter()
            .map(|p| LogEvent {
                seq: p.seq,
                event_type: p.event_type,
                kind: p.kind,
                session_id: p.session_id,
                json: p.json,
            })
            .collect())
    }

    /// Starts an attempt for every queue head that is due, up to the bound.
    fn dispatch(&mut self) {
        let now = self.app.now();
        for ((index, session), queue) in self.queues.iter_mut() {
            if self.in_flight >= MAX_IN_FLIGHT {
                return;
            }
            let Some(head) = queue.front_mut() else { continue };
            if head.in_flight || head.next_at > now || self.hooks.endpoints()[*index].is_disabled() {
                continue;
            }
            head.in_flight = true;
            self.in_flight += 1;
            let (app, hooks, client, tx) =
                (self.app.clone(), self.hooks.clone(), self.client.clone(), self.done_tx.clone());
            let (index, id, session) = (*index, head.id, session.clone());
            let known = head.body.clone().map(|body| (head.record.clone(), body));
            tokio::spawn(async move {
                if let Some(done) = attempt(&app, &hooks, &client, index, id, session.clone(), known).await {
                    let _ = tx.send(done);
                } else {
                    // The row could not be read: try again on the next round.
                    let record = DeliveryRecord {
                        id,
                        url: hooks.endpoints()[index].url().to_string(),
                        event_id: 0,
                        session_id: String::new(),
                        body: String::new(),
                        status: DeliveryStatus::Pending,
                        attempts: 0,
                        last_status: None,
                        last_error: None,
                        next_attempt_at: Some(app.now() + 1000),
                        created_at: 0,
                    };
                    let _ = tx.send(Done { endpoint: index, session, record, gone: false, save: false });
                }
            });
        }
    }

    /// Attempts came back: saves their outcomes in one store call, then
    /// advances or reschedules their queues. An outcome that could not be
    /// saved is still pending in the store, so after a restart it is sent
    /// again (the same webhook-id): at least once.
    async fn finish(&mut self, done: Vec<Done>) {
        let outcomes: Vec<DeliveryRecord> = done.iter().filter(|d| d.save).map(|d| d.record.clone()).collect();
        let store = self.app.store.clone();
        if let Err(e) = blocking(move || store.webhook_update(&outcomes)).await {
            tracing::warn!(error = %e, "webhooks: cannot save the outcomes of attempts");
        }
        for d in done {
            self.finish_one(d).await;
        }
        self.update_gauges();
    }

    async fn finish_one(&mut self, done: Done) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Done { endpoint, session, record, gone, .. } = done;
        let key = (endpoint, session);
        if let Some(queue) = self.queues.get_mut(&key).filter(|q| q.front().is_some_and(|e| e.id == record.id)) {
            if record.status == DeliveryStatus::Pending {
                if let Some(head) = queue.front_mut() {
                    head.in_flight = false;
                    head.next_at = record.next_attempt_at.unwrap_or(0);
                    if record.event_id != 0 {
                        head.record = DeliveryRecord { body: String::new(), ..record.clone() };
                    }
                }
            } else {
                if let Some(gone) = queue.pop_front() {
                    self.cached_bytes -= gone.body.map_or(0, |b| b.len());
                }
                self.known.remove(&record.id);
                if queue.is_empty() {
                    self.queues.remove(&key);
                }
            }
        }
        if gone {
            self.disable(endpoint, &record).await;
        }
    }

    /// `410 Gone`: the endpoint is disabled and its pending deliveries fail.
    async fn disable(&mut self, index: usize, record: &DeliveryRecord) {
        let url = self.hooks.endpoints()[index].url().to_string();
        let why = format!("disabled: answered 410 Gone to delivery {}", record.id);
        tracing::warn!(url = %url, "webhook endpoint answered 410 Gone; disabled until a failed delivery is retried");
        let keys: Vec<QueueKey> = self.queues.keys().filter(|(i, _)| *i == index).cloned().collect();
        let mut doomed = Vec::new();
        for key in keys {
            if let Some(queue) = self.queues.get(&key) {
                // One still in flight reports back by itself.
                doomed.extend(queue.iter().filter(|e| !e.in_flight).map(|e| e.id));
            }
            if let Some(queue) = self.queues.get_mut(&key) {
                let dropped: usize =
                    queue.iter().filter(|e| !e.in_flight).filter_map(|e| e.body.as_ref()).map(|b| b.len()).sum();
                self.cached_bytes -= dropped;
                queue.retain(|e| e.in_flight);
                if queue.is_empty() {
                    self.queues.remove(&key);
                }
            }
        }
        for id in &doomed {
            self.known.remove(id);
        }
        let (store, hooks, metrics) = (self.app.store.clone(), self.hooks.clone(), self.app.metrics.clone());
        let result = blocking(move || {
            hooks.set_disabled(index, Some(why), &*store)?;
            let mut failed = Vec::with_capacity(doomed.len());
            for id in doomed {
                if let Some(mut r) = store.webhook_get(id)? {
                    if r.status == DeliveryStatus::Pending {
                        r.status = DeliveryStatus::Failed;
                        r.next_attempt_at = None;
                        r.last_error = Some("not attempted: the endpoint answered 410 Gone and is disabled".into());
                        metrics.count_webhook_failed(&r.url);
                        failed.push(r);
                    }
                }
            }
            store.webhook_update(&failed)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, url = %url, "webhooks: could not record the disabled endpoint");
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Requeue(record) => self.push(record, None),
        }
        self.update_gauges();
    }

    /// The earliest time a queue head that is not in flight becomes due.
    fn next_due(&self) -> Option<Millis> {
        if self.in_flight >= MAX_IN_FLIGHT {
            return None; // woken by the next attempt that finishes
        }
        self.queues.values().filter_map(|q| q.front()).filter(|e| !e.in_flight).map(|e| e.next_at).min()
    }

    fn update_gauges(&self) {
        let mut depth = vec![0usize; self.hooks.endpoints().len()];
        for ((index, _), queue) in &self.queues {
            depth[*index] += queue.len();
        }
        for (endpoint, n) in self.hooks.endpoints().iter().zip(depth) {
            self.app.metrics.set_webhook_queue(endpoint.url(), n);
        }
    }
}

/// The event's `at` (its commit time) from its JSON, where the hub writes it
/// right after the id and type.
fn event_time(json: &str) -> Option<Millis> {
    let start = json.find(",\"at\":\"")? + 7;
    let end = start + json[start..].find('"')?;
    tether_engine::time::parse_rfc3339(&json[start..end])
}

/// One attempt: read the row, POST it signed, record the outcome. `None`
/// when the row could not be read or saved (the worker tries again later).
async fn attempt(
    app: &App,
    hooks: &Webhooks,
    client: &reqwest::Client,
    index: usize,
    id: u64,
    session: String,
    known: Option<(DeliveryRecord, Arc<str>)>,
) -> Option<Done> {
    let endpoint = &hooks.endpoints()[index];
    // The queue's copy when it has the body, else the row.
    let (mut record, body): (DeliveryRecord, Arc<str>) = match known {
        Some(k) => k,
        None => {
            let store = app.store.clone();
            match blocking(move || store.webhook_get(id)).await {
                Ok(Some(mut r)) => {
                    let body = Arc::from(std::mem::take(&mut r.body));
                    (r, body)
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read a delivery");
                    return None;
                }
            }
        }
    };
    if record.status != DeliveryStatus::Pending {
        // Settled meanwhile (by another node before a takeover): nothing to send.
        return Some(Done { endpoint: index, session, record, gone: false, save: false });
    }
    let msg_id = record.event_id.to_string();
    // The signature's timestamp is real time (receivers compare it with their
    // clock), whatever clock schedules the retries.
    let timestamp = crate::clock::SystemClock.now() / 1000;
    let signature = sign(&endpoint.config.secret, &msg_id, timestamp, &body);
    let started = app.now();
    let sent = client
        .post(endpoint.url())
        .timeout(hooks.timeout())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await;
    let now = app.now();
    record.attempts += 1;
    let mut retry_after = None;
    let mut gone = false;
    let outcome: &'static str = match &sent {
        Ok(r) => {
            let status = r.status();
            record.last_status = Some(status.as_u16());
            if status.is_success() {
                record.status = DeliveryStatus::Delivered;
                record.last_error = None;
                record.next_attempt_at = None;
                "2xx"
            } else {
                record.last_error = Some(format!("HTTP {status}"));
                if status == reqwest::StatusCode::GONE {
                    gone = true;
                    "410"
                } else {
                    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        retry_after = r.headers().get(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
                    }
                    if status.is_server_error() {
                        "5xx"
                    } else {
                        "4xx"
                    }
                }
            }
        }
        Err(e) if e.is_timeout() => {
            record.last_status = None;
            record.last_error = Some(format!("timed out after {:?}", hooks.timeout()));
            "timeout"
        }
        Err(e) => {
            record.last_status = None;
            // Without the URL: reqwest's message repeats it, the row already names it.
            record.last_error = Some(format!("request failed: {}", error_chain(e)));
            "error"
        }
    };
    if record.status != DeliveryStatus::Delivered {
        let step = record.attempts as usize - 1;
        match endpoint.config.retry.get(step) {
            Some(delay) if !gone => {
                let delay = retry_after.map_or(*delay, |r: Duration| r.max(*delay));
                record.next_attempt_at = Some(now + delay.as_millis() as Millis);
            }
            _ => {
                record.status = DeliveryStatus::Failed;
                record.next_attempt_at = None;
            }
        }
    }
    let metrics = &app.metrics;
    metrics.count_webhook_attempt(endpoint.url(), outcome);
    match record.status {
        DeliveryStatus::Delivered => metrics.count_webhook_delivered(endpoint.url(), now - record.created_at),
        DeliveryStatus::Failed => metrics.count_webhook_failed(endpoint.url()),
        DeliveryStatus::Pending => {}
    }
    *endpoint.last_error.lock() = record.last_error.clone();
    tracing::debug!(delivery = record.id, event = record.event_id, url = %endpoint.url(), outcome,
        ms = now - started, status = record.status.as_str(), "webhook attempt");
    // The worker saves the outcome with the others of its round.
    Some(Done { endpoint: index, session, record, gone, save: true })
}

/// `Retry-After`: whole seconds, or an HTTP date.
fn parse_retry_after(value: &reqwest::header::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// An error and its sources on one line (reqwest's own message is generic).
fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

use crate::clock::Clock as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let v = |s: &str| reqwest::header::HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_retry_after(&v("120")), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(&v("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
        let d = parse_retry_after(&v(&later)).unwrap();
        assert!(d > Duration::from_secs(290) && d <= Duration::from_secs(300), "{d:?}");
        assert_eq!(parse_retry_after(&v("soon")), None);
    }

    #[test]
    fn event_time_reads_the_hub_layout() {
        let json = r#"{"id":5,"type":"session.started","at":"2026-01-02T03:04:05.678Z","session":{"at":"x"}}"#;
        assert_eq!(event_time(json), tether_engine::time::parse_rfc3339("2026-01-02T03:04:05.678Z"));
    }
}

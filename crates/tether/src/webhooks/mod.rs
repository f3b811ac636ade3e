//! Webhooks (contract section 9): every event a `[[webhooks]]` endpoint asks
//! for is POSTed to it, signed per Standard Webhooks 1.0, at least once.
//!
//! This module owns the endpoints in force (config plus the persisted
//! `disabled` state), the signature, and the delivery worker ([`worker`]);
//! [`http`] has the admin endpoints. How it holds together:
//!
//! - **The outbox is the event log.** Every event is written to the store in
//!   the same transaction as the change that produced it, so the worker needs
//!   no write of its own on the commit path: it reads the log after a durable
//!   cursor (meta key [`crate::store::WEBHOOK_CURSOR`]) and turns each event
//!   into one delivery row per endpoint that wants it, moving the cursor in
//!   the same transaction. Rows are unique per `(url, event_id)`, so a crash
//!   between the two cannot create a delivery twice, and a delivery is
//!   durable before its first attempt: `kill -9` loses none.
//! - **An endpoint is its URL**: deliveries, counts and the disabled state are
//!   keyed by it. A URL removed from the config keeps its rows (listed, not sent).
//! - **Order**: per endpoint and session, only the oldest pending delivery is
//!   attempted; the next one waits until it is delivered or failed. Sessions
//!   do not wait for each other (at most [`MAX_IN_FLIGHT`] requests at once).
//! - **Attempts**: a 2xx within the timeout (15 s) is delivered. Anything else
//!   is retried after the next `retry` delay (for `429` and `5xx`, after
//!   `Retry-After` when that is longer); after the last, failed. `410 Gone`
//!   fails the delivery and disables the endpoint: its pending deliveries are
//!   failed and no new ones are made until an operator retries one of its
//!   failed deliveries, which turns it back on. Nothing is dropped for age or
//!   queue length.
//! - **Cluster**: only the node that owns the work ([`crate::app::App::owns_work`])
//!   runs the worker, so each delivery is attempted by one node at a time.

pub mod http;
mod worker;

pub use worker::run;

use crate::config::WebhookConfig;
use crate::store::Store;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A 2xx must arrive within this long.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Undocumented test knob: the timeout in milliseconds (tests of a slow receiver
/// must not wait 15 s per attempt).
const TIMEOUT_KNOB: &str = "TETHER_WEBHOOK_TIMEOUT_MS";
/// Requests in flight at once, over every endpoint and session.
pub const MAX_IN_FLIGHT: usize = 32;

/// The meta key of an endpoint's disabled state (value: why, or empty when active).
fn disabled_key(url: &str) -> String {
    format!("webhooks.disabled:{url}")
}

/// A configured endpoint and its state.
pub struct Endpoint {
    pub config: WebhookConfig,
    disabled: AtomicBool,
    /// The last attempt's error; `None` after a success.
    last_error: Mutex<Option<String>>,
}

impl Endpoint {
    pub fn url(&self) -> &str {
        &self.config.url
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Whether this endpoint gets an event of `event_type` about a session of `kind`.
    pub fn wants(&self, event_type: tether_engine::EventType, kind: &str) -> bool {
        self.config.events.contains(&event_type)
            && self.config.kinds.as_ref().is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }
}

/// What the admin endpoints tell the worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// A failed delivery was set pending again: attempt it.
    Requeue(crate::store::DeliveryRecord),
}

/// The endpoints in force and the channel to the worker.
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    commands: mpsc::UnboundedSender<Command>,
    /// Taken by the worker when it starts.
    inbox: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Webhooks {
    /// The configured endpoints, with their disabled state read from the store.
    pub fn new(configs: Vec<WebhookConfig>, store: &dyn Store) -> Result<Webhooks, crate::store::StoreError> {
        let mut endpoints = Vec::with_capacity(configs.len());
        for config in configs {
            let why = store.meta_get(&disabled_key(&config.url))?.filter(|w| !w.is_empty());
            endpoints.push(Endpoint { config, disabled: AtomicBool::new(why.is_some()), last_error: Mutex::new(why) });
        }
        let timeout = std::env::var(TIMEOUT_KNOB)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(TIMEOUT);
        let (commands, inbox) = mpsc::unbounded_channel();
        Ok(Webhooks { endpoints, timeout, commands, inbox: Mutex::new(Some(inbox)) })
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, url: &str) -> Option<(usize, &Endpoint)> {
        self.endpoints.iter().enumerate().find(|(_, e)| e.url() == url)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn tell(&self, command: Command) {
        // No worker (not started, or stopping): the row is pending in the
        // store and the next worker loads it.
        let _ = self.commands.send(command);
    }

    /// Sets and persists an endpoint's state (`why` = `None` turns it back on).
    pub(crate) fn set_disabled(
        &self,
        index: usize,
        why: Option<String>,
        store: &dyn Store,
    ) -> Result<(), crate::store::StoreError> {
        let endpoint = &self.endpoints[index];
        store.meta_put(&disabled_key(endpoint.url()), why.as_deref().unwrap_or(""))?;
        endpoint.disabled.store(why.is_some(), Ordering::Release);
        if why.is_some() {
            *endpoint.last_error.lock() = why;
        }
        Ok(())
    }
}

/// The Standard Webhooks 1.0 signature header value: `v1,` + base64 of
/// HMAC-SHA256(`secret`, `id.timestamp.body`).
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    use base64::Engine as _;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference
    /// libraries test the same values).
    #[test]
    fn signature_matches_the_specification_example() {
        let secret = crate::config::decode_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}

//! Durable state behind the engine. The [`Store`] trait is what the journal
//! thread writes through (sessions, invites, documents and the event log, one
//! transaction per batch) and what the API reads ended sessions, history and
//! older events from: SQLite (the embedded default), memory, and PostgreSQL,
//! which also carries a cluster's lease, fencing and membership
//! ([`PostgresStore`], `crate::cluster`).

mod memory;
pub mod postgres;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::hub::Published;
use std::sync::Arc;
use tether_engine::{Invite, Millis, Session, Write};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    /// A cluster node that lost its lease tried to commit: refused, nothing applied.
    #[error("this node no longer owns the cluster's work: {0}")]
    Fenced(String),
    #[error("store URL {0:?} is not supported (use sqlite://PATH, memory or postgres://…)")]
    BadUrl(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// One durable change. Engine writes plus small documents owned by modules on
/// top of the engine (matching keeps profiles, exclusions and matches here).
#[derive(Clone, Debug)]
pub enum StoreWrite {
    Engine(Write),
    /// Upsert (`Some`) or delete (`None`) a JSON document in a collection.
    Doc {
        collection: &'static str,
        key: String,
        value: Option<String>,
    },
    /// Appends a stamped event to the event log (history, resume, webhooks,
    /// and a cluster's fan-out read it), in the same transaction as its change.
    Event(Arc<Published>),
    /// A session with its record already serialised: the journal serialises
    /// each session once and shares the text with the events that carry the
    /// same snapshot (the same as `Engine(Write::Session)` otherwise).
    Session(Arc<Session>, Arc<str>),
}

impl StoreWrite {
    /// A session write's session and its JSON record (serialised here unless
    /// the journal already did), or `None` for other writes.
    pub fn session_record(&self) -> Option<Result<(&Session, std::borrow::Cow<'_, str>), StoreError>> {
        match self {
            StoreWrite::Engine(Write::Session(s)) => {
                Some(to_json(&**s).map(|json| (&**s, std::borrow::Cow::Owned(json))))
            }
            StoreWrite::Session(s, json) => Some(Ok((&**s, std::borrow::Cow::Borrowed(&**json)))),
            _ => None,
        }
    }
}

/// Which sessions `GET /v1/sessions` lists.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub kind: Option<String>,
    /// Any of these statuses (empty: all).
    pub statuses: Vec<String>,
    pub user_id: Option<String>,
    /// Only sessions the given user may see (owner, member or participant).
    pub visible_to: Option<String>,
    /// Ids sort in creation order (UUIDv7); the cursor is the last id seen.
    pub after_id: Option<String>,
    pub limit: usize,
}

pub trait Store: Send + Sync + 'static {
    /// Applies a batch atomically and durably; returns only once it is on disk.
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError>;
    /// Every invite (recovery reads live sessions with [`Store::live_pages`]).
    fn invites(&self) -> Result<Vec<Invite>, StoreError>;
    /// Every live session, for recovery, handed to `page` a page of at most
    /// [`LIVE_PAGE`] at a time (in no particular order), so recovery holds a
    /// few pages of wire-form sessions beside the engine's compact records.
    /// This default reads them with [`Store::list`] in id order.
    fn live_pages(&self, page: &mut dyn FnMut(Vec<Session>)) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let filter = ListFilter {
                statuses: LIVE_STATUSES.map(String::from).to_vec(),
                after_id: after,
                limit: LIVE_PAGE,
                ..ListFilter::default()
            };
            let sessions = self.list(&filter)?;
            let done = sessions.len() < LIVE_PAGE;
            after = sessions.last().map(|s| s.id.clone());
            if !sessions.is_empty() {
                page(sessions);
            }
            if done {
                return Ok(());
            }
        }
    }
    fn get(&self, id: &str) -> Result<Option<Session>, StoreError>;
    fn list(&self, filter: &ListFilter) -> Result<Vec<Session>, StoreError>;
    /// Ended sessions whose `ended_at` is before the cutoff of their kind
    /// (`cutoff(kind)`); deletes them unless `dry_run`. Returns how many.
    fn purge(&self, cutoff: &dyn Fn(&str) -> Millis, dry_run: bool) -> Result<usize, StoreError>;
    fn docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError>;
    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Stores `value` unless the key has one; returns the value that stays
    /// (cluster nodes started together agree on one generated secret).
    fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError>;
    /// Events with ids above `after`, in id order, at most `limit`.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Published>, StoreError>;
    /// Every logged event of one session, in order.
    fn session_events(&self, session_id: &str) -> Result<Vec<Published>, StoreError>;
    /// The newest id of an event the log no longer has (purged with its
    /// session); `None` if none was purged.
    fn events_floor(&self) -> Option<u64>;
    /// Whether the event log outlives the process (not so for `memory`).
    fn durable_events(&self) -> bool {
        true
    }
    /// A short description for logs and health (`sqlite:///path (WAL)`).
    fn describe(&self) -> String;

    // --- Webhook deliveries (the `webhooks` module; table `webhook_deliveries`
    // and the meta key [`WEBHOOK_CURSOR`]). Kept apart from the journal's writes.

    /// Inserts the deliveries that do not exist yet (unique per `(url,
    /// event_id)`, so a batch re-read after a crash creates none twice) and
    /// moves the cursor to `cursor`, in one transaction. Returns every
    /// delivery of the batch as stored (new or already there).
    fn webhook_enqueue(&self, new: &[NewDelivery], cursor: u64) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Pending deliveries in id order, without bodies (the worker's queue after a start).
    fn webhook_pending(&self) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// One delivery with its body.
    fn webhook_get(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError>;
    /// Saves the outcomes of attempts (status, attempts, last_*,
    /// next_attempt_at), all in one transaction: the worker writes a round's
    /// outcomes together (one fsync, not one per delivery).
    fn webhook_update(&self, records: &[DeliveryRecord]) -> Result<(), StoreError>;
    /// Deliveries with id > `after`, in id order, optionally of one status, without bodies.
    fn webhook_list(
        &self,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Per URL: (pending, failed) counts.
    fn webhook_counts(&self) -> Result<Vec<(String, u64, u64)>, StoreError>;
}

/// The meta key holding the id of the last event the webhook worker turned into deliveries.
pub const WEBHOOK_CURSOR: &str = "webhooks.cursor";

pub use crate::wire::webhooks::DeliveryStatus;

/// A delivery to create: one event for one endpoint.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub url: String,
    pub event_id: u64,
    pub session_id: String,
    /// The event's JSON exactly as on `/v1/events` (the POST body).
    pub body: String,
    /// The event's time (`at`): delivery latency counts from it.
    pub created_at: Millis,
}

/// A stored delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: u64,
    pub url: String,
    pub event_id: u64,
    pub session_id: String,
    /// Empty when read without bodies.
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// While pending: when the next attempt is due.
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
}

/// Sessions per page of [`Store::live_pages`].
pub const LIVE_PAGE: usize = 10_000;

/// The statuses of a live session, as stored.
const LIVE_STATUSES: [&str; 3] = ["waiting", "active", "completing"];

/// A record as the stores keep it (JSON text).
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A record read back; text that does not parse is a corrupt record.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
}

/// The JSON text an event's audience is stored as.
pub(crate) fn audience_json(audience: &[String]) -> String {
    serde_json::to_string(audience).unwrap_or_else(|_| "[]".into())
}

/// An event read back from the log.
pub(crate) fn stored_event(
    seq: i64,
    session_id: String,
    kind: String,
    event_type: &str,
    audience: &str,
    json: String,
) -> Result<Published, StoreError> {
    Ok(Published {
        seq: seq as u64,
        event_type: tether_engine::EventType::parse(event_type)
            .ok_or_else(|| StoreError::Backend(format!("corrupt event log: unknown type {event_type:?}")))?,
        kind,
        session_id,
        audience: serde_json::from_str(audience)
            .map_err(|e| StoreError::Backend(format!("corrupt event log audience: {e}")))?,
        json,
        deadline: None,
        lean: Default::default(),
    })
}

/// The PostgreSQL store if the URL names one (a cluster node), else `None`.
pub fn open_postgres(url: &str) -> Result<Option<Arc<PostgresStore>>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Some(Arc::new(PostgresStore::open(url)?)));
    }
    Ok(None)
}

/// Opens the store named by a URL: `sqlite://PATH`, `memory`,
/// `postgres://…` / `postgresql://…` (one node; `?schema=NAME` picks the schema).
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url == "memory" || url == "memory://" {
        return Ok(Arc::new(MemoryStore::default()));
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::BadUrl(url.to_string()));
        }
        return Ok(Arc::new(SqliteStore::open(path)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url)?));
    }
    Err(StoreError::BadUrl(url.to_string()))
}

pub(crate) fn matches_filter(s: &Session, f: &ListFilter) -> bool {
    f.kind.as_ref().is_none_or(|k| &s.kind == k)
        && (f.statuses.is_empty() || f.statuses.iter().any(|st| s.status.as_str() == st))
        && f.user_id.as_ref().is_none_or(|u| &s.user_id == u)
        && f.visible_to.as_ref().is_none_or(|u| s.visible_to(u))
        && f.after_id.as_ref().is_none_or(|a| s.id.as_str() > a.as_str())
}

//! Durable state behind the engine. The [`Store`] trait is what the journal
//! thread writes through and what the API reads ended sessions from:
//! SQLite (the embedded default), memory, and PostgreSQL for one node
//! (batches are transactions; reads are plain queries; several nodes sharing
//! one database are not built yet, see [`PostgresStore`]).

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
    /// Live sessions and all invites, for recovery at start.
    fn load_live(&self) -> Result<(Vec<Session>, Vec<Invite>), StoreError>;
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

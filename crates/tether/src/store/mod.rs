//! Durable state behind the engine. The [`Store`] trait is what the journal
//! thread writes through and what the API reads ended sessions from:
//! SQLite (the embedded default), memory, and PostgreSQL for one node
//! (batches are transactions; reads are plain queries; several nodes sharing
//! one database are not built yet, see [`PostgresStore`]).

mod memory;
mod postgres;
mod sqlite;

pub use self::postgres::PostgresStore;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;
use tether_engine::{Invite, Millis, Session, Write};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
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
    /// A short description for logs and health (`sqlite:///path (WAL)`).
    fn describe(&self) -> String;
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

//! The embedded SQLite store: one file in WAL mode, created and migrated on
//! first open. Each journal batch is one transaction with `synchronous=FULL`,
//! so an acknowledged change survives `kill -9` and power loss; batching
//! (group commit) keeps that affordable. Sessions are rows with their indexed
//! fields beside the JSON record; events are rows of the event log.
//!
//! The WAL stays bounded on disk: a background thread checkpoints it every
//! 500 ms in PASSIVE mode (never blocking the writer), and when the file
//! nevertheless passes [`WAL_LIMIT`] (passive checkpoints cannot restart a WAL
//! that readers keep pinned under sustained writes) it runs one `TRUNCATE`
//! checkpoint, which waits for readers, briefly holds writers back and cuts
//! the file to zero; `journal_size_limit` trims what is left after the
//! ordinary checkpoints.

use super::{
    from_json, to_json, DeliveryRecord, DeliveryStatus, ListFilter, NewDelivery, Store, StoreError, StoreWrite,
    WEBHOOK_CURSOR,
};
use crate::hub::Published;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use tether_engine::{Invite, Millis, Session, Write};

pub struct SqliteStore {
    path: String,
    /// The journal thread's connection (the only writer).
    writer: Mutex<Connection>,
    /// Reads run beside the writer thanks to WAL.
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  ended_at INTEGER,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions(status) WHERE status <> 'ended';
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id, id);
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions(ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS invites (token TEXT PRIMARY KEY, session_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (collection, key));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  session_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  type TEXT NOT NULL,
  audience TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session_id, id);
PRAGMA user_version = 2;
";

/// Webhook deliveries (the `webhooks` module): unique per endpoint and event,
/// so re-reading the event log after a crash creates no delivery twice.
const WEBHOOK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  url TEXT NOT NULL,
  event_id INTEGER NOT NULL,
  session_id TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_at INTEGER,
  created_at INTEGER NOT NULL,
  UNIQUE (url, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries(status, id);
";

/// The columns of a [`DeliveryRecord`] without the body, then the body (or '').
const DELIVERY_COLS: &str =
    "id, url, event_id, session_id, status, attempts, last_status, last_error, next_attempt_at, created_at";

fn delivery_row(r: &rusqlite::Row, body: bool) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(4)?;
    Ok(DeliveryRecord {
        id: r.get::<_, i64>(0)? as u64,
        url: r.get(1)?,
        event_id: r.get::<_, i64>(2)? as u64,
        session_id: r.get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts: r.get(5)?,
        last_status: r.get(6)?,
        last_error: r.get(7)?,
        next_attempt_at: r.get(8)?,
        created_at: r.get(9)?,
        body: if body { r.get(10)? } else { String::new() },
    })
}

fn connect(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &str) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_wal_limit(path, WAL_LIMIT)
    }

    /// [`SqliteStore::open`] with another bound on the WAL file (tests).
    pub fn open_with_wal_limit(path: &str, wal_limit: u64) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA)?;
        writer.execute_batch(WEBHOOK_SCHEMA)?;
        // The commit that crosses SQLite's auto-checkpoint threshold would copy
        // the WAL into the database inside the journal's critical path (tens of
        // ms, seen as a p99 spike in expiry lateness). Checkpoints run on their
        // own thread instead, in PASSIVE mode, which never blocks the writer.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.pragma_update(None, "journal_size_limit", WAL_KEEP as i64)?;
        let reader = connect(path)?;
        spawn_checkpointer(path, wal_limit)?;
        Ok(SqliteStore { path: path.to_string(), writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }
}

impl SqliteStore {
    fn floor_in(&self, conn: &Connection) -> Result<Option<u64>, StoreError> {
        let value: Option<String> =
            conn.query_row("SELECT value FROM meta WHERE key = 'events.floor'", [], |r| r.get(0)).optional()?;
        Ok(value.and_then(|v| v.parse().ok()))
    }
}

/// Records of live sessions as read, one page of them, before parsing.
#[derive(Default)]
struct RawPage {
    text: String,
    ends: Vec<usize>,
}

type Parsed = Result<Vec<Session>, StoreError>;

impl RawPage {
    fn push(&mut self, record: &str) {
        self.text.push_str(record);
        self.ends.push(self.text.len());
    }
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn parse(&self) -> Parsed {
        let mut start = 0;
        let mut out = Vec::with_capacity(self.ends.len());
        for &end in &self.ends {
            out.push(from_json::<Session>(&self.text[start..end])?);
            start = end;
        }
        Ok(out)
    }
}

/// Pages parsed in any order, handed over in the order they were read.
struct InOrder {
    next: usize,
    waiting: std::collections::BTreeMap<usize, Parsed>,
}

impl InOrder {
    fn take(&mut self, (seq, parsed): (usize, Parsed), page: &mut dyn FnMut(Vec<Session>)) -> Result<(), StoreError> {
        self.waiting.insert(seq, parsed);
        while let Some(parsed) = self.waiting.remove(&self.next) {
            page(parsed?);
            self.next += 1;
        }
        Ok(())
    }
}

type EventRow = Result<Published, StoreError>;

fn read_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let event_type: String = r.get(3)?;
    let audience: String = r.get(4)?;
    Ok(super::stored_event(r.get(0)?, r.get(1)?, r.get(2)?, &event_type, &audience, r.get(5)?))
}

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// Past this size the WAL is checkpointed with `TRUNCATE`.
pub const WAL_LIMIT: u64 = 256 * 1024 * 1024;
/// What `journal_size_limit` leaves of a reset WAL.
const WAL_KEEP: u64 = 64 * 1024 * 1024;

/// Checkpoints the WAL into the database file in the background. The thread
/// ends when the database file can no longer be opened or checkpointed
/// (the store is gone); the WAL is also checkpointed when SQLite next opens it.
fn spawn_checkpointer(path: &str, wal_limit: u64) -> Result<(), StoreError> {
    let conn = connect(path)?;
    let wal = format!("{path}-wal");
    std::thread::Builder::new()
        .name("tether-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            let mode = if wal_bytes > wal_limit { "TRUNCATE" } else { "PASSIVE" };
            if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; stopping the checkpointer");
                return;
            }
            if mode == "TRUNCATE" {
                let after = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                tracing::debug!(wal_bytes, after, "the WAL passed its bound; checkpointed and truncated");
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(())
}

impl Store for SqliteStore {
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sessions (id, kind, user_id, status, ended_at, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at, record = excluded.record",
            )?;
            // Once per commit, not per event (the cache lookup and its
            // guard's drop cost ~1.5k instructions an event). `OR IGNORE`
            // (an id is stamped once; PostgreSQL's is `ON CONFLICT DO
            // NOTHING`) rather than `OR REPLACE`, which may delete a row and
            // so makes SQLite open a statement journal for every event and
            // copy each page it touches into it.
            let mut insert_event = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (id, session_id, kind, type, audience, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for w in writes {
                match w {
                    StoreWrite::Engine(Write::Session(_)) | StoreWrite::Session(..) => {
                        let Some(written) = w.session_record() else { continue };
                        let (s, record) = written?;
                        upsert.execute(params![s.id, s.kind, s.user_id, s.status.as_str(), s.ended_at, record])?;
                    }
                    StoreWrite::Engine(Write::Invite(i)) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO invites (token, session_id, record) VALUES (?1, ?2, ?3)",
                            params![i.token, i.session_id, to_json(i)?],
                        )?;
                    }
                    StoreWrite::Engine(Write::DeleteInvite(t)) => {
                        tx.execute("DELETE FROM invites WHERE token = ?1", params![t])?;
                    }
                    StoreWrite::Doc { collection, key, value: Some(v) } => {
                        tx.execute(
                            "INSERT OR REPLACE INTO docs (collection, key, value) VALUES (?1, ?2, ?3)",
                            params![collection, key, v],
                        )?;
                    }
                    StoreWrite::Doc { collection, key, value: None } => {
                        tx.execute("DELETE FROM docs WHERE collection = ?1 AND key = ?2", params![collection, key])?;
                    }
                    StoreWrite::Event(e) => {
                        insert_event.execute(params![
                            e.seq as i64,
                            e.session_id,
                            e.kind,
                            e.event_type.as_str(),
                            super::audience_json(&e.audience),
                            e.json
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One statement over the whole table (in rowid order, which is
    /// creation order) instead of [`Store::list`]'s pages; the records of a
    /// page are copied out raw and parsed on one thread per core, and the
    /// parsed pages handed over in their order. Parsing the JSON is most of
    /// recovery (measured with callgrind: two thirds of its instructions), so
    /// this is where the cores help.
    fn live_pages(&self, page: &mut dyn FnMut(Vec<Session>)) -> Result<(), StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare("SELECT record FROM sessions WHERE status <> 'ended'")?;
        let mut rows = stmt.query([])?;
        let parsers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<(usize, RawPage)>(parsers);
        let raw_rx = Mutex::new(raw_rx);
        let (parsed_tx, parsed_rx) = std::sync::mpsc::sync_channel::<(usize, Parsed)>(parsers);
        std::thread::scope(|scope| {
            // Owned by this closure, so that an early return (an error) drops
            // them and the parsers, seeing their channels closed, end.
            let (raw_tx, parsed_rx) = (raw_tx, parsed_rx);
            for _ in 0..parsers {
                let (raw_rx, parsed_tx) = (&raw_rx, parsed_tx.clone());
                scope.spawn(move || loop {
                    let Ok((seq, raw)) = raw_rx.lock().recv() else { return };
                    if parsed_tx.send((seq, raw.parse())).is_err() {
                        return;
                    }
                });
            }
            drop(parsed_tx);
            let mut in_order = InOrder { next: 0, waiting: std::collections::BTreeMap::new() };
            let mut raw = RawPage::default();
            let mut seq = 0;
            loop {
                let row = rows.next()?;
                if let Some(row) = &row {
                    let record =
                        row.get_ref(0)?.as_str().map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))?;
                    raw.push(record);
                }
                if raw.len() == super::LIVE_PAGE || (row.is_none() && raw.len() > 0) {
                    let mut item = (seq, std::mem::take(&mut raw));
                    seq += 1;
                    // Never block on a full queue while the parsers wait for
                    // us to take their results: take one, then try again.
                    while let Err(e) = raw_tx.try_send(item) {
                        match e {
                            std::sync::mpsc::TrySendError::Full(back) => item = back,
                            std::sync::mpsc::TrySendError::Disconnected(_) => {
                                return Err(StoreError::Backend("the recovery parsers stopped".into()))
                            }
                        }
                        let parsed =
                            parsed_rx.recv().map_err(|_| StoreError::Backend("the recovery parsers stopped".into()))?;
                        in_order.take(parsed, page)?;
                    }
                    while let Ok(parsed) = parsed_rx.try_recv() {
                        in_order.take(parsed, page)?;
                    }
                }
                if row.is_none() {
                    break;
                }
            }
            drop(raw_tx);
            for parsed in parsed_rx {
                in_order.take(parsed, page)?;
            }
            Ok(())
        })
    }

    fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare("SELECT record FROM invites")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| from_json::<Invite>(&r?)).collect()
    }

    fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let conn = self.reader.lock();
        let record: Option<String> = conn
            .prepare_cached("SELECT record FROM sessions WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?;
        record.map(|r| from_json(&r)).transpose()
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Session>, StoreError> {
        let conn = self.reader.lock();
        let mut sql = String::from("SELECT record FROM sessions WHERE id > ?1");
        let mut args: Vec<String> = vec![f.after_id.clone().unwrap_or_default()];
        for (col, val) in [("kind", &f.kind), ("user_id", &f.user_id)] {
            if let Some(v) = val {
                args.push(v.clone());
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            }
        }
        if !f.statuses.is_empty() {
            let mut marks = Vec::new();
            for st in &f.statuses {
                args.push(st.clone());
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY id");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let s: Session = from_json(&row?)?;
            if f.visible_to.as_ref().is_none_or(|u| s.visible_to(u)) {
                out.push(s);
                if out.len() >= f.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn purge(&self, cutoff: &dyn Fn(&str) -> Millis, dry_run: bool) -> Result<usize, StoreError> {
        let conn = self.writer.lock();
        let mut stmt = conn.prepare("SELECT id, kind, ended_at FROM sessions WHERE ended_at IS NOT NULL")?;
        let doomed: Vec<String> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
            .filter_map(|r| r.ok())
            .filter(|(_, kind, ended)| *ended < cutoff(kind))
            .map(|(id, _, _)| id)
            .collect();
        if !dry_run && !doomed.is_empty() {
            conn.execute_batch("BEGIN")?;
            let mut purged_events: Option<i64> = None;
            for id in &doomed {
                conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
                let newest: Option<i64> =
                    conn.query_row("SELECT max(id) FROM events WHERE session_id = ?1", params![id], |r| r.get(0))?;
                purged_events = purged_events.max(newest);
                conn.execute("DELETE FROM events WHERE session_id = ?1", params![id])?;
            }
            if let Some(newest) = purged_events {
                let floor = self.floor_in(&conn)?.unwrap_or(0).max(newest as u64);
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('events.floor', ?1)",
                    params![floor.to_string()],
                )?;
            }
            conn.execute_batch("COMMIT")?;
        }
        Ok(doomed.len())
    }

    fn docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare("SELECT key, value FROM docs WHERE collection = ?1")?;
        let rows = stmt.query_map(params![collection], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.reader.lock();
        Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
    }

    fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.writer.lock();
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(())
    }

    fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let conn = self.writer.lock();
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))?)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Published>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, session_id, kind, type, audience, json FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after as i64, limit as i64], read_event)?;
        rows.map(|r| r?).collect()
    }

    fn session_events(&self, session_id: &str) -> Result<Vec<Published>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, session_id, kind, type, audience, json FROM events WHERE session_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![session_id], read_event)?;
        rows.map(|r| r?).collect()
    }

    fn events_floor(&self) -> Option<u64> {
        self.floor_in(&self.reader.lock()).ok().flatten()
    }

    fn describe(&self) -> String {
        format!("sqlite://{} (WAL, synchronous=FULL)", self.path)
    }

    fn webhook_enqueue(&self, new: &[NewDelivery], cursor: u64) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(new.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO webhook_deliveries (url, event_id, session_id, body, status, attempts, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5) ON CONFLICT (url, event_id) DO NOTHING",
            )?;
            let mut read = tx.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE url = ?1 AND event_id = ?2"
            ))?;
            for d in new {
                insert.execute(params![d.url, d.event_id as i64, d.session_id, d.body, d.created_at])?;
                out.push(read.query_row(params![d.url, d.event_id as i64], |r| delivery_row(r, false))?);
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![WEBHOOK_CURSOR, cursor.to_string()],
        )?;
        tx.commit()?;
        Ok(out)
    }

    fn webhook_pending(&self) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.webhook_list(Some(DeliveryStatus::Pending), 0, usize::MAX)
    }

    fn webhook_get(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {DELIVERY_COLS}, body FROM webhook_deliveries WHERE id = ?1"))?;
        Ok(stmt.query_row(params![id as i64], |r| delivery_row(r, true)).optional()?)
    }

    fn webhook_update(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.lock();
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, last_status = ?4, last_error = ?5,
                 next_attempt_at = ?6 WHERE id = ?1",
            )?;
            for d in records {
                update.execute(params![
                    d.id as i64,
                    d.status.as_str(),
                    d.attempts,
                    d.last_status,
                    d.last_error,
                    d.next_attempt_at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn webhook_list(
        &self,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let conn = self.reader.lock();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = match status {
            Some(st) => conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE status = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(params![st.as_str(), after, limit], |r| delivery_row(r, false))?
                .collect::<Result<Vec<_>, _>>()?,
            None => conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(params![after, limit], |r| delivery_row(r, false))?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    fn webhook_counts(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT url, sum(status = 'pending'), sum(status = 'failed') FROM webhook_deliveries
             WHERE status <> 'delivered' GROUP BY url",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

//! The PostgreSQL store, for **one** Tether node whose state lives in a
//! PostgreSQL database (`--store postgres://USER@HOST:PORT/DB?schema=NAME`).
//!
//! ## What it is
//! - The same tables as the SQLite store (`sessions` with its indexed columns
//!   beside the JSON record, `invites`, `docs`, `meta`), created on first
//!   connect with `CREATE TABLE IF NOT EXISTS` in the schema named by
//!   `?schema=NAME` (a Tether option, stripped before the URL reaches the
//!   driver; the schema is created if missing) or else the connection's
//!   `search_path` (e.g. `?options=-csearch_path%3Dtether`; that schema must
//!   exist). Ids, kinds, users and doc keys use `COLLATE "C"`, so listing and
//!   cursors follow byte order exactly as the other stores do.
//! - Each journal batch is one transaction, a handful of statements whatever
//!   its size (`unnest` arrays; several writes of one row in a batch collapse
//!   to the last). `commit` returns once PostgreSQL acknowledged the COMMIT;
//!   the writer connection insists on `synchronous_commit` being at least
//!   `on`/`local` (it turns `off` back on), so an answered change is flushed
//!   to PostgreSQL's WAL and survives `kill -9` of Tether (and of PostgreSQL).
//! - Two connections, like SQLite: a writer (journal commits, `meta_put`,
//!   `purge`) and a reader (`get`, `list`, `docs`, `meta_get`, `live_pages`).
//!   Each lives on its own plain thread and calls are handed to it over a
//!   channel: the synchronous `postgres` client runs a private tokio runtime
//!   and would panic if driven from inside the server's runtime (async
//!   handlers and `App::build` call the store directly). A connection that
//!   broke (PostgreSQL restarted) is reopened on the next call, and the call
//!   is retried once on the fresh connection (every write is an idempotent
//!   upsert or delete, so a retried batch cannot double-apply).
//! - No TLS: `sslmode=require` is refused by the driver (`NoTls`); use a
//!   local socket, loopback or a TLS-terminating proxy.
//!
//! ## Several nodes
//! Every node on one schema joins one cluster (`crate::cluster` decides who
//! owns the work). What this store gives it:
//! - `cluster_lease`, one row: the holder node, its fencing `epoch` and
//!   `expires_at`, all timed by the database's clock (`now()`), so no node's
//!   clock matters. [`PostgresStore::lease_acquire`] takes an expired lease
//!   and bumps the epoch; [`PostgresStore::lease_renew`] extends it.
//! - Fencing: once a node holds the lease, every journal commit first locks
//!   the lease row `FOR SHARE` and checks that this node still holds it with
//!   the same epoch and that it has not expired; otherwise the transaction
//!   rolls back with [`StoreError::Fenced`]. A takeover's `UPDATE` waits for
//!   commits holding that lock, so a change is committed either before the
//!   new owner loads the state or not at all: a node paused past its lease
//!   (SIGSTOP/SIGCONT) applies nothing.
//! - `cluster_nodes`: membership (`id`, `advertise`, `started_at`, `last_seen_at`).
//! - The event log (`events`): written in each commit's transaction; after a
//!   commit with events the writer sends `NOTIFY tether_events` (outside the
//!   transaction, so commits never queue on PostgreSQL's notify lock) as a
//!   wake-up hint for the other nodes' tails ([`PostgresStore::listen`]).
//! - Schema creation runs under a transaction-level advisory lock, so nodes
//!   started together do not race on `CREATE TABLE IF NOT EXISTS`.

use super::{
    from_json, to_json, DeliveryRecord, DeliveryStatus, ListFilter, NewDelivery, Store, StoreError, StoreWrite,
    WEBHOOK_CURSOR,
};
use crate::hub::Published;
use ::postgres::{Client, Config, NoTls, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::Duration;
use tether_engine::{Invite, Millis, Session, Write};

/// Connect timeout when the URL names none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows fetched per round when `list` filters by visibility in Rust.
const VISIBLE_CHUNK: usize = 500;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT COLLATE "C" PRIMARY KEY,
  kind TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL,
  status TEXT NOT NULL,
  ended_at BIGINT,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions (status) WHERE status <> 'ended';
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id, id);
CREATE INDEX IF NOT EXISTS sessions_kind ON sessions (kind, id);
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS invites (token TEXT PRIMARY KEY, session_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (collection TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL, PRIMARY KEY (collection, key));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  id BIGINT PRIMARY KEY,
  session_id TEXT COLLATE "C" NOT NULL,
  kind TEXT NOT NULL,
  type TEXT NOT NULL,
  audience TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events (session_id, id);
CREATE TABLE IF NOT EXISTS cluster_lease (
  id INT PRIMARY KEY,
  holder TEXT,
  epoch BIGINT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO cluster_lease (id, holder, epoch, expires_at) VALUES (1, NULL, 0, now()) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS cluster_nodes (
  id TEXT PRIMARY KEY,
  advertise TEXT NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  last_seen_at TIMESTAMPTZ NOT NULL
);
"#;

/// Webhook deliveries (the `webhooks` module): unique per endpoint and event.
const WEBHOOK_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id BIGSERIAL PRIMARY KEY,
  url TEXT NOT NULL,
  event_id BIGINT NOT NULL,
  session_id TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_at BIGINT,
  created_at BIGINT NOT NULL,
  UNIQUE (url, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries (status, id);
"#;

/// The columns of a [`DeliveryRecord`] without the body.
const DELIVERY_COLS: &str =
    "id, url, event_id, session_id, status, attempts, last_status, last_error, next_attempt_at, created_at";

fn delivery_row(r: &::postgres::Row, body: bool) -> DeliveryRecord {
    DeliveryRecord {
        id: r.get::<_, i64>(0) as u64,
        url: r.get(1),
        event_id: r.get::<_, i64>(2) as u64,
        session_id: r.get(3),
        status: DeliveryStatus::parse(r.get(4)).unwrap_or(DeliveryStatus::Pending),
        attempts: r.get::<_, i32>(5) as u32,
        last_status: r.get::<_, Option<i32>>(6).map(|s| s as u16),
        last_error: r.get(7),
        next_attempt_at: r.get(8),
        created_at: r.get(9),
        body: if body { r.get(10) } else { String::new() },
    }
}
const INSERT_EVENTS: &str = "INSERT INTO events (id, session_id, kind, type, audience, json)
     SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
     ON CONFLICT (id) DO NOTHING";
const FENCE: &str =
    "SELECT 1 FROM cluster_lease WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now() FOR SHARE";

const UPSERT_SESSIONS: &str = "INSERT INTO sessions (id, kind, user_id, status, ended_at, record)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[])
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, user_id = excluded.user_id, status = excluded.status,
       ended_at = excluded.ended_at, record = excluded.record";
const UPSERT_INVITES: &str = "INSERT INTO invites (token, session_id, record)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
     ON CONFLICT (token) DO UPDATE SET session_id = excluded.session_id, record = excluded.record";
const DELETE_INVITES: &str = "DELETE FROM invites WHERE token = ANY($1::text[])";
const UPSERT_DOCS: &str = "INSERT INTO docs (collection, key, value)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
     ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value";
const DELETE_DOCS: &str = "DELETE FROM docs d USING unnest($1::text[], $2::text[]) AS x(collection, key)
     WHERE d.collection = x.collection AND d.key = x.key";

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        StoreError::Backend(pg_message(&e))
    }
}

fn pg_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("postgres: {}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    }
}

/// `"name"` with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock key of a schema (FNV-1a 64 of `tether:SCHEMA`).
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"tether:".iter().chain(schema.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// A parsed `postgres://` URL: the driver's config plus Tether's own options.
#[derive(Clone, Debug)]
struct Target {
    config: Config,
    /// `?schema=NAME`: created if missing, then the connection's search_path.
    schema: Option<String>,
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = form_urlencoded::parse(pair.as_bytes()).next().unwrap_or_default();
        if key == "schema" {
            if value.is_empty() || value.len() > 63 {
                return Err(StoreError::BadUrl(format!("{url} (schema must be 1 to 63 bytes)")));
            }
            schema = Some(value.into_owned());
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    let mut config: Config =
        rest.parse().map_err(|e: ::postgres::Error| StoreError::Backend(format!("bad PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("tether");
    }
    Ok(Target { config, schema })
}

/// An open connection and its prepared statements.
struct Conn {
    client: Client,
    stmts: HashMap<String, Statement>,
}

impl Conn {
    fn prepared(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Writer,
    Reader,
    /// Lease and membership statements, so they never wait behind a large commit.
    Cluster,
}

/// What a connection thread owns: how to (re)connect, and the connection.
struct Link {
    target: Target,
    role: Role,
    conn: Option<Conn>,
}

impl Link {
    fn connect(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = self.target.config.connect(NoTls).map_err(|e| {
                StoreError::Backend(format!(
                    "cannot connect to PostgreSQL ({}): {}",
                    describe_target(&self.target),
                    pg_message(&e)
                ))
            })?;
            let mut conn = Conn { client, stmts: HashMap::new() };
            self.setup(&mut conn)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// search_path, durability settings, the node lock and the tables (writer).
    fn setup(&mut self, conn: &mut Conn) -> Result<(), StoreError> {
        let c = &mut conn.client;
        // `CREATE … IF NOT EXISTS` on an existing schema is not news.
        c.batch_execute("SET client_min_messages = warning")?;
        if let Some(schema) = &self.target.schema {
            if self.role == Role::Writer {
                let exists: bool =
                    c.query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[schema])?.get(0);
                if !exists {
                    // Nodes started together would race on the catalog otherwise.
                    let mut tx = c.transaction()?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])?;
                    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))?;
                    tx.commit()?;
                }
            }
            c.batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))?;
        }
        let current: Option<String> = c.query_one("SELECT current_schema()", &[])?.get(0);
        let Some(current) = current else {
            return Err(StoreError::Backend(
                "PostgreSQL: the search_path names no existing schema; create it, or pass ?schema=NAME (Tether creates it)".into(),
            ));
        };
        if self.role != Role::Writer {
            return Ok(());
        }
        let sync: String = c.query_one("SHOW synchronous_commit", &[])?.get(0);
        if sync == "off" {
            c.batch_execute("SET synchronous_commit = on")?;
            tracing::info!(
                "PostgreSQL store: synchronous_commit was off for this role/database; the writer turns it on"
            );
        }
        let fsync: String = c.query_one("SHOW fsync", &[])?.get(0);
        if fsync != "on" {
            tracing::warn!(
                "PostgreSQL runs with fsync={fsync}: acknowledged changes may not survive a crash of the database host"
            );
        }
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(&current)])?;
        tx.batch_execute(SCHEMA)?;
        tx.batch_execute(WEBHOOK_SCHEMA)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` on the connection, reconnecting first if needed; a call that
    /// failed because an old connection had broken is retried once on a new one.
    fn run<R>(&mut self, f: &mut dyn FnMut(&mut Conn) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut retried = false;
        loop {
            let was_open = self.conn.is_some();
            let conn = self.connect()?;
            match f(conn) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    // A query can fail on a connection whose server side is gone
                    // before the client noticed; ask, it is cheap and only on errors.
                    if conn.client.is_closed() || conn.client.is_valid(Duration::from_secs(2)).is_err() {
                        self.conn = None;
                        if was_open && !retried {
                            tracing::warn!(error = %e, role = ?self.role, "PostgreSQL connection lost; reconnecting");
                            retried = true;
                            continue;
                        }
                    }
                    return Err(e);
                }
            }
        }
    }
}

type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// A connection that lives on its own thread; calls block until it answers.
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn start(target: Target, role: Role) -> Result<Worker, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let name = match role {
            Role::Writer => "tether-pg-writer",
            Role::Reader => "tether-pg-reader",
            Role::Cluster => "tether-pg-cluster",
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut link = Link { target, role, conn: None };
                while let Ok(job) = rx.recv() {
                    // A panic in one call must not take the connection thread down.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut link)));
                }
                // The client (and its private runtime) drops here, outside any async context.
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the PostgreSQL connection thread: {e}")))?;
        let worker = Worker { jobs: tx };
        worker.call(|_| Ok(()))?; // connect now, so a bad URL fails at start
        Ok(worker)
    }

    fn call<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |link: &mut Link| {
            let _ = tx.send(link.run(&mut f));
        });
        let stopped = || StoreError::Backend("the PostgreSQL connection thread stopped".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

/// One batch, collapsed to the last write of each row and laid out as columns.
#[derive(Default)]
struct Batch {
    s_id: Vec<String>,
    s_kind: Vec<String>,
    s_user: Vec<String>,
    s_status: Vec<String>,
    s_ended: Vec<Option<i64>>,
    s_record: Vec<String>,
    i_token: Vec<String>,
    i_session: Vec<String>,
    i_record: Vec<String>,
    i_delete: Vec<String>,
    d_coll: Vec<String>,
    d_key: Vec<String>,
    d_value: Vec<String>,
    dd_coll: Vec<String>,
    dd_key: Vec<String>,
    e_id: Vec<i64>,
    e_session: Vec<String>,
    e_kind: Vec<String>,
    e_type: Vec<String>,
    e_audience: Vec<String>,
    e_json: Vec<String>,
    /// The lease this commit must still hold (cluster), checked in its transaction.
    fence: Option<(String, i64)>,
}

impl Batch {
    fn build(writes: &[StoreWrite]) -> Result<Batch, StoreError> {
        let mut b = Batch::default();
        let mut seen_sessions: HashSet<&str> = HashSet::new();
        let mut seen_invites: HashSet<&str> = HashSet::new();
        let mut seen_docs: HashSet<(&str, &str)> = HashSet::new();
        // Newest first: the first write seen of a row is the one that counts.
        for w in writes.iter().rev() {
            match w {
                StoreWrite::Engine(Write::Session(_)) | StoreWrite::Session(..) => {
                    let Some(written) = w.session_record() else { continue };
                    let (s, record) = written?;
                    if seen_sessions.insert(&s.id) {
                        b.s_id.push(s.id.clone());
                        b.s_kind.push(s.kind.clone());
                        b.s_user.push(s.user_id.clone());
                        b.s_status.push(s.status.as_str().to_string());
                        b.s_ended.push(s.ended_at);
                        b.s_record.push(record.into_owned());
                    }
                }
                StoreWrite::Engine(Write::Invite(i)) => {
                    if seen_invites.insert(&i.token) {
                        b.i_token.push(i.token.clone());
                        b.i_session.push(i.session_id.clone());
                        b.i_record.push(to_json(i)?);
                    }
                }
                StoreWrite::Engine(Write::DeleteInvite(t)) => {
                    if seen_invites.insert(t) {
                        b.i_delete.push(t.clone());
                    }
                }
                StoreWrite::Doc { collection, key, value } => {
                    if seen_docs.insert((collection, key)) {
                        match value {
                            Some(v) => {
                                b.d_coll.push(collection.to_string());
                                b.d_key.push(key.clone());
                                b.d_value.push(v.clone());
                            }
                            None => {
                                b.dd_coll.push(collection.to_string());
                                b.dd_key.push(key.clone());
                            }
                        }
                    }
                }
                StoreWrite::Event(e) => {
                    b.e_id.push(e.seq as i64);
                    b.e_session.push(e.session_id.clone());
                    b.e_kind.push(e.kind.clone());
                    b.e_type.push(e.event_type.as_str().to_string());
                    b.e_audience.push(super::audience_json(&e.audience));
                    b.e_json.push(e.json.clone());
                }
            }
        }
        Ok(b)
    }

    fn apply(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let upsert_sessions = conn.prepared(UPSERT_SESSIONS)?;
        let upsert_invites = conn.prepared(UPSERT_INVITES)?;
        let delete_invites = conn.prepared(DELETE_INVITES)?;
        let upsert_docs = conn.prepared(UPSERT_DOCS)?;
        let delete_docs = conn.prepared(DELETE_DOCS)?;
        let insert_events = conn.prepared(INSERT_EVENTS)?;
        let fence = conn.prepared(FENCE)?;
        let mut tx = conn.client.transaction()?;
        if let Some((holder, epoch)) = &self.fence {
            if tx.query_opt(&fence, &[holder, epoch])?.is_none() {
                return Err(StoreError::Fenced(format!("the lease of epoch {epoch} is no longer {holder}'s")));
            }
        }
        if !self.s_id.is_empty() {
            tx.execute(
                &upsert_sessions,
                &[&self.s_id, &self.s_kind, &self.s_user, &self.s_status, &self.s_ended, &self.s_record],
            )?;
        }
        if !self.i_token.is_empty() {
            tx.execute(&upsert_invites, &[&self.i_token, &self.i_session, &self.i_record])?;
        }
        if !self.i_delete.is_empty() {
            tx.execute(&delete_invites, &[&self.i_delete])?;
        }
        if !self.d_coll.is_empty() {
            tx.execute(&upsert_docs, &[&self.d_coll, &self.d_key, &self.d_value])?;
        }
        if !self.dd_coll.is_empty() {
            tx.execute(&delete_docs, &[&self.dd_coll, &self.dd_key])?;
        }
        if !self.e_id.is_empty() {
            tx.execute(
                &insert_events,
                &[&self.e_id, &self.e_session, &self.e_kind, &self.e_type, &self.e_audience, &self.e_json],
            )?;
        }
        tx.commit()?;
        if !self.e_id.is_empty() {
            // A hint for the other nodes' tails; they also poll, so a lost one only delays.
            let _ = conn.client.batch_execute("NOTIFY tether_events");
        }
        Ok(())
    }
}

pub struct PostgresStore {
    description: String,
    target: Target,
    writer: Worker,
    reader: Worker,
    cluster: Worker,
    /// `Some` once this node joined a cluster: `(node, epoch)` of the lease
    /// it holds, or `None` inside when it holds none (every commit refused).
    fence: parking_lot::Mutex<Option<Option<(String, i64)>>>,
    /// A commit was refused by the fence since [`PostgresStore::take_refused`] last looked.
    refused: std::sync::atomic::AtomicBool,
}

fn describe_target(t: &Target) -> String {
    use ::postgres::config::Host;
    let c = &t.config;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = c.get_dbname().unwrap_or("");
    format!("postgres://{user}{host}:{port}/{db}")
}

impl PostgresStore {
    /// Connects (writer first: it creates the schema and tables and takes the
    /// schema's node lock), then the reader. The URL's password is never logged.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let target = parse_url(url)?;
        let writer = Worker::start(target.clone(), Role::Writer)?;
        let schema: String =
            writer.call(|c| Ok(c.client.query_one("SELECT current_schema()", &[])?.get::<_, String>(0)))?;
        let reader = Worker::start(target.clone(), Role::Reader)?;
        let cluster = Worker::start(target.clone(), Role::Cluster)?;
        let description = format!("{} schema {schema} (synchronous commit)", describe_target(&target));
        Ok(PostgresStore {
            description,
            target,
            writer,
            reader,
            cluster,
            fence: parking_lot::Mutex::new(None),
            refused: Default::default(),
        })
    }
}

impl Store for PostgresStore {
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::build(writes)?;
        match &*self.fence.lock() {
            None => {}
            Some(None) => return Err(StoreError::Fenced("this node holds no lease".into())),
            Some(Some(fence)) => batch.fence = Some(fence.clone()),
        }
        let result = self.writer.call(move |c| batch.apply(c));
        if matches!(result, Err(StoreError::Fenced(_))) {
            self.refused.store(true, std::sync::atomic::Ordering::Release);
        }
        result
    }

    fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        self.reader.call(|c| {
            let st = c.prepared("SELECT record FROM invites")?;
            c.client.query(&st, &[])?.iter().map(|r| from_json::<Invite>(r.get(0))).collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if has_nul(id) {
            return Ok(None);
        }
        let id = id.to_string();
        self.reader.call(move |c| {
            let st = c.prepared("SELECT record FROM sessions WHERE id = $1")?;
            c.client.query_opt(&st, &[&id])?.map(|r| from_json(r.get(0))).transpose()
        })
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Session>, StoreError> {
        let texts = [&f.kind, &f.user_id, &f.after_id, &f.visible_to];
        if texts.iter().any(|t| t.as_deref().is_some_and(has_nul)) || f.statuses.iter().any(|s| has_nul(s)) {
            return Ok(Vec::new());
        }
        let f = f.clone();
        self.reader.call(move |c| {
            let mut sql = String::from("SELECT record FROM sessions WHERE id > $1");
            let mut n = 1;
            if f.kind.is_some() {
                n += 1;
                sql.push_str(&format!(" AND kind = ${n}"));
            }
            if f.user_id.is_some() {
                n += 1;
                sql.push_str(&format!(" AND user_id = ${n}"));
            }
            if !f.statuses.is_empty() {
                n += 1;
                sql.push_str(&format!(" AND status = ANY(${n}::text[])"));
            }
            n += 1;
            sql.push_str(&format!(" ORDER BY id LIMIT ${n}"));
            let st = c.prepared(&sql)?;
            // Visibility is decided in Rust (one definition: Session::visible_to);
            // with it, fetch in chunks until the page is full.
            let chunk = if f.visible_to.is_some() { f.limit.max(VISIBLE_CHUNK) } else { f.limit };
            let chunk_i64 = chunk.min(i64::MAX as usize) as i64;
            let mut after = f.after_id.clone().unwrap_or_default();
            let mut out = Vec::new();
            loop {
                let mut params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = vec![&after];
                if let Some(k) = &f.kind {
                    params.push(k);
                }
                if let Some(u) = &f.user_id {
                    params.push(u);
                }
                if !f.statuses.is_empty() {
                    params.push(&f.statuses);
                }
                params.push(&chunk_i64);
                let rows = c.client.query(&st, &params)?;
                let fetched = rows.len();
                let mut last = None;
                for row in rows {
                    let s: Session = from_json(row.get(0))?;
                    last = Some(s.id.clone());
                    if out.len() < f.limit && f.visible_to.as_ref().is_none_or(|u| s.visible_to(u)) {
                        out.push(s);
                    }
                }
                if out.len() >= f.limit || fetched < chunk {
                    return Ok(out);
                }
                match last {
                    Some(id) => after = id,
                    None => return Ok(out),
                }
            }
        })
    }

    fn purge(&self, cutoff: &dyn Fn(&str) -> Millis, dry_run: bool) -> Result<usize, StoreError> {
        let kinds: Vec<String> = self.writer.call(|c| {
            let st = c.prepared("SELECT DISTINCT kind FROM sessions WHERE ended_at IS NOT NULL")?;
            Ok(c.client.query(&st, &[])?.iter().map(|r| r.get::<_, String>(0)).collect())
        })?;
        if kinds.is_empty() {
            return Ok(0);
        }
        let cutoffs: Vec<i64> = kinds.iter().map(|k| cutoff(k)).collect();
        self.writer.call(move |c| {
            let n = if dry_run {
                let st = c.prepared(
                    "SELECT count(*) FROM sessions s JOIN unnest($1::text[], $2::int8[]) AS x(kind, cutoff)
                     ON s.kind = x.kind WHERE s.ended_at IS NOT NULL AND s.ended_at < x.cutoff",
                )?;
                c.client.query_one(&st, &[&kinds, &cutoffs])?.get::<_, i64>(0) as u64
            } else {
                let mut tx = c.client.transaction()?;
                let ids: Vec<String> = tx
                    .query(
                        "DELETE FROM sessions s USING unnest($1::text[], $2::int8[]) AS x(kind, cutoff)
                         WHERE s.kind = x.kind AND s.ended_at IS NOT NULL AND s.ended_at < x.cutoff RETURNING s.id",
                        &[&kinds, &cutoffs],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let newest: Option<i64> = tx
                    .query_one(
                        "WITH d AS (DELETE FROM events WHERE session_id = ANY($1) RETURNING id) SELECT max(id) FROM d",
                        &[&ids],
                    )?
                    .get(0);
                if let Some(newest) = newest {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('events.floor', $1) ON CONFLICT (key)
                         DO UPDATE SET value = greatest(meta.value::bigint, excluded.value::bigint)::text",
                        &[&newest.to_string()],
                    )?;
                }
                tx.commit()?;
                ids.len() as u64
            };
            Ok(n as usize)
        })
    }

    fn docs(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let collection = collection.to_string();
        self.reader.call(move |c| {
            let st = c.prepared("SELECT key, value FROM docs WHERE collection = $1 ORDER BY key")?;
            Ok(c.client.query(&st, &[&collection])?.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.reader.call(move |c| {
            let st = c.prepared("SELECT value FROM meta WHERE key = $1")?;
            Ok(c.client.query_opt(&st, &[&key])?.map(|r| r.get(0)))
        })
    }

    fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer.call(move |c| {
            let st = c.prepared(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            c.client.execute(&st, &[&key, &value])?;
            Ok(())
        })
    }

    fn meta_put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer.call(move |c| {
            c.client.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )?;
            Ok(c.client.query_one("SELECT value FROM meta WHERE key = $1", &[&key])?.get(0))
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Published>, StoreError> {
        let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64);
        self.reader.call(move |c| {
            let st = c.prepared(
                "SELECT id, session_id, kind, type, audience, json FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )?;
            c.client.query(&st, &[&after, &limit])?.iter().map(read_event).collect()
        })
    }

    fn session_events(&self, session_id: &str) -> Result<Vec<Published>, StoreError> {
        if has_nul(session_id) {
            return Ok(Vec::new());
        }
        let id = session_id.to_string();
        self.reader.call(move |c| {
            let st = c.prepared(
                "SELECT id, session_id, kind, type, audience, json FROM events WHERE session_id = $1 ORDER BY id",
            )?;
            c.client.query(&st, &[&id])?.iter().map(read_event).collect()
        })
    }

    fn events_floor(&self) -> Option<u64> {
        self.meta_get("events.floor").ok().flatten().and_then(|v| v.parse().ok())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn webhook_enqueue(&self, new: &[NewDelivery], cursor: u64) -> Result<Vec<DeliveryRecord>, StoreError> {
        // As columns, so a page of the log is three statements whatever its size.
        let urls: Vec<String> = new.iter().map(|d| d.url.clone()).collect();
        let events: Vec<i64> = new.iter().map(|d| d.event_id as i64).collect();
        let sessions: Vec<String> = new.iter().map(|d| d.session_id.clone()).collect();
        let bodies: Vec<String> = new.iter().map(|d| d.body.clone()).collect();
        let created: Vec<i64> = new.iter().map(|d| d.created_at).collect();
        self.writer.call(move |c| {
            let insert = c.prepared(
                "INSERT INTO webhook_deliveries (url, event_id, session_id, body, status, attempts, next_attempt_at, created_at)
                 SELECT u, e, s, b, 'pending', 0, t, t FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[])
                   AS x(u, e, s, b, t)
                 ON CONFLICT (url, event_id) DO NOTHING",
            )?;
            let read = c.prepared(&format!(
                "SELECT {DELIVERY_COLS} FROM webhook_deliveries d
                 JOIN unnest($1::text[], $2::int8[]) WITH ORDINALITY AS x(u, e, n) ON d.url = x.u AND d.event_id = x.e
                 ORDER BY x.n"
            ))?;
            let meta = c.prepared(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            let mut tx = c.client.transaction()?;
            let mut out = Vec::with_capacity(urls.len());
            if !urls.is_empty() {
                tx.execute(&insert, &[&urls, &events, &sessions, &bodies, &created])?;
                out.extend(tx.query(&read, &[&urls, &events])?.iter().map(|r| delivery_row(r, false)));
            }
            tx.execute(&meta, &[&WEBHOOK_CURSOR, &cursor.to_string()])?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn webhook_pending(&self) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.webhook_list(Some(DeliveryStatus::Pending), 0, usize::MAX)
    }

    fn webhook_get(&self, id: u64) -> Result<Option<DeliveryRecord>, StoreError> {
        self.reader.call(move |c| {
            let st = c.prepared(&format!("SELECT {DELIVERY_COLS}, body FROM webhook_deliveries WHERE id = $1"))?;
            Ok(c.client.query_opt(&st, &[&(id as i64)])?.map(|r| delivery_row(&r, true)))
        })
    }

    fn webhook_update(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // As columns: one statement per round of outcomes.
        let ids: Vec<i64> = records.iter().map(|d| d.id as i64).collect();
        let statuses: Vec<&'static str> = records.iter().map(|d| d.status.as_str()).collect();
        let attempts: Vec<i32> = records.iter().map(|d| d.attempts as i32).collect();
        let last_status: Vec<Option<i32>> = records.iter().map(|d| d.last_status.map(i32::from)).collect();
        let last_error: Vec<Option<String>> = records.iter().map(|d| d.last_error.clone()).collect();
        let next: Vec<Option<i64>> = records.iter().map(|d| d.next_attempt_at).collect();
        self.writer.call(move |c| {
            let st = c.prepared(
                "UPDATE webhook_deliveries d SET status = x.s, attempts = x.a, last_status = x.ls, last_error = x.le,
                   next_attempt_at = x.n
                 FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int4[], $5::text[], $6::int8[]) AS x(id, s, a, ls, le, n)
                 WHERE d.id = x.id",
            )?;
            c.client.execute(&st, &[&ids, &statuses, &attempts, &last_status, &last_error, &next])?;
            Ok(())
        })
    }

    fn webhook_list(
        &self,
        status: Option<DeliveryStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.reader.call(move |c| {
            let rows = match status {
                Some(st) => {
                    let q = c.prepared(&format!(
                        "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3"
                    ))?;
                    c.client.query(&q, &[&st.as_str(), &after, &limit])?
                }
                None => {
                    let q = c.prepared(&format!(
                        "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id > $1 ORDER BY id LIMIT $2"
                    ))?;
                    c.client.query(&q, &[&after, &limit])?
                }
            };
            Ok(rows.iter().map(|r| delivery_row(r, false)).collect())
        })
    }

    fn webhook_counts(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        self.reader.call(|c| {
            let st = c.prepared(
                "SELECT url, count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed')
                 FROM webhook_deliveries WHERE status <> 'delivered' GROUP BY url",
            )?;
            Ok(c.client
                .query(&st, &[])?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64))
                .collect())
        })
    }
}

/// PostgreSQL text cannot hold NUL, so no stored id, kind or user has one:
/// a lookup by such a string finds nothing (rather than failing the query).
fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

fn read_event(r: &::postgres::Row) -> Result<Published, StoreError> {
    super::stored_event(r.get(0), r.get(1), r.get(2), r.get::<_, &str>(3), r.get::<_, &str>(4), r.get(5))
}

/// A node's row in `cluster_nodes`, with whether it holds the lease.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub id: String,
    pub advertise: String,
    pub started_at: Millis,
    pub last_seen_at: Millis,
    pub leader: bool,
}

/// The lease as the database sees it.
#[derive(Clone, Debug)]
pub struct LeaseRow {
    pub holder: Option<String>,
    pub advertise: Option<String>,
    pub epoch: i64,
    /// Whether it is still valid by the database's clock.
    pub valid: bool,
}

/// The cluster's statements (see the module doc), on their own connection.
impl PostgresStore {
    /// From now on every commit must hold this lease (`None`: holds none, refuse all).
    pub fn set_fence(&self, fence: Option<(String, i64)>) {
        *self.fence.lock() = Some(fence);
    }

    /// Whether a commit was refused by the fence since the last call.
    pub fn take_refused(&self) -> bool {
        self.refused.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Registers (or re-registers) this node.
    pub fn node_join(&self, node: &str, advertise: &str) -> Result<(), StoreError> {
        let (node, advertise) = (node.to_string(), advertise.to_string());
        self.cluster.call(move |c| {
            c.client.execute(
                "INSERT INTO cluster_nodes (id, advertise, started_at, last_seen_at) VALUES ($1, $2, now(), now())
                 ON CONFLICT (id) DO UPDATE SET advertise = excluded.advertise, last_seen_at = now()",
                &[&node, &advertise],
            )?;
            Ok(())
        })
    }

    /// Marks this node alive, forgets nodes silent for `forget_ms`, and reads the lease.
    pub fn node_beat(&self, node: &str, advertise: &str, forget_ms: i64) -> Result<LeaseRow, StoreError> {
        let (node, advertise) = (node.to_string(), advertise.to_string());
        self.cluster.call(move |c| {
            c.client.execute(
                "INSERT INTO cluster_nodes (id, advertise, started_at, last_seen_at) VALUES ($1, $2, now(), now())
                 ON CONFLICT (id) DO UPDATE SET last_seen_at = now()",
                &[&node, &advertise],
            )?;
            c.client.execute(
                "DELETE FROM cluster_nodes WHERE last_seen_at < now() - make_interval(secs => $1::float8 / 1000)",
                &[&(forget_ms as f64)],
            )?;
            lease_row(c)
        })
    }

    pub fn lease(&self) -> Result<LeaseRow, StoreError> {
        self.cluster.call(lease_row)
    }

    /// Removes this node from the membership (a clean exit).
    pub fn node_leave(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_string();
        self.cluster.call(move |c| {
            c.client.execute("DELETE FROM cluster_nodes WHERE id = $1", &[&node])?;
            Ok(())
        })
    }

    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.cluster.call(|c| {
            let rows = c.client.query(
                "SELECT n.id, n.advertise,
                        (extract(epoch FROM n.started_at) * 1000)::int8,
                        (extract(epoch FROM n.last_seen_at) * 1000)::int8,
                        coalesce(l.holder = n.id AND l.expires_at > now(), false)
                 FROM cluster_nodes n LEFT JOIN cluster_lease l ON l.id = 1 ORDER BY n.started_at, n.id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| NodeRow {
                    id: r.get(0),
                    advertise: r.get(1),
                    started_at: r.get(2),
                    last_seen_at: r.get(3),
                    leader: r.get(4),
                })
                .collect())
        })
    }

    /// Takes the lease if it is free or expired: returns the new fencing
    /// epoch and the event-id term (bumped in the same transaction).
    pub fn lease_acquire(&self, node: &str, lease_ms: i64) -> Result<Option<(i64, u64)>, StoreError> {
        let node = node.to_string();
        self.cluster.call(move |c| {
            let mut tx = c.client.transaction()?;
            let row = tx.query_opt(
                "UPDATE cluster_lease SET holder = $1, epoch = epoch + 1,
                        expires_at = now() + make_interval(secs => $2::float8 / 1000)
                 WHERE id = 1 AND (holder IS NULL OR expires_at <= now() OR holder = $1) RETURNING epoch",
                &[&node, &(lease_ms as f64)],
            )?;
            let Some(row) = row else {
                tx.rollback()?;
                return Ok(None);
            };
            let epoch: i64 = row.get(0);
            // The other nodes learn the new owner's address at once.
            tx.batch_execute("NOTIFY tether_lease")?;
            let term: String = tx
                .query_one(
                    "INSERT INTO meta (key, value) VALUES ('event_epoch', '1') ON CONFLICT (key)
                     DO UPDATE SET value = (meta.value::bigint + 1)::text RETURNING value",
                    &[],
                )?
                .get(0);
            tx.commit()?;
            Ok(Some((epoch, term.parse().unwrap_or(1))))
        })
    }

    /// Extends the lease this node holds; `false` if it is no longer its own.
    pub fn lease_renew(&self, node: &str, epoch: i64, lease_ms: i64) -> Result<bool, StoreError> {
        let node = node.to_string();
        self.cluster.call(move |c| {
            let n = c.client.execute(
                "UPDATE cluster_lease SET expires_at = now() + make_interval(secs => $3::float8 / 1000)
                 WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now()",
                &[&node, &epoch, &(lease_ms as f64)],
            )?;
            Ok(n == 1)
        })
    }

    /// Gives the lease up at once (a clean exit) and tells the other nodes.
    pub fn lease_release(&self, node: &str, epoch: i64) -> Result<(), StoreError> {
        let node = node.to_string();
        self.cluster.call(move |c| {
            c.client.execute(
                "UPDATE cluster_lease SET holder = NULL, expires_at = now() WHERE id = 1 AND holder = $1 AND epoch = $2",
                &[&node, &epoch],
            )?;
            c.client.batch_execute("NOTIFY tether_lease")?;
            Ok(())
        })
    }

    /// The newest event id in the log (0 when empty).
    pub fn events_head(&self) -> Result<u64, StoreError> {
        self.reader
            .call(|c| Ok(c.client.query_one("SELECT coalesce(max(id), 0) FROM events", &[])?.get::<_, i64>(0) as u64))
    }

    /// A new connection listening for `tether_events` and `tether_lease`.
    pub fn listen(&self) -> Result<Listener, StoreError> {
        let mut client = self.target.config.connect(NoTls)?;
        if let Some(schema) = &self.target.schema {
            client.batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))?;
        }
        client.batch_execute("LISTEN tether_events; LISTEN tether_lease")?;
        Ok(Listener { client })
    }
}

fn lease_row(c: &mut Conn) -> Result<LeaseRow, StoreError> {
    let r = c.client.query_one(
        "SELECT l.holder, n.advertise, l.epoch, l.holder IS NOT NULL AND l.expires_at > now()
         FROM cluster_lease l LEFT JOIN cluster_nodes n ON n.id = l.holder WHERE l.id = 1",
        &[],
    )?;
    Ok(LeaseRow { holder: r.get(0), advertise: r.get(1), epoch: r.get(2), valid: r.get(3) })
}

/// A connection that waits for the cluster's notifications. Blocking: use it
/// from its own thread.
pub struct Listener {
    client: Client,
}

/// What woke a [`Listener`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Woken {
    pub events: bool,
    pub lease: bool,
}

impl Listener {
    /// Waits up to `timeout` for notifications; returns which channels spoke.
    pub fn wait(&mut self, timeout: Duration) -> Result<Woken, StoreError> {
        use ::postgres::fallible_iterator::FallibleIterator;
        let mut woken = Woken::default();
        let mut notes = self.client.notifications();
        let first = notes.timeout_iter(timeout).next()?;
        if let Some(n) = first {
            match n.channel() {
                "tether_lease" => woken.lease = true,
                _ => woken.events = true,
            }
        }
        // Drain what else is queued without waiting.
        let mut more = notes.iter();
        while let Some(n) = more.next()? {
            match n.channel() {
                "tether_lease" => woken.lease = true,
                _ => woken.events = true,
            }
        }
        Ok(woken)
    }

    /// Events with ids above `after`, in order (the tail's read).
    pub fn events_after(&mut self, after: u64, limit: usize) -> Result<Vec<Published>, StoreError> {
        let rows = self.client.query(
            "SELECT id, session_id, kind, type, audience, json FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            &[&(after.min(i64::MAX as u64) as i64), &(limit as i64)],
        )?;
        rows.iter().map(read_event).collect()
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_option_is_stripped_and_the_rest_kept() {
        let t = parse_url("postgres://u:secret@db.example:5433/app?schema=t%20x&connect_timeout=3&application_name=a")
            .unwrap();
        assert_eq!(t.schema.as_deref(), Some("t x"));
        assert_eq!(t.config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(t.config.get_application_name(), Some("a"));
        let d = describe_target(&t);
        assert_eq!(d, "postgres://u@db.example:5433/app");
        assert!(!d.contains("secret"));
        let t = parse_url("postgresql://u@h/db").unwrap();
        assert_eq!(t.schema, None);
        assert_eq!(t.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(parse_url("postgres://u@h/db?schema=").is_err());
        assert!(parse_url("postgres://u@h/db?nonsense=1").is_err());
    }

    #[test]
    fn quoting_and_lock_keys() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("public"), lock_key("public"));
    }
}

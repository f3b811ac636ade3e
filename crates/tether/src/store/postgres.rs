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
//!   `purge`) and a reader (`get`, `list`, `docs`, `meta_get`, `load_live`).
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
//! ## What it is not (yet)
//! Several Tether nodes sharing one database need deadline ownership (which
//! node ends which session when) and cross-node event fan-out (a change made
//! on one node reaching the SSE/WebSocket subscribers of the others); neither
//! is built. Each node keeps its engine in memory and writes whole session
//! snapshots, so two nodes on one schema would overwrite each other's
//! records. To make that impossible rather than silent, the writer holds a
//! session-level advisory lock per schema: a second node on the same schema
//! refuses to start (it waits up to [`LOCK_WAIT`] first, so a restart right
//! after `kill -9` gets the lock once PostgreSQL notices the dead
//! connection; a node whose host vanished leaves a connection that only TCP
//! keepalive or `pg_terminate_backend` ends). Separate nodes on separate
//! schemas of one database are fine.
//! The server logs a warning saying so at start.

use super::{DeliveryRecord, DeliveryStatus, ListFilter, NewDelivery, Store, StoreError, StoreWrite, WEBHOOK_CURSOR};
use ::postgres::{Client, Config, NoTls, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tether_engine::{Invite, Millis, Session, Write};

/// How long a starting node waits for another holder of its schema's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
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

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("corrupt record: {e}")))
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
}

/// What a connection thread owns: how to (re)connect, and the connection.
struct Link {
    target: Target,
    role: Role,
    conn: Option<Conn>,
    /// How long the writer waits for the schema lock on its next connect.
    lock_wait: Duration,
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
        if let Some(schema) = &self.target.schema {
            if self.role == Role::Writer {
                let exists: bool =
                    c.query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[schema])?.get(0);
                if !exists {
                    c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))?;
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
        if self.role == Role::Reader {
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
        self.take_lock(c, &current)?;
        c.batch_execute(SCHEMA)?;
        c.batch_execute(WEBHOOK_SCHEMA)?;
        Ok(())
    }

    /// The per-schema advisory lock that keeps a second node out.
    fn take_lock(&mut self, c: &mut Client, schema: &str) -> Result<(), StoreError> {
        let key = lock_key(schema);
        let started = Instant::now();
        let mut told = false;
        loop {
            let got: bool = c.query_one("SELECT pg_try_advisory_lock($1)", &[&key])?.get(0);
            if got {
                // Reconnects after this one do not wait: the lock was ours.
                self.lock_wait = Duration::from_secs(2);
                return Ok(());
            }
            let holder = lock_holder(c, key);
            if started.elapsed() >= self.lock_wait {
                return Err(StoreError::Backend(format!(
                    "another Tether node holds the PostgreSQL schema {schema:?} ({holder}); several nodes sharing one \
                     schema are not supported yet. Stop it, or give this node its own ?schema=NAME (if that node is \
                     gone but its connection lingers, end it: SELECT pg_terminate_backend(PID))"
                )));
            }
            if !told {
                tracing::warn!(schema, holder = %holder, "waiting for the schema lock held by another connection (a node that was just killed releases it when PostgreSQL notices)");
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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

fn lock_holder(c: &mut Client, key: i64) -> String {
    let classid = ((key as u64) >> 32) as i64;
    let objid = ((key as u64) & 0xffff_ffff) as i64;
    let row = c.query_opt(
        "SELECT a.pid, coalesce(host(a.client_addr), 'local socket'), coalesce(a.application_name, ''), a.backend_start::text
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.classid::bigint = $1 AND l.objid::bigint = $2
         LIMIT 1",
        &[&classid, &objid],
    );
    match row {
        Ok(Some(r)) => format!(
            "backend pid {} from {} ({}), connected since {}",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        ),
        Ok(None) => "holder not visible to this role".into(),
        Err(e) => format!("holder unknown: {}", pg_message(&e)),
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
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut link = Link { target, role, conn: None, lock_wait: LOCK_WAIT };
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
                StoreWrite::Engine(Write::Session(s)) => {
                    if seen_sessions.insert(&s.id) {
                        b.s_id.push(s.id.clone());
                        b.s_kind.push(s.kind.clone());
                        b.s_user.push(s.user_id.clone());
                        b.s_status.push(s.status.as_str().to_string());
                        b.s_ended.push(s.ended_at);
                        b.s_record.push(to_json::<Session>(s)?);
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
        let mut tx = conn.client.transaction()?;
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
        tx.commit()?;
        Ok(())
    }
}

pub struct PostgresStore {
    description: String,
    writer: Worker,
    reader: Worker,
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
        let description = format!("{} schema {schema} (single node, synchronous commit)", describe_target(&target));
        tracing::warn!(
            store = %description,
            "PostgreSQL store: this node must be the only Tether node on schema {schema:?}; several nodes sharing one \
             database (deadline ownership, cross-node events) are not built yet, and a second node on this schema is refused"
        );
        Ok(PostgresStore { description, writer, reader })
    }
}

impl Store for PostgresStore {
    fn commit(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let batch = Batch::build(writes)?;
        self.writer.call(move |c| batch.apply(c))
    }

    fn load_live(&self) -> Result<(Vec<Session>, Vec<Invite>), StoreError> {
        self.reader.call(|c| {
            let live = c.prepared("SELECT record FROM sessions WHERE status <> 'ended'")?;
            let invites = c.prepared("SELECT record FROM invites")?;
            // One snapshot for both, so an invite never outlives its session's row.
            let mut tx = c
                .client
                .build_transaction()
                .read_only(true)
                .isolation_level(::postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let sessions =
                tx.query(&live, &[])?.iter().map(|r| from_json::<Session>(r.get(0))).collect::<Result<Vec<_>, _>>()?;
            let invites = tx
                .query(&invites, &[])?
                .iter()
                .map(|r| from_json::<Invite>(r.get(0)))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok((sessions, invites))
        })
    }

    fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_string();
        self.reader.call(move |c| {
            let st = c.prepared("SELECT record FROM sessions WHERE id = $1")?;
            c.client.query_opt(&st, &[&id])?.map(|r| from_json(r.get(0))).transpose()
        })
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Session>, StoreError> {
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
                let st = c.prepared(
                    "DELETE FROM sessions s USING unnest($1::text[], $2::int8[]) AS x(kind, cutoff)
                     WHERE s.kind = x.kind AND s.ended_at IS NOT NULL AND s.ended_at < x.cutoff",
                )?;
                c.client.execute(&st, &[&kinds, &cutoffs])?
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

    fn webhook_update(&self, d: &DeliveryRecord) -> Result<(), StoreError> {
        let d = d.clone();
        self.writer.call(move |c| {
            let st = c.prepared(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, last_status = $4, last_error = $5,
                 next_attempt_at = $6 WHERE id = $1",
            )?;
            let last_status = d.last_status.map(i32::from);
            c.client.execute(
                &st,
                &[
                    &(d.id as i64),
                    &d.status.as_str(),
                    &(d.attempts as i32),
                    &last_status,
                    &d.last_error,
                    &d.next_attempt_at,
                ],
            )?;
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

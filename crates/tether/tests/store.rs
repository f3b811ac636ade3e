//! Store conformance: the same checks against every `Store` implementation —
//! `MemoryStore`, `SqliteStore` (a temporary file) and `PostgresStore` (a
//! fresh schema per check, dropped afterwards) — so the three agree on what
//! the journal and the API rely on: commit/get, list filters and cursor
//! paging in byte order of ids, what recovery reads (live pages, invites), docs, meta and purge.
//!
//! PostgreSQL: `TETHER_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); set it to `off` to leave the
//! PostgreSQL store out (an unreachable server is a failure, not a skip).

mod support;

use serde_json::json;
use std::sync::Arc;
use support::postgres::{pg_base, PgSchema};
use tether::store::{self, ListFilter, MemoryStore, SqliteStore, Store, StoreWrite};
use tether_engine::time::format_rfc3339;
use tether_engine::{Invite, Millis, Session, Write};

// ---- backends ----

/// One store under test plus whatever keeps its storage alive.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    reopen: Box<dyn Fn() -> Arc<dyn Store>>,
    // Dropped after `store` (fields drop in order).
    _keep: Box<dyn std::any::Any>,
}

fn backends(tag: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    out.push(Backend {
        name: "memory",
        store: Arc::new(MemoryStore::default()),
        reopen: Box::new(|| panic!("memory keeps nothing")),
        _keep: Box::new(()),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db").display().to_string();
    let p2 = path.clone();
    out.push(Backend {
        name: "sqlite",
        store: Arc::new(SqliteStore::open(&path).unwrap()),
        reopen: Box::new(move || Arc::new(SqliteStore::open(&p2).unwrap())),
        _keep: Box::new(dir),
    });
    if pg_base().is_some() {
        let schema = PgSchema::new(tag);
        drop(schema.client()); // a clear message when the server is down
        let url = schema.url();
        let store = store::open(&url).unwrap_or_else(|e| panic!("open {url}: {e}"));
        out.push(Backend {
            name: "postgres",
            store,
            reopen: Box::new(move || store::open(&url).unwrap()),
            _keep: Box::new(schema),
        });
    } else {
        eprintln!("TETHER_TEST_POSTGRES=off: the PostgreSQL store is not checked");
    }
    out
}

/// Runs `check` against every backend, naming the backend in any failure.
fn each(tag: &str, check: impl Fn(&Backend)) {
    for b in backends(tag) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&b)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("[{}] {msg}", b.name);
        }
    }
}

// ---- records ----

const T0: Millis = 1_790_000_000_000;

fn session(id: &str, kind: &str, user: &str, status: &str) -> Session {
    let ended = status == "ended";
    serde_json::from_value(json!({
        "id": id, "kind": kind, "user_id": user, "status": status,
        "created_at": format_rfc3339(T0), "activated_at": format_rfc3339(T0),
        "last_seen_at": format_rfc3339(T0),
        "expires_at": if ended { json!(null) } else { json!(format_rfc3339(T0 + 60_000)) },
        "ended_at": if ended { json!(format_rfc3339(T0 + 1000)) } else { json!(null) },
        "end_reason": if ended { json!("ended") } else { json!(null) },
        "parent_id": null, "metadata": {"id": id},
        "participants": [{"id": user, "name": null, "joined_at": format_rfc3339(T0), "last_seen_at": format_rfc3339(T0), "left_at": null}]
    }))
    .unwrap()
}

fn ended_at(mut s: Session, at: Millis) -> Session {
    s.status = tether_engine::Status::Ended;
    s.ended_at = Some(at);
    s.expires_at = None;
    s.end_reason = Some(tether_engine::EndReason::IdleTimeout);
    s
}

fn invite(token: &str, session_id: &str, fixed: Option<Millis>) -> Invite {
    Invite { token: token.into(), session_id: session_id.into(), created_at: T0, fixed_expiry: fixed }
}

// `.into()`: the engine's write carries the session by value or behind an `Arc`.
#[allow(clippy::useless_conversion)]
fn put(s: &Session) -> StoreWrite {
    StoreWrite::Engine(Write::Session(s.clone().into()))
}

fn put_invite(i: &Invite) -> StoreWrite {
    StoreWrite::Engine(Write::Invite(i.clone()))
}

fn del_invite(t: &str) -> StoreWrite {
    StoreWrite::Engine(Write::DeleteInvite(t.into()))
}

fn doc(collection: &'static str, key: &str, value: Option<&str>) -> StoreWrite {
    StoreWrite::Doc { collection, key: key.into(), value: value.map(|v| v.into()) }
}

/// What recovery reads: every live session (`live_pages`) and every invite.
fn recovery_read(s: &dyn Store) -> (Vec<Session>, Vec<Invite>) {
    let mut sessions = Vec::new();
    s.live_pages(&mut |page| sessions.extend(page)).unwrap();
    (sessions, s.invites().unwrap())
}

fn ids(v: &[Session]) -> Vec<String> {
    v.iter().map(|s| s.id.clone()).collect()
}

fn filter(limit: usize) -> ListFilter {
    ListFilter { limit, ..Default::default() }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// ---- checks ----

#[test]
fn commit_then_get_returns_the_last_snapshot() {
    each("get", |b| {
        let s = b.store.as_ref();
        assert_eq!(s.get("nope").unwrap(), None);
        s.commit(&[]).unwrap();
        let a = session("a", "plain", "u1", "active");
        s.commit(&[put(&a)]).unwrap();
        assert_eq!(s.get("a").unwrap().as_ref(), Some(&a));

        // Later commit replaces; several writes of one row in a batch: the last wins.
        let mut a2 = a.clone();
        a2.metadata = json!({"v": 2, "text": "ünïcødé \"quoted\""});
        let a3 = ended_at(a2.clone(), T0 + 5000);
        let c = session("c", "plain", "u2", "waiting");
        s.commit(&[put(&a2), put(&c), put(&a3)]).unwrap();
        assert_eq!(s.get("a").unwrap().as_ref(), Some(&a3));
        assert_eq!(s.get("c").unwrap().as_ref(), Some(&c));
        assert_eq!(s.list(&ListFilter { statuses: vec!["ended".into()], ..filter(10) }).unwrap(), vec![a3.clone()]);
    });
}

#[test]
fn list_filters_and_cursor_paging() {
    each("list", |b| {
        let s = b.store.as_ref();
        // Ids chosen so byte order differs from most locales' collation.
        let mut all = Vec::new();
        let spec = [
            ("A-1", "chat", "alice", "active"),
            ("B", "chat", "bob", "waiting"),
            ("_x", "job", "alice", "ended"),
            ("a-1", "job", "bob", "completing"),
            ("a_2", "chat", "alice", "ended"),
            ("b", "job", "carol", "active"),
            ("z", "chat", "bob", "active"),
            ("Z", "job", "alice", "waiting"),
        ];
        for (id, kind, user, status) in spec {
            all.push(session(id, kind, user, status));
        }
        // A guest joined one of bob's sessions; a call lists a member.
        all[6].participants.push(serde_json::from_value(json!({"id": "guest", "name": "G", "joined_at": format_rfc3339(T0), "last_seen_at": format_rfc3339(T0), "left_at": null})).unwrap());
        all[1].members = vec!["dave".into()];
        s.commit(&all.iter().map(put).collect::<Vec<_>>()).unwrap();
        let mut by_id = all.clone();
        by_id.sort_by(|x, y| x.id.as_bytes().cmp(y.id.as_bytes()));

        let everything = s.list(&filter(100)).unwrap();
        assert_eq!(ids(&everything), ids(&by_id), "ids in byte order");
        assert_eq!(everything, by_id, "records round-trip");

        let pick = |f: ListFilter| ids(&s.list(&f).unwrap());
        let expect =
            |pred: &dyn Fn(&Session) -> bool| ids(&by_id.iter().filter(|x| pred(x)).cloned().collect::<Vec<_>>());
        assert_eq!(pick(ListFilter { kind: Some("job".into()), ..filter(100) }), expect(&|x| x.kind == "job"));
        assert_eq!(
            pick(ListFilter { user_id: Some("alice".into()), ..filter(100) }),
            expect(&|x| x.user_id == "alice")
        );
        assert_eq!(
            pick(ListFilter { statuses: vec!["active".into(), "waiting".into()], ..filter(100) }),
            expect(&|x| ["active", "waiting"].contains(&x.status.as_str()))
        );
        assert_eq!(pick(ListFilter { statuses: vec!["ended".into()], ..filter(100) }), vec!["_x", "a_2"]);
        assert_eq!(
            pick(ListFilter {
                kind: Some("chat".into()),
                user_id: Some("bob".into()),
                statuses: vec!["active".into()],
                ..filter(100)
            }),
            vec!["z"]
        );
        assert_eq!(pick(ListFilter { visible_to: Some("guest".into()), ..filter(100) }), vec!["z"]);
        assert_eq!(pick(ListFilter { visible_to: Some("dave".into()), ..filter(100) }), vec!["B"]);
        assert_eq!(pick(ListFilter { visible_to: Some("bob".into()), ..filter(100) }), expect(&|x| x.user_id == "bob"));
        assert!(pick(ListFilter { kind: Some("nope".into()), ..filter(100) }).is_empty());

        // Cursor paging: pages of 3 cover everything once, in order.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.list(&ListFilter { after_id: cursor.clone(), ..filter(3) }).unwrap();
            assert!(page.len() <= 3);
            if page.is_empty() {
                break;
            }
            cursor = Some(page.last().unwrap().id.clone());
            seen.extend(ids(&page));
        }
        assert_eq!(seen, ids(&by_id));
        // Paging with a filter (alice's, two at a time).
        let first = pick(ListFilter { user_id: Some("alice".into()), ..filter(2) });
        let second = pick(ListFilter { user_id: Some("alice".into()), after_id: Some(first[1].clone()), ..filter(2) });
        assert_eq!([first, second].concat(), expect(&|x| x.user_id == "alice"));
        // Paging with visibility.
        let first = pick(ListFilter { visible_to: Some("bob".into()), ..filter(1) });
        let rest = pick(ListFilter { visible_to: Some("bob".into()), after_id: Some(first[0].clone()), ..filter(10) });
        assert_eq!([first, rest].concat(), expect(&|x| x.user_id == "bob"));
    });
}

#[test]
fn big_batches_and_visibility_beyond_one_chunk() {
    each("big", |b| {
        let s = b.store.as_ref();
        // 1500 sessions in one transaction; the user "needle" owns every 700th.
        let writes: Vec<StoreWrite> = (0..1500)
            .map(|i| {
                let user = if i % 700 == 699 { "needle".to_string() } else { format!("u{i}") };
                put(&session(&format!("s{i:05}"), "bulk", &user, "active"))
            })
            .collect();
        s.commit(&writes).unwrap();
        assert_eq!(s.list(&filter(5000)).unwrap().len(), 1500);
        assert_eq!(
            ids(&s.list(&ListFilter { visible_to: Some("needle".into()), ..filter(10) }).unwrap()),
            vec!["s00699", "s01399"]
        );
        assert_eq!(
            ids(&s.list(&ListFilter { visible_to: Some("needle".into()), ..filter(1) }).unwrap()),
            vec!["s00699"]
        );
        assert_eq!(recovery_read(s).0.len(), 1500);
    });
}

#[test]
fn recovery_reads_live_sessions_and_all_invites() {
    each("live", |b| {
        let s = b.store.as_ref();
        let live = [
            session("l1", "k", "u", "active"),
            session("l2", "k", "u", "waiting"),
            session("l3", "k", "u", "completing"),
        ];
        let dead = ended_at(session("d1", "k", "u", "active"), T0 + 10);
        let mut w: Vec<StoreWrite> = live.iter().map(put).collect();
        w.push(put(&dead));
        w.push(put_invite(&invite("t1", "l1", None)));
        w.push(put_invite(&invite("t2", "d1", Some(T0 + 99))));
        s.commit(&w).unwrap();
        let (sessions, invites) = recovery_read(s);
        assert_eq!(sorted(ids(&sessions)), vec!["l1", "l2", "l3"]);
        for l in &live {
            assert!(sessions.contains(l));
        }
        let mut tokens: Vec<(String, String, Option<Millis>)> =
            invites.iter().map(|i| (i.token.clone(), i.session_id.clone(), i.fixed_expiry)).collect();
        tokens.sort();
        assert_eq!(tokens, vec![("t1".into(), "l1".into(), None), ("t2".into(), "d1".into(), Some(T0 + 99))]);
    });
}

#[test]
fn live_pages_hand_every_live_session_once_in_creation_order() {
    each("pages", |b| {
        let s = b.store.as_ref();
        // two and a half pages of live sessions, with ended ones among them
        let n = store::LIVE_PAGE * 5 / 2 + 7;
        let all: Vec<Session> = (0..n)
            .map(|i| {
                let live = session(&format!("s{i:06}"), "bulk", &format!("u{i}"), "active");
                if i % 9 == 4 {
                    ended_at(live, T0 + 5)
                } else {
                    live
                }
            })
            .collect();
        for chunk in all.chunks(5000) {
            s.commit(&chunk.iter().map(put).collect::<Vec<_>>()).unwrap();
        }
        let mut pages = Vec::new();
        s.live_pages(&mut |page| pages.push(page)).unwrap();
        assert!(
            pages.iter().all(|p| !p.is_empty() && p.len() <= store::LIVE_PAGE),
            "{:?}",
            pages.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let got: Vec<Session> = pages.into_iter().flatten().collect();
        let live: Vec<&Session> = all.iter().filter(|x| x.status.is_live()).collect();
        assert_eq!(got.len(), live.len());
        assert_eq!(ids(&got), live.iter().map(|x| x.id.clone()).collect::<Vec<_>>());
        assert_eq!(got[1234], *live[1234]);
    });
}

#[test]
fn sqlite_live_pages_fail_on_a_corrupt_record_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db").display().to_string();
    let s = SqliteStore::open(&path).unwrap();
    let writes: Vec<StoreWrite> =
        (0..store::LIVE_PAGE * 3).map(|i| put(&session(&format!("s{i:06}"), "bulk", "u", "active"))).collect();
    s.commit(&writes).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE sessions SET record = '{not json' WHERE id = 's015000'", []).unwrap();
    let mut handed = 0;
    let e = s.live_pages(&mut |page| handed += page.len()).unwrap_err();
    assert!(e.to_string().contains("corrupt record"), "{e}");
    // the pages before the corrupt one may have been handed over, never one after it
    assert!(handed <= 15_000, "{handed}");
}

#[test]
fn invites_upsert_and_delete() {
    each("invites", |b| {
        let s = b.store.as_ref();
        let tokens = |s: &dyn Store| {
            let mut v: Vec<(String, Option<Millis>)> =
                recovery_read(s).1.into_iter().map(|i| (i.token, i.fixed_expiry)).collect();
            v.sort();
            v
        };
        s.commit(&[put_invite(&invite("a", "s1", None)), put_invite(&invite("b", "s1", None))]).unwrap();
        assert_eq!(tokens(s), vec![("a".into(), None), ("b".into(), None)]);
        // Upsert replaces the record.
        s.commit(&[put_invite(&invite("a", "s1", Some(T0 + 5)))]).unwrap();
        assert_eq!(tokens(s), vec![("a".into(), Some(T0 + 5)), ("b".into(), None)]);
        // Delete; deleting a missing token is fine.
        s.commit(&[del_invite("a"), del_invite("missing")]).unwrap();
        assert_eq!(tokens(s), vec![("b".into(), None)]);
        // In one batch, order decides: put then delete is gone, delete then put stays.
        s.commit(&[
            put_invite(&invite("c", "s2", None)),
            del_invite("c"),
            del_invite("b"),
            put_invite(&invite("b", "s3", Some(T0))),
        ])
        .unwrap();
        assert_eq!(tokens(s), vec![("b".into(), Some(T0))]);
        assert_eq!(recovery_read(s).1[0].session_id, "s3");
    });
}

#[test]
fn docs_by_collection() {
    each("docs", |b| {
        let s = b.store.as_ref();
        assert!(s.docs("profiles").unwrap().is_empty());
        s.commit(&[
            doc("profiles", "u1", Some(r#"{"age":30}"#)),
            doc("profiles", "u2", Some("{}")),
            doc("matches", "u1|u2", Some("[1]")),
        ])
        .unwrap();
        let docs = |c: &str| sorted(s.docs(c).unwrap());
        assert_eq!(docs("profiles"), vec![("u1".into(), r#"{"age":30}"#.into()), ("u2".into(), "{}".into())]);
        assert_eq!(docs("matches"), vec![("u1|u2".into(), "[1]".into())]);
        // Overwrite, delete, and both orders inside one batch.
        s.commit(&[
            doc("profiles", "u1", Some(r#"{"age":31}"#)),
            doc("profiles", "u2", None),
            doc("matches", "x", Some("1")),
            doc("matches", "x", None),
            doc("matches", "u1|u2", None),
            doc("matches", "u1|u2", Some("[2]")),
            doc("profiles", "gone", None),
        ])
        .unwrap();
        assert_eq!(docs("profiles"), vec![("u1".into(), r#"{"age":31}"#.into())]);
        assert_eq!(docs("matches"), vec![("u1|u2".into(), "[2]".into())]);
        // Same key in two collections are two documents.
        s.commit(&[doc("ratings", "u1", Some("r"))]).unwrap();
        assert_eq!(docs("ratings"), vec![("u1".into(), "r".into())]);
        assert_eq!(docs("profiles").len(), 1);
    });
}

#[test]
fn meta_get_and_put() {
    each("meta", |b| {
        let s = b.store.as_ref();
        assert_eq!(s.meta_get("event_epoch").unwrap(), None);
        s.meta_put("event_epoch", "1").unwrap();
        s.meta_put("auth.api_key", "k").unwrap();
        s.meta_put("event_epoch", "2").unwrap();
        assert_eq!(s.meta_get("event_epoch").unwrap().as_deref(), Some("2"));
        assert_eq!(s.meta_get("auth.api_key").unwrap().as_deref(), Some("k"));
        assert!(!s.describe().is_empty());
    });
}

#[test]
fn purge_dry_run_counts_and_real_run_deletes() {
    each("purge", |b| {
        let s = b.store.as_ref();
        // Kind "short" keeps ended sessions until T0+100, kind "long" until T0+10000.
        let cutoff = |kind: &str| if kind == "short" { T0 + 100 } else { T0 + 10_000 };
        let sessions = [
            ended_at(session("s-old", "short", "u", "active"), T0 + 50), // purgeable
            ended_at(session("s-new", "short", "u", "active"), T0 + 100), // exactly at cutoff: kept
            ended_at(session("l-old", "long", "u", "active"), T0 + 9_999), // purgeable
            ended_at(session("l-new", "long", "u", "active"), T0 + 10_001), // kept
            session("live-short", "short", "u", "active"),               // live: never purged
            session("live-long", "long", "u", "waiting"),
        ];
        s.commit(&sessions.iter().map(put).collect::<Vec<_>>()).unwrap();
        assert_eq!(s.purge(&cutoff, true).unwrap(), 2);
        assert_eq!(s.list(&filter(100)).unwrap().len(), 6, "dry run changes nothing");
        assert_eq!(s.purge(&cutoff, false).unwrap(), 2);
        assert_eq!(sorted(ids(&s.list(&filter(100)).unwrap())), vec!["l-new", "live-long", "live-short", "s-new"]);
        assert_eq!(s.get("s-old").unwrap(), None);
        assert_eq!(s.purge(&cutoff, true).unwrap(), 0);
        assert_eq!(s.purge(&cutoff, false).unwrap(), 0);
        // Everything ended goes with a cutoff in the far future.
        assert_eq!(s.purge(&|_| i64::MAX, false).unwrap(), 2);
        assert_eq!(sorted(ids(&s.list(&filter(100)).unwrap())), vec!["live-long", "live-short"]);
    });
}

#[test]
fn durable_stores_keep_everything_across_reopen() {
    for b in backends("reopen") {
        if b.name == "memory" {
            continue;
        }
        let Backend { name, store, reopen, _keep } = b;
        let a = session("a", "plain", "u1", "active");
        store.commit(&[put(&a), put_invite(&invite("t", "a", None)), doc("profiles", "u1", Some("p"))]).unwrap();
        store.meta_put("event_epoch", "7").unwrap();
        // Let go (for PostgreSQL: of the schema's node lock too), as a stopped node does.
        drop(store);
        let r = reopen();
        assert_eq!(r.get("a").unwrap().as_ref(), Some(&a), "{name}");
        assert_eq!(recovery_read(r.as_ref()).1.len(), 1, "{name}");
        assert_eq!(r.docs("profiles").unwrap(), vec![("u1".into(), "p".into())], "{name}");
        assert_eq!(r.meta_get("event_epoch").unwrap().as_deref(), Some("7"), "{name}");
        drop(r);
        drop(_keep);
    }
}

/// The synchronous PostgreSQL client runs its own runtime; the store must be
/// callable from inside the server's (async handlers call `get` directly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_is_callable_inside_a_tokio_runtime() {
    postgres_inside_runtime().await;
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_store_is_callable_inside_a_current_thread_runtime() {
    postgres_inside_runtime().await;
}

async fn postgres_inside_runtime() {
    if pg_base().is_none() {
        return;
    }
    let schema = PgSchema::new("rt");
    let s = store::open(&schema.url()).unwrap(); // opened on a runtime thread, as App::build does
    let a = session("a", "plain", "u1", "active");
    s.commit(&[put(&a)]).unwrap();
    assert_eq!(s.get("a").unwrap().as_ref(), Some(&a));
    assert_eq!(s.list(&filter(10)).unwrap().len(), 1);
    s.meta_put("k", "v").unwrap();
    assert_eq!(s.meta_get("k").unwrap().as_deref(), Some("v"));
    assert_eq!(s.purge(&|_| i64::MAX, true).unwrap(), 0);
    let s2 = s.clone();
    let from_blocking =
        tokio::task::spawn_blocking(move || s2.list(&filter(10)).map(|v| v.len())).await.unwrap().unwrap();
    assert_eq!(from_blocking, 1);
    drop(s); // dropping inside the runtime must not panic either
}

/// A broken connection (PostgreSQL restarted, or the backend killed) is
/// reopened by the next call, reads and writes alike.
#[test]
fn postgres_store_reconnects_after_its_connections_are_killed() {
    if pg_base().is_none() {
        return;
    }
    let schema = PgSchema::new("reconnect");
    let app_name = schema.name.clone();
    let s = store::open(&format!("{}&application_name={app_name}", schema.url())).unwrap();
    s.commit(&[put(&session("a", "plain", "u1", "active"))]).unwrap();
    let mut admin = schema.client();
    for round in 0..3 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&app_name],
            )
            .unwrap()
            .get(0);
        // The cluster connection reconnects only when next used.
        assert!(killed >= 2, "round {round}: the writer and the reader ({killed})");
        std::thread::sleep(std::time::Duration::from_millis(100));
        if round % 2 == 0 {
            assert!(s.get("a").unwrap().is_some(), "round {round}: read after the kill");
            s.commit(&[put(&session(&format!("b{round}"), "plain", "u1", "active"))]).unwrap();
        } else {
            s.commit(&[put(&session(&format!("b{round}"), "plain", "u1", "active"))]).unwrap();
            assert!(s.get("a").unwrap().is_some(), "round {round}: read after the kill");
        }
        assert_eq!(s.list(&filter(10)).unwrap().len(), round + 2);
    }
}

/// Sustained writes cannot grow the SQLite WAL without bound: past its limit
/// it is checkpointed and truncated in the background (every 500 ms), so it
/// holds at most what is written between two checkpoints beyond the limit,
/// and an idle store's WAL is within the limit.
#[test]
fn sqlite_wal_stays_bounded_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let path = path.to_str().unwrap();
    let limit = 2 * 1024 * 1024;
    let store = tether::store::SqliteStore::open_with_wal_limit(path, limit).unwrap();
    let wal = format!("{path}-wal");
    let big = "x".repeat(4000);
    let (mut largest, mut previous, mut grown, mut cut) = (0u64, 0u64, 0u64, 0);
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < std::time::Duration::from_secs(4) {
        let mut s = session(&format!("s{n:08}"), "plain", "u1", "active");
        s.metadata = serde_json::json!({"blob": big});
        store.commit(&[put(&s)]).unwrap();
        assert!(store.get(&s.id).unwrap().is_some());
        n += 1;
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size < previous {
            cut += 1;
        } else {
            grown += size - previous;
        }
        (largest, previous) = (largest.max(size), size);
    }
    // Unbounded, the WAL would be as large as everything appended to it.
    assert!(cut >= 3, "the WAL was cut back {cut} times");
    assert!(grown > 3 * largest, "the WAL reached {largest} bytes of the {grown} appended (limit {limit})");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let idle = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(idle <= limit, "idle WAL {idle} bytes");
}

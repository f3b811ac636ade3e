//! Crash loop: several clients churn sessions (start, heartbeat, end, join)
//! while the real binary is `kill -9`ed at a random moment, again and again,
//! on SQLite and on PostgreSQL. Every answer a client received is an
//! acknowledged change and goes into a log; after each restart the store is
//! compared with it:
//!
//! - 0 lost: every acknowledged start is there, an acknowledged end with its
//!   reason, every acknowledged participant, and a session nobody ended is
//!   still live or ended by its own deadline;
//! - 0 resurrected: nothing acknowledged as ended comes back live;
//! - 0 overdue: `/v1/admin/health` counts no overdue session within 1 s of the restart.
//!
//! A request cut short by the kill has no answer: its outcome is in doubt and
//! the session it touched may be either way (then the store's word is taken).
//!
//! Size: `TETHER_CRASH_ROUNDS` — `smoke` (default: 3 rounds on SQLite, 2 on
//! PostgreSQL), `full` (20 and 10) or a number (that many on each).
//! PostgreSQL: `TETHER_TEST_POSTGRES` (see `support/postgres.rs`; `off` skips it).
//! `TETHER_CRASH_SEED` replays the same random choices (the timing still varies).

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use support::store_server::StoreServer;
use support::{config_text, pg_base, user_token, PgSchema, API_KEY};

/// Clients churning at once; each owns its users, so their logs never overlap.
const CLIENTS: usize = 4;
/// Users per client (a few, so `replace` kinds supersede each other).
const USERS_PER_CLIENT: usize = 4;
/// The kinds churned (from the harness's config): long-lived, `replace`, a
/// 1 s idle timeout and a 3 s `max_duration`, so deadlines fall due across kills.
const KINDS: [&str; 4] = ["plain", "swipe", "brief", "capped"];

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Sqlite,
    Postgres,
}

fn rounds(store: Store) -> usize {
    let size = std::env::var("TETHER_CRASH_ROUNDS").unwrap_or_default();
    match (size.as_str(), store) {
        ("" | "smoke", Store::Sqlite) => 3,
        ("" | "smoke", Store::Postgres) => 2,
        ("full", Store::Sqlite) => 20,
        ("full", Store::Postgres) => 10,
        (n, _) => {
            n.parse().unwrap_or_else(|_| panic!("TETHER_CRASH_ROUNDS must be smoke, full or a number, not {n:?}"))
        }
    }
}

fn seed() -> u64 {
    match std::env::var("TETHER_CRASH_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("TETHER_CRASH_SEED must be a number, not {s:?}")),
        Err(_) => rand::random(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_on_sqlite_loses_and_resurrects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("tether.db").display());
    crash_loop("SQLite", &store, rounds(Store::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_on_postgres_loses_and_resurrects_nothing() {
    if pg_base().is_none() {
        eprintln!("TETHER_TEST_POSTGRES=off: skipped");
        return;
    }
    let schema = PgSchema::new("crashloop");
    schema.with_client(|_| ()); // a clear message when PostgreSQL is down
    crash_loop("PostgreSQL", &schema.url(), rounds(Store::Postgres)).await;
}

/// What the clients were told about one session.
#[derive(Clone, Debug)]
struct Acked {
    kind: String,
    /// `Some(reason)` once an answer said it ended (an end, a `superseded`
    /// list, or a 410 naming the reason).
    ended: Option<String>,
    /// Users whose join was answered 201.
    participants: Vec<String>,
    /// A request about it got no answer (cut by the kill): either outcome is right.
    in_doubt: bool,
}

/// One client's acknowledged changes in one round.
#[derive(Debug)]
enum Change {
    Started {
        id: String,
        kind: String,
        user: String,
        superseded: Vec<String>,
    },
    Ended {
        id: String,
        reason: String,
    },
    Joined {
        id: String,
        user: String,
    },
    Heartbeat,
    /// Any in-doubt request: the user whose sessions it may have touched
    /// (a start of a `replace` kind supersedes), or the session.
    InDoubt {
        user: Option<String>,
        id: Option<String>,
    },
}

#[derive(Default)]
struct Log {
    sessions: BTreeMap<String, Acked>,
    /// Owner user of each session (user ids name their client: `c{client}-u{n}`).
    owner: HashMap<String, String>,
    acknowledged: u64,
}

impl Log {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Started { id, kind, user, superseded } => {
                self.acknowledged += 1;
                for old in superseded {
                    // An unknown id here is a start whose answer the kill cut off.
                    if let Some(s) = self.sessions.get_mut(&old) {
                        s.ended = Some("superseded".into());
                    }
                }
                self.owner.insert(id.clone(), user);
                self.sessions.insert(id, Acked { kind, ended: None, participants: Vec::new(), in_doubt: false });
            }
            Change::Ended { id, reason } => {
                self.acknowledged += 1;
                self.sessions.get_mut(&id).expect("ended a known session").ended = Some(reason);
            }
            Change::Joined { id, user } => {
                self.acknowledged += 1;
                self.sessions.get_mut(&id).expect("joined a known session").participants.push(user);
            }
            Change::Heartbeat => self.acknowledged += 1,
            Change::InDoubt { user, id } => {
                if let Some(s) = id.and_then(|id| self.sessions.get_mut(&id)) {
                    s.in_doubt = true;
                }
                if let Some(user) = user {
                    for (id, owner) in &self.owner {
                        if *owner == user {
                            self.sessions.get_mut(id).unwrap().in_doubt = true;
                        }
                    }
                }
            }
        }
    }

    /// The sessions of client `c` the log believes live: (id, user).
    fn live_of(&self, c: usize) -> Vec<(String, String)> {
        let prefix = format!("c{c}-");
        self.sessions
            .iter()
            .filter(|(_, s)| s.ended.is_none())
            .map(|(id, _)| (id.clone(), self.owner[id].clone()))
            .filter(|(_, user)| user.starts_with(&prefix))
            .collect()
    }
}

async fn crash_loop(store_name: &str, store: &str, rounds: usize) {
    let seed = seed();
    eprintln!("crash loop on {store_name}: {rounds} rounds, TETHER_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = StoreServer::start(store, &config_text()).await;
    let mut log = Log::default();
    let mut recoveries = Vec::new();
    let mut verified = 0;
    for round in 1..=rounds {
        // Churn until the kill, at a random moment.
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let live = log.live_of(c);
            let client = server.client.clone();
            let base = server.base.clone();
            let client_seed: u64 = rng.gen();
            clients.push(tokio::spawn(churn(client, base, c, live, client_seed)));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..=700))).await;
        server.kill9();
        let before = log.acknowledged;
        for client in clients {
            for change in client.await.expect("a churn client panicked") {
                log.apply(change);
            }
        }
        let this_round = log.acknowledged - before;
        assert!(this_round > 0, "round {round}: the clients got no answer at all before the kill");

        // Down for a moment (deadlines fall due meanwhile), then back.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=300))).await;
        let recovery = server.restart().await;
        recoveries.push(recovery);
        let (overdue_cleared, first_overdue) = wait_no_overdue(&server).await;
        let in_doubt = log.sessions.values().filter(|s| s.in_doubt).count();
        verified = verify(&server, &mut log, round).await;
        eprintln!(
            "round {round}: {this_round} acknowledged changes ({} in all), {verified} sessions verified, \
             {in_doubt} in doubt, listening {} ms after restart, overdue 0 after {} ms (first read: {first_overdue})",
            log.acknowledged,
            recovery.as_millis(),
            overdue_cleared.as_millis()
        );
    }
    let (min, max) = (recoveries.iter().min().unwrap(), recoveries.iter().max().unwrap());
    eprintln!(
        "crash loop on {store_name}: {rounds} kill -9 rounds, {} acknowledged changes, {verified} sessions, \
         0 lost, 0 resurrected, 0 overdue; restart to listening {}–{} ms",
        log.acknowledged,
        min.as_millis(),
        max.as_millis()
    );
}

/// One client: random operations on its own users' sessions until a request
/// fails (the kill). Returns its acknowledged changes, the last maybe in doubt.
async fn churn(
    client: reqwest::Client,
    base: String,
    c: usize,
    mut live: Vec<(String, String)>,
    seed: u64,
) -> Vec<Change> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut changes = Vec::new();
    // Odd clients act as the users themselves (user tokens), even ones as the backend.
    let as_user = c % 2 == 1;
    let mut joins = 0;
    loop {
        let user = format!("c{c}-u{}", rng.gen_range(0..USERS_PER_CLIENT));
        let pick = rng.gen_range(0..100);
        let target = (!live.is_empty()).then(|| rng.gen_range(0..live.len()));
        let token = |user: &str| if as_user { user_token(user) } else { API_KEY.to_string() };
        let outcome = match (pick, target) {
            (0..=34, _) | (_, None) => {
                let kind = KINDS[rng.gen_range(0..KINDS.len())];
                let body = if as_user { json!({"kind": kind}) } else { json!({"kind": kind, "user_id": user}) };
                let sent =
                    client.post(format!("{base}/v1/sessions")).bearer_auth(token(&user)).json(&body).send().await;
                answer(sent, Some(user.clone()), None, &[201]).await.map(|(_, v)| {
                    let id = v["session"]["id"].as_str().expect("a session id").to_string();
                    let superseded: Vec<String> = v["superseded"]
                        .as_array()
                        .expect("a superseded list")
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect();
                    live.retain(|(id, _)| !superseded.contains(id));
                    live.push((id.clone(), user.clone()));
                    Change::Started { id, kind: kind.to_string(), user: user.clone(), superseded }
                })
            }
            (35..=59, Some(t)) => {
                let (id, owner) = live[t].clone();
                let sent =
                    client.post(format!("{base}/v1/sessions/{id}/heartbeat")).bearer_auth(token(&owner)).send().await;
                answer(sent, None, Some(id.clone()), &[200, 410]).await.map(|(status, v)| match status {
                    200 => Change::Heartbeat,
                    _ => {
                        live.remove(t);
                        Change::Ended { id, reason: gone_reason(&v) }
                    }
                })
            }
            (60..=79, Some(t)) => {
                let (id, owner) = live.remove(t);
                let sent = client
                    .post(format!("{base}/v1/sessions/{id}/end"))
                    .bearer_auth(token(&owner))
                    .json(&json!({"reason": "done"}))
                    .send()
                    .await;
                answer(sent, None, Some(id.clone()), &[200, 410]).await.map(|(status, v)| {
                    let reason =
                        if status == 200 { v["end_reason"].as_str().unwrap().to_string() } else { gone_reason(&v) };
                    Change::Ended { id, reason }
                })
            }
            (_, Some(t)) => {
                let (id, _) = live[t].clone();
                joins += 1;
                let guest = format!("c{c}-guest{joins}");
                let sent = client
                    .post(format!("{base}/v1/sessions/{id}/participants"))
                    .bearer_auth(API_KEY)
                    .json(&json!({"user_id": guest}))
                    .send()
                    .await;
                answer(sent, None, Some(id.clone()), &[201, 410]).await.map(|(status, v)| match status {
                    201 => Change::Joined { id, user: guest },
                    _ => {
                        live.remove(t);
                        Change::Ended { id, reason: gone_reason(&v) }
                    }
                })
            }
        };
        match outcome {
            Ok(change) => changes.push(change),
            Err(Some(doubt)) => {
                changes.push(doubt);
                return changes;
            }
            Err(None) => return changes,
        }
    }
}

/// The reason a 410 names for an ended session.
fn gone_reason(v: &Value) -> String {
    v["end_reason"].as_str().unwrap_or_else(|| panic!("a 410 without end_reason: {v}")).to_string()
}

/// Reads an answer: `Ok((status, body))` if its status is expected; a
/// request that never reached the server is `Err(None)` (nothing happened),
/// one cut short after it was sent `Err(Some(in doubt))`. Any other status fails the test.
async fn answer(
    sent: reqwest::Result<reqwest::Response>,
    user: Option<String>,
    id: Option<String>,
    expected: &[u16],
) -> Result<(u16, Value), Option<Change>> {
    let r = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(None),
        Err(_) => return Err(Some(Change::InDoubt { user, id })),
    };
    let status = r.status().as_u16();
    let Ok(text) = r.text().await else { return Err(Some(Change::InDoubt { user, id })) };
    assert!(expected.contains(&status), "answered {status} (expected {expected:?}): {text}");
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Polls `/v1/admin/health` until it counts no overdue session; fails after
/// 1 s. Returns how long that took and the count the first read gave.
async fn wait_no_overdue(server: &StoreServer) -> (Duration, u64) {
    let began = Instant::now();
    let mut first = None;
    loop {
        let health = server.call(Method::GET, "/v1/admin/health", None).await;
        let overdue = health.expect(200)["sessions"]["overdue"].as_u64().expect("sessions.overdue");
        let first = *first.get_or_insert(overdue);
        if overdue == 0 {
            return (began.elapsed(), first);
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{overdue} sessions still overdue 1 s after the restart: {}",
            health.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Compares the store (every session, page by page) with the log, fails on
/// any loss or resurrection, then takes the store's word for what was in
/// doubt or ended by a deadline. Returns how many sessions it compared.
async fn verify(server: &StoreServer, log: &mut Log, round: usize) -> usize {
    let stored = stored_sessions(server).await;
    let failures = compare(log, &stored);
    assert!(failures.is_empty(), "round {round}: {} failures:\n{}", failures.len(), failures.join("\n"));
    reconcile(log, &stored);
    stored.len()
}

/// Every session in the store, by id.
async fn stored_sessions(server: &StoreServer) -> HashMap<String, Value> {
    let mut stored: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sessions?limit=1000&cursor={c}"),
            None => "/v1/sessions?limit=1000".to_string(),
        };
        let page = server.call(Method::GET, &path, None).await.expect(200).clone();
        for s in page["sessions"].as_array().expect("sessions") {
            stored.insert(s["id"].as_str().unwrap().to_string(), s.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    stored
}

/// Every way the store disagrees with the acknowledged log, one line each.
fn compare(log: &Log, stored: &HashMap<String, Value>) -> Vec<String> {
    let mut failures = Vec::new();
    for (id, acked) in &log.sessions {
        let Some(s) = stored.get(id) else {
            failures.push(format!("LOST: acknowledged start of {id} ({}) is not in the store", acked.kind));
            continue;
        };
        let status = s["status"].as_str().unwrap();
        let reason = s["end_reason"].as_str();
        match &acked.ended {
            Some(r) if status != "ended" => {
                failures.push(format!("RESURRECTED: {id} acknowledged ended ({r}) is {status}"))
            }
            Some(r) if reason != Some(r.as_str()) => {
                failures.push(format!("CHANGED: {id} acknowledged ended {r}, stored ended {reason:?}"))
            }
            None if !acked.in_doubt && status == "ended" => {
                let by_deadline = match acked.kind.as_str() {
                    "brief" => "idle_timeout",
                    "capped" => "max_duration",
                    _ => "",
                };
                if reason != Some(by_deadline) {
                    failures.push(format!(
                        "LOST: {id} ({}) acknowledged live, stored ended {reason:?} that nobody asked for",
                        acked.kind
                    ));
                }
            }
            _ => {}
        }
        let present: Vec<&str> =
            s["participants"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap_or("")).collect();
        for p in &acked.participants {
            if !present.contains(&p.as_str()) {
                failures.push(format!("LOST: acknowledged participant {p} of {id} is not in the store"));
            }
        }
    }
    failures
}

/// The store now speaks for what the log could not know: sessions in doubt,
/// ends by deadline, and starts whose answer the kill cut off.
fn reconcile(log: &mut Log, stored: &HashMap<String, Value>) {
    for (id, s) in stored {
        let status = s["status"].as_str().unwrap();
        let reason = s["end_reason"].as_str().map(str::to_string);
        match log.sessions.get_mut(id) {
            Some(acked) => {
                acked.in_doubt = false;
                if status == "ended" {
                    acked.ended = reason;
                }
            }
            None => {
                // A start whose answer the kill cut off, yet committed: owned from now on.
                let user = s["user_id"].as_str().unwrap().to_string();
                log.owner.insert(id.clone(), user);
                log.sessions.insert(
                    id.clone(),
                    Acked {
                        kind: s["kind"].as_str().unwrap().to_string(),
                        ended: if status == "ended" { reason } else { None },
                        participants: Vec::new(),
                        in_doubt: false,
                    },
                );
            }
        }
    }
}

/// The comparison itself can fail: a doctored store shows each kind of
/// failure by name, and what a crash may rightly leave passes.
#[test]
fn the_comparison_names_every_kind_of_failure() {
    let acked = |kind: &str, ended: Option<&str>, participants: &[&str], in_doubt: bool| Acked {
        kind: kind.to_string(),
        ended: ended.map(str::to_string),
        participants: participants.iter().map(|p| p.to_string()).collect(),
        in_doubt,
    };
    let stored_as = |status: &str, reason: Option<&str>, participants: &[&str]| {
        let participants: Vec<Value> = participants.iter().map(|p| json!({"id": p})).collect();
        json!({"status": status, "end_reason": reason, "participants": participants})
    };
    let mut log = Log::default();
    let mut stored = HashMap::new();
    let mut case = |id: &str, a: Acked, s: Option<Value>| {
        log.sessions.insert(id.to_string(), a);
        if let Some(s) = s {
            stored.insert(id.to_string(), s);
        }
    };
    // Failures.
    case("lost-start", acked("plain", None, &[], false), None);
    case("resurrected", acked("plain", Some("ended"), &[], false), Some(stored_as("active", None, &["u"])));
    case("changed", acked("plain", Some("ended"), &[], false), Some(stored_as("ended", Some("admin"), &["u"])));
    case("lost-join", acked("plain", None, &["g"], false), Some(stored_as("active", None, &["u"])));
    case("ended-unasked", acked("plain", None, &[], false), Some(stored_as("ended", Some("idle_timeout"), &["u"])));
    case("wrong-deadline", acked("brief", None, &[], false), Some(stored_as("ended", Some("max_duration"), &["u"])));
    // What a crash may rightly leave.
    case("live", acked("plain", None, &["g"], false), Some(stored_as("active", None, &["u", "g"])));
    case("idle", acked("brief", None, &[], false), Some(stored_as("ended", Some("idle_timeout"), &["u"])));
    case("capped", acked("capped", None, &[], false), Some(stored_as("ended", Some("max_duration"), &["u"])));
    case("doubt", acked("swipe", None, &[], true), Some(stored_as("ended", Some("superseded"), &["u"])));
    case("ended", acked("plain", Some("ended"), &[], false), Some(stored_as("ended", Some("ended"), &["u"])));

    let failures = compare(&log, &stored);
    let named = |prefix: &str, id: &str| failures.iter().any(|f| f.starts_with(prefix) && f.contains(id));
    assert!(named("LOST", "lost-start"), "{failures:#?}");
    assert!(named("RESURRECTED", "resurrected"), "{failures:#?}");
    assert!(named("CHANGED", "changed"), "{failures:#?}");
    assert!(named("LOST", "lost-join"), "{failures:#?}");
    assert!(named("LOST", "ended-unasked"), "{failures:#?}");
    assert!(named("LOST", "wrong-deadline"), "{failures:#?}");
    assert_eq!(failures.len(), 6, "only the doctored sessions fail: {failures:#?}");
}

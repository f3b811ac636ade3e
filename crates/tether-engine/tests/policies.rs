//! Engine policy tests. Every timeout is driven by handing the engine a later
//! `now`; nothing sleeps. Each test builds the kinds it needs, so a test reads
//! as "this policy, these operations at these times, this outcome".

use std::collections::HashMap;

use serde_json::json;
use tether_engine::kind::{CALL, DEFAULT, DEFAULT_RETENTION, MATCHING};
use tether_engine::time::{format_rfc3339, parse_rfc3339};
use tether_engine::*;

/// 2026-11-22T10:00:00.000Z
const T0: Millis = 1_795_341_600_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60_000;

// ---------------------------------------------------------------- helpers

fn d(text: &str) -> Option<Dur> {
    Some(Dur::parse(text).unwrap())
}

fn policy(name: &str, f: impl FnOnce(&mut KindPolicy)) -> KindPolicy {
    let mut k = KindPolicy::new(name);
    f(&mut k);
    k
}

fn engine(policies: impl IntoIterator<Item = KindPolicy>) -> Engine {
    let mut kinds = Kinds::builtin();
    for p in policies {
        kinds.insert(p);
    }
    Engine::new(kinds)
}

fn req(id: &str, kind: &str, owner: &str) -> NewSession {
    NewSession { id: id.into(), kind: kind.into(), owner: owner.into(), ..Default::default() }
}

fn child_req(id: &str, kind: &str, owner: &str, parent: &str) -> NewSession {
    NewSession { parent_id: Some(parent.into()), ..req(id, kind, owner) }
}

/// Creates and checks the outcome's invariants.
fn create(e: &mut Engine, now: Millis, r: NewSession) -> (Session, Vec<String>, Outcome) {
    let (s, superseded, out) = e.create(now, r).expect("create");
    check(e, now, &out);
    (s, superseded, out)
}

fn start(e: &mut Engine, now: Millis, id: &str, kind: &str, owner: &str) -> Session {
    create(e, now, req(id, kind, owner)).0
}

fn expire(e: &mut Engine, now: Millis) -> Outcome {
    let out = e.expire_due(now);
    check(e, now, &out);
    assert!(e.overdue(now).is_empty(), "expire_due({now}) left overdue sessions: {:?}", e.overdue(now));
    out
}

fn types(out: &Outcome) -> Vec<EventType> {
    out.events.iter().map(|e| e.kind).collect()
}

/// (session id, event type) in order.
fn events(out: &Outcome) -> Vec<(String, EventType)> {
    out.events.iter().map(|e| (e.session.id.clone(), e.kind)).collect()
}

fn ends(out: &Outcome) -> Vec<(String, EndReason, Option<Millis>)> {
    out.ended().map(|e| (e.session.id.clone(), e.reason.unwrap(), e.deadline)).collect()
}

fn session_writes(out: &Outcome) -> Vec<&Session> {
    out.writes
        .iter()
        .filter_map(|w| match w {
            Write::Session(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

/// Invariants every outcome must hold:
/// - the last write of each session is its final state (the engine's live
///   copy, or an ended snapshot if it left the engine);
/// - the last event of each session carries that same snapshot;
/// - every event is at `now`; `reason` only on ends and equal to the
///   snapshot's `end_reason`; `deadline` exactly on deadline-driven ends.
fn check(e: &Engine, now: Millis, out: &Outcome) {
    let mut last_write: HashMap<&str, &Session> = HashMap::new();
    for s in session_writes(out) {
        last_write.insert(&s.id, s);
    }
    for (id, s) in &last_write {
        match e.get(id) {
            Some(live) => assert_eq!(**s, live, "last write of {id} is not its live state"),
            None => {
                assert_eq!(s.status, Status::Ended, "{id} left the engine but its last write is not ended");
                assert!(s.end_reason.is_some() && s.ended_at == Some(now) && s.expires_at.is_none(), "{s:?}");
            }
        }
    }
    let mut last_event: HashMap<&str, &Event> = HashMap::new();
    for ev in &out.events {
        assert_eq!(ev.at, now, "event at the wrong time: {ev:?}");
        last_event.insert(&ev.session.id, ev);
        match ev.kind {
            EventType::Ended => {
                let reason = ev.reason.expect("ended event without reason");
                assert_eq!(ev.session.end_reason, Some(reason));
                assert_eq!(ev.session.status, Status::Ended);
                assert_eq!(ev.deadline.is_some(), reason.is_deadline(), "deadline on {reason:?}: {:?}", ev.deadline);
                if let Some(at) = ev.deadline {
                    assert!(at <= now, "deadline {at} fired before it was due ({now})");
                }
            }
            EventType::ParticipantJoined | EventType::ParticipantLeft => {
                assert!(ev.participant.is_some(), "participant event without participant");
                assert!(ev.reason.is_none() && ev.deadline.is_none());
            }
            _ => assert!(ev.reason.is_none() && ev.deadline.is_none() && ev.participant.is_none()),
        }
    }
    for (id, ev) in &last_event {
        let w = last_write.get(id).unwrap_or_else(|| panic!("event for {id} without a write"));
        assert_eq!(&*ev.session, *w, "last event of {id} does not carry the final snapshot");
    }
}

fn idle_kind(name: &str, idle: &str) -> KindPolicy {
    policy(name, |k| k.idle_timeout = d(idle))
}

// ---------------------------------------------------------------- idle_timeout

#[test]
fn idle_timeout_counts_from_the_owners_last_heartbeat() {
    let mut e = engine([idle_kind("k", "5m")]);
    let s = start(&mut e, T0, "s1", "k", "u1");
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.expires_at, Some(T0 + 5 * MIN));
    assert_eq!(e.next_deadline(), Some(T0 + 5 * MIN));

    let s = e.heartbeat(T0 + 2 * MIN, "s1", "u1").unwrap();
    assert_eq!(s.last_seen_at, T0 + 2 * MIN);
    assert_eq!(s.participants[0].last_seen_at, T0 + 2 * MIN);
    assert_eq!(s.expires_at, Some(T0 + 7 * MIN));
    assert_eq!(e.next_deadline(), Some(T0 + 7 * MIN));

    // The old deadline passing does nothing.
    assert!(expire(&mut e, T0 + 5 * MIN).is_empty());
    assert!(expire(&mut e, T0 + 7 * MIN - 1).is_empty());
    assert!(e.get("s1").is_some());

    let out = expire(&mut e, T0 + 7 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 7 * MIN))]);
    assert_eq!(types(&out), vec![EventType::Ended]);
    let ended = session_writes(&out)[0];
    assert_eq!(ended.ended_at, Some(T0 + 7 * MIN));
    assert_eq!(ended.expires_at, None);
    assert!(e.get("s1").is_none());
    assert_eq!(e.live_count(), 0);
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn idle_timeout_is_reported_at_its_deadline_even_when_expired_late() {
    let mut e = engine([idle_kind("k", "5m")]);
    start(&mut e, T0, "s1", "k", "u1");
    let out = expire(&mut e, T0 + 9 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
    // ended_at is when it was applied; the event's deadline gives the lateness.
    assert_eq!(out.events[0].session.ended_at, Some(T0 + 9 * MIN));
}

#[test]
fn presence_any_is_kept_alive_by_a_participants_heartbeat() {
    let mut e = engine([policy("k", |k| {
        k.idle_timeout = d("5m");
        k.presence = Presence::Any;
    })]);
    start(&mut e, T0, "s1", "k", "owner");
    e.join(T0, "s1", "p", None).unwrap();
    let s = e.heartbeat(T0 + 4 * MIN, "s1", "p").unwrap();
    assert_eq!(s.last_seen_at, T0 + 4 * MIN);
    assert_eq!(s.expires_at, Some(T0 + 9 * MIN));
    e.heartbeat(T0 + 8 * MIN, "s1", "p").unwrap();
    assert!(expire(&mut e, T0 + 12 * MIN).is_empty());
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 13 * MIN));
    let out = expire(&mut e, T0 + 13 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 13 * MIN))]);
}

#[test]
fn presence_owner_is_not_kept_alive_by_a_participant() {
    let mut e = engine([idle_kind("k", "5m")]); // presence owner by default
    start(&mut e, T0, "s1", "k", "owner");
    e.join(T0, "s1", "p", None).unwrap();
    let s = e.heartbeat(T0 + 3 * MIN, "s1", "p").unwrap();
    assert_eq!(s.last_seen_at, T0, "a participant's heartbeat is not the owner's activity");
    assert_eq!(s.participant("p").unwrap().last_seen_at, T0 + 3 * MIN);
    assert_eq!(s.expires_at, Some(T0 + 5 * MIN));
    e.heartbeat(T0 + 4 * MIN + 59 * SEC, "s1", "p").unwrap();
    let out = expire(&mut e, T0 + 5 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn presence_any_ignores_users_who_are_not_present_participants() {
    let mut e = engine([policy("k", |k| {
        k.idle_timeout = d("5m");
        k.presence = Presence::Any;
    })]);
    start(&mut e, T0, "s1", "k", "owner");
    // A stranger's heartbeat shows no activity.
    let s = e.heartbeat(T0 + MIN, "s1", "stranger").unwrap();
    assert_eq!(s.last_seen_at, T0);
    // Nor does one from a participant who left.
    e.join(T0, "s1", "p", None).unwrap();
    e.leave(T0 + MIN, "s1", "p").unwrap();
    let s = e.heartbeat(T0 + 2 * MIN, "s1", "p").unwrap();
    assert_eq!(s.last_seen_at, T0);
    assert_eq!(s.expires_at, Some(T0 + 5 * MIN));
}

#[test]
fn heartbeat_of_a_session_that_is_not_live() {
    let mut e = engine([idle_kind("k", "5m")]);
    assert_eq!(e.heartbeat(T0, "nope", "u1"), Err(EngineError::NotLive));
    start(&mut e, T0, "s1", "k", "u1");
    expire(&mut e, T0 + 5 * MIN);
    assert_eq!(e.heartbeat(T0 + 5 * MIN, "s1", "u1"), Err(EngineError::NotLive));
}

// ---------------------------------------------------------------- max_duration

#[test]
fn max_duration_counts_from_activation_not_creation() {
    let mut e = engine([policy("k", |k| {
        k.quorum = 2;
        k.max_duration = d("10m");
        k.waiting_timeout = d("15m");
    })]);
    let (s, _, out) = create(&mut e, T0, req("s1", "k", "u1"));
    assert_eq!(s.status, Status::Waiting);
    assert_eq!(s.activated_at, None);
    assert_eq!(types(&out), vec![EventType::Started]);
    assert_eq!(s.expires_at, Some(T0 + 15 * MIN), "waiting: only the waiting timeout is in force");

    let (s, out) = e.join(T0 + 3 * MIN, "s1", "u2", None).unwrap();
    check(&e, T0 + 3 * MIN, &out);
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.activated_at, Some(T0 + 3 * MIN));
    assert_eq!(s.expires_at, Some(T0 + 13 * MIN), "active: waiting timeout gone, max from activation");

    // Heartbeats do not move max_duration.
    let s = e.heartbeat(T0 + 12 * MIN, "s1", "u1").unwrap();
    assert_eq!(s.expires_at, Some(T0 + 13 * MIN));
    assert!(expire(&mut e, T0 + 13 * MIN - 1).is_empty());
    let out = expire(&mut e, T0 + 13 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::MaxDuration, Some(T0 + 13 * MIN))]);
}

#[test]
fn max_duration_of_a_session_active_at_once() {
    let mut e = engine([policy("k", |k| {
        k.idle_timeout = d("5m");
        k.max_duration = d("10m");
    })]);
    let s = start(&mut e, T0, "s1", "k", "u1");
    assert_eq!(s.activated_at, Some(T0));
    for t in [4, 8] {
        e.heartbeat(T0 + t * MIN, "s1", "u1").unwrap();
    }
    // idle would be T0+13m, max is T0+10m.
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 10 * MIN));
    let out = expire(&mut e, T0 + 10 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::MaxDuration, Some(T0 + 10 * MIN))]);
}

// ---------------------------------------------------------------- waiting_timeout

fn waiting_kind() -> KindPolicy {
    policy("pair", |k| {
        k.quorum = 2;
        k.waiting_timeout = d("15m");
        k.per_user = PerUser::Reject;
    })
}

#[test]
fn waiting_timeout_when_quorum_is_never_reached_then_the_user_can_start_again() {
    let mut e = engine([waiting_kind()]);
    let s = start(&mut e, T0, "s1", "pair", "u1");
    assert_eq!(s.status, Status::Waiting);
    // While it waits it blocks a second one (reject).
    match e.create(T0 + MIN, req("s2", "pair", "u1")) {
        Err(EngineError::Conflict(b)) => assert_eq!(b.id, "s1"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(expire(&mut e, T0 + 15 * MIN - 1).is_empty());
    let out = expire(&mut e, T0 + 15 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::WaitingTimeout, Some(T0 + 15 * MIN))]);

    let (s, superseded, out) = create(&mut e, T0 + 16 * MIN, req("s2", "pair", "u1"));
    assert!(superseded.is_empty());
    assert_eq!(s.status, Status::Waiting);
    assert_eq!(s.expires_at, Some(T0 + 31 * MIN));
    assert_eq!(types(&out), vec![EventType::Started]);
}

#[test]
fn waiting_timeout_is_applied_by_create_itself() {
    let mut e = engine([waiting_kind()]);
    start(&mut e, T0, "s1", "pair", "u1");
    // No expire_due in between: create ends the stale session with its real reason.
    let (_, superseded, out) = create(&mut e, T0 + 20 * MIN, req("s2", "pair", "u1"));
    assert!(superseded.is_empty());
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::WaitingTimeout, Some(T0 + 15 * MIN))]);
    assert_eq!(events(&out), vec![("s1".into(), EventType::Ended), ("s2".into(), EventType::Started)]);
}

#[test]
fn waiting_timeout_no_longer_applies_once_active() {
    let mut e = engine([waiting_kind()]);
    start(&mut e, T0, "s1", "pair", "u1");
    e.join(T0 + MIN, "s1", "u2", None).unwrap();
    assert_eq!(e.get("s1").unwrap().expires_at, None);
    assert_eq!(e.next_deadline(), None);
    assert!(expire(&mut e, T0 + 60 * MIN).is_empty());
    assert!(e.get("s1").is_some());
}

// ---------------------------------------------------------------- completing

#[test]
fn completing_timeout_starts_at_complete() {
    let mut e = engine([policy("k", |k| {
        k.idle_timeout = d("5m");
        k.completing_timeout = d("2m");
    })]);
    start(&mut e, T0, "s1", "k", "u1");
    let (s, out) = e.complete(T0 + MIN, "s1").unwrap();
    check(&e, T0 + MIN, &out);
    assert_eq!(s.status, Status::Completing);
    assert_eq!(s.completing_at, Some(T0 + MIN));
    assert_eq!(s.expires_at, Some(T0 + 3 * MIN), "idle is not in force while completing");
    assert_eq!(types(&out), vec![EventType::Completing]);

    // Heartbeats do not extend completing.
    let s = e.heartbeat(T0 + 2 * MIN, "s1", "u1").unwrap();
    assert_eq!(s.expires_at, Some(T0 + 3 * MIN));
    // Complete again: idempotent, nothing changes.
    let (again, out) = e.complete(T0 + 2 * MIN, "s1").unwrap();
    assert!(out.is_empty());
    assert_eq!(again.completing_at, Some(T0 + MIN));

    let out = expire(&mut e, T0 + 3 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::CompletingTimeout, Some(T0 + 3 * MIN))]);
}

#[test]
fn completing_without_a_timeout_does_not_end_on_idle() {
    let mut e = engine([idle_kind("k", "5m")]);
    start(&mut e, T0, "s1", "k", "u1");
    let (s, _) = e.complete(T0 + MIN, "s1").unwrap();
    assert_eq!(s.expires_at, None);
    assert!(expire(&mut e, T0 + 60 * MIN).is_empty());
    assert_eq!(e.get("s1").unwrap().status, Status::Completing);
}

#[test]
fn max_duration_still_applies_while_completing() {
    let mut e = engine([policy("k", |k| {
        k.max_duration = d("10m");
        k.completing_timeout = d("5m");
    })]);
    start(&mut e, T0, "s1", "k", "u1");
    let (s, _) = e.complete(T0 + 8 * MIN, "s1").unwrap();
    assert_eq!(s.expires_at, Some(T0 + 10 * MIN));
    let out = expire(&mut e, T0 + 11 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::MaxDuration, Some(T0 + 10 * MIN))]);
}

#[test]
fn complete_from_a_wrong_status() {
    let mut e = engine([waiting_kind(), idle_kind("k", "5m")]);
    start(&mut e, T0, "w", "pair", "u1");
    assert_eq!(
        e.complete(T0, "w").map(|_| ()),
        Err(EngineError::WrongStatus { status: Status::Waiting, action: "complete" })
    );
    assert_eq!(e.get("w").unwrap().status, Status::Waiting, "a refused complete changes nothing");
    assert_eq!(e.complete(T0, "unknown").map(|_| ()), Err(EngineError::NotLive));
    start(&mut e, T0, "a", "k", "u1");
    e.end(T0 + 1, "a", EndReason::Ended, None).unwrap();
    assert_eq!(e.complete(T0 + 2, "a").map(|_| ()), Err(EngineError::NotLive));
}

// ---------------------------------------------------------------- per_user

#[test]
fn per_user_replace_supersedes_and_returns_the_old_ids() {
    let mut e = engine([
        policy("r", |k| {
            k.per_user = PerUser::Replace;
            k.idle_timeout = d("5m");
        }),
        policy("plain", |_| {}),
    ]);
    start(&mut e, T0, "s1", "r", "u1");
    start(&mut e, T0, "other-user", "r", "u2");
    start(&mut e, T0, "other-kind", "plain", "u1");

    let (s2, superseded, out) = create(&mut e, T0 + MIN, req("s2", "r", "u1"));
    assert_eq!(superseded, vec!["s1".to_string()]);
    assert_eq!(s2.status, Status::Active);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::Superseded, None)]);
    assert_eq!(
        events(&out),
        vec![("s1".into(), EventType::Ended), ("s2".into(), EventType::Started), ("s2".into(), EventType::Activated)]
    );
    assert_eq!(session_writes(&out).len(), 2);
    assert!(e.get("s1").is_none());
    assert!(e.get("other-user").is_some(), "another user's session is untouched");
    assert!(e.get("other-kind").is_some(), "another kind's session is untouched");

    let (_, superseded, _) = create(&mut e, T0 + 2 * MIN, req("s3", "r", "u1"));
    assert_eq!(superseded, vec!["s2".to_string()]);
    assert_eq!(e.live_count(), 3);
}

#[test]
fn per_user_reject_answers_conflict_with_the_blocking_session() {
    let mut e = engine([policy("x", |k| {
        k.per_user = PerUser::Reject;
        k.idle_timeout = d("5m");
    })]);
    start(&mut e, T0, "s1", "x", "u1");
    e.heartbeat(T0 + MIN, "s1", "u1").unwrap();
    let err = e.create(T0 + 2 * MIN, req("s2", "x", "u1")).unwrap_err();
    match err {
        EngineError::Conflict(b) => {
            assert_eq!(*b, e.get("s1").unwrap().clone());
            assert_eq!(b.expires_at, Some(T0 + 6 * MIN));
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    assert!(e.get("s2").is_none());
    assert_eq!(e.live_count(), 1);
    // Right before the deadline it still blocks.
    assert!(matches!(e.create(T0 + 6 * MIN - 1, req("s2", "x", "u1")), Err(EngineError::Conflict(_))));
    // Another user is not blocked.
    start(&mut e, T0 + 2 * MIN, "s3", "x", "u2");
}

#[test]
fn per_user_reject_with_takeover_ends_the_old_one_taken_over() {
    let mut e = engine([policy("x", |k| k.per_user = PerUser::Reject)]);
    start(&mut e, T0, "s1", "x", "u1");
    let r = NewSession { takeover: true, ..req("s2", "x", "u1") };
    let (s2, superseded, out) = create(&mut e, T0 + MIN, r);
    assert_eq!(superseded, vec!["s1".to_string()]);
    assert_eq!(s2.status, Status::Active);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::TakenOver, None)]);
    assert_eq!(types(&out), vec![EventType::Ended, EventType::Started, EventType::Activated]);
    // takeover without anything to take over is a plain create.
    let r = NewSession { takeover: true, ..req("t1", "x", "u2") };
    let (_, superseded, out) = create(&mut e, T0 + MIN, r);
    assert!(superseded.is_empty());
    assert_eq!(types(&out), vec![EventType::Started, EventType::Activated]);
}

#[test]
fn per_user_allow_keeps_every_session() {
    let mut e = engine([]);
    for i in 0..3 {
        let (_, superseded, _) = create(&mut e, T0 + i, req(&format!("s{i}"), DEFAULT, "u1"));
        assert!(superseded.is_empty());
    }
    assert_eq!(e.live_count(), 3);
}

#[test]
fn a_session_past_its_deadline_never_blocks_create_reject() {
    let mut e = engine([policy("x", |k| {
        k.per_user = PerUser::Reject;
        k.idle_timeout = d("5m");
    })]);
    start(&mut e, T0, "s1", "x", "u1");
    // Exactly at the deadline, without any expire_due in between.
    let (s2, superseded, out) = create(&mut e, T0 + 5 * MIN, req("s2", "x", "u1"));
    assert!(superseded.is_empty(), "it ended on its own, it was not superseded");
    assert_eq!(s2.id, "s2");
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
    assert_eq!(types(&out), vec![EventType::Ended, EventType::Started, EventType::Activated]);
}

#[test]
fn a_session_past_its_deadline_is_ended_with_its_real_reason_not_superseded() {
    let mut e = engine([policy("r", |k| {
        k.per_user = PerUser::Replace;
        k.idle_timeout = d("5m");
    })]);
    start(&mut e, T0, "s1", "r", "u1");
    let (_, superseded, out) = create(&mut e, T0 + 7 * MIN, req("s2", "r", "u1"));
    assert!(superseded.is_empty());
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn a_refused_create_loses_no_deadline_end() {
    // Create applies due deadlines before it checks per-user policy. When it
    // then refuses, those ends must not vanish from the engine unreported.
    let mut e = engine([policy("x", |k| {
        k.per_user = PerUser::Reject;
        k.idle_timeout = d("5m");
    })]);
    start(&mut e, T0, "stale", "x", "u2");
    start(&mut e, T0 + 4 * MIN, "s1", "x", "u1");
    assert!(matches!(e.create(T0 + 6 * MIN, req("s2", "x", "u1")), Err(EngineError::Conflict(_))));
    let out = expire(&mut e, T0 + 6 * MIN);
    assert_eq!(ends(&out), vec![("stale".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn a_blocking_session_whose_parent_is_past_its_deadline_does_not_block() {
    let mut e = engine([idle_kind("parent", "5m"), policy("x", |k| k.per_user = PerUser::Reject)]);
    start(&mut e, T0, "p", "parent", "u1");
    create(&mut e, T0, child_req("c1", "x", "u1", "p"));
    let (_, superseded, out) = create(&mut e, T0 + 6 * MIN, req("c2", "x", "u1"));
    assert!(superseded.is_empty());
    assert_eq!(
        ends(&out),
        vec![("p".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN)), ("c1".into(), EndReason::ParentEnded, None)]
    );
}

#[test]
fn a_blocking_session_is_doomed_through_a_chain_of_cascading_parents_only() {
    let mut e = engine([
        idle_kind("top", "5m"),
        policy("mid", |k| k.on_parent_end = OnParentEnd::End),
        policy("shield", |k| k.on_parent_end = OnParentEnd::Keep),
        policy("x", |k| k.per_user = PerUser::Reject),
    ]);
    // top (overdue) -> mid (end) -> x (end): x is doomed, does not block u1.
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("m", "mid", "u1", "p"));
    create(&mut e, T0, child_req("x1", "x", "u1", "m"));
    // top (overdue) -> shield (keep) -> x (end): x survives, blocks u2.
    start(&mut e, T0, "p2", "top", "u2");
    create(&mut e, T0, child_req("k", "shield", "u2", "p2"));
    create(&mut e, T0, child_req("x2", "x", "u2", "k"));

    let now = T0 + 6 * MIN;
    match e.create(now, req("x3", "x", "u2")) {
        Err(EngineError::Conflict(b)) => assert_eq!(b.id, "x2"),
        other => panic!("expected x2 to block, got {other:?}"),
    }
    let (_, superseded, out) = create(&mut e, now, req("x4", "x", "u1"));
    assert!(superseded.is_empty());
    let mut got = ends(&out);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("m".into(), EndReason::ParentEnded, None),
            ("p".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN)),
            ("p2".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN)),
            ("x1".into(), EndReason::ParentEnded, None)
        ]
    );
    assert!(e.get("k").is_some() && e.get("x2").is_some());
}

#[test]
fn takeover_of_a_session_past_its_deadline_reports_its_real_reason() {
    let mut e = engine([policy("x", |k| {
        k.per_user = PerUser::Reject;
        k.idle_timeout = d("5m");
    })]);
    start(&mut e, T0, "s1", "x", "u1");
    let r = NewSession { takeover: true, ..req("s2", "x", "u1") };
    let (_, superseded, out) = create(&mut e, T0 + 5 * MIN, r);
    assert!(superseded.is_empty());
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn unknown_kind() {
    let mut e = engine([]);
    assert_eq!(e.create(T0, req("s1", "nope", "u1")).map(|_| ()), Err(EngineError::UnknownKind("nope".into())));
    assert_eq!(e.live_count(), 0);
}

#[test]
fn create_fills_the_session_record() {
    let mut e = engine([]);
    let r = NewSession {
        owner_name: Some("Ada".into()),
        metadata: json!({"room": 7}),
        members: vec!["u2".into()],
        ..req("s1", DEFAULT, "u1")
    };
    let (s, _, out) = create(&mut e, T0, r);
    assert_eq!(s.kind, DEFAULT);
    assert_eq!(s.user_id, "u1");
    assert_eq!((s.created_at, s.last_seen_at, s.activated_at), (T0, T0, Some(T0)));
    assert_eq!(s.expires_at, Some(T0 + 60 * SEC), "built-in default: idle 60s");
    assert_eq!((s.ended_at, s.end_reason, s.parent_id.clone()), (None, None, None));
    assert_eq!(s.metadata, json!({"room": 7}));
    assert_eq!(s.participants.len(), 1);
    let owner = &s.participants[0];
    assert_eq!(
        (owner.id.as_str(), owner.name.as_deref(), owner.joined_at, owner.left_at),
        ("u1", Some("Ada"), T0, None)
    );
    assert!(s.visible_to("u2") && s.visible_to("u1") && !s.visible_to("u3"));
    assert_eq!(s.audience(), vec!["u1".to_string(), "u2".to_string()]);
    assert_eq!(session_writes(&out), vec![&s]);
    assert!(out.events.iter().all(|ev| *ev.session == s));

    // No metadata becomes an empty object.
    let s = start(&mut e, T0, "s2", DEFAULT, "u1");
    assert_eq!(s.metadata, json!({}));
}

// ---------------------------------------------------------------- quorum and participants

#[test]
fn quorum_is_reached_by_joining() {
    let mut e = engine([policy("trio", |k| k.quorum = 3)]);
    let (s, _, out) = create(&mut e, T0, req("s1", "trio", "u1"));
    assert_eq!((s.status, s.activated_at), (Status::Waiting, None));
    assert_eq!(types(&out), vec![EventType::Started]);

    let (s, out) = e.join(T0 + SEC, "s1", "u2", Some("Bo".into())).unwrap();
    check(&e, T0 + SEC, &out);
    assert_eq!(s.status, Status::Waiting);
    assert_eq!(types(&out), vec![EventType::ParticipantJoined]);
    let p = out.events[0].participant.as_ref().unwrap();
    assert_eq!((p.id.as_str(), p.name.as_deref(), p.joined_at), ("u2", Some("Bo"), T0 + SEC));

    // Joining twice is a no-op.
    let (_, out) = e.join(T0 + 2 * SEC, "s1", "u2", None).unwrap();
    assert!(out.is_empty());

    let (s, out) = e.join(T0 + 3 * SEC, "s1", "u3", None).unwrap();
    check(&e, T0 + 3 * SEC, &out);
    assert_eq!((s.status, s.activated_at), (Status::Active, Some(T0 + 3 * SEC)));
    assert_eq!(types(&out), vec![EventType::ParticipantJoined, EventType::Activated]);
    assert_eq!(s.participants.len(), 3);

    // Later joins do not activate again.
    let (_, out) = e.join(T0 + 4 * SEC, "s1", "u4", None).unwrap();
    assert_eq!(types(&out), vec![EventType::ParticipantJoined]);
    assert_eq!(e.get("s1").unwrap().activated_at, Some(T0 + 3 * SEC));
}

#[test]
fn a_participant_who_left_does_not_count_toward_quorum() {
    let mut e = engine([policy("trio", |k| k.quorum = 3)]);
    start(&mut e, T0, "s1", "trio", "u1");
    e.join(T0, "s1", "u2", None).unwrap();
    e.leave(T0 + 1, "s1", "u2").unwrap();
    let (s, _) = e.join(T0 + 2, "s1", "u3", None).unwrap();
    assert_eq!(s.status, Status::Waiting);
    // Re-admitting u2 reaches the quorum.
    let (s, out) = e.join(T0 + 3, "s1", "u2", None).unwrap();
    assert_eq!(s.status, Status::Active);
    assert_eq!(types(&out), vec![EventType::ParticipantJoined, EventType::Activated]);
    let u2 = s.participant("u2").unwrap();
    assert_eq!((u2.joined_at, u2.left_at, u2.last_seen_at), (T0, None, T0 + 3));
}

#[test]
fn join_of_a_session_that_is_not_live() {
    let mut e = engine([]);
    assert_eq!(e.join(T0, "nope", "u2", None).map(|_| ()), Err(EngineError::NotLive));
}

#[test]
fn participant_idle_timeout_marks_a_participant_left_without_ending_the_session() {
    let mut e = engine([policy("k", |k| {
        k.idle_timeout = d("10m");
        k.participant_idle_timeout = d("2m");
    })]);
    start(&mut e, T0, "s1", "k", "owner");
    e.join(T0, "s1", "p", None).unwrap();
    e.join(T0, "s1", "q", None).unwrap();
    e.heartbeat(T0 + MIN, "s1", "owner").unwrap();
    e.heartbeat(T0 + MIN, "s1", "q").unwrap();
    // p is the first participant to go idle; that wakes the engine, but is not expires_at.
    assert_eq!(e.next_deadline(), Some(T0 + 2 * MIN));
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 11 * MIN));
    assert!(expire(&mut e, T0 + 2 * MIN - 1).is_empty());

    let out = expire(&mut e, T0 + 2 * MIN);
    assert_eq!(types(&out), vec![EventType::ParticipantLeft]);
    let left = out.events[0].participant.as_ref().unwrap();
    assert_eq!((left.id.as_str(), left.left_at), ("p", Some(T0 + 2 * MIN)));
    let s = e.get("s1").unwrap();
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.present_count(), 2);
    assert_eq!(s.expires_at, Some(T0 + 11 * MIN));
    assert_eq!(e.next_deadline(), Some(T0 + 3 * MIN), "owner and q went quiet at T0+1m");

    // The owner and q both go idle at the same instant: one event each.
    let out = expire(&mut e, T0 + 3 * MIN);
    assert_eq!(types(&out), vec![EventType::ParticipantLeft, EventType::ParticipantLeft]);
    assert_eq!(session_writes(&out).len(), 1);
    assert_eq!(e.get("s1").unwrap().present_count(), 0);
    assert_eq!(e.next_deadline(), Some(T0 + 11 * MIN));
    let out = expire(&mut e, T0 + 11 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 11 * MIN))]);
}

#[test]
fn a_participant_heartbeat_keeps_the_participant() {
    let mut e = engine([policy("k", |k| k.participant_idle_timeout = d("2m"))]);
    start(&mut e, T0, "s1", "k", "owner");
    e.join(T0, "s1", "p", None).unwrap();
    for t in 1..=10 {
        e.heartbeat(T0 + t * MIN, "s1", "p").unwrap();
        e.heartbeat(T0 + t * MIN, "s1", "owner").unwrap();
        assert!(expire(&mut e, T0 + t * MIN).is_empty());
    }
    assert_eq!(e.get("s1").unwrap().present_count(), 2);
}

#[test]
fn leave() {
    let mut e = engine([]);
    start(&mut e, T0, "s1", DEFAULT, "owner");
    e.join(T0, "s1", "p", None).unwrap();
    let (s, out) = e.leave(T0 + SEC, "s1", "p").unwrap();
    check(&e, T0 + SEC, &out);
    assert_eq!(types(&out), vec![EventType::ParticipantLeft]);
    assert_eq!(out.events[0].participant.as_ref().unwrap().left_at, Some(T0 + SEC));
    assert_eq!(s.participant("p").unwrap().left_at, Some(T0 + SEC));
    assert_eq!(s.status, Status::Active, "leaving does not end the session");
    assert!(s.visible_to("p"), "who left still sees the session");
    // Leaving twice changes nothing.
    let (_, out) = e.leave(T0 + 2 * SEC, "s1", "p").unwrap();
    assert!(out.is_empty());
    assert_eq!(e.get("s1").unwrap().participant("p").unwrap().left_at, Some(T0 + SEC));
    assert_eq!(e.leave(T0, "s1", "stranger").map(|_| ()), Err(EngineError::NotParticipant));
    assert_eq!(e.leave(T0, "nope", "p").map(|_| ()), Err(EngineError::NotLive));
}

// ---------------------------------------------------------------- parents

fn family_engine() -> Engine {
    engine([
        idle_kind("top", "5m"),
        policy("end", |k| k.on_parent_end = OnParentEnd::End),
        policy("keep", |k| k.on_parent_end = OnParentEnd::Keep),
    ])
}

#[test]
fn parent_end_cascades_recursively_and_keep_stays() {
    let mut e = family_engine();
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("c", "end", "u1", "p"));
    create(&mut e, T0, child_req("g", "end", "u2", "c"));
    create(&mut e, T0, child_req("k", "keep", "u1", "p"));
    let (ended, out) = e.end(T0 + MIN, "p", EndReason::Ended, Some("done".into())).unwrap();
    check(&e, T0 + MIN, &out);
    assert_eq!(ended.end_reason, Some(EndReason::Ended));
    assert_eq!(ended.end_detail.as_deref(), Some("done"));
    assert_eq!(
        ends(&out),
        vec![
            ("p".into(), EndReason::Ended, None),
            ("c".into(), EndReason::ParentEnded, None),
            ("g".into(), EndReason::ParentEnded, None)
        ]
    );
    assert_eq!(session_writes(&out).len(), 3);
    for w in session_writes(&out).iter().skip(1) {
        assert_eq!(w.end_detail, None);
    }
    let k = e.get("k").expect("keep child stays");
    assert_eq!(k.status, Status::Active);
    assert_eq!(k.parent_id.as_deref(), Some("p"));
    assert_eq!(e.live_count(), 1);
    assert!(e.orphans().is_empty(), "a keep child is not an orphan");
}

#[test]
fn a_keep_child_shields_its_own_children() {
    let mut e = family_engine();
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("k", "keep", "u1", "p"));
    create(&mut e, T0, child_req("g", "end", "u1", "k"));
    let (_, out) = e.end(T0, "p", EndReason::Admin, None).unwrap();
    assert_eq!(ends(&out), vec![("p".into(), EndReason::Admin, None)]);
    assert!(e.get("k").is_some() && e.get("g").is_some());
    // Ending the keep child now cascades to its child.
    let (_, out) = e.end(T0 + 1, "k", EndReason::Ended, None).unwrap();
    assert_eq!(ends(&out), vec![("k".into(), EndReason::Ended, None), ("g".into(), EndReason::ParentEnded, None)]);
}

#[test]
fn a_deadline_end_of_the_parent_cascades() {
    let mut e = family_engine();
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("c", "end", "u1", "p"));
    let out = expire(&mut e, T0 + 5 * MIN);
    assert_eq!(
        ends(&out),
        vec![("p".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN)), ("c".into(), EndReason::ParentEnded, None)]
    );
    assert_eq!(out.events[1].session.ended_at, Some(T0 + 5 * MIN));
}

#[test]
fn a_child_ending_first_leaves_the_parent_alone() {
    let mut e = family_engine();
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("c", "end", "u1", "p"));
    e.end(T0, "c", EndReason::Ended, None).unwrap();
    let (_, out) = e.end(T0 + 1, "p", EndReason::Ended, None).unwrap();
    assert_eq!(ends(&out), vec![("p".into(), EndReason::Ended, None)]);
}

#[test]
fn create_with_a_parent_that_is_not_live() {
    let mut e = family_engine();
    assert_eq!(e.create(T0, child_req("c", "end", "u1", "nope")).map(|_| ()), Err(EngineError::ParentNotLive));
    start(&mut e, T0, "p", "top", "u1");
    e.end(T0 + 1, "p", EndReason::Ended, None).unwrap();
    assert_eq!(e.create(T0 + 2, child_req("c", "end", "u1", "p")).map(|_| ()), Err(EngineError::ParentNotLive));
    assert_eq!(e.live_count(), 0);
}

#[test]
fn create_with_a_parent_past_its_deadline_is_refused_and_the_parent_end_is_not_lost() {
    let mut e = family_engine();
    start(&mut e, T0, "p", "top", "u1");
    assert_eq!(e.create(T0 + 6 * MIN, child_req("c", "end", "u1", "p")).map(|_| ()), Err(EngineError::ParentNotLive));
    assert!(e.get("c").is_none());
    let out = expire(&mut e, T0 + 6 * MIN);
    assert_eq!(ends(&out), vec![("p".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn a_parent_that_this_create_would_supersede_is_not_live() {
    let mut e = engine([
        policy("r", |k| k.per_user = PerUser::Replace),
        policy("x", |k| k.per_user = PerUser::Reject),
        policy("sub", |k| k.on_parent_end = OnParentEnd::End),
        policy("keep", |k| k.on_parent_end = OnParentEnd::Keep),
    ]);
    start(&mut e, T0, "r1", "r", "u1");
    assert_eq!(e.create(T0, child_req("r2", "r", "u1", "r1")).map(|_| ()), Err(EngineError::ParentNotLive));
    // Through a cascading child of the session that would be superseded.
    create(&mut e, T0, child_req("sub1", "sub", "u1", "r1"));
    assert_eq!(e.create(T0, child_req("r2", "r", "u1", "sub1")).map(|_| ()), Err(EngineError::ParentNotLive));
    assert!(e.get("r1").is_some(), "a refused create supersedes nothing");
    // A keep child survives the replace, so it may be the parent.
    create(&mut e, T0, child_req("k1", "keep", "u1", "r1"));
    let (_, superseded, _) = create(&mut e, T0, child_req("r2", "r", "u1", "k1"));
    assert_eq!(superseded, vec!["r1".to_string()]);
    assert!(e.orphans().is_empty());
    // Takeover likewise; a plain reject is the usual conflict.
    start(&mut e, T0, "x1", "x", "u1");
    assert!(matches!(e.create(T0, child_req("x2", "x", "u1", "x1")), Err(EngineError::Conflict(_))));
    let r = NewSession { takeover: true, ..child_req("x2", "x", "u1", "x1") };
    assert_eq!(e.create(T0, r).map(|_| ()), Err(EngineError::ParentNotLive));
    // Another user's session of the same kind is a fine parent.
    let (c, superseded, _) = create(&mut e, T0, child_req("r3", "r", "u2", "r2"));
    assert!(superseded.is_empty());
    assert_eq!(c.parent_id.as_deref(), Some("r2"));
}

// ---------------------------------------------------------------- invites

fn invite_kind() -> KindPolicy {
    policy("room", |k| {
        k.idle_timeout = d("2h");
        k.invite_ttl = d("1h");
    })
}

#[test]
fn invite_with_an_explicit_ttl() {
    let mut e = engine([invite_kind()]);
    start(&mut e, T0, "s1", "room", "owner");
    let (inv, expiry, out) = e.create_invite(T0 + MIN, "s1", "tok".into(), d("10m")).unwrap();
    assert_eq!(expiry, Some(T0 + 11 * MIN));
    assert_eq!((inv.token.as_str(), inv.session_id.as_str(), inv.created_at), ("tok", "s1", T0 + MIN));
    assert_eq!(inv.fixed_expiry, Some(T0 + 11 * MIN));
    assert!(matches!(out.writes.as_slice(), [Write::Invite(i)] if *i == inv));
    assert!(out.events.is_empty());
    // Activity does not move an explicit expiry.
    e.heartbeat(T0 + 10 * MIN, "s1", "owner").unwrap();
    assert_eq!(e.invite_expiry(&inv), Some(T0 + 11 * MIN));

    let (s, out) = e.join_invite(T0 + 11 * MIN - 1, "tok", "guest-1", Some("G".into())).unwrap();
    check(&e, T0 + 11 * MIN - 1, &out);
    assert_eq!(types(&out), vec![EventType::ParticipantJoined]);
    assert_eq!(s.participant("guest-1").unwrap().name.as_deref(), Some("G"));
    assert_eq!(e.join_invite(T0 + 11 * MIN, "tok", "guest-2", None).map(|_| ()), Err(EngineError::InviteExpired));
    assert_eq!(e.dead_invites(T0 + 11 * MIN - 1), Vec::<String>::new());
    assert_eq!(e.dead_invites(T0 + 11 * MIN), vec!["tok".to_string()]);
}

#[test]
fn kind_invite_ttl_counts_from_the_last_activity() {
    let mut e = engine([invite_kind()]);
    start(&mut e, T0, "s1", "room", "owner");
    let (inv, expiry, _) = e.create_invite(T0 + MIN, "s1", "tok".into(), None).unwrap();
    assert_eq!(inv.fixed_expiry, None);
    assert_eq!(expiry, Some(T0 + 60 * MIN), "from the last activity (creation), not from the invite");

    e.heartbeat(T0 + 30 * MIN, "s1", "owner").unwrap();
    assert_eq!(e.invite_expiry(&inv), Some(T0 + 90 * MIN));
    e.join_invite(T0 + 61 * MIN, "tok", "guest", None).unwrap();
    // Joining is activity, and so is a participant heartbeat (even with owner presence).
    // Joining and a participant heartbeat are activity for invites, but with owner presence they do not move the session's last_seen_at.
    e.heartbeat(T0 + 100 * MIN, "s1", "guest").unwrap();
    assert_eq!(e.get("s1").unwrap().last_seen_at, T0 + 30 * MIN);
    assert_eq!(e.invite_expiry(&inv), Some(T0 + 160 * MIN));
    assert_eq!(e.join_invite(T0 + 160 * MIN, "tok", "late", None).map(|_| ()), Err(EngineError::InviteExpired));
}

#[test]
fn kind_invite_ttl_expires_without_activity() {
    let mut e = engine([invite_kind()]);
    start(&mut e, T0, "s1", "room", "owner");
    e.create_invite(T0 + MIN, "s1", "tok".into(), None).unwrap();
    assert_eq!(e.join_invite(T0 + 60 * MIN, "tok", "g", None).map(|_| ()), Err(EngineError::InviteExpired));
    assert!(e.get("s1").unwrap().participant("g").is_none());
}

#[test]
fn an_invite_without_any_ttl_does_not_expire() {
    let mut e = engine([policy("open", |_| {})]);
    start(&mut e, T0, "s1", "open", "owner");
    let (inv, expiry, _) = e.create_invite(T0, "s1", "tok".into(), None).unwrap();
    assert_eq!(expiry, None);
    assert_eq!(e.invite_expiry(&inv), None);
    e.join_invite(T0 + 365 * 86_400_000, "tok", "g", None).unwrap();
    assert!(e.dead_invites(T0 + 365 * 86_400_000).is_empty());
}

#[test]
fn invite_of_an_ended_session_and_unknown_invites() {
    let mut e = engine([invite_kind()]);
    start(&mut e, T0, "s1", "room", "owner");
    e.create_invite(T0, "s1", "tok".into(), d("1d")).unwrap();
    assert_eq!(e.join_invite(T0, "nope", "g", None).map(|_| ()), Err(EngineError::InviteUnknown));
    e.end(T0 + MIN, "s1", EndReason::Ended, None).unwrap();
    assert_eq!(e.join_invite(T0 + MIN, "tok", "g", None).map(|_| ()), Err(EngineError::InviteSessionEnded));
    assert_eq!(e.dead_invites(T0 + MIN), vec!["tok".to_string()]);
    assert!(matches!(e.create_invite(T0 + MIN, "s1", "t2".into(), None), Err(EngineError::NotLive)));

    let out = e.remove_invites(&["tok".to_string(), "never".to_string()]);
    assert!(matches!(out.writes.as_slice(), [Write::DeleteInvite(t)] if t == "tok"));
    assert!(e.remove_invites(&["tok".to_string()]).is_empty());
    assert_eq!(e.invites().count(), 0);
    assert_eq!(e.join_invite(T0 + MIN, "tok", "g", None).map(|_| ()), Err(EngineError::InviteUnknown));
}

#[test]
fn invite_of_a_session_past_its_deadline_answers_session_ended_and_loses_no_end() {
    let mut e = engine([policy("room", |k| {
        k.idle_timeout = d("5m");
        k.invite_ttl = d("1h");
    })]);
    start(&mut e, T0, "s1", "room", "owner");
    e.create_invite(T0, "s1", "tok".into(), None).unwrap();
    assert_eq!(e.join_invite(T0 + 6 * MIN, "tok", "g", None).map(|_| ()), Err(EngineError::InviteSessionEnded));
    let out = expire(&mut e, T0 + 6 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN))]);
}

#[test]
fn joining_by_invite_applies_other_due_deadlines_and_can_reach_quorum() {
    let mut e = engine([
        idle_kind("short", "1m"),
        policy("pair", |k| {
            k.quorum = 2;
            k.invite_ttl = d("1h");
        }),
    ]);
    start(&mut e, T0, "stale", "short", "x");
    start(&mut e, T0, "s1", "pair", "owner");
    e.create_invite(T0, "s1", "tok".into(), None).unwrap();
    let now = T0 + 2 * MIN;
    let (s, out) = e.join_invite(now, "tok", "guest", None).unwrap();
    check(&e, now, &out);
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.activated_at, Some(now));
    assert_eq!(
        events(&out),
        vec![
            ("stale".into(), EventType::Ended),
            ("s1".into(), EventType::ParticipantJoined),
            ("s1".into(), EventType::Activated)
        ]
    );
}

// ---------------------------------------------------------------- disconnect grace

fn graceful() -> KindPolicy {
    policy("live", |k| {
        k.idle_timeout = d("30s");
        k.disconnect_grace = d("5s");
    })
}

#[test]
fn closing_the_last_socket_starts_disconnect_grace() {
    let mut e = engine([graceful()]);
    e.socket_opened("u1");
    assert!(e.has_socket("u1"));
    start(&mut e, T0, "s1", "live", "u1");
    start(&mut e, T0, "plain", DEFAULT, "u1");
    start(&mut e, T0, "theirs", "live", "u2");
    e.socket_closed(T0 + SEC, "u1");
    assert!(!e.has_socket("u1"));
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 6 * SEC));
    assert_eq!(e.get("plain").unwrap().expires_at, Some(T0 + 60 * SEC), "no grace in this kind");
    assert_eq!(e.get("theirs").unwrap().expires_at, Some(T0 + 30 * SEC), "another user's session");
    assert_eq!(e.next_deadline(), Some(T0 + 6 * SEC));
    // A heartbeat does not cancel grace.
    e.heartbeat(T0 + 2 * SEC, "s1", "u1").unwrap();
    assert!(expire(&mut e, T0 + 6 * SEC - 1).is_empty());
    let out = expire(&mut e, T0 + 6 * SEC);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::Disconnected, Some(T0 + 6 * SEC))]);
    assert!(e.get("plain").is_some() && e.get("theirs").is_some());
}

#[test]
fn reopening_a_socket_before_the_grace_deadline_cancels_it() {
    let mut e = engine([graceful()]);
    e.socket_opened("u1");
    start(&mut e, T0, "s1", "live", "u1");
    e.socket_closed(T0 + SEC, "u1");
    e.socket_opened("u1");
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 30 * SEC));
    assert!(expire(&mut e, T0 + 6 * SEC).is_empty());
    let out = expire(&mut e, T0 + 30 * SEC);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 30 * SEC))]);
}

#[test]
fn with_a_second_socket_open_closing_one_does_not_start_grace() {
    let mut e = engine([graceful()]);
    e.socket_opened("u1");
    e.socket_opened("u1");
    start(&mut e, T0, "s1", "live", "u1");
    e.socket_closed(T0 + SEC, "u1");
    assert!(e.has_socket("u1"));
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 30 * SEC));
    assert!(expire(&mut e, T0 + 10 * SEC).is_empty());
    // The second one closing does.
    e.socket_closed(T0 + 10 * SEC, "u1");
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 15 * SEC));
    let out = expire(&mut e, T0 + 15 * SEC);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::Disconnected, Some(T0 + 15 * SEC))]);
}

#[test]
fn a_close_without_an_open_is_ignored() {
    let mut e = engine([graceful()]);
    start(&mut e, T0, "s1", "live", "u1");
    e.socket_closed(T0, "u1");
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 30 * SEC));
}

#[test]
fn grace_later_than_idle_does_not_postpone_idle() {
    let mut e = engine([policy("live", |k| {
        k.idle_timeout = d("10s");
        k.disconnect_grace = d("1m");
    })]);
    e.socket_opened("u1");
    start(&mut e, T0, "s1", "live", "u1");
    e.socket_closed(T0 + SEC, "u1");
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 10 * SEC));
    let out = expire(&mut e, T0 + 2 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(T0 + 10 * SEC))]);
}

#[test]
fn builtin_matching_kind_uses_five_seconds_of_grace() {
    let mut e = engine([]);
    e.socket_opened("u1");
    start(&mut e, T0, "m1", MATCHING, "u1");
    e.socket_closed(T0, "u1");
    let out = expire(&mut e, T0 + 5 * SEC);
    assert_eq!(ends(&out), vec![("m1".into(), EndReason::Disconnected, Some(T0 + 5 * SEC))]);
}

// ---------------------------------------------------------------- restore

fn restart(before: &Engine, kinds: Kinds, at: Millis) -> Engine {
    let sessions: Vec<Session> = before.live_sessions().collect();
    let invites: Vec<Invite> = before.invites().cloned().collect();
    let mut after = Engine::new(kinds);
    after.restore(at, sessions, invites);
    after
}

#[test]
fn restore_regrants_idle_from_the_restart() {
    let kinds = || {
        let mut k = Kinds::builtin();
        k.insert(idle_kind("k", "5m"));
        k
    };
    let mut e = Engine::new(kinds());
    start(&mut e, T0, "s1", "k", "u1");
    e.heartbeat(T0 + MIN, "s1", "u1").unwrap();
    // Down from T0+2m until T0+10m: the idle deadline (T0+6m) passed while down.
    let restart_at = T0 + 10 * MIN;
    let mut e = restart(&e, kinds(), restart_at);
    let s = e.get("s1").unwrap();
    assert_eq!(s.expires_at, Some(restart_at + 5 * MIN));
    assert_eq!(e.next_deadline(), Some(restart_at + 5 * MIN));
    assert!(e.overdue(restart_at).is_empty());
    assert!(expire(&mut e, restart_at).is_empty());
    assert!(expire(&mut e, restart_at + 5 * MIN - 1).is_empty());
    let out = expire(&mut e, restart_at + 5 * MIN);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::IdleTimeout, Some(restart_at + 5 * MIN))]);
}

#[test]
fn restore_keeps_activity_after_the_restart() {
    let mut k = Kinds::builtin();
    k.insert(idle_kind("k", "5m"));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "s1", "k", "u1");
    let mut e = restart(&e, k, T0 + 10 * MIN);
    let s = e.heartbeat(T0 + 12 * MIN, "s1", "u1").unwrap();
    assert_eq!(s.expires_at, Some(T0 + 17 * MIN));
    // A session whose deadline had not yet passed keeps a later one.
    let mut k2 = Kinds::builtin();
    k2.insert(idle_kind("k", "1h"));
    let mut e2 = Engine::new(k2.clone());
    start(&mut e2, T0 + 9 * MIN, "s2", "k", "u1");
    let e2 = restart(&e2, k2, T0 + 10 * MIN);
    assert_eq!(e2.get("s2").unwrap().expires_at, Some(T0 + 70 * MIN));
    drop(e);
}

#[test]
fn restore_keeps_max_duration_so_an_overdue_session_ends_at_once() {
    let mut k = Kinds::builtin();
    k.insert(policy("k", |k| {
        k.idle_timeout = d("5m");
        k.max_duration = d("10m");
    }));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "s1", "k", "u1");
    e.heartbeat(T0 + 4 * MIN, "s1", "u1").unwrap();
    let restart_at = T0 + 30 * MIN;
    let mut e = restart(&e, k, restart_at);
    assert_eq!(e.get("s1").unwrap().expires_at, Some(T0 + 10 * MIN));
    assert_eq!(e.next_deadline(), Some(T0 + 10 * MIN));
    assert_eq!(e.overdue(restart_at), vec![("s1".to_string(), EndReason::MaxDuration, T0 + 10 * MIN)]);
    let out = expire(&mut e, restart_at);
    assert_eq!(ends(&out), vec![("s1".into(), EndReason::MaxDuration, Some(T0 + 10 * MIN))]);
}

#[test]
fn restore_keeps_waiting_and_completing_times() {
    let mut k = Kinds::builtin();
    k.insert(policy("k", |k| {
        k.quorum = 2;
        k.idle_timeout = d("5m");
        k.waiting_timeout = d("8m");
    }));
    k.insert(policy("c", |k| {
        k.idle_timeout = d("5m");
        k.completing_timeout = d("3m");
    }));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "w", "k", "u1");
    start(&mut e, T0, "c", "c", "u1");
    e.complete(T0 + MIN, "c").unwrap();
    let mut e = restart(&e, k, T0 + 6 * MIN);
    assert_eq!(e.get("w").unwrap().expires_at, Some(T0 + 8 * MIN), "waiting: original time");
    assert_eq!(e.get("c").unwrap().expires_at, Some(T0 + 4 * MIN), "completing: original time");
    let out = expire(&mut e, T0 + 6 * MIN);
    assert_eq!(ends(&out), vec![("c".into(), EndReason::CompletingTimeout, Some(T0 + 4 * MIN))]);
    let out = expire(&mut e, T0 + 8 * MIN);
    assert_eq!(ends(&out), vec![("w".into(), EndReason::WaitingTimeout, Some(T0 + 8 * MIN))]);
}

#[test]
fn restore_regrants_participant_idle_and_invite_ttl() {
    let mut k = Kinds::builtin();
    k.insert(policy("room", |k| {
        k.participant_idle_timeout = d("2m");
        k.invite_ttl = d("1h");
    }));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "s1", "room", "u1");
    e.join(T0, "s1", "p", None).unwrap();
    e.create_invite(T0, "s1", "tok".into(), None).unwrap();
    e.create_invite(T0, "s1", "fixed".into(), d("30m")).unwrap();
    let r = T0 + 2 * 60 * MIN;
    let mut e = restart(&e, k, r);
    assert_eq!(e.next_deadline(), Some(r + 2 * MIN));
    assert_eq!(e.invites().count(), 2);
    let tok = e.invites().find(|i| i.token == "tok").unwrap().clone();
    assert_eq!(e.invite_expiry(&tok), Some(r + 60 * MIN));
    assert_eq!(e.dead_invites(r), vec!["fixed".to_string()], "an explicit ttl keeps its time");
    e.join_invite(r + MIN, "tok", "g", None).unwrap();
    let out = expire(&mut e, r + 2 * MIN);
    let left: Vec<_> = out.events.iter().map(|ev| ev.participant.as_ref().unwrap().id.clone()).collect();
    assert_eq!(left, vec!["u1".to_string(), "p".to_string()]);
}

#[test]
fn restore_skips_ended_sessions_and_rebuilds_the_indexes() {
    let mut k = Kinds::builtin();
    k.insert(policy("top", |_| {}));
    k.insert(policy("end", |k| k.on_parent_end = OnParentEnd::End));
    k.insert(policy("r", |k| k.per_user = PerUser::Reject));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("c", "end", "u1", "p"));
    start(&mut e, T0, "r1", "r", "u1");
    let mut ended = start(&mut e, T0, "gone", "top", "u1");
    ended.status = Status::Ended;
    ended.end_reason = Some(EndReason::Ended);
    let mut sessions: Vec<Session> = e.live_sessions().filter(|s| s.id != "gone").collect();
    sessions.push(ended);
    let mut e = Engine::new(k);
    e.restore(T0 + MIN, sessions, vec![]);
    assert_eq!(e.live_count(), 3);
    assert!(e.get("gone").is_none());
    // per-user index
    assert!(matches!(e.create(T0 + MIN, req("r2", "r", "u1")), Err(EngineError::Conflict(b)) if b.id == "r1"));
    // children index
    let (_, out) = e.end(T0 + MIN, "p", EndReason::Ended, None).unwrap();
    assert_eq!(ends(&out).len(), 2);
}

#[test]
fn orphans_are_cascading_children_of_a_parent_that_is_not_live() {
    let mut k = Kinds::builtin();
    k.insert(policy("top", |_| {}));
    k.insert(policy("end", |k| k.on_parent_end = OnParentEnd::End));
    k.insert(policy("keep", |k| k.on_parent_end = OnParentEnd::Keep));
    let mut e = Engine::new(k.clone());
    start(&mut e, T0, "p", "top", "u1");
    create(&mut e, T0, child_req("c", "end", "u1", "p"));
    create(&mut e, T0, child_req("k", "keep", "u1", "p"));
    assert!(e.orphans().is_empty());
    // The parent's end was written but the children's were not (a crash in between).
    let sessions: Vec<Session> = e.live_sessions().filter(|s| s.id != "p").collect();
    let mut e = Engine::new(k);
    e.restore(T0 + MIN, sessions, vec![]);
    assert_eq!(e.orphans(), vec!["c".to_string()]);
}

// ---------------------------------------------------------------- deadlines

#[test]
fn expires_at_is_the_earliest_deadline_in_force() {
    let mut e = engine([
        policy("a", |k| {
            k.idle_timeout = d("5m");
            k.max_duration = d("3m");
        }),
        policy("b", |k| {
            k.idle_timeout = d("5m");
            k.max_duration = d("10m");
        }),
        policy("c", |k| {
            k.quorum = 2;
            k.idle_timeout = d("5m");
            k.waiting_timeout = d("3m");
            k.max_duration = d("1m");
        }),
        policy("none", |_| {}),
    ]);
    assert_eq!(start(&mut e, T0, "a", "a", "u").expires_at, Some(T0 + 3 * MIN));
    assert_eq!(e.heartbeat(T0 + 2 * MIN, "a", "u").unwrap().expires_at, Some(T0 + 3 * MIN));
    assert_eq!(start(&mut e, T0, "b", "b", "u").expires_at, Some(T0 + 5 * MIN));
    assert_eq!(e.heartbeat(T0 + 4 * MIN, "b", "u").unwrap().expires_at, Some(T0 + 9 * MIN));
    assert_eq!(e.heartbeat(T0 + 8 * MIN, "b", "u").unwrap().expires_at, Some(T0 + 10 * MIN));
    // Waiting: max is not in force yet.
    assert_eq!(start(&mut e, T0, "c", "c", "u").expires_at, Some(T0 + 3 * MIN));
    let (c, _) = e.join(T0 + 2 * MIN, "c", "v", None).unwrap();
    assert_eq!(c.expires_at, Some(T0 + 3 * MIN), "max from activation at T0+2m");
    assert_eq!(start(&mut e, T0, "n", "none", "u").expires_at, None);
}

#[test]
fn when_two_deadlines_have_passed_the_earliest_is_the_reason() {
    let mut e = engine([
        policy("idle-first", |k| {
            k.idle_timeout = d("5m");
            k.max_duration = d("10m");
        }),
        policy("max-first", |k| {
            k.idle_timeout = d("10m");
            k.max_duration = d("5m");
        }),
        policy("waiting-first", |k| {
            k.quorum = 2;
            k.idle_timeout = d("5m");
            k.waiting_timeout = d("3m");
        }),
        policy("grace-first", |k| {
            k.idle_timeout = d("5m");
            k.disconnect_grace = d("1s");
        }),
    ]);
    start(&mut e, T0, "i", "idle-first", "u");
    start(&mut e, T0, "m", "max-first", "u");
    start(&mut e, T0, "w", "waiting-first", "u");
    e.socket_opened("g");
    start(&mut e, T0, "g", "grace-first", "g");
    e.socket_closed(T0, "g");
    let out = expire(&mut e, T0 + 60 * MIN);
    let mut got = ends(&out);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("g".into(), EndReason::Disconnected, Some(T0 + SEC)),
            ("i".into(), EndReason::IdleTimeout, Some(T0 + 5 * MIN)),
            ("m".into(), EndReason::MaxDuration, Some(T0 + 5 * MIN)),
            ("w".into(), EndReason::WaitingTimeout, Some(T0 + 3 * MIN))
        ]
    );
    // Applied in deadline order.
    let order: Vec<_> = ends(&out).into_iter().map(|x| x.0).collect();
    assert_eq!(order[0], "g");
    assert_eq!(order[1], "w");
}

#[test]
fn next_deadline_follows_the_earliest_live_session() {
    let mut e = engine([idle_kind("k", "5m"), idle_kind("long", "1h")]);
    assert_eq!(e.next_deadline(), None);
    start(&mut e, T0, "long", "long", "u");
    assert_eq!(e.next_deadline(), Some(T0 + 60 * MIN));
    start(&mut e, T0 + MIN, "a", "k", "u");
    start(&mut e, T0 + 2 * MIN, "b", "k", "u");
    assert_eq!(e.next_deadline(), Some(T0 + 6 * MIN));
    e.heartbeat(T0 + 3 * MIN, "a", "u").unwrap();
    assert_eq!(e.next_deadline(), Some(T0 + 7 * MIN));
    e.end(T0 + 3 * MIN, "b", EndReason::Ended, None).unwrap();
    assert_eq!(e.next_deadline(), Some(T0 + 8 * MIN));
    expire(&mut e, T0 + 8 * MIN);
    assert_eq!(e.next_deadline(), Some(T0 + 60 * MIN));
}

#[test]
fn overdue_lists_sessions_past_a_deadline_until_expired() {
    let mut e = engine([idle_kind("k", "5m"), policy("p", |k| k.participant_idle_timeout = d("1m"))]);
    start(&mut e, T0, "a", "k", "u");
    start(&mut e, T0 + MIN, "b", "k", "u");
    start(&mut e, T0, "p", "p", "u");
    assert!(e.overdue(T0 + 5 * MIN - 1).is_empty());
    assert_eq!(e.overdue(T0 + 5 * MIN), vec![("a".to_string(), EndReason::IdleTimeout, T0 + 5 * MIN)]);
    let mut all = e.overdue(T0 + 7 * MIN);
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        all,
        vec![
            ("a".to_string(), EndReason::IdleTimeout, T0 + 5 * MIN),
            ("b".to_string(), EndReason::IdleTimeout, T0 + 6 * MIN)
        ],
        "a participant going idle is not an overdue session"
    );
    expire(&mut e, T0 + 7 * MIN);
    assert!(e.overdue(T0 + 7 * MIN).is_empty());
}

#[test]
fn take_dirty_returns_heartbeat_snapshots_once() {
    let mut e = engine([idle_kind("k", "5m")]);
    start(&mut e, T0, "a", "k", "u");
    start(&mut e, T0, "b", "k", "u");
    start(&mut e, T0, "c", "k", "u");
    assert!(e.take_dirty().is_empty(), "create writes at once; nothing is dirty");
    e.heartbeat(T0 + MIN, "a", "u").unwrap();
    e.heartbeat(T0 + 2 * MIN, "a", "u").unwrap();
    e.heartbeat(T0 + MIN, "b", "u").unwrap();
    e.heartbeat(T0 + MIN, "c", "u").unwrap();
    e.end(T0 + 2 * MIN, "c", EndReason::Ended, None).unwrap();
    let mut dirty = e.take_dirty();
    dirty.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(dirty.len(), 2, "an ended session was written by its end");
    assert_eq!(dirty[0], e.get("a").unwrap());
    assert_eq!(dirty[0].last_seen_at, T0 + 2 * MIN);
    assert_eq!(dirty[0].expires_at, Some(T0 + 7 * MIN));
    assert_eq!(dirty[1].id, "b");
    assert!(e.take_dirty().is_empty());
}

#[test]
fn end_of_a_session_that_is_not_live() {
    let mut e = engine([]);
    assert_eq!(e.end(T0, "nope", EndReason::Ended, None).map(|_| ()), Err(EngineError::NotLive));
    start(&mut e, T0, "s1", DEFAULT, "u");
    let (s, out) = e.end(T0 + 1, "s1", EndReason::Closed, None).unwrap();
    check(&e, T0 + 1, &out);
    assert_eq!(
        (s.status, s.end_reason, s.ended_at, s.expires_at),
        (Status::Ended, Some(EndReason::Closed), Some(T0 + 1), None)
    );
    assert_eq!(session_writes(&out), vec![&s]);
    assert_eq!(e.end(T0 + 2, "s1", EndReason::Ended, None).map(|_| ()), Err(EngineError::NotLive));
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn end_from_every_live_status() {
    let mut e = engine([waiting_kind(), policy("k", |_| {})]);
    start(&mut e, T0, "w", "pair", "u");
    start(&mut e, T0, "a", "k", "u");
    start(&mut e, T0, "c", "k", "u");
    e.complete(T0, "c").unwrap();
    for (id, reason) in [("w", EndReason::Admin), ("a", EndReason::PartnerLeft), ("c", EndReason::Ended)] {
        let (s, out) = e.end(T0 + 1, id, reason, None).unwrap();
        check(&e, T0 + 1, &out);
        assert_eq!((s.status, s.end_reason), (Status::Ended, Some(reason)));
    }
    assert_eq!(e.live_count(), 0);
}

// ---------------------------------------------------------------- calls

#[test]
fn a_call_starts_waiting_with_nobody_and_activates_on_the_second_join() {
    let mut e = engine([]);
    let r = NewSession { members: vec!["a".into(), "b".into()], ..req("call1", CALL, "a") };
    let (s, superseded, out) = create(&mut e, T0, r);
    assert!(superseded.is_empty());
    assert_eq!(s.status, Status::Waiting);
    assert!(s.participants.is_empty());
    assert_eq!(s.expires_at, Some(T0 + 60 * SEC), "call: waiting 60s");
    assert_eq!(types(&out), vec![EventType::Started]);
    assert!(s.visible_to("b"));

    let (s, out) = e.join(T0 + 10 * SEC, "call1", "b", None).unwrap();
    assert_eq!(s.status, Status::Waiting);
    assert_eq!(types(&out), vec![EventType::ParticipantJoined]);
    let (s, out) = e.join(T0 + 20 * SEC, "call1", "a", None).unwrap();
    check(&e, T0 + 20 * SEC, &out);
    assert_eq!((s.status, s.activated_at), (Status::Active, Some(T0 + 20 * SEC)));
    assert_eq!(types(&out), vec![EventType::ParticipantJoined, EventType::Activated]);
    assert_eq!(s.expires_at, Some(T0 + 200 * SEC), "call: max 180s from activation");
    let out = expire(&mut e, T0 + 200 * SEC);
    assert_eq!(ends(&out), vec![("call1".into(), EndReason::MaxDuration, Some(T0 + 200 * SEC))]);
}

#[test]
fn a_call_nobody_joins_ends_waiting_timeout() {
    let mut e = engine([]);
    let r = NewSession { members: vec!["a".into(), "b".into()], ..req("call1", CALL, "a") };
    create(&mut e, T0, r);
    e.join(T0 + SEC, "call1", "a", None).unwrap();
    let out = expire(&mut e, T0 + 60 * SEC);
    assert_eq!(ends(&out), vec![("call1".into(), EndReason::WaitingTimeout, Some(T0 + 60 * SEC))]);
}

#[test]
fn a_member_who_has_not_joined_shows_no_activity() {
    let mut e = engine([policy("c", |k| {
        k.quorum = 2;
        k.owner_joins = false;
        k.presence = Presence::Any;
        k.idle_timeout = d("1m");
    })]);
    let r = NewSession { members: vec!["a".into(), "b".into()], ..req("c1", "c", "a") };
    create(&mut e, T0, r);
    let s = e.heartbeat(T0 + 30 * SEC, "c1", "b").unwrap();
    assert_eq!(s.last_seen_at, T0);
    assert!(s.participants.is_empty());
}

// ---------------------------------------------------------------- built-in kinds

#[test]
fn builtin_kinds() {
    let k = Kinds::builtin();
    let names: Vec<_> = k.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec![CALL, DEFAULT, MATCHING]);
    let default = k.get(DEFAULT).unwrap();
    assert_eq!((default.idle_timeout, default.per_user), (d("60s"), PerUser::Allow));
    assert_eq!(default.retention, DEFAULT_RETENTION);
    let m = k.get(MATCHING).unwrap();
    assert_eq!(
        (m.idle_timeout, m.disconnect_grace, m.per_user, m.decision_timeout),
        (d("30s"), d("5s"), PerUser::Replace, d("30s"))
    );
    let c = k.get(CALL).unwrap();
    assert_eq!((c.quorum, c.waiting_timeout, c.max_duration, c.owner_joins), (2, d("60s"), d("180s"), false));
    // A new kind: every timeout off, on_parent_end = end.
    let n = KindPolicy::new("x");
    assert_eq!((n.idle_timeout, n.max_duration, n.waiting_timeout, n.completing_timeout), (None, None, None, None));
    assert_eq!((n.participant_idle_timeout, n.disconnect_grace, n.invite_ttl), (None, None, None));
    assert_eq!((n.on_parent_end, n.quorum, n.presence, n.owner_joins), (OnParentEnd::End, 1, Presence::Owner, true));
    // base_for: a built-in name starts from the built-in policy.
    assert_eq!(k.base_for(MATCHING), *m);
    assert_eq!(k.base_for("fresh"), KindPolicy::new("fresh"));
}

#[test]
fn kind_policy_serde_uses_contract_spellings() {
    let k = policy("interview", |k| {
        k.idle_timeout = d("5m");
        k.per_user = PerUser::Reject;
        k.presence = Presence::Any;
        k.on_parent_end = OnParentEnd::Keep;
    });
    let v = serde_json::to_value(&k).unwrap();
    assert_eq!(v["idle_timeout"], "5m");
    assert_eq!(v["per_user"], "reject");
    assert_eq!(v["presence"], "any");
    assert_eq!(v["on_parent_end"], "keep");
    assert_eq!(v["retention"], "7d");
    assert_eq!(v["max_duration"], serde_json::Value::Null);
    let back: KindPolicy = serde_json::from_value(v).unwrap();
    assert_eq!(back, k);
    assert_eq!(serde_json::from_str::<PerUser>("\"replace\"").unwrap(), PerUser::Replace);
    assert!(serde_json::from_str::<PerUser>("\"Replace\"").is_err());
}

// ---------------------------------------------------------------- the session object

#[test]
fn session_json_matches_the_contract() {
    let mut e = engine([idle_kind("interview", "5m")]);
    let r = NewSession { metadata: json!({"a": 1}), ..req("s1", "interview", "u1") };
    let s = create(&mut e, T0 + 123, r).0;
    let v = serde_json::to_value(&s).unwrap();
    for key in [
        "id",
        "kind",
        "user_id",
        "status",
        "created_at",
        "activated_at",
        "last_seen_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "parent_id",
        "metadata",
        "participants",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["status"], "active");
    assert_eq!(v["created_at"], "2026-11-22T10:00:00.123Z");
    assert_eq!(v["expires_at"], "2026-11-22T10:05:00.123Z");
    assert_eq!(v["ended_at"], serde_json::Value::Null);
    assert_eq!(v["end_reason"], serde_json::Value::Null);
    assert_eq!(v["parent_id"], serde_json::Value::Null);
    assert_eq!(v["participants"][0]["left_at"], serde_json::Value::Null);
    assert_eq!(v["participants"][0]["name"], serde_json::Value::Null);
    assert!(v.get("members").is_none() && v.get("completing_at").is_none() && v.get("end_detail").is_none());
    let back: Session = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);

    let (ended, _) = e.end(T0 + 5000, "s1", EndReason::TakenOver, None).unwrap();
    let v = serde_json::to_value(&ended).unwrap();
    assert_eq!(v["status"], "ended");
    assert_eq!(v["end_reason"], "taken_over");
    assert_eq!(serde_json::from_value::<Session>(v).unwrap(), ended);
}

#[test]
fn status_and_end_reason_spellings() {
    for st in Status::ALL {
        assert_eq!(Status::parse(st.as_str()), Some(st));
        assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
    }
    assert_eq!(Status::parse("Active"), None);
    assert!(!Status::Ended.is_live() && Status::Waiting.is_live());
    let contract = [
        "ended",
        "closed",
        "superseded",
        "taken_over",
        "idle_timeout",
        "max_duration",
        "waiting_timeout",
        "completing_timeout",
        "disconnected",
        "parent_ended",
        "partner_left",
        "admin",
    ];
    let ours: Vec<_> = EndReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(ours, contract);
    for r in EndReason::ALL {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
    let deadline: Vec<_> = EndReason::ALL.iter().filter(|r| r.is_deadline()).map(|r| r.as_str()).collect();
    assert_eq!(deadline, ["idle_timeout", "max_duration", "waiting_timeout", "completing_timeout", "disconnected"]);
    let ev: Vec<_> = [
        EventType::Started,
        EventType::Activated,
        EventType::Completing,
        EventType::Ended,
        EventType::ParticipantJoined,
        EventType::ParticipantLeft,
    ]
    .iter()
    .map(|t| (t.as_str(), serde_json::to_value(t).unwrap()))
    .collect();
    for (s, v) in ev {
        assert_eq!(v, s);
    }
}

// ---------------------------------------------------------------- durations

#[test]
fn dur_parses_every_unit() {
    let cases = [
        ("0ms", 0),
        ("1ms", 1),
        ("250ms", 250),
        ("1s", 1_000),
        ("30s", 30_000),
        ("5m", 300_000),
        ("90m", 5_400_000),
        ("1h", 3_600_000),
        ("7d", 604_800_000),
        ("  30s  ", 30_000),
        ("0030s", 30_000),
        ("36500d", 36_500 * 86_400_000),
    ];
    for (text, ms) in cases {
        assert_eq!(Dur::parse(text), Ok(Dur(ms)), "{text:?}");
    }
}

#[test]
fn dur_rejects_bad_text_with_a_message() {
    for bad in [
        "",
        " ",
        "5",
        "s",
        "ms",
        "5x",
        "5 s",
        "5S",
        "5sec",
        "1.5s",
        "-5s",
        "+5s",
        "5s5",
        "1h30m",
        "５s",
        "5µs",
        "18446744073709551616ms",
        "36501d",
        "99999999999999999999d",
        "213503982334601d",
    ] {
        let err = Dur::parse(bad).expect_err(bad);
        assert!(err.contains(&format!("{bad:?}")), "message {err:?} should quote {bad:?}");
    }
    assert!(Dur::parse("5").unwrap_err().contains("no unit"));
    assert!(Dur::parse("s").unwrap_err().contains("start with a number"));
    assert!(Dur::parse("5x").unwrap_err().contains("unknown unit"));
    assert!(Dur::parse("36501d").unwrap_err().contains("100 years"));
}

#[test]
fn dur_prints_the_largest_exact_unit() {
    let cases = [
        (0, "0ms"),
        (1, "1ms"),
        (999, "999ms"),
        (1_000, "1s"),
        (1_500, "1500ms"),
        (59_000, "59s"),
        (60_000, "1m"),
        (90_000, "90s"),
        (3_600_000, "1h"),
        (5_400_000, "90m"),
        (86_400_000, "1d"),
        (90_000_000, "25h"),
        (604_800_000, "7d"),
        (86_400_001, "86400001ms"),
    ];
    for (ms, text) in cases {
        assert_eq!(Dur(ms).to_string(), text);
        assert_eq!(Dur::parse(text), Ok(Dur(ms)), "printing then parsing {ms}");
    }
    assert_eq!(Dur::parse("1000ms").unwrap().to_string(), "1s");
    assert_eq!(Dur::parse("120s").unwrap().to_string(), "2m");
    assert_eq!(Dur::from_secs(90).millis(), 90_000);
    assert!(Dur::parse("59s").unwrap() < Dur::parse("1m").unwrap());
}

#[test]
fn dur_serde_is_the_text_form() {
    assert_eq!(serde_json::to_string(&Dur(300_000)).unwrap(), "\"5m\"");
    assert_eq!(serde_json::from_str::<Dur>("\"250ms\"").unwrap(), Dur(250));
    let err = serde_json::from_str::<Dur>("\"5x\"").unwrap_err().to_string();
    assert!(err.contains("unknown unit"), "{err}");
    assert!(serde_json::from_str::<Dur>("300000").is_err(), "a bare number is not a duration");
}

// ---------------------------------------------------------------- RFC 3339

#[test]
fn rfc3339_formatting() {
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_rfc3339(1), "1970-01-01T00:00:00.001Z");
    assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(format_rfc3339(T0), "2026-11-22T10:00:00.000Z");
    assert_eq!(format_rfc3339(T0 + 86_399_999 - 10 * 3_600_000), "2026-11-22T23:59:59.999Z");
    assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(format_rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    assert_eq!(format_rfc3339(1_709_251_200_000), "2024-03-01T00:00:00.000Z");
    assert_eq!(format_rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z"); // 2100 is not leap
    assert_eq!(format_rfc3339(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    assert_eq!(format_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
}

#[test]
fn rfc3339_parsing() {
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00.000Z"), Some(T0));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00Z"), Some(T0));
    assert_eq!(parse_rfc3339("2026-11-22t10:00:00z"), Some(T0));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00+00:00"), Some(T0));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00.5Z"), Some(T0 + 500));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00.12Z"), Some(T0 + 120));
    assert_eq!(parse_rfc3339("2026-11-22T10:00:00.123999Z"), Some(T0 + 123), "truncated, not rounded");
    assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Some(-1));
    for bad in [
        "",
        "nope",
        "2026-11-22",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00+01:00",
        "2026-11-22T10:00:00.000",
        "2026/11/22T10:00:00Z",
        "2026-11-22T10:00:0éZ",
        "2026-11-22T10:00:00.000Zjunk",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
    }
    // Round trip over a spread of instants, negative ones included.
    let mut t: i64 = -62_135_596_800_000; // 0001-01-01
    while t < 253_402_300_799_999 {
        let text = format_rfc3339(t);
        assert_eq!(parse_rfc3339(&text), Some(t), "{text}");
        t += 7_777_777_777_777 / 3 + 13;
    }
}

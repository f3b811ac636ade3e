//! Lifecycle extensions in the engine (contract section 10): the
//! `session.expiring` warning `warn_before` ahead of each deadline, and
//! revive within `revive_window`. Time is whatever `now` the test hands in.

use tether_engine::*;

/// 2026-11-22T10:00:00.000Z
const T0: Millis = 1_795_341_600_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60_000;

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

fn start(e: &mut Engine, now: Millis, id: &str, kind: &str, owner: &str) -> Session {
    e.create(now, req(id, kind, owner)).expect("create").0
}

/// `expire_due`, checking that nothing is left overdue.
fn expire(e: &mut Engine, now: Millis) -> Outcome {
    let out = e.expire_due(now);
    assert!(e.overdue(now).is_empty(), "overdue after expire_due({now})");
    out
}

/// The `session.expiring` events of an outcome as (session, deadline, reason).
fn warnings(out: &Outcome) -> Vec<(String, Millis, EndReason)> {
    out.events
        .iter()
        .filter(|ev| ev.kind == EventType::Expiring)
        .map(|ev| (ev.session.id.clone(), ev.deadline.expect("deadline"), ev.reason.expect("reason")))
        .collect()
}

/// The ended snapshot of `id` in an outcome (what the store would hold).
fn ended_record(out: &Outcome, id: &str) -> Session {
    out.writes
        .iter()
        .rev()
        .find_map(|w| match w {
            Write::Session(s) if s.id == id && s.status == Status::Ended => Some(Session::clone(s)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ended write of {id}"))
}

fn refusal(r: Result<(Session, Vec<String>, Outcome), EngineError>) -> ReviveRefusal {
    match r {
        Err(EngineError::NotRevivable(why)) => why,
        other => panic!("expected a revive refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------- session.expiring

fn warned_idle() -> KindPolicy {
    policy("warned", |k| {
        k.idle_timeout = d("60s");
        k.warn_before = d("10s");
    })
}

#[test]
fn the_warning_comes_exactly_warn_before_the_deadline_and_is_scheduled() {
    let mut e = engine([warned_idle()]);
    let s = start(&mut e, T0, "s1", "warned", "u1");
    assert_eq!(s.expires_at, Some(T0 + 60 * SEC), "the warning does not change the deadline");
    // The warning is a queue entry of its own: the timer wakes for it.
    assert_eq!(e.next_deadline(), Some(T0 + 50 * SEC));
    assert!(expire(&mut e, T0 + 50 * SEC - 1).is_empty(), "not one millisecond early");

    let out = expire(&mut e, T0 + 50 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 60 * SEC, EndReason::IdleTimeout)]);
    assert_eq!(out.events.len(), 1);
    assert!(out.writes.is_empty(), "a warning changes nothing to write");
    let ev = &out.events[0];
    assert_eq!(ev.at, T0 + 50 * SEC);
    assert_eq!(*ev.session, e.get("s1").unwrap(), "the event carries the live session");
    // Then the timer sleeps until the deadline itself.
    assert_eq!(e.next_deadline(), Some(T0 + 60 * SEC));

    let out = expire(&mut e, T0 + 60 * SEC);
    assert_eq!(out.ended().map(|ev| ev.reason).collect::<Vec<_>>(), vec![Some(EndReason::IdleTimeout)]);
    assert!(warnings(&out).is_empty());
}

#[test]
fn a_deadline_is_warned_of_once() {
    let mut e = engine([warned_idle()]);
    start(&mut e, T0, "s1", "warned", "u1");
    assert_eq!(warnings(&expire(&mut e, T0 + 50 * SEC)).len(), 1);
    for t in [T0 + 50 * SEC, T0 + 51 * SEC, T0 + 60 * SEC - 1] {
        assert!(warnings(&expire(&mut e, t)).is_empty(), "warned twice at {t}");
    }
    // A heartbeat that does not move the deadline (a participant who is not
    // counted) does not warn again either.
    e.heartbeat(T0 + 55 * SEC, "s1", "stranger").unwrap();
    assert!(warnings(&expire(&mut e, T0 + 56 * SEC)).is_empty());
}

#[test]
fn activity_that_moves_the_deadline_means_no_end_and_a_new_warning_before_the_new_deadline() {
    let mut e = engine([warned_idle()]);
    start(&mut e, T0, "s1", "warned", "u1");
    assert_eq!(warnings(&expire(&mut e, T0 + 50 * SEC)).len(), 1);
    // "Still there?" — yes: the heartbeat moves the idle deadline to T0+115s.
    let s = e.heartbeat(T0 + 55 * SEC, "s1", "u1").unwrap();
    assert_eq!(s.expires_at, Some(T0 + 115 * SEC));
    assert!(expire(&mut e, T0 + 60 * SEC).is_empty(), "no end at the old deadline");
    assert!(expire(&mut e, T0 + 105 * SEC - 1).is_empty());
    let out = expire(&mut e, T0 + 105 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 115 * SEC, EndReason::IdleTimeout)]);

    // Heartbeats before the warning time: none is given for the deadlines they replaced.
    let mut e = engine([warned_idle()]);
    start(&mut e, T0, "s2", "warned", "u2");
    for t in (1..=10).map(|i| T0 + i * 30 * SEC) {
        assert!(warnings(&expire(&mut e, t)).is_empty(), "warned at {t} although heartbeats kept it alive");
        e.touch(t, "s2", "u2").unwrap();
    }
    let last = T0 + 300 * SEC;
    assert_eq!(e.next_deadline(), Some(last + 50 * SEC));
    assert_eq!(warnings(&expire(&mut e, last + 50 * SEC)).len(), 1);
}

#[test]
fn the_warning_names_the_earliest_deadline_and_its_reason() {
    let k = policy("capped", |k| {
        k.idle_timeout = d("60s");
        k.max_duration = d("90s");
        k.completing_timeout = d("30s");
        k.warn_before = d("10s");
    });
    let mut e = engine([k]);
    start(&mut e, T0, "s1", "capped", "u1");
    for t in [T0 + 30 * SEC, T0 + 60 * SEC] {
        assert!(warnings(&expire(&mut e, t)).is_empty());
        e.touch(t, "s1", "u1").unwrap();
    }
    // Idle now falls at T0+120s, after max_duration at T0+90s.
    let out = expire(&mut e, T0 + 80 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 90 * SEC, EndReason::MaxDuration)]);

    // completing: its timeout is the deadline warned of.
    let mut e = engine([policy("capped", |k| {
        k.completing_timeout = d("30s");
        k.warn_before = d("10s");
    })]);
    start(&mut e, T0, "s2", "capped", "u2");
    assert_eq!(e.next_deadline(), None, "no deadline, nothing to warn of");
    e.complete(T0 + 5 * SEC, "s2").unwrap();
    assert_eq!(e.next_deadline(), Some(T0 + 25 * SEC));
    let out = expire(&mut e, T0 + 25 * SEC);
    assert_eq!(warnings(&out), vec![("s2".to_string(), T0 + 35 * SEC, EndReason::CompletingTimeout)]);
}

#[test]
fn disconnect_grace_is_warned_of_as_disconnected_and_a_reopened_socket_cancels_it() {
    let k = policy("graced", |k| {
        k.disconnect_grace = d("20s");
        k.warn_before = d("5s");
    });
    let mut e = engine([k]);
    start(&mut e, T0, "s1", "graced", "u1");
    e.socket_opened("u1");
    e.socket_closed(T0 + SEC, "u1");
    let out = expire(&mut e, T0 + 16 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 21 * SEC, EndReason::Disconnected)]);
    e.socket_opened("u1");
    assert!(expire(&mut e, T0 + 60 * SEC).is_empty(), "the grace was cancelled: no end");
    assert!(e.is_live("s1"));
    // A new grace is a new deadline: warned of again.
    e.socket_closed(T0 + 61 * SEC, "u1");
    let out = expire(&mut e, T0 + 76 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 81 * SEC, EndReason::Disconnected)]);
}

#[test]
fn a_deadline_closer_than_warn_before_is_warned_of_at_once() {
    let k = policy("short", |k| {
        k.max_duration = d("5s");
        k.warn_before = d("30s");
    });
    let mut e = engine([k]);
    start(&mut e, T0, "s1", "short", "u1");
    assert!(e.next_deadline().is_some_and(|at| at <= T0), "due at once");
    let out = expire(&mut e, T0);
    assert_eq!(warnings(&out), vec![("s1".to_string(), T0 + 5 * SEC, EndReason::MaxDuration)]);
    assert_eq!(e.next_deadline(), Some(T0 + 5 * SEC));
    assert!(warnings(&expire(&mut e, T0 + 4 * SEC)).is_empty());
}

#[test]
fn kinds_without_warn_before_are_never_warned() {
    let mut e = engine([policy("plain", |k| k.idle_timeout = d("60s"))]);
    start(&mut e, T0, "s1", "plain", "u1");
    assert_eq!(e.next_deadline(), Some(T0 + 60 * SEC));
    let out = expire(&mut e, T0 + 60 * SEC);
    assert!(warnings(&out).is_empty());
    assert_eq!(out.ended().count(), 1);
}

#[test]
fn a_warning_and_an_idle_participant_in_one_tick_share_one_snapshot() {
    let k = policy("lobby", |k| {
        k.idle_timeout = d("60s");
        k.participant_idle_timeout = d("50s");
        k.presence = Presence::Any;
        k.warn_before = d("10s");
    });
    let mut e = engine([k]);
    start(&mut e, T0, "s1", "lobby", "u1");
    e.join(T0, "s1", "guest", None).unwrap();
    let out = expire(&mut e, T0 + 50 * SEC);
    let kinds: Vec<EventType> = out.events.iter().map(|ev| ev.kind).collect();
    assert_eq!(kinds, vec![EventType::ParticipantLeft, EventType::ParticipantLeft, EventType::Expiring]);
    let live = e.get("s1").unwrap();
    for ev in &out.events {
        assert_eq!(*ev.session, live);
    }
    assert_eq!(out.writes.len(), 1, "the participants' change is written once");
}

// ---------------------------------------------------------------- revive

fn revivable() -> KindPolicy {
    policy("interview", |k| {
        k.idle_timeout = d("60s");
        k.max_duration = d("10m");
        k.disconnect_grace = d("5s");
        k.revive_window = d("2m");
        k.per_user = PerUser::Reject;
    })
}

/// Starts `id` at T0 and lets it end idle at T0+60s; returns its stored record.
fn ended_idle(e: &mut Engine, id: &str, owner: &str, kind: &str) -> Session {
    start(e, T0, id, kind, owner);
    let out = expire(e, T0 + 60 * SEC);
    let s = ended_record(&out, id);
    assert_eq!(s.end_reason, Some(EndReason::IdleTimeout));
    s
}

#[test]
fn revive_within_the_window_brings_the_same_session_back_with_deadlines_from_now() {
    let mut e = engine([revivable()]);
    let record = ended_idle(&mut e, "s1", "u1", "interview");
    let now = T0 + 60 * SEC + 2 * MIN - 1; // the last millisecond of the window
    let (s, superseded, out) = e.revive(now, record.clone(), false).expect("revive");
    assert!(superseded.is_empty());
    assert_eq!(s.id, "s1");
    assert_eq!((s.kind.as_str(), s.user_id.as_str()), ("interview", "u1"));
    assert_eq!(s.status, Status::Active);
    assert_eq!(s.created_at, record.created_at, "the same session, not a new one");
    assert_eq!((s.activated_at, s.last_seen_at), (Some(now), now));
    assert_eq!((s.ended_at, s.end_reason), (None, None));
    assert_eq!(s.expires_at, Some(now + 60 * SEC), "idle counts from the revive");
    assert_eq!(s.participants.len(), 1);
    assert_eq!((s.participants[0].id.as_str(), s.participants[0].left_at), ("u1", None));
    assert_eq!(out.events.iter().map(|ev| ev.kind).collect::<Vec<_>>(), vec![EventType::Revived]);
    assert_eq!(*out.events[0].session, s);
    assert!(matches!(&out.writes[..], [Write::Session(w)] if **w == s), "the revived session is written");
    assert_eq!(e.get("s1"), Some(s.clone()));

    // max_duration counts from the revive too, and the session ends again on time.
    assert!(expire(&mut e, now + 60 * SEC - 1).is_empty());
    let out = expire(&mut e, now + 60 * SEC);
    assert_eq!(ended_record(&out, "s1").end_reason, Some(EndReason::IdleTimeout));
}

#[test]
fn revive_refuses_outside_the_window_after_other_reasons_and_without_a_window() {
    let mut e = engine([revivable(), policy("nowindow", |k| k.idle_timeout = d("60s"))]);
    let record = ended_idle(&mut e, "s1", "u1", "interview");
    let closes = T0 + 60 * SEC + 2 * MIN;
    assert_eq!(
        refusal(e.revive(closes, record.clone(), false)),
        ReviveRefusal::WindowClosed { closed_at: closes, window: Dur::parse("2m").unwrap() }
    );
    let why = refusal(e.revive(closes + MIN, record, false)).to_string();
    assert!(why.contains("closed at 2026-11-22T10:03:00.000Z"), "{why}");

    start(&mut e, T0, "s2", "interview", "u2");
    let (_, out) = e.end(T0 + SEC, "s2", EndReason::Ended, None).unwrap();
    let record = ended_record(&out, "s2");
    assert_eq!(refusal(e.revive(T0 + 2 * SEC, record, false)), ReviveRefusal::Reason(EndReason::Ended));

    let record = ended_idle(&mut e, "s3", "u3", "nowindow");
    let why = refusal(e.revive(T0 + 61 * SEC, record, false));
    assert_eq!(why, ReviveRefusal::NoWindow { kind: "nowindow".into() });
    assert!(why.to_string().contains("revive_window"));
    assert!(!e.is_live("s1") && !e.is_live("s2") && !e.is_live("s3"), "refusals change nothing");
}

#[test]
fn revive_after_disconnected_works_and_a_live_session_is_answered_unchanged() {
    let mut e = engine([revivable()]);
    start(&mut e, T0, "s1", "interview", "u1");
    e.socket_opened("u1");
    e.socket_closed(T0 + SEC, "u1");
    let out = expire(&mut e, T0 + 6 * SEC);
    let record = ended_record(&out, "s1");
    assert_eq!(record.end_reason, Some(EndReason::Disconnected));
    let (s, _, out) = e.revive(T0 + 10 * SEC, record.clone(), false).unwrap();
    assert_eq!(s.status, Status::Active);
    assert_eq!(out.events.len(), 1);
    // No grace starts by itself (as for a new session): it lives until idle.
    assert_eq!(e.next_deadline(), Some(T0 + 70 * SEC));
    // A second revive (a retry, or a concurrent one) finds it live: unchanged, nothing to do.
    let (again, superseded, out) = e.revive(T0 + 11 * SEC, record, false).unwrap();
    assert_eq!(again, s);
    assert!(superseded.is_empty() && out.is_empty());
}

#[test]
fn revive_is_subject_to_per_user_like_a_start() {
    // reject: a live session of the kind blocks the revive, takeover ends it.
    let mut e = engine([revivable()]);
    let record = ended_idle(&mut e, "old", "u1", "interview");
    start(&mut e, T0 + 61 * SEC, "new", "interview", "u1");
    match e.revive(T0 + 62 * SEC, record.clone(), false) {
        Err(EngineError::Conflict(blocking)) => assert_eq!(blocking.id, "new"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(e.is_live("new") && !e.is_live("old"));
    let (s, superseded, out) = e.revive(T0 + 62 * SEC, record, true).unwrap();
    assert_eq!((s.id.as_str(), superseded), ("old", vec!["new".to_string()]));
    assert_eq!(ended_record(&out, "new").end_reason, Some(EndReason::TakenOver));
    assert_eq!(
        out.events.iter().map(|ev| (ev.session.id.as_str(), ev.kind)).collect::<Vec<_>>(),
        vec![("new", EventType::Ended), ("old", EventType::Revived)]
    );

    // replace: the live one is superseded.
    let mut e = engine([policy("swipe", |k| {
        k.idle_timeout = d("60s");
        k.revive_window = d("2m");
        k.per_user = PerUser::Replace;
    })]);
    let record = ended_idle(&mut e, "old", "u1", "swipe");
    start(&mut e, T0 + 61 * SEC, "new", "swipe", "u1");
    let (_, superseded, out) = e.revive(T0 + 62 * SEC, record, false).unwrap();
    assert_eq!(superseded, vec!["new".to_string()]);
    assert_eq!(ended_record(&out, "new").end_reason, Some(EndReason::Superseded));
    assert!(e.is_live("old") && !e.is_live("new"));

    // A live session past its deadline does not block: it ends with its own reason first.
    let mut e = engine([revivable()]);
    let record = ended_idle(&mut e, "old", "u1", "interview");
    start(&mut e, T0 + 61 * SEC, "stale", "interview", "u1");
    let (_, superseded, out) = e.revive(T0 + 121 * SEC, record, false).unwrap();
    assert!(superseded.is_empty());
    assert_eq!(ended_record(&out, "stale").end_reason, Some(EndReason::IdleTimeout));
}

#[test]
fn revive_keeps_participants_and_refuses_a_session_that_never_became_active() {
    let room = || {
        policy("room", |k| {
            k.idle_timeout = d("60s");
            k.participant_idle_timeout = d("50s");
            k.revive_window = d("2m");
            k.quorum = 2;
        })
    };
    let mut e = engine([room()]);
    start(&mut e, T0, "r1", "room", "u1");
    e.join(T0 + SEC, "r1", "a", Some("Ann".into())).unwrap();
    e.join(T0 + SEC, "r1", "b", None).unwrap();
    e.leave(T0 + 2 * SEC, "r1", "b").unwrap();
    e.touch(T0 + 40 * SEC, "r1", "a").unwrap();
    // The owner's participant goes idle at 50s, the session (owner presence) at 60s.
    assert_eq!(expire(&mut e, T0 + 50 * SEC).events.len(), 1);
    let out = expire(&mut e, T0 + 60 * SEC);
    let record = ended_record(&out, "r1");
    assert_eq!(record.end_reason, Some(EndReason::IdleTimeout));
    assert_eq!(record.participants[0].left_at, Some(T0 + 50 * SEC));
    let now = T0 + 70 * SEC;
    let (s, _, _) = e.revive(now, record, false).unwrap();
    let parts: Vec<(&str, Option<Millis>, Millis)> =
        s.participants.iter().map(|p| (p.id.as_str(), p.left_at, p.last_seen_at)).collect();
    assert_eq!(
        parts,
        vec![
            ("u1", None, now),                   // the owner revived it: present again
            ("a", None, now),                    // present at the end: present, idle counted from now
            ("b", Some(T0 + 2 * SEC), T0 + SEC), // had left: stays left
        ]
    );
    assert_eq!(s.participants[1].name.as_deref(), Some("Ann"));
    assert_eq!(s.status, Status::Active, "it was active: active again");
    assert!(expire(&mut e, now + 50 * SEC - 1).is_empty(), "participant idle counts from the revive");

    // A session that ended waiting for its quorum comes back neither way.
    let mut e = engine([room()]);
    start(&mut e, T0, "w1", "room", "u9");
    let out = expire(&mut e, T0 + 60 * SEC);
    let record = ended_record(&out, "w1");
    assert!(record.activated_at.is_none());
    assert_eq!(refusal(e.revive(T0 + 61 * SEC, record, false)), ReviveRefusal::NeverActive);
}

#[test]
fn revive_and_the_parent_child_cascade() {
    let kind = |name: &str, idle: &str, on_parent_end: OnParentEnd| {
        policy(name, |k| {
            k.idle_timeout = d(idle);
            k.revive_window = d("2m");
            k.on_parent_end = on_parent_end;
        })
    };
    let sub = policy("sub", |k| k.revive_window = d("2m"));
    let mut e = engine([
        kind("job", "60s", OnParentEnd::End),
        kind("chat", "30s", OnParentEnd::End),
        kind("note", "30s", OnParentEnd::Keep),
        sub,
    ]);
    start(&mut e, T0, "p", "job", "u1");
    let child = |id: &str, kind: &str| NewSession { parent_id: Some("p".into()), ..req(id, kind, "u1") };
    for (id, kind) in [("chat", "chat"), ("note", "note"), ("sub", "sub")] {
        e.create(T0, child(id, kind)).unwrap();
    }
    let out = expire(&mut e, T0 + 30 * SEC); // chat and note end idle on their own
    let chat = ended_record(&out, "chat");
    let note = ended_record(&out, "note");

    // While the parent lives, a child that ended idle comes back, linked to it:
    // the parent's end (idle at 60s) cascades to it again.
    let (s, _, _) = e.revive(T0 + 40 * SEC, chat.clone(), false).unwrap();
    assert_eq!(s.parent_id.as_deref(), Some("p"));
    let out = expire(&mut e, T0 + 60 * SEC);
    let parent = ended_record(&out, "p");
    assert_eq!(parent.end_reason, Some(EndReason::IdleTimeout));
    let sub_record = ended_record(&out, "sub");
    assert_eq!(sub_record.end_reason, Some(EndReason::ParentEnded));
    assert_eq!(ended_record(&out, "chat").end_reason, Some(EndReason::ParentEnded));

    // Reviving the parent does not bring its children back; a parent_ended child cannot be revived.
    e.revive(T0 + 70 * SEC, parent, false).unwrap();
    assert!(!e.is_live("sub") && !e.is_live("chat"));
    assert_eq!(refusal(e.revive(T0 + 70 * SEC, sub_record, false)), ReviveRefusal::Reason(EndReason::ParentEnded));

    // A cascading child whose parent is not live cannot be revived: it would be an orphan at once.
    e.end(T0 + 71 * SEC, "p", EndReason::Ended, None).unwrap();
    let why = refusal(e.revive(T0 + 72 * SEC, chat, false));
    assert_eq!(why, ReviveRefusal::ParentNotLive { parent_id: "p".into() });
    assert!(why.to_string().contains("revive the parent first"), "{why}");
    // A "keep" child lives on without its parent.
    let (s, _, _) = e.revive(T0 + 72 * SEC, note, false).unwrap();
    assert_eq!((s.status, s.parent_id.as_deref()), (Status::Active, Some("p")));
}

#[test]
fn a_revived_session_is_warned_of_its_new_deadline() {
    let k = policy("both", |k| {
        k.idle_timeout = d("60s");
        k.warn_before = d("10s");
        k.revive_window = d("2m");
    });
    let mut e = engine([k]);
    start(&mut e, T0, "s1", "both", "u1");
    assert_eq!(warnings(&expire(&mut e, T0 + 50 * SEC)).len(), 1);
    let out = expire(&mut e, T0 + 60 * SEC);
    let record = ended_record(&out, "s1");
    let now = T0 + 90 * SEC;
    e.revive(now, record, false).unwrap();
    assert_eq!(e.next_deadline(), Some(now + 50 * SEC));
    let out = expire(&mut e, now + 50 * SEC);
    assert_eq!(warnings(&out), vec![("s1".to_string(), now + 60 * SEC, EndReason::IdleTimeout)]);
}

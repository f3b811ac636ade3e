//! The cheap reads that metrics and health make under the server's lock —
//! [`Engine::live_counts`], [`Engine::overdue_count`], [`Engine::overdue`]
//! and [`Engine::orphans`] — are kept incrementally or read from the
//! deadline queue's head. These tests drive a seeded random mix of every
//! operation that changes a session's status (creates under each per-user
//! policy, takeover, quorum joins and leaves, cascades, completes, ends,
//! disconnect grace, expiry, restores that lose writes) and after each step
//! compare those reads with a slow recount over `live_sessions()`.

use std::collections::BTreeMap;

use tether_engine::*;

/// 2026-11-22T10:00:00.000Z
const T0: Millis = 1_795_341_600_000;

/// xorshift64: deterministic, so a failure replays with the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn kinds() -> Kinds {
    let mut kinds = Kinds::builtin();
    let mut add = |name: &str, f: &dyn Fn(&mut KindPolicy)| {
        let mut k = KindPolicy::new(name);
        f(&mut k);
        kinds.insert(k);
    };
    add("free", &|k| k.idle_timeout = Some(Dur(5_000)));
    add("solo", &|k| {
        k.per_user = PerUser::Replace;
        k.idle_timeout = Some(Dur(3_000));
    });
    add("excl", &|k| {
        k.per_user = PerUser::Reject;
        k.idle_timeout = Some(Dur(4_000));
        k.max_duration = Some(Dur(20_000));
    });
    add("room", &|k| {
        k.quorum = 2;
        k.presence = Presence::Any;
        k.waiting_timeout = Some(Dur(2_000));
        k.participant_idle_timeout = Some(Dur(1_000));
        k.idle_timeout = Some(Dur(6_000));
        k.completing_timeout = Some(Dur(500));
    });
    add("child", &|k| k.idle_timeout = Some(Dur(8_000)));
    add("keeper", &|k| {
        k.on_parent_end = OnParentEnd::Keep;
        k.idle_timeout = Some(Dur(8_000));
    });
    add("graced", &|k| {
        k.disconnect_grace = Some(Dur(700));
        k.idle_timeout = Some(Dur(10_000));
        k.completing_timeout = Some(Dur(300));
    });
    kinds
}

const KINDS: [&str; 10] = ["free", "solo", "excl", "room", "child", "keeper", "graced", "default", "matching", "call"];
const USERS: [&str; 5] = ["u1", "u2", "u3", "0192f3c4-5b6a-7c8d-9e0f-0000000000aa", "a-user-id-longer-than-inline"];
const REASONS: [EndReason; 3] = [EndReason::Ended, EndReason::Closed, EndReason::Admin];

/// What the random runs reached, so a run that never exercised a case fails
/// instead of passing vacuously.
#[derive(Default, Debug)]
struct Seen {
    statuses: std::collections::BTreeSet<Status>,
    overdue: usize,
    orphans: usize,
    restarts: usize,
}

/// The slow answers, recounted from snapshots of every live session.
fn check(engine: &Engine, now: Millis, step: usize, seen: &mut Seen) {
    let sessions: Vec<Session> = engine.live_sessions().collect();
    assert_eq!(engine.live_count(), sessions.len(), "step {step}: live_count");

    let mut slow: BTreeMap<(String, Status), usize> = BTreeMap::new();
    for s in &sessions {
        *slow.entry((s.kind.clone(), s.status)).or_default() += 1;
        seen.statuses.insert(s.status);
    }
    let mut fast: BTreeMap<(String, Status), usize> = BTreeMap::new();
    for (kind, status, n) in engine.live_counts() {
        assert!(status.is_live(), "step {step}: a row for {status:?}");
        assert!(fast.insert((kind.to_string(), status), n).is_none(), "step {step}: {kind}/{status:?} listed twice");
    }
    // Every configured kind has all its rows, zeros included.
    for kind in engine.kinds().iter() {
        for status in [Status::Waiting, Status::Active, Status::Completing] {
            assert!(
                fast.contains_key(&(kind.name.clone(), status)),
                "step {step}: no row for {}/{status:?}",
                kind.name
            );
        }
    }
    fast.retain(|_, n| *n > 0);
    assert_eq!(fast, slow, "step {step}: live_counts");

    // Overdue at `now` and a little later (the timer is only driven now and
    // then, so entries in far granules are read too).
    for at in [now, now + 250, now + 1_500, now + 9_000] {
        // A snapshot's `expires_at` is its earliest ending deadline.
        let mut slow: Vec<(String, Millis)> =
            sessions.iter().filter_map(|s| s.expires_at.filter(|e| *e <= at).map(|e| (s.id.clone(), e))).collect();
        let overdue = engine.overdue(at);
        seen.overdue += usize::from(at == now && !overdue.is_empty());
        assert_eq!(engine.overdue_count(at), slow.len(), "step {step}: overdue_count at now+{}", at - now);
        assert!(overdue.is_sorted_by_key(|o| o.2), "step {step}: overdue earliest first");
        let mut fast: Vec<(String, Millis)> = overdue.into_iter().map(|(id, _, e)| (id, e)).collect();
        fast.sort();
        slow.sort();
        assert_eq!(fast, slow, "step {step}: overdue at now+{}", at - now);
    }

    let cascades = |kind: &str| engine.kinds().get(kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End);
    let mut slow: Vec<&str> = sessions
        .iter()
        .filter(|s| s.parent_id.as_deref().is_some_and(|p| !engine.is_live(p)) && cascades(&s.kind))
        .map(|s| s.id.as_str())
        .collect();
    let mut fast = engine.orphans();
    seen.orphans += usize::from(!fast.is_empty());
    slow.sort();
    fast.sort();
    assert_eq!(fast, slow, "step {step}: orphans");
}

/// One random operation at `now`.
fn step(engine: &mut Engine, rng: &mut Rng, now: Millis, n: usize, ids: &mut Vec<String>) {
    let id = rng.pick(ids).cloned().unwrap_or_default();
    let user = *rng.pick(&USERS).unwrap();
    match rng.below(20) {
        0..=5 => {
            let kind = *rng.pick(&KINDS).unwrap();
            let new_id = if n.is_multiple_of(2) { format!("0192f3c4-5b6a-7c8d-9e0f-{n:012}") } else { format!("s{n}") };
            // Recent sessions are the likely live parents.
            let recent = &ids[ids.len().saturating_sub(6)..];
            let parent = rng.pick(recent).cloned();
            let parent_id = (matches!(kind, "child" | "keeper") || rng.chance(6)).then_some(parent).flatten();
            let members =
                if kind == "call" { vec![user.to_string(), rng.pick(&USERS).unwrap().to_string()] } else { vec![] };
            let req = NewSession {
                id: new_id.clone(),
                kind: kind.into(),
                owner: user.into(),
                parent_id,
                takeover: rng.chance(2),
                members,
                ..NewSession::default()
            };
            if engine.create(now, req).is_ok() {
                ids.push(new_id);
            }
        }
        6..=7 => {
            let _ = engine.touch(now, &id, user);
        }
        8 => {
            let _ = engine.heartbeat(now, &id, user);
        }
        9 => {
            let _ = engine.end(now, &id, *rng.pick(&REASONS).unwrap(), None);
        }
        10..=11 => {
            let _ = engine.join(now, &id, user, None);
        }
        12 => {
            let _ = engine.leave(now, &id, user);
        }
        13 => {
            let _ = engine.complete(now, &id);
        }
        14 => engine.socket_opened(user),
        15 => engine.socket_closed(now, user),
        16..=17 => {
            engine.expire_due(now);
        }
        _ => {
            let _ = engine.take_dirty();
        }
    }
}

/// A restart: a new engine restored from the live sessions, some of whose
/// last writes were lost (they are missing, so their children may be orphans).
fn restart(engine: &Engine, rng: &mut Rng, now: Millis) -> Engine {
    let sessions: Vec<Session> = engine.live_sessions().filter(|_| !rng.chance(5)).collect();
    let invites: Vec<Invite> = engine.invites().cloned().collect();
    let mut fresh = Engine::new(kinds());
    fresh.restore(now, sessions, invites);
    fresh
}

#[test]
fn counts_stay_exact_under_random_operations() {
    let mut seen = Seen::default();
    for seed in [0x5EED_u64, 0xC0FFEE, 42] {
        let mut rng = Rng(seed);
        let mut engine = Engine::new(kinds());
        let mut now = T0;
        let mut ids: Vec<String> = Vec::new();
        for n in 0..4_000 {
            // Time often moves without the timer firing, so sessions sit overdue.
            now += [0, 1, 17, 120, 400, 1_100, 3_000][rng.below(7)];
            if rng.chance(150) {
                engine = restart(&engine, &mut rng, now);
                seen.restarts += 1;
            }
            step(&mut engine, &mut rng, now, n, &mut ids);
            check(&engine, now, n, &mut seen);
        }
    }
    // Steps that saw each case (of 12,000).
    assert_eq!(seen.statuses.len(), 3, "{seen:?}");
    assert!(seen.overdue > 500 && seen.orphans > 50 && seen.restarts > 10, "{seen:?}");
}

#[test]
fn overdue_is_read_from_the_queue_head_after_many_heartbeats() {
    // Heartbeats leave far queue entries early; expiry far in the past
    // leaves nothing overdue, and a late timer sees exactly the idle ones.
    let mut engine = Engine::new(kinds());
    for i in 0..500 {
        let req =
            NewSession { id: format!("s{i}"), kind: "free".into(), owner: format!("u{i}"), ..NewSession::default() };
        engine.create(T0, req).unwrap();
    }
    for t in 1..=10 {
        for i in 0..500 {
            if i % 5 != 0 {
                engine.touch(T0 + t * 1_000, &format!("s{i}"), &format!("u{i}")).unwrap();
            }
        }
    }
    assert_eq!(engine.overdue_count(T0 + 4_999), 0);
    // Those never touched went idle at T0 + 5s; the rest at T0 + 15s.
    assert_eq!(engine.overdue_count(T0 + 5_000), 100);
    assert_eq!(engine.overdue(T0 + 12_000).len(), 100);
    assert!(engine
        .overdue(T0 + 12_000)
        .iter()
        .all(|(_, reason, at)| *reason == EndReason::IdleTimeout && *at == T0 + 5_000));
    assert_eq!(engine.overdue_count(T0 + 15_000), 500);
    let rows: Vec<(&str, Status, usize)> = engine.live_counts().filter(|r| r.2 > 0).collect();
    assert_eq!(rows, vec![("free", Status::Active, 500)]);
    assert_eq!(engine.expire_due(T0 + 15_000).ended().count(), 500);
    assert_eq!(engine.overdue_count(T0 + 15_000), 0);
    assert_eq!(engine.live_counts().map(|r| r.2).sum::<usize>(), 0);
}

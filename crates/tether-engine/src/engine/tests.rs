//! The layout's own invariants, which the policy tests (black-box, in
//! `tests/policies.rs`) cannot see.
use super::*;
use crate::kind::PerUser;
use crate::live::{GRACE, NONE, ORPHAN, OWNER_HEAD, OWNER_JOINED, PARENT, WARNED};
use crate::session::EndReason;
use crate::time::Dur;

impl Engine {
    fn check_invariants(&self) {
        let live: Vec<u32> = self.live_slots().collect();
        assert_eq!(self.ids.len(), live.len());
        let mut earliest: Option<Millis> = None;
        for &idx in &live {
            let s = self.slot(idx);
            assert_eq!(self.find_key(s.id.as_ref()), Some(idx), "id index");
            // The deadline queue: one current entry, never late; exact when near.
            let wake = self.wake(idx);
            if let Some(w) = wake {
                assert!(s.queued != NONE && s.queued <= w, "{:?}: entry {} later than wake {w}", s.id, s.queued);
                earliest = Some(earliest.map_or(w, |e| e.min(w)));
            }
            if s.queued != NONE {
                assert!(self.schedule.contains(s.queued, idx), "{:?}: entry missing", s.id);
                if self.schedule.is_near(s.queued) {
                    assert_eq!(Some(s.queued), wake, "{:?}: near entry not exact", s.id);
                }
            }
            // Owner lists: circular, one head, which the user index names.
            let head = self.head_of(s.owner.as_ref()).expect("owner indexed");
            assert!(self.slot(head).flags & OWNER_HEAD != 0);
            assert_eq!(self.slot(self.slot(idx).next_owned).prev_owned, idx);
            let owned = self.owned(&s.owner.text());
            assert!(owned.contains(&idx));
            assert_eq!(owned.iter().filter(|&&i| self.slot(i).flags & OWNER_HEAD != 0).count(), 1);
            assert_eq!(s.flags & GRACE != 0, self.grace.contains_key(&idx));
            assert_eq!(s.flags & WARNED != 0, self.warned.contains_key(&idx));
            assert_eq!(s.flags & PARENT != 0, self.children.contains_key(&idx));
            if s.flags & OWNER_JOINED != 0 {
                assert!(s.explicit_parts().is_none());
            }
        }
        assert_eq!(self.next_deadline(), earliest, "the first entry is the earliest wake");
        // The counts agree with the slots they count.
        let mut counted = vec![[0usize; 4]; self.kind_table.len()];
        for &idx in &live {
            let s = self.slot(idx);
            counted[s.kind as usize][s.status as usize] += 1;
        }
        for (entry, counted) in self.kind_table.iter().zip(counted) {
            assert_eq!(entry.live, counted, "live counts of kind {}", entry.name);
        }
        // Orphans: flagged, listed under the parent id they name, which is not live.
        for (parent, kids) in &self.orphans {
            assert!(self.find_key(parent.as_ref()).is_none());
            for &k in kids {
                assert!(self.slot(k).flags & ORPHAN != 0 && self.slot(k).parent() == Some(parent));
            }
        }
        let flagged = live.iter().filter(|&&i| self.slot(i).flags & ORPHAN != 0).count();
        assert_eq!(flagged, self.orphans.values().map(Vec::len).sum::<usize>());
        assert_eq!(live.iter().filter(|&&i| self.slot(i).flags & WARNED != 0).count(), self.warned.len());
        for (parent, kids) in &self.children {
            let p = self.slot(*parent);
            for &k in kids {
                assert!(self.slot(k).parent().is_some_and(|key| *key == p.id));
            }
        }
    }
}

fn engine() -> Engine {
    let mut kinds = Kinds::builtin();
    let mut p = |name: &str, f: &dyn Fn(&mut KindPolicy)| {
        let mut k = KindPolicy::new(name);
        f(&mut k);
        kinds.insert(k);
    };
    p("idle", &|k| k.idle_timeout = Some(Dur(5_000)));
    p("long", &|k| k.max_duration = Some(Dur(3_600_000)));
    p("pidle", &|k| {
        k.participant_idle_timeout = Some(Dur(300));
        k.idle_timeout = Some(Dur(9_000));
        k.disconnect_grace = Some(Dur(700));
    });
    p("comp", &|k| {
        k.idle_timeout = Some(Dur(4_000));
        k.completing_timeout = Some(Dur(50));
    });
    p("warn", &|k| {
        k.idle_timeout = Some(Dur(3_000));
        k.max_duration = Some(Dur(20_000));
        k.disconnect_grace = Some(Dur(900));
        k.warn_before = Some(Dur(1_200));
        k.revive_window = Some(Dur(5_000));
        k.per_user = PerUser::Reject;
    });
    Engine::new(kinds)
}

#[test]
fn invariants_hold_under_random_operations() {
    let mut e = engine();
    let mut x: u64 = 0x5EED;
    let mut rnd = |k: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % k
    };
    let users = ["u1", "u2", "0192f3c4-5b6a-7c8d-9e0f-0000000000ff", "someone-with-a-long-user-identifier"];
    let kinds = ["idle", "long", "pidle", "comp", "default", "warn"];
    // Ended records, as the store would keep them, for revive.
    let mut ended: Vec<Session> = Vec::new();
    let mut revived = 0;
    fn keep(ended: &mut Vec<Session>, out: &Outcome) {
        for w in &out.writes {
            if let Write::Session(s) = w {
                // Most ends are not revivable: keep the ones that may be (and some that may not).
                let revivable = matches!(s.end_reason, Some(EndReason::IdleTimeout | EndReason::Disconnected));
                if s.status == Status::Ended && (revivable || s.id.len() % 4 == 0) {
                    ended.push(Session::clone(s));
                }
            }
        }
    }
    let mut now = 1_795_341_600_000i64;
    let mut ids: Vec<String> = Vec::new();
    for n in 0..6000u64 {
        now += [0, 1, 17, 250, 1_000][rnd(5) as usize];
        let id = ids.get(rnd(ids.len().max(1) as u64) as usize).cloned().unwrap_or_default();
        let user = users[rnd(4) as usize];
        match rnd(13) {
            0..=2 => {
                let id = if n % 2 == 0 { format!("0192f3c4-5b6a-7c8d-9e0f-{n:012}") } else { format!("s{n}") };
                let parent_id = (rnd(4) == 0).then(|| ids.last().cloned()).flatten();
                let req = NewSession {
                    id: id.clone(),
                    kind: kinds[rnd(6) as usize].into(),
                    owner: user.into(),
                    parent_id,
                    ..NewSession::default()
                };
                if let Ok((_, _, out)) = e.create(now, req) {
                    keep(&mut ended, &out);
                    ids.push(id);
                }
            }
            3..=5 => {
                let _ = e.touch(now, &id, user);
            }
            6 => {
                if let Ok((_, out)) = e.end(now, &id, EndReason::Ended, None) {
                    keep(&mut ended, &out);
                }
            }
            7 => {
                let _ = e.join(now, &id, user, None);
            }
            8 => {
                let _ = e.complete(now, &id);
            }
            9 => e.socket_opened(user),
            10 => e.socket_closed(now, user),
            11 => {
                let out = e.expire_due(now);
                keep(&mut ended, &out);
                assert!(e.overdue(now).is_empty());
            }
            _ => {
                // A recent one, mostly still within its window.
                let pick = ended.len().saturating_sub(1 + rnd(4) as usize);
                if let Some(record) = ended.get(pick).cloned() {
                    if let Ok((_, _, out)) = e.revive(now, record, rnd(2) == 0) {
                        revived += out.events.iter().filter(|ev| ev.kind == EventType::Revived).count();
                        keep(&mut ended, &out);
                    }
                }
            }
        }
        e.check_invariants();
    }
    assert!(revived > 10, "only {revived} revives ran");
}

#[test]
fn churn_does_not_grow_the_queue() {
    // Sessions that end long before their deadline leave stale far
    // entries behind; sweeps keep them under half of the far entries.
    let mut e = engine();
    let now = 1_795_341_600_000i64;
    for round in 0..50u64 {
        for i in 0..1000u64 {
            let id = format!("r{round}-{i}");
            let req =
                NewSession { id: id.clone(), kind: "long".into(), owner: format!("u{i}"), ..NewSession::default() };
            e.create(now + round as i64, req).unwrap();
            if i >= 10 {
                e.end(now + round as i64, &id, EndReason::Ended, None).unwrap();
            }
        }
        e.check_invariants();
        assert!(
            e.schedule.len() <= 2 * e.live_count() + 2 * 1024 + 2,
            "round {round}: {} entries for {} live",
            e.schedule.len(),
            e.live_count()
        );
    }
    assert_eq!(e.live_count(), 500);
}

#[test]
fn heartbeats_leave_far_entries_early_and_expiry_still_exact() {
    let mut e = engine();
    let t0 = 1_795_341_600_000i64;
    for i in 0..100u64 {
        let req =
            NewSession { id: format!("s{i}"), kind: "idle".into(), owner: format!("u{i}"), ..NewSession::default() };
        e.create(t0, req).unwrap();
    }
    // Every heartbeat moves the deadline later: far entries stay put.
    for t in 1..=20 {
        for i in 0..100u64 {
            e.touch(t0 + t * 1000, &format!("s{i}"), &format!("u{i}")).unwrap();
        }
        e.check_invariants();
    }
    assert_eq!(e.next_deadline(), Some(t0 + 25_000));
    assert!(e.expire_due(t0 + 25_000 - 1).is_empty());
    let out = e.expire_due(t0 + 25_000);
    assert_eq!(out.ended().count(), 100);
    // Equal deadlines end in id order, as with the id-keyed queue this replaced.
    let order: Vec<&str> = out.ended().map(|ev| ev.session.id.as_str()).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    e.check_invariants();
}

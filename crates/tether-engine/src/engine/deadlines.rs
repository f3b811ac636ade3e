//! Deadlines: what ends a session and when (from its kind's policy and its
//! state), the `session.expiring` warning `warn_before` ahead of that end,
//! the queue that keeps them in order (`schedule.rs`), applying the due ones
//! (`expire_due`), and reading the overdue ones from the queue's head instead
//! of from every session.
//!
//! A warning is one more instant a session wakes at, so it rides the same
//! queue entry as the deadline itself: nothing sweeps for sessions about to
//! expire. Once given, the deadline it named is recorded (`Engine::warned`)
//! and the session's wake time moves on to the deadline; activity that moves
//! the deadline makes the record stale, so the new deadline is warned of in
//! turn.

use super::outcome::event;
use super::{Engine, EventType, Outcome, Write};
use crate::kind::KindPolicy;
use crate::live::{Slot, GRACE, NONE, OWNER_JOINED, WARNED};
use crate::session::{EndReason, Status};
use crate::time::Millis;
use std::sync::Arc;

/// Per-session deadlines derived from the policy and the session's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Deadlines {
    /// The earliest deadline that ends the session, with its reason.
    pub end: Option<(Millis, EndReason)>,
    /// The earliest moment a participant goes idle.
    pub participant: Option<Millis>,
    /// When `session.expiring` is due for `end` (`warn_before` ahead of it),
    /// unless that deadline was warned of already. May lie in the past: a
    /// deadline set closer than `warn_before` is warned of at once.
    pub warn: Option<Millis>,
}

impl Deadlines {
    fn wake(&self) -> Option<Millis> {
        [self.end.map(|e| e.0), self.participant, self.warn].into_iter().flatten().min()
    }
}

impl Engine {
    pub fn next_deadline(&self) -> Option<Millis> {
        self.schedule.first().map(|(at, _)| at)
    }

    /// Applies every deadline at or before `now`: ends sessions with the
    /// reason of the deadline that passed first, marks idle participants left.
    /// Deadlines are applied in time order, and sessions sharing one instant
    /// in the order of their ids (which decides, say, whether a child due at
    /// the same instant as its parent ends on its own deadline or by the cascade).
    pub fn expire_due(&mut self, now: Millis) -> Outcome {
        let mut out = Outcome::default();
        let mut due: Vec<u32> = Vec::new();
        loop {
            self.advance();
            let Some((at, _)) = self.schedule.first().filter(|(at, _)| *at <= now) else { break };
            // Near entries are exact, and all entries at one instant are near together.
            due.clear();
            while let Some((_, idx)) = self.schedule.first().filter(|(entry_at, _)| *entry_at == at) {
                self.schedule.pop_first();
                self.slot_mut(idx).queued = NONE;
                due.push(idx);
            }
            // Popped in slot order; usually already in id order (mass expiry).
            if !due.is_sorted_by(|&a, &b| self.slot(a).id.cmp_text(&self.slot(b).id).is_le()) {
                due.sort_by(|&a, &b| self.slot(a).id.cmp_text(&self.slot(b).id));
            }
            for &idx in &due {
                // An earlier one's cascade may have ended it (nothing is created meanwhile, so the slot is not reused).
                if let Some(d) = self.slots[idx as usize].as_ref().and_then(|s| self.deadlines(idx, s)) {
                    self.apply_deadlines(now, idx, d, &mut out);
                }
            }
        }
        self.settle();
        out
    }

    /// Live sessions past a deadline that ends them at `now` (inclusive),
    /// as (id, reason, deadline), earliest deadline first. The scheduler
    /// keeps this empty; anything here is a bug or a stalled timer (admin
    /// health). Costs O(entries due + far granules begun), not O(sessions).
    pub fn overdue(&self, now: Millis) -> Vec<(String, EndReason, Millis)> {
        self.overdue_slots(now)
            .into_iter()
            .map(|(at, idx, reason)| (self.slot(idx).id.to_string(), reason, at))
            .collect()
    }

    /// How many sessions [`Engine::overdue`] would list, without their ids.
    pub fn overdue_count(&self, now: Millis) -> usize {
        self.overdue_slots(now).len()
    }

    /// The overdue sessions as (deadline, slot, reason), read from the head
    /// of the queue: a session's current entry is never later than its wake
    /// time, which is never later than its end deadline, so every overdue
    /// session has its entry at or before `now`. Entries that are stale (the
    /// session ended or moved its entry) are skipped; an early one (a
    /// heartbeat moved the deadline later) is checked against the real
    /// deadline. A far granule may hold one current entry twice (see
    /// [`Engine::is_current`]), hence the dedup.
    fn overdue_slots(&self, now: Millis) -> Vec<(Millis, u32, EndReason)> {
        let mut found: Vec<(Millis, u32, EndReason)> = self
            .schedule
            .due(now)
            .filter(|&(at, idx)| self.is_current(at, idx))
            .filter_map(|(_, idx)| {
                let (at, reason) = self.deadlines(idx, self.slot(idx))?.end?;
                (at <= now).then_some((at, idx, reason))
            })
            .collect();
        found.sort_unstable_by_key(|&(at, idx, _)| (at, idx));
        found.dedup_by_key(|&mut (_, idx, _)| idx);
        found
    }

    pub(super) fn deadlines(&self, idx: u32, s: &Slot) -> Option<Deadlines> {
        let k: &KindPolicy = self.policy(s.kind)?;
        let floor = self.activity_floor;
        let mut end: Option<(Millis, EndReason)> = None;
        let mut consider = |at: Millis, reason: EndReason| {
            if end.is_none_or(|(e, _)| at < e) {
                end = Some((at, reason));
            }
        };
        let live_phase = matches!(s.status, Status::Waiting | Status::Active);
        if let (true, Some(idle)) = (live_phase, k.idle_timeout) {
            consider(s.last_seen_at.max(floor) + idle.millis(), EndReason::IdleTimeout);
        }
        if let (Status::Waiting, Some(w)) = (s.status, k.waiting_timeout) {
            consider(s.created_at + w.millis(), EndReason::WaitingTimeout);
        }
        if let (true, Some(max)) = (s.activated_at != NONE, k.max_duration) {
            if matches!(s.status, Status::Active | Status::Completing) {
                consider(s.activated_at + max.millis(), EndReason::MaxDuration);
            }
        }
        if let (Status::Completing, Some(c)) = (s.status, k.completing_timeout) {
            let at = s.completing_at();
            if at != NONE {
                consider(at + c.millis(), EndReason::CompletingTimeout);
            }
        }
        if s.flags & GRACE != 0 {
            if let Some(g) = self.grace.get(&idx) {
                consider(*g, EndReason::Disconnected);
            }
        }
        let participant = k.participant_idle_timeout.and_then(|pit| match s.explicit_parts() {
            Some(parts) => parts.iter().filter(|p| p.present()).map(|p| p.last_seen_at.max(floor) + pit.millis()).min(),
            None => (s.flags & OWNER_JOINED != 0).then(|| s.last_seen_at.max(floor) + pit.millis()),
        });
        let warn = match (k.warn_before, end) {
            (Some(before), Some((at, _))) if !(s.flags & WARNED != 0 && self.warned.get(&idx) == Some(&at)) => {
                Some(at.saturating_sub(before.millis()))
            }
            _ => None,
        };
        Some(Deadlines { end, participant, warn })
    }

    pub(super) fn wake(&self, idx: u32) -> Option<Millis> {
        self.deadlines(idx, self.slot(idx)).and_then(|d| d.wake())
    }

    /// True if `expire_due(now)` would end this live session: one of its own
    /// deadlines has passed, or an ancestor's has and the end cascades to it.
    pub(super) fn doomed(&self, now: Millis, idx: u32) -> bool {
        let s = self.slot(idx);
        if self.deadlines(idx, s).and_then(|d| d.end).is_some_and(|(at, _)| at <= now) {
            return true;
        }
        self.cascades(s.kind) && s.parent().and_then(|p| self.find_key(p.as_ref())).is_some_and(|p| self.doomed(now, p))
    }

    /// Whether the far entry `(at, idx)` is its session's current one. Far
    /// entries of ended sessions and moved deadlines stay in the queue until
    /// their granule comes up or a sweep removes them (see [`crate::schedule`]).
    /// A slot reused by a new session with an entry at the very same instant
    /// is a duplicate of that entry, which is harmless: the copies are
    /// either both kept (one near entry) or both re-queued as one.
    fn is_current(&self, at: Millis, idx: u32) -> bool {
        self.slots[idx as usize].as_ref().is_some_and(|s| s.queued == at)
    }

    /// Gives a session (whose entry was taken out) its entry at `at`.
    fn place(&mut self, idx: u32, at: Option<Millis>) {
        self.slot_mut(idx).queued = at.unwrap_or(NONE);
        if let Some(at) = at {
            self.schedule.insert(at, idx);
        }
    }

    /// Keeps a session's queue entry right after a change.
    ///
    /// A near entry is always exact: it moves with the deadline (near is
    /// small, so that is cheap). A far entry only moves when the deadline
    /// moves *earlier*; when it moves later (every heartbeat) the entry stays
    /// early, and is re-queued when its granule comes up ([`Engine::advance`]).
    /// So a session has one current entry, never later than its wake time.
    pub(super) fn reschedule(&mut self, idx: u32) {
        let wake = self.wake(idx);
        let queued = self.slot(idx).queued;
        if queued != NONE && self.schedule.is_near(queued) {
            if wake != Some(queued) {
                self.schedule.remove_near(queued, idx);
                self.place(idx, wake);
            }
        } else if let Some(at) = wake {
            if queued == NONE || at < queued {
                if queued != NONE {
                    self.stale += 1;
                }
                self.place(idx, Some(at));
            }
        }
    }

    /// Brings far granules near until the earliest entry is near (so exact),
    /// checking each entry as it comes: stale ones are dropped, early ones
    /// re-queued at their session's wake time. The slots of a granule are
    /// read in chunks whose loads are independent, so their cache misses
    /// overlap instead of costing ~200 ns one after another.
    fn advance(&mut self) {
        while self.schedule.first().is_none() {
            let Some(entries) = self.schedule.advance() else { return };
            let mut near = Vec::with_capacity(entries.len());
            for chunk in entries.chunks(32) {
                // Touch the chunk's slots first (both cache lines a check
                // reads): independent loads, so their misses overlap.
                let warm = chunk.iter().fold(0i64, |acc, &(_, idx)| {
                    acc ^ self.slots[idx as usize].as_ref().map_or(0, |s| s.queued ^ i64::from(s.flags))
                });
                std::hint::black_box(warm);
                for &(at, idx) in chunk {
                    if !self.is_current(at, idx) {
                        self.stale = self.stale.saturating_sub(1);
                        continue;
                    }
                    let wake = self.wake(idx);
                    if wake == Some(at) {
                        near.push((at, idx));
                        continue;
                    }
                    self.slot_mut(idx).queued = wake.unwrap_or(NONE);
                    match wake {
                        Some(w) if self.schedule.is_near(w) => near.push((w, idx)),
                        Some(w) => self.schedule.insert(w, idx),
                        None => {}
                    }
                }
            }
            self.schedule.insert_near(near);
        }
    }

    /// Ends every public operation that changes sessions: the earliest entry
    /// is near and exact, so [`Engine::next_deadline`] is the true earliest
    /// wake time. Sweeps stale far entries once they are half of the far
    /// entries: amortised O(1) per entry, and the queue never holds more than
    /// about twice the live sessions.
    pub(super) fn settle(&mut self) {
        self.advance();
        if self.stale > 1024 && self.stale * 2 > self.schedule.far_len() {
            let slots = &self.slots;
            self.schedule.retain_far(|at, idx| slots[idx as usize].as_ref().is_some_and(|s| s.queued == at));
            self.stale = 0;
        }
    }

    fn apply_deadlines(&mut self, now: Millis, idx: u32, d: Deadlines, out: &mut Outcome) {
        if let Some((at, reason)) = d.end.filter(|(at, _)| *at <= now) {
            self.finish(now, idx, reason, None, Some(at), out);
            return;
        }
        let mut left = Vec::new();
        if d.participant.is_some_and(|at| at <= now) {
            let floor = self.activity_floor;
            let pit = self
                .policy(self.slot(idx).kind)
                .and_then(|k| k.participant_idle_timeout)
                .map(|d| d.millis())
                .unwrap_or(i64::MAX);
            for p in self.slot_mut(idx).parts_mut().iter_mut().filter(|p| p.present()) {
                if p.last_seen_at.max(floor).saturating_add(pit) <= now {
                    p.left_at = now;
                    left.push(p.to_participant());
                }
            }
        }
        // The warning names the deadline as it stands after the participants left.
        let d = if left.is_empty() { d } else { self.deadlines(idx, self.slot(idx)).unwrap_or(d) };
        let warning = d.end.filter(|_| d.warn.is_some_and(|w| w <= now));
        if let Some((at, _)) = warning {
            self.warned.insert(idx, at);
            self.slot_mut(idx).flags |= WARNED;
        }
        self.reschedule(idx);
        if left.is_empty() && warning.is_none() {
            return;
        }
        let snap = Arc::new(self.snapshot(idx));
        if !left.is_empty() {
            out.writes.push(Write::Session(snap.clone()));
        }
        for p in left {
            let mut e = event(EventType::ParticipantLeft, now, &snap);
            e.participant = Some(p);
            out.events.push(e);
        }
        // Nothing to write for a warning: it changes no field of the session.
        if let Some((at, reason)) = warning {
            let mut e = event(EventType::Expiring, now, &snap);
            e.reason = Some(reason);
            e.deadline = Some(at);
            out.events.push(e);
        }
    }
}

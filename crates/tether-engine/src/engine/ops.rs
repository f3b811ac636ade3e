//! The operations that change sessions: create (with per-user policy and
//! parent checks, shared with revive), heartbeat, end (and the cascade to children), complete,
//! join and leave, WebSocket presence, restore after a restart, and the
//! batched heartbeat writes. Each returns the [`Outcome`] to make durable.

use super::outcome::event;
use super::revive::ReviveRefusal;
use super::{Engine, EventType, Outcome, Write};
use crate::kind::{PerUser, Presence};
use crate::live::{Extra, Key, KeyRef, Meta, Part, Slot, DIRTY, GRACE, NIL, NONE, OWNER_JOINED, PARENT};
use crate::session::{EndReason, Invite, Session, Status};
use crate::time::Millis;
use std::sync::Arc;

/// Why an operation was refused; nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    UnknownKind(String),
    /// No live session with this id (it may be ended: ask the store).
    NotLive,
    /// `per_user = "reject"` and this live session blocks the new one.
    Conflict(Box<Session>),
    ParentNotLive,
    /// The action does not apply in the session's status.
    WrongStatus {
        status: Status,
        action: &'static str,
    },
    NotParticipant,
    InviteUnknown,
    InviteExpired,
    InviteSessionEnded,
    /// `revive` refused: the session stays ended, for this reason.
    NotRevivable(ReviveRefusal),
}

/// What the caller asks for when starting a session.
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    pub id: String,
    pub kind: String,
    pub owner: String,
    pub owner_name: Option<String>,
    pub metadata: serde_json::Value,
    pub parent_id: Option<String>,
    pub takeover: bool,
    /// Users who may see the session before joining (a call's two users).
    pub members: Vec<String>,
}

impl Engine {
    /// Loads live sessions and invites after a restart. Idle deadlines count
    /// from `now` again; absolute deadlines (max, waiting, completing) keep
    /// their times, so sessions already past them end on the first `expire_due`.
    pub fn restore(&mut self, now: Millis, sessions: Vec<Session>, invites: Vec<Invite>) {
        self.restore_since(now, sessions, invites)
    }

    /// [`Engine::restore`], counting activity as no older than `floor`
    /// instead of `now`: a cluster node taking over from a dead owner passes
    /// the moment that owner stopped renewing its lease, so idle deadlines
    /// keep their time (heartbeats it had not yet written are at most that old).
    /// Sessions may come lazily (a store read page by page), so a restart never
    /// holds every session in its wire form at once.
    pub fn restore_since(&mut self, floor: Millis, sessions: impl IntoIterator<Item = Session>, invites: Vec<Invite>) {
        self.activity_floor = floor;
        let mut with_parent = Vec::new();
        for session in sessions.into_iter().filter(|s| s.status.is_live()) {
            let has_parent = session.parent_id.is_some();
            let idx = self.insert_session(session);
            if has_parent {
                with_parent.push(idx);
            }
        }
        // Children are indexed once every session is in, since a child may
        // come before its parent; a child whose parent is not live stays out
        // of the index (an orphan, see `orphans`).
        for idx in with_parent {
            if self.slots[idx as usize].is_some() {
                self.link_or_orphan(idx);
            }
        }
        let idxs: Vec<u32> = self.live_slots().collect();
        for idx in idxs {
            self.reschedule(idx);
        }
        self.settle();
        for invite in invites {
            self.invites.insert(invite.token.clone(), invite);
        }
    }

    /// Starts a session. Sessions past a deadline are ended first (with their
    /// real reason), so a dead session never blocks a new one.
    pub fn create(&mut self, now: Millis, req: NewSession) -> Result<(Session, Vec<String>, Outcome), EngineError> {
        let kind_idx = match self.kind_index.get(&req.kind) {
            Some(&k) if self.kind_table[k as usize].policy.is_some() => k,
            _ => return Err(EngineError::UnknownKind(req.kind.clone())),
        };
        let (quorum, owner_joins) = {
            let k = self.policy(kind_idx).expect("checked above");
            (k.quorum, k.owner_joins)
        };
        let (mut out, superseded) = self.admit(now, kind_idx, &req.owner, req.takeover, req.parent_id.as_deref())?;
        let has_parent = req.parent_id.is_some();

        let active = (owner_joins as u32) >= quorum.max(1);
        let mut extra = Extra {
            parent: req.parent_id.as_deref().map(Key::new),
            metadata: if req.metadata.is_null() { Meta::EmptyObject } else { Meta::new(req.metadata) },
            owner_name: None,
            participants: None,
            members: req.members.into_iter().map(String::into_boxed_str).collect(),
            completing_at: NONE,
        };
        if owner_joins {
            extra.owner_name = req.owner_name.map(String::into_boxed_str);
        }
        let slot = Slot {
            id: Key::new(&req.id),
            owner: Key::new(&req.owner),
            id_tag: 0,
            created_at: now,
            last_seen_at: now,
            activated_at: if active { now } else { NONE },
            queued: NONE,
            extra: (!extra.is_default()).then(|| Box::new(extra)),
            prev_owned: NIL,
            next_owned: NIL,
            kind: kind_idx,
            status: if active { Status::Active } else { Status::Waiting },
            flags: if owner_joins { OWNER_JOINED } else { 0 },
        };
        let idx = self.insert(slot);
        if has_parent {
            self.link_child(idx);
        }
        self.reschedule(idx);
        self.settle();
        let snapshot = Arc::new(self.snapshot(idx));
        out.writes.push(Write::Session(snapshot.clone()));
        out.events.push(event(EventType::Started, now, &snapshot));
        if active {
            out.events.push(event(EventType::Activated, now, &snapshot));
        }
        Ok((Session::clone(&snapshot), superseded, out))
    }

    /// What starting (or reviving) a session of `kind_idx` for `owner` does
    /// before the session exists: refuses it — `per_user = "reject"` with a
    /// live session and no takeover (`Conflict`), or a `parent_id` that is not
    /// live or that this very start would end (`ParentNotLive`) — or else
    /// applies the deadlines due at `now` and ends the owner's sessions the
    /// kind's `per_user` displaces (`superseded` / `taken_over`), returning
    /// those ends and their ids. Refusals come before anything changes: an
    /// `Err` carries no Outcome, so ends applied and then refused would be lost.
    pub(super) fn admit(
        &mut self,
        now: Millis,
        kind_idx: u16,
        owner_id: &str,
        takeover: bool,
        parent_id: Option<&str>,
    ) -> Result<(Outcome, Vec<String>), EngineError> {
        let per_user = self.policy(kind_idx).map_or(PerUser::Allow, |k| k.per_user);
        let parent = match parent_id {
            // A session that `expire_due(now)` would end neither blocks nor parents.
            Some(p) => match self.find(p) {
                Some(pi) if !self.doomed(now, pi) => Some(pi),
                _ => return Err(EngineError::ParentNotLive),
            },
            None => None,
        };
        let owner = KeyRef::new(owner_id);
        if per_user == PerUser::Reject && !takeover {
            let blocking =
                self.owned(owner_id).into_iter().find(|&i| self.slot(i).kind == kind_idx && !self.doomed(now, i));
            if let Some(i) = blocking {
                return Err(EngineError::Conflict(Box::new(self.snapshot(i))));
            }
        }
        let ends_holding = per_user == PerUser::Replace || (per_user == PerUser::Reject && takeover);
        if let (true, Some(pi)) = (ends_holding, parent) {
            // The parent would itself be superseded / taken over by this very
            // start (or cascade from one that is): the child would be born an orphan.
            let mut at = Some(pi);
            while let Some(i) = at {
                let s = self.slot(i);
                if s.owner.as_ref() == owner && s.kind == kind_idx {
                    return Err(EngineError::ParentNotLive);
                }
                let cascades = self.cascades(s.kind);
                at = s.parent().filter(|_| cascades).and_then(|p| self.find_key(p.as_ref()));
            }
        }
        let mut out = self.expire_due(now);
        if let Some(p) = parent_id {
            if self.find(p).is_none() {
                return Err(EngineError::ParentNotLive);
            }
        }
        let holding: Vec<u32> = self.owned(owner_id).into_iter().filter(|&i| self.slot(i).kind == kind_idx).collect();
        let mut superseded = Vec::new();
        match per_user {
            PerUser::Allow => {}
            PerUser::Replace | PerUser::Reject => {
                if let (PerUser::Reject, Some(&first), false) = (per_user, holding.first(), takeover) {
                    return Err(EngineError::Conflict(Box::new(self.snapshot(first))));
                }
                let reason = if per_user == PerUser::Replace { EndReason::Superseded } else { EndReason::TakenOver };
                for i in holding {
                    // An earlier one's cascade may have ended it already.
                    if self.slots[i as usize].is_some() {
                        let ended = self.finish(now, i, reason, None, None, &mut out);
                        superseded.push(ended.id.clone());
                    }
                }
            }
        }
        Ok((out, superseded))
    }

    /// Activity by `user` (owner or participant). Not written at once: the
    /// session is marked dirty and flushed with [`Engine::take_dirty`].
    pub fn heartbeat(&mut self, now: Millis, id: &str, user: &str) -> Result<Session, EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        self.beat(now, idx, user);
        Ok(self.snapshot(idx))
    }

    /// [`Engine::heartbeat`] for callers that need no snapshot (the WebSocket
    /// heartbeat): same effect, no allocation.
    pub fn touch(&mut self, now: Millis, id: &str, user: &str) -> Result<(), EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        self.beat(now, idx, user);
        Ok(())
    }

    /// [`Engine::heartbeat`] for callers that answer only the new earliest
    /// deadline (the session's `expires_at`; a `Prefer: return=minimal`
    /// heartbeat): same effect, no snapshot.
    pub fn touch_deadline(&mut self, now: Millis, id: &str, user: &str) -> Result<Option<Millis>, EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        self.beat(now, idx, user);
        Ok(self.deadlines(idx, self.slot(idx)).and_then(|d| d.end).map(|e| e.0))
    }

    /// Ends a live session by request. Ending an ended session is the caller's
    /// idempotent `200`: this answers `NotLive` and the caller reads the store.
    pub fn end(
        &mut self,
        now: Millis,
        id: &str,
        reason: EndReason,
        detail: Option<String>,
    ) -> Result<(Session, Outcome), EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        let mut out = Outcome::default();
        let ended = self.finish(now, idx, reason, detail, None, &mut out);
        self.settle();
        Ok((Session::clone(&ended), out))
    }

    /// `active → completing`; the completing timeout (if any) starts now.
    pub fn complete(&mut self, now: Millis, id: &str) -> Result<(Session, Outcome), EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        match self.slot(idx).status {
            Status::Completing => return Ok((self.snapshot(idx), Outcome::default())),
            Status::Active => {}
            status => return Err(EngineError::WrongStatus { status, action: "complete" }),
        }
        self.set_status(idx, Status::Completing);
        self.slot_mut(idx).extra_mut().completing_at = now;
        self.reschedule(idx);
        self.settle();
        let snap = Arc::new(self.snapshot(idx));
        let mut out = Outcome::default();
        out.writes.push(Write::Session(snap.clone()));
        out.events.push(event(EventType::Completing, now, &snap));
        Ok((Session::clone(&snap), out))
    }

    /// Adds (or re-admits) a participant; reaching the quorum activates the session.
    pub fn join(
        &mut self,
        now: Millis,
        id: &str,
        user: &str,
        name: Option<String>,
    ) -> Result<(Session, Outcome), EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        let (quorum, presence) =
            self.policy(self.slot(idx).kind).map(|k| (k.quorum, k.presence)).unwrap_or((1, Presence::Owner));
        let mut out = Outcome::default();
        if self.is_present(idx, user) {
            return Ok((self.snapshot(idx), out));
        }
        let s = self.slots[idx as usize].as_mut().expect("live");
        let is_owner = s.owner.is(user);
        let parts = s.parts_mut();
        let participant = if let Some(p) = parts.iter_mut().find(|p| &*p.id == user) {
            p.left_at = NONE;
            p.last_seen_at = now;
            if let Some(name) = name {
                p.name = Some(name.into_boxed_str());
            }
            p.to_participant()
        } else {
            let p = Part {
                id: user.into(),
                name: name.map(String::into_boxed_str),
                joined_at: now,
                last_seen_at: now,
                left_at: NONE,
            };
            let shown = p.to_participant();
            parts.push(p);
            shown
        };
        let present = parts.iter().filter(|p| p.present()).count();
        if is_owner || presence == Presence::Any {
            s.last_seen_at = now;
        }
        let activates = s.status == Status::Waiting && present as u32 >= quorum;
        if activates {
            s.activated_at = now;
            self.set_status(idx, Status::Active);
        }
        self.reschedule(idx);
        self.settle();
        let snap = Arc::new(self.snapshot(idx));
        out.writes.push(Write::Session(snap.clone()));
        let mut joined = event(EventType::ParticipantJoined, now, &snap);
        joined.participant = Some(participant);
        out.events.push(joined);
        if activates {
            out.events.push(event(EventType::Activated, now, &snap));
        }
        Ok((Session::clone(&snap), out))
    }

    /// A participant leaves on its own.
    pub fn leave(&mut self, now: Millis, id: &str, user: &str) -> Result<(Session, Outcome), EngineError> {
        let idx = self.find(id).ok_or(EngineError::NotLive)?;
        let s = self.slot(idx);
        let present = match s.explicit_parts() {
            Some(parts) => parts.iter().find(|p| &*p.id == user).ok_or(EngineError::NotParticipant)?.present(),
            None if s.flags & OWNER_JOINED != 0 && s.owner.is(user) => true,
            None => return Err(EngineError::NotParticipant),
        };
        let mut out = Outcome::default();
        if present {
            let s = self.slot_mut(idx);
            let p = s.parts_mut().iter_mut().find(|p| &*p.id == user).expect("found above");
            p.left_at = now;
            let p = p.to_participant();
            self.reschedule(idx);
            self.settle();
            let snap = Arc::new(self.snapshot(idx));
            out.writes.push(Write::Session(snap.clone()));
            let mut left = event(EventType::ParticipantLeft, now, &snap);
            left.participant = Some(p);
            out.events.push(left);
            return Ok((Session::clone(&snap), out));
        }
        Ok((self.snapshot(idx), out))
    }

    /// A WebSocket of `user` opened: cancels any disconnect grace on its sessions.
    pub fn socket_opened(&mut self, user: &str) {
        *self.sockets.entry(user.to_string()).or_default() += 1;
        for idx in self.owned(user) {
            if self.slot(idx).flags & GRACE != 0 {
                self.grace.remove(&idx);
                self.slot_mut(idx).flags &= !GRACE;
                self.reschedule(idx);
            }
        }
        self.settle();
    }

    /// A WebSocket of `user` closed: if it was the last, sessions of kinds
    /// with `disconnect_grace` end `disconnected` unless one reopens in time.
    pub fn socket_closed(&mut self, now: Millis, user: &str) {
        let Some(count) = self.sockets.get_mut(user) else { return };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        self.sockets.remove(user);
        for idx in self.owned(user) {
            if let Some(g) = self.policy(self.slot(idx).kind).and_then(|k| k.disconnect_grace) {
                self.grace.insert(idx, now + g.millis());
                self.slot_mut(idx).flags |= GRACE;
                self.reschedule(idx);
            }
        }
        self.settle();
    }

    /// Snapshots of sessions with unwritten heartbeats.
    pub fn take_dirty(&mut self) -> Vec<Session> {
        let listed = std::mem::take(&mut self.dirty);
        let mut out = Vec::with_capacity(listed.len());
        for idx in listed {
            if let Some(s) = self.slots[idx as usize].as_mut() {
                if s.flags & DIRTY != 0 {
                    s.flags &= !DIRTY;
                    out.push(self.snapshot(idx));
                }
            }
        }
        out
    }

    fn beat(&mut self, now: Millis, idx: u32, user: &str) {
        let presence = self.policy(self.slot(idx).kind).map(|k| k.presence).unwrap_or(Presence::Owner);
        let s = self.slots[idx as usize].as_mut().expect("live");
        let is_owner = s.owner.is(user);
        let mut counted = is_owner || presence == Presence::Any;
        let explicit = s.extra.as_mut().and_then(|x| x.participants.as_mut());
        match explicit {
            Some(parts) => {
                if let Some(p) = parts.iter_mut().find(|p| &*p.id == user && p.present()) {
                    p.last_seen_at = now;
                } else if !is_owner {
                    // A member who has not joined (a call's partner) shows no activity.
                    counted = false;
                }
            }
            // The implicit owner participant is seen when the session is (below).
            None if !is_owner => counted = false,
            None => {}
        }
        if counted {
            s.last_seen_at = now;
        }
        if s.flags & DIRTY == 0 {
            s.flags |= DIRTY;
            self.dirty.push(idx);
        }
        self.reschedule(idx);
        self.settle();
    }

    /// Ends a live session and cascades to children whose kind says so.
    pub(super) fn finish(
        &mut self,
        now: Millis,
        idx: u32,
        reason: EndReason,
        detail: Option<String>,
        deadline: Option<Millis>,
        out: &mut Outcome,
    ) -> Arc<Session> {
        let mut s = self.snapshot(idx);
        s.status = Status::Ended;
        s.ended_at = Some(now);
        s.end_reason = Some(reason);
        s.expires_at = None;
        s.end_detail = detail;
        let s = Arc::new(s);
        let children = if self.slot(idx).flags & PARENT != 0 { self.children.remove(&idx) } else { None };
        self.release(idx);
        out.writes.push(Write::Session(s.clone()));
        let mut e = event(EventType::Ended, now, &s);
        e.reason = Some(reason);
        e.deadline = deadline;
        out.events.push(e);
        for child in children.into_iter().flatten() {
            if self.slots[child as usize].is_some() && self.cascades(self.slot(child).kind) {
                self.finish(now, child, EndReason::ParentEnded, None, None, out);
            }
        }
        s
    }
}

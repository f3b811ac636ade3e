//! The engine: every live session, the indexes that enforce per-user policy
//! and parent cascade, and the deadline schedule. Each operation takes `now`
//! from the caller and returns what changed ([`Outcome`]): the snapshots to
//! persist and the events to publish. The engine does no IO, so the caller
//! decides how a change becomes durable before it is acknowledged.
//!
//! Ended sessions leave the engine at once (the store keeps them until their
//! retention passes), so memory follows live sessions only.
//!
//! ## Layout
//!
//! Live sessions are compact slots in a slab (`live.rs`), ~150 bytes per
//! session with every index, against ~1.7 KB when each was a [`Session`]
//! with its id copied into five maps. Every index refers to a session by its
//! `u32` slot, so an id is stored once:
//!
//! - `ids`: id → slot, 8-byte entries keyed by the slots' own ids, one cache
//!   miss per lookup (`index.rs`);
//! - `users`: owner → the first of its sessions, the rest linked through
//!   the slots (per-user policy, disconnect grace);
//! - `children`: parent slot → child slots, only for sessions that have
//!   children; a child names its parent by id, because the parent may end
//!   while an `on_parent_end = "keep"` child lives on;
//! - `grace`, `dirty`: side tables flagged in the slot, so the common
//!   session never pays a lookup for them;
//! - `schedule`: the deadline queue (`schedule.rs`), at most one current
//!   entry per session, never later than its deadline.
//!
//! Snapshots ([`Session`]) are built only when an operation returns or
//! publishes one; the write and the events of one change share a single
//! `Arc<Session>`. Heartbeats that need no snapshot use [`Engine::touch`]:
//! a lookup and a few stores, with no allocation and usually no queue work.

use crate::index::SlotIndex;
use crate::kind::{KindPolicy, Kinds, OnParentEnd, PerUser, Presence};
use crate::live::{
    from_opt, opt, Extra, Key, KeyHasher, KeyRef, Meta, Part, Slot, DIRTY, GRACE, NIL, NONE, OWNER_HEAD, OWNER_JOINED,
    PARENT,
};
use crate::schedule::DeadlineQueue;
use crate::session::{EndReason, Invite, Participant, Session, Status};
use crate::time::{Dur, Millis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Every event type Tether publishes, on every transport: the one list the
/// OpenAPI document, the SDK and the docs are checked against. The engine
/// itself emits the `session.*` and `participant.*` types; the matching layer
/// and the event streams add the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum EventType {
    #[serde(rename = "session.started")]
    Started,
    #[serde(rename = "session.activated")]
    Activated,
    #[serde(rename = "session.completing")]
    Completing,
    #[serde(rename = "session.ended")]
    Ended,
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    /// Matching paired the user: `match` holds the call and the partner.
    #[serde(rename = "match.found")]
    MatchFound,
    /// Both users chose `continue` after a call.
    #[serde(rename = "match.mutual")]
    MatchMutual,
    /// A WebRTC signal relayed to the call's other user.
    #[serde(rename = "call.signal")]
    CallSignal,
    /// The stream skipped events (`from`..=`to`): the subscriber fell behind
    /// the resume log, or resumed from before it.
    #[serde(rename = "stream.gap")]
    StreamGap,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::Started,
        EventType::Activated,
        EventType::Completing,
        EventType::Ended,
        EventType::ParticipantJoined,
        EventType::ParticipantLeft,
        EventType::MatchFound,
        EventType::MatchMutual,
        EventType::CallSignal,
        EventType::StreamGap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Started => "session.started",
            EventType::Activated => "session.activated",
            EventType::Completing => "session.completing",
            EventType::Ended => "session.ended",
            EventType::ParticipantJoined => "participant.joined",
            EventType::ParticipantLeft => "participant.left",
            EventType::MatchFound => "match.found",
            EventType::MatchMutual => "match.mutual",
            EventType::CallSignal => "call.signal",
            EventType::StreamGap => "stream.gap",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle event, before the publisher gives it a sequence number.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventType,
    pub at: Millis,
    /// Shared with the [`Write::Session`] of the same change (and with the
    /// other events of it): one snapshot per change, not one per consumer.
    pub session: Arc<Session>,
    pub reason: Option<EndReason>,
    pub participant: Option<Participant>,
    /// For deadline-driven ends: the deadline that fired (lateness = publish time − this).
    pub deadline: Option<Millis>,
}

/// A change the caller must make durable.
#[derive(Clone, Debug)]
pub enum Write {
    Session(Arc<Session>),
    Invite(Invite),
    DeleteInvite(String),
}
/// What one operation changed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.events.is_empty()
    }
    pub fn ended(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.kind == EventType::Ended)
    }
}

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

/// Per-session deadlines derived from the policy and the session's state.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Deadlines {
    /// The earliest deadline that ends the session, with its reason.
    end: Option<(Millis, EndReason)>,
    /// The earliest moment a participant goes idle.
    participant: Option<Millis>,
}

impl Deadlines {
    fn wake(&self) -> Option<Millis> {
        match (self.end.map(|e| e.0), self.participant) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A kind as the slots refer to it. Sessions restored from the store may be
/// of a kind the config no longer has: they keep their name and have no policy.
struct KindEntry {
    name: String,
    policy: Option<KindPolicy>,
}

pub struct Engine {
    kinds: Kinds,
    kind_table: Vec<KindEntry>,
    kind_index: HashMap<String, u16>,
    /// Live sessions; `None` marks a free slot (listed in `free_slots`).
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// id → slot.
    ids: SlotIndex,
    /// owner → the slot heading its list of sessions.
    users: SlotIndex,
    /// parent slot → child slots (live children only), for the cascade.
    children: HashMap<u32, Vec<u32>>,
    schedule: DeadlineQueue,
    /// Far entries in `schedule` that no longer name their session's
    /// deadline (it ended or its entry moved); an estimate that triggers a sweep.
    stale: usize,
    /// Disconnect-grace deadlines in force, by slot (flagged `GRACE`).
    grace: HashMap<u32, Millis>,
    /// Open WebSockets per user: the last one closing starts disconnect grace.
    sockets: HashMap<String, u32>,
    invites: HashMap<String, Invite>,
    /// Activity before this instant counts as this instant: after a restart
    /// clients could not reach the server, so idle deadlines are re-granted.
    activity_floor: Millis,
    /// Slots whose heartbeat state changed but was not written (heartbeats
    /// are batched). A slot is listed when it gets the `DIRTY` flag; a listed
    /// slot that ended (or was reused) since is skipped by its flag.
    dirty: Vec<u32>,
    hasher: KeyHasher,
}

impl Engine {
    pub fn new(kinds: Kinds) -> Engine {
        let names: Vec<String> = kinds.iter().map(|k| k.name.clone()).collect();
        let mut engine = Engine {
            kinds,
            kind_table: Vec::new(),
            kind_index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            ids: SlotIndex::default(),
            users: SlotIndex::default(),
            children: HashMap::new(),
            schedule: DeadlineQueue::default(),
            stale: 0,
            grace: HashMap::new(),
            sockets: HashMap::new(),
            invites: HashMap::new(),
            activity_floor: i64::MIN,
            dirty: Vec::new(),
            hasher: KeyHasher::new(),
        };
        for name in names {
            engine.kind_of(&name);
        }
        engine
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// Loads live sessions and invites after a restart. Idle deadlines count
    /// from `now` again; absolute deadlines (max, waiting, completing) keep
    /// their times, so sessions already past them end on the first `expire_due`.
    pub fn restore(&mut self, now: Millis, sessions: Vec<Session>, invites: Vec<Invite>) {
        self.activity_floor = now;
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
                self.link_child(idx);
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

    /// A snapshot of a live session.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.find(id).map(|i| self.snapshot(i))
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// The owner of a live session.
    pub fn owner_of(&self, id: &str) -> Option<String> {
        self.find(id).map(|i| self.slot(i).owner.text())
    }

    /// [`Session::visible_to`] of a live session, without building a snapshot; `None` if it is not live.
    pub fn visible_to(&self, id: &str, user: &str) -> Option<bool> {
        let i = self.find(id)?;
        let s = self.slot(i);
        if s.owner.is(user) {
            return Some(true);
        }
        let x = s.extra.as_deref();
        let member = x.is_some_and(|x| x.members.iter().any(|m| &**m == user));
        let participant = s.explicit_parts().is_some_and(|ps| ps.iter().any(|p| &*p.id == user));
        Some(member || participant)
    }

    /// Snapshots of every live session.
    pub fn live_sessions(&self) -> impl Iterator<Item = Session> + '_ {
        self.live_slots().map(|i| self.snapshot(i))
    }

    /// Kind and status of every live session, without snapshots (metrics, health).
    pub fn live_kinds(&self) -> impl Iterator<Item = (&str, Status)> + '_ {
        self.slots.iter().flatten().map(|s| (self.kind_table[s.kind as usize].name.as_str(), s.status))
    }

    /// Snapshots of the live sessions `user` owns, oldest first.
    pub fn owned_by<'a>(&'a self, user: &str) -> impl Iterator<Item = Session> + 'a {
        self.owned(user).into_iter().map(|i| self.snapshot(i))
    }

    pub fn live_count(&self) -> usize {
        self.ids.len()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.schedule.first().map(|(at, _)| at)
    }

    /// Starts a session. Sessions past a deadline are ended first (with their
    /// real reason), so a dead session never blocks a new one.
    pub fn create(&mut self, now: Millis, req: NewSession) -> Result<(Session, Vec<String>, Outcome), EngineError> {
        let kind_idx = match self.kind_index.get(&req.kind) {
            Some(&k) if self.kind_table[k as usize].policy.is_some() => k,
            _ => return Err(EngineError::UnknownKind(req.kind.clone())),
        };
        let (per_user, quorum, owner_joins) = {
            let k = self.policy(kind_idx).expect("checked above");
            (k.per_user, k.quorum, k.owner_joins)
        };
        let parent = match &req.parent_id {
            Some(p) => match self.find(p) {
                // Refuse before applying due deadlines: an `Err` carries no
                // Outcome, so ends applied here and then refused would be lost.
                // A session that `expire_due(now)` would end neither blocks nor parents.
                Some(pi) if !self.doomed(now, pi) => Some(pi),
                _ => return Err(EngineError::ParentNotLive),
            },
            None => None,
        };
        let owner = KeyRef::new(&req.owner);
        if per_user == PerUser::Reject && !req.takeover {
            let blocking =
                self.owned(&req.owner).into_iter().find(|&i| self.slot(i).kind == kind_idx && !self.doomed(now, i));
            if let Some(i) = blocking {
                return Err(EngineError::Conflict(Box::new(self.snapshot(i))));
            }
        }
        let ends_holding = per_user == PerUser::Replace || (per_user == PerUser::Reject && req.takeover);
        if let (true, Some(pi)) = (ends_holding, parent) {
            // The parent would itself be superseded / taken over by this very
            // create (or cascade from one that is): the child would be born an orphan.
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
        if let Some(p) = &req.parent_id {
            if self.find(p).is_none() {
                return Err(EngineError::ParentNotLive);
            }
        }
        let holding: Vec<u32> = self.owned(&req.owner).into_iter().filter(|&i| self.slot(i).kind == kind_idx).collect();
        let mut superseded = Vec::new();
        match per_user {
            PerUser::Allow => {}
            PerUser::Replace | PerUser::Reject => {
                if let (PerUser::Reject, Some(&first), false) = (per_user, holding.first(), req.takeover) {
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
        if parent.is_some() {
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
        let s = self.slot_mut(idx);
        s.status = Status::Completing;
        s.extra_mut().completing_at = now;
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
            s.status = Status::Active;
            s.activated_at = now;
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

    /// Creates an invite; `ttl` fixes its expiry, else the kind's `invite_ttl`
    /// counts from the session's last activity. Returns the current expiry.
    pub fn create_invite(
        &mut self,
        now: Millis,
        id: &str,
        token: String,
        ttl: Option<Dur>,
    ) -> Result<(Invite, Option<Millis>, Outcome), EngineError> {
        if self.find(id).is_none() {
            return Err(EngineError::NotLive);
        }
        let invite = Invite {
            token: token.clone(),
            session_id: id.to_string(),
            created_at: now,
            fixed_expiry: ttl.map(|t| now + t.millis()),
        };
        self.invites.insert(token, invite.clone());
        let expiry = self.invite_expiry(&invite);
        let out = Outcome { writes: vec![Write::Invite(invite.clone())], events: vec![] };
        Ok((invite, expiry, out))
    }

    /// When an invite stops working, or None if it does not expire.
    pub fn invite_expiry(&self, invite: &Invite) -> Option<Millis> {
        if invite.fixed_expiry.is_some() {
            return invite.fixed_expiry;
        }
        let s = self.slot(self.find(&invite.session_id)?);
        let ttl = self.policy(s.kind)?.invite_ttl?;
        let last_activity = s
            .explicit_parts()
            .into_iter()
            .flatten()
            .map(|p| p.last_seen_at)
            .chain([s.last_seen_at])
            .max()
            .unwrap_or(s.last_seen_at);
        Some(last_activity.max(self.activity_floor) + ttl.millis())
    }

    /// Joins through an invite as participant `participant_id`.
    pub fn join_invite(
        &mut self,
        now: Millis,
        token: &str,
        participant_id: &str,
        name: Option<String>,
    ) -> Result<(Session, Outcome), EngineError> {
        let invite = self.invites.get(token).cloned().ok_or(EngineError::InviteUnknown)?;
        let Some(idx) = self.find(&invite.session_id) else {
            return Err(EngineError::InviteSessionEnded);
        };
        if let Some(expiry) = self.invite_expiry(&invite) {
            if now >= expiry {
                return Err(EngineError::InviteExpired);
            }
        }
        if self.doomed(now, idx) {
            // Refused without applying it, so the end is not lost: the
            // scheduler's expire_due ends and reports it.
            return Err(EngineError::InviteSessionEnded);
        }
        let mut out = self.expire_due(now);
        if self.find(&invite.session_id).is_none() {
            return Err(EngineError::InviteSessionEnded);
        }
        let (session, joined) = self.join(now, &invite.session_id, participant_id, name)?;
        out.writes.extend(joined.writes);
        out.events.extend(joined.events);
        Ok((session, out))
    }

    pub fn invites(&self) -> impl Iterator<Item = &Invite> {
        self.invites.values()
    }

    /// Invites that can no longer be used: expired, or their session ended.
    pub fn dead_invites(&self, now: Millis) -> Vec<String> {
        self.invites
            .values()
            .filter(|i| self.find(&i.session_id).is_none() || self.invite_expiry(i).is_some_and(|e| now >= e))
            .map(|i| i.token.clone())
            .collect()
    }

    pub fn remove_invites(&mut self, tokens: &[String]) -> Outcome {
        let mut out = Outcome::default();
        for t in tokens {
            if self.invites.remove(t).is_some() {
                out.writes.push(Write::DeleteInvite(t.clone()));
            }
        }
        out
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

    pub fn has_socket(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
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

    /// Live sessions past a deadline right now. The scheduler keeps this
    /// empty; anything here is a bug or a stalled timer (admin health).
    pub fn overdue(&self, now: Millis) -> Vec<(String, EndReason, Millis)> {
        self.live_slots()
            .filter_map(|i| {
                let d = self.deadlines(i, self.slot(i))?.end?;
                (d.0 <= now).then(|| (self.slot(i).id.to_string(), d.1, d.0))
            })
            .collect()
    }

    /// Live sessions whose parent is not live although their kind cascades.
    pub fn orphans(&self) -> Vec<String> {
        self.live_slots()
            .map(|i| self.slot(i))
            .filter(|s| s.parent().is_some_and(|p| self.find_key(p.as_ref()).is_none()) && self.cascades(s.kind))
            .map(|s| s.id.to_string())
            .collect()
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

    // ---- internals: lookups ----

    fn slot(&self, i: u32) -> &Slot {
        self.slots[i as usize].as_ref().expect("index refers to a live slot")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize].as_mut().expect("index refers to a live slot")
    }

    fn policy(&self, kind: u16) -> Option<&KindPolicy> {
        self.kind_table[kind as usize].policy.as_ref()
    }

    fn cascades(&self, kind: u16) -> bool {
        self.policy(kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End)
    }

    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u32)
    }

    fn find(&self, id: &str) -> Option<u32> {
        self.find_key(KeyRef::new(id))
    }

    fn find_key(&self, k: KeyRef<'_>) -> Option<u32> {
        self.ids.find(self.hasher.tag(k), |i| self.slot(i).id.as_ref() == k)
    }

    /// The slot heading the list of `owner`'s sessions.
    fn head_of(&self, owner: KeyRef<'_>) -> Option<u32> {
        self.users.find(self.hasher.tag(owner), |i| self.slot(i).owner.as_ref() == owner)
    }

    /// The sessions of a user (by slot), oldest first.
    fn owned(&self, user: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(head) = self.head_of(KeyRef::new(user)) {
            let mut at = head;
            loop {
                out.push(at);
                at = self.slot(at).next_owned;
                if at == head {
                    break;
                }
            }
        }
        out
    }

    fn kind_of(&mut self, name: &str) -> u16 {
        if let Some(&k) = self.kind_index.get(name) {
            return k;
        }
        let k = u16::try_from(self.kind_table.len()).expect("at most 65536 kinds");
        self.kind_table.push(KindEntry { name: name.to_string(), policy: self.kinds.get(name).cloned() });
        self.kind_index.insert(name.to_string(), k);
        k
    }

    fn is_present(&self, idx: u32, user: &str) -> bool {
        let s = self.slot(idx);
        match s.explicit_parts() {
            Some(parts) => parts.iter().any(|p| &*p.id == user && p.present()),
            None => s.flags & OWNER_JOINED != 0 && s.owner.is(user),
        }
    }

    // ---- internals: the slab and its indexes ----

    /// Puts a new slot in the slab, the id index and its owner's list.
    fn insert(&mut self, mut slot: Slot) -> u32 {
        if let Some(old) = self.find_key(slot.id.as_ref()) {
            // Ids are unique (UUIDs); a second session under a live id
            // replaces the first, as the map this replaced did.
            self.release(old);
            self.children.remove(&old);
        }
        slot.id_tag = self.hasher.tag(slot.id.as_ref());
        let head = self.head_of(slot.owner.as_ref());
        let id_tag = slot.id_tag;
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 live sessions")
            }
        };
        self.ids.insert(id_tag, idx);
        match head {
            None => {
                let s = self.slot_mut(idx);
                (s.prev_owned, s.next_owned) = (idx, idx);
                s.flags |= OWNER_HEAD;
                let t = self.hasher.tag(self.slot(idx).owner.as_ref());
                self.users.insert(t, idx);
            }
            Some(head) => {
                // Append: the tail is the head's predecessor.
                let tail = self.slot(head).prev_owned;
                self.slot_mut(tail).next_owned = idx;
                self.slot_mut(head).prev_owned = idx;
                let s = self.slot_mut(idx);
                (s.prev_owned, s.next_owned) = (tail, head);
            }
        }
        idx
    }

    /// A restored session into a slot, its participants packed if they are just the owner.
    fn insert_session(&mut self, s: Session) -> u32 {
        let kind = self.kind_of(&s.kind);
        let mut flags = 0;
        let mut owner_name = None;
        let mut participants = None;
        match s.participants.as_slice() {
            [] => {}
            [p] if p.id == s.user_id
                && p.joined_at == s.created_at
                && p.last_seen_at == s.last_seen_at
                && p.left_at.is_none() =>
            {
                flags |= OWNER_JOINED;
                owner_name = p.name.clone().map(String::into_boxed_str);
            }
            _ => participants = Some(s.participants.into_iter().map(Part::new).collect()),
        }
        let extra = Extra {
            parent: s.parent_id.as_deref().map(Key::new),
            metadata: Meta::new(s.metadata),
            owner_name,
            participants,
            members: s.members.into_iter().map(String::into_boxed_str).collect(),
            completing_at: from_opt(s.completing_at),
        };
        self.insert(Slot {
            id: Key::new(&s.id),
            owner: Key::new(&s.user_id),
            id_tag: 0,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            activated_at: from_opt(s.activated_at),
            queued: NONE,
            extra: (!extra.is_default()).then(|| Box::new(extra)),
            prev_owned: NIL,
            next_owned: NIL,
            kind,
            status: s.status,
            flags,
        })
    }

    /// Adds a session to its parent's children, if the parent is live.
    fn link_child(&mut self, idx: u32) {
        let Some(parent) = self.slot(idx).parent().and_then(|p| self.find_key(p.as_ref())) else { return };
        self.children.entry(parent).or_default().push(idx);
        self.slot_mut(parent).flags |= PARENT;
    }

    /// Takes a session out of the slab and every index; its slot becomes free.
    fn release(&mut self, idx: u32) -> Slot {
        let s = self.slots[idx as usize].take().expect("release of a live slot");
        self.ids.remove(s.id_tag, idx);
        self.free_slots.push(idx);
        if s.queued != NONE {
            if self.schedule.is_near(s.queued) {
                self.schedule.remove_near(s.queued, idx);
            } else {
                self.stale += 1;
            }
        }
        if s.flags & GRACE != 0 {
            self.grace.remove(&idx);
        }
        // Unlink from the owner's list; the last session of a user takes the user along.
        if s.next_owned == idx {
            self.users.remove(self.hasher.tag(s.owner.as_ref()), idx);
        } else {
            self.slot_mut(s.prev_owned).next_owned = s.next_owned;
            self.slot_mut(s.next_owned).prev_owned = s.prev_owned;
            if s.flags & OWNER_HEAD != 0 {
                self.slot_mut(s.next_owned).flags |= OWNER_HEAD;
                self.users.replace(self.hasher.tag(s.owner.as_ref()), idx, s.next_owned);
            }
        }
        if let Some(parent) = s.parent().and_then(|p| self.find_key(p.as_ref())) {
            if let Some(ids) = self.children.get_mut(&parent) {
                ids.retain(|&i| i != idx);
                if ids.is_empty() {
                    self.children.remove(&parent);
                    self.slot_mut(parent).flags &= !PARENT;
                }
            }
        }
        s
    }

    // ---- internals: deadlines ----

    fn deadlines(&self, idx: u32, s: &Slot) -> Option<Deadlines> {
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
        Some(Deadlines { end, participant })
    }

    fn wake(&self, idx: u32) -> Option<Millis> {
        self.deadlines(idx, self.slot(idx)).and_then(|d| d.wake())
    }

    /// True if `expire_due(now)` would end this live session: one of its own
    /// deadlines has passed, or an ancestor's has and the end cascades to it.
    fn doomed(&self, now: Millis, idx: u32) -> bool {
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
    fn reschedule(&mut self, idx: u32) {
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
    fn settle(&mut self) {
        self.advance();
        if self.stale > 1024 && self.stale * 2 > self.schedule.far_len() {
            let slots = &self.slots;
            self.schedule.retain_far(|at, idx| slots[idx as usize].as_ref().is_some_and(|s| s.queued == at));
            self.stale = 0;
        }
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

    fn apply_deadlines(&mut self, now: Millis, idx: u32, d: Deadlines, out: &mut Outcome) {
        if let Some((at, reason)) = d.end.filter(|(at, _)| *at <= now) {
            self.finish(now, idx, reason, None, Some(at), out);
            return;
        }
        if d.participant.is_some_and(|at| at <= now) {
            let floor = self.activity_floor;
            let pit = self
                .policy(self.slot(idx).kind)
                .and_then(|k| k.participant_idle_timeout)
                .map(|d| d.millis())
                .unwrap_or(i64::MAX);
            let mut left = Vec::new();
            for p in self.slot_mut(idx).parts_mut().iter_mut().filter(|p| p.present()) {
                if p.last_seen_at.max(floor).saturating_add(pit) <= now {
                    p.left_at = now;
                    left.push(p.to_participant());
                }
            }
            self.reschedule(idx);
            let snap = Arc::new(self.snapshot(idx));
            out.writes.push(Write::Session(snap.clone()));
            for p in left {
                let mut e = event(EventType::ParticipantLeft, now, &snap);
                e.participant = Some(p);
                out.events.push(e);
            }
        } else {
            self.reschedule(idx);
        }
    }

    /// Ends a live session and cascades to children whose kind says so.
    fn finish(
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

    /// The public record of a live session.
    fn snapshot(&self, idx: u32) -> Session {
        let s = self.slot(idx);
        let user_id = s.owner.text();
        let x = s.extra.as_deref();
        let participants = match s.explicit_parts() {
            Some(parts) => parts.iter().map(Part::to_participant).collect(),
            None if s.flags & OWNER_JOINED != 0 => vec![Participant {
                id: user_id.clone(),
                name: x.and_then(|x| x.owner_name.as_deref()).map(str::to_string),
                joined_at: s.created_at,
                last_seen_at: s.last_seen_at,
                left_at: None,
            }],
            None => Vec::new(),
        };
        Session {
            id: s.id.text(),
            kind: self.kind_table[s.kind as usize].name.clone(),
            user_id,
            status: s.status,
            created_at: s.created_at,
            activated_at: opt(s.activated_at),
            last_seen_at: s.last_seen_at,
            expires_at: self.deadlines(idx, s).and_then(|d| d.end).map(|e| e.0),
            ended_at: None,
            end_reason: None,
            parent_id: s.parent().map(Key::text),
            metadata: x.map_or(Meta::EmptyObject.to_value(), |x| x.metadata.to_value()),
            participants,
            members: x.map_or_else(Vec::new, |x| x.members.iter().map(|m| m.to_string()).collect()),
            completing_at: opt(s.completing_at()),
            end_detail: None,
        }
    }
}

fn event(kind: EventType, at: Millis, s: &Arc<Session>) -> Event {
    Event { kind, at, session: s.clone(), reason: None, participant: None, deadline: None }
}

#[cfg(test)]
mod tests {
    //! The layout's own invariants, which the policy tests (black-box, in
    //! `tests/policies.rs`) cannot see.
    use super::*;
    use crate::kind::KindPolicy;

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
                assert_eq!(s.flags & PARENT != 0, self.children.contains_key(&idx));
                if s.flags & OWNER_JOINED != 0 {
                    assert!(s.explicit_parts().is_none());
                }
            }
            assert_eq!(self.next_deadline(), earliest, "the first entry is the earliest wake");
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
        let kinds = ["idle", "long", "pidle", "comp", "default"];
        let mut now = 1_795_341_600_000i64;
        let mut ids: Vec<String> = Vec::new();
        for n in 0..6000u64 {
            now += [0, 1, 17, 250, 1_000][rnd(5) as usize];
            let id = ids.get(rnd(ids.len().max(1) as u64) as usize).cloned().unwrap_or_default();
            let user = users[rnd(4) as usize];
            match rnd(12) {
                0..=2 => {
                    let id = if n % 2 == 0 { format!("0192f3c4-5b6a-7c8d-9e0f-{n:012}") } else { format!("s{n}") };
                    let parent_id = (rnd(4) == 0).then(|| ids.last().cloned()).flatten();
                    let req = NewSession {
                        id: id.clone(),
                        kind: kinds[rnd(5) as usize].into(),
                        owner: user.into(),
                        parent_id,
                        ..NewSession::default()
                    };
                    if e.create(now, req).is_ok() {
                        ids.push(id);
                    }
                }
                3..=5 => {
                    let _ = e.touch(now, &id, user);
                }
                6 => {
                    let _ = e.end(now, &id, EndReason::Ended, None);
                }
                7 => {
                    let _ = e.join(now, &id, user, None);
                }
                8 => {
                    let _ = e.complete(now, &id);
                }
                9 => e.socket_opened(user),
                10 => e.socket_closed(now, user),
                _ => {
                    e.expire_due(now);
                    assert!(e.overdue(now).is_empty());
                }
            }
            e.check_invariants();
        }
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
            let req = NewSession {
                id: format!("s{i}"),
                kind: "idle".into(),
                owner: format!("u{i}"),
                ..NewSession::default()
            };
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
}

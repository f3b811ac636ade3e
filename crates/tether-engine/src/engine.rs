//! The engine: every live session, the indexes that enforce per-user policy
//! and parent cascade, and the deadline schedule. Each operation takes `now`
//! from the caller and returns what changed ([`Outcome`]): the snapshots to
//! persist and the events to publish. The engine does no IO, so the caller
//! decides how a change becomes durable before it is acknowledged.
//!
//! Ended sessions leave the engine at once (the store keeps them until their
//! retention passes), so memory follows live sessions only.

use crate::kind::{KindPolicy, Kinds, OnParentEnd, PerUser, Presence};
use crate::schedule::DeadlineQueue;
use crate::session::{EndReason, Invite, Participant, Session, Status};
use crate::time::{Dur, Millis};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Started => "session.started",
            EventType::Activated => "session.activated",
            EventType::Completing => "session.completing",
            EventType::Ended => "session.ended",
            EventType::ParticipantJoined => "participant.joined",
            EventType::ParticipantLeft => "participant.left",
        }
    }
}

/// A lifecycle event, before the publisher gives it a sequence number.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventType,
    pub at: Millis,
    pub session: Session,
    pub reason: Option<EndReason>,
    pub participant: Option<Participant>,
    /// For deadline-driven ends: the deadline that fired (lateness = publish time − this).
    pub deadline: Option<Millis>,
}

/// A change the caller must make durable.
#[derive(Clone, Debug)]
pub enum Write {
    Session(Session),
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
    WrongStatus { status: Status, action: &'static str },
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

pub struct Engine {
    kinds: Kinds,
    live: HashMap<String, Session>,
    /// owner → live session ids, for per-user policy and disconnect grace.
    by_owner: HashMap<String, Vec<String>>,
    /// parent → child ids (live children only), for the cascade.
    children: HashMap<String, Vec<String>>,
    schedule: DeadlineQueue,
    /// Disconnect-grace deadlines in force, by session.
    grace: HashMap<String, Millis>,
    /// Open WebSockets per user: the last one closing starts disconnect grace.
    sockets: HashMap<String, u32>,
    invites: HashMap<String, Invite>,
    /// Activity before this instant counts as this instant: after a restart
    /// clients could not reach the server, so idle deadlines are re-granted.
    activity_floor: Millis,
    /// Sessions whose heartbeat state changed but was not written (heartbeats are batched).
    dirty: HashSet<String>,
}

impl Engine {
    pub fn new(kinds: Kinds) -> Engine {
        Engine {
            kinds,
            live: HashMap::new(),
            by_owner: HashMap::new(),
            children: HashMap::new(),
            schedule: DeadlineQueue::default(),
            grace: HashMap::new(),
            sockets: HashMap::new(),
            invites: HashMap::new(),
            activity_floor: i64::MIN,
            dirty: HashSet::new(),
        }
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// Loads live sessions and invites after a restart. Idle deadlines count
    /// from `now` again; absolute deadlines (max, waiting, completing) keep
    /// their times, so sessions already past them end on the first `expire_due`.
    pub fn restore(&mut self, now: Millis, sessions: Vec<Session>, invites: Vec<Invite>) {
        self.activity_floor = now;
        for session in sessions.into_iter().filter(|s| s.status.is_live()) {
            let id = session.id.clone();
            self.index(&session);
            self.live.insert(id.clone(), session);
            self.reschedule(&id);
        }
        for invite in invites {
            self.invites.insert(invite.token.clone(), invite);
        }
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.live.get(id)
    }

    pub fn live_sessions(&self) -> impl Iterator<Item = &Session> {
        self.live.values()
    }

    /// The live sessions `user` owns.
    pub fn owned_by<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Session> + 'a {
        self.by_owner.get(user).into_iter().flatten().filter_map(|id| self.live.get(id))
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.schedule.first().map(|(at, _)| at)
    }

    /// Starts a session. Sessions past a deadline are ended first (with their
    /// real reason), so a dead session never blocks a new one.
    pub fn create(&mut self, now: Millis, req: NewSession) -> Result<(Session, Vec<String>, Outcome), EngineError> {
        let kind = self
            .kinds
            .get(&req.kind)
            .cloned()
            .ok_or_else(|| EngineError::UnknownKind(req.kind.clone()))?;
        // Refuse before applying due deadlines: an `Err` carries no Outcome,
        // so ends applied here and then refused would be lost. A session that
        // `expire_due(now)` would end neither blocks nor parents.
        if let Some(parent) = &req.parent_id {
            if !self.live.contains_key(parent) || self.doomed(now, parent) {
                return Err(EngineError::ParentNotLive);
            }
        }
        if kind.per_user == PerUser::Reject && !req.takeover {
            let blocking = self.by_owner.get(&req.owner).into_iter().flatten().find(|id| {
                self.live[*id].kind == kind.name && !self.doomed(now, id)
            });
            if let Some(id) = blocking {
                return Err(EngineError::Conflict(Box::new(self.live[id].clone())));
            }
        }
        let ends_holding = kind.per_user == PerUser::Replace || (kind.per_user == PerUser::Reject && req.takeover);
        if let (true, Some(parent)) = (ends_holding, &req.parent_id) {
            // The parent would itself be superseded / taken over by this very
            // create (or cascade from one that is): the child would be born an orphan.
            let mut at = self.live.get(parent);
            while let Some(s) = at {
                if s.user_id == req.owner && s.kind == kind.name {
                    return Err(EngineError::ParentNotLive);
                }
                let cascades = self.kinds.get(&s.kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End);
                at = s.parent_id.as_ref().filter(|_| cascades).and_then(|p| self.live.get(p));
            }
        }
        let mut out = self.expire_due(now);
        if let Some(parent) = &req.parent_id {
            if !self.live.contains_key(parent) {
                return Err(EngineError::ParentNotLive);
            }
        }
        let holding: Vec<String> = self
            .by_owner
            .get(&req.owner)
            .map(|ids| ids.iter().filter(|id| self.live[*id].kind == kind.name).cloned().collect())
            .unwrap_or_default();
        let mut superseded = Vec::new();
        match kind.per_user {
            PerUser::Allow => {}
            PerUser::Replace => {
                for id in holding {
                    self.finish(now, &id, EndReason::Superseded, None, None, &mut out);
                    superseded.push(id);
                }
            }
            PerUser::Reject => {
                if let Some(first) = holding.first() {
                    if !req.takeover {
                        return Err(EngineError::Conflict(Box::new(self.live[first].clone())));
                    }
                    for id in holding {
                        self.finish(now, &id, EndReason::TakenOver, None, None, &mut out);
                        superseded.push(id);
                    }
                }
            }
        }

        let mut participants = Vec::new();
        if kind.owner_joins {
            participants.push(Participant {
                id: req.owner.clone(),
                name: req.owner_name.clone(),
                joined_at: now,
                last_seen_at: now,
                left_at: None,
            });
        }
        let active = participants.len() as u32 >= kind.quorum.max(1);
        let session = Session {
            id: req.id.clone(),
            kind: kind.name.clone(),
            user_id: req.owner.clone(),
            status: if active { Status::Active } else { Status::Waiting },
            created_at: now,
            activated_at: active.then_some(now),
            last_seen_at: now,
            expires_at: None,
            ended_at: None,
            end_reason: None,
            parent_id: req.parent_id.clone(),
            metadata: if req.metadata.is_null() { serde_json::json!({}) } else { req.metadata },
            participants,
            members: req.members,
            completing_at: None,
            end_detail: None,
        };
        self.index(&session);
        self.live.insert(session.id.clone(), session);
        self.reschedule(&req.id);
        let snapshot = self.live[&req.id].clone();
        out.writes.push(Write::Session(snapshot.clone()));
        out.events.push(event(EventType::Started, now, &snapshot));
        if active {
            out.events.push(event(EventType::Activated, now, &snapshot));
        }
        Ok((snapshot, superseded, out))
    }

    /// Activity by `user` (owner or participant). Not written at once: the
    /// session is marked dirty and flushed with [`Engine::take_dirty`].
    pub fn heartbeat(&mut self, now: Millis, id: &str, user: &str) -> Result<Session, EngineError> {
        let presence = {
            let s = self.live.get(id).ok_or(EngineError::NotLive)?;
            self.kinds.get(&s.kind).map(|k| k.presence).unwrap_or(Presence::Owner)
        };
        let s = self.live.get_mut(id).expect("checked above");
        let is_owner = s.user_id == user;
        let mut counted = is_owner || presence == Presence::Any;
        if let Some(p) = s.participants.iter_mut().find(|p| p.id == user && p.left_at.is_none()) {
            p.last_seen_at = now;
        } else if !is_owner {
            // A member who has not joined (a call's partner) shows no activity.
            counted = false;
        }
        if counted {
            s.last_seen_at = now;
        }
        self.dirty.insert(id.to_string());
        self.reschedule(id);
        Ok(self.live[id].clone())
    }

    /// Ends a live session by request. Ending an ended session is the caller's
    /// idempotent `200`: this answers `NotLive` and the caller reads the store.
    pub fn end(&mut self, now: Millis, id: &str, reason: EndReason, detail: Option<String>) -> Result<(Session, Outcome), EngineError> {
        if !self.live.contains_key(id) {
            return Err(EngineError::NotLive);
        }
        let mut out = Outcome::default();
        let ended = self.finish(now, id, reason, detail, None, &mut out);
        Ok((ended, out))
    }

    /// `active → completing`; the completing timeout (if any) starts now.
    pub fn complete(&mut self, now: Millis, id: &str) -> Result<(Session, Outcome), EngineError> {
        let s = self.live.get_mut(id).ok_or(EngineError::NotLive)?;
        match s.status {
            Status::Completing => return Ok((s.clone(), Outcome::default())),
            Status::Active => {}
            status => return Err(EngineError::WrongStatus { status, action: "complete" }),
        }
        s.status = Status::Completing;
        s.completing_at = Some(now);
        self.reschedule(id);
        let snap = self.live[id].clone();
        let mut out = Outcome::default();
        out.writes.push(Write::Session(snap.clone()));
        out.events.push(event(EventType::Completing, now, &snap));
        Ok((snap, out))
    }

    /// Adds (or re-admits) a participant; reaching the quorum activates the session.
    pub fn join(&mut self, now: Millis, id: &str, user: &str, name: Option<String>) -> Result<(Session, Outcome), EngineError> {
        let (quorum, presence) = {
            let s = self.live.get(id).ok_or(EngineError::NotLive)?;
            self.kinds.get(&s.kind).map(|k| (k.quorum, k.presence)).unwrap_or((1, Presence::Owner))
        };
        let s = self.live.get_mut(id).expect("checked above");
        let mut out = Outcome::default();
        let already_present = s.participants.iter().any(|p| p.id == user && p.left_at.is_none());
        if already_present {
            return Ok((s.clone(), out));
        }
        let participant = if let Some(p) = s.participants.iter_mut().find(|p| p.id == user) {
            p.left_at = None;
            p.last_seen_at = now;
            if name.is_some() {
                p.name = name;
            }
            p.clone()
        } else {
            let p = Participant { id: user.to_string(), name, joined_at: now, last_seen_at: now, left_at: None };
            s.participants.push(p.clone());
            p
        };
        if s.user_id == user || presence == Presence::Any {
            s.last_seen_at = now;
        }
        let activates = s.status == Status::Waiting && s.present_count() as u32 >= quorum;
        if activates {
            s.status = Status::Active;
            s.activated_at = Some(now);
        }
        self.reschedule(id);
        let snap = self.live[id].clone();
        out.writes.push(Write::Session(snap.clone()));
        let mut joined = event(EventType::ParticipantJoined, now, &snap);
        joined.participant = Some(participant);
        out.events.push(joined);
        if activates {
            out.events.push(event(EventType::Activated, now, &snap));
        }
        Ok((snap, out))
    }

    /// A participant leaves on its own.
    pub fn leave(&mut self, now: Millis, id: &str, user: &str) -> Result<(Session, Outcome), EngineError> {
        let s = self.live.get_mut(id).ok_or(EngineError::NotLive)?;
        let p = s
            .participants
            .iter_mut()
            .find(|p| p.id == user)
            .ok_or(EngineError::NotParticipant)?;
        let mut out = Outcome::default();
        if p.left_at.is_none() {
            p.left_at = Some(now);
            let p = p.clone();
            self.reschedule(id);
            let snap = self.live[id].clone();
            out.writes.push(Write::Session(snap.clone()));
            let mut left = event(EventType::ParticipantLeft, now, &snap);
            left.participant = Some(p);
            out.events.push(left);
        }
        Ok((self.live[id].clone(), out))
    }

    /// Creates an invite; `ttl` fixes its expiry, else the kind's `invite_ttl`
    /// counts from the session's last activity. Returns the current expiry.
    pub fn create_invite(&mut self, now: Millis, id: &str, token: String, ttl: Option<Dur>) -> Result<(Invite, Option<Millis>, Outcome), EngineError> {
        if !self.live.contains_key(id) {
            return Err(EngineError::NotLive);
        }
        let invite = Invite { token: token.clone(), session_id: id.to_string(), created_at: now, fixed_expiry: ttl.map(|t| now + t.millis()) };
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
        let s = self.live.get(&invite.session_id)?;
        let ttl = self.kinds.get(&s.kind)?.invite_ttl?;
        let last_activity = s
            .participants
            .iter()
            .map(|p| p.last_seen_at)
            .chain([s.last_seen_at])
            .max()
            .unwrap_or(s.last_seen_at);
        Some(last_activity.max(self.activity_floor) + ttl.millis())
    }

    /// Joins through an invite as participant `participant_id`.
    pub fn join_invite(&mut self, now: Millis, token: &str, participant_id: &str, name: Option<String>) -> Result<(Session, Outcome), EngineError> {
        let invite = self.invites.get(token).cloned().ok_or(EngineError::InviteUnknown)?;
        if !self.live.contains_key(&invite.session_id) {
            return Err(EngineError::InviteSessionEnded);
        }
        if let Some(expiry) = self.invite_expiry(&invite) {
            if now >= expiry {
                return Err(EngineError::InviteExpired);
            }
        }
        if self.doomed(now, &invite.session_id) {
            // Refused without applying it, so the end is not lost: the
            // scheduler's expire_due ends and reports it.
            return Err(EngineError::InviteSessionEnded);
        }
        let mut out = self.expire_due(now);
        if !self.live.contains_key(&invite.session_id) {
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
            .filter(|i| !self.live.contains_key(&i.session_id) || self.invite_expiry(i).is_some_and(|e| now >= e))
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
        let ids = self.by_owner.get(user).cloned().unwrap_or_default();
        for id in ids {
            if self.grace.remove(&id).is_some() {
                self.reschedule(&id);
            }
        }
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
        let ids = self.by_owner.get(user).cloned().unwrap_or_default();
        for id in ids {
            let grace = self.live.get(&id).and_then(|s| self.kinds.get(&s.kind)).and_then(|k| k.disconnect_grace);
            if let Some(g) = grace {
                self.grace.insert(id.clone(), now + g.millis());
                self.reschedule(&id);
            }
        }
    }

    pub fn has_socket(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
    }

    /// Applies every deadline at or before `now`: ends sessions with the
    /// reason of the deadline that passed first, marks idle participants left.
    pub fn expire_due(&mut self, now: Millis) -> Outcome {
        let mut out = Outcome::default();
        while let Some((at, id)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.remove(&id);
            self.apply_deadlines(now, &id, &mut out);
        }
        out
    }

    /// Live sessions past a deadline right now. The scheduler keeps this
    /// empty; anything here is a bug or a stalled timer (admin health).
    pub fn overdue(&self, now: Millis) -> Vec<(String, EndReason, Millis)> {
        self.live
            .values()
            .filter_map(|s| {
                let d = self.deadlines(s)?.end?;
                (d.0 <= now).then(|| (s.id.clone(), d.1, d.0))
            })
            .collect()
    }

    /// Live sessions whose parent is not live although their kind cascades.
    pub fn orphans(&self) -> Vec<String> {
        self.live
            .values()
            .filter(|s| {
                s.parent_id.as_ref().is_some_and(|p| !self.live.contains_key(p))
                    && self.kinds.get(&s.kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End)
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// Snapshots of sessions with unwritten heartbeats.
    pub fn take_dirty(&mut self) -> Vec<Session> {
        let ids: Vec<String> = self.dirty.drain().collect();
        ids.iter().filter_map(|id| self.live.get(id).cloned()).collect()
    }

    // ---- internals ----

    fn index(&mut self, s: &Session) {
        self.by_owner.entry(s.user_id.clone()).or_default().push(s.id.clone());
        if let Some(p) = &s.parent_id {
            self.children.entry(p.clone()).or_default().push(s.id.clone());
        }
    }

    fn unindex(&mut self, s: &Session) {
        if let Some(ids) = self.by_owner.get_mut(&s.user_id) {
            ids.retain(|i| i != &s.id);
            if ids.is_empty() {
                self.by_owner.remove(&s.user_id);
            }
        }
        if let Some(p) = &s.parent_id {
            if let Some(ids) = self.children.get_mut(p) {
                ids.retain(|i| i != &s.id);
                if ids.is_empty() {
                    self.children.remove(p);
                }
            }
        }
    }

    fn deadlines(&self, s: &Session) -> Option<Deadlines> {
        let k: &KindPolicy = self.kinds.get(&s.kind)?;
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
        if let (Some(act), Some(max)) = (s.activated_at, k.max_duration) {
            if matches!(s.status, Status::Active | Status::Completing) {
                consider(act + max.millis(), EndReason::MaxDuration);
            }
        }
        if let (Status::Completing, Some(at), Some(c)) = (s.status, s.completing_at, k.completing_timeout) {
            consider(at + c.millis(), EndReason::CompletingTimeout);
        }
        if let Some(g) = self.grace.get(&s.id) {
            consider(*g, EndReason::Disconnected);
        }
        let participant = k.participant_idle_timeout.and_then(|pit| {
            s.participants
                .iter()
                .filter(|p| p.left_at.is_none())
                .map(|p| p.last_seen_at.max(floor) + pit.millis())
                .min()
        });
        Some(Deadlines { end, participant })
    }

    /// True if `expire_due(now)` would end this live session: one of its own
    /// deadlines has passed, or an ancestor's has and the end cascades to it.
    fn doomed(&self, now: Millis, id: &str) -> bool {
        let Some(s) = self.live.get(id) else { return false };
        if self.deadlines(s).and_then(|d| d.end).is_some_and(|(at, _)| at <= now) {
            return true;
        }
        let cascades = self.kinds.get(&s.kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End);
        cascades && s.parent_id.as_deref().is_some_and(|p| self.doomed(now, p))
    }

    /// Recomputes a live session's deadlines, its `expires_at` and its place in the schedule.
    fn reschedule(&mut self, id: &str) {
        let Some(s) = self.live.get(id) else {
            self.schedule.remove(id);
            return;
        };
        let d = self.deadlines(s).unwrap_or(Deadlines { end: None, participant: None });
        let expires = d.end.map(|e| e.0);
        if let Some(s) = self.live.get_mut(id) {
            s.expires_at = expires;
        }
        match d.wake() {
            Some(at) => self.schedule.set(id, at),
            None => self.schedule.remove(id),
        }
    }

    fn apply_deadlines(&mut self, now: Millis, id: &str, out: &mut Outcome) {
        let Some(d) = self.live.get(id).and_then(|s| self.deadlines(s)) else { return };
        if let Some((at, reason)) = d.end.filter(|(at, _)| *at <= now) {
            self.finish(now, id, reason, None, Some(at), out);
            return;
        }
        if d.participant.is_some_and(|at| at <= now) {
            let floor = self.activity_floor;
            let pit = self
                .live
                .get(id)
                .and_then(|s| self.kinds.get(&s.kind))
                .and_then(|k| k.participant_idle_timeout)
                .map(|d| d.millis())
                .unwrap_or(i64::MAX);
            let s = self.live.get_mut(id).expect("live");
            let mut left = Vec::new();
            for p in s.participants.iter_mut().filter(|p| p.left_at.is_none()) {
                if p.last_seen_at.max(floor).saturating_add(pit) <= now {
                    p.left_at = Some(now);
                    left.push(p.clone());
                }
            }
            self.reschedule(id);
            let snap = self.live[id].clone();
            out.writes.push(Write::Session(snap.clone()));
            for p in left {
                let mut e = event(EventType::ParticipantLeft, now, &snap);
                e.participant = Some(p);
                out.events.push(e);
            }
        } else {
            self.reschedule(id);
        }
    }

    /// Ends a live session and cascades to children whose kind says so.
    fn finish(&mut self, now: Millis, id: &str, reason: EndReason, detail: Option<String>, deadline: Option<Millis>, out: &mut Outcome) -> Session {
        let mut s = self.live.remove(id).expect("finish called on a live session");
        self.schedule.remove(id);
        self.grace.remove(id);
        self.dirty.remove(id);
        self.unindex(&s);
        s.status = Status::Ended;
        s.ended_at = Some(now);
        s.end_reason = Some(reason);
        s.expires_at = None;
        s.end_detail = detail;
        out.writes.push(Write::Session(s.clone()));
        let mut e = event(EventType::Ended, now, &s);
        e.reason = Some(reason);
        e.deadline = deadline;
        out.events.push(e);
        if let Some(children) = self.children.remove(id) {
            for child in children {
                let cascades = self
                    .live
                    .get(&child)
                    .and_then(|c| self.kinds.get(&c.kind))
                    .is_some_and(|k| k.on_parent_end == OnParentEnd::End);
                if cascades {
                    self.finish(now, &child, EndReason::ParentEnded, None, None, out);
                }
            }
        }
        s
    }
}

fn event(kind: EventType, at: Millis, s: &Session) -> Event {
    Event { kind, at, session: s.clone(), reason: None, participant: None, deadline: None }
}

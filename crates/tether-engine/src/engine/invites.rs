//! Invitations: a token that lets someone without an account join one
//! session as a participant, until it expires (a fixed `ttl`, or the kind's
//! `invite_ttl` counted from the session's last activity) or the session ends.

use super::{Engine, EngineError, Outcome, Write};
use crate::session::{Invite, Session};
use crate::time::{Dur, Millis};

impl Engine {
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
}

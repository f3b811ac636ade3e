//! Revive: a session that ended `idle_timeout` or `disconnected` (its user
//! went quiet, its browser crashed) comes back within its kind's
//! `revive_window`, `active` again under the same id, with the same owner,
//! metadata, parent and participants, and every deadline counted from the
//! revive.
//!
//! An ended session is no longer in the engine, so the caller reads it from
//! the store and hands it in; the engine decides everything else under the
//! same rules as a start (`per_user`, the parent), so a revive is one
//! operation whose writes and events go through the journal like a create's.
//!
//! What a revive does not do, on purpose:
//! - it does not bring back children that ended `parent_ended` with it
//!   (that reason is not revivable; a child that ended idle on its own may be
//!   revived once its parent is live again);
//! - it does not revive a session of a cascading kind (`on_parent_end =
//!   "end"`) whose parent is not live: it would be an orphan at once;
//! - it does not revive a session that never became active (it ended while
//!   waiting for its quorum): coming back `active` would skip the quorum, and
//!   coming back `waiting` could not count its `waiting_timeout` from now
//!   without a second creation time. Start a new session instead;
//! - it does not start a `disconnect_grace` on its own: like a new session,
//!   the grace starts when the owner's last socket closes.

use super::outcome::event;
use super::{Engine, EngineError, EventType, Outcome, Write};
use crate::session::{EndReason, Session, Status};
use crate::time::{format_rfc3339, Dur, Millis};
use std::fmt;
use std::sync::Arc;

/// Why a session cannot be revived (nothing changed). Its `Display` is the
/// sentence a `409` problem's `detail` carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviveRefusal {
    /// It ended for a reason a revive does not undo (only `idle_timeout` and `disconnected` are).
    Reason(EndReason),
    /// Its kind has no `revive_window` (or is no longer configured).
    NoWindow { kind: String },
    /// The window closed at `closed_at`, `window` after the end.
    WindowClosed { closed_at: Millis, window: Dur },
    /// It ended while still `waiting` for its quorum.
    NeverActive,
    /// Its kind ends with its parent (`on_parent_end = "end"`) and the parent is not live.
    ParentNotLive { parent_id: String },
}

impl fmt::Display for ReviveRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReviveRefusal::Reason(r) => write!(
                f,
                "the session's end reason is {}; only a session that ended idle_timeout or disconnected can be revived",
                r.as_str()
            ),
            ReviveRefusal::NoWindow { kind } => {
                write!(f, "kind {kind} has no revive_window: its sessions cannot be revived")
            }
            ReviveRefusal::WindowClosed { closed_at, window } => write!(
                f,
                "the revive window ({window} after the end) closed at {}; start a new session",
                format_rfc3339(*closed_at)
            ),
            ReviveRefusal::NeverActive => {
                write!(f, "the session ended while waiting for its quorum (it was never active); start a new session")
            }
            ReviveRefusal::ParentNotLive { parent_id } => write!(
                f,
                "its parent session {parent_id} is not live and its kind ends with its parent \
                 (on_parent_end = \"end\"); revive the parent first"
            ),
        }
    }
}

impl Engine {
    /// Revives `ended`, the stored record of a session that is no longer
    /// live: back to `active` with `activated_at`, `last_seen_at` and every
    /// present participant's `last_seen_at` set to `now` (so idle,
    /// `max_duration` and participant idle count from the revive), its end
    /// cleared, and `session.revived` published. Participants who had left
    /// stay left, except the owner: the revive is its act. `per_user` applies as to a
    /// start: `reject` answers `Conflict` (unless `takeover`), `replace`
    /// supersedes the live one; the ids it ended are returned.
    ///
    /// A session that is live (a concurrent revive got there first) is
    /// returned unchanged with an empty outcome.
    pub fn revive(
        &mut self,
        now: Millis,
        ended: Session,
        takeover: bool,
    ) -> Result<(Session, Vec<String>, Outcome), EngineError> {
        if let Some(idx) = self.find(&ended.id) {
            return Ok((self.snapshot(idx), Vec::new(), Outcome::default()));
        }
        let refuse = |why| Err(EngineError::NotRevivable(why));
        let Some(reason) = ended.end_reason.filter(|_| ended.status == Status::Ended) else {
            // A live record the engine does not hold: nothing this engine can revive.
            return Err(EngineError::NotLive);
        };
        if !matches!(reason, EndReason::IdleTimeout | EndReason::Disconnected) {
            return refuse(ReviveRefusal::Reason(reason));
        }
        let kind_idx = self.kind_index.get(&ended.kind).copied();
        let Some((kind_idx, window)) =
            kind_idx.and_then(|k| self.policy(k).and_then(|p| p.revive_window).map(|w| (k, w)))
        else {
            return refuse(ReviveRefusal::NoWindow { kind: ended.kind });
        };
        let closes = ended.ended_at.unwrap_or(now).saturating_add(window.millis());
        if now >= closes {
            return refuse(ReviveRefusal::WindowClosed { closed_at: closes, window });
        }
        if ended.activated_at.is_none() {
            return refuse(ReviveRefusal::NeverActive);
        }
        // Only a cascading kind needs its parent live; a "keep" child lives on without one.
        let parent_id = ended.parent_id.clone().filter(|_| self.cascades(kind_idx));
        let parent_refusal = || ReviveRefusal::ParentNotLive { parent_id: ended.parent_id.clone().unwrap_or_default() };
        let (mut out, superseded) =
            self.admit(now, kind_idx, &ended.user_id, takeover, parent_id.as_deref()).map_err(|e| match e {
                EngineError::ParentNotLive => EngineError::NotRevivable(parent_refusal()),
                e => e,
            })?;

        let mut s = ended;
        s.status = Status::Active;
        s.activated_at = Some(now);
        s.last_seen_at = now;
        s.completing_at = None;
        s.ended_at = None;
        s.end_reason = None;
        s.end_detail = None;
        s.expires_at = None;
        for p in s.participants.iter_mut() {
            // A revive is the owner's act: its participant is present again.
            if p.id == s.user_id {
                p.left_at = None;
            }
            if p.left_at.is_none() {
                p.last_seen_at = now;
            }
        }
        let has_parent = s.parent_id.is_some();
        let idx = self.insert_session(s);
        if has_parent {
            // Links it if the parent is live (always, for a cascading kind).
            self.link_child(idx);
        }
        self.reschedule(idx);
        self.settle();
        let snapshot = Arc::new(self.snapshot(idx));
        out.writes.push(Write::Session(snapshot.clone()));
        out.events.push(event(EventType::Revived, now, &snapshot));
        Ok((Session::clone(&snapshot), superseded, out))
    }
}

//! The session record and its status machine vocabulary:
//! `waiting → active → completing → ended`, any live state may go to `ended`,
//! and every end carries exactly one [`EndReason`].

use crate::time::{rfc3339, Millis};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Active,
    Completing,
    Ended,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Waiting, Status::Active, Status::Completing, Status::Ended];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Active => "active",
            Status::Completing => "completing",
            Status::Ended => "ended",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
    pub fn is_live(self) -> bool {
        self != Status::Ended
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// By its user or backend.
    Ended,
    /// The browser's unload beacon.
    Closed,
    /// A newer session of a `per_user = "replace"` kind replaced it.
    Superseded,
    /// A newer session of a `per_user = "reject"` kind took over with `on_conflict: takeover`.
    TakenOver,
    IdleTimeout,
    MaxDuration,
    WaitingTimeout,
    CompletingTimeout,
    /// The owner's last WebSocket stayed closed for `disconnect_grace`.
    Disconnected,
    ParentEnded,
    /// A call whose partner's matching session ended.
    PartnerLeft,
    /// Ended by an operator (API key with reason "admin", or cleanup).
    Admin,
}

impl EndReason {
    pub const ALL: [EndReason; 12] = [
        EndReason::Ended,
        EndReason::Closed,
        EndReason::Superseded,
        EndReason::TakenOver,
        EndReason::IdleTimeout,
        EndReason::MaxDuration,
        EndReason::WaitingTimeout,
        EndReason::CompletingTimeout,
        EndReason::Disconnected,
        EndReason::ParentEnded,
        EndReason::PartnerLeft,
        EndReason::Admin,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::Closed => "closed",
            EndReason::Superseded => "superseded",
            EndReason::TakenOver => "taken_over",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::WaitingTimeout => "waiting_timeout",
            EndReason::CompletingTimeout => "completing_timeout",
            EndReason::Disconnected => "disconnected",
            EndReason::ParentEnded => "parent_ended",
            EndReason::PartnerLeft => "partner_left",
            EndReason::Admin => "admin",
        }
    }
    /// True for ends the deadline scheduler causes (these feed the lateness metric).
    pub fn is_deadline(self) -> bool {
        matches!(
            self,
            EndReason::IdleTimeout
                | EndReason::MaxDuration
                | EndReason::WaitingTimeout
                | EndReason::CompletingTimeout
                | EndReason::Disconnected
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub id: String,
    pub name: Option<String>,
    #[serde(with = "rfc3339")]
    pub joined_at: Millis,
    #[serde(with = "rfc3339")]
    pub last_seen_at: Millis,
    #[serde(with = "rfc3339::option")]
    pub left_at: Option<Millis>,
}

/// A session as the API shows it and as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub kind: String,
    pub user_id: String,
    pub status: Status,
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    #[serde(with = "rfc3339::option")]
    pub activated_at: Option<Millis>,
    /// Last activity that keeps the session alive (the owner's, or anyone's for `presence = "any"`).
    #[serde(with = "rfc3339")]
    pub last_seen_at: Millis,
    /// The earliest deadline now in force, or null.
    #[serde(with = "rfc3339::option")]
    pub expires_at: Option<Millis>,
    #[serde(with = "rfc3339::option")]
    pub ended_at: Option<Millis>,
    pub end_reason: Option<EndReason>,
    pub parent_id: Option<String>,
    pub metadata: serde_json::Value,
    pub participants: Vec<Participant>,
    /// Extension: users besides the owner and participants who may see the
    /// session (both users of a call before they join).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Extension: when the session entered `completing`.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub completing_at: Option<Millis>,
    /// Extension: the free-text `reason` given to `POST /end`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_detail: Option<String>,
}

impl Session {
    /// Owner, members and participants (also those who left) may see a session.
    pub fn visible_to(&self, user: &str) -> bool {
        self.user_id == user || self.members.iter().any(|m| m == user) || self.participants.iter().any(|p| p.id == user)
    }

    /// Everyone who receives this session's events.
    pub fn audience(&self) -> Vec<String> {
        let mut users = vec![self.user_id.clone()];
        for id in self.members.iter().chain(self.participants.iter().map(|p| &p.id)) {
            if !users.contains(id) {
                users.push(id.clone());
            }
        }
        users
    }

    pub fn participant(&self, user: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == user)
    }

    pub fn present_count(&self) -> usize {
        self.participants.iter().filter(|p| p.left_at.is_none()).count()
    }
}

/// An invitation to join one session without an account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub token: String,
    pub session_id: String,
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    /// An explicit `ttl` fixes the expiry at creation; without it the kind's
    /// `invite_ttl` counts from the session's last activity.
    #[serde(with = "rfc3339::option")]
    pub fixed_expiry: Option<Millis>,
}

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

/// A participant of a session. The owner is the first participant (it counts toward `quorum`),
/// except for calls, where each user becomes a participant by joining the call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Participant {
    /// The user id (for invite guests: the `participant_id` the join answered).
    pub id: String,
    /// Display name, if one was given.
    #[cfg_attr(feature = "schema", schema(required = true))]
    pub name: Option<String>,
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    #[serde(with = "rfc3339")]
    pub joined_at: Millis,
    /// The participant's last heartbeat or activity.
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    #[serde(with = "rfc3339")]
    pub last_seen_at: Millis,
    /// When it left (or was marked left after `participant_idle_timeout`); null while present.
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>, format = DateTime, required = true))]
    #[serde(with = "rfc3339::option")]
    pub left_at: Option<Millis>,
}

/// A session as the API shows it and as the store keeps it. Timestamps are
/// RFC 3339 UTC with milliseconds; ids are opaque strings (UUIDv7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: String,
    /// The session kind (a `[kinds.NAME]` table, or a built-in kind: `default`, `matching`, `call`).
    pub kind: String,
    /// The owner. For a call: the user who waited longer.
    pub user_id: String,
    pub status: Status,
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    #[serde(with = "rfc3339")]
    pub created_at: Millis,
    /// When it became `active` (quorum reached); null while `waiting`.
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>, format = DateTime, required = true))]
    #[serde(with = "rfc3339::option")]
    pub activated_at: Option<Millis>,
    /// Last activity that keeps the session alive (the owner's, or anyone's for `presence = "any"`).
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    #[serde(with = "rfc3339")]
    pub last_seen_at: Millis,
    /// The earliest deadline now in force (idle, max, waiting, completing), or null.
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>, format = DateTime, required = true))]
    #[serde(with = "rfc3339::option")]
    pub expires_at: Option<Millis>,
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>, format = DateTime, required = true))]
    #[serde(with = "rfc3339::option")]
    pub ended_at: Option<Millis>,
    /// Null while live.
    #[cfg_attr(feature = "schema", schema(required = true))]
    pub end_reason: Option<EndReason>,
    #[cfg_attr(feature = "schema", schema(required = true))]
    pub parent_id: Option<String>,
    /// Free-form JSON object given at creation (`{}` when none).
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub participants: Vec<Participant>,
    /// Extension: users besides the owner and participants who may see the
    /// session (both users of a call before they join). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Extension: when the session entered `completing`. Omitted when it never did.
    #[cfg_attr(feature = "schema", schema(value_type = String, format = DateTime))]
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub completing_at: Option<Millis>,
    /// Extension: the free-text `reason` given to `POST /end`, if any. Omitted when none.
    #[cfg_attr(feature = "schema", schema(nullable = false))]
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

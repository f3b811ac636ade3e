//! What an operation hands back: the writes the caller must make durable
//! and the events it must publish, and the vocabulary of event types every
//! transport shares.

use crate::session::{EndReason, Invite, Participant, Session};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
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
    /// A deadline that would end the session is the kind's `warn_before` away:
    /// `deadline` is when, `reason` the end it would have. Once per deadline.
    #[serde(rename = "session.expiring")]
    Expiring,
    /// An ended session was revived (`POST /v1/sessions/{id}/revive`).
    #[serde(rename = "session.revived")]
    Revived,
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
    pub const ALL: [EventType; 12] = [
        EventType::Started,
        EventType::Activated,
        EventType::Completing,
        EventType::Ended,
        EventType::Expiring,
        EventType::Revived,
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
            EventType::Expiring => "session.expiring",
            EventType::Revived => "session.revived",
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
    /// `session.ended`: why it ended; `session.expiring`: the end the deadline would bring.
    pub reason: Option<EndReason>,
    pub participant: Option<Participant>,
    /// For deadline-driven ends: the deadline that fired (lateness = publish
    /// time − this). For `session.expiring`: the deadline it warns of.
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

pub(super) fn event(kind: EventType, at: Millis, s: &Arc<Session>) -> Event {
    Event { kind, at, session: s.clone(), reason: None, participant: None, deadline: None }
}

//! Live events (contract section 5): one payload type per published event
//! type, the `stream.gap` notice, and the messages of the WebSocket in both
//! directions. Every [`EventType`] of the engine has exactly one [`Event`]
//! variant ([`Event::event_type`] is the compile-time tie one way, the
//! OpenAPI tests the other).

use super::matching::{Match, MutualMatch, ReceivedSignal, SignalBody};
use serde::{Deserialize, Serialize};
use tether_engine::{EndReason, EventType, Participant, Session, Status};
use utoipa::ToSchema;

/// An event: the `data:` of a Server-Sent Event (whose `id:` is `id` and `event:` is `type`)
/// and a WebSocket text frame. A user receives events of sessions it owns, is a member of or
/// participates in; an API key receives all (`?kind=` filters). Deadline-driven ends are
/// published within 100 ms of the deadline.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "session.started")]
    SessionStarted(SessionEvent),
    #[serde(rename = "session.activated")]
    SessionActivated(SessionEvent),
    #[serde(rename = "session.completing")]
    SessionCompleting(SessionEvent),
    #[serde(rename = "session.ended")]
    SessionEnded(SessionEnded),
    #[serde(rename = "session.expiring")]
    SessionExpiring(SessionExpiring),
    #[serde(rename = "session.revived")]
    SessionRevived(SessionEvent),
    #[serde(rename = "participant.joined")]
    ParticipantJoined(ParticipantEvent),
    #[serde(rename = "participant.left")]
    ParticipantLeft(ParticipantEvent),
    #[serde(rename = "match.found")]
    MatchFound(MatchFound),
    #[serde(rename = "match.mutual")]
    MatchMutual(MatchMutualEvent),
    #[serde(rename = "call.signal")]
    CallSignal(CallSignal),
    #[serde(rename = "stream.gap")]
    StreamGap(StreamGap),
}

impl Event {
    /// The engine's name for this event's `type`.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::SessionStarted(_) => EventType::Started,
            Event::SessionActivated(_) => EventType::Activated,
            Event::SessionCompleting(_) => EventType::Completing,
            Event::SessionEnded(_) => EventType::Ended,
            Event::SessionExpiring(_) => EventType::Expiring,
            Event::SessionRevived(_) => EventType::Revived,
            Event::ParticipantJoined(_) => EventType::ParticipantJoined,
            Event::ParticipantLeft(_) => EventType::ParticipantLeft,
            Event::MatchFound(_) => EventType::MatchFound,
            Event::MatchMutual(_) => EventType::MatchMutual,
            Event::CallSignal(_) => EventType::CallSignal,
            Event::StreamGap(_) => EventType::StreamGap,
        }
    }

    /// The `stream.gap` notice as the JSON text a stream sends.
    pub fn gap_json(from: u64, to: u64) -> String {
        // Two integers and a tag: serialising cannot fail.
        serde_json::to_string(&Event::StreamGap(StreamGap { from, to })).expect("stream.gap serializes")
    }
}

/// `session.started`, `session.activated`, `session.completing`, `session.revived`: the session
/// after the change (for `session.revived`: `active` again, its deadlines counted from the revive).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionEvent {
    /// The sequence number: monotonically increasing, across restarts too. The SSE `id:`; resume with `Last-Event-ID`.
    pub id: u64,
    /// Server time of the change.
    #[schema(format = DateTime)]
    pub at: String,
    pub session: Session,
}

/// `session.ended`: the ended session and why it ended.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionEnded {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub session: Session,
    pub reason: EndReason,
}

/// `session.expiring`: a deadline that would end this live session is the kind's `warn_before`
/// away. Published once per deadline. Activity that moves the deadline (a heartbeat, for
/// `idle_timeout`) means no end, and the new deadline is warned of in turn; a deadline set
/// closer than `warn_before` is warned of at once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionExpiring {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The live session (its `expires_at` is `deadline`).
    pub session: Session,
    /// When the session ends unless activity moves the deadline.
    #[schema(format = DateTime)]
    pub deadline: String,
    /// The end reason the deadline would bring (`idle_timeout`, `max_duration`, `waiting_timeout`,
    /// `completing_timeout` or `disconnected`).
    pub reason: EndReason,
}

/// `participant.joined` and `participant.left`: the session and the participant concerned.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParticipantEvent {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub session: Session,
    pub participant: Participant,
}

/// `match.found`, to each of the two users paired: the call session and the match
/// (as in `GET /v1/matching/next`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MatchFound {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The call session.
    pub session: Session,
    #[serde(rename = "match")]
    pub found: Match,
}

/// `match.mutual`, to each user once both decided `continue`: the ended call and the other user.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MatchMutualEvent {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The call session.
    pub session: Session,
    #[serde(rename = "match")]
    pub mutual: MutualMatch,
}

/// `call.signal`, to the call's other user only: a relayed WebRTC signal.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CallSignal {
    pub id: u64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The call session.
    pub session: Session,
    pub signal: ReceivedSignal,
}

/// `stream.gap`: this subscriber missed the events with ids `from..=to` (it fell further behind
/// than the resume log reaches, or resumed from before it). It carries no session: catch up by
/// reading the sessions you follow (`GET /v1/sessions/{id}`). Over SSE its `id:` is `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamGap {
    /// The first missed event id.
    pub from: u64,
    /// The last missed event id.
    pub to: u64,
}

/// A frame a client may send on `GET /v1/ws` (JSON text). Successful `heartbeat`, `signal` and
/// `webrtc.connected` answer nothing; `ping` answers `{"type":"pong"}`; a failure answers an `error` frame.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum WsClientMessage {
    /// Heartbeat a session, as `POST /v1/sessions/{id}/heartbeat`.
    #[serde(rename = "heartbeat")]
    Heartbeat { session_id: String },
    /// Relay a WebRTC signal to the other user of a call, as `POST /v1/calls/{id}/signals`.
    #[serde(rename = "signal")]
    Signal { call_id: String, signal: SignalBody },
    /// Report that the call's peer connection is up, and how long set-up took, as `POST /v1/calls/{id}/webrtc`.
    #[serde(rename = "webrtc.connected")]
    WebrtcConnected {
        call_id: String,
        #[schema(minimum = 0.0, maximum = 600000.0)]
        setup_ms: f64,
    },
    /// Liveness check.
    #[serde(rename = "ping")]
    Ping,
}

/// A frame the server sends on `GET /v1/ws` besides events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum WsReply {
    /// The answer to `ping`.
    #[serde(rename = "pong")]
    Pong,
    /// A client message failed.
    #[serde(rename = "error")]
    Error(WsError),
}

/// A failed client message: the HTTP status and problem members the equivalent request would have
/// answered (`title` is absent for unparsable frames), plus `field` or `end_reason` when they apply.
#[derive(Debug, Serialize, ToSchema)]
pub struct WsError {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub title: Option<String>,
    pub detail: String,
    /// The `session_id` or `call_id` of the failed message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub session_id: Option<String>,
    /// The message field that failed (a missing or invalid one).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// `410`: why the session (or call) ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end_reason: Option<EndReason>,
    /// `409`: the session's status, when it does not allow the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status_now: Option<Status>,
}

/// Extension: an event in its lean form, on `/v1/events?session=id` and
/// `/v1/ws?session=id`: the session's id and the fields of it that change
/// instead of the whole session, beside the event's own fields (`reason`,
/// `participant`, `match`, `signal`, `deadline`, … as in [`Event`]). For
/// subscribers that only react to what happened (a backend ending a job, a
/// dashboard counting) and would otherwise receive every session whole.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LeanEvent {
    pub id: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[schema(format = DateTime)]
    pub at: String,
    pub session_id: String,
    pub kind: String,
    pub status: Status,
    /// The session's earliest deadline; null when none (an ended session).
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    /// Set once the session ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end_reason: Option<EndReason>,
}

/// How a subscriber wants each event's session (`?session=` on `/v1/events`
/// and `/v1/ws`, extension).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionForm {
    /// The whole session (`Event`), the default.
    Full,
    /// Its id and the fields that change (`LeanEvent`).
    Id,
}

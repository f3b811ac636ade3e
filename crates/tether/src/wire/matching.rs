//! Matching and calls (contract section 6): profiles, pool entry, matches,
//! decisions, blocks, call joins and WebRTC signals.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_engine::{Session, Status};
use utoipa::{IntoParams, ToSchema};

/// A user's matching profile, as sent to `PUT /v1/profiles/{user_id}`. Unknown fields are ignored.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name":"Ada","age":31,"bio":"Engines and poetry","interests":["math","music"],"personality":[0.7,0.4,0.6,0.8,0.3]}))]
pub struct ProfileInput {
    /// Trimmed, 1–100 characters.
    #[schema(required = true, nullable = false, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(required = true, nullable = false, minimum = 18, maximum = 120)]
    pub age: Option<i64>,
    /// Trimmed, at most 2000 characters; blank means none.
    #[schema(max_length = 2000)]
    pub bio: Option<String>,
    /// At most 32, each trimmed to 1–64 characters; case-insensitive duplicates are dropped
    /// (the first spelling is kept). May be empty.
    #[schema(required = true, nullable = false, max_items = 32)]
    pub interests: Option<Vec<String>>,
    /// Five self-declared traits, each 0..1.
    #[schema(min_items = 5, max_items = 5)]
    pub personality: Option<Vec<f64>>,
}

impl From<ProfileInput> for tether_match::ProfileInput {
    fn from(p: ProfileInput) -> Self {
        tether_match::ProfileInput {
            name: p.name,
            age: p.age,
            bio: p.bio,
            interests: p.interests,
            personality: p.personality,
        }
    }
}

/// A stored matching profile.
#[derive(Serialize, ToSchema)]
pub struct Profile {
    pub user_id: String,
    pub name: String,
    pub age: u8,
    #[schema(required = true)]
    pub bio: Option<String>,
    /// In the user's spelling.
    pub interests: Vec<String>,
    /// Five traits, each 0..1, or null.
    #[schema(required = true, min_items = 5, max_items = 5)]
    pub personality: Option<[f64; 5]>,
}

impl From<&tether_match::Profile> for Profile {
    fn from(p: &tether_match::Profile) -> Self {
        Profile {
            user_id: p.user_id().to_string(),
            name: p.name().to_string(),
            age: p.age(),
            bio: p.bio().map(str::to_string),
            interests: p.interests().to_vec(),
            personality: p.personality(),
        }
    }
}

/// Enter the matching pool.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"min_age":25,"max_age":40,"preferred_interests":["music"],"personality_weight":0.3}))]
pub struct MatchingStart {
    /// 18–120.
    #[schema(required = true, nullable = false, minimum = 18, maximum = 120)]
    pub min_age: Option<i64>,
    /// 18–120, at least `min_age`.
    #[schema(required = true, nullable = false, minimum = 18, maximum = 120)]
    pub max_age: Option<i64>,
    /// Same rules as profile interests; overlap with a candidate's interests raises the score.
    #[schema(max_items = 32)]
    pub preferred_interests: Option<Vec<String>>,
    /// How much personality similarity weighs against interests overlap (default 0.3).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub personality_weight: Option<f64>,
    /// API key only (required then): the user who enters the pool.
    pub user_id: Option<String>,
}

/// The started `matching` session.
#[derive(Serialize, ToSchema)]
pub struct MatchingStarted {
    pub session_id: String,
    /// `active`.
    pub status: Status,
    /// Extension: the whole session (its `metadata.preferences` holds the validated preferences).
    pub session: Session,
}

/// The query of `GET /v1/matching/next`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// The user's `matching` session.
    #[param(required = true, nullable = false)]
    pub session_id: Option<String>,
}

/// The other user of a match.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Partner {
    pub user_id: String,
    /// Null only if the profile vanished.
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(required = true)]
    pub age: Option<u8>,
    #[schema(required = true)]
    pub bio: Option<String>,
    pub interests: Vec<String>,
}

/// A match: the call created for the two users. `match` of `match.found` and of `GET /v1/matching/next`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Match {
    pub call_id: String,
    pub partner: Partner,
    /// Interests overlap and personality similarity (weighted by `personality_weight`), rounded to 3 decimals.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub compatibility_score: f64,
}

/// A mutual match: `match` of `match.mutual` (each user receives the other one).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MutualMatch {
    pub call_id: String,
    /// The other user.
    pub user_id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub matched_at: String,
}

/// The answer of `GET /v1/matching/next`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"match_found":true,"match":{"call_id":"01936b80-0000-7000-8000-000000000001","partner":{"user_id":"u2","name":"Grace","age":33,"bio":null,"interests":["music"]},"compatibility_score":0.82}}))]
pub struct NextMatch {
    /// True while the user's call is waiting or active.
    pub match_found: bool,
    /// With `match_found: true`.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub found: Option<Match>,
    /// With `match_found: false`: the call a skip/continue decision is owed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub awaiting_decision: Option<String>,
}

/// Which of the call's users acts (the body, or the query of `GET /v1/calls/{id}/signals`).
/// The body may be empty for a user token.
#[derive(Deserialize, Default, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallActor {
    /// API key only (required then): one of the call's two users.
    pub user_id: Option<String>,
}

/// The answer of joining a call.
#[derive(Serialize, ToSchema)]
pub struct CallJoin {
    /// True once both users joined (the call is `active`).
    pub timer_started: bool,
    /// When the call ends by `max_duration`; null until the timer started.
    #[schema(format = DateTime, required = true)]
    pub ends_at: Option<String>,
    /// Extension: the call session after the join.
    pub session: Session,
}

/// WebRTC signal types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SignalType {
    #[serde(rename = "offer")]
    Offer,
    #[serde(rename = "answer")]
    Answer,
    #[serde(rename = "ice-candidate")]
    IceCandidate,
}

impl SignalType {
    pub const ALL: [SignalType; 3] = [SignalType::Offer, SignalType::Answer, SignalType::IceCandidate];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::Offer => "offer",
            SignalType::Answer => "answer",
            SignalType::IceCandidate => "ice-candidate",
        }
    }

    pub fn parse(s: &str) -> Option<SignalType> {
        SignalType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A WebRTC signal to relay to the other user of a call (the body of `POST /v1/calls/{id}/signals`
/// and `signal` of the WebSocket `signal` message). Unknown fields are refused.
///
/// `type` and `data` are checked by the handler rather than by serde, so that their errors name
/// `type` and `data` with the same messages on both transports.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Signal, example = json!({"type":"offer","data":{"sdp":"v=0…"}}))]
pub struct SignalBody {
    #[serde(rename = "type")]
    #[schema(value_type = SignalType)]
    pub kind: String,
    /// The SDP or ICE candidate as the browser produced it: a JSON object of at most 32 KiB.
    #[schema(value_type = Object, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// API key only (required then): which of the call's users sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The answer of sending a signal.
#[derive(Serialize, ToSchema)]
pub struct SignalAccepted {
    pub accepted: bool,
}

/// A relayed signal.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceivedSignal {
    #[serde(rename = "type")]
    pub kind: SignalType,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// The sender's user id.
    pub from: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// The signals that waited for the caller, oldest first; this read removes them. Each direction
/// queues at most 256 undrained signals (the oldest is dropped beyond that); signals are not durable.
#[derive(Serialize, ToSchema)]
pub struct SignalList {
    pub signals: Vec<ReceivedSignal>,
}

/// WebRTC set-up report.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebrtcSetup {
    /// Milliseconds the peer connection took to come up, 0–600000.
    #[schema(minimum = 0.0, maximum = 600000.0)]
    pub setup_ms: f64,
    /// API key only (required then): which of the call's users reports.
    pub user_id: Option<String>,
}

/// `skip` records a pass; `continue` on both sides is a mutual match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Skip,
    Continue,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Skip => "skip",
            DecisionKind::Continue => "continue",
        }
    }
}

/// The decision after a call that became active.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Decision, example = json!({"call_id":"01936b80-0000-7000-8000-000000000001","decision":"continue","personality_rating":[0.6,0.5,0.7,0.9,0.2]}))]
pub struct DecisionBody {
    pub call_id: String,
    /// Checked by the handler, so that any other word answers 422 naming `decision` with the accepted ones.
    #[schema(value_type = DecisionKind)]
    pub decision: String,
    /// The caller's rating of the partner's five traits, each 0..1 (blended into the partner's personality).
    #[schema(min_items = 5, max_items = 5)]
    pub personality_rating: Option<Vec<f64>>,
    /// API key only (required then): which of the call's users decides.
    pub user_id: Option<String>,
}

/// The answer of a decision.
#[derive(Serialize, ToSchema)]
pub struct DecisionResult {
    pub call_id: String,
    pub decision: DecisionKind,
    /// True when this decision made the match mutual (both `continue`; `match.mutual` went to both).
    /// Repeating the same decision answers `200` with `mutual: false`.
    pub mutual: bool,
}

/// The query of `GET /v1/matches`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatchesQuery {
    /// API key only (required then): whose matches.
    pub user_id: Option<String>,
}

/// One mutual match.
#[derive(Serialize, ToSchema)]
pub struct MatchEntry {
    /// The other user.
    pub user_id: String,
    /// The other user's profile name (null without a profile).
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub matched_at: String,
}

/// The user's mutual matches.
#[derive(Serialize, ToSchema)]
pub struct Matches {
    pub matches: Vec<MatchEntry>,
}

/// Block a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// The user never to be paired with the blocker again (for good).
    pub user_id: String,
    /// API key only (required then): who blocks.
    pub by: Option<String>,
}

/// The recorded block.
#[derive(Serialize, ToSchema)]
pub struct Blocked {
    pub blocked: String,
    pub by: String,
}

//! Sessions, participants and invitations (contract section 4): the bodies
//! the session endpoints read and answer. The session itself is the engine's
//! [`tether_engine::Session`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_engine::Session;
use utoipa::{IntoParams, ToSchema};

/// Start a session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind":"interview","metadata":{"room":"blue"}}))]
pub struct CreateSession {
    /// The kind: a `[kinds.NAME]` table or a built-in kind. Unknown kinds answer 422 naming `kind`.
    #[schema(min_length = 1)]
    pub kind: String,
    /// A JSON object kept with the session (null reads as `{}`).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// A live session the caller may see; when it ends, this one ends `parent_ended` if its kind says `on_parent_end = "end"`.
    pub parent_id: Option<String>,
    /// API key only (required then): the user the session is for. A user token may only name itself.
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: Option<String>,
    /// `"takeover"`: when `per_user = "reject"` and a live session exists, end it `taken_over` and start anew.
    #[schema(pattern = "^takeover$")]
    pub on_conflict: Option<String>,
    /// Extension: the owner's display name as a participant (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// A started session and the ids of the sessions it ended `superseded` (`per_user = "replace"`).
#[derive(Serialize, ToSchema)]
pub struct CreatedSession {
    pub session: Session,
    pub superseded: Vec<String>,
}

/// Extension: the body of `POST /v1/sessions/batch`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessions {
    /// 1 to 1000 sessions, each exactly as the body of `POST /v1/sessions`.
    #[schema(min_items = 1, max_items = 1000)]
    pub sessions: Vec<CreateSession>,
}

/// One session of a batch: started (`201`, with `session` and `superseded`)
/// or refused as `POST /v1/sessions` would have refused it (`problem`).
#[derive(Serialize, ToSchema)]
pub struct BatchItem {
    /// `201`, or the status of the problem (`409` for a `reject` conflict…).
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub session: Option<Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub superseded: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::problem::Problem>, nullable = false)]
    pub problem: Option<Value>,
}

/// The answer of `POST /v1/sessions/batch`: one result per session asked for, in order.
#[derive(Serialize, ToSchema)]
pub struct SessionsCreated {
    pub results: Vec<BatchItem>,
}

/// The query of `GET /v1/sessions`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only these statuses: one of `waiting`, `active`, `completing`, `ended`, a comma-separated list of them,
    /// or `live` (waiting, active and completing).
    pub status: Option<String>,
    /// Only sessions of this owner.
    pub user_id: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of sessions, in ascending id order (UUIDv7 ids: creation order).
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// End a session. The body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndSession {
    /// Free text kept as `end_detail` (at most 500 characters). With an API key, `"admin"` ends with reason `admin`.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// Revive a session. The body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviveSession {
    /// `"takeover"`: when `per_user = "reject"` and the user holds another live session of the kind,
    /// end that one `taken_over` and revive this one.
    #[schema(pattern = "^takeover$")]
    pub on_conflict: Option<String>,
}

/// The beacon body: the bearer token, since `navigator.sendBeacon` cannot set headers.
#[derive(Deserialize, ToSchema)]
pub struct BeaconBody {
    pub token: String,
}

/// Join a session as a participant. The body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinSession {
    /// API key only (required then): the user who joins. A user token may only name itself.
    pub user_id: Option<String>,
    /// Display name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// Create an invitation. The body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// A duration such as `30m` or `1h`: the invitation expires this long after now. Without it the
    /// kind's `invite_ttl` counts from the session's last activity (and never expires when that is off).
    #[schema(example = "1h")]
    pub ttl: Option<String>,
}

/// An invitation.
#[derive(Serialize, ToSchema)]
pub struct Invite {
    /// Pass to `POST /v1/invites/{token}/join`.
    pub token: String,
    /// When it stops working as things stand now (it moves with activity without an explicit `ttl`),
    /// or null when it never expires.
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    /// Extension: the session it joins.
    pub session_id: String,
}

/// Join through an invitation. The body may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteJoin {
    /// Display name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// The joined session, the guest's participant id and a user token scoped to that session.
#[derive(Serialize, ToSchema)]
pub struct InviteJoined {
    pub session: Session,
    /// The guest's user id (`guest_…`).
    pub participant_id: String,
    /// A user JWT (`sub` = participant_id, `sid` = the session, valid 24 h) for this session's endpoints and events.
    pub token: String,
}

//! The OpenAPI 3.1 description served at `/openapi.json`.
//!
//! Everything here is documentation: the schemas are mirror structs of what
//! the handlers read and write (the handlers build their JSON with `json!`,
//! so the mirrors are the single typed statement of the wire format), and the
//! operations are `#[utoipa::path]` attributes on empty functions in [`ops`].
//! `tests/openapi.rs` parses the routers' `.route(...)` calls and fails when
//! a route is missing here (or documented here without a route), so the
//! description cannot drift from the router.

#![allow(dead_code)]

use std::collections::BTreeMap;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

/// The document as JSON (`"openapi": "3.1.0"`).
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes")
}

const API_DESCRIPTION: &str = r#"Tether is a session lifecycle and real-time matching server: sessions end at
their deadline, with a reason, pushed to browsers and backends.

## Authentication
`Authorization: Bearer <token>` on every `/v1` request, where the token is either
- an **API key** from `[auth].api_keys` — an app backend or operator: acts for any user
  (`user_id` in bodies), sees every session and event, and may call `/v1/admin/*`; or
- a **user token** — a JWT signed HS256 with `[auth].jwt_secret`, `sub` = user id, `exp`
  required. It sees and changes only sessions its user owns, is a member of (both users of a
  call) or participates in; any other session answers `404`, exactly like a missing one.
  Tokens minted by `POST /v1/invites/{token}/join` carry a `sid` claim limiting them to one session.

Browsers cannot set headers on `EventSource` and `WebSocket`: `GET /v1/events` and `GET /v1/ws`
also accept `?token=`. `navigator.sendBeacon` cannot either: `POST /v1/sessions/{id}/beacon`
carries the token in its body. Missing, invalid or expired token: `401`. Valid token,
forbidden action: `403`.

## Errors
Every error is `application/problem+json` (RFC 9457), see the `Problem` schema: `type`
(`https://tether.dev/problems/<slug of title>`), `title`, `status`, `detail`, plus extra members
such as `field` (the request field that failed: malformed input answers `400`, a wrong type,
a missing field or a failed check `422`, always naming the field), `blocking_session`
(`409` from `POST /v1/sessions`), `end_reason` and `session` (`410` for an ended session),
`status_now` (`409` for an action the session's status does not allow) and `call_status`
(`409` from a decision on a live call). Request bodies are
limited to 64 KiB (`413`). A method a path does not list answers `405`.

## Extensions beyond the contract
- `GET /v1/kinds` lists the kinds in force (timeouts in ms) so clients derive heartbeat intervals.
- `POST /v1/sessions` takes `name`, the owner's display name as a participant.
- Session objects carry `end_detail` (the free-text `reason` given to `POST /end`), `members`
  (users besides owner and participants who may see the session: both users of a call before
  they join) and `completing_at` (when the session entered `completing`); each is omitted when empty.
- `POST /v1/sessions/{id}/end` with an API key and `{"reason":"admin"}` ends with reason `admin`.
- `POST /v1/sessions/{id}/invites` answers `session_id` too.
- `GET /v1/events` also takes `?last_event_id=` (clients that cannot set `Last-Event-ID`).
- `GET /v1/ws` takes client messages `heartbeat`, `signal`, `webrtc.connected` and `ping`
  (schema `WsClientMessage`); it answers `pong`, and an `error` frame for a failed message (`WsReply`).
- `GET /v1/profiles/{user_id}` reads a profile; `POST /v1/blocks` blocks a user from ever being
  paired with the caller again; `POST /v1/calls/{id}/webrtc` records how long WebRTC set-up took.
- Matching and call endpoints take `user_id` (in the body, or the query for `GET` ones) when called
  with an API key, naming the user who acts; `POST /v1/matching/start` and `POST /v1/calls/{id}/join`
  also answer the session; `match.mutual` carries `match: {call_id, user_id, name, matched_at}`.
- `GET /v1/admin/health` also reports `matching.pool`, `store` and `expiry_lateness_p99_le_seconds`;
  `POST /v1/admin/cleanup` also reports `expired_invites`.
"#;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tether", description = API_DESCRIPTION),
    servers((url = "http://127.0.0.1:7878", description = "the default `tether serve` listen address")),
    paths(
        ops::create_session,
        ops::list_sessions,
        ops::get_session,
        ops::heartbeat_session,
        ops::end_session,
        ops::complete_session,
        ops::beacon_session,
        ops::join_session,
        ops::participant_heartbeat,
        ops::leave_session,
        ops::create_invite,
        ops::join_invite,
        ops::events_sse,
        ops::events_ws,
        ops::list_kinds,
        ops::admin_health,
        ops::admin_cleanup_preview,
        ops::admin_cleanup,
        ops::demo_token,
        ops::put_profile,
        ops::get_profile,
        ops::matching_start,
        ops::matching_next,
        ops::matching_decision,
        ops::list_matches,
        ops::create_block,
        ops::get_call,
        ops::join_call,
        ops::end_call,
        ops::send_signal,
        ops::drain_signals,
        ops::report_webrtc,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi_json,
        ops::root,
        ops::admin_page,
        ops::demo_page,
        ops::sdk_js,
    ),
    components(
        schemas(
            Problem, Session, Participant, Status, EndReason, EventType, Event, WsClientMessage, WsReply,
            CreateSession, CreatedSession, SessionList, EndSession, BeaconBody, JoinSession, CreateInvite, Invite,
            InviteJoin, InviteJoined, KindInfo, Kinds, PerUser, Presence, OnParentEnd, HealthReport, CleanupPreview,
            CleanupResult, DemoTokenRequest, DemoToken, Profile, MatchingStart, MatchingStarted, NextMatch, Match,
            Partner, MutualMatch, EventMatch, CallActor, CallJoin, Signal, SignalType, SignalAccepted, ReceivedSignal,
            SignalList, WebrtcSetup, Decision, DecisionKind, DecisionResult, Matches, MatchEntry, Block, Blocked,
            ProfileInput,
        ),
        responses(BadRequest, Unauthorized, MethodNotAllowed, TooLarge, Unavailable),
    ),
    modifiers(&Security),
    tags(
        (name = "sessions", description = "Session lifecycle (contract section 4)"),
        (name = "participants", description = "Joining, participant heartbeats and leaving"),
        (name = "invites", description = "Invitations: join one session without an account"),
        (name = "events", description = "Server-Sent Events and the WebSocket (contract section 5)"),
        (name = "matching", description = "Profiles, the matching pool, decisions and matches (contract section 6)"),
        (name = "calls", description = "Call sessions created by matching, and WebRTC signaling"),
        (name = "admin", description = "Health, cleanup and kinds (API keys only for /v1/admin)"),
        (name = "operations", description = "Probes, metrics, this document and the embedded web pages"),
        (name = "demo", description = "Demo mode only (`tether serve --demo`)"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or HS256 JWT")
                    .description(Some(
                        "`Authorization: Bearer <token>`: an API key from `[auth].api_keys` (backend/admin: any user's \
                         sessions, `user_id` in bodies, /v1/admin/*), or a user JWT signed HS256 with `[auth].jwt_secret` \
                         (`sub` = user id, `exp` required; an optional `sid` claim limits it to one session). \
                         Missing/invalid/expired: 401; forbidden action: 403.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same API key or user JWT as `?token=` in the query string; accepted only by GET /v1/events \
                 and GET /v1/ws (browsers cannot set headers on EventSource and WebSocket).",
            ))),
        );
    }
}

// ---------------------------------------------------------------------------
// Errors

/// An error, as `application/problem+json` (RFC 9457). Every error the server
/// answers has this shape; members beyond the four standard ones depend on the error.
#[derive(ToSchema)]
#[schema(example = json!({"type":"https://tether.dev/problems/invalid-field","title":"Invalid field","status":422,"detail":"kind: unknown kind \"intervew\"","field":"kind"}))]
pub struct Problem {
    /// `https://tether.dev/problems/{slug}`, the slug being the lower-cased title with dashes:
    /// `bad-request`, `invalid-field`, `unauthorized`, `forbidden`, `not-found`, `conflict`,
    /// `session-ended`, `invitation-expired`, `method-not-allowed`, `body-too-large`, `websocket-upgrade-required`,
    /// `unavailable`, `internal-error`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub problem_type: String,
    /// A short summary of the kind of problem, e.g. "Invalid field", "Session ended".
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for humans; names the field for input errors.
    pub detail: String,
    /// Input errors (422, some 400): the request field, query parameter or header that failed
    /// (a JSON path such as `metadata` or `interests[2]`).
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// `409` from `POST /v1/sessions` (`per_user = "reject"`): the live session in the way.
    /// Retry with `"on_conflict": "takeover"` to end it `taken_over`.
    #[schema(nullable = false)]
    pub blocking_session: Option<Session>,
    /// `410`: the reason the session (or call) ended.
    #[schema(nullable = false)]
    pub end_reason: Option<EndReason>,
    /// `410`: the ended session as it is now.
    #[schema(nullable = false)]
    pub session: Option<Session>,
    /// `409` for an action the session's status does not allow (e.g. completing a `waiting` session): its status now.
    #[schema(nullable = false)]
    pub status_now: Option<Status>,
    /// `409` from `POST /v1/matching/decision` while the call is still live: the call's status.
    #[schema(nullable = false)]
    pub call_status: Option<Status>,
}

/// Malformed request: the body is not a JSON object.
#[derive(ToResponse)]
#[response(
    description = "Malformed request: the body is not valid JSON, not a JSON object, or not UTF-8; `detail` says where.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/bad-request","title":"Bad request","status":400,"detail":"malformed JSON: EOF while parsing an object at line 1 column 9"})
)]
pub struct BadRequest(Problem);

/// No valid token.
#[derive(ToResponse)]
#[response(
    description = "Missing, invalid or expired token.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/unauthorized","title":"Unauthorized","status":401,"detail":"the token has expired"})
)]
pub struct Unauthorized(Problem);

/// The path exists but not with this method.
#[derive(ToResponse)]
#[response(
    description = "Answered for any method this path does not list (with the listed ones in `detail`'s route).",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/method-not-allowed","title":"Method not allowed","status":405,"detail":"PATCH is not allowed on /v1/sessions/{id}"})
)]
pub struct MethodNotAllowed(Problem);

/// The body is over the limit.
#[derive(ToResponse)]
#[response(
    description = "The request body is larger than 64 KiB.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/body-too-large","title":"Body too large","status":413,"detail":"request bodies are limited to 65536 bytes"})
)]
pub struct TooLarge(Problem);

/// The store could not make the change durable.
#[derive(ToResponse)]
#[response(
    description = "The store could not be reached or could not make the change durable; nothing was acknowledged. Retry.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/unavailable","title":"Unavailable","status":503,"detail":"the journal is closed"})
)]
pub struct Unavailable(Problem);

// ---------------------------------------------------------------------------
// Sessions

/// Where a session is in its lifecycle: `waiting` → `active` → `completing` → `ended`;
/// any live state may go straight to `ended`.
/// `waiting`: the kind's `quorum` is not reached yet. `active`: running (`max_duration` counts
/// from here). `completing`: wrapping up (`completing_timeout` counts from here). `ended`: final.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Active,
    Completing,
    Ended,
}

/// Why a session ended (exactly one reason per end):
/// `ended` — by its user or backend (`POST /end`); `closed` — the browser's unload beacon;
/// `superseded` — a newer session of a `per_user = "replace"` kind replaced it;
/// `taken_over` — a newer session took over with `"on_conflict": "takeover"` (`per_user = "reject"`);
/// `idle_timeout` — no heartbeat or activity for the kind's `idle_timeout`;
/// `max_duration` — `max_duration` after activation; `waiting_timeout` — quorum not reached in time;
/// `completing_timeout` — in `completing` too long; `disconnected` — the owner's last WebSocket stayed
/// closed for `disconnect_grace`; `parent_ended` — its parent ended (`on_parent_end = "end"`);
/// `partner_left` — a call whose partner's matching session ended;
/// `admin` — an operator (API key with reason "admin", or cleanup).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Ended,
    Closed,
    Superseded,
    TakenOver,
    IdleTimeout,
    MaxDuration,
    WaitingTimeout,
    CompletingTimeout,
    Disconnected,
    ParentEnded,
    PartnerLeft,
    Admin,
}

/// A participant of a session. The owner is the first participant (it counts toward `quorum`),
/// except for calls, where each user becomes a participant by `POST /v1/calls/{id}/join`.
#[derive(ToSchema)]
pub struct Participant {
    /// The user id (for invite guests: the `participant_id` the join answered).
    pub id: String,
    /// Display name, if one was given.
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub joined_at: String,
    /// The participant's last heartbeat or activity.
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    /// When it left (or was marked left after `participant_idle_timeout`); null while present.
    #[schema(format = DateTime, required = true)]
    pub left_at: Option<String>,
}

/// A session. Timestamps are RFC 3339 UTC with milliseconds; ids are opaque strings (UUIDv7).
#[derive(ToSchema)]
#[schema(example = json!({"id":"01936b7e-8a3c-7d41-9a53-1c5e2f0b4d21","kind":"interview","user_id":"u1","status":"active",
    "created_at":"2026-11-22T10:00:00.000Z","activated_at":"2026-11-22T10:00:00.000Z","last_seen_at":"2026-11-22T10:00:30.000Z",
    "expires_at":"2026-11-22T10:05:30.000Z","ended_at":null,"end_reason":null,"parent_id":null,"metadata":{},
    "participants":[{"id":"u1","name":null,"joined_at":"2026-11-22T10:00:00.000Z","last_seen_at":"2026-11-22T10:00:30.000Z","left_at":null}]}))]
pub struct Session {
    pub id: String,
    /// The session kind (a `[kinds.NAME]` table, or a built-in kind: `default`, `matching`, `call`).
    pub kind: String,
    /// The owner. For a call: the user who waited longer.
    pub user_id: String,
    pub status: Status,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it became `active` (quorum reached); null while `waiting`.
    #[schema(format = DateTime, required = true)]
    pub activated_at: Option<String>,
    /// The last activity that keeps the session alive (the owner's, or anyone's for `presence = "any"`).
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    /// The earliest deadline now in force (idle, max, waiting, completing), or null.
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub ended_at: Option<String>,
    /// Null while live.
    #[schema(required = true)]
    pub end_reason: Option<EndReason>,
    #[schema(required = true)]
    pub parent_id: Option<String>,
    /// Free-form JSON object given at creation (`{}` when none).
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub participants: Vec<Participant>,
    /// Extension: users besides the owner and participants who may see the session
    /// (both users of a call before they join). Omitted when empty.
    #[serde(default)]
    pub members: Vec<String>,
    /// Extension: when the session entered `completing`. Omitted when it never did.
    #[schema(format = DateTime, nullable = false)]
    pub completing_at: Option<String>,
    /// Extension: the free-text `reason` given to `POST /v1/sessions/{id}/end`. Omitted when none.
    #[schema(nullable = false)]
    pub end_detail: Option<String>,
}

/// Start a session.
#[derive(ToSchema)]
#[schema(example = json!({"kind":"interview","metadata":{"room":"blue"}}))]
pub struct CreateSession {
    /// The kind: a `[kinds.NAME]` table or a built-in kind. Unknown kinds answer 422 naming `kind`.
    pub kind: String,
    /// A JSON object kept with the session (null reads as `{}`).
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// A live session the caller may see; when it ends, this one ends `parent_ended` if its kind says `on_parent_end = "end"`.
    pub parent_id: Option<String>,
    /// API key only (required then): the user the session is for. A user token may only name itself.
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: Option<String>,
    /// `"takeover"`: when `per_user = "reject"` and a live session exists, end it `taken_over` and start anew.
    #[schema(value_type = Option<String>, pattern = "^takeover$")]
    pub on_conflict: Option<String>,
    /// Extension: the owner's display name as a participant (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// A started session and the ids of the sessions it ended `superseded` (`per_user = "replace"`).
#[derive(ToSchema)]
pub struct CreatedSession {
    pub session: Session,
    pub superseded: Vec<String>,
}

/// One page of sessions, in ascending id order (UUIDv7 ids: creation order).
#[derive(ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// End a session. The body may be empty.
#[derive(ToSchema)]
pub struct EndSession {
    /// Free text kept as `end_detail` (at most 500 characters). With an API key, `"admin"` ends with reason `admin`.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// The beacon body: the bearer token, since `navigator.sendBeacon` cannot set headers.
#[derive(ToSchema)]
pub struct BeaconBody {
    pub token: String,
}

/// Join a session as a participant. The body may be empty.
#[derive(ToSchema)]
pub struct JoinSession {
    /// API key only (required then): the user who joins. A user token may only name itself.
    pub user_id: Option<String>,
    /// Display name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// Create an invitation. The body may be empty.
#[derive(ToSchema)]
pub struct CreateInvite {
    /// A duration such as `30m` or `1h`: the invitation expires this long after now. Without it the
    /// kind's `invite_ttl` counts from the session's last activity (and never expires when that is off).
    #[schema(example = "1h")]
    pub ttl: Option<String>,
}

/// An invitation.
#[derive(ToSchema)]
pub struct Invite {
    /// Pass to `POST /v1/invites/{token}/join`.
    pub token: String,
    /// When it stops working as things stand now (it moves with activity without an explicit `ttl`), or null when it never expires.
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    /// Extension: the session it joins.
    pub session_id: String,
}

/// Join through an invitation. The body may be empty.
#[derive(ToSchema)]
pub struct InviteJoin {
    /// Display name (at most 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// The joined session, the guest's participant id and a user token scoped to that session.
#[derive(ToSchema)]
pub struct InviteJoined {
    pub session: Session,
    /// The guest's user id (`guest_…`).
    pub participant_id: String,
    /// A user JWT (`sub` = participant_id, `sid` = the session, valid 24 h) for this session's endpoints and events.
    pub token: String,
}

// ---------------------------------------------------------------------------
// Events

/// Event types. `session.*` follow the status machine; `participant.*` carry `participant`;
/// `match.found` (both users, when paired) carries `match`; `match.mutual` (both users, when both
/// decided `continue`); `call.signal` (to the other participant only) carries `signal`.
#[derive(ToSchema)]
pub enum EventType {
    #[serde(rename = "session.started")]
    SessionStarted,
    #[serde(rename = "session.activated")]
    SessionActivated,
    #[serde(rename = "session.completing")]
    SessionCompleting,
    #[serde(rename = "session.ended")]
    SessionEnded,
    #[serde(rename = "participant.joined")]
    ParticipantJoined,
    #[serde(rename = "participant.left")]
    ParticipantLeft,
    #[serde(rename = "match.found")]
    MatchFound,
    #[serde(rename = "match.mutual")]
    MatchMutual,
    #[serde(rename = "call.signal")]
    CallSignal,
    /// Extension: `{"type":"stream.gap","from","to"}` — this subscriber fell further behind
    /// than the resume log reaches and missed the events with ids `from..=to`.
    #[serde(rename = "stream.gap")]
    StreamGap,
}

/// An event: the `data:` of a Server-Sent Event (whose `id:` is `id` and `event:` is `type`)
/// and a WebSocket text frame. A user receives events of sessions it owns, is a member of or
/// participates in; an API key receives all (`?kind=` filters). Deadline-driven ends are
/// published within 100 ms of the deadline.
#[derive(ToSchema)]
#[schema(example = json!({"id":1099511627777u64,"type":"session.ended","at":"2026-11-22T10:05:30.012Z","reason":"idle_timeout",
    "session":{"id":"01936b7e-8a3c-7d41-9a53-1c5e2f0b4d21","kind":"interview","user_id":"u1","status":"ended",
    "created_at":"2026-11-22T10:00:00.000Z","activated_at":"2026-11-22T10:00:00.000Z","last_seen_at":"2026-11-22T10:00:30.000Z",
    "expires_at":null,"ended_at":"2026-11-22T10:05:30.012Z","end_reason":"idle_timeout","parent_id":null,"metadata":{},"participants":[]}}))]
pub struct Event {
    /// The sequence number: monotonically increasing, across restarts too. The SSE `id:`; resume with `Last-Event-ID`.
    pub id: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Server time of the change.
    #[schema(format = DateTime)]
    pub at: String,
    /// The session after the change; for `match.*` and `call.signal`, the call session.
    pub session: Session,
    /// `session.ended` only.
    #[schema(nullable = false)]
    pub reason: Option<EndReason>,
    /// `participant.joined` and `participant.left` only: the participant concerned.
    #[schema(nullable = false)]
    pub participant: Option<Participant>,
    /// `match.found`: the `Match` (as in `GET /v1/matching/next`); `match.mutual`: the `MutualMatch`
    /// (the other user, to each user).
    #[serde(rename = "match")]
    #[schema(nullable = false)]
    pub found: Option<EventMatch>,
    /// `call.signal` only.
    #[schema(nullable = false)]
    pub signal: Option<ReceivedSignal>,
}

/// A frame a client may send on `GET /v1/ws` (JSON text). Successful `heartbeat`, `signal` and
/// `webrtc.connected` answer nothing; `ping` answers `{"type":"pong"}`; a failure answers an `error` frame.
#[derive(ToSchema)]
#[serde(tag = "type")]
pub enum WsClientMessage {
    /// Heartbeat a session, as `POST /v1/sessions/{id}/heartbeat`.
    #[serde(rename = "heartbeat")]
    Heartbeat { session_id: String },
    /// Relay a WebRTC signal to the other user of a call, as `POST /v1/calls/{id}/signals`.
    #[serde(rename = "signal")]
    Signal { call_id: String, signal: Signal },
    /// Report that the call's peer connection is up, and how long set-up took, as `POST /v1/calls/{id}/webrtc`.
    #[serde(rename = "webrtc.connected")]
    WebrtcConnected {
        call_id: String,
        #[schema(minimum = 0.0)]
        setup_ms: f64,
    },
    /// Liveness check.
    #[serde(rename = "ping")]
    Ping,
}

/// A frame the server sends on `GET /v1/ws` besides events.
#[derive(ToSchema)]
#[serde(tag = "type")]
pub enum WsReply {
    /// The answer to `ping`.
    #[serde(rename = "pong")]
    Pong,
    /// A client message failed: the HTTP status and problem members the equivalent request would
    /// have answered (`title` is absent for unparsable frames), plus extras such as `field` or `end_reason`.
    #[serde(rename = "error")]
    Error {
        status: u16,
        #[schema(nullable = false)]
        title: Option<String>,
        detail: String,
        /// The `session_id` or `call_id` of the failed message.
        #[schema(nullable = false)]
        session_id: Option<String>,
        #[schema(nullable = false)]
        field: Option<String>,
        #[schema(nullable = false)]
        end_reason: Option<EndReason>,
    },
}

// ---------------------------------------------------------------------------
// Kinds and operations

/// What starting a session does when its user already holds a live one of the same kind:
/// `replace` (the old one ends `superseded`), `reject` (`409` with `blocking_session`), `allow`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PerUser {
    Replace,
    Reject,
    Allow,
}

/// Whose activity keeps a session alive: the owner's, or any participant's.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Owner,
    Any,
}

/// What a child session does when its parent ends: `end` (reason `parent_ended`) or `keep`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnParentEnd {
    End,
    Keep,
}

/// A kind in force. Durations in milliseconds; null means off.
#[derive(ToSchema)]
pub struct KindInfo {
    pub name: String,
    #[schema(required = true)]
    pub idle_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub max_duration_ms: Option<u64>,
    #[schema(required = true)]
    pub waiting_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub completing_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub disconnect_grace_ms: Option<u64>,
    #[schema(required = true)]
    pub participant_idle_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub invite_ttl_ms: Option<u64>,
    /// Ended sessions are kept this long, then purged.
    pub retention_ms: u64,
    /// `matching` only: how long a user may owe a decision before it returns to the pool.
    #[schema(required = true)]
    pub decision_timeout_ms: Option<u64>,
    pub per_user: PerUser,
    pub quorum: u32,
    pub presence: Presence,
    pub on_parent_end: OnParentEnd,
}

/// Extension: the kinds in force.
#[derive(ToSchema)]
pub struct Kinds {
    pub kinds: Vec<KindInfo>,
}

/// `healthy` when `problems` is empty.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
}

/// Live session counts.
#[derive(ToSchema)]
pub struct SessionCounts {
    /// Live sessions.
    pub total: u64,
    /// Live sessions by status.
    pub by_status: BTreeMap<String, u64>,
    /// Live sessions by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Live sessions past a deadline by more than 100 ms (should always be 0).
    pub overdue: u64,
}

/// Matching state.
#[derive(ToSchema)]
pub struct MatchingHealth {
    /// Users waiting in the matching pool.
    pub pool: u64,
}

/// A detected problem.
#[derive(ToSchema)]
pub struct HealthProblem {
    /// `overdue_sessions`, `orphan_sessions` or `expiry_lateness`.
    pub code: String,
    pub detail: String,
    /// Up to 20 affected sessions: `{"id","reason","deadline"}` for overdue ones, ids for orphans.
    #[schema(nullable = false)]
    pub sessions: Option<Vec<serde_json::Value>>,
}

/// The health report.
#[derive(ToSchema)]
pub struct HealthReport {
    pub health: Health,
    pub sessions: SessionCounts,
    /// Extension.
    pub matching: MatchingHealth,
    /// Extension: the store in use, e.g. `sqlite://tether.db (WAL, synchronous=FULL)`.
    pub store: String,
    /// Extension: upper bound of the histogram bucket holding the p99 lateness of deadline-driven ends (s); null before any.
    #[schema(required = true)]
    pub expiry_lateness_p99_le_seconds: Option<f64>,
    pub problems: Vec<HealthProblem>,
    /// What to do about the problems.
    pub recommendations: Vec<String>,
}

/// A live session past its deadline, and the reason it would end with.
#[derive(ToSchema)]
pub struct WouldEnd {
    pub id: String,
    pub reason: EndReason,
}

/// Cleanup dry run: what `POST /v1/admin/cleanup` would do now. Changes nothing.
#[derive(ToSchema)]
pub struct CleanupPreview {
    pub would_end: Vec<WouldEnd>,
    /// Ids of live sessions whose parent has ended (they would end `parent_ended`).
    pub orphans: Vec<String>,
    /// Invitations that no longer work and would be removed.
    pub expired_invites: u64,
    /// Ended sessions past their kind's `retention` that would be purged.
    pub purgeable: u64,
}

/// What cleanup did.
#[derive(ToSchema)]
pub struct CleanupResult {
    /// Sessions ended because a deadline had passed.
    pub ended: u64,
    /// Orphans ended `parent_ended`.
    pub orphans: u64,
    /// Ended sessions purged.
    pub purged: u64,
    /// Extension: dead invitations removed.
    pub expired_invites: u64,
}

/// Ask for a demo user token.
#[derive(ToSchema)]
pub struct DemoTokenRequest {
    /// 1–64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub user_id: String,
}

/// A user token valid 12 hours.
#[derive(ToSchema)]
pub struct DemoToken {
    pub token: String,
    pub user_id: String,
}

// ---------------------------------------------------------------------------
// Matching and calls

/// A user's matching profile, as sent to `PUT /v1/profiles/{user_id}`. Unknown fields are ignored.
#[derive(ToSchema)]
#[schema(example = json!({"name":"Ada","age":31,"bio":"Engines and poetry","interests":["math","music"],"personality":[0.7,0.4,0.6,0.8,0.3]}))]
pub struct ProfileInput {
    /// Trimmed, 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(minimum = 18, maximum = 120)]
    pub age: u32,
    /// Trimmed, at most 2000 characters; blank means none.
    #[schema(max_length = 2000)]
    pub bio: Option<String>,
    /// At most 32, each trimmed to 1–64 characters; case-insensitive duplicates are dropped
    /// (the first spelling is kept). May be empty.
    #[schema(max_items = 32)]
    pub interests: Vec<String>,
    /// Five self-declared traits, each 0..1.
    #[schema(min_items = 5, max_items = 5)]
    pub personality: Option<Vec<f64>>,
}

/// A stored matching profile.
#[derive(ToSchema)]
pub struct Profile {
    pub user_id: String,
    pub name: String,
    pub age: u32,
    #[schema(required = true)]
    pub bio: Option<String>,
    /// In the user's spelling.
    pub interests: Vec<String>,
    /// Five traits, each 0..1, or null.
    #[schema(required = true, min_items = 5, max_items = 5)]
    pub personality: Option<Vec<f64>>,
}

/// Enter the matching pool.
#[derive(ToSchema)]
#[schema(example = json!({"min_age":25,"max_age":40,"preferred_interests":["music"],"personality_weight":0.3}))]
pub struct MatchingStart {
    /// 18–120.
    #[schema(minimum = 18, maximum = 120)]
    pub min_age: u32,
    /// 18–120, at least `min_age`.
    #[schema(minimum = 18, maximum = 120)]
    pub max_age: u32,
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
#[derive(ToSchema)]
pub struct MatchingStarted {
    pub session_id: String,
    /// `active`.
    pub status: Status,
    /// Extension: the whole session (its `metadata.preferences` holds the validated preferences).
    pub session: Session,
}

/// The other user of a match.
#[derive(ToSchema)]
pub struct Partner {
    pub user_id: String,
    pub name: String,
    pub age: u32,
    #[schema(required = true)]
    pub bio: Option<String>,
    pub interests: Vec<String>,
}

/// A match: the call created for the two users. `match` of `match.found` and of `GET /v1/matching/next`.
#[derive(ToSchema)]
pub struct Match {
    pub call_id: String,
    pub partner: Partner,
    /// Interests overlap and personality similarity (weighted by `personality_weight`), rounded to 3 decimals.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub compatibility_score: f64,
}

/// A mutual match: `match` of `match.mutual` (each user receives the other one).
#[derive(ToSchema)]
pub struct MutualMatch {
    pub call_id: String,
    /// The other user.
    pub user_id: String,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub matched_at: String,
}

/// `match` of a `match.found` (a `Match`) or `match.mutual` (a `MutualMatch`) event.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum EventMatch {
    Found(Match),
    Mutual(MutualMatch),
}

/// The answer of `GET /v1/matching/next`.
#[derive(ToSchema)]
#[schema(example = json!({"match_found":true,"match":{"call_id":"01936b80-0000-7000-8000-000000000001","partner":{"user_id":"u2","name":"Grace","age":33,"bio":null,"interests":["music"]},"compatibility_score":0.82}}))]
pub struct NextMatch {
    /// True while the user's call is waiting or active.
    pub match_found: bool,
    /// With `match_found: true`.
    #[serde(rename = "match")]
    #[schema(nullable = false)]
    pub found: Option<Match>,
    /// With `match_found: false`: the call a skip/continue decision is owed for.
    #[schema(nullable = false)]
    pub awaiting_decision: Option<String>,
}

/// Which of the call's users acts. The body may be empty for a user token.
#[derive(ToSchema)]
pub struct CallActor {
    /// API key only (required then): one of the call's two users.
    pub user_id: Option<String>,
}

/// The answer of joining a call.
#[derive(ToSchema)]
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
#[derive(ToSchema)]
pub enum SignalType {
    #[serde(rename = "offer")]
    Offer,
    #[serde(rename = "answer")]
    Answer,
    #[serde(rename = "ice-candidate")]
    IceCandidate,
}

/// A WebRTC signal to relay to the other user of a call (the body of `POST /v1/calls/{id}/signals`
/// and `signal` of the WebSocket `signal` message). Unknown fields are refused.
#[derive(ToSchema)]
#[schema(example = json!({"type":"offer","data":{"sdp":"v=0…"}}))]
pub struct Signal {
    #[serde(rename = "type")]
    pub signal_type: SignalType,
    /// The SDP or ICE candidate as the browser produced it: a JSON object of at most 32 KiB.
    pub data: BTreeMap<String, serde_json::Value>,
    /// API key only (required then): which of the call's users sends it.
    pub user_id: Option<String>,
}

/// The answer of sending a signal.
#[derive(ToSchema)]
pub struct SignalAccepted {
    pub accepted: bool,
}

/// A relayed signal.
#[derive(ToSchema)]
pub struct ReceivedSignal {
    #[serde(rename = "type")]
    pub signal_type: SignalType,
    pub data: BTreeMap<String, serde_json::Value>,
    /// The sender's user id.
    pub from: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// The signals that waited for the caller, oldest first; this read removes them. Each direction
/// queues at most 256 undrained signals (the oldest is dropped beyond that); signals are not durable.
#[derive(ToSchema)]
pub struct SignalList {
    pub signals: Vec<ReceivedSignal>,
}

/// WebRTC set-up report.
#[derive(ToSchema)]
pub struct WebrtcSetup {
    /// Milliseconds the peer connection took to come up, 0–600000.
    #[schema(minimum = 0.0, maximum = 600000.0)]
    pub setup_ms: f64,
    /// API key only (required then): which of the call's users reports.
    pub user_id: Option<String>,
}

/// `skip` records a pass; `continue` on both sides is a mutual match.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Skip,
    Continue,
}

/// The decision after a call that became active.
#[derive(ToSchema)]
#[schema(example = json!({"call_id":"01936b80-0000-7000-8000-000000000001","decision":"continue","personality_rating":[0.6,0.5,0.7,0.9,0.2]}))]
pub struct Decision {
    pub call_id: String,
    pub decision: DecisionKind,
    /// The caller's rating of the partner's five traits, each 0..1 (blended into the partner's personality).
    #[schema(min_items = 5, max_items = 5)]
    pub personality_rating: Option<Vec<f64>>,
    /// API key only (required then): which of the call's users decides.
    pub user_id: Option<String>,
}

/// The answer of a decision.
#[derive(ToSchema)]
pub struct DecisionResult {
    pub call_id: String,
    pub decision: DecisionKind,
    /// True when this decision made the match mutual (both `continue`; `match.mutual` went to both).
    /// Repeating the same decision answers `200` with `mutual: false`.
    pub mutual: bool,
}

/// One mutual match.
#[derive(ToSchema)]
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
#[derive(ToSchema)]
pub struct Matches {
    pub matches: Vec<MatchEntry>,
}

/// Block a user.
#[derive(ToSchema)]
pub struct Block {
    /// The user never to be paired with the blocker again (for good).
    pub user_id: String,
    /// API key only (required then): who blocks.
    pub by: Option<String>,
}

/// The recorded block.
#[derive(ToSchema)]
pub struct Blocked {
    pub blocked: String,
    pub by: String,
}

// ---------------------------------------------------------------------------
// Operations. Each function stands for one route; its doc comment is the
// operation's summary (first line) and description.

mod ops {
    #![allow(dead_code)]
    use super::*;

    /// Start a session
    ///
    /// Creates a session of `kind` for the caller (or, with an API key, for `user_id`). Its owner is
    /// its first participant and counts toward the kind's `quorum`: with `quorum = 1` it starts
    /// `active`, else `waiting`. With `per_user = "replace"` the user's live sessions of this kind end
    /// `superseded` (their ids in `superseded`); with `per_user = "reject"` a live one answers `409`
    /// unless `"on_conflict": "takeover"`. A session past its deadline never blocks: it is ended with
    /// its real reason first. `201` means the session is on disk.
    #[utoipa::path(post, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
        request_body = CreateSession,
        responses(
            (status = 201, description = "Started (and on disk).", body = CreatedSession),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token named another user in `user_id`, or an invitation token (limited to its session) tried to start one.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 409, description = "`per_user = \"reject\"` and the user already holds a live session of this kind: `blocking_session` is it. Retry with `\"on_conflict\": \"takeover\"`.", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/conflict","title":"Conflict","status":409,
                    "detail":"user u1 already has a live interview session (01936b7e-…); send \"on_conflict\": \"takeover\" to end it and start anew",
                    "blocking_session":{"id":"01936b7e-8a3c-7d41-9a53-1c5e2f0b4d21","kind":"interview","user_id":"u1","status":"active","created_at":"2026-11-22T10:00:00.000Z","activated_at":"2026-11-22T10:00:00.000Z","last_seen_at":"2026-11-22T10:00:30.000Z","expires_at":"2026-11-22T10:05:30.000Z","ended_at":null,"end_reason":null,"parent_id":null,"metadata":{},"participants":[]}})),
            (status = 413, response = TooLarge),
            (status = 422, description = "A field is missing, has the wrong type or fails a check (unknown or empty `kind`, `metadata` not an object, `on_conflict` not `takeover`, `user_id` missing with an API key, `parent_id` unknown or ended, unknown field); `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn create_session() {}

    /// List sessions
    ///
    /// Sessions the caller may see (all for an API key), live and ended until purged, in id order
    /// (ids are UUIDv7, so creation order). Page with `cursor` = the previous `next_cursor`.
    #[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
        params(
            ("kind" = Option<String>, Query, description = "Only this kind."),
            ("status" = Option<String>, Query, description = "Only these statuses: one of `waiting`, `active`, `completing`, `ended`, a comma-separated list of them, or `live` (waiting, active and completing)."),
            ("user_id" = Option<String>, Query, description = "Only sessions of this owner."),
            ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1–1000 (default 100)."),
            ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
        ),
        responses(
            (status = 200, description = "One page.", body = SessionList),
            (status = 401, response = Unauthorized),
            (status = 405, response = MethodNotAllowed),
            (status = 422, description = "A query parameter is invalid (`status` not a status, `limit` out of range or not a number); `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn list_sessions() {}

    /// Read a session
    ///
    /// Live or ended (until purged after its kind's `retention`).
    #[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        responses(
            (status = 200, description = "The session.", body = Session),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn get_session() {}

    /// Heartbeat a session
    ///
    /// Activity: pushes the idle deadline back (`expires_at` is the new earliest deadline). With
    /// `presence = "owner"` only the owner's heartbeat counts as the session's activity; a participant's
    /// still refreshes its own `last_seen_at`. Heartbeats may be kept in memory and written in batches.
    #[utoipa::path(post, path = "/v1/sessions/{id}/heartbeat", tag = "sessions", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        responses(
            (status = 200, description = "The session with its new `expires_at`.", body = Session),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The session has ended: `end_reason` says why, `session` is the ended session.", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/session-ended","title":"Session ended","status":410,"detail":"session 01936b7e-… has ended (idle_timeout)","end_reason":"idle_timeout"})),
        )
    )]
    pub fn heartbeat_session() {}

    /// End a session
    ///
    /// Ends with reason `ended` (an API key sending `"reason":"admin"`: `admin`); any other `reason`
    /// text is kept as `end_detail`. Idempotent: an ended session answers `200` unchanged. The owner,
    /// a member (a call's users) or an API key may end a session; other participants leave instead.
    #[utoipa::path(post, path = "/v1/sessions/{id}/end", tag = "sessions", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        request_body(content = Option<EndSession>, description = "Optional; an empty body is `{}`."),
        responses(
            (status = 200, description = "The ended session (unchanged if it had ended already).", body = Session),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A participant who is not the owner (it leaves with `DELETE /v1/sessions/{id}/participants/me`).", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "`reason` is over 500 characters or not a string, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn end_session() {}

    /// Move a session to `completing`
    ///
    /// The kind's `completing_timeout` (if any) starts; `completing_at` records when.
    #[utoipa::path(post, path = "/v1/sessions/{id}/complete", tag = "sessions", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        responses(
            (status = 200, description = "The session, now `completing`.", body = Session),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A participant who is not the owner.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 409, description = "The status does not allow it (e.g. still `waiting`); `status_now` is the status.", body = Problem, content_type = "application/problem+json"),
            (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn complete_session() {}

    /// Close a session from a page unload (`navigator.sendBeacon`)
    ///
    /// No `Authorization` header: the token travels in the body, as JSON `{"token"}` with any
    /// content type (sendBeacon sends `text/plain`) or as the bare token. Ends the session with
    /// reason `closed`; an ended session answers `204` too.
    #[utoipa::path(post, path = "/v1/sessions/{id}/beacon", tag = "sessions",
        params(("id" = String, Path, description = "Session id")),
        request_body(description = "The bearer token (API key or user JWT) in the body.",
            content(
                (BeaconBody = "application/json"),
                (String = "text/plain", example = "{\"token\":\"eyJhbGciOiJIUzI1NiJ9…\"}"),
            )
        ),
        responses(
            (status = 204, description = "Closed (or had ended already)."),
            (status = 400, response = BadRequest),
            (status = 401, description = "The body carries no token, or an invalid or expired one.", body = Problem, content_type = "application/problem+json"),
            (status = 403, description = "The token's user is a participant but not the owner.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, or one the token may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "JSON body without a string `token`; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn beacon_session() {}

    /// Join a session as a participant
    ///
    /// The caller (or, with an API key, `user_id`) joins; rejoining after leaving is allowed.
    /// Reaching the kind's `quorum` moves a `waiting` session to `active`.
    #[utoipa::path(post, path = "/v1/sessions/{id}/participants", tag = "participants", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        request_body(content = Option<JoinSession>, description = "Optional; an empty body is `{}`."),
        responses(
            (status = 201, description = "The session with the participant (maybe now `active`).", body = Session),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token named another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 413, response = TooLarge),
            (status = 422, description = "`name` over 200 characters, `user_id` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn join_session() {}

    /// Heartbeat as a participant
    ///
    /// Refreshes the caller's participant `last_seen_at` (and the session's activity when the kind's
    /// `presence` counts it). A participant silent for `participant_idle_timeout` is marked left.
    #[utoipa::path(post, path = "/v1/sessions/{id}/participants/me/heartbeat", tag = "participants", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        responses(
            (status = 200, description = "The session.", body = Session),
            (status = 401, response = Unauthorized),
            (status = 403, description = "Called with an API key (`me` needs a user token).", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, one the caller may not see, or the caller is not a present participant.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn participant_heartbeat() {}

    /// Leave a session
    ///
    /// Marks the caller's participant left (`participant.left`). The session goes on.
    #[utoipa::path(delete, path = "/v1/sessions/{id}/participants/me", tag = "participants", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        responses(
            (status = 200, description = "The session.", body = Session),
            (status = 401, response = Unauthorized),
            (status = 403, description = "Called with an API key (`me` needs a user token).", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such session, one the caller may not see, or the caller is not a participant.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn leave_session() {}

    /// Create an invitation
    ///
    /// Anyone holding the token may join the session without an account.
    #[utoipa::path(post, path = "/v1/sessions/{id}/invites", tag = "invites", security(("bearer" = [])),
        params(("id" = String, Path, description = "Session id")),
        request_body(content = Option<CreateInvite>, description = "Optional; an empty body is `{}`."),
        responses(
            (status = 201, description = "The invitation.", body = Invite),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 413, response = TooLarge),
            (status = 422, description = "`ttl` is not a duration (`30s`, `5m`, `1h`, …) or is 0, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn create_invite() {}

    /// Join through an invitation
    ///
    /// No authentication: the invitation token is the credential. The guest becomes a participant
    /// (`participant_id` = `guest_…`) and receives a user token limited to this session, good for its
    /// heartbeat, leave and event endpoints.
    #[utoipa::path(post, path = "/v1/invites/{token}/join", tag = "invites",
        params(("token" = String, Path, description = "The invitation token")),
        request_body(content = Option<InviteJoin>, description = "Optional; an empty body is `{}`."),
        responses(
            (status = 201, description = "Joined.", body = InviteJoined),
            (status = 400, response = BadRequest),
            (status = 404, description = "No such invitation.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "`detail` says the invitation expired (title \"Invitation expired\") or that the session ended (title \"Session ended\").", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/invitation-expired","title":"Invitation expired","status":410,"detail":"the invitation expired"})),
            (status = 413, response = TooLarge),
            (status = 422, description = "`name` over 200 characters or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn join_invite() {}

    /// Event stream (Server-Sent Events)
    ///
    /// `id:` is the event's sequence number (monotonically increasing), `event:` its `type`, `data:`
    /// the `Event` JSON. Reconnect with `Last-Event-ID` (or `?last_event_id=`) to resume from the
    /// in-memory log. Comments keep the connection alive. The stream closes when the server shuts down.
    #[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = []), ("token_query" = [])),
        params(
            ("kind" = Option<String>, Query, description = "Only events of sessions of this kind."),
            ("token" = Option<String>, Query, description = "The bearer token, for clients that cannot set headers (EventSource)."),
            ("last_event_id" = Option<u64>, Query, description = "Extension: resume after this id (when `Last-Event-ID` cannot be set)."),
            ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id."),
        ),
        responses(
            (status = 200, description = "An endless `text/event-stream`; each event's `data:` is an `Event` (see the schema).",
                content_type = "text/event-stream", body = String,
                example = "id: 1099511627777\nevent: session.started\ndata: {\"id\":1099511627777,\"type\":\"session.started\",\"at\":\"2026-11-22T10:00:00.000Z\",\"session\":{…}}\n\n"),
            (status = 401, response = Unauthorized),
            (status = 405, response = MethodNotAllowed),
            (status = 422, description = "`Last-Event-ID` or a query parameter is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
        ),
        extensions(("x-event-schema" = json!({"$ref": "#/components/schemas/Event"})))
    )]
    pub fn events_sse() {}

    /// Event WebSocket
    ///
    /// Carries the same events as `GET /v1/events`, each a JSON text frame (`Event`). Clients may send
    /// `WsClientMessage` frames: `{"type":"heartbeat","session_id"}`, `{"type":"signal","call_id","signal"}`,
    /// `{"type":"webrtc.connected","call_id","setup_ms"}` and `{"type":"ping"}`; the server answers `pong`
    /// and, for a failed message, an `error` frame (`WsReply`). A user's open sockets drive its
    /// kinds' `disconnect_grace`: the last one closing starts it, a new one cancels it. The socket
    /// closes when the server shuts down. Frames are limited to 64 KiB.
    #[utoipa::path(get, path = "/v1/ws", tag = "events", security(("bearer" = []), ("token_query" = [])),
        params(
            ("kind" = Option<String>, Query, description = "Only events of sessions of this kind."),
            ("token" = Option<String>, Query, description = "The bearer token (browsers cannot set headers on WebSocket)."),
        ),
        responses(
            (status = 101, description = "Switched to the WebSocket protocol."),
            (status = 400, description = "Not a valid WebSocket upgrade request (title \"WebSocket upgrade required\"; `detail` says which header is wrong).", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/websocket-upgrade-required","title":"WebSocket upgrade required","status":400,"detail":"Connection header did not include 'upgrade'"})),
            (status = 401, response = Unauthorized),
            (status = 405, response = MethodNotAllowed),
            (status = 422, description = "A query parameter is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 426, description = "The connection cannot be upgraded (e.g. HTTP/2 without extended CONNECT); title \"WebSocket upgrade required\".", body = Problem, content_type = "application/problem+json"),
        ),
        extensions(("x-websocket" = json!({
            "server_messages": {"oneOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/WsReply"}]},
            "client_messages": {"$ref": "#/components/schemas/WsClientMessage"}
        })))
    )]
    pub fn events_ws() {}

    /// Kinds in force
    ///
    /// Extension: every kind with its policy (durations in ms), so clients can derive heartbeat intervals.
    #[utoipa::path(get, path = "/v1/kinds", tag = "admin", security(("bearer" = [])),
        responses(
            (status = 200, description = "The kinds.", body = Kinds),
            (status = 401, response = Unauthorized),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn list_kinds() {}

    /// Health report
    ///
    /// `overdue` counts live sessions past a deadline (should always be 0); `problems` and
    /// `recommendations` say what is wrong and what to do.
    #[utoipa::path(get, path = "/v1/admin/health", tag = "admin", security(("bearer" = [])),
        responses(
            (status = 200, description = "The report.", body = HealthReport),
            (status = 401, response = Unauthorized),
            (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn admin_health() {}

    /// Cleanup dry run
    ///
    /// What `POST /v1/admin/cleanup` would do now. Changes nothing.
    #[utoipa::path(get, path = "/v1/admin/cleanup", tag = "admin", security(("bearer" = [])),
        responses(
            (status = 200, description = "The preview.", body = CleanupPreview),
            (status = 401, response = Unauthorized),
            (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn admin_cleanup_preview() {}

    /// Run cleanup
    ///
    /// Ends overdue sessions with their real reason, ends orphans `parent_ended`, removes dead
    /// invitations and purges ended sessions past their kind's `retention`.
    #[utoipa::path(post, path = "/v1/admin/cleanup", tag = "admin", security(("bearer" = [])),
        responses(
            (status = 200, description = "What was done.", body = CleanupResult),
            (status = 401, response = Unauthorized),
            (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn admin_cleanup() {}

    /// Mint a demo user token
    ///
    /// Only with `[auth].demo` on (`tether serve --demo`, loopback only); no authentication.
    #[utoipa::path(post, path = "/v1/demo/token", tag = "demo",
        request_body = DemoTokenRequest,
        responses(
            (status = 200, description = "A user token valid 12 hours.", body = DemoToken),
            (status = 400, response = BadRequest),
            (status = 404, description = "Demo mode is off.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "`user_id` missing or not 1–64 of letters, digits, `-`, `_`, `.`; `field` names it.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn demo_token() {}

    // --- matching and calls (contract section 6)

    /// Set a user's matching profile
    ///
    /// An API key may set any user's profile; a user token only its own, and only when `[auth].demo`
    /// is on. Setting a profile lets a waiting user be paired.
    #[utoipa::path(put, path = "/v1/profiles/{user_id}", tag = "matching", security(("bearer" = [])),
        params(("user_id" = String, Path, description = "The user (1–128 bytes, no control characters)")),
        request_body = ProfileInput,
        responses(
            (status = 200, description = "Stored; the profile as validated.", body = Profile),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token for another user, an invitation token, or a user token with demo mode off.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "A field is missing or invalid (`name`, `age` outside 18–120, `interests[3]`, `personality` not 5 numbers in 0..1, the path's `user_id`); `field` names it.", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/invalid-field","title":"Invalid field","status":422,"detail":"age: must be between 18 and 120","field":"age"})),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn put_profile() {}

    /// Read a matching profile
    ///
    /// Extension. An API key reads any profile; a user its own and its current call partner's.
    #[utoipa::path(get, path = "/v1/profiles/{user_id}", tag = "matching", security(("bearer" = [])),
        params(("user_id" = String, Path, description = "The user")),
        responses(
            (status = 200, description = "The profile.", body = Profile),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No profile, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn get_profile() {}

    /// Enter the matching pool
    ///
    /// Starts a `matching` session (kind `matching`: idle 30 s, `disconnect_grace` 5 s, `per_user`
    /// replace) for the caller or, with an API key, `user_id`; it replaces the user's previous one
    /// (whose waiting or active call then ends `partner_left`). Pairing happens at once when a
    /// compatible free user waits: both get `match.found`. Keep the session alive with heartbeats,
    /// `GET /v1/matching/next` or an open WebSocket.
    #[utoipa::path(post, path = "/v1/matching/start", tag = "matching", security(("bearer" = [])),
        request_body = MatchingStart,
        responses(
            (status = 201, description = "In the pool.", body = MatchingStarted),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "An invitation token, or a user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "A field is missing or invalid (`min_age`/`max_age` outside 18–120 or `max_age` < `min_age`, `preferred_interests[i]`, `personality_weight` outside 0..1, `user_id` missing with an API key, an unknown field); `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn matching_start() {}

    /// Poll for a match
    ///
    /// Also a heartbeat of the matching session. `match_found` is true while the user's call is
    /// waiting or active; otherwise `awaiting_decision` names a call whose decision is owed.
    #[utoipa::path(get, path = "/v1/matching/next", tag = "matching", security(("bearer" = [])),
        params(("session_id" = String, Query, description = "The user's `matching` session")),
        responses(
            (status = 200, description = "The match, if any.", body = NextMatch),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The matching session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 422, description = "`session_id` missing or not a `matching` session; `field` names it.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn matching_next() {}

    /// Decide after a call
    ///
    /// Owed by both users of a call that became active, once it ended. `skip` records a pass; `continue`
    /// from both is a mutual match (`match.mutual` to each). Deciding returns the user to the pool
    /// (otherwise it returns after the `matching` kind's `decision_timeout`, default 30 s).
    #[utoipa::path(post, path = "/v1/matching/decision", tag = "matching", security(("bearer" = [])),
        request_body = Decision,
        responses(
            (status = 200, description = "Recorded.", body = DecisionResult),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 409, description = "The call is still live (`call_status` says how), never became active (no decision is owed), its decision window passed, or the user already decided differently.", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/conflict","title":"Conflict","status":409,"detail":"the call is still live: decide after it ends","call_status":"active"})),
            (status = 413, response = TooLarge),
            (status = 422, description = "A field is missing or invalid (`decision` not `skip`/`continue`, `personality_rating[i]` outside 0..1 or not 5 numbers, `user_id` missing with an API key, an unknown field); `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn matching_decision() {}

    /// List mutual matches
    #[utoipa::path(get, path = "/v1/matches", tag = "matching", security(("bearer" = [])),
        params(("user_id" = Option<String>, Query, description = "API key only (required then): whose matches.")),
        responses(
            (status = 200, description = "The mutual matches, oldest first.", body = Matches),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 422, description = "`user_id` missing with an API key; `field` names it.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn list_matches() {}

    /// Block a user
    ///
    /// Extension: the two users are never paired again, for good.
    #[utoipa::path(post, path = "/v1/blocks", tag = "matching", security(("bearer" = [])),
        request_body = Block,
        responses(
            (status = 200, description = "Blocked.", body = Blocked),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `by`.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "`user_id` missing, blank or the blocker itself, `by` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn create_block() {}

    /// Read a call
    ///
    /// A call is a session of kind `call` (quorum 2, `waiting_timeout` 60 s, `max_duration` 180 s)
    /// created by matching for two users (`members`) with nobody joined; its owner (`user_id`) is the
    /// user who waited longer. Both users may read it.
    #[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", security(("bearer" = [])),
        params(("id" = String, Path, description = "Call (session) id")),
        responses(
            (status = 200, description = "The call session (ended ones too, unless cancelled because the partner left).", body = Session),
            (status = 401, response = Unauthorized),
            (status = 404, description = "No such call, or not one of the caller's.", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "Cancelled because the partner's matching session ended: `end_reason` is `partner_left`.", body = Problem, content_type = "application/problem+json",
                example = json!({"type":"https://tether.dev/problems/session-ended","title":"Session ended","status":410,"detail":"session 01936b80-… has ended (partner_left)","end_reason":"partner_left"})),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn get_call() {}

    /// Join a call
    ///
    /// The user becomes a participant; the call's quorum counts users who joined, so its timer
    /// (`max_duration`) starts on the second join.
    #[utoipa::path(post, path = "/v1/calls/{id}/join", tag = "calls", security(("bearer" = [])),
        params(("id" = String, Path, description = "Call (session) id")),
        request_body(content = Option<CallActor>, description = "Needed with an API key only."),
        responses(
            (status = 200, description = "Joined.", body = CallJoin),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The call has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 413, response = TooLarge),
            (status = 422, description = "`user_id` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn join_call() {}

    /// End a call
    ///
    /// Ends the call for both users with reason `ended`; from then on it answers `200` (as any ended
    /// session), while a call cancelled because the partner left answers `410`.
    #[utoipa::path(post, path = "/v1/calls/{id}/end", tag = "calls", security(("bearer" = [])),
        params(("id" = String, Path, description = "Call (session) id")),
        request_body(content = Option<CallActor>, description = "Needed with an API key only."),
        responses(
            (status = 200, description = "The ended call session (unchanged if it had ended already).", body = Session),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "Cancelled because the partner left: `end_reason` is `partner_left`.", body = Problem, content_type = "application/problem+json"),
            (status = 413, response = TooLarge),
            (status = 422, description = "`user_id` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn end_call() {}

    /// Send a WebRTC signal
    ///
    /// Delivered to the other user only: as a `call.signal` event, and queued for its
    /// `GET /v1/calls/{id}/signals`. Not durable.
    #[utoipa::path(post, path = "/v1/calls/{id}/signals", tag = "calls", security(("bearer" = [])),
        params(("id" = String, Path, description = "Call (session) id")),
        request_body = Signal,
        responses(
            (status = 202, description = "Accepted for delivery.", body = SignalAccepted),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "The call has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
            (status = 413, response = TooLarge),
            (status = 422, description = "`type` not `offer`/`answer`/`ice-candidate`, `data` missing, not an object or over 32 KiB, `user_id` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn send_signal() {}

    /// Drain waiting signals
    ///
    /// The signals waiting for the caller, in order; this read removes them.
    #[utoipa::path(get, path = "/v1/calls/{id}/signals", tag = "calls", security(("bearer" = [])),
        params(
            ("id" = String, Path, description = "Call (session) id"),
            ("user_id" = Option<String>, Query, description = "API key only (required then): whose signals."),
        ),
        responses(
            (status = 200, description = "The signals.", body = SignalList),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 410, description = "Cancelled because the partner left: `end_reason` is `partner_left`.", body = Problem, content_type = "application/problem+json"),
            (status = 422, description = "`user_id` missing with an API key; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn drain_signals() {}

    /// Report WebRTC set-up time
    ///
    /// Extension: the caller's peer connection is up; `setup_ms` feeds the WebRTC set-up metric.
    /// The WebSocket message `webrtc.connected` does the same.
    #[utoipa::path(post, path = "/v1/calls/{id}/webrtc", tag = "calls", security(("bearer" = [])),
        params(("id" = String, Path, description = "Call (session) id")),
        request_body = WebrtcSetup,
        responses(
            (status = 204, description = "Recorded."),
            (status = 400, response = BadRequest),
            (status = 401, response = Unauthorized),
            (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
            (status = 404, description = "No such call, or not one of the caller's (or the acting user's).", body = Problem, content_type = "application/problem+json"),
            (status = 405, response = MethodNotAllowed),
            (status = 413, response = TooLarge),
            (status = 422, description = "`setup_ms` missing or outside 0–600000, `user_id` missing with an API key, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
            (status = 503, response = Unavailable),
        )
    )]
    pub fn report_webrtc() {}

    // --- operations (contract section 7)

    /// Liveness probe
    ///
    /// `200 ok` while the process serves.
    #[utoipa::path(get, path = "/healthz", tag = "operations",
        responses(
            (status = 200, description = "Serving.", body = String, content_type = "text/plain", example = "ok"),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn healthz() {}

    /// Readiness probe
    ///
    /// `200 ready` once the store is open and recovered.
    #[utoipa::path(get, path = "/readyz", tag = "operations",
        responses(
            (status = 200, description = "Ready.", body = String, content_type = "text/plain", example = "ready"),
            (status = 405, response = MethodNotAllowed),
            (status = 503, description = "Still recovering.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn readyz() {}

    /// Prometheus metrics
    #[utoipa::path(get, path = "/metrics", tag = "operations",
        responses(
            (status = 200, description = "Prometheus text exposition format (`text/plain; version=0.0.4`).", body = String, content_type = "text/plain"),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn metrics() {}

    /// This OpenAPI 3.1 description
    #[utoipa::path(get, path = "/openapi.json", tag = "operations",
        responses(
            (status = 200, description = "The OpenAPI document.", body = Object, content_type = "application/json"),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn openapi_json() {}

    /// Redirect to the dashboard
    #[utoipa::path(get, path = "/", tag = "operations",
        responses(
            (status = 307, description = "Temporary redirect to `/admin`.", headers(("location" = String, description = "/admin"))),
            (status = 405, response = MethodNotAllowed),
        )
    )]
    pub fn root() {}

    /// The admin dashboard page
    ///
    /// Served from the embedded `web/admin`; it asks for an API key and calls `/v1/admin/*`.
    #[utoipa::path(get, path = "/admin", tag = "operations",
        responses(
            (status = 200, description = "The dashboard.", body = String, content_type = "text/html"),
            (status = 404, description = "The embedded file server's answer for a file it does not hold (e.g. a mistyped sub-path).", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn admin_page() {}

    /// The demo pages
    ///
    /// Served from the embedded `web/demo` (also `/demo/interview.html`), only in demo mode.
    #[utoipa::path(get, path = "/demo", tag = "demo",
        responses(
            (status = 200, description = "The demo page.", body = String, content_type = "text/html"),
            (status = 404, description = "Demo mode is off.", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn demo_page() {}

    /// The browser SDK
    ///
    /// Served from the embedded `web/sdk`; its TypeScript declarations are beside it at `/sdk/tether.d.ts`.
    #[utoipa::path(get, path = "/sdk/tether.js", tag = "operations",
        responses(
            (status = 200, description = "The ES module.", body = String, content_type = "text/javascript"),
            (status = 404, description = "The embedded file server's answer for a file it does not hold (e.g. a mistyped sub-path).", body = Problem, content_type = "application/problem+json"),
        )
    )]
    pub fn sdk_js() {}
}

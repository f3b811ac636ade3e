//! The OpenAPI 3.1 document served at `/openapi.json`: what is not an
//! operation. The operations come from the `#[utoipa::path]` attributes on the
//! real handlers, registered with `utoipa-axum` in [`crate::http::api`] (a
//! route cannot exist there without its description), and the schemas from
//! the [`crate::wire`] types the handlers read and answer. This module adds
//! the prose, the servers, the tags, the security schemes, the shared error
//! responses and the schemas no operation names (events and WebSocket
//! messages travel inside a stream), and the refusals of the connection
//! layer ([`crate::http::server`]) on every operation they can answer.

use crate::wire::events::{Event, LeanEvent, SessionForm, StreamGap, WsClientMessage, WsReply};
use crate::wire::problem::{BadRequest, MethodNotAllowed, Problem, TooLarge, Unauthorized, Unavailable};
use serde_json::Value;
use std::sync::OnceLock;
use tether_engine::{EndReason, EventType, Status};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

/// The document as JSON (`"openapi": "3.1.0"`).
pub fn document() -> Value {
    let (_, doc) = crate::http::api().split_for_parts();
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    describe_optional_bodies(&mut doc);
    add_rate_limit_answers(&mut doc);
    describe_connection_refusals(&mut doc);
    add_forwarding_answers(&mut doc);
    doc
}

/// In a cluster, a follower sends the request to the node that owns the work.
#[derive(utoipa::ToResponse)]
#[response(
    description = "Several nodes only: the node that owns the work failed while handling this request, \
        which another node had forwarded to it; the change may or may not have been applied (read the \
        resource to know). Retrying is safe for reads and idempotent operations.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/bad-gateway","title":"Bad gateway","status":502,
        "detail":"the node that owns the work did not answer (connection closed before message completed); the request may or may not have been applied"})
)]
pub struct BadGateway(#[allow(dead_code)] Problem);

/// Every operation a cluster node forwards to the owner
/// ([`crate::cluster::forwarded`]) may answer `502`.
fn add_forwarding_answers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        if !crate::cluster::forwarded(path) {
            continue;
        }
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            responses.entry("502").or_insert_with(|| serde_json::json!({"$ref": "#/components/responses/BadGateway"}));
        }
    }
}

/// Over its rate limit.
#[derive(utoipa::ToResponse)]
#[response(
    description = "Over the caller's rate limit (`[limits]` `user_rate` after `user_burst` for user tokens, \
        `api_key_rate` for API keys). `retry_after` (also the `Retry-After` header) says in how many whole \
        seconds one more request passes; `caller` is `user` or `api_key`.",
    content_type = "application/problem+json",
    headers(
        ("Retry-After" = u64, description = "Whole seconds (at least 1) until one more request passes."),
        ("RateLimit-Limit" = u64, description = "The caller's burst: requests it may send at once."),
        ("RateLimit-Remaining" = u64, description = "Requests left now: 0."),
        ("RateLimit-Reset" = u64, description = "Whole seconds until one more request passes (as `Retry-After`)."),
    ),
    example = json!({"type":"https://tether.dev/problems/too-many-requests","title":"Too many requests","status":429,
        "detail":"too many requests: this user is limited to 50/s (bursts of 100); retry in 1 s","retry_after":1,"caller":"user"})
)]
pub struct TooManyRequests(#[allow(dead_code)] Problem);

/// Every authenticated operation (those that answer `401`) counts against
/// the caller's rate limit, so each answers `429` too. Added here, from the
/// `401`s, rather than in each handler's list: one rule, and an operation
/// added later cannot miss it.
fn add_rate_limit_answers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            if responses.contains_key("401") && !responses.contains_key("429") {
                responses.insert("429".into(), serde_json::json!({"$ref": "#/components/responses/TooManyRequests"}));
            }
        }
    }
}

/// The answers the connection layer gives before (or instead of) a handler
/// ([`crate::http::server`]), added to every operation they can answer:
/// `400`, `414` and `431` to all (a request line or head that cannot be
/// parsed never reaches a route, so any path may get them), `503` at the
/// connection cap to all but `/healthz`, and `408` and `413` to the
/// operations that take a body. An operation that already documents a status
/// keeps its own description.
fn describe_connection_refusals(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let takes_body = op.get("requestBody").is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            let mut add = |status: &str, component: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| serde_json::json!({"$ref": format!("#/components/responses/{component}")}));
            };
            add("400", "MalformedRequest");
            add("414", "UriTooLong");
            add("431", "HeadersTooLarge");
            if path != "/healthz" {
                add("503", "AtCapacity");
            }
            if takes_body {
                add("408", "BodyTimeout");
                add("413", "TooLarge");
            }
        }
    }
}

/// hyper could not parse the request line or a header.
#[derive(ToResponse)]
#[response(
    description = "The request line or a header could not be parsed as HTTP/1.1 (answered before any route; the connection closes).",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/bad-request","title":"Bad request","status":400,"detail":"the request line or a header could not be parsed as HTTP/1.1"})
)]
struct MalformedRequest(#[allow(dead_code)] Problem);

/// The URI is 64 KiB or longer.
#[derive(ToResponse)]
#[response(
    description = "The request URI is 64 KiB or longer (answered before any route; the connection closes).",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/uri-too-long","title":"URI too long","status":414,"detail":"the request URI is too long (the limit is 64 KiB)"})
)]
struct UriTooLong(#[allow(dead_code)] Problem);

/// The request head is too large.
#[derive(ToResponse)]
#[response(
    description = "More than 100 headers, or a request head over about 400 KiB (answered before any route; the connection closes).",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/request-header-fields-too-large","title":"Request header fields too large","status":431,"detail":"the request head is too large (at most 100 headers and about 400 KiB)"})
)]
struct HeadersTooLarge(#[allow(dead_code)] Problem);

/// The body did not arrive in time.
#[derive(ToResponse)]
#[response(
    description = "The whole request body did not arrive within `[limits].body_timeout` (default 30s) of the request head; the connection closes.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/request-timeout","title":"Request timeout","status":408,"detail":"the request body did not arrive within 30s ([limits].body_timeout)"})
)]
struct BodyTimeout(#[allow(dead_code)] Problem);

/// The server is at its connection cap.
#[derive(ToResponse)]
#[response(
    description = "The server holds `[limits].max_connections` connections: a new connection gets this (only `GET /healthz` is still answered on it), then closes. Retry after `Retry-After` seconds, or reuse an open connection.",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")),
    example = json!({"type":"https://tether.dev/problems/unavailable","title":"Unavailable","status":503,"detail":"the server is at its connection limit ([limits].max_connections); retry shortly, or reuse an open connection"})
)]
struct AtCapacity(#[allow(dead_code)] Problem);

/// [`document`] serialised once, as served.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_string())
}

/// What the router starts from: everything but the operations.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// An optional body is declared as `Option<T>`, which utoipa describes as
/// `oneOf [null, T]`. The server refuses a JSON `null` body (it is not an
/// object), so that says more than it accepts and misleads client generators:
/// the body is `T`, not required (an empty body reads as `{}`).
fn describe_optional_bodies(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for op in item.values_mut() {
            let Some(content) = op.pointer_mut("/requestBody/content").and_then(Value::as_object_mut) else {
                continue;
            };
            for media in content.values_mut() {
                let Some(schema) = media.get_mut("schema") else { continue };
                let Some(one_of) = schema.get("oneOf").and_then(Value::as_array) else { continue };
                let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
                if one_of.len() == 2 && one_of.iter().any(is_null) {
                    let body = one_of.iter().find(|s| !is_null(s)).cloned().unwrap_or_default();
                    *schema = body;
                }
            }
        }
    }
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
limited to `[limits].max_body` (default 64 KiB, `413`, answered from a declared `Content-Length`
before the body is sent, also instead of `100 Continue`) and must arrive within
`[limits].body_timeout` (default 30s, `408`). A request line or head the server cannot parse
answers `400`, `414` (URI of 64 KiB or more) or `431` (over 100 headers or about 400 KiB); a new
connection beyond `[limits].max_connections` gets `503` with `Retry-After` for anything but
`GET /healthz`. Over its rate limit (`[limits]`), a caller gets `429` with `Retry-After`. All of these are problem+json too. A request body that is optional may be empty (read as `{}`); JSON `null`
is not an object and answers `400`. A method a path does not list answers `405`.

## Extensions beyond the contract
- `GET /v1/kinds` lists the kinds in force (timeouts in ms) so clients derive heartbeat intervals.
- `POST /v1/sessions` takes `name`, the owner's display name as a participant.
- Session objects carry `end_detail` (the free-text `reason` given to `POST /end`), `members`
  (users besides owner and participants who may see the session: both users of a call before
  they join) and `completing_at` (when the session entered `completing`); each is omitted when empty.
- `POST /v1/sessions/{id}/end` with an API key and `{"reason":"admin"}` ends with reason `admin`.
- `POST /v1/sessions/{id}/invites` answers `session_id` too.
- `GET /v1/events` also takes `?last_event_id=` (clients that cannot set `Last-Event-ID`).
- Both event streams may send `stream.gap` (`{"type":"stream.gap","from","to"}`, schema `StreamGap`):
  the events with ids `from..=to` were missed; read the sessions you follow to catch up.
- `GET /v1/ws` takes client messages `heartbeat`, `signal`, `webrtc.connected` and `ping`
  (schema `WsClientMessage`); it answers `pong`, and an `error` frame for a failed message (`WsReply`):
  `status` 429 for a message over the rate limit, 400 for a binary frame. It closes with `1009` (message
  over 64 KiB), `1007` (text not UTF-8), `1008` (the client stopped reading its events), `1001` (shutdown).
- `[limits]` takes `api_key_burst` (default: twice the count of `api_key_rate`) and `ws_send_timeout`.
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
    components(
        schemas(Problem, Status, EndReason, EventType, Event, LeanEvent, SessionForm, StreamGap, WsClientMessage, WsReply),
        responses(
            BadRequest, Unauthorized, MethodNotAllowed, TooLarge, Unavailable, TooManyRequests, BadGateway,
            MalformedRequest, UriTooLong, HeadersTooLarge, BodyTimeout, AtCapacity,
        ),
    ),
    modifiers(&Security, &Vocabulary),
    tags(
        (name = "sessions", description = "Session lifecycle (contract section 4)"),
        (name = "participants", description = "Joining, participant heartbeats and leaving"),
        (name = "invites", description = "Invitations: join one session without an account"),
        (name = "events", description = "Server-Sent Events and the WebSocket (contract section 5)"),
        (name = "matching", description = "Profiles, the matching pool, decisions and matches (contract section 6)"),
        (name = "calls", description = "Call sessions created by matching, and WebRTC signaling"),
        (name = "admin", description = "Health, cleanup and kinds (API keys only for /v1/admin)"),
        (name = "webhooks", description = "Webhook endpoints and deliveries (contract section 9; API keys only). Each event is POSTed as its `/v1/events` JSON with Standard Webhooks 1.0 headers `webhook-id` (the event id), `webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`)"),
        (name = "operations", description = "Probes, metrics, this document and the embedded web pages"),
        (name = "demo", description = "Demo mode only (`tether serve --demo`)"),
    )
)]
struct ApiDoc;

/// The vocabulary enums are the engine's; their meaning for API users is said here.
struct Vocabulary;

const STATUS_DESCRIPTION: &str = "Where a session is in its lifecycle: `waiting` → `active` → `completing` → `ended`; \
any live state may go straight to `ended`. `waiting`: the kind's `quorum` is not reached yet. `active`: running \
(`max_duration` counts from here). `completing`: wrapping up (`completing_timeout` counts from here). `ended`: final.";

const END_REASON_DESCRIPTION: &str = "Why a session ended (exactly one reason per end): \
`ended` — by its user or backend (`POST /end`); `closed` — the browser's unload beacon; \
`superseded` — a newer session of a `per_user = \"replace\"` kind replaced it; \
`taken_over` — a newer session took over with `\"on_conflict\": \"takeover\"` (`per_user = \"reject\"`); \
`idle_timeout` — no heartbeat or activity for the kind's `idle_timeout`; \
`max_duration` — `max_duration` after activation; `waiting_timeout` — quorum not reached in time; \
`completing_timeout` — in `completing` too long; `disconnected` — the owner's last WebSocket stayed \
closed for `disconnect_grace`; `parent_ended` — its parent ended (`on_parent_end = \"end\"`); \
`partner_left` — a call whose partner's matching session ended; \
`admin` — an operator (API key with reason \"admin\", or cleanup).";

impl Modify for Vocabulary {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [("Status", STATUS_DESCRIPTION), ("EndReason", END_REASON_DESCRIPTION)] {
            if let Some(RefOr::T(Schema::Object(schema))) = components.schemas.get_mut(name) {
                schema.description = Some(description.to_string());
            }
        }
    }
}

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

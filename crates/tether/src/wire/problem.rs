//! The error body every failing request answers, as `application/problem+json`
//! (RFC 9457), and the shared error responses the operations refer to.
//! [`crate::http::problem::ApiError`] renders exactly these members.

use serde::Serialize;
use tether_engine::{EndReason, Session, Status};
use utoipa::{ToResponse, ToSchema};

/// An error, as `application/problem+json` (RFC 9457). Every error the server
/// answers has this shape; members beyond the four standard ones depend on the error.
#[derive(Serialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// `409` from `POST /v1/sessions` (`per_user = "reject"`): the live session in the way.
    /// Retry with `"on_conflict": "takeover"` to end it `taken_over`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub blocking_session: Option<Session>,
    /// `410`: the reason the session (or call) ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end_reason: Option<EndReason>,
    /// `410`: the ended session as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub session: Option<Session>,
    /// `409` for an action the session's status does not allow (e.g. completing a `waiting` session): its status now.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status_now: Option<Status>,
    /// `409` from `POST /v1/matching/decision` while the call is still live: the call's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub call_status: Option<Status>,
}

/// Malformed request: the body is not a JSON object.
#[derive(ToResponse)]
#[response(
    description = "Malformed request: the body is not valid JSON, not a JSON object (JSON `null` included), or not UTF-8; `detail` says where.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/bad-request","title":"Bad request","status":400,"detail":"malformed JSON: EOF while parsing an object at line 1 column 9"})
)]
pub struct BadRequest(#[allow(dead_code)] Problem);

/// No valid token.
#[derive(ToResponse)]
#[response(
    description = "Missing, invalid or expired token.",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "RFC 6750: `Bearer` when no token was sent; `Bearer error=\"invalid_token\"` when the token given was refused.")),
    example = json!({"type":"https://tether.dev/problems/unauthorized","title":"Unauthorized","status":401,"detail":"the token has expired"})
)]
pub struct Unauthorized(#[allow(dead_code)] Problem);

/// The path exists but not with this method.
#[derive(ToResponse)]
#[response(
    description = "Answered for any method this path does not list (with the listed ones in `detail`'s route).",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/method-not-allowed","title":"Method not allowed","status":405,"detail":"PATCH is not allowed on /v1/sessions/{id}"})
)]
pub struct MethodNotAllowed(#[allow(dead_code)] Problem);

/// The body is over the limit.
#[derive(ToResponse)]
#[response(
    description = "The request body is larger than 64 KiB.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/body-too-large","title":"Body too large","status":413,"detail":"request bodies are limited to 65536 bytes"})
)]
pub struct TooLarge(#[allow(dead_code)] Problem);

/// The store could not make the change durable.
#[derive(ToResponse)]
#[response(
    description = "The store could not be reached or could not make the change durable; nothing was acknowledged. Retry.",
    content_type = "application/problem+json",
    example = json!({"type":"https://tether.dev/problems/unavailable","title":"Unavailable","status":503,"detail":"the journal is closed"})
)]
pub struct Unavailable(#[allow(dead_code)] Problem);

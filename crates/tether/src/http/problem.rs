//! Errors as RFC 9457 problem+json, produced in exactly one place
//! ([`ApiError`]'s `IntoResponse`, which also writes the headers an error
//! needs, such as `WWW-Authenticate` on `401`), and the extractors whose
//! rejections use it: JSON bodies (with the failing field named), query
//! strings (likewise), and the body's size limit and deadline (`[limits]`
//! `max_body` and `body_timeout`, given to each request by
//! [`super::server::RequestLimits`]).

use super::server::RequestLimits;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tether_engine::{EngineError, Session};

/// The default `[limits].max_body`: request bodies above it are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
    /// Headers sent with the problem (`WWW-Authenticate`, …); a `Vec`, not a
    /// `HeaderMap`, to keep `Result<_, ApiError>` small.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, title, detail: detail.into(), extra: Map::new(), headers: Vec::new() }
    }
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.into(), value);
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    /// A request field failed validation (`field` names it, also in `detail`).
    pub fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
        let detail = detail.into();
        let detail = if detail.contains(field) { detail } else { format!("{field}: {detail}") };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid field", detail).with("field", Value::from(field))
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not found", format!("{what} not found"))
    }
    /// `401` for a request that carries no credential: RFC 6750 §3.1 says
    /// the challenge then names no error code.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }
    /// `401` for a credential that was presented but is expired, forged or
    /// malformed (RFC 6750 §3.1 `invalid_token`).
    pub fn invalid_token(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""))
    }
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name, value));
        self
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    pub fn gone(session: &Session) -> ApiError {
        let reason = session.end_reason.map(|r| r.as_str()).unwrap_or("ended");
        ApiError::new(StatusCode::GONE, "Session ended", format!("session {} has ended ({reason})", session.id))
            .with("end_reason", Value::from(reason))
            .with("session", serde_json::to_value(session).unwrap_or(Value::Null))
    }
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", detail)
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", detail)
    }
}

impl ApiError {
    /// The problem+json body (`wire::problem::Problem`).
    pub fn body(&self) -> Value {
        let slug = self.title.to_ascii_lowercase().replace(' ', "-");
        let mut body = Map::new();
        body.insert("type".into(), Value::from(format!("https://tether.dev/problems/{slug}")));
        body.insert("title".into(), Value::from(self.title));
        body.insert("status".into(), Value::from(self.status.as_u16()));
        body.insert("detail".into(), Value::from(self.detail.clone()));
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

/// Runs a store call on the blocking pool (the PostgreSQL client blocks, and
/// SQLite does disk IO): a store failure is `503` (nothing was acknowledged),
/// a call that did not finish is `500`.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the store call did not finish: {e}")))?
        .map_err(|e| ApiError::unavailable(e.to_string()))
}

impl From<String> for ApiError {
    /// A failed durable write.
    fn from(detail: String) -> ApiError {
        ApiError::unavailable(detail)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::UnknownKind(k) => ApiError::invalid("kind", format!("unknown kind {k:?}")),
            EngineError::NotLive => ApiError::not_found("session"),
            EngineError::Conflict(s) => ApiError::conflict(format!(
                "user {} already has a live {} session ({}); send \"on_conflict\": \"takeover\" to end it and start anew",
                s.user_id, s.kind, s.id
            ))
            .with("blocking_session", serde_json::to_value(&*s).unwrap_or(Value::Null)),
            EngineError::ParentNotLive => ApiError::invalid("parent_id", "the parent session does not exist or has ended"),
            EngineError::WrongStatus { status, action } => {
                ApiError::conflict(format!("cannot {action} a session that is {}", status.as_str())).with("status_now", Value::from(status.as_str()))
            }
            EngineError::NotParticipant => ApiError::not_found("participant"),
            EngineError::InviteUnknown => ApiError::not_found("invitation"),
            EngineError::InviteExpired => ApiError::new(StatusCode::GONE, "Invitation expired", "the invitation expired"),
            EngineError::InviteSessionEnded => {
                ApiError::new(StatusCode::GONE, "Session ended", "the session of this invitation has ended")
            }
            EngineError::NotRevivable(why) => ApiError::conflict(why.to_string()),
        }
    }
}

/// Parses JSON, naming the failing field path in `detail` and `field`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Only a truly empty body means "no body": whitespace alone is malformed JSON.
    if bytes.is_empty() {
        return serde_json::from_str("{}").map_err(|_| ApiError::bad_request("a JSON object body is required"));
    }
    // Syntax first, so a truncated body is "malformed JSON" rather than the
    // first type error met on the way; then only objects are bodies.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request(format!("malformed JSON: {e}")));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("malformed JSON: {inner}"))
        } else {
            let field = if path == "." { field_named_in(&inner.to_string()).unwrap_or_default() } else { path };
            let detail = if field.is_empty() { inner.to_string() } else { format!("{field}: {inner}") };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid field", detail).with("field", Value::from(field))
        }
    })
}

/// The field a serde message names between backticks ("missing field …", "duplicate field …").
fn field_named_in(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = msg[start..].find('`')? + start;
    Some(msg[start..end].to_string())
}

/// A JSON body: any content type (sendBeacon sends text/plain), within the
/// request's [`RequestLimits`], an empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// How much of an oversize body is read and discarded (for at most
/// [`DRAIN_TIME`]) before answering 413: a server that answers while the
/// client is still sending, then closes with unread data, resets the
/// connection and the client never sees the 413.
const DRAIN_LIMIT: usize = 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of a refused body, for at most [`DRAIN_TIME`].
pub async fn drain(body: axum::body::Body) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut drained = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// Reads the whole body within the request's [`RequestLimits`] (the
/// defaults when the request did not come through [`super::server`], as in
/// tests that call the router directly): `413` over `max_body`, `408` when it
/// has not all arrived by the deadline. Both close the connection: the rest
/// of the body is not waited for.
pub async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    use futures::StreamExt;
    let limits = req.extensions().get::<RequestLimits>().copied().unwrap_or_else(|| {
        let defaults = crate::config::Limits::default();
        RequestLimits {
            max_body: defaults.max_body,
            body_timeout: defaults.body_timeout,
            body_deadline: tokio::time::Instant::now() + defaults.body_timeout,
        }
    });
    let close = || HeaderValue::from_static("close");
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Body too large",
            format!("request bodies are limited to {} bytes", limits.max_body),
        )
        .with_header(header::CONNECTION, close())
    };
    let unreadable = |e: axum::Error| ApiError::bad_request(format!("could not read the request body: {e}"));
    let mut stream = req.into_body().into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let read = tokio::time::timeout_at(limits.body_deadline, async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(unreadable)?;
            if buf.len() + chunk.len() > limits.max_body {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => Ok(buf.freeze()),
        Ok(Err(refusal)) => {
            if refusal.status == StatusCode::PAYLOAD_TOO_LARGE {
                drain(axum::body::Body::from_stream(stream)).await;
            }
            Err(refusal)
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            format!("the request body did not arrive within {:?} ([limits].body_timeout)", limits.body_timeout),
        )
        .with_header(header::CONNECTION, close())),
    }
}

/// Query parameters with problem+json rejections naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // Errors about the query as a whole ("duplicate field `limit`",
            // "missing field `x`") have the root path: the message names the field.
            let field = if path == "." { field_named_in(&inner).unwrap_or(path) } else { path };
            ApiError::invalid(&field, format!("query parameter {field}: {inner}"))
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(json!(value))).into_response()
}

//! `GET /v1/sessions/{id}/history` (contract section 10): a session's events,
//! read from the store's event log, with the session's own visibility.

use super::access::{find_session, Caller};
use super::problem::{blocking, ApiError};
use crate::app::App;
use crate::wire::history::SessionHistory;
use crate::wire::problem::{MethodNotAllowed, Problem, Unauthorized, Unavailable};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A session's history
///
/// Every event of the session in order (`session.started`, `session.activated`,
/// `participant.*`, `session.expiring`, `session.completing`, `session.ended`,
/// `session.revived`, and for calls `match.*` and `call.signal`), each exactly as
/// `/v1/events` delivered it, including its `id`. Kept as long as the session is.
/// Same visibility as the session: `404` to a caller who may not see it.
#[utoipa::path(get, path = "/v1/sessions/{id}/history", operation_id = "session_history", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session's events, oldest first.", body = SessionHistory),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn history(
    State(app): State<Arc<App>>,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    find_session(&app, &p, &id).await?;
    // Everything acknowledged before this request is in the log.
    app.journal.flush().await.map_err(ApiError::unavailable)?;
    let store = app.store.clone();
    let events = blocking(move || store.session_events(&id)).await?;
    // The stored JSON is what subscribers received; spliced, not re-encoded.
    let mut body = String::with_capacity(16 + events.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.json);
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

//! `POST /v1/sessions/batch` (extension, issue 12): many sessions started in
//! one request and one durable commit, for backends that open many rooms at
//! once. Each item is checked and applied exactly as `POST /v1/sessions`
//! would; a malformed item refuses the whole request (`422` naming
//! `sessions[i].field`), while a refusal by a policy (`409` for a `reject`
//! conflict) is that item's result and the others still start.

use super::problem::{ApiError, JsonBody};
use super::sessions::new_session;
use crate::app::{App, Core};
use crate::http::access::Caller;
use crate::journal::Change;
use crate::wire::problem::{BadRequest, MethodNotAllowed, Problem, TooLarge, Unauthorized, Unavailable};
use crate::wire::sessions::{BatchItem, CreateSessions, SessionsCreated};
use axum::extract::State;
use axum::Json;
use serde_json::Value;
use std::sync::Arc;

/// The most sessions one batch may start.
pub const MAX_BATCH: usize = 1000;

/// Start many sessions
///
/// Extension. Starts up to 1000 sessions, each given exactly as the body of `POST /v1/sessions`,
/// in one durable commit, and answers one result per session in order: `201` with `session` and
/// `superseded`, or the problem `POST /v1/sessions` would have answered for it (`409` with
/// `blocking_session` for a `per_user = "reject"` conflict, also between two items of the batch).
/// An item that is malformed (unknown kind, bad metadata, another user's `user_id`…) refuses the
/// whole batch with the problem of that item, `field` prefixed with `sessions[i].`. The request
/// body is bounded by `[limits]` `max_body` like any other.
#[utoipa::path(post, path = "/v1/sessions/batch", operation_id = "create_sessions", tag = "sessions", security(("bearer" = [])),
    request_body = CreateSessions,
    responses(
        (status = 200, description = "One result per session asked for, in order.", body = SessionsCreated),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "An item names another user than the token's, or the token is an invitation's.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 413, response = TooLarge),
        (status = 422, description = "`sessions` empty or over 1000, or an item invalid; `field` names it (`sessions[3].kind`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_many(
    State(app): State<Arc<App>>,
    Caller(p): Caller,
    JsonBody(body): JsonBody<CreateSessions>,
) -> Result<Json<SessionsCreated>, ApiError> {
    let n = body.sessions.len();
    if n == 0 || n > MAX_BATCH {
        return Err(ApiError::invalid("sessions", format!("sessions holds 1 to {MAX_BATCH} items, not {n}")));
    }
    let mut requests = Vec::with_capacity(n);
    for (i, item) in body.sessions.into_iter().enumerate() {
        let req = new_session(&app, &p, item).await.map_err(|e| in_item(e, i))?;
        // A kind is configuration, not state: an unknown one is a malformed item.
        if app.read(|core| core.engine.kinds().get(&req.kind).is_none()) {
            let unknown = ApiError::from(tether_engine::EngineError::UnknownKind(req.kind.clone()));
            return Err(in_item(unknown, i));
        }
        requests.push(req);
    }
    let results = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let mut results = Vec::with_capacity(requests.len());
            for req in requests {
                results.push(match core.engine.create(now, req) {
                    Ok((session, superseded, out)) => {
                        change.absorb(out);
                        BatchItem { status: 201, session: Some(session), superseded: Some(superseded), problem: None }
                    }
                    Err(e) => {
                        let e = ApiError::from(e);
                        BatchItem {
                            status: e.status.as_u16(),
                            session: None,
                            superseded: None,
                            problem: Some(e.body()),
                        }
                    }
                });
            }
            Ok::<_, ApiError>(results)
        })
        .await?;
    Ok(Json(SessionsCreated { results }))
}

/// An item's problem as the batch's: its field named inside the batch.
fn in_item(mut e: ApiError, i: usize) -> ApiError {
    let field = match e.extra.get("field").and_then(Value::as_str) {
        Some(f) => format!("sessions[{i}].{f}"),
        None => format!("sessions[{i}]"),
    };
    e.detail = format!("sessions[{i}]: {}", e.detail);
    e.extra.insert("field".into(), Value::from(field));
    e
}

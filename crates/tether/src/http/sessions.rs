//! Session endpoints (contract section 4): start, read, list, heartbeat,
//! end, complete, beacon, participants and invites.

use super::access::{acting_user, ended_or_missing, find_session, may_see, may_see_live, stored, Caller};
use super::problem::{read_body, ApiError, JsonBody, QueryParams};
use crate::app::{new_id, App};
use crate::auth::Principal;
use crate::journal::Change;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{time::format_rfc3339, Dur, EndReason, EngineError, NewSession, Session};

type AppState = State<Arc<App>>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The session kind (a `[kinds.NAME]` table or a built-in kind).
    pub kind: String,
    pub metadata: Option<Value>,
    pub parent_id: Option<String>,
    /// Only with an API key: the user the session is for.
    pub user_id: Option<String>,
    /// `"takeover"`: end a blocking session (`per_user = "reject"`) with `taken_over`.
    pub on_conflict: Option<String>,
    /// Extension: the owner's display name as a participant.
    pub name: Option<String>,
}

pub async fn create(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<Response, ApiError> {
    if matches!(&p, Principal::User { scope: Some(_), .. }) {
        return Err(ApiError::forbidden("an invitation token can only act on its own session"));
    }
    let owner = acting_user(&p, body.user_id.as_deref())?;
    let takeover = match body.on_conflict.as_deref() {
        None => false,
        Some("takeover") => true,
        Some(other) => {
            return Err(ApiError::invalid("on_conflict", format!("on_conflict must be \"takeover\", not {other:?}")))
        }
    };
    if body.kind.is_empty() {
        return Err(ApiError::invalid("kind", "kind must not be empty"));
    }
    // Matching and call sessions carry state the matching layer owns (preferences, the pair).
    if body.kind == MATCHING || body.kind == CALL {
        return Err(ApiError::invalid(
            "kind",
            format!("{} sessions are started by the matching endpoints (POST /v1/matching/start creates matching sessions; calls are created by pairing)", body.kind),
        ));
    }
    let metadata = match body.metadata {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::invalid("metadata", "metadata must be a JSON object")),
    };
    if let Some(parent) = &body.parent_id {
        // The parent must be one the caller may see; an ended one is refused by the engine.
        find_session(&app, &p, parent)
            .await
            .map_err(|_| ApiError::invalid("parent_id", "the parent session does not exist"))?;
    }
    let (session, superseded, ack) = {
        let mut core = app.core.lock();
        let now = app.now();
        let req = NewSession {
            id: new_id(),
            kind: body.kind,
            owner,
            owner_name: body.name,
            metadata,
            parent_id: body.parent_id,
            takeover,
            members: vec![],
        };
        let (session, superseded, out) = core.engine.create(now, req)?;
        let ack = app.commit(&mut core, now, Change::from(out));
        (session, superseded, ack)
    };
    ack.wait().await.map_err(ApiError::unavailable)?;
    Ok((StatusCode::CREATED, Json(json!({"session": session, "superseded": superseded}))).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    status: Option<String>,
    user_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    // `status` takes one status, a comma-separated list, or `live` (waiting, active, completing).
    let mut statuses = Vec::new();
    for st in q.status.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if st == "live" {
            statuses.extend(["waiting", "active", "completing"].map(String::from));
        } else if tether_engine::Status::parse(st).is_some() {
            statuses.push(st.to_string());
        } else {
            return Err(ApiError::invalid(
                "status",
                format!(
                    "status must be waiting, active, completing, ended or live (or a comma-separated list), not {st:?}"
                ),
            ));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 1000"));
    }
    let filter = crate::store::ListFilter {
        kind: q.kind,
        statuses,
        user_id: q.user_id,
        visible_to: p.user_id().map(str::to_string),
        after_id: q.cursor,
        limit,
    };
    app.flush_heartbeats();
    app.journal.flush().await.map_err(ApiError::unavailable)?;
    let store = app.store.clone();
    let found = tokio::task::spawn_blocking(move || store.list(&filter))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let sessions: Vec<Session> = {
        let core = app.core.lock();
        found.into_iter().map(|s| core.engine.get(&s.id).unwrap_or(s)).filter(|s| may_see(&p, s)).collect()
    };
    let next_cursor = (sessions.len() == limit).then(|| sessions.last().map(|s| s.id.clone())).flatten();
    Ok(Json(json!({"sessions": sessions, "next_cursor": next_cursor})).into_response())
}

pub async fn get(State(app): AppState, Caller(p): Caller, Path(id): Path<String>) -> Result<Json<Session>, ApiError> {
    find_session(&app, &p, &id).await.map(Json)
}

/// Runs an operation on a live session the caller may see; answers 410 (or
/// the ended session, for idempotent ops) when it has ended.
async fn on_live<T>(
    app: &Arc<App>,
    p: &Principal,
    id: &str,
    op: impl FnOnce(&mut crate::app::Core, i64, &Session) -> Result<(T, Change), ApiError>,
) -> Result<Result<T, Session>, ApiError> {
    let result = {
        let mut core = app.core.lock();
        let now = app.now();
        app.catch_up(&mut core, now);
        match core.engine.get(id) {
            Some(s) if may_see(p, &s) => match op(&mut core, now, &s) {
                Ok((value, change)) => {
                    let ack = app.commit(&mut core, now, change);
                    Some(Ok((value, ack)))
                }
                Err(e) => Some(Err(e)),
            },
            Some(_) => return Err(ApiError::not_found("session")),
            None => None,
        }
    };
    match result {
        Some(Ok((value, ack))) => {
            ack.wait().await.map_err(ApiError::unavailable)?;
            Ok(Ok(value))
        }
        Some(Err(e)) => Err(e),
        None => match stored(app, id).await? {
            Some(s) if may_see(p, &s) => Ok(Err(s)),
            _ => Err(ApiError::not_found("session")),
        },
    }
}

fn engine_err(e: EngineError) -> ApiError {
    ApiError::from(e)
}

pub async fn heartbeat(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let session = beat(&app, &p, &id).await?;
    Ok(Json(session))
}

/// A heartbeat from `p` on session `id`, shared by HTTP and WebSocket.
pub async fn beat(app: &App, p: &Principal, id: &str) -> Result<Session, ApiError> {
    beat_with(app, p, id, |engine, now, user| engine.heartbeat(now, id, user)).await
}

/// [`beat`] for a caller that does not answer with the session (a WebSocket
/// heartbeat): the engine builds no snapshot.
pub async fn touch(app: &App, p: &Principal, id: &str) -> Result<(), ApiError> {
    beat_with(app, p, id, |engine, now, user| engine.touch(now, id, user)).await
}

async fn beat_with<T>(
    app: &App,
    p: &Principal,
    id: &str,
    op: impl FnOnce(&mut tether_engine::Engine, i64, &str) -> Result<T, EngineError>,
) -> Result<T, ApiError> {
    match beat_live(app, p, id, op)? {
        Some(value) => Ok(value),
        None => Err(ended_or_missing(app, p, id, "session", |_| true).await),
    }
}

/// The heartbeat under the core lock; `None` when the session is not live.
fn beat_live<T>(
    app: &App,
    p: &Principal,
    id: &str,
    op: impl FnOnce(&mut tether_engine::Engine, i64, &str) -> Result<T, EngineError>,
) -> Result<Option<T>, ApiError> {
    app.metrics.count_heartbeat();
    let mut core = app.core.lock();
    let now = app.now();
    app.catch_up(&mut core, now);
    match may_see_live(p, &core.engine, id) {
        Some(true) => {}
        Some(false) => return Err(ApiError::not_found("session")),
        None => return Ok(None),
    }
    let user = match p.user_id() {
        Some(u) => u.to_string(),
        None => core.engine.owner_of(id).ok_or_else(|| engine_err(EngineError::NotLive))?,
    };
    let value = op(&mut core.engine, now, &user).map_err(engine_err)?;
    // A heartbeat may move a deadline earlier only by re-admitting state; nudge anyway is cheap.
    app.nudge(&core);
    Ok(Some(value))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndBody {
    reason: Option<String>,
}

pub async fn end(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndBody>,
) -> Result<Json<Session>, ApiError> {
    if body.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::invalid("reason", "reason is limited to 500 characters"));
    }
    let reason =
        if p.is_api_key() && body.reason.as_deref() == Some("admin") { EndReason::Admin } else { EndReason::Ended };
    let detail = body.reason.filter(|r| r != "admin" || reason != EndReason::Admin);
    let r = on_live(&app, &p, &id, |core, now, s| {
        may_end(&p, s)?;
        let (s, out) = core.engine.end(now, &id, reason, detail).map_err(engine_err)?;
        Ok((s, Change::from(out)))
    })
    .await?;
    Ok(Json(r.unwrap_or_else(|ended| ended)))
}

/// The owner, a member (a call's users) or an API key may end a session;
/// other participants leave instead.
fn may_end(p: &Principal, s: &Session) -> Result<(), ApiError> {
    match p.user_id() {
        None => Ok(()),
        Some(u) if s.user_id == u || s.members.iter().any(|m| m == u) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "only the session's owner may end it; participants leave with DELETE /v1/sessions/{id}/participants/me",
        )),
    }
}

pub async fn complete(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let r = on_live(&app, &p, &id, |core, now, s| {
        may_end(&p, s)?;
        let (s, out) = core.engine.complete(now, &id).map_err(engine_err)?;
        Ok((s, Change::from(out)))
    })
    .await?;
    r.map(Json).map_err(|ended| ApiError::gone(&ended))
}

/// `navigator.sendBeacon` cannot set headers: the token travels in the body,
/// as JSON `{"token"}` (any content type, typically text/plain) or as the bare token.
pub async fn beacon(State(app): AppState, Path(id): Path<String>, req: Request) -> Result<StatusCode, ApiError> {
    let bytes = read_body(req).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the beacon body must be UTF-8"))?.trim();
    let token = if text.starts_with('{') {
        #[derive(Deserialize)]
        struct BeaconBody {
            token: String,
        }
        super::problem::parse_json::<BeaconBody>(text.as_bytes())?.token
    } else {
        text.to_string()
    };
    if token.is_empty() {
        return Err(ApiError::unauthorized("the beacon body must carry the token: {\"token\":\"…\"}"));
    }
    let p = super::access::authenticate(&app, Some(token))?;
    let _ended_already = on_live(&app, &p, &id, |core, now, s| {
        may_end(&p, s)?;
        let (s, out) = core.engine.end(now, &id, EndReason::Closed, None).map_err(engine_err)?;
        Ok((s, Change::from(out)))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    user_id: Option<String>,
    name: Option<String>,
}

pub async fn join(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<JoinBody>,
) -> Result<Response, ApiError> {
    let user = acting_user(&p, body.user_id.as_deref())?;
    check_name(&body.name)?;
    let r = on_live(&app, &p, &id, |core, now, s| {
        not_a_stranger_in_a_call(s, &user)?;
        let (s, out) = core.engine.join(now, &id, &user, body.name).map_err(engine_err)?;
        Ok((s, Change::from(out)))
    })
    .await?;
    match r {
        Ok(s) => Ok((StatusCode::CREATED, Json(s)).into_response()),
        Err(ended) => Err(ApiError::gone(&ended)),
    }
}

/// A call is for its two users: nobody else may join it (joining would
/// start its timer and mark the pair as having met).
fn not_a_stranger_in_a_call(s: &Session, user: &str) -> Result<(), ApiError> {
    if s.kind == CALL && !s.members.iter().any(|m| m == user) {
        return Err(ApiError::forbidden("only the call's two users may join it"));
    }
    Ok(())
}

fn check_name(name: &Option<String>) -> Result<(), ApiError> {
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::invalid("name", "name is limited to 200 characters"));
    }
    Ok(())
}

fn me(p: &Principal) -> Result<String, ApiError> {
    p.user_id()
        .map(str::to_string)
        .ok_or_else(|| ApiError::forbidden("`participants/me` needs a user token (an API key is not a participant)"))
}

pub async fn participant_heartbeat(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let user = me(&p)?;
    {
        let core = app.core.lock();
        if let Some(s) = core.engine.get(&id) {
            if may_see(&p, &s) && s.participant(&user).is_none_or(|x| x.left_at.is_some()) {
                return Err(ApiError::not_found("participant"));
            }
        }
    }
    beat(&app, &p, &id).await.map(Json)
}

pub async fn leave(State(app): AppState, Caller(p): Caller, Path(id): Path<String>) -> Result<Json<Session>, ApiError> {
    let user = me(&p)?;
    let r = on_live(&app, &p, &id, |core, now, _| {
        let (s, out) = core.engine.leave(now, &id, &user).map_err(engine_err)?;
        Ok((s, Change::from(out)))
    })
    .await?;
    r.map(Json).map_err(|ended| ApiError::gone(&ended))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    ttl: Option<String>,
}

pub async fn create_invite(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> Result<Response, ApiError> {
    let ttl = body.ttl.as_deref().map(|t| Dur::parse(t).map_err(|e| ApiError::invalid("ttl", e))).transpose()?;
    if ttl == Some(Dur(0)) {
        return Err(ApiError::invalid("ttl", "ttl must be longer than 0"));
    }
    let token = crate::app::random_token(16);
    let r = on_live(&app, &p, &id, |core, now, s| {
        if s.kind == CALL {
            return Err(ApiError::conflict("calls are for their two users only: they cannot be joined by invitation"));
        }
        let (invite, expiry, out) = core.engine.create_invite(now, &id, token, ttl).map_err(engine_err)?;
        Ok(((invite, expiry), Change::from(out)))
    })
    .await?;
    match r {
        Ok((invite, expiry)) => Ok((
            StatusCode::CREATED,
            Json(json!({"token": invite.token, "expires_at": expiry.map(format_rfc3339), "session_id": invite.session_id})),
        )
            .into_response()),
        Err(ended) => Err(ApiError::gone(&ended)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InviteJoinBody {
    name: Option<String>,
}

/// How long an invite's participant token lasts.
const PARTICIPANT_TOKEN_SECS: u64 = 24 * 3600;

pub async fn join_invite(
    State(app): AppState,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<InviteJoinBody>,
) -> Result<Response, ApiError> {
    check_name(&body.name)?;
    let participant_id = format!("guest_{}", uuid::Uuid::now_v7().simple());
    let (session, ack) = {
        let mut core = app.core.lock();
        let now = app.now();
        let (session, out) = core.engine.join_invite(now, &token, &participant_id, body.name)?;
        let ack = app.commit(&mut core, now, Change::from(out));
        (session, ack)
    };
    ack.wait().await.map_err(ApiError::unavailable)?;
    let participant_token = app.auth.mint(&participant_id, Some(&session.id), PARTICIPANT_TOKEN_SECS);
    Ok((
        StatusCode::CREATED,
        Json(json!({"session": session, "participant_id": participant_id, "token": participant_token})),
    )
        .into_response())
}

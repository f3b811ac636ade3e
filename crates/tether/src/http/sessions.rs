//! Session endpoints (contract sections 4 and 10): start, read, list,
//! heartbeat, end, complete, beacon, revive, participants and invites.

use super::access::{acting_user, ended_or_missing, find_session, may_see, may_see_live, stored, Caller};
use super::problem::{blocking, read_body, ApiError, JsonBody, QueryParams};
use crate::app::{new_id, App, Core};
use crate::auth::Principal;
use crate::journal::Change;
use crate::wire::problem::{BadRequest, MethodNotAllowed, Problem, TooLarge, Unauthorized, Unavailable};
use crate::wire::sessions::{
    BeaconBody, CreateInvite, CreateSession, CreatedSession, EndSession, Invite, InviteJoin, InviteJoined, JoinSession,
    ListQuery, ReviveSession, SessionList,
};
use crate::wire::NAME_MAX_CHARS;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{time::format_rfc3339, Dur, EndReason, EngineError, Millis, NewSession, Session, Status};

type AppState = State<Arc<App>>;

/// Start a session
///
/// Creates a session of `kind` for the caller (or, with an API key, for `user_id`). Its owner is
/// its first participant and counts toward the kind's `quorum`: with `quorum = 1` it starts
/// `active`, else `waiting`. With `per_user = "replace"` the user's live sessions of this kind end
/// `superseded` (their ids in `superseded`); with `per_user = "reject"` a live one answers `409`
/// unless `"on_conflict": "takeover"`. A session past its deadline never blocks: it is ended with
/// its real reason first. `201` means the session is on disk.
#[utoipa::path(post, path = "/v1/sessions", operation_id = "create_session", tag = "sessions", security(("bearer" = [])),
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
        (status = 422, description = "A field is missing, has the wrong type or fails a check (unknown or empty `kind`, `metadata` not an object, `on_conflict` not `takeover`, `name` over 200 characters, `user_id` missing with an API key, `parent_id` unknown or ended, unknown field); `field` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let req = new_session(&app, &p, body).await?;
    let (session, superseded) = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let (session, superseded, out) = core.engine.create(now, req)?;
            change.absorb(out);
            Ok::<_, ApiError>((session, superseded))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedSession { session, superseded })))
}

/// Checks a start request and turns it into the engine's [`NewSession`]
/// (what `POST /v1/sessions` and each item of `POST /v1/sessions/batch` share).
pub(super) async fn new_session(app: &Arc<App>, p: &Principal, body: CreateSession) -> Result<NewSession, ApiError> {
    if matches!(p, Principal::User { scope: Some(_), .. }) {
        return Err(ApiError::forbidden("an invitation token can only act on its own session"));
    }
    let owner = acting_user(p, body.user_id.as_deref())?;
    let takeover = takeover(body.on_conflict.as_deref())?;
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
    check_name(&body.name)?;
    let metadata = match body.metadata {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::invalid("metadata", "metadata must be a JSON object")),
    };
    if let Some(parent) = &body.parent_id {
        // The parent must be one the caller may see; an ended one is refused by the engine.
        find_session(app, p, parent)
            .await
            .map_err(|_| ApiError::invalid("parent_id", "the parent session does not exist"))?;
    }
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
    Ok(req)
}

/// `on_conflict`: absent, or `"takeover"`.
fn takeover(on_conflict: Option<&str>) -> Result<bool, ApiError> {
    match on_conflict {
        None => Ok(false),
        Some("takeover") => Ok(true),
        Some(other) => {
            Err(ApiError::invalid("on_conflict", format!("on_conflict must be \"takeover\", not {other:?}")))
        }
    }
}

/// List sessions
///
/// Sessions the caller may see (all for an API key), live and ended until purged, in id order
/// (ids are UUIDv7, so creation order). Page with `cursor` = the previous `next_cursor`.
#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "sessions", security(("bearer" = [])),
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
pub async fn list(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    // `status` takes one status, a comma-separated list, or `live` (waiting, active, completing).
    let mut statuses = Vec::new();
    for st in q.status.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if st == "live" {
            statuses.extend(Status::ALL.into_iter().filter(|s| s.is_live()).map(|s| s.as_str().to_string()));
        } else if Status::parse(st).is_some() {
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
    let found = blocking(move || store.list(&filter)).await?;
    let sessions: Vec<Session> = app.read(|core| {
        found.into_iter().map(|s| core.engine.get(&s.id).unwrap_or(s)).filter(|s| may_see(&p, s)).collect()
    });
    let next_cursor = (sessions.len() == limit).then(|| sessions.last().map(|s| s.id.clone())).flatten();
    Ok(Json(SessionList { sessions, next_cursor }))
}

/// Read a session
///
/// Live or ended (until purged after its kind's `retention`).
#[utoipa::path(get, path = "/v1/sessions/{id}", operation_id = "get_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session.", body = Session),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(State(app): AppState, Caller(p): Caller, Path(id): Path<String>) -> Result<Json<Session>, ApiError> {
    find_session(&app, &p, &id).await.map(Json)
}

/// Runs `op` on a live session the caller may see, through [`App::change`],
/// and waits until its change is durable. `Ok(Err(session))`: the session has
/// ended (the ended session, for idempotent operations to answer with).
async fn on_live<T: Send + 'static>(
    app: &Arc<App>,
    p: &Principal,
    id: &str,
    op: impl FnOnce(&mut Core, Millis, &Session, &mut Change) -> Result<T, ApiError>,
) -> Result<Result<T, Session>, ApiError> {
    let done = app
        .change(|core: &mut Core, now, change: &mut Change| match core.engine.get(id) {
            Some(s) if may_see(p, &s) => op(core, now, &s, change).map(Some),
            Some(_) => Err(ApiError::not_found("session")),
            None => Ok(None),
        })
        .await?;
    match done {
        Some(value) => Ok(Ok(value)),
        None => match stored(app, id).await? {
            Some(s) if may_see(p, &s) => Ok(Err(s)),
            _ => Err(ApiError::not_found("session")),
        },
    }
}

fn engine_err(e: EngineError) -> ApiError {
    ApiError::from(e)
}

/// Heartbeat a session
///
/// Activity: pushes the idle deadline back (`expires_at` is the new earliest deadline). With
/// `presence = "owner"` only the owner's heartbeat counts as the session's activity; a participant's
/// still refreshes its own `last_seen_at`. Heartbeats may be kept in memory and written in batches.
/// With `Prefer: return=minimal` (RFC 7240) the answer is `204` with the new deadline in the
/// `Tether-Expires-At` header instead of the whole session (what most callers throw away).
#[utoipa::path(post, path = "/v1/sessions/{id}/heartbeat", operation_id = "heartbeat_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id"), PreferParam),
    responses(
        (status = 200, description = "The session with its new `expires_at`.", body = Session),
        (status = 204, description = "`Prefer: return=minimal` was sent: the heartbeat counted, no body.",
            headers(
                ("Tether-Expires-At" = String, description = "The session's new earliest deadline (its `expires_at`), RFC 3339 UTC with milliseconds; absent when it has no deadline."),
                ("Preference-Applied" = String, description = "`return=minimal`."),
            )),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 410, description = "The session has ended: `end_reason` says why, `session` is the ended session.", body = Problem, content_type = "application/problem+json",
            example = json!({"type":"https://tether.dev/problems/session-ended","title":"Session ended","status":410,"detail":"session 01936b7e-… has ended (idle_timeout)","end_reason":"idle_timeout"})),
    )
)]
pub async fn heartbeat(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    PreferMinimal(minimal): PreferMinimal,
) -> Result<Response, ApiError> {
    if minimal {
        return beat_minimal(&app, &p, &id).await.map(minimal_beat);
    }
    beat(&app, &p, &id).await.map(|s| Json(s).into_response())
}

/// The `Prefer` request header of the heartbeats (RFC 7240).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read from the `HeaderMap`; this only documents it
struct PreferParam {
    /// `return=minimal`: answer `204` with the new deadline in `Tether-Expires-At` instead of the
    /// session. Other preferences are ignored.
    #[param(rename = "Prefer")]
    prefer: Option<String>,
}

/// The header carrying a minimal heartbeat's new deadline.
pub const EXPIRES_AT_HEADER: &str = "tether-expires-at";

// Header names as constants: a `&str` name is parsed and checked on every use
// (~0.7k instructions each in the heartbeat profile).
const PREFER: HeaderName = HeaderName::from_static("prefer");
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
const EXPIRES_AT: HeaderName = HeaderName::from_static(EXPIRES_AT_HEADER);

/// Whether the request asked for `return=minimal`: read from the request's
/// headers in place (a `HeaderMap` extractor would copy them all, which the
/// heartbeat profile showed).
pub struct PreferMinimal(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for PreferMinimal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PreferMinimal(prefers_minimal(&parts.headers)))
    }
}

/// Whether the request's `Prefer` headers (RFC 7240: comma-separated
/// preferences, each `token[=value]` with `;` parameters, tokens
/// case-insensitive, values possibly quoted, possibly repeated headers) ask
/// for `return=minimal`.
fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers.get_all(PREFER).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|pref| {
        let pref = pref.split(';').next().unwrap_or("");
        let (name, value) = pref.split_once('=').unwrap_or((pref, ""));
        name.trim().eq_ignore_ascii_case("return") && value.trim().trim_matches('"').eq_ignore_ascii_case("minimal")
    })
}

/// The `204` of a heartbeat sent with `Prefer: return=minimal`.
fn minimal_beat(expires_at: Option<Millis>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(PREFERENCE_APPLIED, HeaderValue::from_static("return=minimal"));
    if let Some(at) = expires_at {
        if let Ok(v) = HeaderValue::try_from(format_rfc3339(at)) {
            h.insert(EXPIRES_AT, v);
        }
    }
    r
}

/// A heartbeat from `p` on session `id`, shared by HTTP and WebSocket.
pub async fn beat(app: &Arc<App>, p: &Principal, id: &str) -> Result<Session, ApiError> {
    beat_with(app, p, id, |engine, now, user| engine.heartbeat(now, id, user)).await
}

/// [`beat`] for a caller that answers only the new earliest deadline
/// (`Prefer: return=minimal`): the engine builds no snapshot.
async fn beat_minimal(app: &Arc<App>, p: &Principal, id: &str) -> Result<Option<Millis>, ApiError> {
    beat_with(app, p, id, |engine, now, user| engine.touch_deadline(now, id, user)).await
}

/// [`beat`] for a caller that does not answer with the session (a WebSocket
/// heartbeat): the engine builds no snapshot.
pub async fn touch(app: &Arc<App>, p: &Principal, id: &str) -> Result<(), ApiError> {
    beat_with(app, p, id, |engine, now, user| engine.touch(now, id, user)).await
}

/// The heartbeat hot path: it does not wait for the journal (heartbeats are
/// written in batches by the flusher), and it builds no snapshot to check
/// visibility.
async fn beat_with<T>(
    app: &Arc<App>,
    p: &Principal,
    id: &str,
    op: impl FnOnce(&mut tether_engine::Engine, Millis, &str) -> Result<T, EngineError>,
) -> Result<T, ApiError> {
    app.metrics.count_heartbeat();
    let beaten = app
        .change(|core: &mut Core, now, _change: &mut Change| {
            match may_see_live(p, &core.engine, id) {
                Some(true) => {}
                Some(false) => return Err(ApiError::not_found("session")),
                None => return Ok(None),
            }
            let user = match p.user_id() {
                Some(u) => u.to_string(),
                None => core.engine.owner_of(id).ok_or_else(|| engine_err(EngineError::NotLive))?,
            };
            op(&mut core.engine, now, &user).map(Some).map_err(engine_err)
        })
        .detach()?;
    match beaten {
        Some(value) => Ok(value),
        None => Err(ended_or_missing(app, p, id, "session", |_| true).await),
    }
}

/// End a session
///
/// Ends with reason `ended` (an API key sending `"reason":"admin"`: `admin`); any other `reason`
/// text is kept as `end_detail`. Idempotent: an ended session answers `200` unchanged. The owner,
/// a member (a call's users) or an API key may end a session; other participants leave instead.
#[utoipa::path(post, path = "/v1/sessions/{id}/end", operation_id = "end_session", tag = "sessions", security(("bearer" = [])),
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
pub async fn end(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndSession>,
) -> Result<Json<Session>, ApiError> {
    if body.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::invalid("reason", "reason is limited to 500 characters"));
    }
    let reason =
        if p.is_api_key() && body.reason.as_deref() == Some("admin") { EndReason::Admin } else { EndReason::Ended };
    let detail = body.reason.filter(|r| r != "admin" || reason != EndReason::Admin);
    let r = on_live(&app, &p, &id, |core, now, s, change| {
        may_end(&p, s)?;
        let (s, out) = core.engine.end(now, &id, reason, detail).map_err(engine_err)?;
        change.absorb(out);
        Ok(s)
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

/// Move a session to `completing`
///
/// The kind's `completing_timeout` (if any) starts; `completing_at` records when.
#[utoipa::path(post, path = "/v1/sessions/{id}/complete", operation_id = "complete_session", tag = "sessions", security(("bearer" = [])),
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
pub async fn complete(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let r = on_live(&app, &p, &id, |core, now, s, change| {
        may_end(&p, s)?;
        let (s, out) = core.engine.complete(now, &id).map_err(engine_err)?;
        change.absorb(out);
        Ok(s)
    })
    .await?;
    r.map(Json).map_err(|ended| ApiError::gone(&ended))
}

/// Close a session from a page unload (`navigator.sendBeacon`)
///
/// No `Authorization` header: the token travels in the body, as JSON `{"token"}` with any
/// content type (sendBeacon sends `text/plain`) or as the bare token. Ends the session with
/// reason `closed`; an ended session answers `204` too.
#[utoipa::path(post, path = "/v1/sessions/{id}/beacon", operation_id = "beacon_session", tag = "sessions",
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
pub async fn beacon(State(app): AppState, Path(id): Path<String>, req: Request) -> Result<StatusCode, ApiError> {
    let bytes = read_body(req).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the beacon body must be UTF-8"))?.trim();
    let token = if text.starts_with('{') {
        super::problem::parse_json::<BeaconBody>(text.as_bytes())?.token
    } else {
        text.to_string()
    };
    if token.is_empty() {
        return Err(ApiError::unauthorized("the beacon body must carry the token: {\"token\":\"…\"}"));
    }
    let p = super::access::authenticate(&app, Some(token))?;
    let _ended_already = on_live(&app, &p, &id, |core, now, s, change| {
        may_end(&p, s)?;
        let (s, out) = core.engine.end(now, &id, EndReason::Closed, None).map_err(engine_err)?;
        change.absorb(out);
        Ok(s)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revive a session
///
/// Brings back a session that ended `idle_timeout` or `disconnected` less than its kind's
/// `revive_window` ago (a user who went quiet, a browser that crashed): `active` again with the
/// same id, owner, metadata, parent and participants, every deadline counted from now
/// (`activated_at` and `last_seen_at` become now, as does the `last_seen_at` of each participant
/// present at the end; the owner is present again; who had left stays left). `session.revived`
/// is published. Like a start, it is subject to the kind's `per_user`: with `reject` a live
/// session of the kind answers `409` with `blocking_session` (send `"on_conflict": "takeover"`
/// to end it `taken_over`), with `replace` the live one ends `superseded`.
///
/// Refused with `409` (its `detail` says why): another end reason (children that ended
/// `parent_ended` come back only on their own terms, never with their parent), the window has
/// closed, the kind has no `revive_window`, the session never became `active` (it ended waiting
/// for its quorum), or its kind ends with its parent (`on_parent_end = "end"`) and the parent is
/// not live. A live session answers `200` unchanged (a retried revive). Only its owner or an API
/// key may revive it. `200` means the revived session is on disk.
#[utoipa::path(post, path = "/v1/sessions/{id}/revive", operation_id = "revive_session", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    request_body(content = Option<ReviveSession>, description = "Optional; an empty body is `{}`."),
    responses(
        (status = 200, description = "The session, `active` again (or unchanged if it was live).", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "A participant who is not the owner, or an invitation token.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 409, description = "Not revived: `detail` says why (another end reason, the window closed, no `revive_window`, never active, parent not live); or `per_user = \"reject\"` and the user holds a live session of the kind: `blocking_session` is it.", body = Problem, content_type = "application/problem+json",
            example = json!({"type":"https://tether.dev/problems/conflict","title":"Conflict","status":409,
                "detail":"the revive window (2m after the end) closed at 2026-11-22T10:07:00.000Z; start a new session"})),
        (status = 413, response = TooLarge),
        (status = 422, description = "`on_conflict` is not `takeover`, or an unknown field; `field` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub async fn revive(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReviveSession>,
) -> Result<Json<Session>, ApiError> {
    let takeover = takeover(body.on_conflict.as_deref())?;
    // An ended session is no longer in the engine: its record is in the store.
    let found = find_session(&app, &p, &id).await?;
    may_revive(&p, &found)?;
    if found.status.is_live() {
        return Ok(Json(found));
    }
    let session = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let (session, _superseded, out) = core.engine.revive(now, found, takeover)?;
            change.absorb(out);
            Ok::<_, ApiError>(session)
        })
        .await?;
    Ok(Json(session))
}

/// Only the owner (or an API key) brings a session back; an invitation token never does.
fn may_revive(p: &Principal, s: &Session) -> Result<(), ApiError> {
    match p {
        Principal::ApiKey => Ok(()),
        Principal::User { id, scope: None } if *id == s.user_id => Ok(()),
        _ => Err(ApiError::forbidden("only the session's owner (or an API key) may revive it")),
    }
}

/// Join a session as a participant
///
/// The caller (or, with an API key, `user_id`) joins; rejoining after leaving is allowed.
/// Reaching the kind's `quorum` moves a `waiting` session to `active`.
#[utoipa::path(post, path = "/v1/sessions/{id}/participants", operation_id = "join_session", tag = "participants", security(("bearer" = [])),
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
pub async fn join(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<JoinSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let user = acting_user(&p, body.user_id.as_deref())?;
    check_name(&body.name)?;
    let r = on_live(&app, &p, &id, |core, now, s, change| {
        not_a_stranger_in_a_call(s, &user)?;
        let (s, out) = core.engine.join(now, &id, &user, body.name).map_err(engine_err)?;
        change.absorb(out);
        Ok(s)
    })
    .await?;
    match r {
        Ok(s) => Ok((StatusCode::CREATED, Json(s))),
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

/// Display names are held to the `maxLength` the schemas state.
fn check_name(name: &Option<String>) -> Result<(), ApiError> {
    if name.as_ref().is_some_and(|n| n.chars().count() > NAME_MAX_CHARS) {
        return Err(ApiError::invalid("name", format!("name is limited to {NAME_MAX_CHARS} characters")));
    }
    Ok(())
}

fn me(p: &Principal) -> Result<String, ApiError> {
    p.user_id()
        .map(str::to_string)
        .ok_or_else(|| ApiError::forbidden("`participants/me` needs a user token (an API key is not a participant)"))
}

/// Heartbeat as a participant
///
/// Refreshes the caller's participant `last_seen_at` (and the session's activity when the kind's
/// `presence` counts it). A participant silent for `participant_idle_timeout` is marked left.
/// With `Prefer: return=minimal` the answer is `204` with the session's new earliest deadline in
/// `Tether-Expires-At`, as for the session heartbeat.
#[utoipa::path(post, path = "/v1/sessions/{id}/participants/me/heartbeat", operation_id = "participant_heartbeat", tag = "participants", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id"), PreferParam),
    responses(
        (status = 200, description = "The session.", body = Session),
        (status = 204, description = "`Prefer: return=minimal` was sent: the heartbeat counted, no body.",
            headers(
                ("Tether-Expires-At" = String, description = "The session's new earliest deadline (its `expires_at`), RFC 3339 UTC with milliseconds; absent when it has no deadline."),
                ("Preference-Applied" = String, description = "`return=minimal`."),
            )),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Called with an API key (`me` needs a user token).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session, one the caller may not see, or the caller is not a present participant.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 410, description = "The session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn participant_heartbeat(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    PreferMinimal(minimal): PreferMinimal,
) -> Result<Response, ApiError> {
    let user = me(&p)?;
    let absent = app.read(|core| {
        core.engine
            .get(&id)
            .is_some_and(|s| may_see(&p, &s) && s.participant(&user).is_none_or(|x| x.left_at.is_some()))
    });
    if absent {
        return Err(ApiError::not_found("participant"));
    }
    if minimal {
        return beat_minimal(&app, &p, &id).await.map(minimal_beat);
    }
    beat(&app, &p, &id).await.map(|s| Json(s).into_response())
}

/// Leave a session
///
/// Marks the caller's participant left (`participant.left`). The session goes on.
#[utoipa::path(delete, path = "/v1/sessions/{id}/participants/me", operation_id = "leave_session", tag = "participants", security(("bearer" = [])),
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
pub async fn leave(State(app): AppState, Caller(p): Caller, Path(id): Path<String>) -> Result<Json<Session>, ApiError> {
    let user = me(&p)?;
    let r = on_live(&app, &p, &id, |core, now, _, change| {
        let (s, out) = core.engine.leave(now, &id, &user).map_err(engine_err)?;
        change.absorb(out);
        Ok(s)
    })
    .await?;
    r.map(Json).map_err(|ended| ApiError::gone(&ended))
}

/// Create an invitation
///
/// Anyone holding the token may join the session without an account.
#[utoipa::path(post, path = "/v1/sessions/{id}/invites", operation_id = "create_invite", tag = "invites", security(("bearer" = [])),
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
pub async fn create_invite(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CreateInvite>,
) -> Result<(StatusCode, Json<Invite>), ApiError> {
    let ttl = body.ttl.as_deref().map(|t| Dur::parse(t).map_err(|e| ApiError::invalid("ttl", e))).transpose()?;
    if ttl == Some(Dur(0)) {
        return Err(ApiError::invalid("ttl", "ttl must be longer than 0"));
    }
    let token = crate::app::random_token(16);
    let r = on_live(&app, &p, &id, |core, now, s, change| {
        if s.kind == CALL {
            return Err(ApiError::conflict("calls are for their two users only: they cannot be joined by invitation"));
        }
        let (invite, expiry, out) = core.engine.create_invite(now, &id, token, ttl).map_err(engine_err)?;
        change.absorb(out);
        Ok(Invite { token: invite.token, expires_at: expiry.map(format_rfc3339), session_id: invite.session_id })
    })
    .await?;
    match r {
        Ok(invite) => Ok((StatusCode::CREATED, Json(invite))),
        Err(ended) => Err(ApiError::gone(&ended)),
    }
}

/// How long an invite's participant token lasts.
const PARTICIPANT_TOKEN_SECS: u64 = 24 * 3600;

/// Join through an invitation
///
/// No authentication: the invitation token is the credential. The guest becomes a participant
/// (`participant_id` = `guest_…`) and receives a user token limited to this session, good for its
/// heartbeat, leave and event endpoints.
#[utoipa::path(post, path = "/v1/invites/{token}/join", operation_id = "join_invite", tag = "invites",
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
pub async fn join_invite(
    State(app): AppState,
    Path(token): Path<String>,
    JsonBody(body): JsonBody<InviteJoin>,
) -> Result<(StatusCode, Json<InviteJoined>), ApiError> {
    check_name(&body.name)?;
    let participant_id = format!("guest_{}", uuid::Uuid::now_v7().simple());
    let session = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let (session, out) = core.engine.join_invite(now, &token, &participant_id, body.name)?;
            change.absorb(out);
            Ok::<_, ApiError>(session)
        })
        .await?;
    let token = app.auth.mint(&participant_id, Some(&session.id), PARTICIPANT_TOKEN_SECS);
    Ok((StatusCode::CREATED, Json(InviteJoined { session, participant_id, token })))
}

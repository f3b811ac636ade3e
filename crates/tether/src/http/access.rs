//! Who is calling and what they may touch: the bearer-token extractor and the
//! visibility rule (a user sees only sessions it owns, is a member of or
//! participates in; anything else is `404`, exactly like a missing session).

use super::problem::ApiError;
use crate::app::App;
use crate::auth::{AuthError, Principal};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::sync::Arc;
use tether_engine::Session;

/// The authenticated caller (`Authorization: Bearer …`).
pub struct Caller(pub Principal);

/// Like [`Caller`], but also accepts `?token=` (SSE and WebSocket, where browsers cannot set headers).
pub struct StreamCaller(pub Principal);

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

fn query_token(parts: &Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

pub fn authenticate(app: &App, token: Option<String>) -> Result<Principal, ApiError> {
    let token = token
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer <API key or user JWT>)"))?;
    app.auth.verify(&token).map_err(|e| match e {
        AuthError::Missing => ApiError::unauthorized("missing bearer token"),
        AuthError::Invalid(why) => ApiError::unauthorized(why),
    })
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, bearer(parts)).map(Caller)
    }
}

impl FromRequestParts<Arc<App>> for StreamCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, bearer(parts).or_else(|| query_token(parts))).map(StreamCaller)
    }
}

pub fn may_see(p: &Principal, s: &Session) -> bool {
    match p {
        Principal::ApiKey => true,
        Principal::User { id, scope } => scope.as_ref().is_none_or(|sid| sid == &s.id) && s.visible_to(id),
    }
}

/// [`may_see`] for a live session, without building its snapshot (the
/// heartbeat path); `None` if the session is not live.
pub fn may_see_live(p: &Principal, engine: &tether_engine::Engine, session_id: &str) -> Option<bool> {
    match p {
        Principal::ApiKey => engine.is_live(session_id).then_some(true),
        Principal::User { id, scope } => {
            let visible = engine.visible_to(session_id, id)?;
            Some(visible && scope.as_ref().is_none_or(|sid| sid == session_id))
        }
    }
}

/// The session as the caller may see it: live from the engine, else from the store.
pub async fn find_session(app: &App, p: &Principal, id: &str) -> Result<Session, ApiError> {
    let live = app.read(|core| core.engine.get(id));
    let session = match live {
        Some(s) => Some(s),
        None => stored(app, id).await?,
    };
    match session {
        Some(s) if may_see(p, &s) => Ok(s),
        _ => Err(ApiError::not_found("session")),
    }
}

/// Reads a session from the store after everything queued is durable, so a
/// session that just ended reads as ended.
pub async fn stored(app: &App, id: &str) -> Result<Option<Session>, ApiError> {
    app.journal.flush().await.map_err(ApiError::unavailable)?;
    app.store.get(id).map_err(|e| ApiError::unavailable(e.to_string()))
}

/// The answer for a session that is not live (or not the caller's) on a hot
/// path that does not wait for the journal: `410` with its end when the store
/// has it ended and the caller may see it (and `is_wanted` accepts it, e.g.
/// "is a call"), else `404` naming `what`.
pub fn ended_or_missing(
    app: &App,
    p: &Principal,
    id: &str,
    what: &str,
    is_wanted: impl Fn(&Session) -> bool,
) -> ApiError {
    match app.store.get(id).ok().flatten() {
        Some(s) if is_wanted(&s) && may_see(p, &s) => ApiError::gone(&s),
        _ => ApiError::not_found(what),
    }
}

/// The user an action is for: the token's user, or `user_id` from the body for API keys.
pub fn acting_user(p: &Principal, body_user: Option<&str>) -> Result<String, ApiError> {
    match (p, body_user) {
        (Principal::ApiKey, Some(u)) if !u.trim().is_empty() && u.len() <= 256 => Ok(u.to_string()),
        (Principal::ApiKey, Some(_)) => Err(ApiError::invalid("user_id", "user_id must be 1..=256 characters")),
        (Principal::ApiKey, None) => {
            Err(ApiError::invalid("user_id", "user_id is required when calling with an API key"))
        }
        (Principal::User { id, .. }, Some(u)) if u != id => {
            Err(ApiError::forbidden("a user token may act only for its own user (user_id must match the token's sub)"))
        }
        (Principal::User { id, .. }, _) => Ok(id.clone()),
    }
}

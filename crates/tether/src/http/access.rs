//! Who is calling and what they may touch: the bearer-token extractor (which
//! also counts the request against the caller's rate limit), the
//! visibility rule (a user sees only sessions it owns, is a member of or
//! participates in; anything else is `404`, exactly like a missing session),
//! and the reads of sessions that are no longer live. Those go to the store,
//! which may be a network round trip (PostgreSQL), so they run on the
//! blocking pool, never on an async worker.

use super::problem::{blocking, ApiError};
use super::rate::CallerKey;
use crate::app::App;
use crate::auth::{check_user_id, AuthError, Principal};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use std::sync::Arc;
use tether_engine::Session;

/// The authenticated caller (`Authorization: Bearer …`).
pub struct Caller(pub Principal);

/// Like [`Caller`], but also accepts `?token=` (SSE and WebSocket, where
/// browsers cannot set headers); carries the caller's rate-limit key, which a
/// WebSocket counts each client message against.
pub struct StreamCaller(pub Principal, pub CallerKey);

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

/// Verifies a bearer token and counts the request against its caller's
/// rate limit: `401` for a bad token (not counted), `429` over the limit.
pub fn authenticate(app: &App, token: Option<String>) -> Result<Principal, ApiError> {
    authenticate_keyed(app, token).map(|(p, _)| p)
}

/// [`authenticate`], also returning the caller's rate-limit key.
pub fn authenticate_keyed(app: &App, token: Option<String>) -> Result<(Principal, CallerKey), ApiError> {
    let token = token
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer <API key or user JWT>)"))?;
    let principal = app.auth.verify(&token, app.clock.now()).map_err(|e| match e {
        AuthError::Missing => ApiError::unauthorized("missing bearer token"),
        AuthError::Invalid(why) => ApiError::invalid_token(why),
    })?;
    let key = CallerKey::of(&principal, &token);
    app.rate.check(&key).map_err(|refusal| refusal.into_problem())?;
    Ok((principal, key))
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
        let (principal, key) = authenticate_keyed(app, bearer(parts).or_else(|| query_token(parts)))?;
        Ok(StreamCaller(principal, key))
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
/// session that just ended reads as ended (with its end reason).
pub async fn stored(app: &App, id: &str) -> Result<Option<Session>, ApiError> {
    app.journal.flush().await.map_err(ApiError::unavailable)?;
    let store = app.store.clone();
    let id = id.to_string();
    blocking(move || store.get(&id)).await
}

/// The answer for a session that a hot path (heartbeat, signal) found not
/// live: `410` with its end when it has ended and the caller may see it (and
/// `is_wanted` accepts it, e.g. "is a call"), else `404` naming `what`.
///
/// The caller saw the session gone from the engine under the core lock, so
/// its end was already queued to the journal; reading the store before that
/// is durable would find the row still live and answer a bare `ended` where
/// the session ended `parent_ended` or `taken_over`. Hence [`stored`], which
/// waits for the journal first. Only this cold path pays for the wait.
pub async fn ended_or_missing(
    app: &App,
    p: &Principal,
    id: &str,
    what: &str,
    is_wanted: impl Fn(&Session) -> bool,
) -> ApiError {
    match stored(app, id).await {
        Ok(Some(s)) if is_wanted(&s) && may_see(p, &s) => ApiError::gone(&s),
        Ok(_) => ApiError::not_found(what),
        Err(e) => e,
    }
}

/// The user an action is for: the token's user, or `user_id` from the body for API keys.
pub fn acting_user(p: &Principal, body_user: Option<&str>) -> Result<String, ApiError> {
    match (p, body_user) {
        (Principal::ApiKey, Some(u)) => match check_user_id(u) {
            Ok(()) => Ok(u.to_string()),
            Err(why) => Err(ApiError::invalid("user_id", format!("user_id {why}"))),
        },
        (Principal::ApiKey, None) => {
            Err(ApiError::invalid("user_id", "user_id is required when calling with an API key"))
        }
        (Principal::User { id, .. }, Some(u)) if u != id => {
            Err(ApiError::forbidden("a user token may act only for its own user (user_id must match the token's sub)"))
        }
        (Principal::User { id, .. }, _) => Ok(id.clone()),
    }
}

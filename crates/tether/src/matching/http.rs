//! Matching and call endpoints (contract section 6), plus the extensions
//! `GET /v1/profiles/{user_id}`, `POST /v1/blocks` and
//! `POST /v1/calls/{id}/webrtc`. Signals and WebRTC reports arriving over the
//! WebSocket share the functions here.

use super::{call_users, Decision, DecisionError};
use crate::app::{App, Core};
use crate::auth::Principal;
use crate::http::access::{acting_user, ended_or_missing, find_session, may_see, Caller};
use crate::http::problem::{ApiError, JsonBody, QueryParams};
use crate::hub::Draft;
use crate::journal::Change;
use crate::wire::matching::{
    Block, Blocked, CallActor, CallJoin, DecisionBody, DecisionResult, MatchEntry, Matches, MatchesQuery,
    MatchingStart, MatchingStarted, NextMatch, NextQuery, Profile, ProfileInput, ReceivedSignal, SignalAccepted,
    SignalBody, SignalList, SignalType, WebrtcSetup,
};
use crate::wire::problem::{BadRequest, MethodNotAllowed, Problem, TooLarge, Unauthorized, Unavailable};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{EndReason, NewSession, Session, Status};
use tether_match::{parse_personality, Preferences, PreferencesInput};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(put_profile, get_profile))
        .routes(routes!(start))
        .routes(routes!(next))
        .routes(routes!(decision))
        .routes(routes!(matches))
        .routes(routes!(block))
        .routes(routes!(get_call))
        .routes(routes!(join_call))
        .routes(routes!(end_call))
        .routes(routes!(post_signal, drain_signals))
        .routes(routes!(webrtc))
}

type AppState = State<Arc<App>>;

fn field_error(e: tether_match::FieldError) -> ApiError {
    ApiError::invalid(&e.field, format!("{}: {}", e.field, e.message))
}

/// The profile owner may write it in demo mode; otherwise only an API key.
fn may_write_profile(app: &App, p: &Principal, user: &str) -> Result<(), ApiError> {
    match p {
        Principal::ApiKey => Ok(()),
        Principal::User { id, scope: None } if app.demo && id == user => Ok(()),
        _ => Err(ApiError::forbidden(
            "profiles are written by the app's backend (API key), or by the user itself when [auth].demo is on",
        )),
    }
}

/// Set a user's matching profile
///
/// An API key may set any user's profile; a user token only its own, and only when `[auth].demo`
/// is on. Setting a profile lets a waiting user be paired.
#[utoipa::path(put, path = "/v1/profiles/{user_id}", operation_id = "put_profile", tag = "matching", security(("bearer" = [])),
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
pub async fn put_profile(
    State(app): AppState,
    Caller(p): Caller,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<Json<Profile>, ApiError> {
    may_write_profile(&app, &p, &user)?;
    let profile = tether_match::Profile::parse(user, body.into()).map_err(field_error)?;
    let shown = Profile::from(&profile);
    app.change(|core: &mut Core, now, change: &mut Change| {
        let Core { engine, matching } = core;
        matching.put_profile(now, profile, engine, change);
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Json(shown))
}

/// Read a matching profile
///
/// Extension. An API key reads any profile; a user its own and its current call partner's.
#[utoipa::path(get, path = "/v1/profiles/{user_id}", operation_id = "get_profile", tag = "matching", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "The profile.", body = Profile),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No profile, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn get_profile(
    State(app): AppState,
    Caller(p): Caller,
    Path(user): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    app.read(|core| {
        let m = &core.matching;
        // A user sees its own profile and its current call partner's.
        let visible = match &p {
            Principal::ApiKey => true,
            Principal::User { id, .. } => {
                id == &user || m.call_of(id).and_then(|c| m.live_call(c)).is_some_and(|call| call.users.contains(&user))
            }
        };
        match m.pool().profile(&user) {
            Some(profile) if visible => Ok(Json(Profile::from(profile))),
            _ => Err(ApiError::not_found("profile")),
        }
    })
}

/// Enter the matching pool
///
/// Starts a `matching` session (kind `matching`: idle 30 s, `disconnect_grace` 5 s, `per_user`
/// replace) for the caller or, with an API key, `user_id`; it replaces the user's previous one
/// (whose waiting or active call then ends `partner_left`). Pairing happens at once when a
/// compatible free user waits: both get `match.found`. Keep the session alive with heartbeats,
/// `GET /v1/matching/next` or an open WebSocket.
#[utoipa::path(post, path = "/v1/matching/start", operation_id = "matching_start", tag = "matching", security(("bearer" = [])),
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
pub async fn start(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<MatchingStart>,
) -> Result<(StatusCode, Json<MatchingStarted>), ApiError> {
    if matches!(&p, Principal::User { scope: Some(_), .. }) {
        return Err(ApiError::forbidden("an invitation token cannot start matching"));
    }
    let user = acting_user(&p, body.user_id.as_deref())?;
    let input = PreferencesInput {
        min_age: body.min_age,
        max_age: body.max_age,
        preferred_interests: body.preferred_interests,
        personality_weight: body.personality_weight,
    };
    let prefs = Preferences::parse(input).map_err(field_error)?;
    let metadata = json!({"preferences": prefs.to_input()});
    let session = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let Core { engine, matching } = core;
            let req = NewSession {
                id: crate::app::new_id(),
                kind: MATCHING.into(),
                owner: user.clone(),
                metadata,
                ..NewSession::default()
            };
            let (session, _, out) = engine.create(now, req)?;
            change.absorb(out);
            // React to the superseded session first (its call ends partner_left), then enter.
            matching.settle(now, engine, change);
            if matching.call_of(&user).is_none() {
                matching.enter(now, &user, &session.id, prefs, engine, change);
            }
            Ok::<_, ApiError>(session)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(MatchingStarted { session_id: session.id.clone(), status: session.status, session })))
}

/// Poll for a match
///
/// Also a heartbeat of the matching session. `match_found` is true while the user's call is
/// waiting or active; otherwise `awaiting_decision` names a call whose decision is owed.
#[utoipa::path(get, path = "/v1/matching/next", operation_id = "matching_next", tag = "matching", security(("bearer" = [])),
    params(NextQuery),
    responses(
        (status = 200, description = "The match, if any.", body = NextMatch),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such session, or one the caller may not see.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 410, description = "The matching session has ended: `end_reason` says why.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`session_id` missing or not a `matching` session; `field` names it.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn next(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<NextQuery>,
) -> Result<Json<NextMatch>, ApiError> {
    let id =
        q.session_id.ok_or_else(|| ApiError::invalid("session_id", "session_id is required (the matching session)"))?;
    let session = crate::http::sessions::beat(&app, &p, &id).await?;
    if session.kind != MATCHING {
        return Err(ApiError::invalid("session_id", "session_id must name a matching session"));
    }
    let answer = app.read(|core| {
        let m = &core.matching;
        if let Some(call_id) = m.call_of(&session.user_id) {
            if let Some(call) = m.live_call(call_id) {
                let partner = call.users.iter().find(|u| **u != session.user_id).cloned().unwrap_or_default();
                let found = m.match_info(call_id, &partner, call.score);
                return NextMatch { match_found: true, found: Some(found), awaiting_decision: None };
            }
        }
        NextMatch { match_found: false, found: None, awaiting_decision: m.owing(&session.user_id).map(str::to_string) }
    });
    Ok(Json(answer))
}

/// The call as the caller may see it, or 404 (also for sessions that are not calls).
async fn find_call(app: &App, p: &Principal, id: &str) -> Result<Session, ApiError> {
    let s = find_session(app, p, id).await?;
    if s.kind != CALL {
        return Err(ApiError::not_found("call"));
    }
    Ok(s)
}

fn cancelled(s: &Session) -> bool {
    s.end_reason == Some(EndReason::PartnerLeft)
}

/// Read a call
///
/// A call is a session of kind `call` (quorum 2, `waiting_timeout` 60 s, `max_duration` 180 s)
/// created by matching for two users (`members`) with nobody joined; its owner (`user_id`) is the
/// user who waited longer. Both users may read it.
#[utoipa::path(get, path = "/v1/calls/{id}", operation_id = "get_call", tag = "calls", security(("bearer" = [])),
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
pub async fn get_call(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    if cancelled(&s) {
        return Err(ApiError::gone(&s));
    }
    Ok(Json(s))
}

/// Which of the call's users acts: the token's user, or `user_id` for API keys.
fn call_member(p: &Principal, s: &Session, body_user: Option<&str>) -> Result<String, ApiError> {
    let user = match (p, body_user) {
        (Principal::ApiKey, None) => {
            return Err(ApiError::invalid("user_id", "user_id (one of the call's users) is required with an API key"))
        }
        _ => acting_user(p, body_user)?,
    };
    if call_users(s).is_some_and(|u| u.contains(&user)) {
        Ok(user)
    } else {
        Err(ApiError::not_found("call"))
    }
}

/// Join a call
///
/// The user becomes a participant; the call's quorum counts users who joined, so its timer
/// (`max_duration`) starts on the second join.
#[utoipa::path(post, path = "/v1/calls/{id}/join", operation_id = "join_call", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call (session) id")),
    request_body(content = Option<CallActor>, description = "Needed with an API key only; may be empty otherwise."),
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
pub async fn join_call(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CallActor>,
) -> Result<Json<CallJoin>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    let user = call_member(&p, &s, body.user_id.as_deref())?;
    if !s.status.is_live() {
        return Err(ApiError::gone(&s));
    }
    let joined = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let name = core.matching.pool().profile(&user).map(|p| p.name().to_string());
            let (session, out) = core.engine.join(now, &id, &user, name)?;
            change.absorb(out);
            Ok::<_, ApiError>(session)
        })
        .await;
    let session = match joined {
        Ok(s) => s,
        Err(e) if e.status == StatusCode::NOT_FOUND => return Err(ApiError::gone(&find_call(&app, &p, &id).await?)),
        Err(e) => return Err(e),
    };
    let active = session.status == Status::Active;
    Ok(Json(CallJoin {
        timer_started: active,
        ends_at: if active { session.expires_at.map(tether_engine::time::format_rfc3339) } else { None },
        session,
    }))
}

/// End a call
///
/// Ends the call for both users with reason `ended`; from then on it answers `200` (as any ended
/// session), while a call cancelled because the partner left answers `410`.
#[utoipa::path(post, path = "/v1/calls/{id}/end", operation_id = "end_call", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call (session) id")),
    request_body(content = Option<CallActor>, description = "Needed with an API key only; may be empty otherwise."),
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
pub async fn end_call(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CallActor>,
) -> Result<Json<Session>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    call_member(&p, &s, body.user_id.as_deref())?;
    if cancelled(&s) {
        return Err(ApiError::gone(&s));
    }
    if !s.status.is_live() {
        return Ok(Json(s));
    }
    let ended = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let (session, out) = core.engine.end(now, &id, EndReason::Ended, None)?;
            change.absorb(out);
            Ok::<_, ApiError>(session)
        })
        .await;
    match ended {
        Ok(s) => Ok(Json(s)),
        // It ended meanwhile: answer as for any ended call.
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let s = find_call(&app, &p, &id).await?;
            if cancelled(&s) {
                Err(ApiError::gone(&s))
            } else {
                Ok(Json(s))
            }
        }
        Err(e) => Err(e),
    }
}

/// A signal's `data` is at most this many bytes of JSON (SDP offers are a few KB).
const SIGNAL_DATA_LIMIT: usize = 32 * 1024;

/// Send a WebRTC signal
///
/// Delivered to the other user only: as a `call.signal` event, and queued for its
/// `GET /v1/calls/{id}/signals`. Not durable.
#[utoipa::path(post, path = "/v1/calls/{id}/signals", operation_id = "send_signal", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call (session) id")),
    request_body = SignalBody,
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
pub async fn post_signal(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<(StatusCode, Json<SignalAccepted>), ApiError> {
    relay_signal(&app, &p, &id, body).await?;
    Ok((StatusCode::ACCEPTED, Json(SignalAccepted { accepted: true })))
}

/// Relays a signal from `p` (HTTP or the WebSocket `signal` message) to the call's other user.
pub async fn relay_signal(app: &Arc<App>, p: &Principal, call_id: &str, body: SignalBody) -> Result<(), ApiError> {
    let kind = SignalType::parse(&body.kind).ok_or_else(|| {
        ApiError::invalid("type", format!("type must be one of offer, answer, ice-candidate, not {:?}", body.kind))
    })?;
    let data = match body.data {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ApiError::invalid("data", "data must be a JSON object")),
        None => return Err(ApiError::invalid("data", "data is required")),
    };
    if serde_json::to_string(&data).map_or(0, |s| s.len()) > SIGNAL_DATA_LIMIT {
        return Err(ApiError::invalid("data", format!("data is limited to {SIGNAL_DATA_LIMIT} bytes")));
    }
    // The signal event goes through the journal like every event: into the
    // event log, so every cluster node's subscribers see it, in order.
    let relayed = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let Some(session) = core.engine.get(call_id).filter(|s| s.kind == CALL && may_see(p, s)) else {
                return Ok(false);
            };
            let from = call_member(p, &session, body.user_id.as_deref())?;
            let signal =
                ReceivedSignal { kind, data, from: from.clone(), at: tether_engine::time::format_rfc3339(now) };
            let event_signal = serde_json::to_value(&signal).unwrap_or(Value::Null);
            let to = core.matching.relay(call_id, &from, signal).ok_or_else(|| ApiError::not_found("call"))?;
            app.metrics.count_signal_relayed();
            let mut draft = Draft::new(tether_engine::EventType::CallSignal, now, session).with("signal", event_signal);
            draft.audience = Some(vec![to]);
            change.events.push(draft);
            Ok::<_, ApiError>(true)
        })
        .detach()?;
    if relayed {
        Ok(())
    } else {
        Err(ended_or_missing(app, p, call_id, "call", |s| s.kind == CALL).await)
    }
}

/// Drain waiting signals
///
/// The signals waiting for the caller, in order; this read removes them.
#[utoipa::path(get, path = "/v1/calls/{id}/signals", operation_id = "drain_signals", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path, description = "Call (session) id"), CallActor),
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
pub async fn drain_signals(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<CallActor>,
) -> Result<Json<SignalList>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    let user = call_member(&p, &s, q.user_id.as_deref())?;
    if cancelled(&s) {
        return Err(ApiError::gone(&s));
    }
    // Draining changes only the in-memory queues: nothing to make durable.
    let signals = app
        .change(|core: &mut Core, _now, _change: &mut Change| Ok::<_, ApiError>(core.matching.drain(&id, &user)))
        .detach()?;
    Ok(Json(SignalList { signals }))
}

/// Report WebRTC set-up time
///
/// Extension: the caller's peer connection is up; `setup_ms` feeds the WebRTC set-up metric.
/// The WebSocket message `webrtc.connected` does the same.
#[utoipa::path(post, path = "/v1/calls/{id}/webrtc", operation_id = "report_webrtc", tag = "calls", security(("bearer" = [])),
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
pub async fn webrtc(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WebrtcSetup>,
) -> Result<StatusCode, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    call_member(&p, &s, body.user_id.as_deref())?;
    observe_setup(&app, body.setup_ms)?;
    Ok(StatusCode::NO_CONTENT)
}

fn observe_setup(app: &App, ms: f64) -> Result<(), ApiError> {
    if !ms.is_finite() || !(0.0..=600_000.0).contains(&ms) {
        return Err(ApiError::invalid("setup_ms", "setup_ms must be a number of milliseconds between 0 and 600000"));
    }
    app.metrics.webrtc_setup.observe(ms / 1000.0);
    Ok(())
}

/// A WebRTC set-up report from the WebSocket: `{"type":"webrtc.connected","call_id","setup_ms"}`.
pub async fn record_setup(app: &Arc<App>, p: &Principal, call: &str, ms: f64) -> Result<(), ApiError> {
    let live = app.read(|core| core.engine.get(call));
    let session = match live {
        Some(s) => Some(s),
        None => {
            let (store, id) = (app.store.clone(), call.to_string());
            tokio::task::spawn_blocking(move || store.get(&id).ok().flatten()).await.ok().flatten()
        }
    }
    .filter(|s| s.kind == CALL && may_see(p, s))
    .ok_or_else(|| ApiError::not_found("call"))?;
    call_member(p, &session, None).or_else(|e| if p.is_api_key() { Ok(String::new()) } else { Err(e) })?;
    observe_setup(app, ms)
}

/// Decide after a call
///
/// Owed by both users of a call that became active, once it ended. `skip` records a pass; `continue`
/// from both is a mutual match (`match.mutual` to each). Deciding returns the user to the pool
/// (otherwise it returns after the `matching` kind's `decision_timeout`, default 30 s).
#[utoipa::path(post, path = "/v1/matching/decision", operation_id = "matching_decision", tag = "matching", security(("bearer" = [])),
    request_body = DecisionBody,
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
pub async fn decision(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<DecisionResult>, ApiError> {
    let decision = match body.decision.as_str() {
        "skip" => Decision::Skip,
        "continue" => Decision::Continue,
        other => {
            return Err(ApiError::invalid(
                "decision",
                format!("decision must be \"skip\" or \"continue\", not {other:?}"),
            ))
        }
    };
    let rating = body
        .personality_rating
        .as_deref()
        .map(|r| parse_personality("personality_rating", r).map_err(field_error))
        .transpose()?;
    let call = find_call(&app, &p, &body.call_id).await?;
    let user = call_member(&p, &call, body.user_id.as_deref())?;
    if call.status.is_live() {
        return Err(ApiError::conflict("the call is still live: decide after it ends")
            .with("call_status", Value::from(call.status.as_str())));
    }
    if call.activated_at.is_none() {
        return Err(ApiError::conflict(
            "the call never became active: no decision is owed, both users are back in the pool",
        ));
    }
    let call_id = body.call_id.clone();
    let mutual = app
        .change(|core: &mut Core, now, change: &mut Change| {
            let Core { engine, matching } = core;
            matching.decide(now, &user, &call_id, decision, rating, engine, change).map_err(|e| match e {
                DecisionError::NotOwed => {
                    ApiError::conflict("no decision is owed on this call any more (its decision window passed)")
                }
                DecisionError::AlreadyDecided(d) => {
                    ApiError::conflict(format!("you already decided {d:?} on this call"))
                }
                DecisionError::Invalid(field, msg) => ApiError::invalid(&field, msg),
            })
        })
        .await?;
    Ok(Json(DecisionResult { call_id: body.call_id, decision, mutual }))
}

/// List mutual matches
#[utoipa::path(get, path = "/v1/matches", operation_id = "list_matches", tag = "matching", security(("bearer" = [])),
    params(MatchesQuery),
    responses(
        (status = 200, description = "The mutual matches, oldest first.", body = Matches),
        (status = 401, response = Unauthorized),
        (status = 403, description = "A user token naming another user in `user_id`.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 422, description = "`user_id` missing with an API key; `field` names it.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn matches(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<MatchesQuery>,
) -> Result<Json<Matches>, ApiError> {
    let user = acting_user(&p, q.user_id.as_deref())?;
    let matches = app.read(|core| {
        core.matching
            .matches_of(&user)
            .into_iter()
            .map(|(other, at)| MatchEntry {
                name: core.matching.pool().profile(&other).map(|p| p.name().to_string()),
                user_id: other,
                matched_at: tether_engine::time::format_rfc3339(at),
            })
            .collect()
    });
    Ok(Json(Matches { matches }))
}

/// Block a user
///
/// Extension: the two users are never paired again, for good.
#[utoipa::path(post, path = "/v1/blocks", operation_id = "create_block", tag = "matching", security(("bearer" = [])),
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
pub async fn block(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<Block>,
) -> Result<Json<Blocked>, ApiError> {
    // The blocker is `by` here (`user_id` names the blocked user): say so in errors.
    let me = acting_user(&p, body.by.as_deref()).map_err(|e| match e.status {
        StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::invalid("by", e.detail.replace("user_id", "by (the user who blocks)"))
        }
        _ => e,
    })?;
    let other = body.user_id.trim().to_string();
    if other.is_empty() || other == me {
        return Err(ApiError::invalid("user_id", "user_id must name another user"));
    }
    app.change(|core: &mut Core, _now, change: &mut Change| {
        core.matching.block(&me, &other, change);
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Json(Blocked { blocked: other, by: me }))
}

//! Matching and call endpoints (contract section 6), plus the extensions
//! `GET /v1/profiles/{user_id}`, `POST /v1/blocks` and
//! `POST /v1/calls/{id}/webrtc`. Signals and WebRTC reports arriving over the
//! WebSocket share the functions here.

use super::{call_users, Decision, DecisionError, Signal};
use crate::app::{App, Core};
use crate::auth::Principal;
use crate::http::access::{acting_user, ended_or_missing, find_session, may_see, Caller};
use crate::http::problem::{ApiError, JsonBody, QueryParams};
use crate::hub::Draft;
use crate::journal::Change;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{EndReason, NewSession, Session, Status};
use tether_match::{parse_personality, Preferences, PreferencesInput, Profile, ProfileInput};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/profiles/{user_id}", put(put_profile).get(get_profile))
        .route("/v1/matching/start", post(start))
        .route("/v1/matching/next", get(next))
        .route("/v1/matching/decision", post(decision))
        .route("/v1/matches", get(matches))
        .route("/v1/blocks", post(block))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/calls/{id}/join", post(join_call))
        .route("/v1/calls/{id}/end", post(end_call))
        .route("/v1/calls/{id}/signals", post(post_signal).get(drain_signals))
        .route("/v1/calls/{id}/webrtc", post(webrtc))
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

pub async fn put_profile(
    State(app): AppState,
    Caller(p): Caller,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<Json<Value>, ApiError> {
    may_write_profile(&app, &p, &user)?;
    let profile = Profile::parse(user, body).map_err(field_error)?;
    let shown = serde_json::to_value(&profile).unwrap_or(Value::Null);
    app.run(|core: &mut Core, now, change: &mut Change| {
        let Core { engine, matching } = core;
        matching.put_profile(now, profile, engine, change);
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Json(shown))
}

pub async fn get_profile(
    State(app): AppState,
    Caller(p): Caller,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let core = app.core.lock();
    let m = &core.matching;
    // A user sees its own profile and its current call partner's.
    let visible = match &p {
        Principal::ApiKey => true,
        Principal::User { id, .. } => {
            id == &user || m.call_of(id).and_then(|c| m.live_call(c)).is_some_and(|call| call.users.contains(&user))
        }
    };
    match m.pool().profile(&user) {
        Some(profile) if visible => Ok(Json(serde_json::to_value(profile).unwrap_or(Value::Null))),
        _ => Err(ApiError::not_found("profile")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    min_age: Option<i64>,
    max_age: Option<i64>,
    preferred_interests: Option<Vec<String>>,
    personality_weight: Option<f64>,
    /// API key only: the user who enters the pool.
    user_id: Option<String>,
}

pub async fn start(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
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
        .run(|core: &mut Core, now, change: &mut Change| {
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
    Ok((StatusCode::CREATED, Json(json!({"session_id": session.id, "status": session.status, "session": session})))
        .into_response())
}

#[derive(Deserialize)]
pub struct NextQuery {
    session_id: Option<String>,
}

pub async fn next(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<NextQuery>,
) -> Result<Json<Value>, ApiError> {
    let id =
        q.session_id.ok_or_else(|| ApiError::invalid("session_id", "session_id is required (the matching session)"))?;
    let session = crate::http::sessions::beat(&app, &p, &id).await?;
    if session.kind != MATCHING {
        return Err(ApiError::invalid("session_id", "session_id must name a matching session"));
    }
    let core = app.core.lock();
    let m = &core.matching;
    if let Some(call_id) = m.call_of(&session.user_id) {
        if let Some(call) = m.live_call(call_id) {
            let partner = call.users.iter().find(|u| **u != session.user_id).cloned().unwrap_or_default();
            return Ok(Json(json!({"match_found": true, "match": m.match_info(call_id, &partner, call.score)})));
        }
    }
    Ok(Json(match m.owing(&session.user_id) {
        Some(call) => json!({"match_found": false, "awaiting_decision": call}),
        None => json!({"match_found": false}),
    }))
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CallActor {
    user_id: Option<String>,
}

pub async fn join_call(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CallActor>,
) -> Result<Json<Value>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    let user = call_member(&p, &s, body.user_id.as_deref())?;
    if !s.status.is_live() {
        return Err(ApiError::gone(&s));
    }
    let joined = app
        .run(|core: &mut Core, now, change: &mut Change| {
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
    Ok(Json(json!({
        "timer_started": active,
        "ends_at": if active { session.expires_at.map(tether_engine::time::format_rfc3339) } else { None },
        "session": session,
    })))
}

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
        .run(|core: &mut Core, now, change: &mut Change| {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    #[serde(rename = "type")]
    kind: String,
    data: Option<Value>,
    /// API key only: which of the call's users sends it.
    user_id: Option<String>,
}

pub const SIGNAL_TYPES: [&str; 3] = ["offer", "answer", "ice-candidate"];
/// A signal's `data` is at most this many bytes of JSON (SDP offers are a few KB).
const SIGNAL_DATA_LIMIT: usize = 32 * 1024;

pub async fn post_signal(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Response, ApiError> {
    relay_signal(&app, &p, &id, body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response())
}

/// A signal from the WebSocket: `{"type":"signal","call_id","signal":{"type","data"}}`.
pub async fn relay_signal_value(app: &Arc<App>, p: &Principal, call: &str, signal: Value) -> Result<(), ApiError> {
    let body: SignalBody =
        serde_json::from_value(signal).map_err(|e| ApiError::invalid("signal", format!("signal: {e}")))?;
    relay_signal(app, p, call, body).await
}

async fn relay_signal(app: &App, p: &Principal, call_id: &str, body: SignalBody) -> Result<(), ApiError> {
    if !relay_live(app, p, call_id, body)? {
        return Err(ended_or_missing(app, p, call_id, "call", |s| s.kind == CALL).await);
    }
    Ok(())
}

/// Relays under the core lock; `false` when the call is not live (or not the caller's).
fn relay_live(app: &App, p: &Principal, call_id: &str, body: SignalBody) -> Result<bool, ApiError> {
    if !SIGNAL_TYPES.contains(&body.kind.as_str()) {
        return Err(ApiError::invalid(
            "type",
            format!("type must be one of offer, answer, ice-candidate, not {:?}", body.kind),
        ));
    }
    let data = match body.data {
        Some(d @ Value::Object(_)) => d,
        Some(_) => return Err(ApiError::invalid("data", "data must be a JSON object")),
        None => return Err(ApiError::invalid("data", "data is required")),
    };
    if data.to_string().len() > SIGNAL_DATA_LIMIT {
        return Err(ApiError::invalid("data", format!("data is limited to {SIGNAL_DATA_LIMIT} bytes")));
    }
    let mut core = app.core.lock();
    let now = app.now();
    app.catch_up(&mut core, now);
    let Some(session) = core.engine.get(call_id).filter(|s| s.kind == CALL && may_see(p, s)) else {
        return Ok(false);
    };
    let from = call_member(p, &session, body.user_id.as_deref())?;
    let signal = Signal { kind: body.kind, data, from: from.clone(), at: now };
    let json_signal = signal.to_json();
    let to = core.matching.relay(call_id, &from, signal).ok_or_else(|| ApiError::not_found("call"))?;
    app.metrics.count_signal_relayed();
    let mut draft = Draft::new(tether_engine::EventType::CallSignal, now, session).with("signal", json_signal);
    draft.audience = Some(vec![to]);
    // Signals are not durable: straight to the hub, in order, without waiting for a commit.
    app.hub.publish(vec![draft]);
    Ok(true)
}

pub async fn drain_signals(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<CallActor>,
) -> Result<Json<Value>, ApiError> {
    let s = find_call(&app, &p, &id).await?;
    let user = call_member(&p, &s, q.user_id.as_deref())?;
    if cancelled(&s) {
        return Err(ApiError::gone(&s));
    }
    let signals: Vec<Value> = app.core.lock().matching.drain(&id, &user).iter().map(Signal::to_json).collect();
    Ok(Json(json!({ "signals": signals })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    setup_ms: f64,
    user_id: Option<String>,
}

pub async fn webrtc(
    State(app): AppState,
    Caller(p): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetupBody>,
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
pub fn record_setup(app: &Arc<App>, p: &Principal, call: &str, ms: f64) -> Result<(), ApiError> {
    let session = {
        let core = app.core.lock();
        core.engine.get(call)
    }
    .or_else(|| app.store.get(call).ok().flatten())
    .filter(|s| s.kind == CALL && may_see(p, s))
    .ok_or_else(|| ApiError::not_found("call"))?;
    call_member(p, &session, None).or_else(|e| if p.is_api_key() { Ok(String::new()) } else { Err(e) })?;
    observe_setup(app, ms)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    call_id: String,
    decision: String,
    personality_rating: Option<Vec<f64>>,
    user_id: Option<String>,
}

pub async fn decision(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<DecisionBody>,
) -> Result<Json<Value>, ApiError> {
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
        .run(|core: &mut Core, now, change: &mut Change| {
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
    Ok(Json(json!({"call_id": body.call_id, "decision": decision.as_str(), "mutual": mutual})))
}

#[derive(Deserialize)]
pub struct MatchesQuery {
    user_id: Option<String>,
}

pub async fn matches(
    State(app): AppState,
    Caller(p): Caller,
    QueryParams(q): QueryParams<MatchesQuery>,
) -> Result<Json<Value>, ApiError> {
    let user = acting_user(&p, q.user_id.as_deref())?;
    let core = app.core.lock();
    let list: Vec<Value> = core
        .matching
        .matches_of(&user)
        .into_iter()
        .map(|(other, at)| {
            json!({"user_id": other, "name": core.matching.pool().profile(&other).map(|p| p.name()),
                   "matched_at": tether_engine::time::format_rfc3339(at)})
        })
        .collect();
    Ok(Json(json!({ "matches": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// The user to block.
    user_id: String,
    /// API key only: who blocks.
    by: Option<String>,
}

pub async fn block(
    State(app): AppState,
    Caller(p): Caller,
    JsonBody(body): JsonBody<BlockBody>,
) -> Result<Json<Value>, ApiError> {
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
    app.run(|core: &mut Core, _now, change: &mut Change| {
        core.matching.block(&me, &other, change);
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Json(json!({"blocked": other, "by": me})))
}

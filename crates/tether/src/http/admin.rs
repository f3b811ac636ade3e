//! Operations endpoints (contract section 7): health report, cleanup dry run
//! and execution (API keys only), plus the kinds listing the SDK reads.

use super::access::Caller;
use super::problem::ApiError;
use crate::app::App;
use crate::auth::Principal;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tether_engine::{time::format_rfc3339, EndReason};

fn admin_only(p: &Principal) -> Result<(), ApiError> {
    if p.is_api_key() {
        Ok(())
    } else {
        Err(ApiError::forbidden("admin endpoints need an API key"))
    }
}

pub async fn health(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    Ok(Json(health_report(&app)))
}

pub fn health_report(app: &App) -> Value {
    let now = app.now();
    let core = app.core.lock();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, status) in core.engine.live_kinds() {
        *by_status.entry(status.as_str()).or_default() += 1;
        *by_kind.entry(kind.to_string()).or_default() += 1;
    }
    let overdue = core.engine.overdue(now);
    let orphans = core.engine.orphans();
    let pool = core.matching.pool_size();
    drop(core);
    let mut problems = Vec::new();
    let mut recommendations = Vec::new();
    // A deadline-driven end is late if it is overdue by more than the 100 ms promise.
    let late: Vec<&(String, EndReason, i64)> = overdue.iter().filter(|(_, _, at)| now - at > 100).collect();
    if !late.is_empty() {
        problems.push(json!({"code":"overdue_sessions","detail":format!("{} live session(s) are past a deadline by more than 100 ms", late.len()),
            "sessions": late.iter().take(20).map(|(id, r, at)| json!({"id":id,"reason":r.as_str(),"deadline":format_rfc3339(*at)})).collect::<Vec<_>>()}));
        recommendations.push("The deadline timer is stalled or overloaded: check CPU saturation and logs; POST /v1/admin/cleanup ends overdue sessions now.".to_string());
    }
    if !orphans.is_empty() {
        problems.push(json!({"code":"orphan_sessions","detail":format!("{} live session(s) have an ended parent", orphans.len()),"sessions":orphans.iter().take(20).collect::<Vec<_>>()}));
        recommendations.push("POST /v1/admin/cleanup ends orphaned children with parent_ended.".to_string());
    }
    if let Some(p99) = app.metrics.expiry_lateness.quantile_bound(0.99) {
        if p99 > 0.1 {
            problems.push(json!({"code":"expiry_lateness","detail":format!("p99 expiry lateness is above 100 ms (bucket ≤ {p99} s)")}));
            recommendations
                .push("Expiry is late: the machine may be saturated; see tether_expiry_lateness_seconds.".to_string());
        }
    }
    let live: usize = by_status.values().sum();
    json!({
        "health": if problems.is_empty() { "healthy" } else { "degraded" },
        "sessions": {"total": live, "by_status": by_status, "by_kind": by_kind, "overdue": late.len()},
        "matching": {"pool": pool},
        "store": app.store.describe(),
        "expiry_lateness_p99_le_seconds": app.metrics.expiry_lateness.quantile_bound(0.99),
        "problems": problems,
        "recommendations": recommendations,
    })
}

pub async fn cleanup_preview(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let now = app.now();
    let (would_end, orphans, expired_invites) = {
        let core = app.core.lock();
        let would_end: Vec<Value> =
            core.engine.overdue(now).into_iter().map(|(id, r, _)| json!({"id": id, "reason": r.as_str()})).collect();
        (would_end, core.engine.orphans(), core.engine.dead_invites(now).len())
    };
    let app2 = app.clone();
    let purgeable = tokio::task::spawn_blocking(move || app2.purge(true))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(
        json!({"would_end": would_end, "orphans": orphans, "expired_invites": expired_invites, "purgeable": purgeable}),
    ))
}

pub async fn cleanup_execute(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<Value>, ApiError> {
    admin_only(&p)?;
    let (ended, orphans, invites, ack) = {
        let mut core = app.core.lock();
        let now = app.now();
        let mut change = core.tick(now);
        let ended = change.events.iter().filter(|e| e.event_type == tether_engine::EventType::Ended).count();
        let orphan_ids = core.engine.orphans();
        for id in &orphan_ids {
            if let Ok((_, out)) = core.engine.end(now, id, EndReason::ParentEnded, None) {
                change.absorb(out);
            }
        }
        let dead = core.engine.dead_invites(now);
        change.absorb(core.engine.remove_invites(&dead));
        let ack = app.commit(&mut core, now, change);
        (ended, orphan_ids.len(), dead.len(), ack)
    };
    ack.wait().await.map_err(ApiError::unavailable)?;
    let app2 = app.clone();
    let purged = tokio::task::spawn_blocking(move || app2.purge(false))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({"ended": ended, "orphans": orphans, "purged": purged, "expired_invites": invites})))
}

/// Extension: the kinds in force, so clients can derive heartbeat intervals.
pub async fn kinds(State(app): State<Arc<App>>, Caller(_p): Caller) -> Json<Value> {
    let core = app.core.lock();
    let ms = |d: Option<tether_engine::Dur>| d.map(|d| d.0);
    let kinds: Vec<Value> = core
        .engine
        .kinds()
        .iter()
        .map(|k| {
            json!({
                "name": k.name, "idle_timeout_ms": ms(k.idle_timeout), "max_duration_ms": ms(k.max_duration),
                "waiting_timeout_ms": ms(k.waiting_timeout), "completing_timeout_ms": ms(k.completing_timeout),
                "disconnect_grace_ms": ms(k.disconnect_grace), "participant_idle_timeout_ms": ms(k.participant_idle_timeout),
                "invite_ttl_ms": ms(k.invite_ttl), "retention_ms": k.retention.0, "decision_timeout_ms": ms(k.decision_timeout),
                "per_user": k.per_user, "quorum": k.quorum, "presence": k.presence, "on_parent_end": k.on_parent_end,
            })
        })
        .collect();
    Json(json!({ "kinds": kinds }))
}

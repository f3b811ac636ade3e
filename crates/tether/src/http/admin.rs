//! Operations endpoints (contract section 7): health report, cleanup dry run
//! and execution (API keys only), plus the kinds listing the SDK reads.

use super::access::Caller;
use super::problem::ApiError;
use crate::app::{App, Core};
use crate::auth::Principal;
use crate::journal::Change;
use crate::wire::admin::{
    AffectedSession, CleanupPreview, CleanupResult, Health, HealthProblem, HealthReport, KindInfo, Kinds,
    MatchingHealth, OverdueSession, ProblemCode, SessionCounts, WouldEnd,
};
use crate::wire::problem::{MethodNotAllowed, Problem, Unauthorized, Unavailable};
use axum::extract::State;
use axum::Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tether_engine::{time::format_rfc3339, EndReason};

pub(super) fn admin_only(p: &Principal) -> Result<(), ApiError> {
    if p.is_api_key() {
        Ok(())
    } else {
        Err(ApiError::forbidden("admin endpoints need an API key"))
    }
}

/// Health report
///
/// `overdue` counts live sessions past a deadline (should always be 0); `problems` and
/// `recommendations` say what is wrong and what to do.
#[utoipa::path(get, path = "/v1/admin/health", operation_id = "admin_health", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The report.", body = HealthReport),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn health(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<HealthReport>, ApiError> {
    admin_only(&p)?;
    let mut report = health_report(&app);
    report.nodes = super::cluster::nodes(&app).await?;
    Ok(Json(report))
}

pub fn health_report(app: &App) -> HealthReport {
    let now = app.now();
    let (by_status, by_kind, overdue, orphans, pool) = app.read(|core| {
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        // O(kinds): the engine keeps these counts as sessions change, and
        // `overdue` reads the deadline queue's head, so a health check costs
        // the same at 10 sessions and at a million.
        for (kind, status, n) in core.engine.live_counts().filter(|(_, _, n)| *n > 0) {
            *by_status.entry(status.as_str().to_string()).or_default() += n as u64;
            *by_kind.entry(kind.to_string()).or_default() += n as u64;
        }
        (by_status, by_kind, core.engine.overdue(now), core.engine.orphans(), core.matching.pool_size())
    });
    let mut problems = Vec::new();
    let mut recommendations = Vec::new();
    // A deadline-driven end is late if it is overdue by more than the 100 ms promise.
    let late: Vec<&(String, EndReason, i64)> = overdue.iter().filter(|(_, _, at)| now - at > 100).collect();
    if !late.is_empty() {
        problems.push(HealthProblem {
            code: ProblemCode::OverdueSessions,
            detail: format!("{} live session(s) are past a deadline by more than 100 ms", late.len()),
            sessions: Some(
                late.iter()
                    .take(20)
                    .map(|(id, reason, at)| {
                        AffectedSession::Overdue(OverdueSession {
                            id: id.clone(),
                            reason: *reason,
                            deadline: format_rfc3339(*at),
                        })
                    })
                    .collect(),
            ),
        });
        recommendations.push("The deadline timer is stalled or overloaded: check CPU saturation and logs; POST /v1/admin/cleanup ends overdue sessions now.".to_string());
    }
    if !orphans.is_empty() {
        problems.push(HealthProblem {
            code: ProblemCode::OrphanSessions,
            detail: format!("{} live session(s) have an ended parent", orphans.len()),
            sessions: Some(orphans.iter().take(20).cloned().map(AffectedSession::Orphan).collect()),
        });
        recommendations.push("POST /v1/admin/cleanup ends orphaned children with parent_ended.".to_string());
    }
    let lateness_p99 = app.metrics.expiry_lateness.quantile_bound(0.99);
    if let Some(p99) = lateness_p99 {
        if p99 > 0.1 {
            problems.push(HealthProblem {
                code: ProblemCode::ExpiryLateness,
                detail: format!("p99 expiry lateness is above 100 ms (bucket ≤ {p99} s)"),
                sessions: None,
            });
            recommendations
                .push("Expiry is late: the machine may be saturated; see tether_expiry_lateness_seconds.".to_string());
        }
    }
    let total = by_status.values().sum();
    HealthReport {
        health: if problems.is_empty() { Health::Healthy } else { Health::Degraded },
        sessions: SessionCounts { total, by_status, by_kind, overdue: late.len() as u64 },
        matching: MatchingHealth { pool: pool as u64 },
        store: app.store.describe(),
        expiry_lateness_p99_le_seconds: lateness_p99,
        problems,
        recommendations,
        nodes: Vec::new(),
    }
}

/// Counts (dry run) or purges ended sessions past retention, off the async worker threads.
async fn purge(app: &Arc<App>, dry_run: bool) -> Result<u64, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.purge(dry_run))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(|n| n as u64)
        .map_err(|e| ApiError::unavailable(e.to_string()))
}

/// Cleanup dry run
///
/// What `POST /v1/admin/cleanup` would do now. Changes nothing.
#[utoipa::path(get, path = "/v1/admin/cleanup", operation_id = "admin_cleanup_preview", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The preview.", body = CleanupPreview),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cleanup_preview(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<CleanupPreview>, ApiError> {
    admin_only(&p)?;
    let now = app.now();
    let (would_end, orphans, expired_invites) = app.read(|core| {
        let would_end: Vec<WouldEnd> =
            core.engine.overdue(now).into_iter().map(|(id, reason, _)| WouldEnd { id, reason }).collect();
        (would_end, core.engine.orphans(), core.engine.dead_invites(now).len() as u64)
    });
    let purgeable = purge(&app, true).await?;
    Ok(Json(CleanupPreview { would_end, orphans, expired_invites, purgeable }))
}

/// Run cleanup
///
/// Ends overdue sessions with their real reason, ends orphans `parent_ended`, removes dead
/// invitations and purges ended sessions past their kind's `retention`.
#[utoipa::path(post, path = "/v1/admin/cleanup", operation_id = "admin_cleanup", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "What was done.", body = CleanupResult),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cleanup_execute(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<CleanupResult>, ApiError> {
    admin_only(&p)?;
    let (ended, orphans, expired_invites) = app
        .change(|core: &mut Core, now, change: &mut Change| {
            // What was due was applied just before this runs, into `change`.
            let ended = change.events.iter().filter(|e| e.event_type == tether_engine::EventType::Ended).count();
            let orphan_ids = core.engine.orphans();
            for id in &orphan_ids {
                if let Ok((_, out)) = core.engine.end(now, id, EndReason::ParentEnded, None) {
                    change.absorb(out);
                }
            }
            let dead = core.engine.dead_invites(now);
            change.absorb(core.engine.remove_invites(&dead));
            Ok::<_, ApiError>((ended as u64, orphan_ids.len() as u64, dead.len() as u64))
        })
        .await?;
    let purged = purge(&app, false).await?;
    Ok(Json(CleanupResult { ended, orphans, purged, expired_invites }))
}

/// Kinds in force
///
/// Extension: every kind with its policy (durations in ms), so clients can derive heartbeat intervals.
#[utoipa::path(get, path = "/v1/kinds", operation_id = "list_kinds", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The kinds.", body = Kinds),
        (status = 401, response = Unauthorized),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn kinds(State(app): State<Arc<App>>, Caller(_p): Caller) -> Json<Kinds> {
    let kinds = app.read(|core| core.engine.kinds().iter().map(KindInfo::from).collect());
    Json(Kinds { kinds })
}

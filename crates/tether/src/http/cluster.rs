//! The cluster's endpoints: `GET /v1/admin/cluster` (contract section 8)
//! and the internal socket report a node sends the owner
//! (`POST /v1/internal/presence`). Routing itself is [`crate::cluster::route`].

use super::access::Caller;
use super::admin::admin_only;
use super::problem::{blocking, ApiError, JsonBody};
use crate::app::{App, CommitError};
use crate::wire::admin::{ClusterNode, ClusterNodes, PresenceReport};
use crate::wire::problem::{MethodNotAllowed, Problem, Unauthorized, Unavailable};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use tether_engine::time::format_rfc3339;

/// Every node of the cluster, from the database; this node alone when the store is not PostgreSQL.
pub async fn nodes(app: &Arc<App>) -> Result<Vec<ClusterNode>, ApiError> {
    let Some(cluster) = app.cluster.get().cloned() else {
        return Ok(vec![ClusterNode {
            id: app.node_id.clone(),
            advertise: app.advertise.get().cloned().unwrap_or_default(),
            started_at: format_rfc3339(app.started_at),
            last_seen_at: format_rfc3339(app.now()),
            leader: true,
        }]);
    };
    let rows = blocking(move || cluster.nodes()).await?;
    Ok(rows
        .into_iter()
        .map(|n| ClusterNode {
            id: n.id,
            advertise: n.advertise,
            started_at: format_rfc3339(n.started_at),
            last_seen_at: format_rfc3339(n.last_seen_at),
            leader: n.leader,
        })
        .collect())
}

/// The cluster's nodes
///
/// Every node started on the same database and schema that beat within the last
/// `6 × lease` (at least 30 s), with `leader` (extension) marking the one that holds the
/// lease and so owns the live sessions and their deadlines. Answered by any node itself.
#[utoipa::path(get, path = "/v1/admin/cluster", operation_id = "admin_cluster", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "The nodes.", body = ClusterNodes),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cluster(State(app): State<Arc<App>>, Caller(p): Caller) -> Result<Json<ClusterNodes>, ApiError> {
    admin_only(&p)?;
    Ok(Json(ClusterNodes { nodes: nodes(&app).await? }))
}

/// Report sockets to the owner (internal)
///
/// Sent by a cluster node to the node that owns the work (through the usual routing),
/// so `disconnect_grace` counts users' WebSockets and event streams on every node.
/// API key only. A node sends `open: true` for each socket that opens and `open: false`
/// when a user's last socket on it closes; on a change of owner it sends its open
/// sockets again.
#[utoipa::path(post, path = "/v1/internal/presence", operation_id = "internal_presence", tag = "admin", security(("bearer" = [])),
    request_body = PresenceReport,
    responses(
        (status = 204, description = "Recorded."),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 422, description = "A field is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn presence(
    State(app): State<Arc<App>>,
    Caller(p): Caller,
    JsonBody(report): JsonBody<PresenceReport>,
) -> Result<StatusCode, ApiError> {
    admin_only(&p)?;
    // In memory only, as for a local socket: nothing to make durable.
    let recorded = app.change(|core, now, _| {
        for user in &report.users {
            if report.open {
                core.engine.socket_opened(user);
            } else {
                core.engine.socket_closed(now, user);
            }
        }
        Ok::<_, CommitError>(())
    });
    let _ = recorded.detach();
    Ok(StatusCode::NO_CONTENT)
}

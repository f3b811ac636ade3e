//! The webhook admin endpoints (API keys only): the endpoints with their
//! counts, the delivery log, and retrying a failed delivery.

use super::Command;
use crate::app::App;
use crate::http::access::Caller;
use crate::http::problem::{blocking, ApiError, QueryParams};
use crate::store::{DeliveryRecord, DeliveryStatus};
use crate::wire::problem::{MethodNotAllowed, Problem, Unauthorized, Unavailable};
use crate::wire::webhooks::{Delivery, DeliveryList, DeliveryQuery, EndpointState, WebhookEndpoint, WebhookEndpoints};
use axum::extract::{Path, State};
use axum::Json;
use std::sync::Arc;
use tether_engine::time::format_rfc3339;

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.is_api_key() {
        Ok(())
    } else {
        Err(ApiError::forbidden("webhook administration needs an API key"))
    }
}

impl From<DeliveryRecord> for Delivery {
    fn from(r: DeliveryRecord) -> Delivery {
        Delivery {
            id: r.id,
            event_id: r.event_id,
            url: r.url,
            status: r.status,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at.filter(|_| r.status == DeliveryStatus::Pending).map(format_rfc3339),
            session_id: r.session_id,
        }
    }
}

/// Webhook endpoints
///
/// Each `[[webhooks]]` endpoint (identified by its URL) with its state and delivery counts.
#[utoipa::path(get, path = "/v1/admin/webhooks", operation_id = "admin_webhooks", tag = "webhooks", security(("bearer" = [])),
    responses(
        (status = 200, description = "The configured endpoints, in file order.", body = WebhookEndpoints),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    )
)]
pub async fn endpoints(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<WebhookEndpoints>, ApiError> {
    admin_only(&caller)?;
    let store = app.store.clone();
    let counts = blocking(move || store.webhook_counts()).await?;
    let endpoints = app
        .webhooks
        .endpoints()
        .iter()
        .map(|e| {
            let (pending, failed) =
                counts.iter().find(|(url, _, _)| url == e.url()).map_or((0, 0), |(_, p, f)| (*p, *f));
            WebhookEndpoint {
                url: e.url().to_string(),
                state: if e.is_disabled() { EndpointState::Disabled } else { EndpointState::Active },
                pending,
                failed,
                last_error: e.last_error(),
                events: e.config.events.clone(),
                kinds: e.config.kinds.clone(),
                retry_ms: e.config.retry.iter().map(|d| d.as_millis() as u64).collect(),
            }
        })
        .collect();
    Ok(Json(WebhookEndpoints { endpoints }))
}

/// Webhook deliveries
///
/// Every delivery (one event for one endpoint) in id order, optionally of one status.
/// Page with `cursor` = the previous `next_cursor`.
#[utoipa::path(get, path = "/v1/admin/webhooks/deliveries", operation_id = "admin_webhook_deliveries", tag = "webhooks",
    security(("bearer" = [])),
    params(DeliveryQuery),
    responses(
        (status = 200, description = "One page.", body = DeliveryList),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 422, description = "`status`, `limit` or `cursor` is invalid; `field` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub async fn deliveries(
    State(app): State<Arc<App>>,
    caller: Caller,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    admin_only(&caller)?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::invalid("status", format!("status must be pending, delivered or failed, not {text:?}"))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 1000"));
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => {
            c.parse::<u64>().map_err(|_| ApiError::invalid("cursor", "cursor must be a previous next_cursor"))?
        }
    };
    let store = app.store.clone();
    let mut rows = blocking(move || store.webhook_list(status, after, limit + 1)).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(|r| r.id.to_string()) } else { None };
    Ok(Json(DeliveryList { deliveries: rows.into_iter().map(Delivery::from).collect(), next_cursor }))
}

/// Retry a failed delivery
///
/// Sets a `failed` delivery pending again and attempts it at once, with the same
/// `webhook-id`; if that attempt fails, it goes on with what is left of the
/// endpoint's `retry` schedule after its earlier attempts (none left: failed again).
/// Retrying a delivery of a disabled endpoint turns the endpoint back on.
#[utoipa::path(post, path = "/v1/admin/webhooks/deliveries/{id}/retry", operation_id = "admin_webhook_retry", tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The delivery id.")),
    responses(
        (status = 200, description = "The delivery, pending again.", body = Delivery),
        (status = 400, description = "`id` is not a delivery id.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 403, description = "Not an API key.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery.", body = Problem, content_type = "application/problem+json"),
        (status = 405, response = MethodNotAllowed),
        (status = 409, description = "The delivery is not failed (pending or delivered), or its endpoint is no longer configured.", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub async fn retry(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    admin_only(&caller)?;
    let id: u64 = id.parse().map_err(|_| ApiError::bad_request(format!("{id:?} is not a delivery id")))?;
    let store = app.store.clone();
    let Some(mut record) = blocking(move || store.webhook_get(id)).await? else {
        return Err(ApiError::not_found("delivery"));
    };
    if record.status != DeliveryStatus::Failed {
        return Err(ApiError::conflict(format!(
            "delivery {id} is {}; only a failed delivery can be retried",
            record.status.as_str()
        )));
    }
    let Some((index, endpoint)) = app.webhooks.endpoint(&record.url) else {
        return Err(ApiError::conflict(format!(
            "delivery {id} is for {}, which is no longer a configured endpoint",
            record.url
        )));
    };
    let reenable = endpoint.is_disabled();
    record.status = DeliveryStatus::Pending;
    record.next_attempt_at = Some(app.now());
    record.body = String::new();
    let (store, hooks, saved) = (app.store.clone(), app.webhooks.clone(), record.clone());
    blocking(move || {
        if reenable {
            hooks.set_disabled(index, None, &*store)?;
        }
        store.webhook_update(std::slice::from_ref(&saved))
    })
    .await?;
    if reenable {
        tracing::info!(url = %record.url, "webhook endpoint turned back on by a retry");
    }
    app.webhooks.tell(Command::Requeue(record.clone()));
    Ok(Json(Delivery::from(record)))
}

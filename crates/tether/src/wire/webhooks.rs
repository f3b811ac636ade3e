//! Webhooks (contract section 9): the admin answers about endpoints and
//! deliveries. The POSTed body itself is the event's JSON as on `/v1/events`
//! (see [`crate::wire::events`]); secrets appear in none of these types.

use serde::{Deserialize, Serialize};
use tether_engine::EventType;
use utoipa::{IntoParams, ToSchema};

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx; retried on the endpoint's `retry` schedule.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed, or the endpoint answered `410` (it is then disabled).
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Whether an endpoint is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    Active,
    /// It answered `410 Gone`: nothing is sent to it until a failed delivery
    /// is retried through `POST /v1/admin/webhooks/deliveries/{id}/retry`.
    Disabled,
}

/// A configured endpoint (`[[webhooks]]`), identified by its URL.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub url: String,
    pub state: EndpointState,
    /// Deliveries not yet delivered or failed.
    pub pending: u64,
    /// Deliveries that failed (retry them one by one).
    pub failed: u64,
    /// The last attempt's error (`HTTP 503`, `timed out after 15s`, …); null once an attempt succeeded.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Extension: the event types sent to it.
    pub events: Vec<EventType>,
    /// Extension: only sessions of these kinds; null means every kind.
    #[schema(required = true)]
    pub kinds: Option<Vec<String>>,
    /// Extension: the delays between attempts, in milliseconds.
    pub retry_ms: Vec<u64>,
}

/// `GET /v1/admin/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoints {
    pub endpoints: Vec<WebhookEndpoint>,
}

/// One delivery: one event for one endpoint.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub id: u64,
    /// The event's id (also the `webhook-id` header, the same on every attempt).
    pub event_id: u64,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The HTTP status of the last attempt; null before the first or when it got no answer.
    #[schema(required = true)]
    pub last_status: Option<u16>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// RFC 3339; null unless pending.
    #[schema(required = true)]
    pub next_attempt_at: Option<String>,
    /// Extension: the session the event is about (deliveries of one session to one endpoint go in order).
    pub session_id: String,
}

/// One page of deliveries, in id order.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/admin/webhooks/deliveries` query.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries with this status: `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

//! A session's history (contract section 10): the body of `GET /v1/sessions/{id}/history`.

use super::events::Event;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every event of one session, in the order published (ids ascend), exactly
/// as `/v1/events` delivered them. Kept as long as the session is: purged
/// with it after its kind's `retention`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionHistory {
    pub events: Vec<Event>,
}

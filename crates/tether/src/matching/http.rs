//! Matching and call endpoints (contract section 6). Being built.

use crate::app::App;
use crate::auth::Principal;
use crate::http::problem::ApiError;
use serde_json::Value;
use std::sync::Arc;

pub fn relay_signal_value(_app: &Arc<App>, _p: &Principal, _call: &str, _signal: Value) -> Result<(), ApiError> {
    Err(ApiError::not_found("call"))
}

pub fn record_setup(_app: &Arc<App>, _p: &Principal, _call: &str, _ms: f64) -> Result<(), ApiError> {
    Err(ApiError::not_found("call"))
}

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
}

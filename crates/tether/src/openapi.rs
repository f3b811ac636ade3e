//! The OpenAPI 3.1 description served at `/openapi.json`. (Being built.)

pub fn document() -> serde_json::Value {
    serde_json::json!({"openapi": "3.1.0", "info": {"title": "Tether", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
}

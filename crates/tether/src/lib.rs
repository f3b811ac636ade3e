//! # Tether
//!
//! A session lifecycle and real-time matching server. Sessions end at their
//! deadline, with a reason, pushed to browsers and backends.
//!
//! ## Layout
//! - `tether_engine` (its own crate): kinds, policies, the status machine and
//!   the deadline schedule — pure, with time passed in.
//! - [`store`]: the `Store` trait and its SQLite and memory implementations.
//! - [`journal`]: the single writer thread: group commit, then publish, then acknowledge.
//! - [`hub`]: event sequence numbers, the resume log and fan-out.
//! - [`app`]: shared state, the core lock, the deadline timer and background tasks.
//! - [`matching`]: continuous matching, calls and signaling on top of the engine.
//! - [`http`]: the axum router, auth, problem+json, SSE and WebSocket.
//! - [`wire`]: the request, response, event and WebSocket message types;
//!   [`openapi`] assembles `/openapi.json` from them and the handlers.
//! - [`config`]: the TOML configuration file.
//! - [`webhooks`]: `[[webhooks]]` endpoints, the delivery worker and its admin endpoints.
//! - [`cli`]: `tether serve`, `tether health`, `tether cleanup`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod http;
pub mod hub;
pub mod journal;
pub mod matching;
pub mod metrics;
pub mod openapi;
pub mod store;
pub mod webhooks;
pub mod wire;

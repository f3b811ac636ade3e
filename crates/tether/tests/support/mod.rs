//! Everything the tether test binaries share, in one place: the test server
//! and its client ([`app`]: the real binary, or `App::build` + `http::serve`
//! in process on a manual clock), the `/openapi.json` check every answer
//! goes through ([`contract`]), matching helpers ([`matching`]),
//! PostgreSQL schemas ([`postgres`]), several nodes on one schema
//! ([`cluster`]) and the binary on any store URL for
//! kill -9 loops ([`store_server`]).
//!
//! A module rather than a crate: only the tether package's own integration
//! tests see `env!("CARGO_BIN_EXE_tether")`, the binary the process-level
//! tests must run, and a module adds no workspace member or lock-file churn.
//! Each binary uses part of it, hence `dead_code` and unused re-exports are allowed here.

#![allow(dead_code)]

pub mod app;
pub mod cluster;
pub mod contract;
pub mod matching;
pub mod postgres;
pub mod store_server;

#[allow(unused_imports)]
pub use {app::*, matching::*, postgres::*};

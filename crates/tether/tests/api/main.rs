//! API integration tests (issue 2): each test runs a server on a random port
//! with its own SQLite file and configuration — the real `tether` binary, or
//! an in-process one on a manual clock where deadlines are tested — and every
//! answer is checked against the server's `/openapi.json`.

#[path = "../support/mod.rs"]
mod support;
/// The shared harness under the name these tests use (`use crate::helpers::*`).
use support as helpers;

mod bad_input;
mod batch;
mod crash;
mod events;
mod harness;
mod heartbeat;
mod isolation;
mod ops;
mod stories;

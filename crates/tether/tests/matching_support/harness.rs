//! The shared test harness of `tests/api/helpers.rs` (a real `tether` binary
//! on a free port with its own SQLite file), whose configuration includes the
//! matching and call kinds these tests need.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

pub use helpers::*;

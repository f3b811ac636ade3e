//! API integration tests (issue 2): each test runs the real `tether` binary
//! on a random port with its own SQLite file and configuration.

mod helpers;

mod bad_input;
mod crash;
mod events;
mod isolation;
mod ops;
mod stories;

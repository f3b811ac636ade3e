//! The 100 ms promise, measured alone: this binary runs by itself (cargo runs
//! test binaries one after another), so no other test's servers compete for
//! the CPU while deadlines fire.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod checks;

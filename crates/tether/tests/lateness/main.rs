//! The 100 ms promise, measured alone: this binary runs by itself (cargo runs
//! test binaries one after another), so no other test's servers compete for
//! the CPU while deadlines fire. It runs the real binary on the wall clock:
//! lateness is what it measures, so time must not be simulated here.

#[path = "../support/mod.rs"]
mod support;
/// The shared harness under the name these tests use (`use crate::helpers::*`).
use support as helpers;

mod checks;

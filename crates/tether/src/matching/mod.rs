//! Continuous matching, calls and signaling, on top of the engine.
//! (Being built: this is the hook surface the core calls.)

pub mod http;

use crate::journal::Change;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use tether_engine::{Engine, Millis};

#[derive(Default)]
pub struct Matching {}

impl Matching {
    pub fn restore(_store: &dyn Store, _engine: &Engine, _now: Millis) -> Result<Matching, StoreError> {
        Ok(Matching::default())
    }
    pub fn next_deadline(&self) -> Option<Millis> {
        None
    }
    pub fn expire_due(&mut self, _now: Millis, _engine: &mut Engine, _change: &mut Change) {}
    pub fn settle(&mut self, _now: Millis, _engine: &mut Engine, _change: &mut Change, _metrics: &Metrics) {}
    pub fn pool_size(&self) -> usize {
        0
    }
}

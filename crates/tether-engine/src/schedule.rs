//! The deadline schedule: one entry per live session at its earliest
//! deadline, ordered by time. The server sleeps until the first entry, so
//! expiry costs O(log n) per change and nothing while nothing is due — no
//! periodic sweep over all sessions.

use crate::time::Millis;
use std::collections::{BTreeSet, HashMap};

#[derive(Default, Debug)]
pub struct DeadlineQueue {
    order: BTreeSet<(Millis, String)>,
    at: HashMap<String, Millis>,
}

impl DeadlineQueue {
    /// Sets (or moves) the deadline of `id`.
    pub fn set(&mut self, id: &str, at: Millis) {
        if let Some(old) = self.at.get(id) {
            if *old == at {
                return;
            }
            self.order.remove(&(*old, id.to_string()));
        }
        self.at.insert(id.to_string(), at);
        self.order.insert((at, id.to_string()));
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.at.remove(id) {
            self.order.remove(&(old, id.to_string()));
        }
    }

    pub fn first(&self) -> Option<(Millis, String)> {
        self.order.first().cloned()
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

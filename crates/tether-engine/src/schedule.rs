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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_moves_replace_the_old_entry() {
        let mut q = DeadlineQueue::default();
        assert!(q.is_empty());
        assert_eq!(q.first(), None);
        q.set("b", 20);
        q.set("a", 30);
        q.set("c", 10);
        assert_eq!(q.first(), Some((10, "c".to_string())));
        assert_eq!(q.len(), 3);
        // Moving an entry leaves no stale copy behind.
        q.set("c", 40);
        assert_eq!(q.len(), 3);
        assert_eq!(q.first(), Some((20, "b".to_string())));
        q.set("b", 20); // unchanged
        q.remove("b");
        assert_eq!(q.first(), Some((30, "a".to_string())));
        q.remove("b"); // absent: no-op
        q.remove("a");
        assert_eq!(q.first(), Some((40, "c".to_string())));
        q.remove("c");
        assert!(q.is_empty());
        assert_eq!(q.first(), None);
    }

    #[test]
    fn equal_times_are_ordered_by_id() {
        let mut q = DeadlineQueue::default();
        q.set("z", 5);
        q.set("y", 5);
        assert_eq!(q.first(), Some((5, "y".to_string())));
        q.remove("y");
        assert_eq!(q.first(), Some((5, "z".to_string())));
    }
}

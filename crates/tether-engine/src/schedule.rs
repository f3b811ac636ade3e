//! The deadline queue: entries `(instant, slot)`, earliest first (ties by
//! slot). The server sleeps until the first entry, so expiry costs nothing
//! while nothing is due — no periodic sweep over all sessions.
//!
//! ## Layout, and why
//!
//! Entries are bucketed by *granule* (16 ms). Only the earliest granule(s)
//! are kept sorted (`near`, a small B-tree that stays in cache); every later
//! granule (`far`) is an unsorted `Vec` of 8-byte entries (offset in the
//! granule, slot), handed to the engine to check and sort when it becomes
//! the earliest ([`DeadlineQueue::advance`]).
//!
//! - Nearly every insertion is for a deadline a timeout away from now, so it
//!   appends to one of a few granules whose tails are hot in cache. In a
//!   B-tree of a million entries every insertion and removal misses on a
//!   random leaf (~200 ns on this machine), once per heartbeat.
//! - Far entries are never removed: when a session ends or its deadline
//!   moves, its far entry goes stale and the engine drops it when the
//!   granule comes up (the session's `queued` no longer names it), or in a
//!   sweep ([`DeadlineQueue::retain_far`]) once stale entries are half of
//!   them. A far entry may also be early (the deadline moved later): the
//!   engine re-queues it then. So a heartbeat costs no queue work at all
//!   unless its session's entry is near.
//! - Near entries are exact and current at all times (the engine moves or
//!   removes them eagerly, cheaply since `near` is small), so the first one
//!   is the true earliest deadline (`Engine::next_deadline`).
//!
//! A timing wheel would not give the exact minimum without scanning; a heap
//! cannot remove.
//!
//! Kept as hand-written code on purpose (reviewed for issue 8): its 8-byte
//! far entries are part of how the engine went from ~1.7 KB to ~150 bytes
//! per live session at 1M sessions, and it makes a heartbeat cost no queue
//! work. Its head also answers "what is overdue" ([`DeadlineQueue::due`])
//! without a walk over every session.

use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

const GRANULE_BITS: u32 = 4;
const OFFSET_MASK: i64 = (1 << GRANULE_BITS) - 1;

fn granule(at: Millis) -> i64 {
    at >> GRANULE_BITS
}

fn pack(at: Millis, slot: u32) -> u64 {
    (((at & OFFSET_MASK) as u64) << 32) | u64::from(slot)
}

fn unpack(granule: i64, entry: u64) -> (Millis, u32) {
    ((granule << GRANULE_BITS) | (entry >> 32) as i64, entry as u32)
}

#[derive(Debug)]
pub struct DeadlineQueue {
    /// Every entry of a granule up to `near_until`, sorted.
    near: BTreeSet<(Millis, u32)>,
    near_until: i64,
    /// Later granules, unsorted; may hold stale and early entries.
    far: BTreeMap<i64, Vec<u64>>,
    far_len: usize,
}

impl Default for DeadlineQueue {
    fn default() -> Self {
        DeadlineQueue { near: BTreeSet::new(), near_until: i64::MIN, far: BTreeMap::new(), far_len: 0 }
    }
}

impl DeadlineQueue {
    /// Whether an entry at `at` goes (or went) to the near part.
    pub fn is_near(&self, at: Millis) -> bool {
        granule(at) <= self.near_until
    }

    pub fn insert(&mut self, at: Millis, slot: u32) {
        if self.is_near(at) {
            self.near.insert((at, slot));
        } else {
            self.far.entry(granule(at)).or_default().push(pack(at, slot));
            self.far_len += 1;
        }
    }

    /// Adds entries that are all near.
    pub fn insert_near(&mut self, mut entries: Vec<(Millis, u32)>) {
        if self.near.is_empty() {
            // Bulk-built from sorted input: a granule of a million entries
            // (mass expiry) is not a million single insertions.
            entries.sort_unstable();
            self.near = entries.into_iter().collect();
        } else {
            self.near.extend(entries);
        }
    }

    pub fn remove_near(&mut self, at: Millis, slot: u32) -> bool {
        self.near.remove(&(at, slot))
    }

    /// The earliest near entry (the earliest of all once the engine has
    /// advanced past empty granules).
    pub fn first(&self) -> Option<(Millis, u32)> {
        self.near.first().copied()
    }

    pub fn pop_first(&mut self) -> Option<(Millis, u32)> {
        self.near.pop_first()
    }

    /// Makes the earliest far granule near and returns its entries, which
    /// the caller checks and puts back (`insert_near` / `insert`).
    pub fn advance(&mut self) -> Option<Vec<(Millis, u32)>> {
        let (g, entries) = self.far.pop_first()?;
        self.far_len -= entries.len();
        self.near_until = g;
        Some(entries.into_iter().map(|e| unpack(g, e)).collect())
    }

    /// Every entry at or before `now`, without changing the queue: the near
    /// ones in order, then those of the far granules that have begun (which
    /// may be stale or early, and a granule may hold an entry twice). Costs
    /// what it returns plus the rest of the last granule begun.
    pub fn due(&self, now: Millis) -> impl Iterator<Item = (Millis, u32)> + '_ {
        let near = self.near.range(..=(now, u32::MAX)).copied();
        let far = self.far.range(..=granule(now)).flat_map(|(&g, entries)| entries.iter().map(move |&e| unpack(g, e)));
        near.chain(far.filter(move |&(at, _)| at <= now))
    }

    /// Keeps only the far entries for which `keep` holds.
    pub fn retain_far(&mut self, mut keep: impl FnMut(Millis, u32) -> bool) {
        self.far.retain(|&g, entries| {
            entries.retain(|&e| {
                let (at, slot) = unpack(g, e);
                keep(at, slot)
            });
            entries.shrink_to_fit();
            !entries.is_empty()
        });
        self.far_len = self.far.values().map(Vec::len).sum();
    }

    pub fn far_len(&self) -> usize {
        self.far_len
    }

    /// Whether the queue holds this entry (for the engine's invariant checks).
    #[cfg(test)]
    pub(crate) fn contains(&self, at: Millis, slot: u32) -> bool {
        if self.is_near(at) {
            self.near.contains(&(at, slot))
        } else {
            self.far.get(&granule(at)).is_some_and(|v| v.contains(&pack(at, slot)))
        }
    }

    /// Entries, stale far ones included.
    pub fn len(&self) -> usize {
        self.near.len() + self.far_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains like the engine does: advance past empty near parts, putting every entry back.
    fn pop(q: &mut DeadlineQueue) -> Option<(Millis, u32)> {
        while q.first().is_none() {
            let entries = q.advance()?;
            q.insert_near(entries);
        }
        q.pop_first()
    }

    #[test]
    fn earliest_first_then_by_slot() {
        let mut q = DeadlineQueue::default();
        assert!(q.is_empty());
        assert_eq!(q.first(), None);
        for (at, slot) in [(20, 2), (30, 1), (10, 3), (10, 0), (100_000, 5)] {
            q.insert(at, slot);
        }
        assert_eq!(q.len(), 5);
        assert_eq!(pop(&mut q), Some((10, 0)));
        assert_eq!(pop(&mut q), Some((10, 3)));
        assert_eq!(pop(&mut q), Some((20, 2)));
        // 20 and 30 share a granule: 30 is near now, and so is anything earlier.
        assert!(q.is_near(30) && q.is_near(-5) && !q.is_near(100_000));
        assert_eq!(q.first(), Some((30, 1)));
        q.insert(25, 9);
        assert_eq!(q.first(), Some((25, 9)));
        assert!(q.remove_near(25, 9));
        assert_eq!(pop(&mut q), Some((30, 1)));
        assert_eq!(pop(&mut q), Some((100_000, 5)));
        assert_eq!(pop(&mut q), None);
        assert!(q.is_empty());
    }

    #[test]
    fn agrees_with_a_sorted_set_across_granules_and_negative_times() {
        let mut q = DeadlineQueue::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 99;
        for step in 0..50_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % 2_000) as i64 - 500 + (step as i64 / 10);
            let slot = (x >> 33) as u32 % 64;
            if x.is_multiple_of(3) {
                assert_eq!(pop(&mut q), model.pop_first(), "step {step}");
            } else if model.insert((at, slot)) {
                q.insert(at, slot);
            }
            assert_eq!(q.len(), model.len());
            if step % 997 == 0 {
                // No stale entries here, so `due` is exactly the model's prefix.
                let mut due: Vec<(Millis, u32)> = q.due(at).collect();
                due.sort_unstable();
                assert_eq!(due, model.range(..=(at, u32::MAX)).copied().collect::<Vec<_>>(), "step {step}");
            }
            if step % 5000 == 0 {
                q.retain_far(|at, slot| (at + slot as i64) % 7 != 0);
                let near_until = q.near_until;
                model.retain(|&(at, slot)| granule(at) <= near_until || (at + slot as i64) % 7 != 0);
                assert_eq!(q.len(), model.len());
            }
        }
        while let Some(e) = model.pop_first() {
            assert_eq!(pop(&mut q), Some(e));
        }
        assert!(q.is_empty());
    }
}

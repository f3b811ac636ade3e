//! The waiting-user index: answers "who is waiting, mutually age-compatible
//! with this user, longest wait first" without scanning the pool.
//!
//! Waiting users are grouped by the triple (own age, min_age, max_age). A
//! query for a user of age `A` wanting `[lo, hi]` visits only ages
//! `lo..=hi`, and within each age only the `min_age <= A` columns (a 103-bit
//! mask) and, through a `BTreeMap` range, only `max_age >= A`. Every group it
//! yields therefore satisfies *both* age filters, so no candidate popped
//! later is wasted on an age check. Groups are ordered by wait key, and the
//! query merges them oldest-first with a heap.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{btree_set, BTreeMap, BTreeSet, BinaryHeap};

use crate::validate::{MAX_AGE, MIN_AGE};

const SPAN: usize = (MAX_AGE - MIN_AGE) as usize + 1;

/// Orders waiting users: earlier `entered_at` first, then arrival order
/// (`seq`, strictly increasing per pool) so keys are unique and ties between
/// equal timestamps go to whoever the pool saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WaitKey {
    pub entered_at: i64,
    pub seq: u64,
    pub uid: u32,
}

/// Where a waiting user sits in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub age: u8,
    pub min: u8,
    pub max: u8,
}

pub(crate) struct AgeIndex {
    /// `[(age-18) * SPAN + (min-18)]` → max_age → group.
    cells: Vec<BTreeMap<u8, BTreeSet<WaitKey>>>,
    /// Per age, bit `min-18` set when that cell is non-empty.
    mins: Vec<u128>,
}

fn off(a: u8) -> usize {
    usize::from(a.saturating_sub(MIN_AGE)).min(SPAN - 1)
}

impl AgeIndex {
    pub fn new() -> Self {
        AgeIndex { cells: (0..SPAN * SPAN).map(|_| BTreeMap::new()).collect(), mins: vec![0; SPAN] }
    }

    pub fn insert(&mut self, s: Slot, k: WaitKey) {
        let cell = off(s.age) * SPAN + off(s.min);
        self.cells[cell].entry(s.max).or_default().insert(k);
        self.mins[off(s.age)] |= 1u128 << off(s.min);
    }

    pub fn remove(&mut self, s: Slot, k: WaitKey) {
        let cell = off(s.age) * SPAN + off(s.min);
        let map = &mut self.cells[cell];
        if let Some(group) = map.get_mut(&s.max) {
            group.remove(&k);
            if group.is_empty() {
                map.remove(&s.max);
            }
        }
        if map.is_empty() {
            self.mins[off(s.age)] &= !(1u128 << off(s.min));
        }
    }

    /// Everyone waiting whose age is in `[lo, hi]` and whose own range
    /// contains `age`, longest wait first.
    pub fn mutual<'a>(&'a self, age: u8, lo: u8, hi: u8) -> Merge<'a> {
        let mut iters = Vec::new();
        // Bits 0..=off(age): columns whose min_age <= age.
        let min_mask: u128 = (1u128 << (off(age) + 1)) - 1;
        for g in off(lo)..=off(hi) {
            let mut mask = self.mins[g] & min_mask;
            while mask != 0 {
                let m = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                for (_, group) in self.cells[g * SPAN + m].range(age..) {
                    iters.push(group.iter());
                }
            }
        }
        let mut heads = Vec::with_capacity(iters.len());
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(k) = it.next() {
                heads.push(Reverse((*k, i)));
            }
        }
        Merge { iters, heap: BinaryHeap::from(heads) }
    }
}

/// Oldest-first k-way merge over the groups a query selected.
pub(crate) struct Merge<'a> {
    iters: Vec<btree_set::Iter<'a, WaitKey>>,
    heap: BinaryHeap<Reverse<(WaitKey, usize)>>,
}

impl Iterator for Merge<'_> {
    type Item = WaitKey;

    fn next(&mut self) -> Option<WaitKey> {
        // Replacing the top in place sifts once instead of pop + push.
        let mut top = self.heap.peek_mut()?;
        let Reverse((k, i)) = *top;
        match self.iters[i].next() {
            Some(n) => *top = Reverse((*n, i)),
            None => {
                PeekMut::pop(top);
            }
        }
        Some(k)
    }
}

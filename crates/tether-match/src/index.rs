//! The waiting-user index: answers "who is waiting and mutually
//! age-compatible with this user" without scanning the pool, and carries
//! what scoring needs so the hot loop does not chase pointers into the
//! user table.
//!
//! Waiting users are grouped by the triple (own age, min_age, max_age). A
//! query for a user of age `A` wanting `[lo, hi]` visits only ages
//! `lo..=hi`, within each age only the `min_age <= A` columns (a 103-bit
//! mask), and within those only the groups with `max_age >= A` (a sorted
//! vector, found by binary search). Every entry it yields therefore passes
//! *both* age filters. Each group is a vector sorted by wait key, so the
//! pool can walk all of them, or merge them oldest-first with a heap.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;

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

/// A snapshot of what scoring needs about a waiting user. The pool rebuilds
/// it (by re-indexing) whenever the profile, preferences or ratings change.
#[derive(Debug, Clone)]
pub(crate) struct Card {
    pub weight: f64,
    pub personality: Option<[f64; 5]>,
    /// Sorted interest ids, then sorted preferred-interest ids: one
    /// allocation instead of two.
    pub tags: Box<[u32]>,
    pub n_interests: usize,
}

impl Card {
    pub fn new(interests: &[u32], preferred: &[u32], weight: f64, personality: Option<[f64; 5]>) -> Card {
        let tags: Vec<u32> = interests.iter().chain(preferred).copied().collect();
        Card { weight, personality, tags: tags.into_boxed_slice(), n_interests: interests.len() }
    }
    pub fn interests(&self) -> &[u32] {
        &self.tags[..self.n_interests]
    }
    pub fn preferred(&self) -> &[u32] {
        &self.tags[self.n_interests..]
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub key: WaitKey,
    pub card: Card,
}

struct Group {
    max: u8,
    /// Sorted by key. Keys almost always arrive in order (time moves
    /// forward), so inserts are appends.
    entries: Vec<Entry>,
}

pub(crate) struct AgeIndex {
    /// `[(age-18) * SPAN + (min-18)]` → groups sorted by `max`.
    cells: Vec<Vec<Group>>,
    /// Per age, bit `min-18` set when that cell is non-empty.
    mins: Vec<u128>,
}

fn off(a: u8) -> usize {
    usize::from(a.saturating_sub(MIN_AGE)).min(SPAN - 1)
}

impl AgeIndex {
    pub fn new() -> Self {
        AgeIndex { cells: (0..SPAN * SPAN).map(|_| Vec::new()).collect(), mins: vec![0; SPAN] }
    }

    pub fn insert(&mut self, s: Slot, key: WaitKey, card: Card) {
        let cell = &mut self.cells[off(s.age) * SPAN + off(s.min)];
        let gi = match cell.binary_search_by_key(&s.max, |g| g.max) {
            Ok(i) => i,
            Err(i) => {
                cell.insert(i, Group { max: s.max, entries: Vec::new() });
                i
            }
        };
        let entries = &mut cell[gi].entries;
        let at = entries.partition_point(|e| e.key < key);
        entries.insert(at, Entry { key, card });
        self.mins[off(s.age)] |= 1u128 << off(s.min);
    }

    pub fn remove(&mut self, s: Slot, key: WaitKey) {
        let cell = &mut self.cells[off(s.age) * SPAN + off(s.min)];
        if let Ok(gi) = cell.binary_search_by_key(&s.max, |g| g.max) {
            let entries = &mut cell[gi].entries;
            if let Ok(at) = entries.binary_search_by(|e| e.key.cmp(&key)) {
                entries.remove(at);
            }
            if entries.is_empty() {
                cell.remove(gi);
            }
        }
        if cell.is_empty() {
            self.mins[off(s.age)] &= !(1u128 << off(s.min));
        }
    }

    /// The groups of everyone waiting whose age is in `[lo, hi]` and whose
    /// own range contains `age`; each slice is sorted by wait key.
    pub fn mutual(&self, age: u8, lo: u8, hi: u8) -> Vec<&[Entry]> {
        let mut out = Vec::new();
        // Bits 0..=off(age): columns whose min_age <= age.
        let min_mask: u128 = (1u128 << (off(age) + 1)) - 1;
        for g in off(lo)..=off(hi) {
            let mut mask = self.mins[g] & min_mask;
            while mask != 0 {
                let m = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let cell = &self.cells[g * SPAN + m];
                let from = cell.partition_point(|grp| grp.max < age);
                out.extend(cell[from..].iter().map(|grp| grp.entries.as_slice()));
            }
        }
        out
    }
}

/// Oldest-first k-way merge over sorted groups.
pub(crate) struct Merge<'a> {
    groups: Vec<&'a [Entry]>,
    heap: BinaryHeap<Reverse<(WaitKey, usize)>>,
}

impl<'a> Merge<'a> {
    pub fn new(groups: Vec<&'a [Entry]>) -> Self {
        let heads: Vec<_> =
            groups.iter().enumerate().filter_map(|(i, g)| g.first().map(|e| Reverse((e.key, i)))).collect();
        Merge { groups, heap: BinaryHeap::from(heads) }
    }
}

impl<'a> Iterator for Merge<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        // Replacing the top in place sifts once instead of pop + push.
        let mut top = self.heap.peek_mut()?;
        let Reverse((_, i)) = *top;
        let group = self.groups[i];
        let (first, rest) = group.split_first()?;
        self.groups[i] = rest;
        match rest.first() {
            Some(n) => *top = Reverse((n.key, i)),
            None => {
                PeekMut::pop(top);
            }
        }
        Some(first)
    }
}

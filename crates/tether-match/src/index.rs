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
//! *both* age filters. Each group is a queue sorted by wait key, so the
//! pool can walk all of them, or merge them oldest-first with a heap.
//!
//! A group is a `VecDeque`, not a `Vec`: the pool takes partners from the
//! *front* of a group (longest wait first) and a returning user goes to its
//! back. With one large group (100k users of the same ages, as in the
//! `pairing-throughput` benchmark) removing the front of a vector moved the
//! whole group, ~10 MB, on every pairing: ~0.5 ms, which bounded the server
//! below ~2k pairs/s. The `one_group` example measures it: 1.23M → 0.25M
//! instructions per pairing (callgrind), 490 → 17 µs. A deque removes at
//! either end in O(1) and moves the shorter side otherwise, and is at most
//! two sorted slices for the scoring loop. A `BTreeMap` per group, also
//! tried, made `pool_bench`'s many-small-groups case ~15% slower; the deque
//! costs that case ~7% more instructions (`as_slices`).

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

use crate::validate::{MAX_AGE, MIN_AGE};

const SPAN: usize = (MAX_AGE - MIN_AGE) as usize + 1;

/// Groups up to this size are kept in one contiguous slice (see [`AgeIndex::insert`]).
const SMALL_GROUP: usize = 64;

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
    /// forward), so inserts are appends; partners leave from the front.
    entries: VecDeque<Entry>,
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
                cell.insert(i, Group { max: s.max, entries: VecDeque::new() });
                i
            }
        };
        let entries = &mut cell[gi].entries;
        let at = entries.partition_point(|e| e.key < key);
        entries.insert(at, Entry { key, card });
        // A small group that wrapped around its ring is straightened (cheap
        // at this size), so the scoring loop sees one slice per group
        // rather than two; a large group may stay in two.
        if entries.len() <= SMALL_GROUP && !entries.as_slices().1.is_empty() {
            entries.make_contiguous();
        }
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
    /// own range contains `age`; each slice is sorted by wait key (a large
    /// group may be two).
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
                for grp in &cell[from..] {
                    let (front, back) = grp.entries.as_slices();
                    out.push(front);
                    if !back.is_empty() {
                        out.push(back);
                    }
                }
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

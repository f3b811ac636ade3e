//! A hash index from a key to a slot, for the engine's `id → session` and
//! `user → first session` maps.
//!
//! Why not a `HashMap<String, u32>` or `hashbrown::HashTable<u32>`: with a
//! million sessions every lookup misses the cache, and on this kind of
//! machine a miss costs ~200 ns. A heartbeat is a lookup plus an update, so
//! it costs about one miss per dependent memory access. `HashMap<String, _>`
//! needs three (control bytes, bucket, key string) before the session
//! itself; a `HashTable<u32>` two (control bytes, bucket). Here an entry is
//! 8 bytes — a 32-bit hash tag and the slot — in one array probed linearly,
//! so a lookup is one miss (the slot is then read to confirm the key, which
//! the caller needs anyway). Growing re-places entries by their tags and
//! never reads the slots.
//!
//! The keys themselves live in the slots: `eq` is asked only for an entry
//! whose tag matches, and the caller compares the slot's key there.
//!
//! Kept as hand-written code on purpose (reviewed for issue 8): together
//! with the slots of `live.rs` it took the engine from ~1.7 KB to ~150 bytes
//! per live session at 1M sessions, and a heartbeat from three cache misses
//! to one; the maintained tables (`hashbrown`) store the key or a larger
//! bucket per entry.

/// An empty entry: no slot has index `u32::MAX`.
const EMPTY: u64 = u64::MAX;
const NIL: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct SlotIndex {
    entries: Vec<u64>,
    len: usize,
    /// `64 - log2(entries.len())`: the home position is the top bits of a
    /// multiplicative (Fibonacci) hash of the tag.
    shift: u32,
}

fn pack(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

fn slot_of(entry: u64) -> u32 {
    entry as u32
}

fn tag_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

impl SlotIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, tag: u32) -> usize {
        (u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The slot under `tag` for which `eq` holds.
    pub fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if slot_of(e) == NIL {
                return None;
            }
            if tag_of(e) == tag && eq(slot_of(e)) {
                return Some(slot_of(e));
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Adds an entry; the caller knows the key is not present.
    pub fn insert(&mut self, tag: u32, slot: u32) {
        debug_assert_ne!(slot, NIL);
        // At most 3/4 full, so an absent key's probe stays short.
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(pack(tag, slot));
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        let mut i = self.home(tag_of(entry));
        while slot_of(self.entries[i]) != NIL {
            i = (i + 1) & self.mask();
        }
        self.entries[i] = entry;
    }

    fn grow(&mut self) {
        let cap = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; cap]);
        self.shift = 64 - cap.trailing_zeros();
        for e in old.into_iter().filter(|e| slot_of(*e) != NIL) {
            self.place(e);
        }
    }

    fn position(&self, tag: u32, slot: u32) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let want = pack(tag, slot);
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if e == want {
                return Some(i);
            }
            if slot_of(e) == NIL {
                return None;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Points the entry `(tag, old)` at `new` instead.
    pub fn replace(&mut self, tag: u32, old: u32, new: u32) -> bool {
        match self.position(tag, old) {
            Some(i) => {
                self.entries[i] = pack(tag, new);
                true
            }
            None => false,
        }
    }

    /// Removes the entry `(tag, slot)`; false if there was none.
    pub fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let Some(mut hole) = self.position(tag, slot) else { return false };
        self.len -= 1;
        // Backward-shift deletion: pull later entries of the probe run into
        // the hole unless that would move one before its home position. No
        // tombstones, so lookups never slow down with churn.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if slot_of(e) == NIL {
                break;
            }
            let home = self.home(tag_of(e));
            // Whether `home` lies cyclically in (hole, j]: then `e` must stay.
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_map_under_churn() {
        let mut index = SlotIndex::default();
        let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
        let mut x: u64 = 7;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x % 5000) as u32;
            // Few distinct tags, so runs and equal tags are common.
            let tag = (x >> 40) as u32 % 700;
            if let Some(t) = model.remove(&slot) {
                assert!(index.remove(t, slot), "step {step}");
                assert!(!index.remove(t, slot));
            } else {
                model.insert(slot, tag);
                index.insert(tag, slot);
            }
            if step % 997 == 0 {
                for (&s, &t) in &model {
                    assert_eq!(index.find(t, |c| c == s), Some(s));
                }
                assert_eq!(index.len(), model.len());
            }
        }
        for (&s, &t) in &model {
            assert!(index.replace(t, s, s + 10_000));
            assert_eq!(index.find(t, |c| c == s + 10_000), Some(s + 10_000));
            assert_eq!(index.find(t, |c| c == s), None);
        }
    }
}

//! Slot storage: the slab of live sessions and the indexes over it (id,
//! owner list, children, orphans), the live counts kept in step with them,
//! and the snapshot ([`Session`]) a slot is shown as. Every insertion,
//! release and status change goes through here, which is what keeps the
//! indexes and counts exact.

use super::{Engine, KindEntry};
use crate::kind::{KindPolicy, OnParentEnd};
use crate::live::{
    from_opt, opt, Extra, Key, KeyRef, Meta, Part, Slot, GRACE, NIL, NONE, ORPHAN, OWNER_HEAD, OWNER_JOINED, PARENT,
    WARNED,
};
use crate::session::{Participant, Session, Status};

impl Engine {
    pub(super) fn slot(&self, i: u32) -> &Slot {
        self.slots[i as usize].as_ref().expect("index refers to a live slot")
    }

    pub(super) fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize].as_mut().expect("index refers to a live slot")
    }

    pub(super) fn policy(&self, kind: u16) -> Option<&KindPolicy> {
        self.kind_table[kind as usize].policy.as_ref()
    }

    pub(super) fn cascades(&self, kind: u16) -> bool {
        self.policy(kind).is_some_and(|k| k.on_parent_end == OnParentEnd::End)
    }

    pub(super) fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u32)
    }

    pub(super) fn find(&self, id: &str) -> Option<u32> {
        self.find_key(KeyRef::new(id))
    }

    pub(super) fn find_key(&self, k: KeyRef<'_>) -> Option<u32> {
        self.ids.find(self.hasher.tag(k), |i| self.slot(i).id.as_ref() == k)
    }

    /// The slot heading the list of `owner`'s sessions.
    pub(super) fn head_of(&self, owner: KeyRef<'_>) -> Option<u32> {
        self.users.find(self.hasher.tag(owner), |i| self.slot(i).owner.as_ref() == owner)
    }

    /// The sessions of a user (by slot), oldest first.
    pub(super) fn owned(&self, user: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(head) = self.head_of(KeyRef::new(user)) {
            let mut at = head;
            loop {
                out.push(at);
                at = self.slot(at).next_owned;
                if at == head {
                    break;
                }
            }
        }
        out
    }

    pub(super) fn kind_of(&mut self, name: &str) -> u16 {
        if let Some(&k) = self.kind_index.get(name) {
            return k;
        }
        let k = u16::try_from(self.kind_table.len()).expect("at most 65536 kinds");
        self.kind_table.push(KindEntry { name: name.to_string(), policy: self.kinds.get(name).cloned(), live: [0; 4] });
        self.kind_index.insert(name.to_string(), k);
        k
    }

    pub(super) fn is_present(&self, idx: u32, user: &str) -> bool {
        let s = self.slot(idx);
        match s.explicit_parts() {
            Some(parts) => parts.iter().any(|p| &*p.id == user && p.present()),
            None => s.flags & OWNER_JOINED != 0 && s.owner.is(user),
        }
    }

    /// Puts a new slot in the slab, the id index, its owner's list and the
    /// live counts; adopts any orphans that name its id as their parent.
    pub(super) fn insert(&mut self, mut slot: Slot) -> u32 {
        let mut children = None;
        if let Some(old) = self.find_key(slot.id.as_ref()) {
            // Ids are unique (UUIDs); a second session under a live id
            // replaces the first, as the map this replaced did. Its children
            // name the id, so they become the new session's.
            children = self.children.remove(&old);
            self.release(old);
        }
        // Orphans wait for a parent of this id (only after a restore, so the
        // common create never hashes the id for this).
        let adopted = if self.orphans.is_empty() { None } else { self.orphans.remove(&slot.id) };
        self.kind_table[slot.kind as usize].live[slot.status as usize] += 1;
        slot.id_tag = self.hasher.tag(slot.id.as_ref());
        let head = self.head_of(slot.owner.as_ref());
        let id_tag = slot.id_tag;
        let idx = match self.free_slots.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 live sessions")
            }
        };
        self.ids.insert(id_tag, idx);
        match head {
            None => {
                let s = self.slot_mut(idx);
                (s.prev_owned, s.next_owned) = (idx, idx);
                s.flags |= OWNER_HEAD;
                let t = self.hasher.tag(self.slot(idx).owner.as_ref());
                self.users.insert(t, idx);
            }
            Some(head) => {
                // Append: the tail is the head's predecessor.
                let tail = self.slot(head).prev_owned;
                self.slot_mut(tail).next_owned = idx;
                self.slot_mut(head).prev_owned = idx;
                let s = self.slot_mut(idx);
                (s.prev_owned, s.next_owned) = (tail, head);
            }
        }
        for child in adopted.into_iter().flatten() {
            self.slot_mut(child).flags &= !ORPHAN;
            self.children.entry(idx).or_default().push(child);
        }
        if let Some(kids) = children {
            self.children.entry(idx).or_default().extend(kids);
        }
        if self.children.contains_key(&idx) {
            self.slot_mut(idx).flags |= PARENT;
        }
        idx
    }

    /// Moves a live session to another live status, keeping the counts.
    pub(super) fn set_status(&mut self, idx: u32, status: Status) {
        let s = self.slots[idx as usize].as_mut().expect("index refers to a live slot");
        let live = &mut self.kind_table[s.kind as usize].live;
        live[s.status as usize] -= 1;
        live[status as usize] += 1;
        s.status = status;
    }

    /// A restored session into a slot, its participants packed if they are just the owner.
    pub(super) fn insert_session(&mut self, s: Session) -> u32 {
        let kind = self.kind_of(&s.kind);
        let mut flags = 0;
        let mut owner_name = None;
        let mut participants = None;
        match s.participants.as_slice() {
            [] => {}
            [p] if p.id == s.user_id
                && p.joined_at == s.created_at
                && p.last_seen_at == s.last_seen_at
                && p.left_at.is_none() =>
            {
                flags |= OWNER_JOINED;
                owner_name = p.name.clone().map(String::into_boxed_str);
            }
            _ => participants = Some(s.participants.into_iter().map(Part::new).collect()),
        }
        let extra = Extra {
            parent: s.parent_id.as_deref().map(Key::new),
            metadata: Meta::new(s.metadata),
            owner_name,
            participants,
            members: s.members.into_iter().map(String::into_boxed_str).collect(),
            completing_at: from_opt(s.completing_at),
        };
        self.insert(Slot {
            id: Key::new(&s.id),
            owner: Key::new(&s.user_id),
            id_tag: 0,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            activated_at: from_opt(s.activated_at),
            queued: NONE,
            extra: (!extra.is_default()).then(|| Box::new(extra)),
            prev_owned: NIL,
            next_owned: NIL,
            kind,
            status: s.status,
            flags,
        })
    }

    /// Adds a session to its parent's children, if the parent is live.
    pub(super) fn link_child(&mut self, idx: u32) {
        let Some(parent) = self.slot(idx).parent().and_then(|p| self.find_key(p.as_ref())) else { return };
        self.children.entry(parent).or_default().push(idx);
        self.slot_mut(parent).flags |= PARENT;
    }

    /// Links a restored child to its parent, or lists it as an orphan if the
    /// parent is not live and its kind would have cascaded the parent's end.
    pub(super) fn link_or_orphan(&mut self, idx: u32) {
        let s = self.slot(idx);
        let Some(parent) = s.parent() else { return };
        if self.find_key(parent.as_ref()).is_some() {
            self.link_child(idx);
        } else if self.cascades(s.kind) && s.flags & ORPHAN == 0 {
            let parent = parent.clone();
            self.orphans.entry(parent).or_default().push(idx);
            self.slot_mut(idx).flags |= ORPHAN;
        }
    }

    /// Takes a session out of the slab, every index and the live counts; its slot becomes free.
    pub(super) fn release(&mut self, idx: u32) -> Slot {
        let s = self.slots[idx as usize].take().expect("release of a live slot");
        self.kind_table[s.kind as usize].live[s.status as usize] -= 1;
        self.ids.remove(s.id_tag, idx);
        self.free_slots.push(idx);
        if s.queued != NONE {
            if self.schedule.is_near(s.queued) {
                self.schedule.remove_near(s.queued, idx);
            } else {
                self.stale += 1;
            }
        }
        if s.flags & GRACE != 0 {
            self.grace.remove(&idx);
        }
        if s.flags & WARNED != 0 {
            self.warned.remove(&idx);
        }
        if let (true, Some(parent)) = (s.flags & ORPHAN != 0, s.parent()) {
            if let Some(siblings) = self.orphans.get_mut(parent) {
                siblings.retain(|&i| i != idx);
                if siblings.is_empty() {
                    self.orphans.remove(parent);
                }
            }
        }
        // Unlink from the owner's list; the last session of a user takes the user along.
        if s.next_owned == idx {
            self.users.remove(self.hasher.tag(s.owner.as_ref()), idx);
        } else {
            self.slot_mut(s.prev_owned).next_owned = s.next_owned;
            self.slot_mut(s.next_owned).prev_owned = s.prev_owned;
            if s.flags & OWNER_HEAD != 0 {
                self.slot_mut(s.next_owned).flags |= OWNER_HEAD;
                self.users.replace(self.hasher.tag(s.owner.as_ref()), idx, s.next_owned);
            }
        }
        if let Some(parent) = s.parent().and_then(|p| self.find_key(p.as_ref())) {
            if let Some(ids) = self.children.get_mut(&parent) {
                ids.retain(|&i| i != idx);
                if ids.is_empty() {
                    self.children.remove(&parent);
                    self.slot_mut(parent).flags &= !PARENT;
                }
            }
        }
        s
    }

    /// The public record of a live session.
    pub(super) fn snapshot(&self, idx: u32) -> Session {
        let s = self.slot(idx);
        let user_id = s.owner.text();
        let x = s.extra.as_deref();
        let participants = match s.explicit_parts() {
            Some(parts) => parts.iter().map(Part::to_participant).collect(),
            None if s.flags & OWNER_JOINED != 0 => vec![Participant {
                id: user_id.clone(),
                name: x.and_then(|x| x.owner_name.as_deref()).map(str::to_string),
                joined_at: s.created_at,
                last_seen_at: s.last_seen_at,
                left_at: None,
            }],
            None => Vec::new(),
        };
        Session {
            id: s.id.text(),
            kind: self.kind_table[s.kind as usize].name.clone(),
            user_id,
            status: s.status,
            created_at: s.created_at,
            activated_at: opt(s.activated_at),
            last_seen_at: s.last_seen_at,
            expires_at: self.deadlines(idx, s).and_then(|d| d.end).map(|e| e.0),
            ended_at: None,
            end_reason: None,
            parent_id: s.parent().map(Key::text),
            metadata: x.map_or(Meta::EmptyObject.to_value(), |x| x.metadata.to_value()),
            participants,
            members: x.map_or_else(Vec::new, |x| x.members.iter().map(|m| m.to_string()).collect()),
            completing_at: opt(s.completing_at()),
            end_detail: None,
        }
    }
}

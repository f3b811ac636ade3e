//! The engine: every live session, the indexes that enforce per-user policy
//! and parent cascade, and the deadline schedule. Each operation takes `now`
//! from the caller and returns what changed ([`Outcome`]): the snapshots to
//! persist and the events to publish. The engine does no IO, so the caller
//! decides how a change becomes durable before it is acknowledged.
//!
//! Ended sessions leave the engine at once (the store keeps them until their
//! retention passes), so memory follows live sessions only.
//!
//! ## Files
//!
//! - this file: the [`Engine`] itself and its read-only queries, every one of
//!   which costs in proportion to what it returns (the metrics and health
//!   reads under the server's lock cost the same at 10 sessions and at 1M);
//! - `outcome.rs`: what an operation hands back ([`Outcome`], [`Event`],
//!   [`Write`]) and the event vocabulary ([`EventType`]);
//! - `ops.rs`: the operations that change sessions (create, heartbeat, end,
//!   complete, join/leave, sockets, restore) and their errors;
//! - `revive.rs`: bringing back a session that ended `idle_timeout` or
//!   `disconnected` within its kind's `revive_window`;
//! - `invites.rs`: invitations to join a session without an account;
//! - `slots.rs`: the slab of live sessions and its indexes, the counters kept
//!   with them, and the snapshot a slot is shown as;
//! - `deadlines.rs`: a session's deadlines (and the `session.expiring`
//!   warning `warn_before` ahead of them), the queue that orders them, and
//!   `expire_due` / `overdue`.
//!
//! ## Layout
//!
//! Live sessions are compact slots in a slab (`live.rs`), ~150 bytes per
//! session with every index, against ~1.7 KB when each was a [`Session`]
//! with its id copied into five maps. Every index refers to a session by its
//! `u32` slot, so an id is stored once:
//!
//! - `ids`: id → slot, 8-byte entries keyed by the slots' own ids, one cache
//!   miss per lookup (`index.rs`);
//! - `users`: owner → the first of its sessions, the rest linked through
//!   the slots (per-user policy, disconnect grace);
//! - `children`: parent slot → child slots, only for sessions that have
//!   children; a child names its parent by id, because the parent may end
//!   while an `on_parent_end = "keep"` child lives on;
//! - `grace`, `warned`, `dirty`, `orphans`: side tables flagged in the slot,
//!   so the common session never pays a lookup for them;
//! - `schedule`: the deadline queue (`schedule.rs`), at most one current
//!   entry per session, never later than its deadline;
//! - live counts by kind and status, kept in the kind table and changed
//!   wherever a slot is inserted, released or changes status.
//!
//! Snapshots ([`Session`]) are built only when an operation returns or
//! publishes one; the write and the events of one change share a single
//! `Arc<Session>`. Heartbeats that need no snapshot use [`Engine::touch`]:
//! a lookup and a few stores, with no allocation and usually no queue work.

mod deadlines;
mod invites;
mod ops;
mod outcome;
mod revive;
mod slots;
#[cfg(test)]
mod tests;

pub use ops::{EngineError, NewSession};
pub use outcome::{Event, EventType, Outcome, Write};
pub use revive::ReviveRefusal;

use crate::index::SlotIndex;
use crate::kind::{KindPolicy, Kinds};
use crate::live::{Key, KeyHasher, Slot};
use crate::schedule::DeadlineQueue;
use crate::session::{Invite, Session, Status};
use crate::time::Millis;
use std::collections::HashMap;

/// The statuses a live session can have, in the order [`Engine::live_counts`] lists them.
const LIVE_STATUSES: [Status; 3] = [Status::Waiting, Status::Active, Status::Completing];

/// A kind as the slots refer to it. Sessions restored from the store may be
/// of a kind the config no longer has: they keep their name and have no policy.
struct KindEntry {
    name: String,
    policy: Option<KindPolicy>,
    /// Live sessions of this kind by status (indexed by `Status as usize`),
    /// so metrics and health read counts instead of walking the sessions.
    live: [usize; 4],
}

pub struct Engine {
    kinds: Kinds,
    kind_table: Vec<KindEntry>,
    kind_index: HashMap<String, u16>,
    /// Live sessions; `None` marks a free slot (listed in `free_slots`).
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// id → slot.
    ids: SlotIndex,
    /// owner → the slot heading its list of sessions.
    users: SlotIndex,
    /// parent slot → child slots (live children only), for the cascade.
    children: HashMap<u32, Vec<u32>>,
    /// Live sessions of a cascading kind whose parent is not live, by the
    /// parent id they name (flagged `ORPHAN`). Only a restore makes them:
    /// the store may hold a child whose parent's end was never written.
    orphans: HashMap<Key, Vec<u32>>,
    schedule: DeadlineQueue,
    /// Far entries in `schedule` that no longer name their session's
    /// deadline (it ended or its entry moved); an estimate that triggers a sweep.
    stale: usize,
    /// Disconnect-grace deadlines in force, by slot (flagged `GRACE`).
    grace: HashMap<u32, Millis>,
    /// The end deadline each session was last warned of (`session.expiring`),
    /// by slot (flagged `WARNED`): only sessions of kinds with `warn_before`
    /// that have been warned pay for it. A deadline is warned of once; when
    /// activity moves it, the entry no longer matches and the new deadline is
    /// warned of in turn. In memory only: after a restart a deadline that
    /// kept its time (max, waiting, completing) may be warned of again.
    warned: HashMap<u32, Millis>,
    /// Open WebSockets per user: the last one closing starts disconnect grace.
    sockets: HashMap<String, u32>,
    invites: HashMap<String, Invite>,
    /// Activity before this instant counts as this instant: after a restart
    /// clients could not reach the server, so idle deadlines are re-granted.
    activity_floor: Millis,
    /// Slots whose heartbeat state changed but was not written (heartbeats
    /// are batched). A slot is listed when it gets the `DIRTY` flag; a listed
    /// slot that ended (or was reused) since is skipped by its flag.
    dirty: Vec<u32>,
    hasher: KeyHasher,
}

impl Engine {
    pub fn new(kinds: Kinds) -> Engine {
        let names: Vec<String> = kinds.iter().map(|k| k.name.clone()).collect();
        let mut engine = Engine {
            kinds,
            kind_table: Vec::new(),
            kind_index: HashMap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            ids: SlotIndex::default(),
            users: SlotIndex::default(),
            children: HashMap::new(),
            orphans: HashMap::new(),
            schedule: DeadlineQueue::default(),
            stale: 0,
            grace: HashMap::new(),
            warned: HashMap::new(),
            sockets: HashMap::new(),
            invites: HashMap::new(),
            activity_floor: i64::MIN,
            dirty: Vec::new(),
            hasher: KeyHasher::new(),
        };
        for name in names {
            engine.kind_of(&name);
        }
        engine
    }

    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// A snapshot of a live session.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.find(id).map(|i| self.snapshot(i))
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// The owner of a live session.
    pub fn owner_of(&self, id: &str) -> Option<String> {
        self.find(id).map(|i| self.slot(i).owner.text())
    }

    /// [`Session::visible_to`] of a live session, without building a snapshot; `None` if it is not live.
    pub fn visible_to(&self, id: &str, user: &str) -> Option<bool> {
        let i = self.find(id)?;
        let s = self.slot(i);
        if s.owner.is(user) {
            return Some(true);
        }
        let x = s.extra.as_deref();
        let member = x.is_some_and(|x| x.members.iter().any(|m| &**m == user));
        let participant = s.explicit_parts().is_some_and(|ps| ps.iter().any(|p| &*p.id == user));
        Some(member || participant)
    }

    /// Snapshots of every live session.
    pub fn live_sessions(&self) -> impl Iterator<Item = Session> + '_ {
        self.live_slots().map(|i| self.snapshot(i))
    }

    /// Snapshots of the live sessions of one kind. Still walks every session,
    /// but snapshots only that kind's (matching's recovery looks for its few
    /// calls among millions of sessions).
    pub fn live_sessions_of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = Session> + 'a {
        let k = self.kind_index.get(kind).copied();
        self.live_slots().filter(move |&i| Some(self.slot(i).kind) == k).map(|i| self.snapshot(i))
    }

    /// Kind and status of every live session, without snapshots. Walks every
    /// session: for totals use [`Engine::live_counts`], which does not.
    pub fn live_kinds(&self) -> impl Iterator<Item = (&str, Status)> + '_ {
        self.slots.iter().flatten().map(|s| (self.kind_table[s.kind as usize].name.as_str(), s.status))
    }

    /// How many live sessions each kind has in each live status: one row per
    /// kind the engine knows (every configured kind, and any kind a restored
    /// session named) and live status, zeros included, so every series
    /// exists. Costs in proportion to the number of kinds, not of sessions.
    pub fn live_counts(&self) -> impl Iterator<Item = (&str, Status, usize)> + '_ {
        self.kind_table
            .iter()
            .flat_map(|k| LIVE_STATUSES.into_iter().map(move |st| (k.name.as_str(), st, k.live[st as usize])))
    }

    /// Snapshots of the live sessions `user` owns, oldest first.
    pub fn owned_by<'a>(&'a self, user: &str) -> impl Iterator<Item = Session> + 'a {
        self.owned(user).into_iter().map(|i| self.snapshot(i))
    }

    pub fn live_count(&self) -> usize {
        self.ids.len()
    }

    /// Live sessions whose parent is not live although their kind cascades,
    /// in slot order.
    pub fn orphans(&self) -> Vec<String> {
        let mut idxs: Vec<u32> = self.orphans.values().flatten().copied().collect();
        idxs.sort_unstable();
        idxs.into_iter().map(|i| self.slot(i).id.to_string()).collect()
    }

    pub fn has_socket(&self, user: &str) -> bool {
        self.sockets.contains_key(user)
    }
}

//! # tether-engine
//!
//! The pure domain of Tether, with no IO and no clock of its own:
//!
//! - [`time`]: milliseconds, policy durations (`30s`, `5m`) and RFC 3339 formatting;
//! - [`kind`]: session kinds and their policies, with the built-in `default`, `matching` and `call`;
//! - [`session`]: the session record, its status machine vocabulary and end reasons;
//! - [`schedule`]: the deadline queue (earliest deadline first);
//! - [`engine`]: the live sessions and every operation on them, each returning the
//!   writes to make durable and the events to publish (its module doc tours its
//!   files: operations, revive, invites, slot storage, deadlines and their
//!   `session.expiring` warnings); the reads made under
//!   the server's lock (`live_counts`, `overdue_count`, `orphans`) cost in
//!   proportion to their answer, not to the number of sessions;
//! - `live` and `index` (private): how the engine keeps a live session compactly
//!   and finds it by id or owner; [`Session`] is only the snapshot it hands out.
//!   These and [`schedule`] are hand-written on purpose: ~150 bytes per live
//!   session at 1M sessions, against ~1.7 KB with standard maps.
//!
//! Every operation takes `now`, so tests drive every timeout by passing a later time.

pub mod engine;
mod index;
pub mod kind;
mod live;
pub mod schedule;
pub mod session;
pub mod time;

pub use engine::{Engine, EngineError, Event, EventType, NewSession, Outcome, ReviveRefusal, Write};
pub use kind::{KindPolicy, Kinds, OnParentEnd, PerUser, Presence};
pub use session::{EndReason, Invite, Participant, Session, Status};
pub use time::{Dur, Millis};

//! How the engine keeps a live session in memory. The public [`Session`](crate::Session) is
//! the snapshot the API, the store and events see; holding a million of them
//! (five `String`s, a `serde_json::Value`, a `Vec<Participant>` each, plus the
//! id copied into every index) cost ~1.7 KB per session. A live session here
//! is one fixed-size [`Slot`] in a slab, addressed by a `u32` index that the
//! indexes and the deadline queue share, and a snapshot is built only when an
//! operation has to return or publish one.
//!
//! Everything that the common session does not have (a parent, metadata
//! other than `{}`, more participants than its owner, members, a completing
//! time, an owner display name) lives in an optional boxed [`Extra`], so the
//! common case pays one null pointer for all of it.
//!
//! Optional instants are kept as plain `i64` with [`NONE`] for "absent":
//! `Option<i64>` is 16 bytes, and no real timestamp is `i64::MIN` (RFC 3339
//! cannot express it).
//!
//! Kept as hand-written code on purpose (reviewed for issue 8): with this
//! layout, `index.rs` and `schedule.rs` the engine measured ~150 bytes per
//! live session at 1M sessions, against ~1.7 KB with `Session` values in
//! standard maps (`examples/engine_mem.rs` measures it); no crate packs a
//! session, its ids and its index links this tightly.

use crate::session::{Participant, Status};
use crate::time::Millis;
use serde_json::{Map, Value};
use std::fmt;
use std::hash::BuildHasher;

/// "No instant" for the inline optional timestamps.
pub(crate) const NONE: Millis = Millis::MIN;
/// "No slot" for the intrusive links.
pub(crate) const NIL: u32 = u32::MAX;

pub(crate) fn opt(ms: Millis) -> Option<Millis> {
    (ms != NONE).then_some(ms)
}

pub(crate) fn from_opt(ms: Option<Millis>) -> Millis {
    ms.unwrap_or(NONE)
}

const INLINE: usize = 22;

/// A session or user id. Server-made session ids are UUIDs in canonical
/// lowercase text (36 bytes, a 48-byte heap block behind a 16-byte `Box<str>`);
/// kept as their 16 bytes they need no allocation and hash and compare
/// faster. Short user ids (`user-42`, a JWT `sub`) fit inline. Only ids that
/// print back to exactly the same text are packed, so the packing is invisible.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Uuid([u8; 16]),
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// A borrowed [`Key`], made from the `&str` an operation receives, so lookups
/// neither allocate nor care how the stored key is packed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRef<'a> {
    Uuid([u8; 16]),
    Str(&'a [u8]),
}

impl<'a> KeyRef<'a> {
    pub fn new(s: &'a str) -> KeyRef<'a> {
        match parse_uuid(s) {
            Some(b) => KeyRef::Uuid(b),
            None => KeyRef::Str(s.as_bytes()),
        }
    }
}

/// Hashes keys into the 32-bit tags of [`crate::index::SlotIndex`]: a
/// folded 64×64→128-bit multiply with random per-engine keys (the
/// construction of foldhash and wyhash), a few nanoseconds for a UUID where
/// SipHash takes ~20 on every lookup. Not SipHash's guarantee against chosen
/// collisions, which these keys do not need: session ids are made by the
/// server, and owner ids come from authenticated callers (a signed token's
/// subject or an API key's request); and with random keys, colliding ids
/// cannot be chosen without them anyway.
#[derive(Clone, Debug)]
pub(crate) struct KeyHasher {
    keys: [u64; 4],
}

fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

fn load(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..s.len()].copy_from_slice(s);
    u64::from_le_bytes(b)
}

impl KeyHasher {
    pub fn new() -> KeyHasher {
        let seed = std::collections::hash_map::RandomState::new();
        KeyHasher { keys: [0u64, 1, 2, 3].map(|i| seed.hash_one(i)) }
    }

    pub fn tag(&self, k: KeyRef<'_>) -> u32 {
        let [k0, k1, k2, k3] = self.keys;
        let h = match k {
            KeyRef::Uuid(b) => {
                let (lo, hi) = b.split_at(8);
                fold(load(lo) ^ k0, load(hi) ^ k1)
            }
            KeyRef::Str(s) => {
                let mut h = k2 ^ s.len() as u64;
                for chunk in s.chunks(16) {
                    let (a, b) = chunk.split_at(chunk.len().min(8));
                    h = fold(load(a) ^ k0 ^ h, load(b) ^ k1);
                }
                h
            }
        };
        fold(h ^ k3, k2 ^ 0x9E37_79B9_7F4A_7C15) as u32
    }
}

impl Key {
    pub fn new(s: &str) -> Key {
        if let Some(b) = parse_uuid(s) {
            return Key::Uuid(b);
        }
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            return Key::Inline { len: s.len() as u8, bytes };
        }
        Key::Heap(s.into())
    }

    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Uuid(b) => KeyRef::Uuid(*b),
            Key::Inline { len, bytes } => KeyRef::Str(&bytes[..*len as usize]),
            Key::Heap(s) => KeyRef::Str(s.as_bytes()),
        }
    }

    pub fn is(&self, s: &str) -> bool {
        self.as_ref() == KeyRef::new(s)
    }

    /// Orders as the texts do (a UUID's bytes order as its canonical text).
    pub fn cmp_text(&self, other: &Key) -> std::cmp::Ordering {
        match (self.as_ref(), other.as_ref()) {
            (KeyRef::Uuid(a), KeyRef::Uuid(b)) => a.cmp(&b),
            (KeyRef::Str(a), KeyRef::Str(b)) => a.cmp(b),
            _ => self.text().cmp(&other.text()),
        }
    }
}

impl Key {
    /// The id as text (what `to_string` gives, without going through a formatter).
    pub fn text(&self) -> String {
        match self {
            Key::Uuid(b) => format_uuid(b),
            Key::Inline { len, bytes } => String::from_utf8_lossy(&bytes[..*len as usize]).into_owned(),
            Key::Heap(s) => s.to_string(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Uuid(b) => f.write_str(&format_uuid(b)),
            // Built from a `&str`, so the bytes are UTF-8.
            Key::Inline { len, bytes } => f.write_str(std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default()),
            Key::Heap(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Canonical lowercase `8-4-4-4-12` hex only: anything else (upper case,
/// braces, no hyphens) would not print back the same. Every lookup parses
/// its id, so this is table-driven and branch-light.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    const HEX: [u8; 256] = {
        let mut t = [0xFF; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'a' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    /// Where the 32 hex digits are.
    const DIGITS: [usize; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
        34, 35,
    ];
    let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut out = [0u8; 16];
    let mut bad = 0u8;
    for (i, o) in out.iter_mut().enumerate() {
        let hi = HEX[b[DIGITS[2 * i]] as usize];
        let lo = HEX[b[DIGITS[2 * i + 1]] as usize];
        bad |= hi | lo;
        *o = (hi << 4) | lo;
    }
    (bad & 0xF0 == 0).then_some(out)
}

fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[(byte >> 4) as usize];
        out[at + 1] = HEX[(byte & 15) as usize];
        at += 2;
    }
    String::from_utf8(out.to_vec()).expect("hex digits and hyphens")
}

/// Session metadata. A `serde_json::Value` object is a `BTreeMap` whose
/// first entry allocates a whole node (~600 bytes for `{"room": 7}`); the
/// compact JSON text of the same object is ~10 bytes. Snapshots parse it
/// back, which is exact for anything without floats (integers, strings,
/// bools, null); values with floats, or deeper than serde_json's recursion
/// limit could parse back, stay a `Value` so no digit can change.
#[derive(Clone, Debug)]
pub(crate) enum Meta {
    EmptyObject,
    Json(Box<str>),
    Value(Box<Value>),
}

impl Meta {
    pub fn new(v: Value) -> Meta {
        if matches!(&v, Value::Object(m) if m.is_empty()) {
            return Meta::EmptyObject;
        }
        if text_round_trips(&v, 0) {
            Meta::Json(v.to_string().into_boxed_str())
        } else {
            Meta::Value(Box::new(v))
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Meta::EmptyObject => Value::Object(Map::new()),
            Meta::Json(text) => serde_json::from_str(text).expect("metadata text was written by serde_json"),
            Meta::Value(v) => (**v).clone(),
        }
    }
}

fn text_round_trips(v: &Value, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    match v {
        Value::Number(n) => !n.is_f64(),
        Value::Array(a) => a.iter().all(|x| text_round_trips(x, depth + 1)),
        Value::Object(m) => m.values().all(|x| text_round_trips(x, depth + 1)),
        _ => true,
    }
}

/// A participant kept explicitly (see [`Slot`] for the implicit owner).
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub id: Box<str>,
    pub name: Option<Box<str>>,
    pub joined_at: Millis,
    pub last_seen_at: Millis,
    pub left_at: Millis,
}

impl Part {
    pub fn new(p: Participant) -> Part {
        Part {
            id: p.id.into_boxed_str(),
            name: p.name.map(String::into_boxed_str),
            joined_at: p.joined_at,
            last_seen_at: p.last_seen_at,
            left_at: from_opt(p.left_at),
        }
    }

    pub fn present(&self) -> bool {
        self.left_at == NONE
    }

    pub fn to_participant(&self) -> Participant {
        Participant {
            id: self.id.to_string(),
            name: self.name.as_deref().map(str::to_string),
            joined_at: self.joined_at,
            last_seen_at: self.last_seen_at,
            left_at: opt(self.left_at),
        }
    }
}

/// The rarely used parts of a live session.
#[derive(Debug)]
pub(crate) struct Extra {
    pub parent: Option<Key>,
    pub metadata: Meta,
    /// The display name of the implicit owner participant.
    pub owner_name: Option<Box<str>>,
    /// `Some` once the participant list is not just the implicit owner (or nobody).
    pub participants: Option<Vec<Part>>,
    pub members: Vec<Box<str>>,
    pub completing_at: Millis,
}

impl Default for Extra {
    fn default() -> Extra {
        Extra {
            parent: None,
            metadata: Meta::EmptyObject,
            owner_name: None,
            participants: None,
            members: Vec::new(),
            completing_at: NONE,
        }
    }
}

impl Extra {
    pub fn is_default(&self) -> bool {
        self.parent.is_none()
            && matches!(self.metadata, Meta::EmptyObject)
            && self.owner_name.is_none()
            && self.participants.is_none()
            && self.members.is_empty()
            && self.completing_at == NONE
    }
}

/// Slot flags.
pub(crate) const DIRTY: u8 = 1;
/// The session has an entry in `Engine::grace`.
pub(crate) const GRACE: u8 = 2;
/// The session has an entry in `Engine::children`.
pub(crate) const PARENT: u8 = 4;
/// Without an explicit list, the participants are exactly the owner, joined
/// at `created_at`, last seen at the session's `last_seen_at`, present. Only
/// the owner's heartbeat moves either time while this holds (anyone else
/// joining makes the list explicit), so one `i64` serves both — the common
/// single-user session needs no participant record at all.
pub(crate) const OWNER_JOINED: u8 = 8;

/// The session heads its owner's list of sessions (and is the one the
/// engine's user index points at).
pub(crate) const OWNER_HEAD: u8 = 16;

/// The session is in `Engine::orphans`: its kind cascades but its parent is not live.
pub(crate) const ORPHAN: u8 = 32;

/// The session has an entry in `Engine::warned`: the deadline it was last
/// warned of (`session.expiring`).
pub(crate) const WARNED: u8 = 64;

/// One live session (104 bytes).
///
/// The owner's id is kept inline rather than as an index into a user table:
/// a heartbeat must compare the caller with the owner, and a second table
/// would be a second cache miss per heartbeat. The owner's sessions form a
/// circular doubly linked list through `prev_owned`/`next_owned`, in creation
/// order, headed by the one flagged `OWNER_HEAD`, so per-user policy needs
/// no `Vec` per user and unlinking is O(1) even for a user with many sessions.
///
/// `repr(C)` keeps the fields a heartbeat reads and writes (id, owner,
/// last_seen_at, kind, status, flags) in the first 64-byte line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Slot {
    pub id: Key,
    pub owner: Key,
    pub last_seen_at: Millis,
    pub kind: u16,
    pub status: Status,
    pub flags: u8,
    /// The id's hash tag in the engine's id index (kept so removal does not rehash).
    pub id_tag: u32,
    /// Where this session's one entry in the deadline queue is, or NONE. It
    /// may be earlier than the session's real wake time (see `Engine::reschedule`).
    pub queued: Millis,
    pub extra: Option<Box<Extra>>,
    pub created_at: Millis,
    pub activated_at: Millis,
    pub prev_owned: u32,
    pub next_owned: u32,
}

impl Slot {
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    pub fn completing_at(&self) -> Millis {
        self.extra.as_ref().map_or(NONE, |x| x.completing_at)
    }

    pub fn parent(&self) -> Option<&Key> {
        self.extra.as_ref().and_then(|x| x.parent.as_ref())
    }

    pub fn explicit_parts(&self) -> Option<&Vec<Part>> {
        self.extra.as_ref().and_then(|x| x.participants.as_ref())
    }

    /// Turns the implicit participant list into an explicit one, so it can change.
    pub fn parts_mut(&mut self) -> &mut Vec<Part> {
        let implicit_owner = self.flags & OWNER_JOINED != 0;
        self.flags &= !OWNER_JOINED;
        let (created_at, last_seen_at) = (self.created_at, self.last_seen_at);
        let owner = self.owner.text().into_boxed_str();
        let x = self.extra_mut();
        if x.participants.is_none() {
            let mut list = Vec::new();
            if implicit_owner {
                list.push(Part {
                    id: owner,
                    name: x.owner_name.take(),
                    joined_at: created_at,
                    last_seen_at,
                    left_at: NONE,
                });
            }
            x.participants = Some(list);
        }
        x.participants.as_mut().expect("just set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_stays_small() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        assert_eq!(std::mem::size_of::<Slot>(), 104);
        assert_eq!(std::mem::size_of::<Option<Slot>>(), 104);
        assert_eq!(std::mem::offset_of!(Slot, id_tag), 60, "heartbeat fields in the first cache line");
    }

    #[test]
    fn keys_print_back_exactly() {
        for s in [
            "0192f3c4-5b6a-7c8d-9e0f-000000000042",
            "0192F3C4-5B6A-7C8D-9E0F-000000000042",
            "0192f3c45b6a7c8d9e0f000000000042",
            "0192f3c4-5b6a-7c8d-9e0f-00000000004g",
            "0192f3c4-5b6a-7c8d-9e0f_000000000042",
            "",
            "u1",
            "exactly-twenty-two-byt",
            "twenty-three-bytes-long",
            "émoji 🙂 and more text than fits inline",
        ] {
            let k = Key::new(s);
            assert_eq!(k.to_string(), s);
            assert_eq!(k.text(), s);
            assert!(k.is(s));
            assert!(!k.is("other"));
        }
        assert!(matches!(Key::new("0192f3c4-5b6a-7c8d-9e0f-000000000042"), Key::Uuid(_)));
        let texts = [
            "0192f3c4-5b6a-7c8d-9e0f-000000000042",
            "0192f3c4-5b6a-7c8d-9e0f-00000000004a",
            "0192f3c4-5b6a-7c8d-9e0f-000000000050",
            "0192f3c4-5b6a-7c8d-9e0f-0000000000",
            "0192f3c4-5b6a-7c8d-9e0f-0000000000429",
            "0192F3C4-5B6A-7C8D-9E0F-000000000042",
            "s1",
            "",
            "zz",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(Key::new(a).cmp_text(&Key::new(b)), a.cmp(b), "{a} vs {b}");
            }
        }
        assert!(matches!(Key::new("0192F3C4-5B6A-7C8D-9E0F-000000000042"), Key::Heap(_)));
        assert!(matches!(Key::new("exactly-twenty-two-byt"), Key::Inline { .. }));
    }

    #[test]
    fn tags_of_similar_keys_spread() {
        let h = KeyHasher::new();
        let mut tags = std::collections::HashSet::new();
        let n = 100_000u64;
        for i in 0..n {
            for key in [
                format!("0192f3c4-5b6a-7c8d-9e0f-{i:012}"),
                format!("user-{i}"),
                format!("an-identifier-longer-than-sixteen-bytes-{i}"),
            ] {
                tags.insert(h.tag(KeyRef::new(&key)));
            }
        }
        // 300k random 32-bit tags would collide ~10 times.
        assert!(tags.len() as u64 > 3 * n - 100, "{} distinct tags of {}", tags.len(), 3 * n);
        assert_ne!(h.tag(KeyRef::new("a")), h.tag(KeyRef::new("a\0")));
    }

    #[test]
    fn metadata_round_trips() {
        for v in [
            json!({}),
            json!(null),
            json!({"room": 7, "tags": ["a", "b"], "nested": {"x": null, "big": u64::MAX, "neg": i64::MIN}}),
            json!({"score": 0.1 + 0.2, "f": 1e300}),
            json!("text with \"quotes\" and \u{1F642}"),
            json!([]),
        ] {
            assert_eq!(Meta::new(v.clone()).to_value(), v);
        }
        assert!(matches!(Meta::new(json!({"score": 0.5})), Meta::Value(_)));
        assert!(matches!(Meta::new(json!({"n": 5})), Meta::Json(_)));
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        assert_eq!(Meta::new(deep.clone()).to_value(), deep);
    }
}

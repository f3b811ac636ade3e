//! The matching pool: who is registered for matching, who of them is free
//! (waiting), the never-pair relations, ratings, and the pairing decision.
//!
//! The server owns sessions, calls and the clock; it tells the pool about
//! state changes (`enter`, `leave`, `set_busy`, `try_pair`) and passes
//! `now_ms` in. The pool is single-threaded by design: the server wraps it
//! in one mutex, which is what makes "removed from the waiting set
//! atomically" hold — a pairing is decided and both users marked busy inside
//! one `&mut self` call.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::index::{AgeIndex, Card, Entry, Merge, Slot, WaitKey};
use crate::score::{blend_personality, relax_factor, score, Side};
use crate::validate::{FieldError, Preferences, Profile};

/// Default number of eligible candidates scored per pairing attempt.
pub const DEFAULT_CANDIDATE_BUDGET: usize = 1000;

/// Two users the pool just took out of the waiting set together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pairing {
    /// The user who waited longer (the call's owner).
    pub a: String,
    pub b: String,
    /// `a`'s matching session id, as given to `enter`.
    pub a_session: String,
    pub b_session: String,
    /// Compatibility at the moment of pairing, 0..=1.
    pub score: f64,
}

/// Why two users must never be paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExclusionKind {
    /// They had a call together that became active.
    HadCall,
    /// One blocked the other (direction does not matter for matching).
    Blocked,
}

/// Tuning knobs. `Default` is what the server should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// At most this many eligible candidates are scored per pairing attempt
    /// (longest-waiting first). Bounds the work per `enter` / `try_pair`.
    pub candidate_budget: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { candidate_budget: DEFAULT_CANDIDATE_BUDGET }
    }
}

/// A fast hasher for the pool's own dense `u32` ids (never user-controlled,
/// so hash flooding is not a concern here; user-provided strings still go
/// through the std SipHash maps).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdSet = HashSet<u32, BuildHasherDefault<IdHasher>>;

/// Interns strings to dense `u32`s so the hot loop compares integers.
/// Entries are never freed: user ids stay referenced by exclusions, and
/// the interest vocabulary is bounded by what users typed.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// A user's current matching registration (a live matching session).
struct Registration {
    session_id: String,
    prefs: Preferences,
    pref_ids: Vec<u32>,
    /// `Some` while free and waiting; `None` while busy (in a call or owing a
    /// decision).
    wait: Option<WaitKey>,
    /// Where the user is indexed; `Some` iff waiting *and* has a profile.
    slot: Option<Slot>,
}

#[derive(Default)]
struct User {
    profile: Option<Profile>,
    interest_ids: Vec<u32>,
    ratings_sum: [f64; 5],
    ratings_n: u32,
    effective: Option<[f64; 5]>,
    never: IdSet,
    reg: Option<Registration>,
}

/// The matching pool. See the crate docs for the rules it applies.
pub struct Pool {
    config: PoolConfig,
    user_ids: Interner,
    interests: Interner,
    users: Vec<User>,
    index: AgeIndex,
    blocks: HashSet<(u32, u32), BuildHasherDefault<IdHasher>>,
    seq: u64,
    waiting: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

fn ordered(a: u32, b: u32) -> (u32, u32) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Pool {
    pub fn new() -> Self {
        Pool::with_config(PoolConfig::default())
    }

    pub fn with_config(config: PoolConfig) -> Self {
        Pool {
            config: PoolConfig { candidate_budget: config.candidate_budget.max(1) },
            user_ids: Interner::default(),
            interests: Interner::default(),
            users: Vec::new(),
            index: AgeIndex::new(),
            blocks: HashSet::default(),
            seq: 0,
            waiting: 0,
        }
    }

    fn uid(&mut self, user_id: &str) -> u32 {
        let id = self.user_ids.intern(user_id);
        if id as usize >= self.users.len() {
            self.users.resize_with(id as usize + 1, User::default);
        }
        id
    }

    fn user(&self, user_id: &str) -> Option<&User> {
        self.user_ids.get(user_id).and_then(|id| self.users.get(id as usize))
    }

    fn intern_keys(&mut self, keys: &[String]) -> Vec<u32> {
        let mut v: Vec<u32> = keys.iter().map(|k| self.interests.intern(k)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    // ---- profiles and ratings ------------------------------------------------

    /// Adds or replaces a profile. A waiting user is re-indexed (its age may
    /// have changed) but not paired: call [`Pool::try_pair`] afterwards to
    /// pair a user who was waiting without a profile.
    pub fn upsert_profile(&mut self, profile: Profile) {
        let id = self.uid(profile.user_id());
        let ids = self.intern_keys(profile.interest_keys());
        self.unindex(id);
        let u = &mut self.users[id as usize];
        u.interest_ids = ids;
        u.effective = blend_personality(profile.personality(), &u.ratings_sum, u.ratings_n);
        u.profile = Some(profile);
        self.reindex(id);
    }

    pub fn profile(&self, user_id: &str) -> Option<&Profile> {
        self.user(user_id).and_then(|u| u.profile.as_ref())
    }

    /// Records one personality rating received by `rated_user` (validated:
    /// each trait finite and in 0..=1, errors name `personality_rating[i]`).
    /// Ratings may arrive before the profile; they are kept either way.
    pub fn record_rating(&mut self, rated_user: &str, rating: [f64; 5]) -> Result<(), FieldError> {
        for (i, v) in rating.iter().enumerate() {
            if !v.is_finite() || !(0.0..=1.0).contains(v) {
                return Err(FieldError::new(format!("personality_rating[{i}]"), "must be a number between 0 and 1"));
            }
        }
        let id = self.uid(rated_user);
        let u = &mut self.users[id as usize];
        for (s, v) in u.ratings_sum.iter_mut().zip(rating) {
            *s += v;
        }
        u.ratings_n = u.ratings_n.saturating_add(1);
        u.effective = blend_personality(u.profile.as_ref().and_then(Profile::personality), &u.ratings_sum, u.ratings_n);
        // The index carries a copy of the personality for scoring.
        self.reindex(id);
        Ok(())
    }

    /// The personality used for scoring: own declared personality blended
    /// with received ratings (see crate docs), or `None` if neither exists.
    pub fn effective_personality(&self, user_id: &str) -> Option<[f64; 5]> {
        self.user(user_id).and_then(|u| u.effective)
    }

    /// How many ratings `user_id` has received.
    pub fn rating_count(&self, user_id: &str) -> u32 {
        self.user(user_id).map_or(0, |u| u.ratings_n)
    }

    // ---- never-pair relations --------------------------------------------

    /// `a` and `b` had a call that became active: never pair them again.
    pub fn exclude_pair(&mut self, a: &str, b: &str) {
        self.add_never(a, b, ExclusionKind::HadCall);
    }

    /// One of them blocked the other: never pair them (either direction).
    pub fn block(&mut self, a: &str, b: &str) {
        self.add_never(a, b, ExclusionKind::Blocked);
    }

    /// Loads persisted relations at start-up (same effect as calling
    /// [`Pool::exclude_pair`] / [`Pool::block`] for each).
    pub fn load_exclusions<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = (S, S, ExclusionKind)>,
        S: AsRef<str>,
    {
        for (a, b, kind) in items {
            self.add_never(a.as_ref(), b.as_ref(), kind);
        }
    }

    fn add_never(&mut self, a: &str, b: &str, kind: ExclusionKind) {
        if a == b {
            return;
        }
        let (ia, ib) = (self.uid(a), self.uid(b));
        self.users[ia as usize].never.insert(ib);
        self.users[ib as usize].never.insert(ia);
        if kind == ExclusionKind::Blocked {
            self.blocks.insert(ordered(ia, ib));
        }
    }

    /// Whether `a` and `b` may never be paired (had a call, or blocked).
    pub fn is_excluded(&self, a: &str, b: &str) -> bool {
        match (self.user_ids.get(a), self.user_ids.get(b)) {
            (Some(ia), Some(ib)) => self.users[ia as usize].never.contains(&ib),
            _ => false,
        }
    }

    /// Whether either of `a`, `b` blocked the other.
    pub fn is_blocked(&self, a: &str, b: &str) -> bool {
        match (self.user_ids.get(a), self.user_ids.get(b)) {
            (Some(ia), Some(ib)) => self.blocks.contains(&ordered(ia, ib)),
            _ => false,
        }
    }

    // ---- waiting set ------------------------------------------------------

    /// The user started (or restarted) a matching session and is free: it
    /// replaces any previous registration, starts waiting at `now_ms`, and
    /// is paired at once if anyone eligible is waiting. A user without a
    /// profile waits but cannot be paired until it has one.
    pub fn enter(&mut self, user_id: &str, session_id: &str, prefs: Preferences, now_ms: i64) -> Option<Pairing> {
        let id = self.uid(user_id);
        self.drop_registration(id);
        let pref_ids = self.intern_keys(prefs.preferred_keys());
        self.users[id as usize].reg =
            Some(Registration { session_id: session_id.to_string(), prefs, pref_ids, wait: None, slot: None });
        self.start_waiting(id, now_ms);
        self.pair(id, now_ms)
    }

    /// The user's matching session ended: forget its registration. Returns
    /// whether it had one.
    pub fn leave(&mut self, user_id: &str) -> bool {
        match self.user_ids.get(user_id) {
            Some(id) => self.drop_registration(id),
            None => false,
        }
    }

    /// The user is busy (joined a call the pool did not create, or otherwise
    /// must not be paired) but keeps its matching session. Returns whether
    /// it was waiting. Users returned in a [`Pairing`] are already busy.
    pub fn set_busy(&mut self, user_id: &str) -> bool {
        let Some(id) = self.user_ids.get(user_id) else { return false };
        let was = self.users[id as usize].reg.as_ref().is_some_and(|r| r.wait.is_some());
        self.stop_waiting(id);
        was
    }

    /// The user is free again (decision sent, call cancelled, profile just
    /// added) or should simply be re-checked. A busy user starts waiting
    /// afresh at `now_ms` (its wait clock and relaxation restart); a user
    /// already waiting keeps its place. Then pairs it if possible. `None`
    /// also when the user has no registration (no live matching session).
    pub fn try_pair(&mut self, user_id: &str, now_ms: i64) -> Option<Pairing> {
        let id = self.user_ids.get(user_id)?;
        let reg = self.users[id as usize].reg.as_ref()?;
        if reg.wait.is_none() {
            self.start_waiting(id, now_ms);
        }
        self.pair(id, now_ms)
    }

    /// Users currently free and waiting (with or without a profile).
    pub fn waiting_count(&self) -> usize {
        self.waiting
    }

    pub fn is_waiting(&self, user_id: &str) -> bool {
        self.user(user_id).and_then(|u| u.reg.as_ref()).is_some_and(|r| r.wait.is_some())
    }

    /// The matching session id the user entered with, while registered.
    pub fn session_id(&self, user_id: &str) -> Option<&str> {
        self.user(user_id).and_then(|u| u.reg.as_ref()).map(|r| r.session_id.as_str())
    }

    /// The preferences the user entered with, while registered.
    pub fn preferences(&self, user_id: &str) -> Option<&Preferences> {
        self.user(user_id).and_then(|u| u.reg.as_ref()).map(|r| &r.prefs)
    }

    /// The score `a` and `b` would get at `now_ms` (relaxation from their
    /// current waits; a busy user counts as not relaxed). Ignores the hard
    /// filters. `None` unless both have a profile and a registration.
    pub fn compatibility(&self, a: &str, b: &str, now_ms: i64) -> Option<f64> {
        let ia = self.user_ids.get(a)?;
        let ib = self.user_ids.get(b)?;
        Some(score(&self.side(ia, now_ms)?, &self.side(ib, now_ms)?))
    }

    // ---- internals -------------------------------------------------------

    fn side(&self, id: u32, now_ms: i64) -> Option<Side<'_>> {
        let u = &self.users[id as usize];
        u.profile.as_ref()?;
        let r = u.reg.as_ref()?;
        Some(Side {
            interests: &u.interest_ids,
            preferred: &r.pref_ids,
            personality: u.effective.as_ref(),
            weight: r.prefs.personality_weight(),
            relax: r.wait.map_or(1.0, |w| relax_factor(now_ms.saturating_sub(w.entered_at))),
        })
    }

    fn start_waiting(&mut self, id: u32, now_ms: i64) {
        // The index is keyed by the wait key, so leave it before the key changes.
        self.unindex(id);
        self.seq += 1;
        let key = WaitKey { entered_at: now_ms, seq: self.seq, uid: id };
        if let Some(r) = self.users[id as usize].reg.as_mut() {
            if r.wait.is_none() {
                self.waiting += 1;
            }
            r.wait = Some(key);
        }
        self.reindex(id);
    }

    fn stop_waiting(&mut self, id: u32) {
        self.unindex(id);
        if let Some(r) = self.users[id as usize].reg.as_mut() {
            if r.wait.take().is_some() {
                self.waiting -= 1;
            }
        }
    }

    fn drop_registration(&mut self, id: u32) -> bool {
        self.stop_waiting(id);
        self.users[id as usize].reg.take().is_some()
    }

    fn unindex(&mut self, id: u32) {
        if let Some(r) = self.users[id as usize].reg.as_mut() {
            if let (Some(slot), Some(key)) = (r.slot.take(), r.wait) {
                self.index.remove(slot, key);
            }
        }
    }

    /// Puts a waiting user with a profile into the index (idempotent).
    fn reindex(&mut self, id: u32) {
        self.unindex(id);
        let u = &mut self.users[id as usize];
        let Some(age) = u.profile.as_ref().map(Profile::age) else { return };
        let Some(r) = u.reg.as_mut() else { return };
        let Some(key) = r.wait else { return };
        let slot = Slot { age, min: r.prefs.min_age(), max: r.prefs.max_age() };
        r.slot = Some(slot);
        let card = Card::new(&u.interest_ids, &r.pref_ids, r.prefs.personality_weight(), u.effective);
        self.index.insert(slot, key, card);
    }

    /// Picks the best partner for waiting user `id` and, if found, takes
    /// both out of the waiting set.
    fn pair(&mut self, id: u32, now_ms: i64) -> Option<Pairing> {
        let (partner, score) = self.best_partner(id, now_ms)?;
        let ka = self.users[id as usize].reg.as_ref()?.wait?;
        let kb = self.users[partner as usize].reg.as_ref()?.wait?;
        self.stop_waiting(id);
        self.stop_waiting(partner);
        let (a, b) = if kb < ka { (partner, id) } else { (id, partner) };
        let session = |x: u32| self.users[x as usize].reg.as_ref().map(|r| r.session_id.clone()).unwrap_or_default();
        Some(Pairing {
            a: self.user_ids.names[a as usize].clone(),
            b: self.user_ids.names[b as usize].clone(),
            a_session: session(a),
            b_session: session(b),
            score,
        })
    }

    /// Candidates come from the index already mutually age-compatible.
    /// Excluded or blocked ones are skipped without counting against the
    /// budget (a user's exclusions are bounded, so this cannot turn into a
    /// pool scan, and a partner is found whenever one is eligible). When no
    /// more than `candidate_budget` are waiting, all are scored; otherwise
    /// they are merged longest-wait first and the first `candidate_budget`
    /// eligible ones are scored. The best score wins, ties to the longest
    /// wait.
    fn best_partner(&self, id: u32, now_ms: i64) -> Option<(u32, f64)> {
        let me = &self.users[id as usize];
        let slot = me.reg.as_ref()?.slot?;
        let my_side = self.side(id, now_ms)?;
        let groups = self.index.mutual(slot.age, slot.min, slot.max);
        let total: usize = groups.iter().map(|g| g.len()).sum();
        let mut best: Option<(f64, WaitKey)> = None;
        let mut consider = |e: &Entry| -> bool {
            if e.key.uid == id || me.never.contains(&e.key.uid) {
                return false;
            }
            let their_side = Side {
                interests: e.card.interests(),
                preferred: e.card.preferred(),
                personality: e.card.personality.as_ref(),
                weight: e.card.weight,
                relax: relax_factor(now_ms.saturating_sub(e.key.entered_at)),
            };
            let s = score(&my_side, &their_side);
            let better = match best {
                None => true,
                Some((bs, bk)) => s > bs || (s == bs && e.key < bk),
            };
            if better {
                best = Some((s, e.key));
            }
            true
        };
        if total <= self.config.candidate_budget {
            // Everyone fits in the budget: skip the heap, order does not matter.
            for e in groups.iter().flat_map(|g| g.iter()) {
                consider(e);
            }
        } else {
            let mut scored = 0usize;
            for e in Merge::new(groups) {
                if consider(e) {
                    scored += 1;
                    if scored >= self.config.candidate_budget {
                        break;
                    }
                }
            }
        }
        best.map(|(s, k)| (k.uid, s))
    }
}

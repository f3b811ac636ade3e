//! Tether's matching pool: validated profiles and preferences, personality
//! ratings, compatibility scoring and pair selection for continuous
//! matching (CONTRACT §6).
//!
//! Pure: no IO, no threads, no clock. Time is passed in as `now_ms`
//! (milliseconds, any epoch, as long as the caller is consistent). The
//! server owns matching sessions, calls and events, keeps the [`Pool`]
//! behind one mutex, and tells it when a user enters ([`Pool::enter`]),
//! leaves ([`Pool::leave`]), becomes busy ([`Pool::set_busy`]; pairings make
//! both users busy by themselves) or becomes free again ([`Pool::try_pair`]).
//!
//! # Hard filters
//! Two users are paired only if: both are waiting (the server keeps only
//! free users — live matching session, not in a call, not owing a decision —
//! in the pool), they are different users, both have a profile, each one's
//! age is within the *other's* `[min_age, max_age]` (age ranges never
//! relax), and they are neither excluded (had a call that became active:
//! [`Pool::exclude_pair`]) nor blocked ([`Pool::block`]) in either
//! direction. A pairing removes both from the waiting set inside one call,
//! so a user is never in two pairings.
//!
//! # Effective personality (ratings blend)
//! With `own` the profile's declared personality, `n` the number of ratings
//! received and `mean` their per-trait mean, and `k = 3` (the profile
//! counts as three ratings):
//!
//! ```text
//! eff = (own * k + mean * n) / (k + n)     if own is present
//! eff = mean                               if only ratings (n > 0)
//! eff = none                               if neither
//! ```
//!
//! # Compatibility score (0..=1)
//! For users `a` and `b`:
//!
//! ```text
//! overlap(a→b) = |a.preferred ∩ b.interests| / |a.preferred|     if a.preferred is non-empty
//!              = |a.interests ∩ b.interests| / |a.interests ∪ b.interests|   (Jaccard) otherwise,
//!                0.5 if both interest lists are empty
//! interest     = (overlap(a→b) + overlap(b→a)) / 2
//! personality  = 1 - mean_i |eff_a[i] - eff_b[i]|      (0.5 if either eff is none)
//! w            = (a.personality_weight + b.personality_weight) / 2
//! relax        = min(factor(a), factor(b))
//! score        = (1-w) * interest * relax  +  w * personality  +  (1-relax) * (1-w) * 0.5
//! ```
//!
//! Interests compare case-insensitively (lowercase keys). Relaxation pulls
//! the interest part toward the neutral 0.5 as a user waits, so someone who
//! waited long is not held back by a poor interest overlap; personality and
//! age ranges are untouched.
//!
//! # Relaxation schedule
//! `factor(user)` from the time since the user last started waiting
//! (`enter`, or `try_pair` after being busy): `1.0` below 10 s, `0.75` from
//! 10 s to below 30 s, `0.5` from 30 s to below 60 s, `0.25` from 60 s on
//! ([`relax_factor`]).
//!
//! # Choosing a partner
//! Pairing is attempted when a user enters or becomes free (not on a timer).
//! An index groups waiting users by (age, min_age, max_age), so a search
//! visits only mutually age-compatible users, never the whole pool.
//! Excluded/blocked users are skipped without counting. If at most
//! [`PoolConfig::candidate_budget`] (default **1000**) candidates remain,
//! all are scored; otherwise they are visited **longest wait first** and the
//! first `candidate_budget` eligible ones are scored. The best score wins;
//! ties go to the longer wait. A partner is therefore found whenever an
//! eligible one is waiting, and the choice is exact whenever at most 1000
//! are. Visiting the oldest first keeps it fair (nobody starves behind
//! newer, better-scoring arrivals) and they are the most relaxed anyway.
//! 1000 rather than 2000: on the 100k-user benchmark (`examples/pool_bench`)
//! it cuts the latency of wide age ranges by ~40% for a mean pairing score
//! about 0.01 lower. [`Pairing::a`] is the partner who waited longer.
//!
//! # Validation
//! [`Profile::parse`] and [`Preferences::parse`] are the only constructors;
//! errors are [`FieldError`]s naming the field (`age`, `interests[3]`,
//! `personality[2]`, …), including missing required fields.

mod index;
mod pool;
mod score;
mod validate;

pub use pool::{ExclusionKind, Pairing, Pool, PoolConfig, DEFAULT_CANDIDATE_BUDGET};
pub use score::{blend_personality, relax_factor, OWN_PERSONALITY_WEIGHT};
pub use validate::{
    parse_personality, FieldError, Interests, Preferences, PreferencesInput, Profile, ProfileInput,
    DEFAULT_PERSONALITY_WEIGHT, MAX_AGE, MAX_BIO_CHARS, MAX_INTERESTS, MAX_INTEREST_CHARS, MAX_NAME_CHARS,
    MAX_USER_ID_LEN, MIN_AGE,
};

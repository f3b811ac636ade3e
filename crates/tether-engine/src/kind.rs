//! Session kinds and their policies: what ends a session of this kind, who
//! may hold how many, and how participants count. The config loader builds
//! these; the engine only reads them.

use crate::time::Dur;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What starting a session does when the user already holds a live one of the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PerUser {
    /// The old session ends `superseded`; the new one starts.
    Replace,
    /// `409` with the blocking session, unless the caller asks to take over.
    Reject,
    /// Any number at once.
    Allow,
}

/// Whose activity keeps the session alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Owner,
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnParentEnd {
    End,
    Keep,
}

/// The policy of one kind. Every timeout is optional: `None` means off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindPolicy {
    pub name: String,
    pub idle_timeout: Option<Dur>,
    pub max_duration: Option<Dur>,
    pub waiting_timeout: Option<Dur>,
    pub completing_timeout: Option<Dur>,
    pub per_user: PerUser,
    pub quorum: u32,
    pub presence: Presence,
    pub participant_idle_timeout: Option<Dur>,
    pub disconnect_grace: Option<Dur>,
    pub on_parent_end: OnParentEnd,
    pub invite_ttl: Option<Dur>,
    /// `session.expiring` is published this long before each deadline that
    /// would end a live session (once per deadline).
    pub warn_before: Option<Dur>,
    /// A session that ended `idle_timeout` or `disconnected` may be revived
    /// (`POST /v1/sessions/{id}/revive`) this long after its end.
    pub revive_window: Option<Dur>,
    /// Ended sessions are kept this long, then purged. Not a timeout, so it
    /// has a default (7 days) instead of being off.
    pub retention: Dur,
    /// Only the `matching` kind: how long a user may owe a skip/continue
    /// decision before it returns to the pool anyway.
    pub decision_timeout: Option<Dur>,
    /// Calls are created for two users with nobody joined yet; their quorum
    /// counts users who called join, so the owner is not joined on creation.
    pub owner_joins: bool,
}

pub const DEFAULT_RETENTION: Dur = Dur(7 * 86_400_000);

impl KindPolicy {
    /// A new kind from a config table: every timeout off, `on_parent_end = end`.
    pub fn new(name: &str) -> KindPolicy {
        KindPolicy {
            name: name.to_string(),
            idle_timeout: None,
            max_duration: None,
            waiting_timeout: None,
            completing_timeout: None,
            per_user: PerUser::Allow,
            quorum: 1,
            presence: Presence::Owner,
            participant_idle_timeout: None,
            disconnect_grace: None,
            on_parent_end: OnParentEnd::End,
            invite_ttl: None,
            warn_before: None,
            revive_window: None,
            retention: DEFAULT_RETENTION,
            decision_timeout: None,
            owner_joins: true,
        }
    }
}

/// The kind registry. Always holds the built-in kinds `default`, `matching` and `call`.
#[derive(Clone, Debug)]
pub struct Kinds {
    kinds: BTreeMap<String, KindPolicy>,
}

pub const MATCHING: &str = "matching";
pub const CALL: &str = "call";
pub const DEFAULT: &str = "default";

impl Default for Kinds {
    fn default() -> Self {
        Kinds::builtin()
    }
}

impl Kinds {
    /// `default` (idle 60s, allow), `matching` (idle 30s, disconnect grace 5s,
    /// replace, decision 30s) and `call` (quorum 2, waiting 60s, max 180s).
    pub fn builtin() -> Kinds {
        let mut default = KindPolicy::new(DEFAULT);
        default.idle_timeout = Some(Dur::from_secs(60));

        let mut matching = KindPolicy::new(MATCHING);
        matching.idle_timeout = Some(Dur::from_secs(30));
        matching.disconnect_grace = Some(Dur::from_secs(5));
        matching.per_user = PerUser::Replace;
        matching.decision_timeout = Some(Dur::from_secs(30));

        let mut call = KindPolicy::new(CALL);
        call.quorum = 2;
        call.waiting_timeout = Some(Dur::from_secs(60));
        call.max_duration = Some(Dur::from_secs(180));
        call.owner_joins = false;

        let kinds = [default, matching, call].into_iter().map(|k| (k.name.clone(), k)).collect();
        Kinds { kinds }
    }

    pub fn get(&self, name: &str) -> Option<&KindPolicy> {
        self.kinds.get(name)
    }

    /// The policy a config table starts from: the built-in one for a built-in
    /// name (the table overrides only the keys it names), else a new kind.
    pub fn base_for(&self, name: &str) -> KindPolicy {
        self.kinds.get(name).cloned().unwrap_or_else(|| KindPolicy::new(name))
    }

    pub fn insert(&mut self, policy: KindPolicy) {
        self.kinds.insert(policy.name.clone(), policy);
    }

    pub fn iter(&self) -> impl Iterator<Item = &KindPolicy> {
        self.kinds.values()
    }
}

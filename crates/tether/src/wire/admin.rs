//! Operations (contract section 7): the health report, cleanup, the kinds in
//! force and the demo token.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tether_engine::{EndReason, KindPolicy, OnParentEnd, PerUser, Presence};
use utoipa::ToSchema;

/// A kind in force. Durations in milliseconds; null means off.
#[derive(Serialize, ToSchema)]
pub struct KindInfo {
    pub name: String,
    #[schema(required = true)]
    pub idle_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub max_duration_ms: Option<u64>,
    #[schema(required = true)]
    pub waiting_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub completing_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub disconnect_grace_ms: Option<u64>,
    #[schema(required = true)]
    pub participant_idle_timeout_ms: Option<u64>,
    #[schema(required = true)]
    pub invite_ttl_ms: Option<u64>,
    /// `session.expiring` comes this long before each deadline.
    #[schema(required = true)]
    pub warn_before_ms: Option<u64>,
    /// A session that ended `idle_timeout` or `disconnected` may be revived this long after its end.
    #[schema(required = true)]
    pub revive_window_ms: Option<u64>,
    /// Ended sessions are kept this long, then purged.
    pub retention_ms: u64,
    /// `matching` only: how long a user may owe a decision before it returns to the pool.
    #[schema(required = true)]
    pub decision_timeout_ms: Option<u64>,
    pub per_user: PerUser,
    pub quorum: u32,
    pub presence: Presence,
    pub on_parent_end: OnParentEnd,
}

impl From<&KindPolicy> for KindInfo {
    fn from(k: &KindPolicy) -> Self {
        let ms = |d: Option<tether_engine::Dur>| d.map(|d| d.0);
        KindInfo {
            name: k.name.clone(),
            idle_timeout_ms: ms(k.idle_timeout),
            max_duration_ms: ms(k.max_duration),
            waiting_timeout_ms: ms(k.waiting_timeout),
            completing_timeout_ms: ms(k.completing_timeout),
            disconnect_grace_ms: ms(k.disconnect_grace),
            participant_idle_timeout_ms: ms(k.participant_idle_timeout),
            invite_ttl_ms: ms(k.invite_ttl),
            warn_before_ms: ms(k.warn_before),
            revive_window_ms: ms(k.revive_window),
            retention_ms: k.retention.0,
            decision_timeout_ms: ms(k.decision_timeout),
            per_user: k.per_user,
            quorum: k.quorum,
            presence: k.presence,
            on_parent_end: k.on_parent_end,
        }
    }
}

/// Extension: the kinds in force.
#[derive(Serialize, ToSchema)]
pub struct Kinds {
    pub kinds: Vec<KindInfo>,
}

/// `healthy` when `problems` is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Degraded,
}

/// Live session counts.
#[derive(Serialize, ToSchema)]
pub struct SessionCounts {
    /// Live sessions.
    pub total: u64,
    /// Live sessions by status.
    pub by_status: BTreeMap<String, u64>,
    /// Live sessions by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Live sessions past a deadline by more than 100 ms (should always be 0).
    pub overdue: u64,
}

/// Matching state.
#[derive(Serialize, ToSchema)]
pub struct MatchingHealth {
    /// Users waiting in the matching pool.
    pub pool: u64,
}

/// What a health problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// Live sessions past a deadline by more than 100 ms.
    OverdueSessions,
    /// Live sessions whose parent has ended.
    OrphanSessions,
    /// The p99 lateness of deadline-driven ends is above 100 ms.
    ExpiryLateness,
}

/// A live session past its deadline by more than 100 ms.
#[derive(Serialize, ToSchema)]
pub struct OverdueSession {
    pub id: String,
    /// The reason it will end with.
    pub reason: EndReason,
    #[schema(format = DateTime)]
    pub deadline: String,
}

/// The sessions a health problem concerns.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AffectedSession {
    Overdue(OverdueSession),
    /// An orphan's id.
    Orphan(String),
}

/// A detected problem.
#[derive(Serialize, ToSchema)]
pub struct HealthProblem {
    pub code: ProblemCode,
    pub detail: String,
    /// Up to 20 affected sessions: `{"id","reason","deadline"}` for overdue ones, ids for orphans.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sessions: Option<Vec<AffectedSession>>,
}

/// The health report.
#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    pub health: Health,
    pub sessions: SessionCounts,
    /// Extension.
    pub matching: MatchingHealth,
    /// Extension: the store in use, e.g. `sqlite://tether.db (WAL, synchronous=FULL)`.
    pub store: String,
    /// Extension: upper bound of the histogram bucket holding the p99 lateness of deadline-driven ends (s); null before any.
    #[schema(required = true)]
    pub expiry_lateness_p99_le_seconds: Option<f64>,
    pub problems: Vec<HealthProblem>,
    /// What to do about the problems.
    pub recommendations: Vec<String>,
    /// Extension: every node of the cluster (one entry on a single node).
    pub nodes: Vec<ClusterNode>,
}

/// A live session past its deadline, and the reason it would end with.
#[derive(Serialize, ToSchema)]
pub struct WouldEnd {
    pub id: String,
    pub reason: EndReason,
}

/// Cleanup dry run: what `POST /v1/admin/cleanup` would do now. Changes nothing.
#[derive(Serialize, ToSchema)]
pub struct CleanupPreview {
    pub would_end: Vec<WouldEnd>,
    /// Ids of live sessions whose parent has ended (they would end `parent_ended`).
    pub orphans: Vec<String>,
    /// Invitations that no longer work and would be removed.
    pub expired_invites: u64,
    /// Ended sessions past their kind's `retention` that would be purged.
    pub purgeable: u64,
}

/// What cleanup did.
#[derive(Serialize, ToSchema)]
pub struct CleanupResult {
    /// Sessions ended because a deadline had passed.
    pub ended: u64,
    /// Orphans ended `parent_ended`.
    pub orphans: u64,
    /// Ended sessions purged.
    pub purged: u64,
    /// Extension: dead invitations removed.
    pub expired_invites: u64,
}

/// Ask for a demo user token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoTokenRequest {
    /// 1–64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub user_id: String,
}

/// A user token valid 12 hours.
#[derive(Serialize, ToSchema)]
pub struct DemoToken {
    pub token: String,
    pub user_id: String,
}

/// One node of the cluster (contract section 8), as registered in the database.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    /// Chosen at each start (a UUID).
    pub id: String,
    /// The URL other nodes reach it at (`--advertise`).
    pub advertise: String,
    pub started_at: String,
    /// Its last beat (every `lease`/10, at most 500 ms apart); a node silent for long is forgotten.
    pub last_seen_at: String,
    /// Extension: whether it holds the lease, i.e. owns the live sessions and their deadlines.
    pub leader: bool,
}

/// `GET /v1/admin/cluster`: every node that shares this node's database and
/// schema (one entry, this node, when the store is not PostgreSQL).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterNodes {
    pub nodes: Vec<ClusterNode>,
}

/// Internal: a node tells the owner which of its users' sockets opened or
/// closed (`disconnect_grace` counts sockets on every node).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceReport {
    /// The reporting node's id.
    pub node: String,
    pub users: Vec<String>,
    /// `true`: one socket each opened; `false`: their last socket on that node closed.
    pub open: bool,
}

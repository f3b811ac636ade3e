//! Continuous matching, calls and signaling (contract section 6), on top of
//! the engine. The engine owns the `matching` and `call` sessions and their
//! deadlines; this module owns what is specific to matching:
//!
//! - the pool (`tether_match::Pool`): who is free and waiting, profiles,
//!   ratings, exclusions, and the choice of partner;
//! - live calls: their two users, score, joined users and signal queues;
//! - decisions owed after an active call, with their `decision_timeout`;
//! - mutual matches.
//!
//! It reacts to engine events in [`Matching::settle`], which runs under the
//! core lock after every operation: a matching session that ends takes its
//! call down with `partner_left`; a call that becomes active excludes the pair
//! for good; a call that ends sends its users to their decision (active
//! calls) or straight back to the pool (calls that never became active).
//! Pool membership follows the sessions: a user is in the pool exactly while
//! its matching session is live and it is not in a call or owing a decision.
//! Durable pieces (profiles, ratings, exclusions, matches) go through the
//! journal as documents.

pub mod http;

use crate::hub::Draft;
use crate::journal::Change;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreWrite};
use crate::wire::matching::{self as wire, ReceivedSignal};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{EndReason, Engine, EventType, Millis, NewSession, Session};
use tether_match::{ExclusionKind, Pairing, Pool, Preferences, PreferencesInput, Profile, ProfileInput};

pub const PROFILES: &str = "profiles";
pub const RATINGS: &str = "ratings";
pub const EXCLUSIONS: &str = "exclusions";
pub const MATCHES: &str = "matches";

/// Each direction of a call queues at most this many undrained signals; the
/// oldest is dropped beyond it (a client that never drains over HTTP gets
/// them over its event stream anyway).
pub const SIGNAL_QUEUE_LIMIT: usize = 256;

/// A call that is waiting or active.
pub struct LiveCall {
    pub users: [String; 2],
    pub score: f64,
    queues: HashMap<String, VecDeque<ReceivedSignal>>,
}

/// A call that became active and ended: decisions are owed on it.
struct EndedCall {
    users: [String; 2],
    session: Session,
    decisions: HashMap<String, Decision>,
}

/// A skip/continue decision after a call: the wire's enum.
pub use crate::wire::matching::DecisionKind as Decision;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MutualMatch {
    pub users: [String; 2],
    pub call_id: String,
    pub matched_at: Millis,
}

pub struct Matching {
    metrics: std::sync::Arc<Metrics>,
    pool: Pool,
    calls: HashMap<String, LiveCall>,
    /// user → its live call.
    in_call: HashMap<String, String>,
    /// user → (call id, decision deadline).
    owing: HashMap<String, (String, Millis)>,
    decision_deadlines: BTreeSet<(Millis, String)>,
    ended_calls: HashMap<String, EndedCall>,
    /// (end of the decision window, call id): ended calls are forgotten then,
    /// decided or not (a user who never decides must not keep one forever).
    ended_expiry: BTreeSet<(Millis, String)>,
    matches: Vec<MutualMatch>,
    /// user → when it last started waiting, for the time-to-pair histogram.
    waiting_since: HashMap<String, Millis>,
    /// Users recovered at start who must be put back in the pool on the first tick.
    pending_free: Vec<String>,
}

fn pair_key(a: &str, b: &str) -> String {
    if a < b {
        format!("{a}|{b}")
    } else {
        format!("{b}|{a}")
    }
}

fn doc(collection: &'static str, key: String, value: &Value) -> StoreWrite {
    StoreWrite::Doc { collection, key, value: Some(value.to_string()) }
}

impl Matching {
    /// No pool, no calls (a cluster node that does not own the work).
    pub fn new(metrics: std::sync::Arc<Metrics>) -> Matching {
        Matching {
            metrics,
            pool: Pool::new(),
            calls: HashMap::new(),
            in_call: HashMap::new(),
            owing: HashMap::new(),
            decision_deadlines: BTreeSet::new(),
            ended_calls: HashMap::new(),
            ended_expiry: BTreeSet::new(),
            matches: Vec::new(),
            waiting_since: HashMap::new(),
            pending_free: Vec::new(),
        }
    }

    /// Rebuilds matching state after a restart: profiles, ratings, exclusions
    /// and matches from their documents; live calls from the engine's call
    /// sessions; users of live matching sessions go back to the pool on the
    /// first tick (decisions owed before the restart are forgiven).
    pub fn restore(
        store: &dyn Store,
        engine: &Engine,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Matching, StoreError> {
        let mut m = Matching::new(metrics);
        for (user, value) in store.docs(PROFILES)? {
            match serde_json::from_str::<ProfileInput>(&value)
                .map_err(|e| e.to_string())
                .and_then(|i| Profile::parse(user.clone(), i).map_err(|e| e.to_string()))
            {
                Ok(p) => m.pool.upsert_profile(p),
                Err(e) => tracing::warn!(user, error = %e, "skipping unreadable profile"),
            }
        }
        for (_, value) in store.docs(RATINGS)? {
            let v: Value = serde_json::from_str(&value).unwrap_or(Value::Null);
            let rated = v["rated"].as_str().unwrap_or_default();
            let rating: Option<[f64; 5]> = serde_json::from_value(v["rating"].clone()).ok();
            if let (false, Some(r)) = (rated.is_empty(), rating) {
                let _ = m.pool.record_rating(rated, r);
            }
        }
        let mut never = Vec::new();
        for (key, value) in store.docs(EXCLUSIONS)? {
            if let Some((a, b)) = key.split_once('|') {
                let kind = if value.contains("blocked") { ExclusionKind::Blocked } else { ExclusionKind::HadCall };
                never.push((a.to_string(), b.to_string(), kind));
            }
        }
        m.pool.load_exclusions(never);
        for (_, value) in store.docs(MATCHES)? {
            if let Ok(mm) = serde_json::from_str::<MutualMatch>(&value) {
                m.matches.push(mm);
            }
        }
        for s in engine.live_sessions_of_kind(CALL) {
            if let Some(users) = call_users(&s) {
                for u in &users {
                    m.in_call.insert(u.clone(), s.id.clone());
                }
                let score = s.metadata["compatibility_score"].as_f64().unwrap_or(0.0);
                m.calls.insert(s.id.clone(), LiveCall { users, score, queues: HashMap::new() });
            }
        }
        for s in engine.live_sessions_of_kind(MATCHING) {
            if !m.in_call.contains_key(&s.user_id) {
                m.pending_free.push(s.user_id.clone());
            }
        }
        Ok(m)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool_size(&self) -> usize {
        self.pool.waiting_count()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        if !self.pending_free.is_empty() {
            return Some(i64::MIN);
        }
        self.decision_deadlines.first().map(|(at, _)| *at)
    }

    pub fn live_call(&self, id: &str) -> Option<&LiveCall> {
        self.calls.get(id)
    }

    pub fn call_of(&self, user: &str) -> Option<&str> {
        self.in_call.get(user).map(String::as_str)
    }

    pub fn owing(&self, user: &str) -> Option<&str> {
        self.owing.get(user).map(|(c, _)| c.as_str())
    }

    pub fn matches_of(&self, user: &str) -> Vec<(String, Millis)> {
        self.matches
            .iter()
            .filter_map(|m| {
                let other = if m.users[0] == user {
                    &m.users[1]
                } else if m.users[1] == user {
                    &m.users[0]
                } else {
                    return None;
                };
                Some((other.clone(), m.matched_at))
            })
            .collect()
    }

    /// Decisions whose timeout passed return their users to the pool; users
    /// recovered at start re-enter.
    pub fn expire_due(&mut self, now: Millis, engine: &mut Engine, change: &mut Change) {
        for user in std::mem::take(&mut self.pending_free) {
            self.make_free(now, &user, engine, change);
        }
        while let Some((at, user)) = self.decision_deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.decision_deadlines.remove(&(at, user.clone()));
            if self.owing.get(&user).is_some_and(|(_, d)| *d == at) {
                self.owing.remove(&user);
                self.make_free(now, &user, engine, change);
            }
        }
        while let Some((at, call)) = self.ended_expiry.first().cloned() {
            if at > now {
                break;
            }
            self.ended_expiry.remove(&(at, call.clone()));
            self.ended_calls.remove(&call);
        }
    }

    /// Saves a profile; a waiting user may now be pairable.
    pub fn put_profile(&mut self, now: Millis, profile: Profile, engine: &mut Engine, change: &mut Change) {
        let user = profile.user_id().to_string();
        let input = serde_json::to_value(profile.to_input()).unwrap_or(Value::Null);
        change.writes.push(doc(PROFILES, user.clone(), &input));
        self.pool.upsert_profile(profile);
        if self.pool.is_waiting(&user) {
            if let Some(p) = self.pool.try_pair(&user, now) {
                self.start_call(now, p, engine, change);
            }
        }
    }

    /// A user's new matching session: it enters the pool (the engine already
    /// ended its previous one, and [`Matching::settle`] took that one's call down).
    pub fn enter(
        &mut self,
        now: Millis,
        user: &str,
        session_id: &str,
        prefs: Preferences,
        engine: &mut Engine,
        change: &mut Change,
    ) {
        if let Some((_, at)) = self.owing.remove(user) {
            self.decision_deadlines.remove(&(at, user.to_string()));
        }
        self.waiting_since.insert(user.to_string(), now);
        if let Some(p) = self.pool.enter(user, session_id, prefs, now) {
            self.start_call(now, p, engine, change);
        }
    }

    pub fn block(&mut self, user: &str, other: &str, change: &mut Change) {
        self.pool.block(user, other);
        change.writes.push(doc(EXCLUSIONS, pair_key(user, other), &json!({"kind": "blocked", "by": user})));
    }

    /// Queues a signal for the other user and returns who that is.
    pub fn relay(&mut self, call_id: &str, from: &str, signal: ReceivedSignal) -> Option<String> {
        let call = self.calls.get_mut(call_id)?;
        let to = call.users.iter().find(|u| u.as_str() != from)?.clone();
        let q = call.queues.entry(to.clone()).or_default();
        if q.len() == SIGNAL_QUEUE_LIMIT {
            q.pop_front();
        }
        q.push_back(signal);
        Some(to)
    }

    pub fn drain(&mut self, call_id: &str, user: &str) -> Vec<ReceivedSignal> {
        self.calls
            .get_mut(call_id)
            .and_then(|c| c.queues.get_mut(user))
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Records a decision on an ended active call. Returns whether it made a mutual match.
    // Every matching operation takes (now, …, engine, change); the decision itself is four of them.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        now: Millis,
        user: &str,
        call_id: &str,
        decision: Decision,
        rating: Option<[f64; 5]>,
        engine: &mut Engine,
        change: &mut Change,
    ) -> Result<bool, DecisionError> {
        let ended = self.ended_calls.get_mut(call_id).ok_or(DecisionError::NotOwed)?;
        let partner = ended.users.iter().find(|u| u.as_str() != user).cloned().ok_or(DecisionError::NotOwed)?;
        if let Some(previous) = ended.decisions.get(user) {
            return if *previous == decision {
                Ok(false)
            } else {
                Err(DecisionError::AlreadyDecided(previous.as_str()))
            };
        }
        if let Some(r) = rating {
            self.pool.record_rating(&partner, r).map_err(|e| DecisionError::Invalid(e.field, e.message))?;
            change.writes.push(doc(
                RATINGS,
                format!("{call_id}:{user}"),
                &json!({"rated": partner, "by": user, "rating": r}),
            ));
        }
        ended.decisions.insert(user.to_string(), decision);
        self.metrics.count_decision(decision.as_str());
        let mutual = decision == Decision::Continue && ended.decisions.get(&partner) == Some(&Decision::Continue);
        if mutual {
            let session = ended.session.clone();
            let mm = MutualMatch {
                users: [user.to_string(), partner.clone()],
                call_id: call_id.to_string(),
                matched_at: now,
            };
            change.writes.push(doc(
                MATCHES,
                pair_key(user, &partner),
                &serde_json::to_value(&mm).unwrap_or(Value::Null),
            ));
            self.matches.push(mm);
            for (me, other) in [(user, partner.as_str()), (partner.as_str(), user)] {
                let mutual = wire::MutualMatch {
                    call_id: call_id.to_string(),
                    user_id: other.to_string(),
                    name: self.pool.profile(other).map(|p| p.name().to_string()),
                    matched_at: tether_engine::time::format_rfc3339(now),
                };
                let mut d = Draft::new(EventType::MatchMutual, now, session.clone())
                    .with("match", serde_json::to_value(mutual).unwrap_or(Value::Null));
                d.audience = Some(vec![me.to_string()]);
                change.events.push(d);
            }
        }
        if ended.decisions.len() == 2 {
            self.ended_calls.remove(call_id);
        }
        if let Some((c, at)) = self.owing.get(user).cloned() {
            if c == call_id {
                self.owing.remove(user);
                self.decision_deadlines.remove(&(at, user.to_string()));
                self.make_free(now, user, engine, change);
            }
        }
        Ok(mutual)
    }

    /// Reacts to the events of `change` not yet seen (see the module docs).
    pub fn settle(&mut self, now: Millis, engine: &mut Engine, change: &mut Change) {
        while change.settled < change.events.len() {
            let e = &change.events[change.settled];
            change.settled += 1;
            let (event_type, session) = (e.event_type, e.session.clone());
            match (event_type, session.kind.as_str()) {
                (EventType::Ended, MATCHING) => self.matching_ended(now, &session, engine, change),
                (EventType::Activated, CALL) => {
                    if let Some([a, b]) = call_users(&session) {
                        self.pool.exclude_pair(&a, &b);
                        change.writes.push(doc(
                            EXCLUSIONS,
                            pair_key(&a, &b),
                            &json!({"kind": "had_call", "call_id": session.id}),
                        ));
                        self.metrics.count_call_outcome("activated");
                    }
                }
                (EventType::Ended, CALL) => self.call_ended(now, &session, engine, change),
                _ => {}
            }
        }
    }

    fn matching_ended(&mut self, now: Millis, session: &Session, engine: &mut Engine, change: &mut Change) {
        let user = &session.user_id;
        if self.pool.session_id(user) == Some(session.id.as_str()) {
            self.pool.leave(user);
        }
        self.waiting_since.remove(user);
        if let Some((_, at)) = self.owing.remove(user) {
            self.decision_deadlines.remove(&(at, user.clone()));
        }
        if let Some(call) = self.in_call.get(user).cloned() {
            if let Ok((_, out)) =
                engine.end(now, &call, EndReason::PartnerLeft, Some(format!("{user}'s matching session ended")))
            {
                change.absorb(out);
            }
        }
    }

    fn call_ended(&mut self, now: Millis, session: &Session, engine: &mut Engine, change: &mut Change) {
        let Some(call) = self.calls.remove(&session.id) else { return };
        for u in &call.users {
            if self.in_call.get(u) == Some(&session.id) {
                self.in_call.remove(u);
            }
        }
        let outcome = match session.end_reason {
            Some(EndReason::PartnerLeft) => "partner_left",
            Some(EndReason::WaitingTimeout) => "waiting_timeout",
            _ if session.activated_at.is_some() => "completed",
            _ => "cancelled",
        };
        self.metrics.count_call_outcome(outcome);
        if session.activated_at.is_some() {
            let timeout =
                engine.kinds().get(MATCHING).and_then(|k| k.decision_timeout).map(|d| d.millis()).unwrap_or(30_000);
            for u in &call.users {
                let at = now + timeout;
                self.owing.insert(u.clone(), (session.id.clone(), at));
                self.decision_deadlines.insert((at, u.clone()));
            }
            self.ended_expiry.insert((now + timeout, session.id.clone()));
            self.ended_calls.insert(
                session.id.clone(),
                EndedCall { users: call.users.clone(), session: session.clone(), decisions: HashMap::new() },
            );
        } else {
            for u in &call.users {
                self.make_free(now, u, engine, change);
            }
        }
    }

    /// Puts a user with a live matching session back in the pool and pairs it if possible.
    fn make_free(&mut self, now: Millis, user: &str, engine: &mut Engine, change: &mut Change) {
        if self.in_call.contains_key(user) || self.owing.contains_key(user) {
            return;
        }
        let Some(session) = engine.owned_by(user).find(|s| s.kind == MATCHING) else { return };
        let prefs = serde_json::from_value::<PreferencesInput>(session.metadata["preferences"].clone())
            .ok()
            .and_then(|i| Preferences::parse(i).ok());
        let Some(prefs) = prefs else { return };
        let sid = session.id.clone();
        self.waiting_since.insert(user.to_string(), now);
        if let Some(p) = self.pool.enter(user, &sid, prefs, now) {
            self.start_call(now, p, engine, change);
        }
    }

    /// Creates the call session for a pairing and tells both users at once.
    fn start_call(&mut self, now: Millis, p: Pairing, engine: &mut Engine, change: &mut Change) {
        let id = crate::app::new_id();
        let metadata = json!({
            "pair": [p.a, p.b],
            "matching_sessions": {p.a.clone(): p.a_session, p.b.clone(): p.b_session},
            "compatibility_score": p.score,
        });
        let req = NewSession {
            id: id.clone(),
            kind: CALL.into(),
            owner: p.a.clone(),
            metadata,
            members: vec![p.a.clone(), p.b.clone()],
            ..NewSession::default()
        };
        let (session, _, out) = match engine.create(now, req) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = ?e, "could not create a call; both users go back to the pool");
                return;
            }
        };
        change.absorb(out);
        for u in [&p.a, &p.b] {
            self.in_call.insert(u.clone(), id.clone());
            if let Some(since) = self.waiting_since.remove(u.as_str()) {
                self.metrics.time_to_pair.observe((now - since) as f64 / 1000.0);
            }
        }
        self.calls
            .insert(id.clone(), LiveCall { users: [p.a.clone(), p.b.clone()], score: p.score, queues: HashMap::new() });
        self.metrics.count_pair();
        for (me, other) in [(&p.a, &p.b), (&p.b, &p.a)] {
            let found = self.match_info(&id, other, p.score);
            let mut d = Draft::new(EventType::MatchFound, now, session.clone())
                .with("match", serde_json::to_value(found).unwrap_or(Value::Null));
            d.audience = Some(vec![me.clone()]);
            change.events.push(d);
        }
    }

    /// The `match` of `match.found` and `GET /v1/matching/next`.
    pub fn match_info(&self, call_id: &str, partner: &str, score: f64) -> wire::Match {
        let profile = self.pool.profile(partner);
        wire::Match {
            call_id: call_id.to_string(),
            partner: wire::Partner {
                user_id: partner.to_string(),
                name: profile.map(|p| p.name().to_string()),
                age: profile.map(|p| p.age()),
                bio: profile.and_then(|p| p.bio()).map(str::to_string),
                interests: profile.map(|p| p.interests().to_vec()).unwrap_or_default(),
            },
            compatibility_score: (score * 1000.0).round() / 1000.0,
        }
    }
}

#[derive(Debug)]
pub enum DecisionError {
    NotOwed,
    AlreadyDecided(&'static str),
    Invalid(String, String),
}

/// A call's two users, from its metadata.
pub fn call_users(s: &Session) -> Option<[String; 2]> {
    let pair = s.metadata["pair"].as_array()?;
    Some([pair.first()?.as_str()?.to_string(), pair.get(1)?.as_str()?.to_string()])
}

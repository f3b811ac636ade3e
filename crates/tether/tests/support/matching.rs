//! Helpers for the matching tests: profiles, entering the pool, reading a
//! user's match, joining, deciding. Everything goes through the public HTTP
//! API of a [`TestApp`], whichever backend it runs on.

use super::app::*;
use serde_json::{json, Value};

/// A display name for a user id: "alice" → "Alice".
pub fn name_of(user: &str) -> String {
    let mut c = user.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub fn profile_body(user: &str, age: u32, interests: &[&str]) -> Value {
    json!({"name": name_of(user), "age": age, "bio": format!("I am {user}"), "interests": interests})
}

/// Preferences for `POST /v1/matching/start` (personality ignored: weight 0).
pub fn prefs(min_age: u32, max_age: u32, preferred: &[&str]) -> Value {
    json!({"min_age": min_age, "max_age": max_age, "preferred_interests": preferred, "personality_weight": 0.0})
}

/// A paired couple as a test sees it.
#[derive(Clone, Debug)]
pub struct Pair {
    pub call: String,
    /// The user who waited longer (the call's owner).
    pub a: String,
    pub b: String,
    pub a_session: String,
    pub b_session: String,
}

impl TestApp {
    /// `PUT /v1/profiles/{user}` with the API key; expects 200.
    pub async fn profile(&self, user: &str, age: u32, interests: &[&str]) -> Value {
        let r = self.put_profile(user, profile_body(user, age, interests)).await;
        r.expect(200).clone()
    }

    pub async fn put_profile(&self, user: &str, body: Value) -> Resp {
        self.call(reqwest::Method::PUT, &format!("/v1/profiles/{user}"), Some(API_KEY), Some(body)).await
    }

    /// `POST /v1/matching/start` for `user` with the API key; returns the matching session id.
    pub async fn enter(&self, user: &str, mut preferences: Value) -> String {
        preferences["user_id"] = Value::from(user);
        let r = self.post("/v1/matching/start", Some(API_KEY), preferences).await;
        let body = r.expect(201);
        assert_eq!(body["status"], "active", "{body}");
        body["session_id"].as_str().expect("session_id").to_string()
    }

    /// `POST /v1/matching/start` with a user token; returns the matching session id.
    pub async fn enter_as(&self, token: &str, preferences: Value) -> String {
        let r = self.post("/v1/matching/start", Some(token), preferences).await;
        let body = r.expect(201);
        assert_eq!(body["status"], "active", "{body}");
        body["session_id"].as_str().expect("session_id").to_string()
    }

    /// Ends a matching session (`POST /v1/sessions/{id}/end`, API key): the user leaves the pool.
    pub async fn leave(&self, matching_session: &str) {
        let r = self.post(&format!("/v1/sessions/{matching_session}/end"), Some(API_KEY), json!({})).await;
        assert_eq!(r.expect(200)["status"], "ended");
    }

    /// `GET /v1/matching/next` (API key) for a matching session; expects 200.
    pub async fn next(&self, matching_session: &str) -> Value {
        self.get(&format!("/v1/matching/next?session_id={matching_session}"), Some(API_KEY)).await.expect(200).clone()
    }

    /// The call the owner of `matching_session` is in, per `GET /v1/matching/next`.
    pub async fn current_call(&self, matching_session: &str) -> Option<String> {
        let n = self.next(matching_session).await;
        if n["match_found"] == true {
            Some(n["match"]["call_id"].as_str().expect("call_id").to_string())
        } else {
            assert_eq!(n["match_found"], false, "{n}");
            None
        }
    }

    /// Asserts that the owner of `matching_session` is waiting unpaired and owes no decision.
    pub async fn assert_waiting(&self, matching_session: &str, who: &str) {
        let n = self.next(matching_session).await;
        assert_eq!(n, json!({"match_found": false}), "{who} should be waiting in the pool");
    }

    /// Profiles for `a` and `b` (both 30, same interests), then both enter:
    /// they are paired with each other (asserted on both sides).
    pub async fn pair_up(&self, a: &str, b: &str) -> Pair {
        self.profile(a, 30, &["music"]).await;
        self.profile(b, 30, &["music"]).await;
        let a_session = self.enter(a, prefs(18, 99, &[])).await;
        let b_session = self.enter(b, prefs(18, 99, &[])).await;
        let ma = self.next(&a_session).await;
        let mb = self.next(&b_session).await;
        assert_eq!(ma["match_found"], true, "{a} should be paired: {ma}");
        assert_eq!(ma["match"]["partner"]["user_id"], b, "{ma}");
        assert_eq!(mb["match"]["partner"]["user_id"], a, "{mb}");
        assert_eq!(ma["match"]["call_id"], mb["match"]["call_id"]);
        let call = ma["match"]["call_id"].as_str().unwrap().to_string();
        Pair { call, a: a.into(), b: b.into(), a_session, b_session }
    }

    /// `POST /v1/calls/{id}/join` for `user` (API key); expects 200.
    pub async fn join(&self, call: &str, user: &str) -> Value {
        self.post(&format!("/v1/calls/{call}/join"), Some(API_KEY), json!({"user_id": user})).await.expect(200).clone()
    }

    /// Both join: the call becomes active.
    pub async fn activate(&self, p: &Pair) -> Value {
        let first = self.join(&p.call, &p.a).await;
        assert_eq!(first["timer_started"], false, "{first}");
        let second = self.join(&p.call, &p.b).await;
        assert_eq!(second["timer_started"], true, "{second}");
        second
    }

    /// `POST /v1/calls/{id}/end` for `user` (API key).
    pub async fn end_call(&self, call: &str, user: &str) -> Resp {
        self.post(&format!("/v1/calls/{call}/end"), Some(API_KEY), json!({"user_id": user})).await
    }

    /// `POST /v1/matching/decision` for `user` (API key).
    pub async fn decide(&self, call: &str, user: &str, decision: &str) -> Resp {
        self.post(
            "/v1/matching/decision",
            Some(API_KEY),
            json!({"call_id": call, "decision": decision, "user_id": user}),
        )
        .await
    }

    /// `GET /v1/matches` of `user` (API key): the partners' user ids.
    pub async fn matches_of(&self, user: &str) -> Vec<Value> {
        let r = self.get(&format!("/v1/matches?user_id={user}"), Some(API_KEY)).await;
        r.expect(200)["matches"].as_array().expect("matches").clone()
    }
}

/// The `match.found` event's call id.
pub fn call_of(e: &Event) -> String {
    e.data["match"]["call_id"].as_str().unwrap_or_else(|| panic!("no match.call_id in {}", e.data)).to_string()
}

/// The partner named in a `match.found` event.
pub fn partner_of(e: &Event) -> String {
    e.data["match"]["partner"]["user_id"].as_str().unwrap_or_else(|| panic!("no partner in {}", e.data)).to_string()
}

/// Reads `n` `match.found` events from an API-key stream and checks each:
/// the call names two distinct users, the partner is one of them, and no
/// user is told of two calls. Returns each call's users, and the call each user was told of.
pub async fn calls_from_events(
    backend: &mut EventStream,
    n: usize,
    wait: std::time::Duration,
) -> (std::collections::HashMap<String, std::collections::HashSet<String>>, std::collections::HashMap<String, String>) {
    let mut calls: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    let mut told: std::collections::HashMap<String, String> = Default::default();
    for _ in 0..n {
        let e = backend.wait_for(wait, "match.found", |e| e.event == "match.found").await;
        let pair: Vec<String> = e.data["session"]["metadata"]["pair"]
            .as_array()
            .expect("pair")
            .iter()
            .map(|v| v.as_str().expect("a user id").to_string())
            .collect();
        assert_eq!(pair.len(), 2);
        assert_ne!(pair[0], pair[1], "a user paired with itself");
        let partner = partner_of(&e);
        assert!(pair.contains(&partner));
        let me = pair.iter().find(|u| **u != partner).unwrap().clone();
        if let Some(earlier) = told.insert(me.clone(), call_of(&e)) {
            panic!("{me} was told of two calls: {earlier} and {}", call_of(&e));
        }
        calls.entry(call_of(&e)).or_default().extend(pair);
    }
    (calls, told)
}

/// The guarantees of pairing a pool of `users` (user `i` aged `age(i)`,
/// wanting partners within 3 years), from what polling said (`call_of_user`,
/// `unpaired`) and what the events said (`calls`, `told`): every call has two
/// distinct users, nobody is in two calls, polling and events agree, the
/// ages match, nobody left waiting has a compatible partner left waiting,
/// and most users were paired.
pub fn check_pool_pairs(
    calls: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    told: &std::collections::HashMap<String, String>,
    call_of_user: &std::collections::HashMap<String, String>,
    users: &[String],
    unpaired: &[String],
    age: impl Fn(usize) -> u32,
) {
    let mut seen_users = std::collections::HashSet::new();
    for (call, members) in calls {
        assert_eq!(members.len(), 2, "call {call} has users {members:?}");
        for m in members {
            assert!(seen_users.insert(m.clone()), "{m} is in two calls");
            assert_eq!(call_of_user.get(m), Some(call), "{m}: polling and events disagree");
        }
    }
    assert_eq!(seen_users.len(), call_of_user.len());
    assert_eq!(told, call_of_user, "each user was told of exactly its call");
    let index: std::collections::HashMap<&String, usize> = users.iter().enumerate().map(|(i, u)| (u, i)).collect();
    for members in calls.values() {
        let m: Vec<&String> = members.iter().collect();
        let (a, b) = (age(index[m[0]]) as i64, age(index[m[1]]) as i64);
        assert!((a - b).abs() <= 3, "{m:?} are {a} and {b}");
    }
    // Pairing is eager: nobody left waiting has a compatible partner left waiting.
    for (i, x) in unpaired.iter().enumerate() {
        for y in &unpaired[i + 1..] {
            let (a, b) = (age(index[x]) as i64, age(index[y]) as i64);
            assert!((a - b).abs() > 3, "{x} ({a}) and {y} ({b}) are both waiting though compatible");
        }
    }
    assert!(calls.len() >= 90, "expected most users paired, got {} calls", calls.len());
}

//! Authentication (contract section 2): API keys for app backends and
//! operators, HS256 user JWTs (`sub` = user id, `exp` required, `nbf`
//! honoured), and invite-scoped participant tokens (a `sid` claim limits them
//! to one session). Also the one rule for what a user id may be, shared by a
//! token's `sub` and an API key's `user_id`.
//!
//! # The cache of verified tokens
//!
//! A browser sends the same user token with every request (a heartbeat every
//! few seconds), and verifying it with `jsonwebtoken` costs ~25k instructions
//! (heartbeat profile, docs/PERFORMANCE.md): it derives the HMAC key from the
//! secret again, hashes, and decodes the header and claims as JSON. A token's
//! signature and claims never change, so the outcome of a *successful*
//! verification is kept, keyed by the token string, in a bounded map
//! ([`CACHE_CAPACITY`] tokens; when full, the expired entries go, and if that
//! frees nothing the whole map is dropped and refills from verifications).
//! Only the time checks are repeated on a hit: `exp` and `nbf` are held
//! against the server's clock on every use, cached or not, so an expired
//! token is refused with the same answer either way. A token that fails
//! verification (bad signature, bad claims) is never stored, so it is
//! verified in full, and refused, every time. Measured with callgrind: a
//! `Prefer: return=minimal` heartbeat with a user token costs ~25k fewer
//! instructions on a hit (see the report of issue 12).
//!
//! The key is still derived per full verification: `jsonwebtoken` 9 takes
//! no prebuilt key, and with the cache a full verification happens once per
//! token rather than per request, which does not justify checking HS256
//! signatures by hand.
//!
//! Looking a token up is a `HashMap` probe with SipHash keyed per process,
//! so a client cannot steer which entries it compares against.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// At most this many verified user tokens are remembered.
pub const CACHE_CAPACITY: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    /// A backend / admin API key: acts for any user.
    ApiKey,
    /// A user token; `scope` limits it to one session (invite tokens).
    User { id: String, scope: Option<String> },
}

impl Principal {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { id, .. } => Some(id),
            Principal::ApiKey => None,
        }
    }
    pub fn is_api_key(&self) -> bool {
        matches!(self, Principal::ApiKey)
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// Read as any JSON value: like `jsonwebtoken`'s own check, an `nbf`
    /// that is not a whole number of seconds is ignored, not refused.
    #[serde(default, skip_serializing)]
    nbf: Option<serde_json::Value>,
}

/// What a successful verification of a user token found.
#[derive(Clone)]
struct Verified {
    id: String,
    scope: Option<String>,
    exp: u64,
    nbf: Option<u64>,
}

impl Verified {
    /// `exp` and `nbf` against `now` (Unix seconds), without leeway: the
    /// server mints its own tokens with its own clock, and a backend minting
    /// for it should not rely on skew.
    fn check_times(&self, now: u64) -> Result<Principal, AuthError> {
        if self.exp < now {
            return Err(AuthError::Invalid("the token has expired".into()));
        }
        if self.nbf.is_some_and(|nbf| nbf > now) {
            return Err(AuthError::Invalid("the token is not valid yet (its `nbf` is in the future)".into()));
        }
        Ok(Principal::User { id: self.id.clone(), scope: self.scope.clone() })
    }
}

pub struct Auth {
    api_keys: Vec<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Successfully verified user tokens (see the module doc).
    verified: Mutex<HashMap<Box<str>, Verified>>,
}

/// Why a bearer token was refused; `Invalid` carries a sentence for the
/// client (never a library's error name).
#[derive(Debug, PartialEq)]
pub enum AuthError {
    Missing,
    Invalid(String),
}

/// The longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// The rule every user id follows, whether it arrives as a token's `sub` or
/// as `user_id` with an API key: not blank, at most [`MAX_USER_ID_BYTES`]
/// bytes, no control characters (a NUL is refused by PostgreSQL text and
/// breaks logs). Returns what is wrong, as a sentence about `user id`.
pub fn check_user_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(format!("must be at most {MAX_USER_ID_BYTES} bytes (got {})", id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

impl Auth {
    pub fn new(jwt_secret: String, api_keys: Vec<String>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` and `nbf` are checked by `Verified::check_times` against the
        // server's clock, on every use of a token, cached or not.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Auth {
            api_keys,
            encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
            validation,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// A key this node may use to call another node of its cluster (all share the keys).
    pub fn first_api_key(&self) -> Option<&str> {
        self.api_keys.first().map(String::as_str)
    }

    /// Who `token` is, at `now_ms` (the server's clock, Unix milliseconds):
    /// an API key, or a user token whose signature, claims and times hold.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Constant-time enough for our purposes: compare every key fully.
        if self.api_keys.iter().fold(false, |hit, k| hit | constant_eq(k.as_bytes(), token.as_bytes())) {
            return Ok(Principal::ApiKey);
        }
        let now = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
        let cached = self.verified.lock().get(token).cloned();
        if let Some(verified) = cached {
            let answer = verified.check_times(now);
            if answer.is_err() {
                // Expired (or clock moved back before `nbf`): verified afresh next time.
                self.verified.lock().remove(token);
            }
            return answer;
        }
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| AuthError::Invalid(refusal(&e)))?;
        let claims = data.claims;
        let verified = Verified {
            id: claims.sub,
            scope: claims.sid,
            exp: claims.exp,
            nbf: claims.nbf.as_ref().and_then(serde_json::Value::as_u64),
        };
        // The times first, as `jsonwebtoken` checked them before we read `sub`.
        let principal = verified.check_times(now)?;
        check_user_id(&verified.id).map_err(|why| AuthError::Invalid(format!("the token's `sub` (user id) {why}")))?;
        self.remember(token, verified, now);
        Ok(principal)
    }

    /// Keeps a verified token, within [`CACHE_CAPACITY`]: when full, the
    /// expired entries go, and if none had expired, all of them.
    fn remember(&self, token: &str, verified: Verified, now: u64) {
        let mut cache = self.verified.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, v| v.exp >= now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.into(), verified);
    }

    /// How many verified tokens are remembered (tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.verified.lock().len()
    }

    /// Mints a user token (demo tokens, invite participant tokens).
    pub fn mint(&self, user: &str, scope: Option<&str>, ttl_secs: u64) -> String {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            + ttl_secs;
        let claims = Claims { sub: user.to_string(), exp, sid: scope.map(str::to_string), nbf: None };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding cannot fail")
    }
}

/// A sentence for a refused JWT. jsonwebtoken's own messages name its enum
/// variants (`ExpiredSignature`, `InvalidToken`), which mean nothing to a client.
fn refusal(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (its `nbf` is in the future)".into(),
        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
            "user tokens must be signed with HS256".into()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token lacks the required `{claim}` claim"),
        ErrorKind::Json(_) => {
            "the token's claims are malformed (`sub` must be a string, `exp` and `nbf` numbers of seconds)".into()
        }
        _ => "the token is neither an API key nor a well-formed HS256 user token".into(),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef";
    /// 2026-11-22T10:00:00Z, in seconds.
    const NOW: u64 = 1_795_341_600;

    fn auth() -> Auth {
        Auth::new(SECRET.into(), vec!["key-0123456789".into()])
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn at(secs: u64) -> i64 {
        secs as i64 * 1000
    }

    #[test]
    fn a_cached_token_is_refused_once_expired() {
        let a = auth();
        let t = token(SECRET, serde_json::json!({"sub": "pat", "exp": NOW + 2}));
        let user = Principal::User { id: "pat".into(), scope: None };
        assert_eq!(a.verify(&t, at(NOW)), Ok(user.clone()));
        assert_eq!(a.remembered(), 1);
        // A hit: still valid up to and including `exp`.
        assert_eq!(a.verify(&t, at(NOW + 2) + 999), Ok(user));
        let expired = Err(AuthError::Invalid("the token has expired".into()));
        assert_eq!(a.verify(&t, at(NOW + 3)), expired);
        assert_eq!(a.remembered(), 0, "an expired token is forgotten");
        // Verified in full again: the same answer.
        assert_eq!(a.verify(&t, at(NOW + 3)), expired);
        assert_eq!(a.remembered(), 0);
    }

    #[test]
    fn a_token_is_not_accepted_before_its_nbf() {
        let a = auth();
        let t = token(SECRET, serde_json::json!({"sub": "pat", "exp": NOW + 60, "nbf": NOW + 10}));
        let early = Err(AuthError::Invalid("the token is not valid yet (its `nbf` is in the future)".into()));
        assert_eq!(a.verify(&t, at(NOW)), early);
        assert_eq!(a.remembered(), 0);
        assert!(a.verify(&t, at(NOW + 10)).is_ok());
        // Cached, and a clock set back before `nbf` still refuses it.
        assert_eq!(a.verify(&t, at(NOW + 9)), early);
    }

    #[test]
    fn a_bad_signature_is_never_accepted_nor_remembered() {
        let a = auth();
        let good = token(SECRET, serde_json::json!({"sub": "pat", "exp": NOW + 60}));
        assert!(a.verify(&good, at(NOW)).is_ok());
        let invalid = Err(AuthError::Invalid("the token's signature is invalid".into()));
        let forged = token("another-secret-0123456789abcdef", serde_json::json!({"sub": "pat", "exp": NOW + 60}));
        // The same claims as a cached token, signed with another key; and the
        // cached token with its signature altered.
        let (message, signature) = good.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        let altered = format!("{message}.{flipped}{}", &signature[1..]);
        for t in [forged, altered] {
            for _ in 0..2 {
                assert_eq!(a.verify(&t, at(NOW)), invalid, "{t}");
            }
        }
        assert_eq!(a.remembered(), 1, "only the good token");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let a = auth();
        for i in 0..CACHE_CAPACITY + 10 {
            let t = token(SECRET, serde_json::json!({"sub": format!("u{i}"), "exp": NOW + 60}));
            assert!(a.verify(&t, at(NOW)).is_ok());
            assert!(a.remembered() <= CACHE_CAPACITY);
        }
        // API keys are never cached: they are compared every time.
        assert_eq!(a.verify("key-0123456789", at(NOW)), Ok(Principal::ApiKey));
    }
}

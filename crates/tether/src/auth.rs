//! Authentication (contract section 2): API keys for app backends and
//! operators, HS256 user JWTs (`sub` = user id, `exp` required), and
//! invite-scoped participant tokens (a `sid` claim limits them to one session).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
}

pub struct Auth {
    api_keys: Vec<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, PartialEq)]
pub enum AuthError {
    Missing,
    Invalid(String),
}

impl Auth {
    pub fn new(jwt_secret: String, api_keys: Vec<String>) -> Auth {
        Auth {
            api_keys,
            encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Constant-time enough for our purposes: compare every key fully.
        if self.api_keys.iter().fold(false, |hit, k| hit | constant_eq(k.as_bytes(), token.as_bytes())) {
            return Ok(Principal::ApiKey);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        let data = decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
            AuthError::Invalid(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature is invalid".to_string(),
                _ => format!("the token is not a valid API key or HS256 user token ({e})"),
            })
        })?;
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid("the token's `sub` is empty".into()));
        }
        Ok(Principal::User { id: data.claims.sub, scope: data.claims.sid })
    }

    /// Mints a user token (demo tokens, invite participant tokens).
    pub fn mint(&self, user: &str, scope: Option<&str>, ttl_secs: u64) -> String {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            + ttl_secs;
        let claims = Claims { sub: user.to_string(), exp, sid: scope.map(str::to_string) };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding cannot fail")
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

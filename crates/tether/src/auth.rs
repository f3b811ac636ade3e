//! Authentication (contract section 2): API keys for app backends and
//! operators, HS256 user JWTs (`sub` = user id, `exp` required, `nbf`
//! honoured), and invite-scoped participant tokens (a `sid` claim limits them
//! to one session). Also the one rule for what a user id may be, shared by a
//! token's `sub` and an API key's `user_id`.

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
        Auth {
            api_keys,
            encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
            decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
        }
    }

    /// A key this node may use to call another node of its cluster (all share the keys).
    pub fn first_api_key(&self) -> Option<&str> {
        self.api_keys.first().map(String::as_str)
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
        // No leeway for `exp` nor `nbf`: the server mints its own tokens with
        // its own clock, and a backend minting for it should not rely on skew.
        validation.leeway = 0;
        validation.validate_nbf = true;
        let data = decode::<Claims>(token, &self.decoding, &validation).map_err(|e| AuthError::Invalid(refusal(&e)))?;
        check_user_id(&data.claims.sub)
            .map_err(|why| AuthError::Invalid(format!("the token's `sub` (user id) {why}")))?;
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

//! Validated input types: what a profile, a set of matching preferences and a
//! personality rating must look like before the pool accepts them.
//!
//! This module owns the *only* way to build a [`Profile`] or [`Preferences`]
//! (their fields are private), so everything downstream — indexing, scoring —
//! can rely on the invariants without re-checking. Input structs take every
//! field as `Option` so a missing field is reported by name as a
//! [`FieldError`] instead of a generic deserialisation failure.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// Youngest accepted age (inclusive).
pub const MIN_AGE: u8 = 18;
/// Oldest accepted age (inclusive).
pub const MAX_AGE: u8 = 120;
/// Longest accepted bio, in Unicode scalar values.
pub const MAX_BIO_CHARS: usize = 2000;
/// Longest accepted display name, in Unicode scalar values.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Most interests (or preferred interests) a user may list.
pub const MAX_INTERESTS: usize = 32;
/// Longest accepted interest, in Unicode scalar values, after trimming.
pub const MAX_INTEREST_CHARS: usize = 64;
/// `personality_weight` when the preferences do not give one.
pub const DEFAULT_PERSONALITY_WEIGHT: f64 = 0.3;

/// A validation failure that names the offending field, e.g. `age`,
/// `interests[3]` or `personality[2]`, so the server can put it in its
/// error body verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }

    fn required(field: &str) -> Self {
        FieldError::new(field, "is required")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A profile as received (e.g. the body of `PUT /v1/profiles/{user_id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileInput {
    pub name: Option<String>,
    pub age: Option<i64>,
    pub bio: Option<String>,
    pub interests: Option<Vec<String>>,
    pub personality: Option<Vec<f64>>,
}

/// A validated profile. Construct with [`Profile::parse`].
///
/// Serialises as `{"user_id","name","age","bio","interests","personality"}`
/// with interests in their display form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    user_id: String,
    name: String,
    age: u8,
    bio: Option<String>,
    interests: Vec<String>,
    #[serde(skip)]
    interest_keys: Vec<String>,
    personality: Option<[f64; 5]>,
}

impl Profile {
    /// Validates `raw` for `user_id`. Rules: `user_id` 1..=128 bytes without
    /// control characters; `name` required, trimmed, 1..=100 chars; `age`
    /// required, 18..=120; `bio` optional, trimmed, <= 2000 chars (blank means
    /// none); `interests` required (may be empty), see [`Interests`];
    /// `personality` optional, exactly 5 numbers each in 0..=1.
    pub fn parse(user_id: impl Into<String>, raw: ProfileInput) -> Result<Profile, FieldError> {
        let user_id = parse_user_id(user_id.into())?;
        let name = raw.name.ok_or_else(|| FieldError::required("name"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(FieldError::new("name", format!("must be at most {MAX_NAME_CHARS} characters")));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new("name", "must not contain control characters"));
        }
        let age = parse_age("age", raw.age)?;
        let bio = match raw.bio {
            None => None,
            Some(b) => {
                let b = b.trim();
                if b.chars().count() > MAX_BIO_CHARS {
                    return Err(FieldError::new("bio", format!("must be at most {MAX_BIO_CHARS} characters")));
                }
                (!b.is_empty()).then(|| b.to_string())
            }
        };
        let interests = raw.interests.ok_or_else(|| FieldError::required("interests"))?;
        let Interests { display, keys } = Interests::parse("interests", &interests)?;
        let personality = match raw.personality {
            None => None,
            Some(p) => Some(parse_personality("personality", &p)?),
        };
        Ok(Profile { user_id, name: name.to_string(), age, bio, interests: display, interest_keys: keys, personality })
    }

    /// The inverse of [`Profile::parse`]: lets the server persist a profile and
    /// re-parse it at start-up.
    pub fn to_input(&self) -> ProfileInput {
        ProfileInput {
            name: Some(self.name.clone()),
            age: Some(i64::from(self.age)),
            bio: self.bio.clone(),
            interests: Some(self.interests.clone()),
            personality: self.personality.map(|p| p.to_vec()),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn age(&self) -> u8 {
        self.age
    }
    pub fn bio(&self) -> Option<&str> {
        self.bio.as_deref()
    }
    /// Interests in the form the user typed them (trimmed, first spelling of
    /// each case-insensitive duplicate kept).
    pub fn interests(&self) -> &[String] {
        &self.interests
    }
    /// Lowercase matching keys, parallel to [`Profile::interests`].
    pub fn interest_keys(&self) -> &[String] {
        &self.interest_keys
    }
    /// The user's self-declared personality (not blended with ratings; see
    /// `Pool::effective_personality`).
    pub fn personality(&self) -> Option<[f64; 5]> {
        self.personality
    }
}

/// Matching preferences as received (the body of `POST /v1/matching/start`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreferencesInput {
    pub min_age: Option<i64>,
    pub max_age: Option<i64>,
    pub preferred_interests: Option<Vec<String>>,
    pub personality_weight: Option<f64>,
}

/// Validated matching preferences. Construct with [`Preferences::parse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preferences {
    min_age: u8,
    max_age: u8,
    preferred_interests: Vec<String>,
    #[serde(skip)]
    preferred_keys: Vec<String>,
    personality_weight: f64,
}

impl Preferences {
    /// Validates `raw`. Rules: `min_age` and `max_age` required, each
    /// 18..=120, `min_age <= max_age` (reported on `max_age`);
    /// `preferred_interests` optional (default empty), same rules as profile
    /// interests; `personality_weight` optional, 0..=1, default 0.3.
    pub fn parse(raw: PreferencesInput) -> Result<Preferences, FieldError> {
        let min_age = parse_age("min_age", raw.min_age)?;
        let max_age = parse_age("max_age", raw.max_age)?;
        if min_age > max_age {
            return Err(FieldError::new("max_age", format!("must be >= min_age ({min_age})")));
        }
        let Interests { display, keys } =
            Interests::parse("preferred_interests", raw.preferred_interests.as_deref().unwrap_or(&[]))?;
        let personality_weight = match raw.personality_weight {
            None => DEFAULT_PERSONALITY_WEIGHT,
            Some(w) if w.is_finite() && (0.0..=1.0).contains(&w) => w,
            Some(_) => return Err(FieldError::new("personality_weight", "must be a number between 0 and 1")),
        };
        Ok(Preferences { min_age, max_age, preferred_interests: display, preferred_keys: keys, personality_weight })
    }

    /// The inverse of [`Preferences::parse`], for persistence.
    pub fn to_input(&self) -> PreferencesInput {
        PreferencesInput {
            min_age: Some(i64::from(self.min_age)),
            max_age: Some(i64::from(self.max_age)),
            preferred_interests: Some(self.preferred_interests.clone()),
            personality_weight: Some(self.personality_weight),
        }
    }

    pub fn min_age(&self) -> u8 {
        self.min_age
    }
    pub fn max_age(&self) -> u8 {
        self.max_age
    }
    pub fn preferred_interests(&self) -> &[String] {
        &self.preferred_interests
    }
    /// Lowercase matching keys, parallel to [`Preferences::preferred_interests`].
    pub fn preferred_keys(&self) -> &[String] {
        &self.preferred_keys
    }
    pub fn personality_weight(&self) -> f64 {
        self.personality_weight
    }
    /// Whether `age` lies in `[min_age, max_age]`.
    pub fn accepts_age(&self, age: u8) -> bool {
        (self.min_age..=self.max_age).contains(&age)
    }
}

/// A validated interest list: at most 32 items, each trimmed to 1..=64
/// characters without control characters, deduplicated case-insensitively
/// (the first spelling wins). `display` keeps the user's spelling, `keys`
/// the lowercase form used for matching, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interests {
    pub display: Vec<String>,
    pub keys: Vec<String>,
}

impl Interests {
    /// `field` names the list in errors, e.g. `interests` gives `interests[3]`.
    pub fn parse(field: &str, raw: &[String]) -> Result<Interests, FieldError> {
        if raw.len() > MAX_INTERESTS {
            return Err(FieldError::new(field, format!("must have at most {MAX_INTERESTS} items (got {})", raw.len())));
        }
        let mut out = Interests::default();
        let mut seen = HashSet::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            let t = item.trim();
            let n = t.chars().count();
            if n == 0 {
                return Err(FieldError::new(format!("{field}[{i}]"), "must not be empty"));
            }
            if n > MAX_INTEREST_CHARS {
                return Err(FieldError::new(
                    format!("{field}[{i}]"),
                    format!("must be at most {MAX_INTEREST_CHARS} characters"),
                ));
            }
            if t.chars().any(char::is_control) {
                return Err(FieldError::new(format!("{field}[{i}]"), "must not contain control characters"));
            }
            let key = t.to_lowercase();
            if seen.insert(key.clone()) {
                out.display.push(t.to_string());
                out.keys.push(key);
            }
        }
        Ok(out)
    }
}

/// Validates a 5-trait personality vector (a profile's `personality` or a
/// call's `personality_rating`); `field` names it in errors, e.g.
/// `personality_rating[2]`.
pub fn parse_personality(field: &str, raw: &[f64]) -> Result<[f64; 5], FieldError> {
    if raw.len() != 5 {
        return Err(FieldError::new(field, format!("must have exactly 5 values (got {})", raw.len())));
    }
    let mut out = [0f64; 5];
    for (i, &v) in raw.iter().enumerate() {
        if !v.is_finite() || !(0.0..=1.0).contains(&v) {
            return Err(FieldError::new(format!("{field}[{i}]"), "must be a number between 0 and 1"));
        }
        out[i] = v;
    }
    Ok(out)
}

fn parse_user_id(id: String) -> Result<String, FieldError> {
    if id.is_empty() {
        return Err(FieldError::new("user_id", "must not be empty"));
    }
    if id.len() > MAX_USER_ID_LEN {
        return Err(FieldError::new("user_id", format!("must be at most {MAX_USER_ID_LEN} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(FieldError::new("user_id", "must not contain control characters"));
    }
    Ok(id)
}

fn parse_age(field: &str, raw: Option<i64>) -> Result<u8, FieldError> {
    let a = raw.ok_or_else(|| FieldError::required(field))?;
    if !(i64::from(MIN_AGE)..=i64::from(MAX_AGE)).contains(&a) {
        return Err(FieldError::new(field, format!("must be between {MIN_AGE} and {MAX_AGE}")));
    }
    // In range, so the conversion cannot fail; fall back to an error anyway
    // rather than panic on a user input path.
    u8::try_from(a).map_err(|_| FieldError::new(field, "out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_profile() -> ProfileInput {
        ProfileInput {
            name: Some("  Ada ".into()),
            age: Some(30),
            bio: Some("hi".into()),
            interests: Some(vec!["Gaming".into(), " movies ".into(), "gaming".into()]),
            personality: Some(vec![0.1, 0.2, 0.3, 0.4, 0.5]),
        }
    }

    fn err_field(r: Result<Profile, FieldError>) -> String {
        r.expect_err("should be rejected").field
    }

    #[test]
    fn valid_profile_is_normalised() {
        let p = Profile::parse("u1", good_profile()).expect("valid");
        assert_eq!(p.name(), "Ada");
        assert_eq!(p.interests(), ["Gaming", "movies"]);
        assert_eq!(p.interest_keys(), ["gaming", "movies"]);
        assert_eq!(p.personality(), Some([0.1, 0.2, 0.3, 0.4, 0.5]));
        let back = Profile::parse("u1", p.to_input()).expect("round trip");
        assert_eq!(back, p);
    }

    #[test]
    fn personality_is_answered_as_given() {
        // Stored as f64, so 0.1 serialises as 0.1 rather than a widened f32 (0.10000000149011612).
        let p = Profile::parse("u1", good_profile()).expect("valid");
        let json = serde_json::to_string(&p).expect("serialise");
        assert!(json.contains(r#""personality":[0.1,0.2,0.3,0.4,0.5]"#), "{json}");
        let prefs = Preferences::parse(PreferencesInput {
            min_age: Some(18),
            max_age: Some(40),
            personality_weight: Some(0.1),
            ..PreferencesInput::default()
        })
        .expect("valid");
        assert_eq!(prefs.to_input().personality_weight, Some(0.1));
    }

    #[test]
    fn profile_errors_name_the_field() {
        assert_eq!(err_field(Profile::parse("", good_profile())), "user_id");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { name: None, ..good_profile() })), "name");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { name: Some("  ".into()), ..good_profile() })), "name");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { age: None, ..good_profile() })), "age");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { age: Some(17), ..good_profile() })), "age");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { age: Some(121), ..good_profile() })), "age");
        assert_eq!(err_field(Profile::parse("u", ProfileInput { age: Some(-5), ..good_profile() })), "age");
        assert_eq!(
            err_field(Profile::parse("u", ProfileInput { bio: Some("x".repeat(2001)), ..good_profile() })),
            "bio"
        );
        assert!(Profile::parse("u", ProfileInput { bio: Some("é".repeat(2000)), ..good_profile() }).is_ok());
        assert_eq!(err_field(Profile::parse("u", ProfileInput { interests: None, ..good_profile() })), "interests");
        let many: Vec<String> = (0..33).map(|i| format!("i{i}")).collect();
        assert_eq!(
            err_field(Profile::parse("u", ProfileInput { interests: Some(many), ..good_profile() })),
            "interests"
        );
        let bad = vec!["a".into(), "b".into(), "c".into(), "  ".into()];
        assert_eq!(
            err_field(Profile::parse("u", ProfileInput { interests: Some(bad), ..good_profile() })),
            "interests[3]"
        );
        let long = vec!["a".into(), "x".repeat(65)];
        assert_eq!(
            err_field(Profile::parse("u", ProfileInput { interests: Some(long), ..good_profile() })),
            "interests[1]"
        );
        let p = Some(vec![0.1, 0.2, 1.5, 0.4, 0.5]);
        assert_eq!(err_field(Profile::parse("u", ProfileInput { personality: p, ..good_profile() })), "personality[2]");
        let p = Some(vec![0.1, 0.2, f64::NAN, 0.4, 0.5]);
        assert_eq!(err_field(Profile::parse("u", ProfileInput { personality: p, ..good_profile() })), "personality[2]");
        let p = Some(vec![0.1, 0.2]);
        assert_eq!(err_field(Profile::parse("u", ProfileInput { personality: p, ..good_profile() })), "personality");
    }

    #[test]
    fn preferences_validate() {
        let ok = Preferences::parse(PreferencesInput { min_age: Some(20), max_age: Some(30), ..Default::default() })
            .expect("valid");
        assert_eq!(ok.personality_weight(), DEFAULT_PERSONALITY_WEIGHT);
        assert!(ok.preferred_interests().is_empty());
        let f = |i: PreferencesInput| Preferences::parse(i).expect_err("should be rejected").field;
        assert_eq!(f(PreferencesInput { max_age: Some(30), ..Default::default() }), "min_age");
        assert_eq!(f(PreferencesInput { min_age: Some(20), ..Default::default() }), "max_age");
        assert_eq!(f(PreferencesInput { min_age: Some(40), max_age: Some(30), ..Default::default() }), "max_age");
        assert_eq!(f(PreferencesInput { min_age: Some(10), max_age: Some(30), ..Default::default() }), "min_age");
        assert_eq!(
            f(PreferencesInput {
                min_age: Some(20),
                max_age: Some(30),
                personality_weight: Some(1.1),
                ..Default::default()
            }),
            "personality_weight"
        );
        assert_eq!(
            f(PreferencesInput {
                min_age: Some(20),
                max_age: Some(30),
                preferred_interests: Some(vec!["ok".into(), "".into()]),
                ..Default::default()
            }),
            "preferred_interests[1]"
        );
    }

    #[test]
    fn rating_validates() {
        assert!(parse_personality("personality_rating", &[0.0, 1.0, 0.5, 0.5, 0.5]).is_ok());
        let e = parse_personality("personality_rating", &[0.0, 1.0, -0.1, 0.5, 0.5]).expect_err("bad");
        assert_eq!(e.field, "personality_rating[2]");
    }
}

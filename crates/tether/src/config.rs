//! The configuration file (contract section 1): what it may say, how it is
//! checked, and the start-up error that names the key and line of the first
//! problem.
//!
//! ```toml
//! listen = "127.0.0.1:7878"
//! store  = "sqlite://tether.db"
//! log    = "json"                 # extension: "human" (default) | "json"
//!
//! [auth]
//! jwt_secret = "change-me"
//! api_keys   = ["backend-key-1"]
//! demo       = false
//!
//! [kinds.interview]
//! idle_timeout = "5m"
//! per_user     = "reject"
//! ```
//!
//! - A table for a built-in kind (`default`, `matching`, `call`) overrides only
//!   the keys it names; any other kind starts from [`KindPolicy::new`] (every
//!   timeout off, `on_parent_end = "end"`).
//! - Durations are `Dur` strings (`250ms`, `30s`, `5m`, `1h`, `7d`) and must be
//!   longer than zero. The string `"off"` switches a timeout off, which is how
//!   a built-in kind's timeout is removed (`[kinds.matching] idle_timeout = "off"`).
//!   `retention` is not a timeout and cannot be `"off"`.
//! - `decision_timeout` is accepted only in `[kinds.matching]`.
//! - `warn_before` (the `session.expiring` warning ahead of each deadline)
//!   must be shorter than the kind's `idle_timeout`; `revive_window` (how
//!   long after an `idle_timeout` or `disconnected` end a session may be
//!   revived) is refused in `[kinds.matching]` and `[kinds.call]`. Both are
//!   off when left out.
//! - `[limits]`: `user_rate` and `api_key_rate` are `"N/s"`, `"N/m"`, `"N/h"`
//!   or `"off"`; `user_burst` and `api_key_burst` whole numbers from 1;
//!   `ws_send_timeout` a duration. See [`Limits`] for the defaults.
//! - `[[webhooks]]` (one entry per endpoint): `url` (http or https, not
//!   twice), `secret` (`whsec_` + base64), optional `events` (known types but
//!   `stream.gap`), `kinds` (configured kinds) and `retry` (durations); see
//!   [`WebhookConfig`].
//! - Kind names are 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
//! - The first problem stops loading with a [`ConfigError`] that names the
//!   file, the 1-based line and the dotted key: an unknown key (with a "did you
//!   mean" suggestion), a wrong type, a bad duration, an unknown enum value,
//!   `quorum = 0`, or invalid TOML.
//!
//! # How it works
//!
//! Loading is two steps. First the text is deserialized into plain
//! `#[derive(Deserialize)]` structs with `#[serde(deny_unknown_fields)]`
//! (`FileToml` and one struct per table): serde checks the keys, types and
//! enum values, and value types that parse strings (durations, kind names,
//! non-empty strings) check themselves. toml puts the byte span of the key or
//! value on each error it raises, and `serde_path_to_error` records the dotted
//! key. Second, each table's `check` looks at what derive cannot (ranges,
//! combinations of keys) using `toml::Spanned` fields for the line, and builds
//! the [`FileConfig`] the server runs on.
//!
//! `[limits]` (contract section 11) is checked the same way: durations that
//! cannot be `"off"` (a server without a header timeout is the hole the
//! section closes), byte sizes written `"64KiB"`, `"1MiB"` or as a plain
//! integer of bytes, and a positive `max_connections`.
//!
//! A new section is one `#[derive(Deserialize)]` struct
//! with `#[serde(deny_unknown_fields)]`, a field in `FileToml` and in
//! [`FileConfig`], and its `check`; errors get their key, line and wording
//! from the shared path.
//!
//! Hand-written, because derive has no say there: the duration types
//! (`"off"`, the unit grammar, and naming a wrong-typed value the way a person
//! wrote it), the rewording of serde's messages (serde hands toml only a
//! formatted string, so "did you mean" needs the key list back out of it), and
//! the dotted key built from serde's path.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;
use tether_engine::kind::{CALL, MATCHING};
use tether_engine::{Dur, EventType, KindPolicy, Kinds, OnParentEnd, PerUser, Presence};
use toml::Spanned;

/// Everything the configuration file can say. Fields left out of the file are
/// `None`/empty here; `kinds` always holds the built-in kinds.
#[derive(Clone, Debug, Default)]
pub struct FileConfig {
    /// `listen`: the address to bind (flags and `TETHER_LISTEN` win over it).
    pub listen: Option<String>,
    /// `store`: `sqlite://…`, `memory` or `postgres://…` (checked by the store layer).
    pub store: Option<String>,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// The built-in kinds with the file's overrides, plus the file's new kinds.
    pub kinds: Kinds,
    /// `log = "human" | "json"` (extension): the log line format.
    pub log_format: Option<LogFormat>,
    /// `[limits]`, with the defaults for every key the file leaves out.
    pub limits: Limits,
    /// `[[webhooks]]` (contract section 9): one entry per endpoint, in file order.
    pub webhooks: Vec<WebhookConfig>,
    /// `[cluster]` (contract section 8).
    pub cluster: ClusterConfig,
    /// `cors_origins` (extension): which web origins browsers may call the API from.
    pub cors: Cors,
}

/// `cors_origins = ["*"]` (the default: any origin — the API authenticates
/// with bearer tokens, never cookies, so a foreign page gains nothing it does
/// not already hold), a list of origins (`"https://app.example.com"`), or
/// `[]` (no CORS headers: same-origin pages only).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Cors {
    #[default]
    Any,
    Origins(Vec<String>),
}

/// `[cluster]`: how several nodes on one PostgreSQL share the work.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// `lease`: how long a node that stops answering keeps the work before
    /// another takes it over.
    pub lease: std::time::Duration,
}

impl ClusterConfig {
    pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig { lease: ClusterConfig::DEFAULT_LEASE }
    }
}

/// The `[limits]` table (contract section 11), resolved: what the connection
/// layer ([`crate::http::server`]) enforces, the per-caller rate limits
/// ([`crate::http::rate`]) and the WebSocket send timeout. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `max_connections`: open connections served at once. `None` (the
    /// default) derives it from the open-file limit at start
    /// ([`crate::http::server::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// `header_timeout` (default 10s): a request's head must arrive within
    /// this, counted from the accept for a new connection.
    pub header_timeout: std::time::Duration,
    /// `body_timeout` (default 30s): a request's whole body must arrive
    /// within this of its head.
    pub body_timeout: std::time::Duration,
    /// `idle_timeout` (default 60s): a keep-alive connection with no request
    /// in flight and nothing sent for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// `max_body` (default 64 KiB): larger request bodies answer `413`.
    pub max_body: usize,
    /// `user_rate`: requests and WebSocket messages per user (all of a user's
    /// tokens together, invite-scoped ones included); `None` is `"off"`.
    pub user_rate: Option<Rate>,
    /// `user_burst`: how many a user may send at once before `user_rate` applies.
    pub user_burst: NonZeroU32,
    /// `api_key_rate`: the same for each API key; `None` is `"off"` (the default).
    pub api_key_rate: Option<Rate>,
    /// `api_key_burst` (extension); left out, twice the count of `api_key_rate`.
    pub api_key_burst: NonZeroU32,
    /// `ws_send_timeout` (extension): a WebSocket that cannot take a batch of
    /// events within this long is closed (a client that stopped reading).
    pub ws_send_timeout: std::time::Duration,
}

impl Limits {
    pub const DEFAULT_USER_RATE: Rate = Rate { count: NonZeroU32::new(50).unwrap(), per: Duration::from_secs(1) };
    pub const DEFAULT_USER_BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();
    pub const DEFAULT_WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: None,
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(60),
            max_body: crate::http::problem::BODY_LIMIT,
            user_rate: Some(Limits::DEFAULT_USER_RATE),
            user_burst: Limits::DEFAULT_USER_BURST,
            api_key_rate: None,
            api_key_burst: Limits::DEFAULT_USER_BURST,
            ws_send_timeout: Limits::DEFAULT_WS_SEND_TIMEOUT,
        }
    }
}

/// A rate: `count` per `per` (`"50/s"`, `"600/m"`, `"1000/h"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            3600 => "h",
            60 => "m",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` (N from 1); `"off"` is [`None`].
    pub fn parse(text: &str) -> Result<Option<Rate>, String> {
        if text == "off" {
            return Ok(None);
        }
        let shape = || format!("bad rate {text:?}: write it as N/s, N/m or N/h (e.g. \"50/s\"), or \"off\"");
        let (count, unit) = text.split_once('/').ok_or_else(shape)?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("bad rate {text:?}: unknown unit {other:?} (use s, m or h)")),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(shape());
        }
        let count: u32 =
            count.parse().map_err(|_| format!("bad rate {text:?}: the count must be at most {}", u32::MAX))?;
        let count = NonZeroU32::new(count)
            .ok_or_else(|| format!("bad rate {text:?}: the count must be at least 1 (use \"off\" to disable)"))?;
        Ok(Some(Rate { count, per }))
    }
}

/// The `[auth]` table.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// HS256 key for user tokens.
    pub jwt_secret: Option<String>,
    /// Backend / admin keys.
    pub api_keys: Vec<String>,
    /// `POST /v1/demo/token` mints user tokens (loopback demos only).
    pub demo: bool,
}

/// Secrets are never printed, so a config can be logged with `{:?}`.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("api_keys", &format_args!("[<{} redacted>]", self.api_keys.len()))
            .field("demo", &self.demo)
            .finish()
    }
}

/// `log = "human"` (readable lines) or `log = "json"` (one JSON object per line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Why the configuration could not be loaded. Displays as
/// `tether.toml line 12: kinds.interview.idle_timeout: bad duration "5x": unknown unit "x" (use ms, s, m, h or d)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file label (its path when loaded with [`load`]).
    pub file: String,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Dotted key, e.g. `kinds.interview.idle_timeout`, when the error is about one key.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses a configuration file; errors name the file by its path.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: label.clone(),
        line: None,
        key: None,
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&text, &label)
}

/// Parses configuration text; `file_label` names the file in errors.
pub fn parse(text: &str, file_label: &str) -> Result<FileConfig, ConfigError> {
    let cx = Cx { file: file_label, text };
    // Syntax first, so that "invalid TOML" is never confused with a key the
    // config does not accept; the file is small, parsing it twice is free.
    if let Err(e) = text.parse::<toml::Table>() {
        // toml's message may span lines ("invalid array\nexpected `]`"): keep one line.
        let message = e.message().trim().lines().collect::<Vec<_>>().join(": ");
        return Err(cx.err(e.span(), None, format!("invalid TOML: {message}")));
    }
    let file: FileToml =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| cx.serde_error(&e))?;
    file.check(&cx)
}

// ---------------------------------------------------------------------------
// The file as written: derived, one struct per table.

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    listen: Option<NonEmpty>,
    store: Option<NonEmpty>,
    log: Option<LogFormat>,
    #[serde(default)]
    auth: AuthToml,
    /// Kind name to its table, in name order (checks after deserializing run
    /// in that order; serde's own errors come in file order).
    #[serde(default)]
    kinds: BTreeMap<KindName, KindToml>,
    #[serde(default)]
    limits: LimitsToml,
    #[serde(default)]
    webhooks: Vec<WebhookToml>,
    #[serde(default)]
    cluster: ClusterToml,
    cors_origins: Option<Vec<Origin>>,
}

/// `[cluster]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterToml {
    lease: Option<LeasePeriod>,
}

/// A lease: a duration of at least one second (shorter ones would make a
/// busy database or a GC pause look like a dead node).
struct LeasePeriod(std::time::Duration);

impl<'de> Deserialize<'de> for LeasePeriod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Period(p) = Period::deserialize(d)?;
        if p < std::time::Duration::from_secs(1) {
            return Err(de::Error::custom("must be at least \"1s\""));
        }
        Ok(LeasePeriod(p))
    }
}

impl FileToml {
    fn check(self, cx: &Cx) -> Result<FileConfig, ConfigError> {
        let mut kinds = Kinds::builtin();
        for (name, table) in self.kinds {
            let policy = table.check(cx, kinds.base_for(&name.0))?;
            kinds.insert(policy);
        }
        let mut webhooks: Vec<WebhookConfig> = Vec::with_capacity(self.webhooks.len());
        for (index, table) in self.webhooks.into_iter().enumerate() {
            let hook = table.check(cx, index, &kinds)?;
            // The URL is the endpoint's identity (its deliveries, its state): two
            // entries with one URL would share both, so the second is refused.
            if webhooks.iter().any(|w| w.url == hook.url) {
                let message = format!("{:?} is already configured by an earlier [[webhooks]] entry", hook.url);
                return Err(cx.err(hook.url_span.clone(), Some(format!("webhooks[{index}].url")), message));
            }
            webhooks.push(hook);
        }
        let cors = match self.cors_origins {
            None => Cors::Any,
            Some(list) if list.iter().any(|o| o.0 == "*") => Cors::Any,
            Some(list) => Cors::Origins(list.into_iter().map(|o| o.0).collect()),
        };
        Ok(FileConfig {
            cors,
            webhooks,
            listen: self.listen.map(|s| s.0),
            store: self.store.map(|s| s.0),
            auth: self.auth.check(),
            kinds,
            log_format: self.log,
            limits: self.limits.check(),
            cluster: ClusterConfig {
                lease: self.cluster.lease.map_or(ClusterConfig::DEFAULT_LEASE, |LeasePeriod(p)| p),
            },
        })
    }
}

/// `[auth]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthToml {
    jwt_secret: Option<NonEmpty>,
    #[serde(default)]
    api_keys: Vec<NonEmpty>,
    #[serde(default)]
    demo: bool,
}

impl AuthToml {
    /// Every rule of `[auth]` is in its field types; this only unwraps them.
    fn check(self) -> AuthConfig {
        AuthConfig {
            jwt_secret: self.jwt_secret.map(|s| s.0),
            api_keys: self.api_keys.into_iter().map(|s| s.0).collect(),
            demo: self.demo,
        }
    }
}

/// `[limits]`: every key optional; what is left out keeps [`Limits::default`].
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsToml {
    max_connections: Option<Count>,
    header_timeout: Option<Period>,
    body_timeout: Option<Period>,
    idle_timeout: Option<Period>,
    max_body: Option<ByteSize>,
    user_rate: Option<RateToml>,
    user_burst: Option<Burst>,
    api_key_rate: Option<RateToml>,
    api_key_burst: Option<Burst>,
    ws_send_timeout: Option<Period>,
}

impl LimitsToml {
    /// Every rule of `[limits]` is in its field types; this lays them over the defaults.
    fn check(self) -> Limits {
        let defaults = Limits::default();
        let period = |given: Option<Period>, default| given.map_or(default, |Period(d)| d);
        let api_key_rate = self.api_key_rate.map_or(defaults.api_key_rate, |r| r.0);
        // Twice the count: the same shape as the user default (50/s, burst 100).
        let api_key_burst = self.api_key_burst.map(|b| b.0).unwrap_or_else(|| match api_key_rate {
            Some(rate) => rate.count.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)),
            None => defaults.api_key_burst,
        });
        Limits {
            max_connections: self.max_connections.map(|Count(n)| n).or(defaults.max_connections),
            header_timeout: period(self.header_timeout, defaults.header_timeout),
            body_timeout: period(self.body_timeout, defaults.body_timeout),
            idle_timeout: period(self.idle_timeout, defaults.idle_timeout),
            max_body: self.max_body.map_or(defaults.max_body, |ByteSize(n)| n),
            user_rate: self.user_rate.map_or(defaults.user_rate, |r| r.0),
            user_burst: self.user_burst.map_or(defaults.user_burst, |b| b.0),
            api_key_rate,
            api_key_burst,
            ws_send_timeout: period(self.ws_send_timeout, defaults.ws_send_timeout),
        }
    }
}

/// `[kinds.NAME]`: every key optional, because a built-in kind's table
/// overrides only the keys it names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindToml {
    idle_timeout: Option<Timeout>,
    max_duration: Option<Timeout>,
    waiting_timeout: Option<Timeout>,
    completing_timeout: Option<Timeout>,
    per_user: Option<PerUser>,
    /// Spanned: its range is checked after deserializing.
    quorum: Option<Spanned<i64>>,
    presence: Option<Presence>,
    participant_idle_timeout: Option<Timeout>,
    disconnect_grace: Option<Timeout>,
    on_parent_end: Option<OnParentEnd>,
    invite_ttl: Option<Timeout>,
    retention: Option<Retention>,
    /// Spanned: whether it is allowed depends on the kind's name.
    decision_timeout: Option<Spanned<Timeout>>,
    /// Spanned: it must be shorter than the kind's idle_timeout.
    warn_before: Option<Spanned<Timeout>>,
    /// Spanned: matching and call sessions cannot be revived.
    revive_window: Option<Spanned<Timeout>>,
}

impl KindToml {
    /// Lays the table over `base` (the built-in policy, or a new kind's).
    fn check(self, cx: &Cx, mut p: KindPolicy) -> Result<KindPolicy, ConfigError> {
        let key = |field: &str| format!("kinds.{}.{field}", key_display(&p.name));
        if let Some(decision) = self.decision_timeout {
            if p.name != MATCHING {
                let message = "decision_timeout is only allowed in [kinds.matching] \
                               (how long a user may owe a skip/continue decision after a call)";
                return Err(cx.err(Some(decision.span()), Some(key("decision_timeout")), message.into()));
            }
            p.decision_timeout = decision.into_inner().0;
        }
        if let Some(quorum) = self.quorum {
            let n = *quorum.get_ref();
            p.quorum = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                let message = format!("must be an integer from 1 to {}, found {n}", u32::MAX);
                cx.err(Some(quorum.span()), Some(key("quorum")), message)
            })?;
        }
        let timeouts = [
            (self.idle_timeout, &mut p.idle_timeout),
            (self.max_duration, &mut p.max_duration),
            (self.waiting_timeout, &mut p.waiting_timeout),
            (self.completing_timeout, &mut p.completing_timeout),
            (self.participant_idle_timeout, &mut p.participant_idle_timeout),
            (self.disconnect_grace, &mut p.disconnect_grace),
            (self.invite_ttl, &mut p.invite_ttl),
        ];
        for (given, slot) in timeouts {
            if let Some(Timeout(t)) = given {
                *slot = t;
            }
        }
        if let Some(Retention(d)) = self.retention {
            p.retention = d;
        }
        if let Some(revive) = self.revive_window {
            if p.name == MATCHING || p.name == CALL {
                let message = format!(
                    "revive_window is not allowed in [kinds.{}]: matching and call sessions carry the pool's \
                     and the pair's state, so they are started again, not revived",
                    p.name
                );
                return Err(cx.err(Some(revive.span()), Some(key("revive_window")), message));
            }
            p.revive_window = revive.into_inner().0;
        }
        if let Some(warn) = self.warn_before {
            let span = warn.span();
            p.warn_before = warn.into_inner().0;
            if let (Some(before), Some(idle)) = (p.warn_before, p.idle_timeout) {
                if before >= idle {
                    let message = format!(
                        "warn_before ({before}) must be shorter than idle_timeout ({idle}): \
                         otherwise every heartbeat would be followed at once by a warning"
                    );
                    return Err(cx.err(Some(span), Some(key("warn_before")), message));
                }
            }
        }
        if let Some(v) = self.per_user {
            p.per_user = v;
        }
        if let Some(v) = self.presence {
            p.presence = v;
        }
        if let Some(v) = self.on_parent_end {
            p.on_parent_end = v;
        }
        Ok(p)
    }
}

/// One `[[webhooks]]` entry, checked: where to POST, the signing key, which
/// events, and the delays between attempts.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `url`: `http://` or `https://`. The endpoint's identity.
    pub url: String,
    /// `secret`'s decoded bytes (the HMAC-SHA256 key of Standard Webhooks).
    pub secret: Vec<u8>,
    /// `events`: the types sent (default: every type but `call.signal`).
    pub events: Vec<EventType>,
    /// `kinds`: only events of sessions of these kinds (`None`: every kind).
    pub kinds: Option<Vec<String>>,
    /// `retry`: the delay before each retry; its length is the number of
    /// retries (default [`WebhookConfig::DEFAULT_RETRY`]).
    pub retry: Vec<Duration>,
    /// Where `url` was written, for the duplicate-URL error.
    url_span: Option<std::ops::Range<usize>>,
}

impl WebhookConfig {
    /// The contract's schedule: 7 retries over about 28 hours.
    pub const DEFAULT_RETRY: [&'static str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];

    /// An endpoint built in code (tests, the benchmark): every type but
    /// `call.signal`, every kind, the default schedule.
    pub fn new(url: &str, secret: Vec<u8>) -> WebhookConfig {
        WebhookConfig {
            url: url.to_string(),
            secret,
            events: default_webhook_events(),
            kinds: None,
            retry: Self::DEFAULT_RETRY
                .iter()
                .map(|d| Duration::from_millis(Dur::parse(d).map(|d| d.0).unwrap_or(5_000)))
                .collect(),
            url_span: None,
        }
    }
}

/// The secret is never printed, so a config can be logged with `{:?}`.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .field("kinds", &self.kinds)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Event types a webhook may ask for: every published type (`stream.gap`
/// is a stream's own notice, never an event of a session).
pub fn webhook_event_types() -> impl Iterator<Item = EventType> {
    EventType::ALL.into_iter().filter(|t| *t != EventType::StreamGap)
}

/// What `events` defaults to: `call.signal` is left out, because signals are
/// per-call chatter (offers, ICE candidates) a backend rarely wants POSTed.
pub fn default_webhook_events() -> Vec<EventType> {
    webhook_event_types().filter(|t| *t != EventType::CallSignal).collect()
}

/// `[[webhooks]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookToml {
    url: Spanned<String>,
    secret: Spanned<String>,
    events: Option<Vec<Spanned<String>>>,
    kinds: Option<Vec<Spanned<String>>>,
    retry: Option<Vec<Period>>,
}

impl WebhookToml {
    fn check(self, cx: &Cx, index: usize, kinds: &Kinds) -> Result<WebhookConfig, ConfigError> {
        let key = |field: &str| Some(format!("webhooks[{index}].{field}"));
        let url_span = self.url.span();
        let url = self.url.into_inner();
        match reqwest::Url::parse(&url) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
            Ok(u) => {
                let message =
                    format!("{url:?} must be an http:// or https:// URL with a host (scheme {:?})", u.scheme());
                return Err(cx.err(Some(url_span), key("url"), message));
            }
            Err(e) => return Err(cx.err(Some(url_span), key("url"), format!("{url:?} is not a URL: {e}"))),
        }
        let secret_span = self.secret.span();
        let secret = decode_webhook_secret(self.secret.get_ref())
            // The message never repeats the secret itself.
            .map_err(|why| cx.err(Some(secret_span), key("secret"), why))?;
        let events = match self.events {
            None => default_webhook_events(),
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    let Some(t) = webhook_event_types().find(|t| t.as_str() == name.get_ref()) else {
                        let known: Vec<&str> = webhook_event_types().map(|t| t.as_str()).collect();
                        let message =
                            format!("unknown event type {:?} (expected one of {})", name.get_ref(), known.join(", "));
                        return Err(cx.err(Some(name.span()), key("events"), message));
                    };
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                out
            }
        };
        let kinds = match self.kinds {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for name in list {
                    if kinds.get(name.get_ref()).is_none() {
                        let mut known: Vec<&str> = kinds.iter().map(|k| k.name.as_str()).collect();
                        known.sort_unstable();
                        let message =
                            format!("unknown kind {:?} (configured kinds: {})", name.get_ref(), known.join(", "));
                        return Err(cx.err(Some(name.span()), key("kinds"), message));
                    }
                    out.push(name.into_inner());
                }
                Some(out)
            }
        };
        let retry = match self.retry {
            None => WebhookConfig::new("", Vec::new()).retry,
            Some(list) => list.into_iter().map(|Period(d)| d).collect(),
        };
        Ok(WebhookConfig { url, secret, events, kinds, retry, url_span: Some(url_span) })
    }
}

/// `whsec_` + standard base64 → the key bytes; the error says why without the secret.
pub fn decode_webhook_secret(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let Some(encoded) = text.strip_prefix("whsec_") else {
        return Err("must start with \"whsec_\" followed by base64 (a Standard Webhooks secret)".into());
    };
    // Padding optional, as the Standard Webhooks libraries accept it.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    match engine.decode(encoded) {
        Ok(bytes) if bytes.len() >= 16 => Ok(bytes),
        Ok(bytes) => Err(format!("decodes to {} bytes; use at least 16 random bytes", bytes.len())),
        Err(e) => Err(format!("the part after \"whsec_\" is not standard base64 ({e})")),
    }
}

// ---------------------------------------------------------------------------
// Value types that check themselves while deserializing, so their errors carry
// the value's span like any serde error.

/// A web origin as browsers send it (`https://app.example.com`,
/// `http://localhost:3000`: scheme, host, optional port, nothing after), or `*`.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct Origin(String);

impl TryFrom<String> for Origin {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s == "*" {
            return Ok(Origin(s));
        }
        let why =
            || format!("{s:?} is not an origin like \"https://app.example.com\" (scheme and host, no path) or \"*\"");
        let url = reqwest::Url::parse(&s).map_err(|_| why())?;
        let bare = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.path() == "/"
            && !s.ends_with('/')
            && url.query().is_none()
            && url.username().is_empty();
        if bare {
            Ok(Origin(s))
        } else {
            Err(why())
        }
    }
}

/// A string that is not blank.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct NonEmpty(String);

impl TryFrom<String> for NonEmpty {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.trim().is_empty() {
            return Err("must not be empty");
        }
        Ok(NonEmpty(s))
    }
}

/// A kind name: `1..=64` characters of `a-z`, `0-9`, `_`, `-`.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(try_from = "String")]
struct KindName(String);

impl TryFrom<String> for KindName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        let ok_chars = name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        if name.is_empty() || name.len() > 64 || !ok_chars {
            return Err(format!(
                "bad kind name {name:?}: use 1 to 64 characters of lowercase letters, digits, '_' and '-'"
            ));
        }
        Ok(KindName(name))
    }
}

/// A rate limit: a [`Rate`], or `None` for `"off"`.
struct RateToml(Option<Rate>);

impl<'de> Deserialize<'de> for RateToml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = duration_text(d, "a rate like \"50/s\" or \"off\"")?;
        Rate::parse(&text).map(RateToml).map_err(de::Error::custom)
    }
}

/// A burst size: a whole number from 1.
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct Burst(NonZeroU32);

impl TryFrom<i64> for Burst {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        u32::try_from(n)
            .ok()
            .and_then(NonZeroU32::new)
            .map(Burst)
            .ok_or_else(|| format!("must be an integer from 1 to {}, found {n}", u32::MAX))
    }
}

/// A timeout: a duration, or `None` for `"off"`.
struct Timeout(Option<Dur>);

/// A duration that cannot be switched off (`retention`, `limits.ws_send_timeout`).
struct Retention(Dur);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = duration_text(d, "a duration string like \"30s\" or \"off\"")?;
        if text == "off" {
            return Ok(Timeout(None));
        }
        parse_duration(&text).map(|d| Timeout(Some(d))).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = duration_text(d, "a duration string like \"7d\"")?;
        if text == "off" {
            return Err(de::Error::custom("cannot be \"off\"; give a duration like \"30s\" or \"7d\""));
        }
        parse_duration(&text).map(Retention).map_err(de::Error::custom)
    }
}

/// A duration that cannot be switched off, as a `std` duration (the `[limits]` timeouts).
struct Period(std::time::Duration);

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = duration_text(d, "a duration string like \"10s\"")?;
        if text == "off" {
            return Err(de::Error::custom("cannot be \"off\"; give a duration like \"10s\""));
        }
        parse_duration(&text).map(|Dur(ms)| Period(std::time::Duration::from_millis(ms))).map_err(de::Error::custom)
    }
}

/// A count of at least one (`max_connections`).
#[derive(Deserialize)]
#[serde(try_from = "i64")]
struct Count(usize);

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        usize::try_from(n).ok().filter(|n| *n >= 1).map(Count).ok_or_else(|| format!("must be at least 1, found {n}"))
    }
}

/// The largest `max_body`: bodies are read into memory whole.
const MAX_BODY_CEILING: usize = 1 << 30;

/// A byte size: an integer of bytes, or a string `"<n><unit>"` with unit `B`,
/// `KiB`, `MiB` or `GiB` (`"64KiB"`, `"1 MiB"`), from 1 byte to 1 GiB.
struct ByteSize(usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a size like \"64KiB\", \"1MiB\" or an integer of bytes";
        let bytes = match toml::Value::deserialize(d)? {
            toml::Value::Integer(n) => u64::try_from(n).map_err(|_| format!("bad size {n}: must be positive")),
            toml::Value::String(text) => parse_byte_size(&text),
            other => {
                let found = match other {
                    toml::Value::Float(x) => format!("float {x}"),
                    toml::Value::Boolean(b) => format!("boolean {b}"),
                    toml::Value::Datetime(t) => format!("datetime {t}"),
                    toml::Value::Array(_) => "an array".to_string(),
                    _ => "a table".to_string(),
                };
                return Err(de::Error::invalid_type(de::Unexpected::Other(&found), &expected));
            }
        }
        .map_err(de::Error::custom)?;
        match usize::try_from(bytes) {
            Ok(n) if (1..=MAX_BODY_CEILING).contains(&n) => Ok(ByteSize(n)),
            _ => Err(de::Error::custom(format!("bad size: must be from 1 byte to 1GiB, found {bytes} bytes"))),
        }
    }
}

/// `"64KiB"` → 65536. Binary units only, so `"64KB"` is refused rather than guessed at.
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("bad size {text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    let number: u64 = number.parse().map_err(|_| format!("bad size {text:?}: expected a whole number and a unit"))?;
    number.checked_mul(scale).ok_or_else(|| format!("bad size {text:?}: too large"))
}

/// The string a duration is written as. Read through `toml::Value` rather
/// than `String` so that a wrong type is answered with what a duration looks
/// like (`expected a duration string like "30s" or "off", found integer 300`),
/// and a TOML datetime is named as the datetime it is (serde alone would call
/// it a map).
fn duration_text<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<String, D::Error> {
    let found = match toml::Value::deserialize(d)? {
        toml::Value::String(text) => return Ok(text),
        toml::Value::Integer(n) => format!("integer {n}"),
        toml::Value::Float(x) => format!("float {x}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(t) => format!("datetime {t}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    };
    Err(de::Error::invalid_type(de::Unexpected::Other(&found), &expected))
}

/// A duration longer than zero, with `Dur::parse`'s reason when it is not one.
fn parse_duration(text: &str) -> Result<Dur, String> {
    match Dur::parse(text) {
        Ok(Dur(0)) => Err(format!("bad duration {text:?}: must be longer than zero (use \"off\" to switch it off)")),
        Ok(d) => Ok(d),
        Err(why) => {
            // Dur::parse says `duration "5x" has unknown unit ...`; keep the reason only.
            let prefix = format!("duration {text:?} ");
            let reason = why.strip_prefix(prefix.as_str()).map(|r| r.strip_prefix("has ").unwrap_or(r));
            Err(format!("bad duration {text:?}: {}", reason.unwrap_or(&why)))
        }
    }
}

// ---------------------------------------------------------------------------
// Errors: key, line and wording.

/// The text being loaded, for turning byte spans into lines.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Cx<'_> {
    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn err(&self, span: Option<std::ops::Range<usize>>, key: Option<String>, message: String) -> ConfigError {
        ConfigError { file: self.file.to_string(), line: span.map(|s| self.line_at(s.start)), key, message }
    }

    /// A serde error from deserializing [`FileToml`]: the key comes from the
    /// path serde walked, the line from toml's span, and the message is
    /// reworded into the config's own terms.
    fn serde_error(&self, e: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let (key, item) = key_path(e.path());
        let inner = e.inner();
        let span = inner.span();
        let source = span.clone().and_then(|s| self.text.get(s)).unwrap_or("").trim();
        let mut message = reword(inner.message(), key.as_deref(), source);
        if let Some(index) = item {
            message = format!("item {}: {message}", index + 1);
        }
        self.err(span, key, message)
    }
}

/// The dotted key of a serde path, and the index when the path ends inside an
/// array (`auth.api_keys` item 2 rather than `auth.api_keys[1]`).
fn key_path(path: &serde_path_to_error::Path) -> (Option<String>, Option<usize>) {
    use serde_path_to_error::Segment;
    let mut parts: Vec<String> = Vec::new();
    let mut item = None;
    for segment in path.iter() {
        match segment {
            // `Spanned` walks through a map of its own; those keys are not the user's.
            Segment::Map { key } if key.starts_with("$__") => continue,
            Segment::Map { key } | Segment::Enum { variant: key } => parts.push(key_display(key)),
            Segment::Seq { index } => {
                if let Some(last) = parts.last_mut() {
                    last.push_str(&format!("[{index}]"));
                }
            }
            Segment::Unknown => parts.push("?".to_string()),
        }
        item = None;
        if let Segment::Seq { index } = segment {
            item = Some(*index);
        }
    }
    if let (Some(index), Some(last)) = (item, parts.last_mut()) {
        last.truncate(last.len() - format!("[{index}]").len());
    }
    ((!parts.is_empty()).then(|| parts.join(".")), item)
}

/// Serde's messages, in the config's words. serde hands toml only a formatted
/// string (`de::Error::unknown_field` and friends default to `custom`), so the
/// few shapes it produces are recognised by their fixed wording; anything else
/// (the value types' own messages) is kept as it is.
fn reword(message: &str, key: Option<&str>, source: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // `unknown field `x`, expected one of `a`, `b`` or `..., there are no fields`.
        let name = key.and_then(|k| k.rsplit('.').next()).unwrap_or("").to_string();
        let name = rest.split_once('`').map_or(name, |(n, _)| n.to_string());
        let known = rest.rsplit_once(", expected ").map(|(_, list)| backticked(list)).unwrap_or_default();
        return unknown_key(&name, &known);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((value, list)) = rest.rsplit_once("`, expected ") {
            let choices: Vec<String> = backticked(list).iter().map(|c| format!("{c:?}")).collect();
            return format!("unknown value {value:?} (expected {})", choices.join(" | "));
        }
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message.strip_prefix(prefix).and_then(|r| r.rsplit_once(", expected ")) {
            return format!("expected {}, found {}", expected_words(expected), found_words(found));
        }
    }
    // toml's answer when an enum (per_user, log, ...) is given a non-string.
    if message == "wanted string or table" {
        return format!("expected a string, found {source}");
    }
    message.to_string()
}

/// ``a` or `b``, ``one of `a`, `b`, `c`` → `[a, b, c]`.
fn backticked(list: &str) -> Vec<String> {
    list.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn unknown_key(name: &str, known: &[String]) -> String {
    // Two edits are a typo in `idle_timout`, but would turn `bind` into `kinds`.
    let limit = (name.chars().count() / 3).clamp(1, 2);
    let close = known.iter().filter(|k| edit_distance(k, name) <= limit);
    let hint = match close.min_by_key(|k| edit_distance(k, name)) {
        Some(k) => format!(" (did you mean {k:?}?)"),
        None if known.is_empty() => String::new(),
        None => format!(" (known keys: {})", known.join(", ")),
    };
    format!("unknown key {name:?}{hint}")
}

/// serde's "expected" for std types, in TOML's terms.
fn expected_words(expected: &str) -> String {
    match expected {
        "a boolean" => "a boolean (true or false)".into(),
        "a map" => "a table".into(),
        "a sequence" => "an array".into(),
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e => e.into(),
    }
}

/// serde's `Unexpected` (``integer `300` ``, `map`, ...) in TOML's terms.
fn found_words(found: &str) -> String {
    match found {
        "map" => "a table".into(),
        "sequence" => "an array".into(),
        f => f.replace("floating point", "float").replace('`', ""),
    }
}

/// A key as written in TOML: bare when possible, else quoted.
fn key_display(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> FileConfig {
        parse(text, "tether.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(text, "tether.toml") {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e,
        }
    }

    fn secs(s: u64) -> Option<Dur> {
        Some(Dur::from_secs(s))
    }

    const CONTRACT_EXAMPLE: &str = r#"listen = "127.0.0.1:7878"
store  = "sqlite://tether.db"

[auth]
jwt_secret = "change-me"         # HS256 key for user tokens
api_keys   = ["backend-key-1"]   # backend / admin keys
demo       = false               # true: POST /v1/demo/token mints user tokens (loopback demos only)

[kinds.interview]                # one table per session kind
idle_timeout       = "5m"        # no heartbeat or activity for this long -> ended "idle_timeout"
max_duration       = "10m"       # from activation -> ended "max_duration"
waiting_timeout    = "15m"       # still waiting (quorum not reached) -> ended "waiting_timeout"
completing_timeout = "2m"        # in "completing" this long -> ended "completing_timeout"
per_user           = "reject"    # "replace" | "reject" | "allow"
quorum             = 1           # participants needed to go waiting -> active (1 = active at once)
presence           = "owner"     # "owner" | "any" : whose activity keeps the session alive
participant_idle_timeout = "2m"  # a participant with no heartbeat for this long is marked left
disconnect_grace   = "10s"       # optional: owner's last WebSocket closed this long (none reopened) -> ended "disconnected"
on_parent_end      = "end"       # "end" (cascade, reason "parent_ended") | "keep"
invite_ttl         = "1h"        # invites stop working this long after the session's last activity
retention          = "7d"        # ended sessions kept this long, then purged
"#;

    #[test]
    fn contract_example_parses() {
        let cfg = ok(CONTRACT_EXAMPLE);
        assert_eq!(cfg.listen.as_deref(), Some("127.0.0.1:7878"));
        assert_eq!(cfg.store.as_deref(), Some("sqlite://tether.db"));
        assert_eq!(cfg.auth.jwt_secret.as_deref(), Some("change-me"));
        assert_eq!(cfg.auth.api_keys, vec!["backend-key-1".to_string()]);
        assert!(!cfg.auth.demo);
        assert_eq!(cfg.log_format, None);

        let mut want = KindPolicy::new("interview");
        want.idle_timeout = secs(300);
        want.max_duration = secs(600);
        want.waiting_timeout = secs(900);
        want.completing_timeout = secs(120);
        want.per_user = PerUser::Reject;
        want.quorum = 1;
        want.presence = Presence::Owner;
        want.participant_idle_timeout = secs(120);
        want.disconnect_grace = secs(10);
        want.on_parent_end = OnParentEnd::End;
        want.invite_ttl = secs(3600);
        want.retention = Dur::from_secs(7 * 86_400);
        assert_eq!(cfg.kinds.get("interview"), Some(&want));

        // The built-in kinds are still there, untouched.
        let builtin = Kinds::builtin();
        for name in ["default", "matching", "call"] {
            assert_eq!(cfg.kinds.get(name), builtin.get(name), "{name}");
        }
    }

    #[test]
    fn empty_file_gives_builtins() {
        let cfg = ok("");
        assert_eq!(cfg.listen, None);
        assert_eq!(cfg.auth, AuthConfig::default());
        assert_eq!(cfg.kinds.iter().count(), 3);
        assert_eq!(cfg.kinds.get("default").unwrap().idle_timeout, secs(60));
    }

    #[test]
    fn new_kind_starts_with_everything_off() {
        let cfg = ok("[kinds.chat]\n");
        assert_eq!(cfg.kinds.get("chat"), Some(&KindPolicy::new("chat")));
        let cfg = ok("[kinds.chat]\nper_user = \"replace\"\n");
        let chat = cfg.kinds.get("chat").unwrap();
        assert_eq!(chat.per_user, PerUser::Replace);
        assert_eq!(chat.idle_timeout, None);
        assert_eq!(chat.on_parent_end, OnParentEnd::End);
    }

    #[test]
    fn builtin_override_keeps_other_builtin_keys() {
        let cfg = ok("[kinds.matching]\nidle_timeout = \"45s\"\n\n[kinds.call]\nmax_duration = \"5m\"\n");
        let m = cfg.kinds.get("matching").unwrap();
        let mut want = Kinds::builtin().get("matching").unwrap().clone();
        want.idle_timeout = secs(45);
        assert_eq!(m, &want);
        assert_eq!(m.disconnect_grace, secs(5));
        assert_eq!(m.decision_timeout, secs(30));
        assert_eq!(m.per_user, PerUser::Replace);

        let c = cfg.kinds.get("call").unwrap();
        assert_eq!(c.max_duration, secs(300));
        assert_eq!(c.quorum, 2);
        assert_eq!(c.waiting_timeout, secs(60));
        assert!(!c.owner_joins, "calls keep owner_joins = false");

        // default untouched
        assert_eq!(cfg.kinds.get("default"), Kinds::builtin().get("default"));
    }

    #[test]
    fn off_switches_a_timeout_off() {
        let cfg = ok("[kinds.matching]\nidle_timeout = \"off\"\ndecision_timeout = \"off\"\n[kinds.call]\nwaiting_timeout = \"off\"\n");
        let m = cfg.kinds.get("matching").unwrap();
        assert_eq!(m.idle_timeout, None);
        assert_eq!(m.decision_timeout, None);
        assert_eq!(m.disconnect_grace, secs(5));
        assert_eq!(cfg.kinds.get("call").unwrap().waiting_timeout, None);

        let e = err("[kinds.x]\nretention = \"off\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("kinds.x.retention")));
    }

    #[test]
    fn decision_timeout_only_in_matching() {
        let cfg = ok("[kinds.matching]\ndecision_timeout = \"1m\"\n");
        assert_eq!(cfg.kinds.get("matching").unwrap().decision_timeout, secs(60));
        for kind in ["call", "default", "interview"] {
            let e = err(&format!("# c\n[kinds.{kind}]\nidle_timeout = \"1m\"\ndecision_timeout = \"30s\"\n"));
            assert_eq!(e.line, Some(4), "{e}");
            assert_eq!(e.key, Some(format!("kinds.{kind}.decision_timeout")));
            assert!(e.message.contains("only allowed in [kinds.matching]"), "{e}");
        }
    }

    #[test]
    fn lifecycle_keys_warn_before_and_revive_window() {
        let cfg = ok("[kinds.interview]\nidle_timeout = \"5m\"\nwarn_before = \"30s\"\nrevive_window = \"2m\"\n[kinds.default]\nwarn_before = \"10s\"\n");
        let k = cfg.kinds.get("interview").unwrap();
        assert_eq!((k.warn_before, k.revive_window), (secs(30), secs(120)));
        let d = cfg.kinds.get("default").unwrap();
        assert_eq!(
            (d.warn_before, d.revive_window, d.idle_timeout),
            (secs(10), None, secs(60)),
            "default keeps idle 60s"
        );
        let off = ok("[kinds.x]\nwarn_before = \"off\"\nrevive_window = \"off\"\n");
        assert_eq!((off.kinds.get("x").unwrap().warn_before, off.kinds.get("x").unwrap().revive_window), (None, None));
        // Bad durations are named like any other duration key's.
        for key in ["warn_before", "revive_window"] {
            let e = err(&format!("[kinds.k]\n\n{key} = \"5x\"\n"));
            assert_eq!((e.line, e.key.clone()), (Some(3), Some(format!("kinds.k.{key}"))), "{e}");
            assert!(e.message.starts_with("bad duration \"5x\""), "{e}");
        }
        // A warning at least as far ahead as the idle timeout would follow every heartbeat.
        for text in [
            "[kinds.k]\nidle_timeout = \"30s\"\nwarn_before = \"30s\"\n",
            "[kinds.k]\nwarn_before = \"1m\"\nidle_timeout = \"30s\"\n",
            "[kinds.default]\n# built-in idle 60s\nwarn_before = \"90s\"\n",
        ] {
            let e = err(text);
            assert!(e.key.as_deref().is_some_and(|k| k.ends_with(".warn_before")), "{e}");
            assert_eq!(e.line, Some(text.lines().position(|l| l.starts_with("warn_before")).unwrap() + 1), "{e}");
            assert!(e.message.contains("must be shorter than idle_timeout"), "{e}");
        }
        for kind in ["matching", "call"] {
            let e = err(&format!("[kinds.{kind}]\nrevive_window = \"1m\"\n"));
            assert_eq!((e.line, e.key.clone()), (Some(2), Some(format!("kinds.{kind}.revive_window"))), "{e}");
            assert!(e.message.contains("not allowed"), "{e}");
        }
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let text = "listen = \"127.0.0.1:1\"\n\n[kinds.interview]\nper_user = \"reject\"\nidle_timeout = \"5x\"\n";
        let e = err(text);
        assert_eq!(e.line, Some(5));
        assert_eq!(e.key.as_deref(), Some("kinds.interview.idle_timeout"));
        assert_eq!(
            e.to_string(),
            "tether.toml line 5: kinds.interview.idle_timeout: bad duration \"5x\": unknown unit \"x\" (use ms, s, m, h or d)"
        );
        for bad in ["5", "s", "-5s", "1.5s", "0s", "0ms", "99999999999d", ""] {
            let e = err(&format!("[kinds.k]\n\nmax_duration = {bad:?}\n"));
            assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("kinds.k.max_duration")), "{bad}: {e}");
            assert!(e.message.starts_with(&format!("bad duration {bad:?}")), "{e}");
        }
    }

    #[test]
    fn unknown_keys_everywhere() {
        let e = err("listen = \"x\"\nlisten_addr = \"y\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen_addr")));
        assert!(e.message.contains("unknown key"), "{e}");

        let e = err("[auth]\ndemo = true\njwt = \"s\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("auth.jwt")));

        let e = err("[kinds.interview]\nidle_timeout = \"5m\"\n\nidle_timout = \"5m\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("kinds.interview.idle_timout")));
        assert!(e.message.contains("did you mean \"idle_timeout\""), "{e}");

        // Dotted keys and inline tables are located too.
        let e = err("store = \"memory\"\nkinds.chat.ttl = \"5m\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("kinds.chat.ttl")));
        let e = err("[kinds]\nroom = {}\nchat = { idle_timeout = \"5m\", bogus = 1 }\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("kinds.chat.bogus")));
    }

    #[test]
    fn wrong_types() {
        let cases: &[(&str, usize, &str)] = &[
            ("listen = 7878\n", 1, "listen"),
            ("\n[auth]\ndemo = \"yes\"\n", 3, "auth.demo"),
            ("[auth]\napi_keys = \"k\"\n", 2, "auth.api_keys"),
            ("[auth]\napi_keys = [\n  \"a\",\n  5,\n]\n", 4, "auth.api_keys"),
            ("[auth]\napi_keys = [\"a\", \"\"]\n", 2, "auth.api_keys"),
            ("[auth]\njwt_secret = \"\"\n", 2, "auth.jwt_secret"),
            ("auth = 1\n", 1, "auth"),
            ("kinds = \"x\"\n", 1, "kinds"),
            ("[kinds]\nchat = 5\n", 2, "kinds.chat"),
            ("[kinds.chat]\nidle_timeout = 300\n", 2, "kinds.chat.idle_timeout"),
            ("[kinds.chat]\nidle_timeout = 1979-05-27\n", 2, "kinds.chat.idle_timeout"),
            ("[kinds.chat]\nquorum = \"2\"\n", 2, "kinds.chat.quorum"),
            ("[kinds.chat]\nper_user = true\n", 2, "kinds.chat.per_user"),
            ("log = [\"json\"]\n", 1, "log"),
        ];
        for (text, line, key) in cases {
            let e = err(text);
            assert_eq!((e.line, e.key.as_deref()), (Some(*line), Some(*key)), "{text}: {e}");
        }
        let e = err("[kinds.chat]\nidle_timeout = 1979-05-27\n");
        assert!(e.message.contains("found datetime 1979-05-27"), "{e}");
        let e = err("[kinds.chat]\nidle_timeout = 300\n");
        assert!(e.message.contains("found integer 300"), "{e}");
    }

    #[test]
    fn unknown_enum_values() {
        let cases: &[(&str, &str)] = &[
            ("per_user = \"Reject\"", "per_user"),
            ("presence = \"all\"", "presence"),
            ("on_parent_end = \"cascade\"", "on_parent_end"),
        ];
        for (line, key) in cases {
            let e = err(&format!("[kinds.room]\nquorum = 2\n{line}\n"));
            assert_eq!(e.line, Some(3), "{e}");
            assert_eq!(e.key, Some(format!("kinds.room.{key}")));
            assert!(e.message.starts_with("unknown value"), "{e}");
        }
        let e = err("log = \"xml\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("log")));
        assert_eq!(ok("log = \"json\"").log_format, Some(LogFormat::Json));
        assert_eq!(ok("log = \"human\"").log_format, Some(LogFormat::Human));
    }

    #[test]
    fn quorum_bounds() {
        let e = err("[kinds.room]\n\nquorum = 0\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("kinds.room.quorum")));
        let e = err("[kinds.room]\nquorum = -3\n");
        assert_eq!(e.line, Some(2));
        let e = err("[kinds.room]\nquorum = 1.5\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(ok("[kinds.room]\nquorum = 4\n").kinds.get("room").unwrap().quorum, 4);
    }

    #[test]
    fn kind_names() {
        let e = err("# x\n[kinds.Interview]\nidle_timeout = \"5m\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("kinds.Interview")));
        let e = err("[kinds.\"two words\"]\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("kinds.\"two words\"")));
        let long = "k".repeat(65);
        let e = err(&format!("[kinds.{long}]\n"));
        assert_eq!(e.line, Some(1));
        let e = err("[kinds.\"\"]\n");
        assert_eq!(e.line, Some(1));
        let name = format!("a-b_c-{}", "9".repeat(58));
        assert!(ok(&format!("[kinds.{name}]\n")).kinds.get(&name).is_some());
    }

    #[test]
    fn invalid_toml_names_line() {
        let e = err("listen = \"a\"\n\n[auth\ndemo = true\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key, None);
        assert!(e.to_string().starts_with("tether.toml line 3: invalid TOML"), "{e}");
        let e = err("[kinds.a]\nidle_timeout = \"5m\"\nidle_timeout = \"6m\"\n");
        assert_eq!(e.line, Some(3), "duplicate key: {e}");
        let e = err("[kinds.a]\n[kinds.a]\n");
        assert_eq!(e.line, Some(2), "duplicate table: {e}");
    }

    #[test]
    fn crlf_and_implicit_tables_have_lines() {
        let e = err("# a\r\n[kinds.x.y]\r\nz = 1\r\n");
        // kinds.x is an implicit table holding a table `y`: `y` is an unknown key of kind x.
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("kinds.x.y")), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let path = std::env::temp_dir().join(format!("tether-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, "[kinds.chat]\nidle_timeout = \"5x\"\n").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(e.file, path.display().to_string());
        assert_eq!(e.line, Some(2));
        std::fs::write(&path, "[kinds.chat]\nidle_timeout = \"5m\"\n").unwrap();
        assert_eq!(load(&path).unwrap().kinds.get("chat").unwrap().idle_timeout, secs(300));
        std::fs::remove_file(&path).unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!((e.line, &e.key), (None, &None));
        assert!(e.to_string().starts_with(&format!("{}: cannot read the config file", path.display())), "{e}");
    }

    #[test]
    fn limits_default_and_parse() {
        let limits = ok("").limits;
        assert_eq!(limits, Limits::default());
        assert_eq!(limits.user_rate.map(|r| r.to_string()).as_deref(), Some("50/s"));
        assert_eq!(limits.user_burst.get(), 100);
        assert_eq!(limits.api_key_rate, None);

        let text =
            "[limits]\nuser_rate = \"600/m\"\nuser_burst = 7\napi_key_rate = \"1000/h\"\nws_send_timeout = \"2s\"\n";
        let limits = ok(text).limits;
        assert_eq!(limits.user_rate, Some(Rate { count: NonZeroU32::new(600).unwrap(), per: Duration::from_secs(60) }));
        assert_eq!(limits.user_burst.get(), 7);
        assert_eq!(limits.api_key_rate.map(|r| r.to_string()).as_deref(), Some("1000/h"));
        assert_eq!(limits.api_key_burst.get(), 2000, "left out: twice the rate's count");
        assert_eq!(limits.ws_send_timeout, Duration::from_secs(2));

        let limits = ok("[limits]\nuser_rate = \"off\"\napi_key_rate = \"5/s\"\napi_key_burst = 1\n").limits;
        assert_eq!((limits.user_rate, limits.api_key_burst.get()), (None, 1));
    }

    #[test]
    fn bad_limits_name_key_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("user_rate = \"50\"", "user_rate", "write it as N/s, N/m or N/h"),
            ("user_rate = \"50/d\"", "user_rate", "unknown unit \"d\""),
            ("user_rate = \"0/s\"", "user_rate", "at least 1"),
            ("user_rate = \"-1/s\"", "user_rate", "write it as"),
            ("user_rate = \"99999999999/s\"", "user_rate", "at most"),
            ("user_rate = 50", "user_rate", "expected a rate like \"50/s\" or \"off\", found integer 50"),
            ("api_key_rate = \"fast\"", "api_key_rate", "bad rate \"fast\""),
            ("user_burst = 0", "user_burst", "from 1 to"),
            ("user_burst = \"100\"", "user_burst", "expected an integer"),
            ("api_key_burst = -2", "api_key_burst", "from 1 to"),
            ("ws_send_timeout = \"off\"", "ws_send_timeout", "cannot be \"off\""),
            ("user_rte = \"5/s\"", "user_rte", "did you mean \"user_rate\""),
        ];
        for (line, key, says) in cases {
            let e = err(&format!("# limits\n[limits]\n{line}\n"));
            assert_eq!((e.line, e.key.clone()), (Some(3), Some(format!("limits.{key}"))), "{line}: {e}");
            assert!(e.message.contains(says), "{line}: {e}");
        }
    }

    #[test]
    fn limits_defaults_and_contract_example() {
        let defaults = ok("").limits;
        assert_eq!(defaults, Limits::default());
        assert_eq!(defaults.max_connections, None, "derived from the open-file limit at start");
        assert_eq!(defaults.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(defaults.body_timeout, std::time::Duration::from_secs(30));
        assert_eq!(defaults.idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(defaults.max_body, 64 * 1024);

        let cfg = ok("[limits]\nmax_connections = 10000\nheader_timeout  = \"10s\"\nbody_timeout    = \"30s\"\n\
                      idle_timeout    = \"60s\"\nmax_body        = \"64KiB\"\n");
        assert_eq!(cfg.limits, Limits { max_connections: Some(10_000), ..Limits::default() });

        let cfg = ok("[limits]\nheader_timeout = \"250ms\"\nmax_body = \"1MiB\"\n");
        assert_eq!(cfg.limits.header_timeout, std::time::Duration::from_millis(250));
        assert_eq!(cfg.limits.idle_timeout, std::time::Duration::from_secs(60), "not named: default kept");
        assert_eq!(cfg.limits.max_body, 1 << 20);
        assert_eq!(ok("[limits]\nmax_body = 1000\n").limits.max_body, 1000);
        assert_eq!(ok("[limits]\nmax_body = \"2 KiB\"\n").limits.max_body, 2048);
    }

    #[test]
    fn limits_errors_name_key_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("max_connections = 0", "max_connections", "must be at least 1, found 0"),
            ("max_connections = -5", "max_connections", "must be at least 1"),
            ("max_connections = \"100\"", "max_connections", "expected an integer"),
            ("header_timeout = \"off\"", "header_timeout", "cannot be \"off\""),
            ("body_timeout = \"5x\"", "body_timeout", "bad duration \"5x\""),
            ("idle_timeout = 60", "idle_timeout", "found integer 60"),
            ("max_body = \"64KB\"", "max_body", "unknown unit \"KB\""),
            ("max_body = \"KiB\"", "max_body", "expected a whole number"),
            ("max_body = 0", "max_body", "from 1 byte to 1GiB"),
            ("max_body = \"2GiB\"", "max_body", "from 1 byte to 1GiB"),
            ("max_body = 1.5", "max_body", "found float 1.5"),
            ("max_conections = 5", "max_conections", "did you mean \"max_connections\""),
        ];
        for (line, key, message) in cases {
            let e = err(&format!("store = \"memory\"\n[limits]\n{line}\n"));
            assert_eq!((e.line, e.key.clone()), (Some(3), Some(format!("limits.{key}"))), "{line}: {e}");
            assert!(e.message.contains(message), "{line}: {e}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let cfg = ok("[auth]\njwt_secret = \"hunter2\"\napi_keys = [\"k-123\"]\n");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("k-123"), "{dbg}");
    }

    const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn webhooks_parse_with_defaults() {
        let cfg = ok(&format!(
            "[[webhooks]]\nurl = \"https://app.example.com/tether\"\nsecret = \"{HOOK_SECRET}\"\n\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"{HOOK_SECRET}\"\nevents = [\"session.ended\", \"match.mutual\"]\n\
             kinds = [\"interview\"]\nretry = [\"100ms\", \"1s\"]\n[kinds.interview]\n"
        ));
        assert_eq!(cfg.webhooks.len(), 2);
        let a = &cfg.webhooks[0];
        assert_eq!(a.url, "https://app.example.com/tether");
        assert_eq!(a.secret.len(), 24);
        assert!(!a.events.contains(&EventType::CallSignal) && !a.events.contains(&EventType::StreamGap));
        assert!(a.events.contains(&EventType::Ended));
        assert_eq!(a.kinds, None);
        assert_eq!(a.retry.len(), 7);
        assert_eq!(a.retry[1], Duration::from_secs(300));
        let b = &cfg.webhooks[1];
        assert_eq!(b.events, vec![EventType::Ended, EventType::MatchMutual]);
        assert_eq!(b.kinds, Some(vec!["interview".to_string()]));
        assert_eq!(b.retry, vec![Duration::from_millis(100), Duration::from_secs(1)]);
        assert!(!format!("{a:?}").contains("MfKQ"), "the secret is never printed");
    }

    #[test]
    fn webhook_errors_name_key_and_line() {
        let hook = |body: &str| format!("[auth]\ndemo = false\n\n[[webhooks]]\n{body}");
        let e = err(&hook("url = \"https://x.example\"\nsecret = \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"));
        assert_eq!((e.key.as_deref(), e.line), (Some("webhooks[0].secret"), Some(6)), "{e}");
        assert!(e.message.contains("whsec_") && !e.message.contains("MfKQ"), "{e}");
        let e = err(&hook("url = \"https://x.example\"\nsecret = \"whsec_!!notbase64\"\n"));
        assert_eq!(e.key.as_deref(), Some("webhooks[0].secret"), "{e}");
        let e = err(&hook(&format!("url = \"ftp://x.example/\"\nsecret = \"{HOOK_SECRET}\"\n")));
        assert_eq!((e.key.as_deref(), e.line), (Some("webhooks[0].url"), Some(5)), "{e}");
        let e = err(&hook(&format!(
            "url = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\nevents = [\"session.ended\", \"session.exploded\"]\n"
        )));
        assert_eq!((e.key.as_deref(), e.line), (Some("webhooks[0].events"), Some(7)), "{e}");
        assert!(e.message.contains("session.exploded") && e.message.contains("session.started"), "{e}");
        let e = err(&hook(&format!("url = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\nkinds = [\"nope\"]\n")));
        assert_eq!(e.key.as_deref(), Some("webhooks[0].kinds"), "{e}");
        let e = err(&hook(&format!("url = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\nretry = [\"5x\"]\n")));
        assert!(e.key.as_deref().is_some_and(|k| k.starts_with("webhooks[0].retry")), "{e}");
        let e = err(&hook(&format!("url = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\nsecert = 1\n")));
        assert!(e.message.contains("unknown key"), "{e}");
        let e = err(&hook("url = \"https://x\"\n"));
        assert!(e.message.contains("secret"), "{e}");
        let twice = format!("[[webhooks]]\nurl = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\n[[webhooks]]\nurl = \"https://x\"\nsecret = \"{HOOK_SECRET}\"\n");
        let e = err(&twice);
        assert_eq!((e.key.as_deref(), e.line), (Some("webhooks[1].url"), Some(5)), "{e}");
    }
}

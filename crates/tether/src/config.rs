//! The configuration file (contract section 1).
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
//! - Kind names are 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
//! - The first problem stops loading with a [`ConfigError`] that names the
//!   file, the 1-based line and the dotted key: an unknown key, a wrong type, a
//!   bad duration, an unknown enum value, `quorum = 0`, or invalid TOML.
//!
//! Line numbers come from byte spans that toml's deserializer attaches to keys
//! and values. `toml::Spanned` cannot be used directly because toml leaves
//! implicit tables (`kinds` in `[kinds.interview]`) without a span and
//! presents datetimes as unspanned maps, both of which make `Spanned` fail; so
//! [`Node`] speaks the same serde protocol (the `serde_spanned` struct name and
//! field names, pinned by toml 0.8) but falls back to "no span" instead of
//! failing. The tests at the bottom pin the behaviour.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use tether_engine::kind::MATCHING;
use tether_engine::{Dur, KindPolicy, Kinds, OnParentEnd, PerUser, Presence};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    let root: SpNode = toml::from_str(text).map_err(|e| ConfigError {
        file: file_label.to_string(),
        line: e.span().map(|s| cx.line_at(s.start)),
        key: None,
        // toml's message may span lines ("invalid array\nexpected `]`"): keep one line.
        message: format!("invalid TOML: {}", e.message().trim().lines().collect::<Vec<_>>().join(": ")),
    })?;
    let Node::Table(entries) = root.node else {
        return Err(cx.err(None, None, "expected a TOML document".into()));
    };

    let mut cfg = FileConfig::default();
    for e in &entries {
        match e.key.as_str() {
            "listen" => cfg.listen = Some(cx.non_empty_string(e, &e.key)?),
            "store" => cfg.store = Some(cx.non_empty_string(e, &e.key)?),
            "log" => {
                let choices = [("human", LogFormat::Human), ("json", LogFormat::Json)];
                cfg.log_format = Some(cx.choice(e, &e.key, &choices)?);
            }
            "auth" => cfg.auth = cx.auth(e)?,
            "kinds" => cx.kinds(e, &mut cfg.kinds)?,
            _ => return Err(cx.unknown_key(e, &e.key, TOP_KEYS)),
        }
    }
    Ok(cfg)
}

const TOP_KEYS: &[&str] = &["listen", "store", "log", "auth", "kinds"];
const AUTH_KEYS: &[&str] = &["jwt_secret", "api_keys", "demo"];
const KIND_KEYS: &[&str] = &[
    "idle_timeout",
    "max_duration",
    "waiting_timeout",
    "completing_timeout",
    "per_user",
    "quorum",
    "presence",
    "participant_idle_timeout",
    "disconnect_grace",
    "on_parent_end",
    "invite_ttl",
    "retention",
    "decision_timeout",
];

/// Error construction and typed reads, all naming the file and line.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Cx<'_> {
    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn err(&self, span: Option<&Range<usize>>, key: Option<&str>, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: span.map(|s| self.line_at(s.start)),
            key: key.map(str::to_string),
            message,
        }
    }

    /// An error about entry `e` (reported at its key, else at its value).
    fn at(&self, e: &Entry, path: &str, message: String) -> ConfigError {
        self.err(e.key_span.as_ref().or(e.value.span.as_ref()), Some(path), message)
    }

    fn unknown_key(&self, e: &Entry, path: &str, known: &[&str]) -> ConfigError {
        let hint = match known.iter().filter(|k| edit_distance(k, &e.key) <= 2).min_by_key(|k| edit_distance(k, &e.key))
        {
            Some(k) => format!(" (did you mean {k:?}?)"),
            None => format!(" (known keys: {})", known.join(", ")),
        };
        self.at(e, path, format!("unknown key {:?}{hint}", e.key))
    }

    fn wrong_type(&self, e: &Entry, path: &str, expected: &str) -> ConfigError {
        self.at(e, path, format!("expected {expected}, found {}", e.value.node.describe()))
    }

    fn table<'n>(&self, e: &'n Entry, path: &str) -> Result<&'n [Entry], ConfigError> {
        match &e.value.node {
            Node::Table(entries) => Ok(entries),
            _ => Err(self.wrong_type(e, path, "a table")),
        }
    }

    fn string<'n>(&self, e: &'n Entry, path: &str) -> Result<&'n str, ConfigError> {
        match &e.value.node {
            Node::Str(s) => Ok(s),
            _ => Err(self.wrong_type(e, path, "a string")),
        }
    }

    fn non_empty_string(&self, e: &Entry, path: &str) -> Result<String, ConfigError> {
        let s = self.string(e, path)?;
        if s.trim().is_empty() {
            return Err(self.at(e, path, "must not be empty".into()));
        }
        Ok(s.to_string())
    }

    fn boolean(&self, e: &Entry, path: &str) -> Result<bool, ConfigError> {
        match e.value.node {
            Node::Bool(b) => Ok(b),
            _ => Err(self.wrong_type(e, path, "a boolean (true or false)")),
        }
    }

    fn choice<T: Copy>(&self, e: &Entry, path: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let expected = names.join(" | ");
        let Node::Str(s) = &e.value.node else {
            return Err(self.wrong_type(e, path, &format!("one of {expected}")));
        };
        choices
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.at(e, path, format!("unknown value {s:?} (expected {expected})")))
    }

    /// A duration, or `None` for `"off"`.
    fn timeout(&self, e: &Entry, path: &str) -> Result<Option<Dur>, ConfigError> {
        let Node::Str(s) = &e.value.node else {
            return Err(self.wrong_type(e, path, "a duration string like \"30s\" or \"off\""));
        };
        if s == "off" {
            return Ok(None);
        }
        self.parse_dur(e, path, s).map(Some)
    }

    /// A duration that cannot be switched off.
    fn duration(&self, e: &Entry, path: &str) -> Result<Dur, ConfigError> {
        let Node::Str(s) = &e.value.node else {
            return Err(self.wrong_type(e, path, "a duration string like \"7d\""));
        };
        if s == "off" {
            return Err(self.at(e, path, "cannot be \"off\"; give a duration like \"7d\"".into()));
        }
        self.parse_dur(e, path, s)
    }

    fn parse_dur(&self, e: &Entry, path: &str, s: &str) -> Result<Dur, ConfigError> {
        match Dur::parse(s) {
            Ok(Dur(0)) => Err(self.at(
                e,
                path,
                format!("bad duration {s:?}: must be longer than zero (use \"off\" to switch it off)"),
            )),
            Ok(d) => Ok(d),
            Err(why) => {
                // Dur::parse says `duration "5x" has unknown unit ...`; keep the reason only.
                let prefix = format!("duration {s:?} ");
                let reason = why.strip_prefix(prefix.as_str()).map(|r| r.strip_prefix("has ").unwrap_or(r));
                Err(self.at(e, path, format!("bad duration {s:?}: {}", reason.unwrap_or(&why))))
            }
        }
    }

    fn auth(&self, e: &Entry) -> Result<AuthConfig, ConfigError> {
        let mut auth = AuthConfig::default();
        for a in self.table(e, "auth")? {
            let path = format!("auth.{}", key_display(&a.key));
            match a.key.as_str() {
                "jwt_secret" => auth.jwt_secret = Some(self.non_empty_string(a, &path)?),
                "demo" => auth.demo = self.boolean(a, &path)?,
                "api_keys" => {
                    let Node::Array(items) = &a.value.node else {
                        return Err(self.wrong_type(a, &path, "an array of strings"));
                    };
                    for (i, item) in items.iter().enumerate() {
                        let at = item.span.as_ref().or(a.key_span.as_ref());
                        match &item.node {
                            Node::Str(s) if !s.trim().is_empty() => auth.api_keys.push(s.clone()),
                            Node::Str(_) => {
                                return Err(self.err(at, Some(&path), format!("item {} is empty", i + 1)));
                            }
                            other => {
                                let msg = format!("item {} must be a string, found {}", i + 1, other.describe());
                                return Err(self.err(at, Some(&path), msg));
                            }
                        }
                    }
                }
                _ => return Err(self.unknown_key(a, &path, AUTH_KEYS)),
            }
        }
        Ok(auth)
    }

    fn kinds(&self, e: &Entry, kinds: &mut Kinds) -> Result<(), ConfigError> {
        for k in self.table(e, "kinds")? {
            let name = &k.key;
            let path = format!("kinds.{}", key_display(name));
            if let Err(why) = check_kind_name(name) {
                return Err(self.at(k, &path, why));
            }
            let mut policy = kinds.base_for(name);
            for f in self.table(k, &path)? {
                self.kind_key(f, &path, &mut policy)?;
            }
            kinds.insert(policy);
        }
        Ok(())
    }

    fn kind_key(&self, f: &Entry, kind_path: &str, p: &mut KindPolicy) -> Result<(), ConfigError> {
        let path = format!("{kind_path}.{}", key_display(&f.key));
        let path = path.as_str();
        match f.key.as_str() {
            "idle_timeout" => p.idle_timeout = self.timeout(f, path)?,
            "max_duration" => p.max_duration = self.timeout(f, path)?,
            "waiting_timeout" => p.waiting_timeout = self.timeout(f, path)?,
            "completing_timeout" => p.completing_timeout = self.timeout(f, path)?,
            "participant_idle_timeout" => p.participant_idle_timeout = self.timeout(f, path)?,
            "disconnect_grace" => p.disconnect_grace = self.timeout(f, path)?,
            "invite_ttl" => p.invite_ttl = self.timeout(f, path)?,
            "retention" => p.retention = self.duration(f, path)?,
            "decision_timeout" => {
                if p.name != MATCHING {
                    return Err(self.at(
                        f,
                        path,
                        "decision_timeout is only allowed in [kinds.matching] \
                         (how long a user may owe a skip/continue decision after a call)"
                            .into(),
                    ));
                }
                p.decision_timeout = self.timeout(f, path)?;
            }
            "per_user" => {
                let choices = [("replace", PerUser::Replace), ("reject", PerUser::Reject), ("allow", PerUser::Allow)];
                p.per_user = self.choice(f, path, &choices)?;
            }
            "presence" => p.presence = self.choice(f, path, &[("owner", Presence::Owner), ("any", Presence::Any)])?,
            "on_parent_end" => {
                p.on_parent_end = self.choice(f, path, &[("end", OnParentEnd::End), ("keep", OnParentEnd::Keep)])?
            }
            "quorum" => {
                let Node::Int(n) = f.value.node else {
                    return Err(self.wrong_type(f, path, "an integer >= 1"));
                };
                p.quorum = u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| self.at(f, path, format!("must be an integer from 1 to {}, found {n}", u32::MAX)))?;
            }
            _ => return Err(self.unknown_key(f, path, KIND_KEYS)),
        }
        Ok(())
    }
}

/// `1..=64` characters of `a-z`, `0-9`, `_`, `-`.
fn check_kind_name(name: &str) -> Result<(), String> {
    let ok_chars = name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(format!(
            "bad kind name {name:?}: use 1 to 64 characters of lowercase letters, digits, '_' and '-'"
        ));
    }
    Ok(())
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

// ---------------------------------------------------------------------------
// A TOML tree that remembers where each key and value came from.

/// serde_spanned's private protocol, which toml 0.8's deserializer answers.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
static SPANNED_FIELDS: [&str; 3] = [SPANNED_START, SPANNED_END, SPANNED_VALUE];
/// toml_datetime presents a datetime as a one-entry map under this key.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

#[derive(Debug)]
enum Node {
    Table(Vec<Entry>),
    Array(Vec<SpNode>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
}

impl Node {
    fn describe(&self) -> String {
        match self {
            Node::Table(_) => "a table".into(),
            Node::Array(_) => "an array".into(),
            Node::Str(s) => format!("string {s:?}"),
            Node::Int(n) => format!("integer {n}"),
            Node::Float(x) => format!("float {x}"),
            Node::Bool(b) => format!("boolean {b}"),
            Node::Datetime(d) => format!("datetime {d}"),
        }
    }
}

#[derive(Debug)]
struct SpNode {
    span: Option<Range<usize>>,
    node: Node,
}

#[derive(Debug)]
struct Entry {
    key: String,
    key_span: Option<Range<usize>>,
    value: SpNode,
}

/// A table key, spanned when the deserializer knows where it is.
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key { name: v.to_string(), span: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Key, A::Error> {
                let (mut start, mut end, mut name) = (None, None, None);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        SPANNED_START => start = Some(m.next_value::<usize>()?),
                        SPANNED_END => end = Some(m.next_value::<usize>()?),
                        SPANNED_VALUE => name = Some(m.next_value::<String>()?),
                        other => return Err(de::Error::unknown_field(other, &SPANNED_FIELDS)),
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
                let span = start.zip(end).map(|(s, e)| s..e);
                Ok(Key { name, span })
            }
        }
        d.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, V)
    }
}

impl<'de> Deserialize<'de> for SpNode {
    /// Asks for a span; a deserializer that has none hands over the bare value.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpNode, D::Error> {
        d.deserialize_struct(SPANNED_NAME, &SPANNED_FIELDS, NodeVisitor)
    }
}

/// The value inside a span: read without asking for a span again.
struct Bare(SpNode);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bare, D::Error> {
        d.deserialize_any(NodeVisitor).map(Bare)
    }
}

struct NodeVisitor;

fn bare(node: Node) -> SpNode {
    SpNode { span: None, node }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = SpNode;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SpNode, E> {
        Ok(bare(Node::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SpNode, E> {
        Ok(bare(Node::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SpNode, E> {
        i64::try_from(v).map(|v| bare(Node::Int(v))).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SpNode, E> {
        Ok(bare(Node::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SpNode, E> {
        Ok(bare(Node::Str(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<SpNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = s.next_element::<SpNode>()? {
            items.push(item);
        }
        Ok(bare(Node::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SpNode, A::Error> {
        let Some(first) = m.next_key::<Key>()? else {
            return Ok(bare(Node::Table(Vec::new())));
        };
        if first.span.is_none() && first.name == SPANNED_START {
            // The span protocol: start, end, then the value itself.
            let start = m.next_value::<usize>()?;
            let mut end = start;
            let mut value = None;
            while let Some(k) = m.next_key::<Key>()? {
                match k.name.as_str() {
                    SPANNED_END => end = m.next_value::<usize>()?,
                    SPANNED_VALUE => value = Some(m.next_value::<Bare>()?.0.node),
                    other => return Err(de::Error::unknown_field(other, &SPANNED_FIELDS)),
                }
            }
            let node = value.ok_or_else(|| de::Error::missing_field(SPANNED_VALUE))?;
            return Ok(SpNode { span: Some(start..end), node });
        }
        if first.span.is_none() && first.name == DATETIME_FIELD {
            return Ok(bare(Node::Datetime(m.next_value::<String>()?)));
        }
        let mut entries = Vec::new();
        let mut key = Some(first);
        while let Some(k) = key {
            let value = m.next_value::<SpNode>()?;
            entries.push(Entry { key: k.name, key_span: k.span, value });
            key = m.next_key::<Key>()?;
        }
        Ok(bare(Node::Table(entries)))
    }
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
    fn debug_redacts_secrets() {
        let cfg = ok("[auth]\njwt_secret = \"hunter2\"\napi_keys = [\"k-123\"]\n");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("k-123"), "{dbg}");
    }
}

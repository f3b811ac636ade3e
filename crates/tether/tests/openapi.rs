//! The OpenAPI description must never drift from the router.
//!
//! The routers' sources are read at compile time (`include_str!`) and their
//! `.route("PATH", get(..).post(..))` calls are parsed by a small scanner (no
//! regex): every registered method and path must be documented, and every
//! documented operation must be registered (except the pages the static-file
//! fallback serves). Every operation must document its errors as
//! `application/problem+json`. Any other router file, or a routing form the
//! scanner does not understand (`.nest`, `any`, `on`, …), fails the test
//! instead of slipping through.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every source file that registers routes, as (path relative to the crate, text).
const ROUTER_SOURCES: &[(&str, &str)] = &[
    ("src/http/mod.rs", include_str!("../src/http/mod.rs")),
    ("src/matching/http.rs", include_str!("../src/matching/http.rs")),
];

/// Documented paths no `.route` registers: pages the static-file fallback
/// serves from `web/`, with the file that must exist for each.
const FALLBACK_PAGES: &[(&str, &str)] =
    &[("/admin", "admin/index.html"), ("/demo", "demo/index.html"), ("/sdk/tether.js", "sdk/tether.js")];

/// `/v1` operations that take no `Authorization` header.
const UNAUTHENTICATED_V1: &[(&str, &str)] = &[
    ("post", "/v1/sessions/{id}/beacon"), // token in the body
    ("post", "/v1/invites/{token}/join"), // the invitation is the credential
    ("post", "/v1/demo/token"),           // demo mode only
];

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[derive(Debug)]
struct Route {
    file: &'static str,
    line: usize,
    path: String,
    methods: Vec<String>,
}

/// A tiny Rust-source cursor: skips comments and string literals, finds
/// `.route(` calls and parses their path and method-router chain.
struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    file: &'static str,
}

impl<'a> Scanner<'a> {
    fn line(&self) -> usize {
        self.src[..self.pos.min(self.src.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}:{}: {what} — the route scanner in tests/openapi.rs understands `.route(\"PATH\", get(..).post(..))`; \
             extend it (and document the route in src/openapi.rs)",
            self.file,
            self.line()
        )
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        self.src[self.pos..].starts_with(s.as_bytes())
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) {
        loop {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.pos += 1;
            }
            if self.starts_with("//") {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.pos += 1;
                }
            } else if self.starts_with("/*") {
                match self.src[self.pos + 2..].windows(2).position(|w| w == b"*/") {
                    Some(i) => self.pos += 2 + i + 2,
                    None => self.pos = self.src.len(),
                }
            } else {
                return;
            }
        }
    }

    /// At `r"`, `r#"`, `br"`, …: skips the raw string literal and returns true.
    fn skip_raw_string(&mut self) -> bool {
        let prev_is_ident =
            self.pos > 0 && (self.src[self.pos - 1].is_ascii_alphanumeric() || self.src[self.pos - 1] == b'_');
        let mut p = self.pos;
        if prev_is_ident {
            return false;
        }
        if self.src.get(p) == Some(&b'b') {
            p += 1;
        }
        if self.src.get(p) != Some(&b'r') {
            return false;
        }
        p += 1;
        let hashes = self.src[p..].iter().take_while(|&&b| b == b'#').count();
        p += hashes;
        if self.src.get(p) != Some(&b'"') {
            return false;
        }
        let closer: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat(b'#').take(hashes)).collect();
        match self.src[p + 1..].windows(closer.len()).position(|w| w == closer.as_slice()) {
            Some(i) => self.pos = p + 1 + i + closer.len(),
            None => self.fail("unterminated raw string literal"),
        }
        true
    }

    /// At a `"`: reads a (non-raw) string literal and returns its contents.
    fn string(&mut self) -> String {
        assert_eq!(self.peek(), Some(b'"'));
        self.pos += 1;
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'\\' => self.pos += 2,
                b'"' => {
                    let s = String::from_utf8(self.src[start..self.pos].to_vec()).unwrap();
                    self.pos += 1;
                    return s;
                }
                _ => self.pos += 1,
            }
        }
        self.fail("unterminated string literal")
    }

    /// At an opening bracket: skips to just past its matching closer.
    fn skip_balanced(&mut self) {
        let mut depth = 0usize;
        loop {
            self.skip_trivia();
            if self.skip_raw_string() {
                continue;
            }
            match self.peek() {
                None => self.fail("unbalanced brackets"),
                Some(b'"') => {
                    self.string();
                }
                Some(b'(' | b'[' | b'{') => {
                    depth += 1;
                    self.pos += 1;
                }
                Some(b')' | b']' | b'}') => {
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        return;
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    fn ident_path(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
            self.pos += 1;
        }
        String::from_utf8(self.src[start..self.pos].to_vec()).unwrap()
    }

    /// After `.route(`: `"PATH", method(..)[.method(..)]* )`.
    fn route_call(&mut self) -> Route {
        let line = self.line();
        self.skip_trivia();
        if self.peek() != Some(b'"') {
            self.fail("a route path that is not a string literal");
        }
        let path = self.string();
        self.skip_trivia();
        if self.peek() != Some(b',') {
            self.fail("expected `,` after the route path");
        }
        self.pos += 1;
        let mut methods = Vec::new();
        loop {
            self.skip_trivia();
            let name = self.ident_path();
            let method = name.rsplit("::").next().unwrap_or_default().to_string();
            if !HTTP_METHODS.contains(&method.as_str()) {
                self.fail(&format!("method router `{name}` on {path:?} is not one of {HTTP_METHODS:?}"));
            }
            self.skip_trivia();
            if self.peek() != Some(b'(') {
                self.fail(&format!("expected `(` after `{name}`"));
            }
            self.skip_balanced();
            methods.push(method);
            self.skip_trivia();
            match self.peek() {
                Some(b'.') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    break;
                }
                _ => self.fail("expected `.method(..)` or `)` after a method router"),
            }
        }
        Route { file: self.file, line, path, methods }
    }

    /// Parses every `.route(..)` call. `strict`: fail on routing forms the scanner does not
    /// understand; otherwise only report (with an empty path) that the file registers routes.
    fn routes(file: &'static str, text: &'a str, strict: bool) -> Vec<Route> {
        let mut s = Scanner { src: text.as_bytes(), pos: 0, file };
        let mut found = Vec::new();
        while s.pos < s.src.len() {
            s.skip_trivia();
            if s.skip_raw_string() {
                continue;
            }
            match s.peek() {
                None => break,
                Some(b'"') => {
                    s.string();
                }
                Some(b'\'') => {
                    // A char literal like '"' must not open a string; lifetimes are harmless.
                    if s.src.get(s.pos + 2) == Some(&b'\'') {
                        s.pos += 3;
                    } else if s.src.get(s.pos + 1) == Some(&b'\\') {
                        s.pos += 2;
                        while s.peek().is_some_and(|b| b != b'\'') {
                            s.pos += 1;
                        }
                        s.pos += 1;
                    } else {
                        s.pos += 1;
                    }
                }
                Some(b'.') => {
                    s.pos += 1;
                    let registers =
                        ["route(", "nest(", "nest_service(", "route_service("].iter().any(|c| s.starts_with(c));
                    if !strict {
                        if registers {
                            found.push(Route { file, line: s.line(), path: String::new(), methods: vec![] });
                        }
                        continue;
                    }
                    // The one merge allowed is the matching router, whose source is scanned too.
                    let merge = s.starts_with("merge(") && !s.starts_with("merge(m::routes())");
                    if merge || (registers && !s.starts_with("route(")) {
                        s.fail("a routing call other than `.route(..)` (or `.merge(m::routes())`) is not understood");
                    }
                    if s.starts_with("route(") {
                        s.pos += "route(".len();
                        found.push(s.route_call());
                    }
                }
                Some(_) => s.pos += 1,
            }
        }
        found
    }
}

/// Axum path syntax to OpenAPI: `{id}` stays, `{*rest}`, `:id` and `*rest` become `{id}`/`{rest}`.
fn openapi_path(axum: &str) -> String {
    axum.split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix(':').or_else(|| seg.strip_prefix('*')) {
                format!("{{{name}}}")
            } else if let Some(name) = seg.strip_prefix("{*") {
                format!("{{{name}")
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn registered_routes() -> Vec<Route> {
    ROUTER_SOURCES.iter().flat_map(|(file, text)| Scanner::routes(file, text, true)).collect()
}

fn document() -> Value {
    tether::openapi::document()
}

/// (method, path) → operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if HTTP_METHODS.contains(&method.as_str()) {
                ops.insert((method.clone(), path.clone()), op.clone());
            }
        }
    }
    ops
}

/// Follows a `#/components/...` reference.
fn resolve<'v>(doc: &'v Value, v: &'v Value) -> &'v Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {r}")))
        }
        None => v,
    }
}

#[test]
fn the_scanner_reads_the_routers() {
    let routes = registered_routes();
    let has = |m: &str, p: &str| routes.iter().any(|r| r.path == p && r.methods.iter().any(|x| x == m));
    // Known routes of each form: a chain, a closure handler, a merged router's route.
    assert!(has("post", "/v1/sessions") && has("get", "/v1/sessions"), "{routes:#?}");
    assert!(has("get", "/openapi.json") && has("get", "/healthz"), "{routes:#?}");
    assert!(has("delete", "/v1/sessions/{id}/participants/me"), "{routes:#?}");
    assert!(has("put", "/v1/profiles/{user_id}"), "matching routes should be scanned: {routes:#?}");
    // Forms the scanner must get right: comments, raw strings and closures with brackets in them.
    let synthetic = r##"
        // .route("/commented", get(nothing))
        let _ = r#"not code: .route("/in-a-raw-string", get(x))"#;
        Router::new()
            .route("/a/{id}", get(|| async { json!({"k": [1, 2]}) }).post(handler::make))
            /* .route("/block-comment", put(x)) */
            .route("/b", axum::routing::delete(remove))
    "##;
    let parsed = Scanner::routes("synthetic", synthetic, true);
    let got: Vec<(String, Vec<String>)> = parsed.into_iter().map(|r| (r.path, r.methods)).collect();
    assert_eq!(
        got,
        vec![
            ("/a/{id}".to_string(), vec!["get".to_string(), "post".to_string()]),
            ("/b".to_string(), vec!["delete".to_string()])
        ]
    );
    let refused =
        std::panic::catch_unwind(|| Scanner::routes("synthetic", r#"Router::new().route("/x", any(h))"#, true));
    assert!(refused.is_err(), "an unknown method router must fail the scan");
    assert_eq!(openapi_path("/a/:id/b/{x}/*rest"), "/a/{id}/b/{x}/{rest}");
    assert_eq!(openapi_path("/files/{*path}"), "/files/{path}");
}

#[test]
fn no_other_source_file_registers_routes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if ROUTER_SOURCES.iter().any(|(f, _)| *f == rel) {
                    continue;
                }
                let text: &'static str = Box::leak(std::fs::read_to_string(&path).unwrap().into_boxed_str());
                let file: &'static str = Box::leak(rel.into_boxed_str());
                if let Some(r) = Scanner::routes(file, text, false).first() {
                    panic!("{file}:{} registers routes: add it to ROUTER_SOURCES in tests/openapi.rs and document them in src/openapi.rs", r.line);
                }
            }
        }
    }
}

#[test]
fn it_is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Tether");
    assert!(doc["info"]["version"].is_string());
}

#[test]
fn every_registered_route_is_documented() {
    let doc = document();
    let ops = operations(&doc);
    let mut missing = Vec::new();
    for r in registered_routes() {
        let path = openapi_path(&r.path);
        for m in &r.methods {
            if !ops.contains_key(&(m.clone(), path.clone())) {
                missing.push(format!("{} {path}  ({}:{})", m.to_uppercase(), r.file, r.line));
            }
        }
    }
    assert!(missing.is_empty(), "routes missing from src/openapi.rs:\n{}", missing.join("\n"));
}

#[test]
fn every_documented_operation_is_registered() {
    let doc = document();
    let registered: BTreeSet<(String, String)> = registered_routes()
        .into_iter()
        .flat_map(|r| {
            let path = openapi_path(&r.path);
            r.methods.into_iter().map(move |m| (m, path.clone()))
        })
        .collect();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let mut extra = Vec::new();
    for (method, path) in operations(&doc).keys() {
        if registered.contains(&(method.clone(), path.clone())) {
            continue;
        }
        match FALLBACK_PAGES.iter().find(|(p, _)| p == path) {
            Some((_, file)) if method == "get" => {
                assert!(
                    web.join(file).is_file(),
                    "{path} is documented as served from web/{file}, which does not exist"
                );
            }
            _ => extra.push(format!("{} {path}", method.to_uppercase())),
        }
    }
    assert!(extra.is_empty(), "documented but not registered in the router:\n{}", extra.join("\n"));
}

#[test]
fn every_operation_documents_its_errors_as_problem_json() {
    let doc = document();
    let mut bad = Vec::new();
    for ((method, path), op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s.starts_with('1') || s.starts_with('3')),
            "{method} {path}: no success response"
        );
        let problem_4xx: Vec<&String> = responses
            .iter()
            .filter(|(status, _)| status.starts_with('4'))
            .filter(|(_, r)| {
                let schema = &resolve(&doc, r)["content"]["application/problem+json"]["schema"];
                schema["$ref"] == "#/components/schemas/Problem"
            })
            .map(|(s, _)| s)
            .collect();
        if problem_4xx.is_empty() {
            bad.push(format!("{} {path}: no 4xx application/problem+json response", method.to_uppercase()));
        } else if path.starts_with("/v1/") && problem_4xx.iter().all(|s| *s == "405") {
            bad.push(format!("{} {path}: no 4xx problem response besides 405", method.to_uppercase()));
        }
        // Every error response that has a JSON body uses the Problem schema.
        for (status, r) in responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')) {
            if let Some(content) = resolve(&doc, r)["content"].as_object() {
                if content.contains_key("application/json") {
                    bad.push(format!(
                        "{} {path}: {status} is application/json, not application/problem+json",
                        method.to_uppercase()
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn path_parameters_and_security_are_declared() {
    let doc = document();
    let mut bad = Vec::new();
    for ((method, path), op) in operations(&doc) {
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let templated: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        if declared != templated {
            bad.push(format!("{method} {path}: path parameters {declared:?}, template {templated:?}"));
        }
        if path.starts_with("/v1/") {
            let bearer = op["security"].as_array().is_some_and(|reqs| reqs.iter().any(|r| r.get("bearer").is_some()));
            let exempt = UNAUTHENTICATED_V1.contains(&(method.as_str(), path.as_str()));
            if bearer == exempt {
                bad.push(format!("{method} {path}: bearer security {} expected", if exempt { "not" } else { "is" }));
            }
            if !exempt && !op["responses"].as_object().unwrap().contains_key("401") {
                bad.push(format!("{method} {path}: authenticated but no 401"));
            }
        }
    }
    for scheme in ["bearer", "token_query"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "security scheme {scheme} missing");
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_reference_resolves_and_components_are_complete() {
    let doc = document();
    fn walk(doc: &Value, v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{at}: external $ref {r}"));
                    assert!(doc.pointer(pointer).is_some(), "{at}: dangling $ref {r}");
                }
                for (k, child) in map {
                    walk(doc, child, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, child)| walk(doc, child, &format!("{at}/{i}")))
            }
            _ => {}
        }
    }
    walk(&doc, &doc, "#");
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Problem",
        "Session",
        "Participant",
        "EndReason",
        "Status",
        "CreateSession",
        "CreatedSession",
        "SessionList",
        "Invite",
        "InviteJoin",
        "InviteJoined",
        "Event",
        "EventType",
        "WsClientMessage",
        "WsReply",
        "HealthReport",
        "CleanupPreview",
        "CleanupResult",
        "Kinds",
        "KindInfo",
        "Profile",
        "ProfileInput",
        "MatchingStart",
        "MatchingStarted",
        "NextMatch",
        "Match",
        "MutualMatch",
        "CallJoin",
        "Signal",
        "ReceivedSignal",
        "SignalList",
        "WebrtcSetup",
        "Decision",
        "DecisionResult",
        "Matches",
        "Block",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    let problem = &schemas["Problem"]["properties"];
    for member in ["type", "title", "status", "detail", "field", "blocking_session", "end_reason"] {
        assert!(problem[member].is_object(), "Problem.{member} missing");
    }
}

/// The enums mirror the engine's vocabularies exactly.
#[test]
fn enums_match_the_engine() {
    let doc = document();
    let strings = |name: &str| -> Vec<String> {
        doc["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not a string enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let engine_reasons: Vec<String> = tether_engine::EndReason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(strings("EndReason"), engine_reasons);
    let engine_statuses: Vec<String> = tether_engine::Status::ALL.iter().map(|s| s.as_str().to_string()).collect();
    assert_eq!(strings("Status"), engine_statuses);
    let events = strings("EventType");
    for t in [
        "session.started",
        "session.activated",
        "session.completing",
        "session.ended",
        "participant.joined",
        "participant.left",
        "match.found",
        "match.mutual",
        "call.signal",
    ] {
        assert!(events.iter().any(|e| e == t), "EventType lacks {t}");
    }
    // Every event type the server publishes from its own sources appears in the enum.
    for (file, text) in [
        ("src/matching/mod.rs", include_str!("../src/matching/mod.rs")),
        ("src/matching/http.rs", include_str!("../src/matching/http.rs")),
    ] {
        for piece in text.split("Draft::new(\"").skip(1) {
            let t = piece.split('"').next().unwrap();
            assert!(events.iter().any(|e| e == t), "{file} publishes {t}, which EventType lacks");
        }
    }
}

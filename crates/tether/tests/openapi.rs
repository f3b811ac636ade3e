//! Checks of the OpenAPI document the server serves at `/openapi.json`.
//!
//! The document is generated from the handlers' `#[utoipa::path]` attributes
//! and the `wire` types, and the router is built from the same registrations
//! (`utoipa-axum`), so a route cannot exist undocumented. These tests check
//! what generation does not guarantee: every documented operation answers on
//! the real router, errors are problem+json, security and path parameters are
//! declared, references resolve, optional bodies are not `null`-able, the
//! vocabularies equal the engine's, every event type has its payload schema,
//! and (when `openapi-spec-validator` is installed) an outside validator
//! accepts the document.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use tether::app::{App, Settings};
use tower::ServiceExt;

/// `/v1` operations that take no `Authorization` header.
const UNAUTHENTICATED_V1: &[(&str, &str)] = &[
    ("post", "/v1/sessions/{id}/beacon"), // token in the body
    ("post", "/v1/invites/{token}/join"), // the invitation is the credential
    ("post", "/v1/demo/token"),           // demo mode only
];

/// Documented pages of the embedded `web/` tree, with the file each serves.
const PAGES: &[(&str, &str)] =
    &[("/admin", "admin/index.html"), ("/demo", "demo/index.html"), ("/sdk/tether.js", "sdk/tether.js")];

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    tether::openapi::document()
}

/// (method, path) → operation object.
fn operations(doc: &Value) -> std::collections::BTreeMap<(String, String), Value> {
    let mut ops = std::collections::BTreeMap::new();
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

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Every documented operation is served by the real router: none falls
/// through to the static-file fallback ("endpoint not found") or answers 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let settings = Settings {
        store: "memory".into(),
        jwt_secret: Some("a-secret-for-the-openapi-routing-test".into()),
        api_keys: vec!["routing-test-key".into()],
        demo: true,
        kinds: tether_engine::Kinds::default(),
        limits: Default::default(),
        webhooks: Vec::new(),
        cluster: Default::default(),
        cors: Default::default(),
    };
    let app = App::build(settings, Arc::new(tether::clock::SystemClock)).expect("the app builds");
    let router = tether::http::router(app);
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let doc = document();
    let mut unrouted = Vec::new();
    for (method, path) in operations(&doc).keys() {
        if path == "/v1/events" || path == "/v1/ws" {
            continue; // endless streams; their routing is covered by the API tests
        }
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "no-such-thing" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let req = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&concrete)
            .header("authorization", "Bearer routing-test-key")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        if status == 405 || text.contains("endpoint not found") {
            unrouted.push(format!("{} {path}: {status} {text}", method.to_uppercase()));
        }
        if let Some((_, file)) = PAGES.iter().find(|(p, _)| p == path) {
            assert!(web.join(file).is_file(), "{path} is documented as served from web/{file}, which does not exist");
            assert_eq!(status, 200, "{path}: {text}");
        }
    }
    assert!(unrouted.is_empty(), "documented but not routed:\n{}", unrouted.join("\n"));
}

#[test]
fn it_is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Tether");
    assert!(doc["info"]["version"].is_string());
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
        "StreamGap",
        "WsError",
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

/// The vocabularies are the engine's enums, exactly (the SDK test reads these three names).
#[test]
fn enums_match_the_engine() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let engine_reasons: Vec<String> = tether_engine::EndReason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(strings(&schemas["EndReason"]["enum"]), engine_reasons);
    let engine_statuses: Vec<String> = tether_engine::Status::ALL.iter().map(|s| s.as_str().to_string()).collect();
    assert_eq!(strings(&schemas["Status"]["enum"]), engine_statuses);
    let engine_events: Vec<String> = tether_engine::EventType::ALL.iter().map(|t| t.as_str().to_string()).collect();
    assert_eq!(strings(&schemas["EventType"]["enum"]), engine_events);
    for name in ["EndReason", "Status", "EventType"] {
        assert_eq!(schemas[name]["type"], "string", "{name} is a string enum");
    }
}

/// `Event` is one variant per event type, each a payload schema with a
/// `type` naming it; `stream.gap` carries `from` and `to` and no session.
#[test]
fn every_event_type_has_its_payload_schema() {
    let doc = document();
    let event = &doc["components"]["schemas"]["Event"];
    let variants = event["oneOf"].as_array().expect("Event is a oneOf");
    let mut seen = Vec::new();
    for v in variants {
        let parts = v["allOf"].as_array().unwrap_or_else(|| panic!("variant {v} is not ref + tag"));
        let tag = parts.iter().find_map(|p| p["properties"]["type"]["enum"].as_array()).expect("a type tag");
        assert_eq!(tag.len(), 1, "{v}");
        let payload = parts.iter().find(|p| p.get("$ref").is_some()).expect("a payload schema");
        let payload = resolve(&doc, payload);
        let t = tag[0].as_str().unwrap().to_string();
        let props = payload["properties"].as_object().unwrap_or_else(|| panic!("{t}: no properties"));
        if t == "stream.gap" {
            let required: BTreeSet<String> = strings(&payload["required"]).into_iter().collect();
            assert_eq!(required, ["from", "to"].map(String::from).into(), "stream.gap: {payload}");
            assert!(!props.contains_key("session"), "stream.gap carries no session");
        } else {
            for member in ["id", "at", "session"] {
                assert!(props.contains_key(member), "{t} lacks {member}");
            }
        }
        seen.push(t);
    }
    let engine: Vec<String> = tether_engine::EventType::ALL.iter().map(|t| t.as_str().to_string()).collect();
    assert_eq!(seen, engine, "one Event variant per EventType, in the engine's order");
    // The typed enum and the engine agree variant by variant.
    let gap: tether::wire::events::Event = serde_json::from_str(&tether::wire::events::Event::gap_json(3, 9)).unwrap();
    assert_eq!(gap.event_type(), tether_engine::EventType::StreamGap);
    assert_eq!(serde_json::to_value(&gap).unwrap(), serde_json::json!({"type": "stream.gap", "from": 3, "to": 9}));
}

/// The server refuses a JSON `null` body (400), so no request body may be
/// described as accepting one; optional bodies are simply not required.
#[test]
fn request_bodies_are_never_null() {
    let doc = document();
    let mut bad = Vec::new();
    let mut optional = Vec::new();
    for ((method, path), op) in operations(&doc) {
        let Some(body) = op.get("requestBody") else { continue };
        for (media, content) in body["content"].as_object().unwrap() {
            let schema = resolve(&doc, &content["schema"]);
            let text = content["schema"].to_string();
            if text.contains("\"null\"") && (schema.get("oneOf").is_some() || schema.get("anyOf").is_some()) {
                bad.push(format!("{method} {path} {media}: {text}"));
            }
            if let Some(t) = schema.get("type") {
                assert!(!t.is_array() || !t.to_string().contains("null"), "{method} {path}: nullable body {t}");
            }
        }
        if body.get("required") != Some(&Value::Bool(true)) {
            optional.push(format!("{method} {path}"));
        }
    }
    assert!(bad.is_empty(), "bodies described as nullable:\n{}", bad.join("\n"));
    // The bodies that may be empty are exactly these.
    let expected = [
        "post /v1/calls/{id}/end",
        "post /v1/calls/{id}/join",
        "post /v1/invites/{token}/join",
        "post /v1/sessions/{id}/end",
        "post /v1/sessions/{id}/invites",
        "post /v1/sessions/{id}/participants",
        "post /v1/sessions/{id}/revive",
    ];
    assert_eq!(optional, expected, "optional request bodies");
}

/// Every response that has a body says what it is.
#[test]
fn every_response_body_has_a_schema() {
    let doc = document();
    let mut bad = Vec::new();
    for ((method, path), op) in operations(&doc) {
        for (status, r) in op["responses"].as_object().unwrap() {
            let r = resolve(&doc, r);
            for (media, content) in r["content"].as_object().into_iter().flatten() {
                if content.get("schema").is_none() {
                    bad.push(format!("{method} {path} {status} {media}"));
                }
            }
            if status.starts_with('2') && status != "204" && r.get("content").is_none() {
                bad.push(format!("{method} {path} {status}: no content"));
            }
        }
    }
    assert!(bad.is_empty(), "responses without a schema:\n{}", bad.join("\n"));
}

/// The schemas state the same limits the handlers enforce.
#[test]
fn name_limits_match_the_server() {
    let doc = document();
    for schema in ["CreateSession", "JoinSession", "InviteJoin"] {
        assert_eq!(
            doc["components"]["schemas"][schema]["properties"]["name"]["maxLength"],
            tether::wire::NAME_MAX_CHARS,
            "{schema}.name"
        );
    }
}

/// An outside validator (`openapi-spec-validator`, `pip install openapi-spec-validator`)
/// accepts the document. `scripts/test-all` installs the validator; without it
/// this test fails saying what to install (a check that skips itself proves nothing).
#[test]
fn an_outside_validator_accepts_the_document() {
    let has_validator = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(has_validator, "python3 -m openapi_spec_validator is not installed: pip install openapi-spec-validator");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, tether::openapi::document_json()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Client generators name their functions after `operationId`: each is unique,
/// snake_case and says what it does (not the handler's short name).
#[test]
fn operation_ids_are_unique_and_descriptive() {
    let doc = document();
    let mut seen = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(id.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{method} {path}: {id}");
        assert!(seen.insert(id.to_string()), "{method} {path}: operationId {id} is used twice");
    }
    for id in ["create_session", "list_sessions", "events_sse", "matching_start", "send_signal", "admin_health"] {
        assert!(seen.contains(id), "operationId {id} is stable");
    }
}

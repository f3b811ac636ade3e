//! The server's own `/openapi.json` as a test oracle: every answer the
//! harness reads (status, content type and JSON body) is checked against the
//! operation the document describes for that method and path.
//!
//! Events (SSE `data:` and WebSocket event frames) are checked against the
//! document's `Event` schema as the test takes them.
//!
//! Strict on purpose: a path or method the document does not describe, a
//! status it does not list for the operation, a content type it does not
//! offer, a body where it documents none, and a body that fails the response
//! schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1, with `$ref`s to
//! `#/components/…` resolved inside the document and formats such as
//! `date-time` asserted) are all mismatches.
//!
//! `TETHER_TEST_OPENAPI` chooses what a mismatch does: `enforce` (the
//! default) fails the test, `report` prints it to stderr prefixed with
//! `openapi mismatch:` and goes on (run with `--nocapture` to collect them),
//! `off` skips the check.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// What a mismatch with the document does (`TETHER_TEST_OPENAPI`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContractMode {
    Enforce,
    Report,
    Off,
}

impl ContractMode {
    pub fn from_env() -> ContractMode {
        match std::env::var("TETHER_TEST_OPENAPI").as_deref() {
            Err(_) | Ok("") | Ok("enforce") => ContractMode::Enforce,
            Ok("report") => ContractMode::Report,
            Ok("off") => ContractMode::Off,
            Ok(other) => panic!("TETHER_TEST_OPENAPI={other:?}: expected enforce, report or off"),
        }
    }
}

/// One answer as the contract sees it.
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub text: &'a str,
    pub body: &'a Value,
}

/// One `paths.{template}.{method}` of the document.
struct Operation {
    method: String,
    template: String,
    /// `None` for a `{parameter}` segment.
    segments: Vec<Option<String>>,
    responses: Value,
}

impl Operation {
    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(want, got)| match want {
                Some(literal) => literal == got,
                None => !got.is_empty(),
            })
    }

    fn literal_segments(&self) -> usize {
        self.segments.iter().filter(|s| s.is_some()).count()
    }
}

/// The parsed document plus the response validators compiled so far.
pub struct Contract {
    doc: Value,
    operations: Vec<Operation>,
    /// Keyed by the JSON pointer of the schema inside the document.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    pub mode: ContractMode,
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The document is the same for every server of one build, so it is parsed
/// (and its validators compiled) once per test process.
static SHARED: OnceLock<Arc<Contract>> = OnceLock::new();

impl Contract {
    /// The process-wide contract, from the text of a server's `/openapi.json`
    /// (used only by the first caller; later callers get the same one).
    pub fn shared(document_text: &str) -> Arc<Contract> {
        SHARED
            .get_or_init(|| {
                let doc: Value = serde_json::from_str(document_text)
                    .unwrap_or_else(|e| panic!("/openapi.json is not JSON ({e}): {document_text}"));
                Arc::new(Contract::new(doc, ContractMode::from_env()).unwrap_or_else(|e| panic!("/openapi.json: {e}")))
            })
            .clone()
    }

    pub fn new(doc: Value, mode: ContractMode) -> Result<Contract, String> {
        let version = doc["openapi"].as_str().unwrap_or("");
        if !version.starts_with("3.1") {
            return Err(format!("openapi {version:?}: only 3.1 documents (JSON Schema 2020-12) are understood"));
        }
        let paths = doc["paths"].as_object().ok_or("no paths object")?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let segments = template
                .split('/')
                .map(|s| if s.starts_with('{') && s.ends_with('}') { None } else { Some(s.to_string()) })
                .collect();
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    operations.push(Operation {
                        method: method.to_string(),
                        template: template.clone(),
                        segments: Vec::clone(&segments),
                        responses: op["responses"].clone(),
                    });
                }
            }
        }
        Ok(Contract { doc, operations, validators: Mutex::new(HashMap::new()), mode })
    }

    /// Checks an answer according to [`ContractMode`].
    #[track_caller]
    pub fn check(&self, method: &str, path: &str, answer: &Answer) {
        if self.mode == ContractMode::Off {
            return;
        }
        if let Err(mismatch) = self.verify(method, path, answer) {
            let report = format!("{method} {path} answered {}: {mismatch}; body: {}", answer.status, answer.text);
            match self.mode {
                ContractMode::Enforce => panic!("the answer disagrees with /openapi.json: {report}"),
                ContractMode::Report => eprintln!("openapi mismatch: {report}"),
                ContractMode::Off => {}
            }
        }
    }

    /// The mismatch between an answer and the document, if any.
    pub fn verify(&self, method: &str, path: &str, answer: &Answer) -> Result<(), String> {
        let method = method.to_ascii_lowercase();
        let route = path.split(['?', '#']).next().unwrap_or(path);
        let segments: Vec<&str> = route.split('/').collect();
        let op = self
            .operations
            .iter()
            .filter(|op| op.method == method && op.matches(&segments))
            .max_by_key(|op| op.literal_segments());
        let Some(op) = op else {
            // A route the document does not describe may only be refused as
            // one that does not exist (the problem+json shape is checked elsewhere).
            let route_exists = self.operations.iter().any(|op| op.matches(&segments));
            return match (answer.status, route_exists) {
                (404, false) | (405, true) => Ok(()),
                _ => Err(format!("no operation {} {route} in the document", method.to_uppercase())),
            };
        };
        let where_ = format!("{} {}", method.to_uppercase(), op.template);

        let status = answer.status.to_string();
        let range = format!("{}XX", &status[..1]);
        let (key, response) = [status.as_str(), range.as_str(), "default"]
            .into_iter()
            .find_map(|k| op.responses.get(k).map(|r| (k, r)))
            .ok_or_else(|| {
                let listed: Vec<&String> = op.responses.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                format!("{where_} documents no {status} answer (documents {listed:?})")
            })?;
        let response = self.resolve(response)?;
        let response_pointer = format!("/paths/{}/{method}/responses/{key}", escape(&op.template));

        let essence = answer.content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            return if answer.text.is_empty() {
                Ok(())
            } else {
                Err(format!("{where_} {key} documents no body, but one came ({essence})"))
            };
        };
        let media = [essence.clone(), format!("{}/*", essence.split('/').next().unwrap_or("")), "*/*".to_string()]
            .into_iter()
            .find(|m| content.contains_key(m))
            .ok_or_else(|| {
                let listed: Vec<&String> = content.keys().collect();
                format!("{where_} {key} answered content-type {essence:?}, the document offers {listed:?}")
            })?;
        if !essence.ends_with("json") {
            return Ok(());
        }
        let Some(schema) = content[&media].get("schema") else {
            return Ok(());
        };
        // A schema reached through `components/responses` lives there, not under the path.
        let pointer = match op.responses[key].get("$ref").and_then(Value::as_str) {
            Some(r) => format!("{}/content/{}/schema", r.trim_start_matches('#'), escape(&media)),
            None => format!("{response_pointer}/content/{}/schema", escape(&media)),
        };
        let validator = self.validator(&pointer, schema)?;
        let errors: Vec<String> = validator
            .iter_errors(answer.body)
            .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{where_} {key} body fails the schema: {}", errors.join("; ")))
        }
    }

    /// Checks one event (an SSE `data:` or a WebSocket event frame) according to [`ContractMode`].
    #[track_caller]
    pub fn check_event(&self, transport: &str, data: &Value) {
        if self.mode == ContractMode::Off {
            return;
        }
        if let Err(mismatch) = self.verify_event(data) {
            let report = format!("{transport} event {mismatch}; event: {data}");
            match self.mode {
                ContractMode::Enforce => panic!("the event disagrees with /openapi.json: {report}"),
                ContractMode::Report => eprintln!("openapi mismatch: {report}"),
                ContractMode::Off => {}
            }
        }
    }

    /// The mismatch between an event and the document's `Event` schema (or
    /// `LeanEvent`, for an event without `session` but with `session_id`), if any.
    pub fn verify_event(&self, data: &Value) -> Result<(), String> {
        let lean = data.get("session").is_none() && data.get("session_id").is_some();
        let pointer = if lean { "/components/schemas/LeanEvent" } else { "/components/schemas/Event" };
        let schema = self.doc.pointer(pointer).ok_or_else(|| format!("the document has no {pointer}"))?;
        let errors: Vec<String> = self
            .validator(pointer, schema)?
            .iter_errors(data)
            .map(|e| format!("at {:?}: {e}", e.instance_path().to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("fails the Event schema: {}", errors.join("; ")))
        }
    }

    /// Follows a `$ref` to `#/components/responses/…` (a response object may be one).
    fn resolve<'a>(&'a self, response: &'a Value) -> Result<&'a Value, String> {
        match response.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.trim_start_matches('#'))
                .ok_or_else(|| format!("the document's $ref {r:?} points nowhere")),
            None => Ok(response),
        }
    }

    /// The compiled validator of the schema at `pointer`. The schema is
    /// compiled with the document's `components` beside it, so its `$ref`s
    /// to `#/components/schemas/…` resolve as they do in the document.
    fn validator(&self, pointer: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.lock().unwrap().get(pointer) {
            return Ok(v.clone());
        }
        let mut root = serde_json::Map::new();
        root.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
        root.insert("components".into(), self.doc["components"].clone());
        root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .map_err(|e| format!("the document's schema at {pointer} does not compile: {e}"))?;
        let validator = Arc::new(validator);
        self.validators.lock().unwrap().insert(pointer.to_string(), validator.clone());
        Ok(validator)
    }
}

/// A JSON-pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

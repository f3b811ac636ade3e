//! The harness checks itself: the `/openapi.json` check names each kind of
//! drift, and the in-process server's manual clock fires a deadline exactly
//! when time reaches it and not before.

use crate::helpers::contract::{Answer, Contract, ContractMode};
use crate::helpers::*;
use serde_json::{json, Value};

fn contract() -> Contract {
    let doc = json!({
        "openapi": "3.1.0",
        "paths": {
            "/v1/things/{id}": {"get": {"responses": {
                "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "4XX": {"$ref": "#/components/responses/Problem"}
            }}},
            "/v1/things/mine": {"get": {"responses": {"204": {"description": "nothing"}}}}
        },
        "components": {
            "schemas": {
                "Thing": {"type": "object", "required": ["id", "at"],
                          "properties": {"id": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
                "Problem": {"type": "object", "required": ["status"], "properties": {"status": {"type": "integer"}}}
            },
            "responses": {"Problem": {"description": "a problem", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}}
        }
    });
    Contract::new(doc, ContractMode::Enforce).unwrap()
}

fn answer<'a>(status: u16, content_type: &'a str, text: &'a str, body: &'a Value) -> Answer<'a> {
    Answer { status, content_type, text, body }
}

#[test]
fn a_conforming_answer_passes_and_each_kind_of_drift_is_named() {
    let c = contract();
    let good = json!({"id": "a", "at": "2026-01-01T00:00:00Z"});
    assert_eq!(c.verify("GET", "/v1/things/a?x=1", &answer(200, "application/json", "{..}", &good)), Ok(()));
    let problem = json!({"status": 404});
    assert_eq!(c.verify("GET", "/v1/things/a", &answer(404, "application/problem+json", "{..}", &problem)), Ok(()));
    // Routes the document does not describe may only be refused as such.
    assert_eq!(c.verify("GET", "/v1/nothing", &answer(404, "application/problem+json", "{..}", &problem)), Ok(()));
    assert_eq!(c.verify("POST", "/v1/things/a", &answer(405, "application/problem+json", "{..}", &problem)), Ok(()));
    // The literal template wins over the parameter one.
    assert_eq!(c.verify("GET", "/v1/things/mine", &answer(204, "", "", &Value::Null)), Ok(()));

    let missing = json!({"id": "a"});
    let bad_date = json!({"id": "a", "at": "yesterday"});
    let cases = [
        (c.verify("GET", "/v1/things/a", &answer(200, "application/json", "{..}", &missing)), "\"at\""),
        (c.verify("GET", "/v1/things/a", &answer(200, "application/json", "{..}", &bad_date)), "date-time"),
        (c.verify("GET", "/v1/things/a", &answer(200, "text/plain", "x", &Value::Null)), "text/plain"),
        (c.verify("GET", "/v1/things/a", &answer(500, "application/json", "{}", &good)), "no 500"),
        (c.verify("POST", "/v1/things/a", &answer(200, "application/json", "{}", &good)), "no operation"),
        (c.verify("GET", "/v1/nothing", &answer(200, "application/json", "{}", &good)), "no operation"),
        (c.verify("POST", "/v1/things/a", &answer(404, "application/problem+json", "{}", &problem)), "no operation"),
        (c.verify("GET", "/v1/things/mine", &answer(204, "text/plain", "x", &Value::Null)), "no body"),
    ];
    for (result, mention) in cases {
        let err = result.expect_err(mention);
        assert!(err.contains(mention), "{err:?} should mention {mention}");
    }
}

/// The in-process server answers and checks like the binary, and its deadline
/// timer is woken by the manual clock: an idle session ends at its deadline.
#[tokio::test]
async fn the_manual_clock_drives_the_in_process_deadline_timer() {
    let app = TestApp::in_process().await;
    let mut events = app.sse(API_KEY, "?kind=late", None).await;
    let start = app.now();
    let s = app.start_for("tim", "late").await; // idle 400ms
    let id = id_of(&s);
    assert_eq!(ts(&s["expires_at"]), start + 400, "{s}");
    app.advance(ms(399));
    // An event published after the deadline would overtake this one: nothing fired yet.
    app.post_empty(&format!("/v1/sessions/{}/end", id_of(&app.start_for("tom", "late").await)), Some(API_KEY))
        .await
        .expect(200);
    let first_end = events.wait_for(ms(2000), "an end", |e| e.event == "session.ended").await;
    assert_ne!(first_end.session_id(), id, "tim ended before its deadline");
    app.advance(ms(1));
    let e = events.wait_event(ms(2000), "session.ended", &id).await;
    assert_eq!(e.reason(), "idle_timeout");
    assert_eq!(ts(&e.data["session"]["ended_at"]), start + 400);
    assert_eq!(e.received_at, start + 400, "receipt is stamped with server time");
}

/// The check is wired to the server's real document: a real answer and a
/// real event pass, the same doctored fail, naming the field.
#[tokio::test]
async fn the_real_document_refuses_a_doctored_answer() {
    let app = TestApp::in_process().await;
    let mut events = app.sse(API_KEY, "", None).await;
    let s = app.start_for("dot", "plain").await;
    let path = format!("/v1/sessions/{}", id_of(&s));
    let r = app.get(&path, Some(API_KEY)).await; // checked, and passes
    r.expect(200);
    for (field, wrong) in [("created_at", json!("yesterday")), ("status", json!(42))] {
        let mut doctored = r.body.clone();
        doctored[field] = wrong;
        let answer = Answer { status: 200, content_type: &r.content_type, text: "(doctored)", body: &doctored };
        let err = app.contract().verify("GET", &path, &answer).expect_err(field);
        assert!(err.contains(field), "{err}");
    }
    let started = events.wait_event(ms(2000), "session.started", &id_of(&s)).await; // checked, and passes
    app.contract().verify_event(&started.data).expect("a real event passes");
    let mut doctored = started.data.clone();
    doctored["type"] = json!("session.exploded");
    let err = app.contract().verify_event(&doctored).expect_err("an unknown event type");
    assert!(err.contains("type"), "{err}");
    let answer = Answer { status: 201, content_type: &r.content_type, text: "(doctored)", body: &r.body };
    let err = app.contract().verify("GET", &path, &answer).expect_err("an undocumented status");
    assert!(err.contains("201"), "{err}");
}

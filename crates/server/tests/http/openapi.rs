//! `GET /api/openapi.json`: a complete OpenAPI 3 document whose references all resolve.
//! (`scripts/schemathesis.sh` also validates it with openapi-spec-validator and fuzzes it.)

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::TestServer;

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => refs.push(target),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

pub async fn openapi_document(s: &TestServer) {
    let (status, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|version| version.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "forgeai");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path} documents no success"
            );
            // The event endpoint authenticates with the key in its path, sign-in with the token
            // in its body; neither needs a bearer token, nor does signing out.
            if path.starts_with("/e/") || path == "/api/session" {
                assert_eq!(operation["security"], serde_json::json!([{}]), "{method} {path}");
            } else {
                assert!(responses.contains_key("401"), "{method} {path} does not document 401");
            }
        }
    }
    let expected: BTreeSet<String> = [
        "GET /api/projects",
        "POST /api/projects",
        "GET /api/projects/{id}",
        "DELETE /api/projects/{id}",
        "GET /api/projects/{id}/runs",
        "GET /api/projects/{id}/realtime",
        "GET /api/messages",
        "POST /api/messages",
        "PATCH /api/fragments/{id}",
        "GET /api/fragments/{id}",
        "POST /api/uploads",
        "GET /api/runs/{id}",
        "POST /api/runs/{id}/cancel",
        "GET /api/projects/{id}/versions",
        "POST /api/projects/{id}/versions",
        "GET /api/projects/{id}/versions/{a}/diff/{b}",
        "POST /api/projects/{id}/versions/{v}/restore",
        "GET /api/projects/{id}/export.zip",
        "POST /e/{eventKey}",
        "POST /api/session",
        "DELETE /api/session",
        "PATCH /api/projects/{id}",
        "GET /api/projects/{id}/preview",
        "GET /api/tokens",
        "DELETE /api/tokens/{id}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(operations, expected);
    // Projects say whether their preview is public; token listings never carry a secret.
    let project = &doc["components"]["schemas"]["Project"];
    assert_eq!(project["properties"]["public"]["type"], "boolean", "{project}");
    let token = &doc["components"]["schemas"]["TokenInfo"]["properties"];
    let fields: BTreeSet<&str> = token.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        BTreeSet::from(["createdAt", "expiresAt", "id", "kind", "lastUsedAt"]),
        "{token}"
    );
    let view = doc["components"]["schemas"]["TokenView"].to_string();
    assert!(
        view.contains("#/components/schemas/TokenInfo") && view.contains("\"current\""),
        "{view}"
    );

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {target}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved reference {target}");
    }
}

//! The OpenAPI document describes the router: every endpoint, and the one error shape.

use serde_json::Value;

/// Every (method, path) the router in `src/api/` serves. Adding a route means adding it here
/// and to the `paths(...)` of the document.
const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("get", "/v1/workflows"),
    ("get", "/v1/workflows/{workflow_id}"),
    ("put", "/v1/workflows/{workflow_id}"),
    ("delete", "/v1/workflows/{workflow_id}"),
    ("get", "/v1/workflows/{workflow_id}/secret"),
    ("post", "/v1/workflows/{workflow_id}/secret/rotate"),
    ("post", "/v1/workflows/{workflow_id}/events"),
    ("get", "/v1/hooks"),
    ("get", "/v1/hooks/{hook_id}"),
    ("patch", "/v1/hooks/{hook_id}"),
    ("post", "/v1/hooks/{hook_id}/enable"),
    ("post", "/v1/hooks/{hook_id}/retry"),
    ("post", "/v1/hooks/{hook_id}/recover"),
    ("get", "/v1/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("post", "/v1/deliveries/{id}/retry"),
];

/// `/healthz` answers 503 with its own body (`HealthOut`: status and reason), by design.
const NOT_ERROR_BODY: &[(&str, &str, &str)] = &[("get", "/healthz", "503")];

fn document() -> Value {
    serde_json::from_str(&linq_hooks_service::openapi()).expect("the document is JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            all.push((method.clone(), path.clone(), operation));
        }
    }
    all
}

#[test]
fn is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn describes_every_endpoint_of_the_router_and_no_other() {
    let doc = document();
    let mut documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[test]
fn every_path_parameter_is_declared() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let declared: Vec<&str> = operation["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().expect("a name"))
                    .collect()
            })
            .unwrap_or_default();
        let in_path: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_path, "{method} {path}");
    }
}

#[test]
fn every_error_answer_is_an_error_body() {
    let doc = document();
    let error_body = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let mut errors = 0;
    for (method, path, operation) in operations(&doc) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            if NOT_ERROR_BODY.contains(&(method.as_str(), path.as_str(), status.as_str())) {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"];
            assert_eq!(schema, &error_body, "{method} {path} {status}");
            errors += 1;
        }
    }
    assert!(errors > ENDPOINTS.len(), "error answers are documented");
}

#[test]
fn every_endpoint_but_healthz_needs_the_token_and_says_401() {
    let doc = document();
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    for (method, path, operation) in operations(&doc) {
        let open = operation["security"] == serde_json::json!([{}]);
        assert_eq!(open, path == "/healthz", "{method} {path}: security");
        assert_eq!(
            operation["responses"].get("401").is_some(),
            !open,
            "{method} {path}: 401"
        );
    }
}

//! The OpenAPI document (`GET /api/v1/openapi.json`) against the running API: it is
//! public JSON of version 3.1 whose references all resolve; every documented operation
//! is routed (and no undocumented method is); every request a sample sends validates
//! against its documented body schema, and every answer — success or error — has a
//! documented status and validates against the schema documented for it; and the scope
//! an operation names is the one it requires.

use crate::{ADMIN, Cp};
use http::{Method, StatusCode as S};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tollgate_core::{TeamId, Timestamp};
use tollgate_metering::LedgerSink;
use tollgate_testkit::ledger::spend_entry;

/// One documented operation.
#[derive(Debug, Clone)]
struct Op {
    method: Method,
    /// The templated path, `/api/v1/keys/{id}`.
    path: String,
    doc: Value,
}

impl Op {
    fn scope(&self) -> Option<&str> {
        self.doc["x-required-scope"].as_str()
    }

    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

async fn document(cp: &Cp) -> Value {
    let r = cp.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, S::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/json");
    r.json()
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            ops.push(Op { method, path: path.clone(), doc: op.clone() });
        }
    }
    ops
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|c| refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
        _ => {}
    }
}

/// Follows a response `$ref` to the response object.
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let r = op["responses"].get(status.to_string())?;
    Some(match r["$ref"].as_str() {
        Some(target) => doc.pointer(target.trim_start_matches('#')).unwrap(),
        None => r,
    })
}

/// Validates `instance` against `schema`, whose references point into `doc`.
fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let mut root = schema.clone();
    root.as_object_mut().unwrap().insert("components".into(), doc["components"].clone());
    let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: {instance} does not match its documented schema: {errors:#?}");
}

#[tokio::test]
async fn the_document_is_public_openapi_3_1_and_every_reference_resolves() {
    let cp = Cp::start().await;
    let doc = document(&cp).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "suspiciously few references: {}", all.len());
    for r in all {
        assert!(r.starts_with("#/"), "{r} is not local");
        assert!(doc.pointer(&r[1..]).is_some(), "{r} does not resolve");
    }
    // The contract of design.md §14 is all there.
    let ops: Vec<String> = operations(&doc).iter().map(Op::name).collect();
    for want in [
        "POST /api/v1/providers",
        "POST /api/v1/keys",
        "GET /api/v1/keys",
        "PATCH /api/v1/keys/{id}",
        "POST /api/v1/keys/{id}/rotate",
        "DELETE /api/v1/budgets/{id}",
        "GET /api/v1/usage",
        "GET /api/v1/audit",
        "POST /api/v1/tokens",
        "GET /api/v1/openapi.json",
    ] {
        assert!(ops.iter().any(|o| o == want), "{want} is not documented");
    }
    let money = &doc["components"]["schemas"]["Money"];
    assert_eq!(money["examples"][0], "500.00");
    assert_eq!(
        doc["components"]["schemas"]["Window"]["enum"],
        json!(["minute", "hour", "day", "week", "month", "total"])
    );
    assert_eq!(doc["components"]["schemas"]["CreateKey"]["additionalProperties"], false);
    assert_eq!(doc["components"]["schemas"]["CreateBudget"]["additionalProperties"], false);
    // Rotating takes an optional body (empty means the defaults), never `null`.
    let rotate = &doc["paths"]["/api/v1/keys/{id}/rotate"]["post"]["requestBody"];
    assert_eq!(rotate["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/RotateKey", "{rotate}");
    assert_ne!(rotate["required"], true);
}

#[tokio::test]
async fn every_operation_names_its_security_scope_and_error_responses() {
    let cp = Cp::start().await;
    let doc = document(&cp).await;
    let scopes = doc["components"]["schemas"]["Scope"]["enum"].as_array().unwrap().clone();
    for op in operations(&doc) {
        let public = op.path == "/api/v1/openapi.json" || op.path == "/healthz";
        let responses = op.doc["responses"].as_object().unwrap();
        if public {
            assert!(!responses.contains_key("401"), "{}", op.name());
            continue;
        }
        assert_eq!(op.doc["security"], json!([{"bearer": []}]), "{}", op.name());
        for status in ["401", "500"] {
            assert!(responses.contains_key(status), "{} does not list {status}", op.name());
        }
        if let Some(scope) = op.scope() {
            assert!(scopes.contains(&json!(scope)), "{}: unknown scope {scope}", op.name());
            assert!(responses.contains_key("403"), "{} does not list 403", op.name());
            assert!(op.doc["description"].as_str().unwrap().contains(&format!("`{scope}`")), "{}", op.name());
        }
        for status in responses.keys() {
            if status.starts_with('4') || status.starts_with('5') {
                let r = response(&doc, &op.doc, status.parse().unwrap()).unwrap();
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{} {status}: {r}",
                    op.name()
                );
            }
        }
    }
}

/// Ids of the resources the samples act on, by path parameter.
struct World {
    cp: Cp,
    doc: Value,
    ids: BTreeMap<&'static str, String>,
}

/// A valid request body for each documented operation that takes one.
fn sample_body(op: &Op) -> Option<Value> {
    let m = &op.method;
    Some(match (m.as_str(), op.path.as_str()) {
        ("POST", "/api/v1/providers") => json!({"name": "p2", "kind": "mock", "rpm": 60, "extra": {"latency_ms": 1}}),
        ("POST", "/api/v1/models") => json!({
            "name": "m2",
            "deployments": [{"provider": "p1", "model": "up-2", "weight": 2}],
            "pricing": {"input_per_mtok": "1.25", "output_per_mtok": 2},
            "max_output_tokens": 512
        }),
        ("PATCH", "/api/v1/models/{name}") => {
            json!({"pricing": {"input_per_mtok": 0.5, "output_per_mtok": "1.00"}, "max_output_tokens": null})
        }
        ("POST", "/api/v1/teams") => json!({"name": "t2"}),
        ("POST", "/api/v1/organizations") => json!({"name": "o2"}),
        ("PATCH", "/api/v1/providers/{id}") => json!({"rpm": null, "priority": 2, "extra": {"latency_ms": 2}}),
        ("POST", "/api/v1/projects") => json!({"name": "pr2", "team": "t1"}),
        ("POST", "/api/v1/keys") => json!({
            "project": "pr1", "name": "sample", "principal": "acme:user-1", "models_allowed": ["m*"],
            "rpm": 10, "metadata": {"plan": "pro"}, "tags": ["env:prod"], "expires_at": "2099-01-01T00:00:00Z"
        }),
        ("PATCH", "/api/v1/keys/{id}") => json!({"name": null, "rpm": 120, "tags": ["env:dev"], "expires_at": null}),
        ("POST", "/api/v1/keys/{id}/rotate") => json!({"grace_period_s": 60}),
        ("POST", "/api/v1/budgets") => json!({
            "scope": "project", "scope_id": "pr1", "limit_usd": 100, "window": "day", "on_breach": "warn",
            "alert_thresholds": [0.5, "0.9"]
        }),
        ("PATCH", "/api/v1/budgets/{id}") => {
            json!({"limit_usd": "200.00", "alert_thresholds": null, "temporary_increase": null})
        }
        ("POST", "/api/v1/budgets/{id}/increase") => json!({"amount_usd": "10", "duration_s": 3600}),
        ("POST", "/api/v1/aliases") => json!({"name": "quick", "model": "m1"}),
        ("POST", "/api/v1/routing-policies") => {
            json!({"scope": "project", "scope_id": "pr1", "policy": {"strategy": "priority", "backoff": {"base_ms": 10}}})
        }
        ("PATCH", "/api/v1/routing-policies/{id}") => json!({"policy": {"max_attempts": 2, "retry_on": ["429"]}}),
        ("POST", "/api/v1/tokens") => {
            json!({"name": "sample", "scopes": ["keys:read", "usage:read"], "project": "pr1"})
        }
        _ => return None,
    })
}

impl World {
    /// A control plane holding one of each resource, and ledger entries to read.
    async fn start() -> World {
        let cp = Cp::start().await;
        let doc = document(&cp).await;
        let post = |path: &'static str, body: Value| {
            let cp = &cp;
            async move { cp.expect(Method::POST, path, Some(body), S::CREATED).await }
        };
        post("/api/v1/providers", json!({"name": "p1", "kind": "mock"})).await;
        post("/api/v1/models", json!({"name": "m1", "deployments": [{"provider": "p1", "model": "up"}]})).await;
        post("/api/v1/teams", json!({"name": "t1"})).await;
        post("/api/v1/projects", json!({"name": "pr1", "team": "t1"})).await;
        let key = post("/api/v1/keys", json!({"project": "pr1", "name": "k1", "principal": "acme:user-1"})).await;
        let budget = post(
            "/api/v1/budgets",
            json!({"scope": "team", "scope_id": "t1", "limit_tokens": 1000, "window": "total"}),
        )
        .await;
        post("/api/v1/aliases", json!({"name": "fast", "model": "m1"})).await;
        let policy = post("/api/v1/routing-policies", json!({"scope": "team", "scope_id": "t1", "policy": {}})).await;
        let token = post("/api/v1/tokens", json!({"name": "t", "scopes": ["keys:read"]})).await;
        let at = Timestamp::now().plus_millis(-60_000);
        let entry = spend_entry("req_1", key["id"].as_str().unwrap(), "pr", "m1", at, (3, 4), 1_500)
            .with_tenancy(TeamId::new("t"), tollgate_core::OrgId::new("org"));
        let sink: &dyn LedgerSink = cp.cp.service().store();
        sink.write_batch(&[entry]).await.unwrap();
        let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
        let ids = BTreeMap::from([
            ("key", id(&key)),
            ("budget", id(&budget)),
            ("policy", id(&policy)),
            ("token", id(&token)),
            ("model", "m1".to_owned()),
            ("alias", "fast".to_owned()),
            ("organization", "default".to_owned()),
            ("team", "t1".to_owned()),
            ("project", "pr1".to_owned()),
            ("provider", "p1".to_owned()),
            ("principal", "acme:user-1".to_owned()),
        ]);
        World { cp, doc, ids }
    }

    /// The path of `op` with its parameters filled in.
    fn concrete(&self, op: &Op) -> String {
        let p = &op.path;
        let which = if p.starts_with("/api/v1/keys/") {
            "key"
        } else if p.starts_with("/api/v1/budgets/") {
            "budget"
        } else if p.starts_with("/api/v1/routing-policies/") {
            "policy"
        } else if p.starts_with("/api/v1/tokens/") {
            "token"
        } else if p.starts_with("/api/v1/models/") {
            "model"
        } else if p.starts_with("/api/v1/aliases/") {
            "alias"
        } else if p.starts_with("/api/v1/organizations/") {
            "organization"
        } else if p.starts_with("/api/v1/teams/") {
            "team"
        } else if p.starts_with("/api/v1/projects/") {
            "project"
        } else if p.starts_with("/api/v1/providers/") {
            "provider"
        } else if p.starts_with("/api/v1/principals/") {
            "principal"
        } else {
            assert!(!p.contains('{'), "{p}: no sample id for this path; add one to World::concrete");
            if p == "/api/v1/usage" {
                // Every group, so every `by_<group>` list is checked against its schema.
                return format!("{p}?group_by=model,day,hour,key,principal,tag");
            }
            return p.clone();
        };
        let value = &self.ids[which];
        p.replace("{id}", value).replace("{name}", value)
    }

    /// Every documented operation, destructive ones last so the others find their targets.
    fn ops(&self) -> Vec<Op> {
        let mut ops = operations(&self.doc);
        ops.sort_by_key(|o| (o.method == Method::DELETE || o.path.ends_with("/revoke"), o.name()));
        ops
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let w = World::start().await;
    let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let mut seen_success = 0;
    for op in w.ops() {
        let name = op.name();
        let body = sample_body(&op);
        let request_schema = &op.doc["requestBody"]["content"]["application/json"]["schema"];
        match &body {
            Some(b) => check(&w.doc, request_schema, b, &format!("{name} request")),
            None => assert!(
                op.doc["requestBody"]["required"] != true,
                "{name} requires a body: add a valid one to sample_body"
            ),
        }
        let path = w.concrete(&op);
        let r = w.cp.call(op.method.clone(), &path, Some(ADMIN), body.as_ref()).await;
        let status = r.status.as_u16();
        let documented = response(&w.doc, &op.doc, status)
            .unwrap_or_else(|| panic!("{name} answered {status}, which it does not document: {}", r.text()));
        if r.status.is_success() {
            seen_success += 1;
        } else {
            assert!(!r.text().contains("endpoint"), "{name} is documented but not routed: {}", r.text());
        }
        let content_type = r.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
        if let Some(schema) = documented["content"]["application/json"].get("schema")
            && content_type.as_deref() == Some("application/json")
        {
            check(&w.doc, schema, &r.json(), &format!("{name} → {status}"));
        }
        // Methods the document does not list on this path are not routed either.
        let listed: Vec<Method> =
            operations(&w.doc).into_iter().filter(|o| o.path == op.path).map(|o| o.method).collect();
        for m in methods.iter().filter(|m| !listed.contains(m)) {
            let r = w.cp.call(m.clone(), &path, Some(ADMIN), None).await;
            assert_eq!(r.status, S::METHOD_NOT_ALLOWED, "{m} {} is routed but not documented", op.path);
        }
    }
    assert!(seen_success >= 30, "only {seen_success} operations succeeded with their samples");
}

#[tokio::test]
async fn errors_validate_against_the_documented_error_schema() {
    let w = World::start().await;
    let bad = [
        (Method::POST, "/api/v1/keys", Some(json!({"project": "pr1", "bogus": 1})), S::BAD_REQUEST),
        (
            Method::POST,
            "/api/v1/budgets",
            Some(json!({"scope": "team", "scope_id": "t1", "window": "fortnight"})),
            S::BAD_REQUEST,
        ),
        (Method::GET, "/api/v1/keys/key_missing", None, S::NOT_FOUND),
        (Method::POST, "/api/v1/teams", Some(json!({"name": "t1"})), S::CONFLICT),
    ];
    let ops = operations(&w.doc);
    for (method, path, body, want) in bad {
        let r = w.cp.call(method.clone(), path, Some(ADMIN), body.as_ref()).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
        let op = ops
            .iter()
            .find(|o| {
                o.method == method
                    && (o.path == path || o.path == "/api/v1/keys/{id}" && path.starts_with("/api/v1/keys/"))
            })
            .unwrap();
        let doc = response(&w.doc, &op.doc, want.as_u16()).unwrap();
        check(&w.doc, &doc["content"]["application/json"]["schema"], &r.json(), &format!("{method} {path}"));
    }
    // A field the schema does not allow is refused by the API too.
    let key_schema = json!({"$ref": "#/components/schemas/CreateKey"});
    let mut root = key_schema.clone();
    root["components"] = w.doc["components"].clone();
    let v = jsonschema::validator_for(&root).unwrap();
    assert!(!v.is_valid(&json!({"project": "pr1", "bogus": 1})));
    assert!(!v.is_valid(&json!({"name": "no project"})), "project is required");
}

/// The documented scope is required (a token with every other scope but those that
/// grant it gets 403 `insufficient_scope`) and enough (a token with just it does not).
#[tokio::test]
async fn the_documented_scope_is_the_one_each_operation_requires() {
    let w = World::start().await;
    let all: Vec<String> = w.doc["components"]["schemas"]["Scope"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    fn granted_by(s: &str) -> Vec<&str> {
        match s {
            "keys:read" => vec!["keys:read", "keys:write", "admin"],
            "budgets:read" => vec!["budgets:read", "budgets:write", "admin"],
            other => vec![other, "admin"],
        }
    }
    let mint = async |scopes: Vec<&str>| -> String {
        let body = json!({"name": "probe", "scopes": scopes});
        let v = w.cp.expect(Method::POST, "/api/v1/tokens", Some(body), S::CREATED).await;
        v["token"].as_str().unwrap().to_owned()
    };
    let mut tokens: BTreeMap<String, (String, String)> = BTreeMap::new();
    for s in &all {
        let without: Vec<&str> = all.iter().map(String::as_str).filter(|o| !granted_by(s).contains(o)).collect();
        tokens.insert(s.clone(), (mint(vec![s.as_str()]).await, mint(without).await));
    }
    let mut checked = 0;
    for op in w.ops() {
        let Some(scope) = op.scope() else { continue };
        let (with, without) = &tokens[scope];
        let path = w.concrete(&op);
        let body = sample_body(&op);
        let r = w.cp.call(op.method.clone(), &path, Some(without), body.as_ref()).await;
        assert_eq!(r.status, S::FORBIDDEN, "{} without {scope}: {}", op.name(), r.text());
        assert_eq!(r.json()["error"]["code"], "insufficient_scope", "{}", op.name());
        let r = w.cp.call(op.method.clone(), &path, Some(with), body.as_ref()).await;
        let code = if r.body.is_empty() { Value::Null } else { r.json()["error"]["code"].clone() };
        assert_ne!(code, "insufficient_scope", "{} with just {scope}: {}", op.name(), r.text());
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} scoped operations");
}

#[tokio::test]
async fn every_authenticated_operation_answers_401_without_a_token() {
    let w = World::start().await;
    for op in w.ops() {
        if response(&w.doc, &op.doc, 401).is_none() {
            continue;
        }
        let r = w.cp.call(op.method.clone(), &w.concrete(&op), None, sample_body(&op).as_ref()).await;
        assert_eq!(r.status, S::UNAUTHORIZED, "{}: {}", op.name(), r.text());
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
}

#[tokio::test]
async fn every_operation_that_reads_a_body_refuses_an_oversized_one_with_413() {
    let w = World::start().await;
    let huge = json!({"name": "x".repeat(1024 * 1024 + 1)});
    let mut checked = 0;
    for op in w.ops() {
        let name = op.name();
        let documented = response(&w.doc, &op.doc, 413);
        if op.doc.get("requestBody").is_some() {
            assert!(documented.is_some(), "{name} takes a body but does not document 413");
        }
        let Some(documented) = documented else { continue };
        let r = w.cp.call(op.method.clone(), &w.concrete(&op), Some(ADMIN), Some(&huge)).await;
        assert_eq!(r.status, S::PAYLOAD_TOO_LARGE, "{name}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"]["code"], "request_too_large", "{name}: {body}");
        check(&w.doc, &documented["content"]["application/json"]["schema"], &body, &format!("{name} → 413"));
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} operations read a body");
}

//! The CRDs: committed YAML matches the types, the schemas are structural (what the API
//! server demands), and the schema plus its CEL rules refuse invalid objects the way
//! `kubectl apply` would.
//!
//! There is no API server on the build machine; the e2e suite applies these CRDs to a
//! real one when `KUBECONFIG` is set. Here the OpenAPI part is checked with a JSON Schema
//! validator and the CEL rules with kube's client-side CEL evaluator.

use std::path::Path;

use kube::CustomResourceExt;
use kube::core::cel;
use serde_json::{Value, json};
use weir_crds::{Plugin, Route};

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weir/crds");
    for (name, yaml) in weir_crds::crd::files() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == yaml,
            "charts/weir/crds/{name} is out of date: run `cargo run -p weir-crds --bin crdgen -- charts/weir/crds`"
        );
    }
}

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The structural-schema rules of apiextensions.k8s.io/v1, checked node by node.
fn structural_violations(node: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if preserve {
        let field = path.rsplit('.').next().unwrap_or_default();
        if field != "config" && field != "configSchema" {
            out.push(format!(
                "{path}: x-kubernetes-preserve-unknown-fields outside a free-form config"
            ));
        }
    }
    for forbidden in [
        "$ref",
        "uniqueItems",
        "definitions",
        "$schema",
        "id",
        "patternProperties",
        "dependencies",
    ] {
        if object.contains_key(forbidden) {
            out.push(format!(
                "{path}: {forbidden} is not allowed in a CRD schema"
            ));
        }
    }
    if in_junctor {
        for key in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
        ] {
            if object.contains_key(key) {
                out.push(format!("{path}: {key} inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !object.contains_key("type") && !preserve {
        out.push(format!("{path}: no type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_violations(child, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = object.get(key).filter(|c| c.is_object()) {
            structural_violations(child, &format!("{path}[{key}]"), in_junctor, out);
        }
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in object
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_violations(child, &format!("{path}.{junctor}[{i}]"), true, out);
        }
    }
    if object.get("type") == Some(&json!("object")) && object.contains_key("enum") {
        out.push(format!("{path}: enum on an object"));
    }
}

#[test]
fn schemas_are_structural_and_free_form_only_where_config_is() {
    for crd in [Route::crd(), Plugin::crd()] {
        let mut violations = Vec::new();
        structural_violations(&schema_of(&crd), "", false, &mut violations);
        assert!(
            violations.is_empty(),
            "{}: {violations:#?}",
            crd.metadata.name.unwrap()
        );
    }
}

#[test]
fn cel_rules_compile_and_stay_within_the_cost_budget() {
    for crd in [Route::crd(), Plugin::crd()] {
        let compiled = cel::compile_schema(&schema_of(&crd));
        assert!(
            !compiled.has_errors(),
            "{:#?}",
            compiled.compilation_errors()
        );
    }
}

#[test]
fn status_subresource_printer_columns_and_short_names() {
    let route = Route::crd();
    let version = &route.spec.versions[0];
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Hosts", "Programmed", "Age"]);
    assert_eq!(route.spec.names.short_names, Some(vec!["wr".to_owned()]));
    assert_eq!(route.spec.scope, "Namespaced");
    let plugin = Plugin::crd();
    assert!(
        plugin.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(plugin.spec.group, "weir.dev");
    assert_eq!(plugin.spec.versions[0].name, "v1alpha1");
}

/// Errors the API server would give for `object`: OpenAPI validation, then CEL.
fn api_server_errors(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    object: &Value,
) -> Vec<String> {
    let schema = schema_of(crd);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .unwrap();
    let mut errors: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty()
        && let Err(cel_errors) = cel::Validator::new().validate(&schema, object, None)
    {
        errors.extend(
            cel_errors
                .into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}

fn route_object(spec: Value) -> Value {
    json!({"apiVersion": "weir.dev/v1alpha1", "kind": "Route", "metadata": {"name": "r", "namespace": "ns"}, "spec": spec})
}

fn plugin_object(spec: Value) -> Value {
    json!({"apiVersion": "weir.dev/v1alpha1", "kind": "Plugin", "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
}

#[test]
fn valid_objects_pass() {
    let route = route_object(json!({
        "hosts": ["api.example.com", "*.example.com"],
        "tls": {"secretName": "cert"},
        "cors": {"allowOrigins": ["https://app.example.com"], "maxAge": "10m"},
        "plugins": [{"name": "jwt", "config": {"anything": [1, {"goes": true}]}}],
        "rules": [
            {"matches": [{"path": {"type": "Template", "value": "/users/{id}"}, "methods": ["GET"],
                          "headers": [{"name": "x-canary", "type": "Present"}]}],
             "backends": [{"name": "users", "port": 80, "weight": 5}, {"url": "http://10.0.0.1:8080"}],
             "rewrite": {"replacePrefix": "/v1"}, "timeouts": {"request": "1m30s"},
             "retries": {"attempts": 2, "retryOn": ["ConnectFailure"], "statuses": [503]},
             "loadBalancer": "RoundRobin", "maxConcurrentRequests": 10, "outlierDetection": {},
             "upgrades": ["websocket", "connect-udp"],
             "mirrors": [{"backend": {"name": "shadow", "port": 80}, "percent": 5},
                         {"backend": {"url": "http://10.0.0.2"}, "fraction": {"numerator": 1, "denominator": 3}},
                         {"backend": {"url": "http://10.0.0.3"}, "fraction": {"numerator": 100}}]},
            {"redirect": {"scheme": "https", "statusCode": 301}},
            {"directResponse": {"status": 200, "body": "ok"}}
        ]
    }));
    assert_eq!(
        api_server_errors(&Route::crd(), &route),
        Vec::<String>::new()
    );
    let plugin = plugin_object(json!({
        "source": {"configMapRef": {"name": "src", "key": "plugin.ts"}},
        "config": {"a": 1}, "configSchema": {"type": "object"},
        "scope": "Global", "order": -3, "timeoutMs": 250, "memoryLimitMiB": 64, "failurePolicy": "Open"
    }));
    assert_eq!(
        api_server_errors(&Plugin::crd(), &plugin),
        Vec::<String>::new()
    );
}

#[test]
fn invalid_routes_are_refused_by_the_schema() {
    let rule = json!({"directResponse": {"status": 200}});
    let cases = [
        (
            "enum",
            json!({"rules": [{"matches": [{"path": {"type": "Glob", "value": "/"}}], "directResponse": {"status": 200}}]}),
        ),
        (
            "pattern",
            json!({"hosts": ["API.example.com"], "rules": [rule]}),
        ),
        (
            "minimum",
            json!({"rules": [{"backends": [{"url": "http://a", "weight": -1}]}]}),
        ),
        (
            "maximum",
            json!({"rules": [{"directResponse": {"status": 700}}]}),
        ),
        ("required", json!({"hosts": ["a.example"]})),
        ("minItems", json!({"rules": []})),
        ("maxItems", json!({"rules": vec![rule.clone(); 65]})),
        (
            "duration",
            json!({"rules": [{"backends": [{"url": "http://a"}], "timeouts": {"request": "ten seconds"}}]}),
        ),
        (
            "redirect status",
            json!({"rules": [{"redirect": {"statusCode": 200}}]}),
        ),
        (
            "cel: two actions",
            json!({"rules": [{"directResponse": {"status": 200}, "redirect": {"host": "a.example"}}]}),
        ),
        ("cel: no action", json!({"rules": [{"matches": []}]})),
        (
            "cel: url and name",
            json!({"rules": [{"backends": [{"url": "http://a", "name": "svc", "port": 80}]}]}),
        ),
        (
            "cel: name without port",
            json!({"rules": [{"backends": [{"name": "svc"}]}]}),
        ),
        (
            "cel: rewrite on redirect",
            json!({"rules": [{"redirect": {"host": "a.example"}, "rewrite": {"stripPrefix": true}}]}),
        ),
        (
            "cel: two rewrites",
            json!({"rules": [{"backends": [{"url": "http://a"}], "rewrite": {"stripPrefix": true, "replacePath": "/x"}}]}),
        ),
        (
            "cel: header without value",
            json!({"rules": [{"matches": [{"headers": [{"name": "x"}]}], "directResponse": {"status": 200}}]}),
        ),
        (
            "cel: upgrades without backends",
            json!({"rules": [{"directResponse": {"status": 200}, "upgrades": ["websocket"]}]}),
        ),
        (
            "cel: h2c upgrade",
            json!({"rules": [{"backends": [{"url": "http://a"}], "upgrades": ["websocket", "H2C"]}]}),
        ),
        (
            "cel: redirect path twice",
            json!({"rules": [{"redirect": {"path": "/a", "replacePrefix": "/b"}}]}),
        ),
        (
            "cel: mirrors without backends",
            json!({"rules": [{"redirect": {"host": "a.example"}, "mirrors": [{"backend": {"url": "http://b"}}]}]}),
        ),
        (
            "cel: mirror weight",
            json!({"rules": [{"backends": [{"url": "http://a"}], "mirrors": [{"backend": {"url": "http://b", "weight": 1}}]}]}),
        ),
        (
            "cel: mirror percent and fraction",
            json!({"rules": [{"backends": [{"url": "http://a"}], "mirrors": [{"backend": {"url": "http://b"}, "percent": 5, "fraction": {"numerator": 1}}]}]}),
        ),
        (
            "cel: mirror fraction above one",
            json!({"rules": [{"backends": [{"url": "http://a"}], "mirrors": [{"backend": {"url": "http://b"}, "fraction": {"numerator": 101}}]}]}),
        ),
        (
            "mirror percent maximum",
            json!({"rules": [{"backends": [{"url": "http://a"}], "mirrors": [{"backend": {"url": "http://b"}, "percent": 101}]}]}),
        ),
        (
            "mirror denominator minimum",
            json!({"rules": [{"backends": [{"url": "http://a"}], "mirrors": [{"backend": {"url": "http://b"}, "fraction": {"numerator": 0, "denominator": 0}}]}]}),
        ),
    ];
    for (what, spec) in cases {
        let errors = api_server_errors(&Route::crd(), &route_object(spec));
        assert!(!errors.is_empty(), "{what}: accepted");
    }
}

#[test]
fn invalid_plugins_are_refused_by_the_schema() {
    let code = json!({"code": "export default {}"});
    let cases = [
        ("required", json!({"config": {}})),
        (
            "enum",
            json!({"source": code, "failurePolicy": "Sometimes"}),
        ),
        ("range", json!({"source": code, "timeoutMs": 0})),
        ("range", json!({"source": code, "memoryLimitMiB": 4096})),
        (
            "key pattern",
            json!({"source": {"configMapRef": {"name": "a", "key": "a/b"}}}),
        ),
        (
            "cel: both sources",
            json!({"source": {"code": "x", "configMapRef": {"name": "a", "key": "b"}}}),
        ),
        ("cel: no source", json!({"source": {}})),
    ];
    for (what, spec) in cases {
        let errors = api_server_errors(&Plugin::crd(), &plugin_object(spec));
        assert!(!errors.is_empty(), "{what}: accepted");
    }
}

#[test]
fn the_compiler_refuses_what_the_cel_rules_refuse() {
    // Standalone files never meet an API server, so the compiler has its own twin of
    // every CEL rule: whatever CEL refuses, the compiler refuses too.
    let yaml_cases = [
        "rules: [{directResponse: {status: 200}, redirect: {host: a.example}}]",
        "rules: [{matches: []}]",
        "rules: [{backends: [{url: 'http://a', name: svc, port: 80}]}]",
        "rules: [{backends: [{name: svc}]}]",
        "rules: [{redirect: {host: a.example}, rewrite: {stripPrefix: true}}]",
        "rules: [{backends: [{url: 'http://a'}], rewrite: {stripPrefix: true, replacePath: /x}}]",
        "rules: [{matches: [{headers: [{name: x}]}], directResponse: {status: 200}}]",
        "rules: [{redirect: {path: /a, replacePrefix: /b}}]",
        "rules: [{directResponse: {status: 200}, timeouts: {request: 1s}}]",
        "rules: [{redirect: {host: a.example}, mirrors: [{backend: {url: 'http://b'}}]}]",
        "rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b', weight: 2}}]}]",
        "rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, percent: 5, fraction: {numerator: 1}}]}]",
        "rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, fraction: {numerator: 101}}]}]",
    ];
    for spec in yaml_cases {
        let yaml = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec:\n  {spec}\n"
        );
        let mut manifests = weir_crds::manifest::Manifests::default();
        for doc in weir_crds::manifest::parse(&yaml) {
            if let Ok(weir_crds::manifest::Document::Object(o)) = doc {
                manifests.add(o);
            }
        }
        let route = manifests
            .routes
            .first()
            .unwrap_or_else(|| panic!("{spec}: did not parse"));
        let cel_errors = api_server_errors(&Route::crd(), &serde_json::to_value(route).unwrap());
        assert!(!cel_errors.is_empty(), "{spec}: the CRD accepts it");
        let compiled = weir_crds::compile(&manifests.inputs());
        assert!(
            compiled.reports[0].is_invalid(),
            "{spec}: the compiler accepts it"
        );
    }
}

#[test]
fn the_structural_checker_catches_what_the_api_server_refuses() {
    let mut violations = Vec::new();
    let bad = json!({
        "type": "object",
        "properties": {
            "untyped": {},
            "loose": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "typed-in-oneof": {"type": "object", "oneOf": [{"type": "object"}]},
            "both": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}
        }
    });
    structural_violations(&bad, "", false, &mut violations);
    assert_eq!(violations.len(), 4, "{violations:#?}");
}

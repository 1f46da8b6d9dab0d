//! Route matching: requests built from the input (host, path, query, method, a header)
//! against a router of every kind of match never panic, and match the same way twice.
#![no_main]

use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use weir_crds::manifest::{Document, Manifests, parse};
use weir_proxy::router::{RequestHead, Router};

const ROUTES: &str = "
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: every-match, namespace: fuzz}
spec:
  hosts: [api.example.com, '*.example.com', '*.a.example.com']
  rules:
  - matches:
    - path: {type: Exact, value: /healthz}
    - path: {type: Prefix, value: /api}
      methods: [GET, POST]
      headers: [{name: x-canary, value: 'true'}, {name: x-debug, type: Present}]
      query: [{name: v, type: Regex, value: '[0-9]+'}]
    - path: {type: Template, value: '/users/{id}/posts/{post}'}
    - path: {type: Regex, value: '/files/.*\\.png'}
    directResponse: {status: 200}
---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: catch-all, namespace: fuzz}
spec:
  rules: [{matches: [{path: {type: Prefix, value: /}}], directResponse: {status: 404}}]
";

static ROUTER: LazyLock<Router<String>> = LazyLock::new(|| {
    let mut manifests = Manifests::default();
    for document in parse(ROUTES) {
        if let Ok(Document::Object(object)) = document {
            manifests.add(object);
        }
    }
    let compiled = weir_crds::compile(&manifests.inputs());
    let (router, errors) = Router::build(&compiled.snapshot.virtual_hosts, |rule| {
        Some(Arc::new(rule.to_owned()))
    });
    assert!(errors.is_empty(), "{errors:?}");
    router
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\n');
    let host = parts.next().unwrap_or_default().to_ascii_lowercase();
    let Ok(path) = weir_crds::path::normalize(parts.next().unwrap_or("/")) else {
        return;
    };
    let query = parts.next().filter(|q| !q.is_empty());
    let Ok(method) = Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some((name, value)) = parts.next().and_then(|h| h.split_once(':'))
        && let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        )
    {
        headers.insert(name, value);
    }
    let head = RequestHead {
        host: &host,
        path: &path,
        query,
        method: &method,
        headers: &headers,
        tls: data.len() % 2 == 1,
    };
    let first = ROUTER.route(&head).map(|m| (m.target.clone(), m.params));
    let second = ROUTER.route(&head).map(|m| (m.target.clone(), m.params));
    assert_eq!(first, second);
});

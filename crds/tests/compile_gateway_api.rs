//! The compiler on Gateway API objects. Each test reproduces one of the Gateway API core
//! conformance cases for HTTPRoute and Gateway that apply without a cluster (named after
//! it: `http_route_exact_path_matching` is `HTTPRouteExactPathMatching`), checking what
//! the conformance suite checks through traffic in the snapshot the proxies serve, and
//! the status the operator writes.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use support::*;
use weir_crds::Compilation;
use weir_crds::compile::GATEWAY_CONTROLLER;
use weir_crds::compile::gateway_api::status;
use weir_crds::compile::report::{InSnapshot, ObjectKind, ObjectReport};
use weir_crds::condition::{ConditionType, DesiredCondition, Reason};
use weir_crds::gateway::{GatewayStatus, HTTPRouteStatus};
use weir_crds::snapshot::{Action, Forward, PathPattern, PathRewrite, Rule, Snapshot};

/// The conformance suite's base: a weir GatewayClass; in namespace `infra`, Gateways
/// `same-namespace` (routes of `infra` only), `all-namespaces` (any namespace) and
/// `backend-namespaces` (namespaces labelled `gateway-conformance: backend`); Services
/// `infra-backend-v1..3` there, `app-backend-v1` in `app` and `web-backend` in `web`.
const BASE: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: weir, generation: 1}
spec: {controllerName: weir.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: all-namespaces, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v1, namespace: infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v2, namespace: infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: infra-backend-v3, namespace: infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: app-backend-v1, namespace: app}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-backend, namespace: web}
spec: {ports: [{port: 8080}]}
";

/// An HTTPRoute named `name` in `namespace` with `spec` (indented by 2).
fn http_route(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {namespace}, generation: 1}}\nspec:\n{spec}\n"
    )
}

fn compile(extra: &str) -> Compilation {
    compile_yaml(&format!("{BASE}{extra}"))
}

fn now() -> Time {
    Time(Timestamp::from_second(1_700_000_000).unwrap())
}

fn report<'c>(
    c: &'c Compilation,
    kind: ObjectKind,
    namespace: &str,
    name: &str,
) -> &'c ObjectReport {
    c.report(kind, namespace, name)
        .unwrap_or_else(|| panic!("no report for {kind} {namespace}/{name}"))
}

/// The HTTPRoute's `status.parents` as weir writes it.
fn route_status(c: &Compilation, namespace: &str, name: &str) -> HTTPRouteStatus {
    let report = report(c, ObjectKind::HTTPRoute, namespace, name);
    status::http_route_status(report, &c.gateway_api, None, &now())
}

/// (type, status, reason) of each condition.
fn summary(conditions: &[Condition]) -> Vec<(String, String, String)> {
    conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn triple(kind: &str, status: bool, reason: &str) -> (String, String, String) {
    let status = if status { "True" } else { "False" };
    (kind.to_owned(), status.to_owned(), reason.to_owned())
}

/// Conditions of the route's entry for parent `gateway`.
fn parent_conditions(
    c: &Compilation,
    namespace: &str,
    name: &str,
    gateway: &str,
) -> Vec<(String, String, String)> {
    let status = route_status(c, namespace, name);
    let parent = status
        .parents
        .iter()
        .find(|p| p.parent_ref.name == gateway)
        .unwrap_or_else(|| panic!("no parent {gateway} in {status:#?}"));
    assert_eq!(parent.controller_name, GATEWAY_CONTROLLER);
    for condition in &parent.conditions {
        assert_eq!(condition.observed_generation, Some(1));
    }
    summary(&parent.conditions)
}

fn accepted_and_resolved(c: &Compilation, namespace: &str, name: &str, gateway: &str) {
    assert_eq!(
        parent_conditions(c, namespace, name, gateway),
        vec![
            triple("Accepted", true, "Accepted"),
            triple("ResolvedRefs", true, "ResolvedRefs"),
        ],
        "{:#?}",
        report(c, ObjectKind::HTTPRoute, namespace, name)
    );
}

/// The Gateway's status, its proxies all serving it.
fn gateway_status(c: &Compilation, namespace: &str, name: &str) -> GatewayStatus {
    let report = report(c, ObjectKind::Gateway, namespace, name);
    let listeners = c
        .gateway_api
        .listeners
        .get(&report.object)
        .cloned()
        .unwrap_or_default();
    let programmed = DesiredCondition::ok(
        ConditionType::Programmed,
        Reason::Programmed,
        "applied on 1/1 proxies",
    );
    status::gateway_status(report, &listeners, &programmed, Vec::new(), None, &now())
}

/// The rules of `host` in match order, with the path each entry matches.
fn entries<'s>(snapshot: &'s Snapshot, host: &str) -> Vec<(&'s PathPattern, &'s Rule)> {
    let vhost = snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == host)
        .unwrap_or_else(|| panic!("no virtual host {host} in {:?}", snapshot.virtual_hosts));
    vhost
        .entries
        .iter()
        .map(|e| (&e.path, &*snapshot.rules[&e.rule]))
        .collect()
}

fn forward(rule: &Rule) -> &Forward {
    match &rule.action {
        Action::Forward(forward) => forward,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn backends(rule: &Rule) -> Vec<(&str, u32)> {
    forward(rule)
        .backends
        .iter()
        .map(|b| (b.backend.as_str(), b.weight))
        .collect()
}

const TO_V1: &str = "backendRefs: [{name: infra-backend-v1, port: 8080}]";

#[test]
fn http_route_simple_same_namespace() {
    let c = compile(&http_route(
        "infra",
        "gateway-conformance-infra-test",
        &format!("  parentRefs: [{{name: same-namespace}}]\n  rules: [{{{TO_V1}}}]"),
    ));
    accepted_and_resolved(
        &c,
        "infra",
        "gateway-conformance-infra-test",
        "same-namespace",
    );
    let entries = entries(&c.snapshot, "*");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, &PathPattern::Prefix("/".into()));
    assert_eq!(
        backends(entries[0].1),
        [("service:infra/infra-backend-v1:8080", 1)]
    );
    let gateway = gateway_status(&c, "infra", "same-namespace");
    assert_eq!(
        summary(&gateway.conditions),
        vec![
            triple("Accepted", true, "Accepted"),
            triple("Programmed", true, "Programmed")
        ]
    );
    assert_eq!(gateway.listeners[0].attached_routes, 1);
}

#[test]
fn http_route_cross_namespace() {
    let c = compile(&http_route(
        "web",
        "cross-namespace",
        "  parentRefs: [{name: all-namespaces, namespace: infra}]\n  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]",
    ));
    accepted_and_resolved(&c, "web", "cross-namespace", "all-namespaces");
    let entries = entries(&c.snapshot, "*");
    assert_eq!(
        backends(entries[0].1),
        [("service:web/web-backend:8080", 1)]
    );
}

#[test]
fn http_route_invalid_cross_namespace_parent_ref() {
    // same-namespace admits routes of `infra` only.
    let c = compile(&http_route(
        "web",
        "invalid-cross-namespace-parent-ref",
        "  parentRefs: [{name: same-namespace, namespace: infra}]\n  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]",
    ));
    assert_eq!(
        parent_conditions(
            &c,
            "web",
            "invalid-cross-namespace-parent-ref",
            "same-namespace"
        )[0],
        triple("Accepted", false, "NotAllowedByListeners")
    );
    assert!(c.snapshot.virtual_hosts.is_empty());
    assert_eq!(
        gateway_status(&c, "infra", "same-namespace").listeners[0].attached_routes,
        0
    );
}

#[test]
fn http_route_invalid_parent_ref_not_matching_section_name_and_port() {
    let c = compile(&format!(
        "{}{}",
        http_route(
            "infra",
            "section",
            &format!(
                "  parentRefs: [{{name: same-namespace, sectionName: nope}}]\n  rules: [{{{TO_V1}}}]"
            ),
        ),
        http_route(
            "infra",
            "port",
            &format!("  parentRefs: [{{name: same-namespace, port: 81}}]\n  rules: [{{{TO_V1}}}]"),
        )
    ));
    for name in ["section", "port"] {
        assert_eq!(
            parent_conditions(&c, "infra", name, "same-namespace")[0],
            triple("Accepted", false, "NoMatchingParent")
        );
    }
    assert!(c.snapshot.virtual_hosts.is_empty());
}

#[test]
fn http_route_disallowed_kind() {
    let c = compile(&format!(
        "{}{}",
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-only, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {kinds: [{kind: TCPRoute}]}
",
        http_route(
            "infra",
            "disallowed-kind",
            &format!("  parentRefs: [{{name: tls-only}}]\n  rules: [{{{TO_V1}}}]"),
        )
    ));
    assert_eq!(
        parent_conditions(&c, "infra", "disallowed-kind", "tls-only")[0],
        triple("Accepted", false, "NotAllowedByListeners")
    );
    // GatewayInvalidRouteKind: the listener says which kinds it does not take.
    let gateway = gateway_status(&c, "infra", "tls-only");
    let listener = &gateway.listeners[0];
    assert!(listener.supported_kinds.is_empty());
    assert!(summary(&listener.conditions).contains(&triple(
        "ResolvedRefs",
        false,
        "InvalidRouteKinds"
    )));
}

#[test]
fn http_route_exact_path_matching() {
    let c = compile(&http_route(
        "infra",
        "exact-path-matching",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]",
    ));
    accepted_and_resolved(&c, "infra", "exact-path-matching", "same-namespace");
    let entries = entries(&c.snapshot, "*");
    let paths: Vec<_> = entries.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths,
        [
            &PathPattern::Exact("/one".into()),
            &PathPattern::Exact("/two".into())
        ]
    );
    assert_eq!(
        backends(entries[1].1),
        [("service:infra/infra-backend-v2:8080", 1)]
    );
}

#[test]
fn http_route_matching_header_query_and_method() {
    // HTTPRouteHeaderMatching, HTTPRouteQueryParamMatching, HTTPRouteMethodMatching.
    let c = compile(&http_route(
        "infra",
        "matching",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{method: POST}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - matches: [{headers: [{name: color, type: RegularExpression, value: 'red|blue'}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]",
    ));
    accepted_and_resolved(&c, "infra", "matching", "same-namespace");
    let host = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "*")
        .unwrap();
    // The method match first, then header matches, then the query match (the Gateway
    // API's precedence), each under Prefix `/`.
    let conditions: Vec<String> = host
        .entries
        .iter()
        .map(|e| {
            format!(
                "{:?} {:?} {:?}",
                e.methods,
                e.headers
                    .iter()
                    .map(|h| (&h.name, h.kind, &h.value))
                    .collect::<Vec<_>>(),
                e.query
                    .iter()
                    .map(|q| (&q.name, &q.value))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [
            r#"["POST"] [] []"#,
            r#"[] [("version", Exact, Some("one"))] []"#,
            r#"[] [("color", Regex, Some("red|blue"))] []"#,
            r#"[] [] [("animal", Some("whale"))]"#,
        ]
    );
}

#[test]
fn http_route_matching_across_routes() {
    // Two routes on the same hostname: the more specific match wins whichever route it
    // is in; equal matches go to the older route.
    let c = compile(&format!(
        "{}{}",
        http_route(
            "infra",
            "matching-part1",
            "  parentRefs: [{name: same-namespace}]
  hostnames: [example.com, example.net]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]",
        ),
        http_route(
            "infra",
            "matching-part2",
            "  parentRefs: [{name: same-namespace}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}, headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]",
        )
    ));
    for name in ["matching-part1", "matching-part2"] {
        accepted_and_resolved(&c, "infra", name, "same-namespace");
    }
    let example_com: Vec<_> = entries(&c.snapshot, "example.com")
        .into_iter()
        .map(|(path, rule)| (path.clone(), backends(rule)[0].0))
        .collect();
    assert_eq!(
        example_com,
        [
            (
                PathPattern::Prefix("/v2".into()),
                "service:infra/infra-backend-v3:8080"
            ),
            (
                PathPattern::Prefix("/v2".into()),
                "service:infra/infra-backend-v2:8080"
            ),
            (
                PathPattern::Prefix("/".into()),
                "service:infra/infra-backend-v1:8080"
            ),
        ]
    );
    assert_eq!(entries(&c.snapshot, "example.net").len(), 2);
}

#[test]
fn http_route_hostname_intersection() {
    let c = compile(
        &(format!(
            "{}{}{}{}",
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-hostname-intersection, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: '*.wildcard.io'}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.anotherwildcard.io'}
",
            http_route(
                "infra",
                "specific-host-matches-listener-specific-host",
                &format!(
                    "  parentRefs: [{{name: httproute-hostname-intersection}}]\n  hostnames: [non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]\n  rules: [{{{TO_V1}}}]"
                ),
            ),
            http_route(
                "infra",
                "specific-host-matches-listener-wildcard-host",
                "  parentRefs: [{name: httproute-hostname-intersection}]\n  hostnames: [non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]",
            ),
            http_route(
                "infra",
                "wildcard-host-matches-listener-specific-host",
                "  parentRefs: [{name: httproute-hostname-intersection}]\n  hostnames: ['*.specific.com']\n  rules: [{matches: [{path: {value: /s2}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}]",
            ),
        ) + &http_route(
            "infra",
            "no-intersecting-hosts",
            "  parentRefs: [{name: httproute-hostname-intersection}]\n  hostnames: [specific.but.wrong.com, wildcard.io]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]",
        )),
    );
    let hosts: Vec<&str> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|v| v.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        [
            "bar.wildcard.io",
            "foo.bar.wildcard.io",
            "foo.wildcard.io",
            "very.specific.com"
        ]
    );
    let specific = entries(&c.snapshot, "very.specific.com");
    assert_eq!(
        backends(specific[0].1)[0].0,
        "service:infra/infra-backend-v3:8080"
    );
    assert_eq!(
        backends(specific[1].1)[0].0,
        "service:infra/infra-backend-v1:8080"
    );
    assert_eq!(
        parent_conditions(
            &c,
            "infra",
            "no-intersecting-hosts",
            "httproute-hostname-intersection"
        )[0],
        triple("Accepted", false, "NoMatchingListenerHostname")
    );
    // Attached to each listener all the same (attachment ignores hostnames).
    let gateway = gateway_status(&c, "infra", "httproute-hostname-intersection");
    assert!(
        gateway.listeners.iter().all(|l| l.attached_routes == 4),
        "{gateway:#?}"
    );
}

#[test]
fn http_route_listener_hostname_matching() {
    let c = compile(
        &(format!(
            "{}{}{}",
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: httproute-listener-hostname-matching, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: listener-1, port: 80, protocol: HTTP, hostname: bar.com}
  - {name: listener-2, port: 80, protocol: HTTP, hostname: foo.bar.com}
  - {name: listener-3, port: 80, protocol: HTTP, hostname: '*.bar.com'}
",
            http_route(
                "infra",
                "backend-v1",
                &format!(
                    "  parentRefs: [{{name: httproute-listener-hostname-matching, sectionName: listener-1}}]\n  rules: [{{{TO_V1}}}]"
                ),
            ),
            http_route(
                "infra",
                "backend-v2",
                "  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-2}]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]",
            ),
        ) + &http_route(
            "infra",
            "backend-v3",
            "  parentRefs: [{name: httproute-listener-hostname-matching, sectionName: listener-3}]\n  rules: [{backendRefs: [{name: infra-backend-v3, port: 8080}]}]",
        )),
    );
    let served: Vec<(&str, &str)> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|v| {
            let rule = &c.snapshot.rules[&v.entries[0].rule];
            (v.host.as_str(), forward(rule).backends[0].backend.as_str())
        })
        .collect();
    assert_eq!(
        served,
        [
            ("*.bar.com", "service:infra/infra-backend-v3:8080"),
            ("bar.com", "service:infra/infra-backend-v1:8080"),
            ("foo.bar.com", "service:infra/infra-backend-v2:8080"),
        ]
    );
}

#[test]
fn http_route_request_and_response_header_modifier() {
    let c = compile(&http_route(
        "infra",
        "header-modifier",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
        remove: [X-Header-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        remove: [X-Header-Remove]
    backendRefs: [{name: infra-backend-v1, port: 8080}]",
    ));
    accepted_and_resolved(&c, "infra", "header-modifier", "same-namespace");
    let rule = entries(&c.snapshot, "*")[0].1;
    let request = forward(rule).request_headers.as_ref().unwrap();
    assert_eq!(request.set["x-header-set"], "set-overwrites-values");
    assert_eq!(request.add["x-header-add"], "add-appends-values");
    assert_eq!(request.remove, ["x-header-remove"]);
    let response = rule.response_headers.as_ref().unwrap();
    assert_eq!(response.set["x-header-set"], "set-overwrites-values");
    assert_eq!(response.remove, ["x-header-remove"]);
}

#[test]
fn http_route_redirects() {
    // HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectPath, HTTPRouteRedirectPort,
    // HTTPRouteRedirectScheme.
    let c = compile(&http_route(
        "infra",
        "redirect",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /full-path}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}}]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]",
    ));
    accepted_and_resolved(&c, "infra", "redirect", "same-namespace");
    let redirects: Vec<(String, String)> = entries(&c.snapshot, "*")
        .into_iter()
        .map(|(path, rule)| match &rule.action {
            Action::Redirect(r) => (
                format!("{path:?}"),
                format!(
                    "{} {:?} {:?} {:?} {:?}",
                    r.status, r.scheme, r.host, r.port, r.path
                ),
            ),
            other => panic!("not a redirect: {other:?}"),
        })
        .collect();
    assert_eq!(
        redirects,
        [
            (
                r#"Prefix("/hostname-redirect")"#.into(),
                r#"301 None Some("example.org") None None"#.into()
            ),
            (
                r#"Prefix("/full-path")"#.into(),
                r#"302 None None None Some(ReplaceFull("/full-path-replacement"))"#.into()
            ),
            (
                r#"Prefix("/prefix")"#.into(),
                r#"302 None None None Some(ReplacePrefix("/replacement-prefix"))"#.into()
            ),
            (
                r#"Prefix("/scheme")"#.into(),
                r#"302 Some("https") None None None"#.into()
            ),
            (
                r#"Prefix("/port")"#.into(),
                "302 None None Some(8083) None".into()
            ),
        ]
    );
}

#[test]
fn http_route_rewrite_host_and_path() {
    let c = compile(&http_route(
        "infra",
        "rewrite",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full/one}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org, path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]",
    ));
    accepted_and_resolved(&c, "infra", "rewrite", "same-namespace");
    let entries = entries(&c.snapshot, "*");
    // The longer prefix first.
    let prefix = forward(entries[0].1);
    assert_eq!(
        prefix.path_rewrite.as_deref(),
        Some(&PathRewrite::ReplacePrefix("/one".into()))
    );
    let full = forward(entries[1].1);
    assert_eq!(
        full.path_rewrite.as_deref(),
        Some(&PathRewrite::ReplaceFull("/one".into()))
    );
    assert_eq!(full.host_rewrite.as_deref(), Some("one.example.org"));
}

#[test]
fn http_route_weight() {
    let c = compile(&http_route(
        "infra",
        "weighted-backends",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}",
    ));
    accepted_and_resolved(&c, "infra", "weighted-backends", "same-namespace");
    assert_eq!(
        backends(entries(&c.snapshot, "*")[0].1),
        [
            ("service:infra/infra-backend-v1:8080", 70),
            ("service:infra/infra-backend-v2:8080", 30),
        ]
    );
}

/// A rule answering 500 itself (a filter it cannot run, or no backend).
fn answers_500(rule: &Rule) {
    match &rule.action {
        Action::Respond(respond) => {
            assert_eq!(respond.status, 500);
            assert!(
                respond.body.contains("route_not_servable"),
                "{}",
                respond.body
            );
        }
        other => panic!("expected 500, got {other:?}"),
    }
}

/// The unresolved backends a rule sends to (whose share the proxy answers 500), with
/// their weights, and why each is unresolved.
fn unresolved<'s>(snapshot: &'s Snapshot, rule: &Rule) -> Vec<(&'s str, &'s str)> {
    forward(rule)
        .backends
        .iter()
        .filter_map(|b| {
            let (id, backend) = snapshot.backends.get_key_value(&b.backend)?;
            Some((id.as_str(), backend.unresolved.as_deref()?))
        })
        .collect()
}

#[test]
fn http_route_reference_grant() {
    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: app}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: '', kind: Service, name: app-backend-v1}]
";
    let route = http_route(
        "infra",
        "reference-grant",
        "  parentRefs: [{name: same-namespace}]\n  rules: [{backendRefs: [{name: app-backend-v1, namespace: app, port: 8080}]}]",
    );
    let c = compile(&format!("{grant}{route}"));
    accepted_and_resolved(&c, "infra", "reference-grant", "same-namespace");
    assert_eq!(
        backends(entries(&c.snapshot, "*")[0].1),
        [("service:app/app-backend-v1:8080", 1)]
    );

    // HTTPRouteInvalidCrossNamespaceBackendRef: without the grant, RefNotPermitted and 500.
    let c = compile(&route);
    assert_eq!(
        parent_conditions(&c, "infra", "reference-grant", "same-namespace"),
        vec![
            triple("Accepted", true, "Accepted"),
            triple("ResolvedRefs", false, "RefNotPermitted"),
        ]
    );
    let rule = entries(&c.snapshot, "*")[0].1;
    let refused = unresolved(&c.snapshot, rule);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "unresolved:app/app-backend-v1:8080");
    assert!(
        refused[0].1.contains("no ReferenceGrant"),
        "{}",
        refused[0].1
    );
    assert!(
        c.snapshot.backends.values().all(|b| b.endpoints.is_empty()),
        "no Service of namespace app is used"
    );

    // HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: a grant for another Service.
    let c = compile(&format!(
        "{}{route}",
        grant.replace("app-backend-v1}", "not-the-service}")
    ));
    assert_eq!(
        parent_conditions(&c, "infra", "reference-grant", "same-namespace")[1],
        triple("ResolvedRefs", false, "RefNotPermitted")
    );
}

#[test]
fn http_route_invalid_backend_refs() {
    // HTTPRouteInvalidNonExistentBackendRef and HTTPRouteInvalidBackendRefUnknownKind:
    // requests for the invalid backend get 500.
    let c = compile(&format!(
        "{}{}",
        http_route(
            "infra",
            "nonexistent",
            "  parentRefs: [{name: same-namespace}]\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: nonexistent, port: 8080}]}]",
        ),
        http_route(
            "infra",
            "unknown-kind",
            "  parentRefs: [{name: same-namespace}]\n  hostnames: [b.example.com]\n  rules: [{backendRefs: [{group: unknown.example.com, kind: Whatever, name: x, port: 8080}]}]",
        )
    ));
    assert_eq!(
        parent_conditions(&c, "infra", "nonexistent", "same-namespace")[1],
        triple("ResolvedRefs", false, "BackendNotFound")
    );
    assert_eq!(
        parent_conditions(&c, "infra", "unknown-kind", "same-namespace")[1],
        triple("ResolvedRefs", false, "InvalidKind")
    );
    for host in ["a.example.com", "b.example.com"] {
        let rule = entries(&c.snapshot, host)[0].1;
        assert_eq!(unresolved(&c.snapshot, rule).len(), 1, "{host}");
    }
    let r = report(&c, ObjectKind::HTTPRoute, "infra", "nonexistent");
    diagnostic(
        r,
        "spec.rules[0].backendRefs[0].name",
        Reason::BackendNotFound,
    );
}

#[test]
fn http_route_unsupported_filter_and_extension_ref_plugins() {
    let c = compile(&format!(
        "{}{}{}",
        plugin_in("infra", "hello"),
        http_route(
            "infra",
            "filters",
            "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {value: /plugin}}]
    filters: [{type: ExtensionRef, extensionRef: {group: weir.dev, kind: Plugin, name: hello}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /missing}}]
    filters: [{type: ExtensionRef, extensionRef: {group: weir.dev, kind: Plugin, name: missing}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {value: /cors}}]
    filters: [{type: CORS}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]",
        ),
        ""
    ));
    let r = report(&c, ObjectKind::HTTPRoute, "infra", "filters");
    diagnostic(r, "spec.rules[2].filters[0].type", Reason::UnsupportedValue);
    diagnostic(
        r,
        "spec.rules[1].filters[0].extensionRef.name",
        Reason::PluginNotFound,
    );
    assert_eq!(r.in_snapshot, InSnapshot::Whole);
    // The CORS rule is left out, the rest served: PartiallyInvalid.
    let conditions = parent_conditions(&c, "infra", "filters", "same-namespace");
    assert_eq!(
        conditions,
        vec![
            triple("Accepted", true, "Accepted"),
            triple("PartiallyInvalid", true, "UnsupportedValue"),
            triple("ResolvedRefs", false, "PluginNotFound"),
        ]
    );
    let paths: Vec<String> = entries(&c.snapshot, "*")
        .iter()
        .map(|(p, _)| format!("{p:?}"))
        .collect();
    assert_eq!(paths, [r#"Prefix("/missing")"#, r#"Prefix("/plugin")"#]);
    let entries = entries(&c.snapshot, "*");
    answers_500(entries[0].1);
    let calls: Vec<&str> = entries[1]
        .1
        .plugins
        .iter()
        .map(|p| p.plugin.as_str())
        .collect();
    assert_eq!(calls, ["infra/hello"]);
}

fn plugin_in(namespace: &str, name: &str) -> String {
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{}\n",
        inline_plugin(HELLO_PLUGIN)
    )
}

#[test]
fn http_route_https_listener_and_gateway_secret_reference_grants() {
    let secret = tls_secret("tls-validity-checks-certificate", &["*.example.com"])
        .replace("namespace: shop", "namespace: infra");
    let other_namespace =
        tls_secret("other-cert", &["*.example.com"]).replace("namespace: shop", "namespace: certs");
    let gateway = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: https, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: '*.example.com'
    tls: {certificateRefs: [{name: tls-validity-checks-certificate}]}
  - name: cross
    port: 8443
    protocol: HTTPS
    hostname: other.example.com
    tls: {certificateRefs: [{name: other-cert, namespace: certs}]}
  - name: missing
    port: 9443
    protocol: HTTPS
    tls: {certificateRefs: [{name: nope}]}
";
    let route = http_route(
        "infra",
        "https",
        &format!(
            "  parentRefs: [{{name: https, sectionName: https}}]\n  hostnames: [app.example.com]\n  rules: [{{{TO_V1}}}]"
        ),
    );
    let c = compile(&format!("{secret}{other_namespace}{gateway}{route}"));
    accepted_and_resolved(&c, "infra", "https", "https");
    let certificate = c
        .snapshot
        .certificates
        .iter()
        .find(|cert| cert.secret == "infra/tls-validity-checks-certificate")
        .expect("the listener's certificate is served");
    assert_eq!(certificate.hosts, ["app.example.com"]);
    let https = gateway_status(&c, "infra", "https");
    assert_eq!(
        summary(&https.conditions)[0],
        triple("Accepted", true, "ListenersNotValid")
    );
    let listener = |name: &str| {
        summary(
            &https
                .listeners
                .iter()
                .find(|l| l.name == name)
                .unwrap()
                .conditions,
        )
    };
    assert_eq!(
        listener("https"),
        vec![
            triple("Accepted", true, "Accepted"),
            triple("Conflicted", false, "NoConflicts"),
            triple("Programmed", true, "Programmed"),
            triple("ResolvedRefs", true, "ResolvedRefs"),
        ]
    );
    // GatewaySecretMissingReferenceGrant.
    assert!(listener("cross").contains(&triple("ResolvedRefs", false, "RefNotPermitted")));
    assert!(listener("cross").contains(&triple("Programmed", false, "Invalid")));
    // GatewayInvalidTLSConfiguration.
    assert!(listener("missing").contains(&triple("ResolvedRefs", false, "InvalidCertificateRef")));

    // GatewaySecretReferenceGrantSpecificName.
    let grant = "---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateway-secrets, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: '', kind: Secret, name: other-cert}]
";
    let c = compile(&format!("{secret}{other_namespace}{gateway}{route}{grant}"));
    let https = gateway_status(&c, "infra", "https");
    let cross = https.listeners.iter().find(|l| l.name == "cross").unwrap();
    assert!(summary(&cross.conditions).contains(&triple("ResolvedRefs", true, "ResolvedRefs")));
}

#[test]
fn gateway_listener_conflicts_and_unsupported_protocols() {
    let c = compile(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: conflicts, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: a, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: a-again, port: 80, protocol: HTTP, hostname: a.example.com}
  - {name: b, port: 80, protocol: HTTP, hostname: b.example.com}
  - {name: tcp, port: 9000, protocol: TCP}
",
    );
    let gateway = gateway_status(&c, "infra", "conflicts");
    let listener = |name: &str| {
        summary(
            &gateway
                .listeners
                .iter()
                .find(|l| l.name == name)
                .unwrap()
                .conditions,
        )
    };
    assert!(listener("a").contains(&triple("Conflicted", true, "HostnameConflict")));
    assert!(listener("a-again").contains(&triple("Conflicted", true, "HostnameConflict")));
    assert!(listener("a").contains(&triple("Programmed", false, "Invalid")));
    assert!(listener("b").contains(&triple("Conflicted", false, "NoConflicts")));
    assert!(listener("b").contains(&triple("Programmed", true, "Programmed")));
    assert!(listener("tcp").contains(&triple("Accepted", false, "UnsupportedProtocol")));
    assert_eq!(
        summary(&gateway.conditions)[0],
        triple("Accepted", true, "ListenersNotValid")
    );
}

#[test]
fn gateway_class_and_gateways_of_other_controllers() {
    let c = compile(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: with-parameters, generation: 2}
spec:
  controllerName: weir.dev/gateway-controller
  parametersRef: {group: example.com, kind: Config, name: x}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: infra}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: parameterized, namespace: infra}
spec:
  gatewayClassName: with-parameters
  listeners: [{name: http, port: 80, protocol: HTTP}]
",
    );
    assert!(c.report(ObjectKind::GatewayClass, "", "other").is_none());
    assert!(c.report(ObjectKind::Gateway, "infra", "theirs").is_none());
    let class = report(&c, ObjectKind::GatewayClass, "", "weir");
    let status = status::gateway_class_status(class, None, &now());
    assert_eq!(
        summary(&status.conditions),
        vec![triple("Accepted", true, "Accepted")]
    );
    assert_eq!(status.conditions[0].observed_generation, Some(1));
    let refused = report(&c, ObjectKind::GatewayClass, "", "with-parameters");
    let status = status::gateway_class_status(refused, None, &now());
    assert_eq!(
        summary(&status.conditions),
        vec![triple("Accepted", false, "InvalidParameters")]
    );
    let gateway = gateway_status(&c, "infra", "parameterized");
    assert_eq!(
        summary(&gateway.conditions),
        vec![
            triple("Accepted", false, "Invalid"),
            triple("Programmed", false, "Invalid")
        ]
    );
}

#[test]
fn http_route_observed_generation_bump_keeps_other_controllers_entries() {
    let c = compile(&http_route(
        "infra",
        "generation",
        &format!(
            "  parentRefs: [{{name: same-namespace}}, {{name: elsewhere}}]\n  rules: [{{{TO_V1}}}]"
        ),
    ));
    let report = report(&c, ObjectKind::HTTPRoute, "infra", "generation");
    let parents = &c.gateway_api.parents[&report.object];
    assert_eq!(
        parents.len(),
        1,
        "the parent no weir Gateway is, is not weir's"
    );
    let theirs = weir_crds::gateway::RouteParentStatus {
        parent_ref: serde_json::from_str(r#"{"name": "elsewhere"}"#).unwrap(),
        controller_name: "example.com/other".into(),
        conditions: Vec::new(),
    };
    let first = status::http_route_status(
        report,
        &c.gateway_api,
        Some(&HTTPRouteStatus {
            parents: vec![theirs.clone()],
        }),
        &now(),
    );
    assert_eq!(first.parents.len(), 2);
    assert_eq!(first.parents[0], theirs);
    // The next generation, an hour later: same conditions keep their transition time.
    let mut bumped = report.clone();
    bumped.generation = Some(2);
    let later = Time(Timestamp::from_second(1_700_003_600).unwrap());
    let second = status::http_route_status(&bumped, &c.gateway_api, Some(&first), &later);
    let ours = &second.parents[1];
    assert!(
        ours.conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
    assert!(
        ours.conditions
            .iter()
            .all(|c| c.last_transition_time == now())
    );
}

#[test]
fn http_route_and_route_share_one_host_space() {
    let c = compile(&format!(
        "{}{}",
        http_route(
            "infra",
            "gateway-api",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [shared.example.com]\n  rules: [{{matches: [{{path: {{value: /api}}}}], {TO_V1}}}]"
            ),
        ),
        "---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: later, namespace: infra, creationTimestamp: '2030-01-01T00:00:00Z'}
spec:
  hosts: [shared.example.com]
  rules: [{matches: [{path: {value: /api}}], backends: [{name: infra-backend-v2, port: 8080}]}]
"
    ));
    // Objects read from files without a creation time come after those with one, so the
    // Route (with one) is older here and keeps the path; the HTTPRoute is told.
    let r = report(&c, ObjectKind::HTTPRoute, "infra", "gateway-api");
    assert!(
        messages(r, Reason::Conflicted)[0].contains("Route infra/later"),
        "{r:#?}"
    );
    assert_eq!(
        parent_conditions(&c, "infra", "gateway-api", "same-namespace")[0],
        triple("Accepted", false, "Conflicted")
    );
    assert_eq!(
        backends(entries(&c.snapshot, "shared.example.com")[0].1)[0].0,
        "service:infra/infra-backend-v2:8080"
    );
    // Reported on both: the Route stays Accepted, told of the HTTPRoute.
    let later = route_report(&c, "infra", "later");
    assert_eq!(
        condition(later, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    let note = diagnostic(later, "spec.rules[0].matches[0]", Reason::KeptOverNewer);
    assert!(note.contains("HTTPRoute infra/gateway-api"), "{note}");
}

#[test]
fn listener_ports_must_be_the_proxies_own() {
    let options = weir_crds::Options {
        listener_ports: Some(weir_crds::compile::gateway_api::ListenerPorts {
            http: 80,
            https: 443,
        }),
        ..weir_crds::Options::default()
    };
    let c = compile_yaml_with(BASE, options);
    let all = gateway_status(&c, "infra", "all-namespaces");
    assert!(summary(&all.listeners[0].conditions).contains(&triple(
        "Accepted",
        false,
        "PortUnavailable"
    )));
    assert_eq!(
        summary(&all.conditions)[0],
        triple("Accepted", false, "ListenersNotValid")
    );
    let same = gateway_status(&c, "infra", "same-namespace");
    assert_eq!(
        summary(&same.conditions)[0],
        triple("Accepted", true, "Accepted")
    );
}

#[test]
fn http_route_allowed_routes_by_namespace_selector() {
    let c = compile(&format!(
        "{}{}{}",
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: web, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: app}
",
        http_route(
            "web",
            "labelled",
            "  parentRefs: [{name: backend-namespaces, namespace: infra}]\n  hostnames: [web.example.com]\n  rules: [{backendRefs: [{name: web-backend, port: 8080}]}]",
        ),
        http_route(
            "app",
            "unlabelled",
            "  parentRefs: [{name: backend-namespaces, namespace: infra}]\n  hostnames: [app.example.com]\n  rules: [{backendRefs: [{name: app-backend-v1, port: 8080}]}]",
        ),
    ));
    accepted_and_resolved(&c, "web", "labelled", "backend-namespaces");
    assert_eq!(
        parent_conditions(&c, "app", "unlabelled", "backend-namespaces")[0],
        triple("Accepted", false, "NotAllowedByListeners")
    );
    let hosts: Vec<&str> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|v| v.host.as_str())
        .collect();
    assert_eq!(hosts, ["web.example.com"]);
}

#[test]
fn http_route_partially_invalid_backends_keep_their_share() {
    // Of two backends, one missing: half the requests are answered 500, as the spec asks,
    // and the other half reach the Service that exists.
    let c = compile(&http_route(
        "infra",
        "partly",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 50}
    - {name: missing, port: 8080, weight: 50}",
    ));
    assert_eq!(
        parent_conditions(&c, "infra", "partly", "same-namespace")[1],
        triple("ResolvedRefs", false, "BackendNotFound")
    );
    let rule = entries(&c.snapshot, "*")[0].1;
    assert_eq!(
        backends(rule),
        [
            ("service:infra/infra-backend-v1:8080", 50),
            ("unresolved:infra/missing:8080", 50),
        ]
    );
    assert_eq!(unresolved(&c.snapshot, rule).len(), 1);
}

#[test]
fn http_and_https_listeners_serve_their_own_routes() {
    // The usual setup: the HTTP listener's route redirects to HTTPS, the HTTPS listener's
    // route forwards. Same host and path, no conflict: each serves its own connections.
    let secret = tls_secret("shop-cert", &["shop.example.com"])
        .replace("namespace: shop", "namespace: infra");
    let gateway = "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: infra, generation: 1}
spec:
  gatewayClassName: weir
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: shop.example.com}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    tls: {certificateRefs: [{name: shop-cert}]}
";
    let c = compile(&format!(
        "{secret}{gateway}{}{}",
        http_route(
            "infra",
            "to-https",
            "  parentRefs: [{name: web, sectionName: http}]\n  rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]}]",
        ),
        http_route(
            "infra",
            "app",
            &format!("  parentRefs: [{{name: web, sectionName: https}}]\n  rules: [{{{TO_V1}}}]"),
        ),
    ));
    accepted_and_resolved(&c, "infra", "to-https", "web");
    accepted_and_resolved(&c, "infra", "app", "web");
    let host = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "shop.example.com")
        .unwrap();
    let by_connection: Vec<(Option<bool>, &str)> = host
        .entries
        .iter()
        .map(|e| {
            let kind = match &c.snapshot.rules[&e.rule].action {
                Action::Redirect(_) => "redirect",
                Action::Forward(_) => "forward",
                Action::Respond(_) => "respond",
            };
            (e.tls, kind)
        })
        .collect();
    assert_eq!(by_connection.len(), 2);
    assert!(by_connection.contains(&(Some(false), "redirect")));
    assert!(by_connection.contains(&(Some(true), "forward")));
    let certificate = &c.snapshot.certificates[0];
    assert_eq!(certificate.hosts, ["shop.example.com"]);
}

#[test]
fn http_route_request_mirror() {
    // HTTPRouteRequestMirror (extended), with a percent, a fraction, and a mirror whose
    // Service is missing (reported; the rule still serves).
    let c = compile(&http_route(
        "infra",
        "request-mirror",
        "  parentRefs: [{name: same-namespace}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}, fraction: {numerator: 1, denominator: 3}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: nope, port: 8080}, percent: 10}
    backendRefs: [{name: infra-backend-v1, port: 8080}]",
    ));
    let r = report(&c, ObjectKind::HTTPRoute, "infra", "request-mirror");
    diagnostic(
        r,
        "spec.rules[0].filters[2].requestMirror.backendRef.name",
        Reason::BackendNotFound,
    );
    assert_eq!(r.in_snapshot, InSnapshot::Whole);
    let rule = entries(&c.snapshot, "*")[0].1;
    let forward = forward(rule);
    assert_eq!(backends(rule), [("service:infra/infra-backend-v1:8080", 1)]);
    let mirrors: Vec<(&str, u32, u32)> = forward
        .mirrors
        .iter()
        .map(|m| (m.backend.as_str(), m.numerator, m.denominator))
        .collect();
    assert_eq!(
        mirrors,
        [
            ("service:infra/infra-backend-v2:8080", 100, 100),
            ("service:infra/infra-backend-v3:8080", 1, 3),
            ("unresolved:infra/nope:8080", 10, 100),
        ]
    );
}

#[test]
fn http_route_status_entries_of_another_weir_installation_are_kept_and_stale_ones_removed() {
    let entry = |gateway: &str| weir_crds::gateway::RouteParentStatus {
        parent_ref: serde_json::from_str(&format!(r#"{{"name": "{gateway}"}}"#)).unwrap(),
        controller_name: GATEWAY_CONTROLLER.into(),
        conditions: Vec::new(),
    };
    // `internal` is a Gateway of another weir installation's class (not in these inputs);
    // `all-namespaces` is one of this installation's that the route no longer names.
    let shown = HTTPRouteStatus {
        parents: vec![entry("internal"), entry("all-namespaces")],
    };
    let c = compile(&http_route(
        "infra",
        "moved",
        &format!(
            "  parentRefs: [{{name: same-namespace}}, {{name: internal}}]\n  rules: [{{{TO_V1}}}]"
        ),
    ));
    let moved = report(&c, ObjectKind::HTTPRoute, "infra", "moved");
    let status = status::http_route_status(moved, &c.gateway_api, Some(&shown), &now());
    let names: Vec<&str> = status
        .parents
        .iter()
        .map(|p| p.parent_ref.name.as_str())
        .collect();
    assert_eq!(names, ["internal", "same-namespace"]);

    // A route naming none of this installation's Gateways any more, whose status still
    // has an entry for one: reported, so that the entry is taken out.
    let route = http_route(
        "infra",
        "gone",
        &format!("  parentRefs: [{{name: internal}}]\n  rules: [{{{TO_V1}}}]"),
    )
    .replace(
        "spec:\n",
        "status:\n  parents:\n  - parentRef: {name: all-namespaces}\n    controllerName: weir.dev/gateway-controller\n    conditions: []\nspec:\n",
    );
    let c = compile(&route);
    let gone = report(&c, ObjectKind::HTTPRoute, "infra", "gone");
    assert!(c.gateway_api.parents[&gone.object].is_empty());
    let status = status::http_route_status(gone, &c.gateway_api, Some(&shown), &now());
    let names: Vec<&str> = status
        .parents
        .iter()
        .map(|p| p.parent_ref.name.as_str())
        .collect();
    assert_eq!(names, ["internal"]);
    assert!(c.snapshot.virtual_hosts.is_empty());

    // Without such an entry, a route naming no Gateway of this class is not reported.
    let c = compile(&http_route(
        "infra",
        "unrelated",
        &format!("  parentRefs: [{{name: internal}}]\n  rules: [{{{TO_V1}}}]"),
    ));
    assert!(
        c.report(ObjectKind::HTTPRoute, "infra", "unrelated")
            .is_none()
    );
}

//! The compiler on references: Services and EndpointSlices, TLS Secrets, namespaces.

mod support;

use support::*;
use weir_crds::compile::report::InSnapshot;
use weir_crds::condition::{ConditionType, Reason};
use weir_crds::snapshot::{Action, BackendProtocol, Endpoint};

const SERVICES: &str = "---
apiVersion: v1
kind: Service
metadata: {name: users, namespace: shop}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 9090, appProtocol: kubernetes.io/h2c}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: users-abc
  namespace: shop
  labels: {kubernetes.io/service-name: users}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: grpc, port: 9000}]
endpoints:
- addresses: [10.0.0.2]
  conditions: {ready: true}
- addresses: [10.0.0.1]
- addresses: [10.0.0.9]
  conditions: {ready: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: users-def
  namespace: shop
  labels: {kubernetes.io/service-name: users}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.3]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: users-elsewhere
  namespace: other
  labels: {kubernetes.io/service-name: users}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.9.9.9]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  type: ExternalName
  externalName: Legacy.Example.net
  ports: [{port: 443, appProtocol: https}]
";

fn endpoint(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: host.into(),
        port,
    }
}

#[test]
fn service_backends_resolve_to_ready_endpoints_of_their_port() {
    let c = compile_yaml(&format!(
        "{SERVICES}{}",
        route(
            "r",
            "  rules:
  - matches: [{path: {value: /users}}]
    backends: [{name: users, port: 80}]
  - matches: [{path: {value: /grpc}}]
    backends: [{name: users, port: 9090}]
  - matches: [{path: {value: /legacy}}]
    backends: [{name: legacy, port: 443}]"
        )
    ));
    assert_eq!(route_report(&c, "shop", "r").diagnostics, vec![]);
    let http = &c.snapshot.backends["service:shop/users:80"];
    assert_eq!(http.protocol, BackendProtocol::Http);
    assert_eq!(
        http.endpoints,
        [
            endpoint("10.0.0.1", 8080),
            endpoint("10.0.0.2", 8080),
            endpoint("10.0.0.3", 8080)
        ],
        "ready (or unknown) endpoints of every slice of the Service, none from another namespace"
    );
    let grpc = &c.snapshot.backends["service:shop/users:9090"];
    assert_eq!(grpc.protocol, BackendProtocol::H2c);
    assert_eq!(
        grpc.endpoints,
        [endpoint("10.0.0.1", 9000), endpoint("10.0.0.2", 9000)]
    );
    let legacy = &c.snapshot.backends["service:shop/legacy:443"];
    assert_eq!(legacy.protocol, BackendProtocol::Https);
    assert_eq!(legacy.endpoints, [endpoint("legacy.example.net", 443)]);
    assert_eq!(legacy.server_name.as_deref(), Some("legacy.example.net"));
}

#[test]
fn missing_service_or_port_is_reported_and_only_its_share_fails() {
    let c = compile_yaml(&format!(
        "{SERVICES}{}",
        route(
            "r",
            "  rules:
  - backends: [{name: users, port: 80, weight: 9}, {name: ghost, port: 80}, {name: users, port: 81}]"
        )
    ));
    let report = route_report(&c, "shop", "r");
    assert_eq!(
        diagnostic(
            report,
            "spec.rules[0].backends[1].name",
            Reason::BackendNotFound
        ),
        "Service shop/ghost not found"
    );
    assert_eq!(
        diagnostic(
            report,
            "spec.rules[0].backends[2].port",
            Reason::BackendNotFound
        ),
        "Service shop/users has no port 81 (ports: 80, 9090)"
    );
    assert_eq!(
        condition(report, ConditionType::ResolvedRefs),
        (false, Reason::BackendNotFound)
    );
    assert_eq!(
        condition(report, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(report.in_snapshot, InSnapshot::Whole);
    let Action::Forward(forward) = &c.snapshot.rules["shop/r/0"].action else {
        panic!()
    };
    assert_eq!(forward.backends.len(), 3);
    assert!(
        c.snapshot.backends["service:shop/ghost:80"]
            .endpoints
            .is_empty()
    );
}

#[test]
fn references_stay_inside_the_namespace() {
    // `users` exists in namespace shop only; a Route in namespace other cannot reach it.
    let other_route = "---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: sneaky, namespace: other}
spec:
  tls: {secretName: tls}
  plugins: [{name: p}]
  rules: [{backends: [{name: legacy, port: 443}]}]
";
    let yaml = format!(
        "{SERVICES}{other_route}{}{}",
        plugin("p", &inline_plugin(HELLO_PLUGIN)),
        tls_secret("tls", &["a.example"])
    );
    let c = compile_yaml(&yaml);
    let report = route_report(&c, "other", "sneaky");
    diagnostic(
        report,
        "spec.rules[0].backends[0].name",
        Reason::BackendNotFound,
    );
    diagnostic(report, "spec.tls.secretName", Reason::SecretNotFound);
    diagnostic(report, "spec.plugins[0].name", Reason::PluginNotFound);
}

#[test]
fn tls_secrets_become_certificates_for_the_route_hosts() {
    let yaml = format!(
        "{}{}",
        tls_secret("api-cert", &["api.example.com", "*.apps.example.com"]),
        route(
            "api",
            "  hosts: [api.example.com, '*.apps.example.com', shop.apps.example.com]\n  tls: {secretName: api-cert}\n  rules: [{directResponse: {status: 200}}]"
        )
    );
    let c = compile_yaml(&yaml);
    assert_eq!(route_report(&c, "shop", "api").diagnostics, vec![]);
    let cert = &c.snapshot.certificates[0];
    assert_eq!(
        cert.hosts,
        [
            "*.apps.example.com",
            "api.example.com",
            "shop.apps.example.com"
        ]
    );
    assert_eq!(cert.secret, "shop/api-cert");
    assert_eq!(cert.routes, ["shop/api"]);
    assert!(cert.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(format!("{cert:?}").contains("<redacted>"));
}

/// A certificate serves only the hosts its names cover: TLS clients would refuse it for
/// the others, and a tenant must not get another host's traffic served with its key.
#[test]
fn certificates_serve_only_the_hosts_they_name() {
    let yaml = format!(
        "{}{}",
        tls_secret("api-cert", &["api.example.com"]),
        route(
            "api",
            "  hosts: [api.example.com, www.example.com, '*.example.com']\n  tls: {secretName: api-cert}\n  rules: [{directResponse: {status: 200}}]"
        )
    );
    let c = compile_yaml(&yaml);
    let report = route_report(&c, "shop", "api");
    assert_eq!(
        messages(report, Reason::InvalidCertificate),
        [
            "Secret shop/api-cert: the certificate does not name host *.example.com (TLS clients would refuse it): it is not served with it",
            "Secret shop/api-cert: the certificate does not name host www.example.com (TLS clients would refuse it): it is not served with it",
        ]
    );
    assert_eq!(c.snapshot.certificates[0].hosts, ["api.example.com"]);
    assert_eq!(
        report.in_snapshot,
        InSnapshot::Whole,
        "every host still serves"
    );
}

#[test]
fn bad_or_missing_tls_secrets_are_reported_and_the_route_still_serves() {
    let yaml = format!(
        "{}{}{}",
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: junk, namespace: shop}\nstringData: {tls.crt: not pem, tls.key: nope}\n",
        route(
            "junk",
            "  hosts: [a.example]\n  tls: {secretName: junk}\n  rules: [{directResponse: {status: 200}}]"
        ),
        route(
            "missing",
            "  hosts: [b.example]\n  tls: {secretName: nowhere}\n  rules: [{directResponse: {status: 200}}]"
        ),
    );
    let c = compile_yaml(&yaml);
    let junk = route_report(&c, "shop", "junk");
    let message = diagnostic(junk, "spec.tls.secretName", Reason::InvalidCertificate);
    assert!(
        message.contains("tls.crt holds no PEM certificate"),
        "{message}"
    );
    assert_eq!(junk.in_snapshot, InSnapshot::Whole);
    let missing = route_report(&c, "shop", "missing");
    assert_eq!(
        diagnostic(missing, "spec.tls.secretName", Reason::SecretNotFound),
        "Secret shop/nowhere not found"
    );
    assert_eq!(
        condition(missing, ConditionType::ResolvedRefs),
        (false, Reason::SecretNotFound)
    );
    assert!(c.snapshot.certificates.is_empty());
    assert_eq!(c.snapshot.virtual_hosts.len(), 2);
}

#[test]
fn two_secrets_for_one_host_older_route_wins() {
    let yaml = format!(
        "{}{}{}{}",
        tls_secret("one", &["x.example"]),
        tls_secret("two", &["x.example"]),
        route(
            "a",
            "  hosts: [x.example]\n  tls: {secretName: one}\n  rules: [{matches: [{path: {value: /a}}], directResponse: {status: 200}}]"
        ),
        route(
            "b",
            "  hosts: [x.example]\n  tls: {secretName: two}\n  rules: [{matches: [{path: {value: /b}}], directResponse: {status: 200}}]"
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(c.snapshot.certificates.len(), 1);
    assert_eq!(c.snapshot.certificates[0].secret, "shop/one");
    let message = diagnostic(
        route_report(&c, "shop", "b"),
        "spec.tls.secretName",
        Reason::Conflicted,
    );
    assert!(
        message.contains("Secret shop/one of Route shop/a"),
        "{message}"
    );
}

//! The compiler on Kubernetes Ingresses: rules and backends, class selection, TLS, each
//! ingress-nginx annotation weir maps, canaries, what is refused, and one host space
//! shared with Routes.

mod support;

use support::*;
use weir_crds::compile::report::{InSnapshot, ObjectKind, ObjectReport};
use weir_crds::condition::{ConditionType, Reason};
use weir_crds::route::{LoadBalancer, RetryOn, ValueMatchType};
use weir_crds::snapshot::{
    Action, BackendProtocol, Forward, PathPattern, PathRewrite, RedirectAction, RegexSubstitution,
    Rule, Snapshot, ValueCondition,
};
use weir_crds::{Compilation, GatewayClass, Options};

const SERVICES: &str = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}, {name: grpc, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: web-canary, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
";

/// An Ingress named `name` in namespace `shop`, with `annotations` (YAML map entries
/// indented by 4) and `spec` (indented by 2).
fn ingress(name: &str, annotations: &[(&str, &str)], spec: &str) -> String {
    let mut meta = format!("metadata:\n  name: {name}\n  namespace: shop\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (key, value) in annotations {
            meta.push_str(&format!("    {key}: {value:?}\n"));
        }
    }
    format!("---\napiVersion: networking.k8s.io/v1\nkind: Ingress\n{meta}spec:\n{spec}\n")
}

/// One host, one Prefix path `path` to Service web:80.
fn simple(host: &str, path: &str) -> String {
    format!(
        "  rules:
  - host: {host}
    http:
      paths:
      - {{path: {path}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}"
    )
}

fn nginx(name: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{name}")
}

fn ingress_report<'c>(c: &'c Compilation, name: &str) -> &'c ObjectReport {
    c.report(ObjectKind::Ingress, "shop", name)
        .unwrap_or_else(|| panic!("no report for Ingress shop/{name}"))
}

/// The rules of a host in match order.
fn rules_of<'s>(snapshot: &'s Snapshot, host: &str) -> Vec<&'s Rule> {
    let vhost = snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == host)
        .unwrap_or_else(|| panic!("no virtual host {host}"));
    vhost
        .entries
        .iter()
        .map(|e| &*snapshot.rules[&e.rule])
        .collect()
}

fn forward(rule: &Rule) -> &Forward {
    match &rule.action {
        Action::Forward(forward) => forward,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn redirect(rule: &Rule) -> &RedirectAction {
    match &rule.action {
        Action::Redirect(redirect) => redirect,
        other => panic!("not a redirect: {other:?}"),
    }
}

/// The one forwarding rule of `host`, for an Ingress with one path.
fn only_forward<'s>(snapshot: &'s Snapshot, host: &str) -> (&'s Rule, &'s Forward) {
    let rules = rules_of(snapshot, host);
    assert_eq!(rules.len(), 1, "one rule for {host}");
    (rules[0], forward(rules[0]))
}

fn backends_of(forward: &Forward) -> Vec<(&str, u32)> {
    forward
        .backends
        .iter()
        .map(|b| (b.backend.as_str(), b.weight))
        .collect()
}

#[test]
fn rules_become_one_route_per_host_with_the_ingress_path_types() {
    let yaml = format!(
        "{SERVICES}{}",
        ingress(
            "shop",
            &[],
            "  rules:
  - host: shop.example
    http:
      paths:
      - {path: /healthz, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api/, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /static, pathType: ImplementationSpecific, backend: {service: {name: web, port: {name: http}}}}
  - host: admin.example
    http:
      paths:
      - {pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  defaultBackend: {service: {name: web, port: {number: 80}}}"
        )
    );
    let c = compile_yaml(&yaml);
    let report = ingress_report(&c, "shop");
    assert_eq!(report.diagnostics, vec![]);
    assert_eq!(report.in_snapshot, InSnapshot::Whole);
    let shop = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "shop.example")
        .unwrap();
    let paths: Vec<&PathPattern> = shop.entries.iter().map(|e| &e.path).collect();
    assert_eq!(
        paths,
        [
            &PathPattern::Exact("/healthz".into()),
            &PathPattern::Prefix("/static".into()),
            &PathPattern::Prefix("/api".into()),
            &PathPattern::Prefix("/".into()),
        ],
        "Prefix /api/ is /api, segment-wise; the longest prefix first"
    );
    let api = &c.snapshot.rules[&shop.entries[2].rule];
    assert_eq!(backends_of(forward(api)), [("service:shop/api:8080", 1)]);
    assert_eq!(
        api.route, "shop/ingress:shop:shop.example",
        "the metrics label names the Ingress and host"
    );
    let (_, admin) = only_forward(&c.snapshot, "admin.example");
    assert_eq!(backends_of(admin), [("service:shop/web:80", 1)]);
    let (_, default) = only_forward(&c.snapshot, "*");
    assert_eq!(backends_of(default), [("service:shop/web:80", 1)]);
    assert!(
        rules_of(&c.snapshot, "shop.example")
            .iter()
            .all(|r| r.https_redirect.is_none()),
        "no TLS, no redirect"
    );
}

#[test]
fn only_ingresses_of_weir_s_class_are_compiled_and_reported() {
    let class = |name: &str, controller: &str, default: bool| {
        let annotations = if default {
            "\n  annotations: {ingressclass.kubernetes.io/is-default-class: 'true'}"
        } else {
            ""
        };
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}{annotations}\nspec: {{controller: {controller}}}\n"
        )
    };
    let with_class = |name: &str, class: &str, host: &str| {
        ingress(
            name,
            &[],
            &format!("  ingressClassName: {class}\n{}", simple(host, "/")),
        )
    };
    let base = format!(
        "{SERVICES}{}{}{}{}{}",
        with_class("mine", "weir", "mine.example"),
        with_class("theirs", "nginx", "theirs.example"),
        ingress(
            "legacy",
            &[("kubernetes.io/ingress.class", "weir")],
            &simple("legacy.example", "/")
        ),
        ingress("classless", &[], &simple("classless.example", "/")),
        class("nginx", "k8s.io/ingress-nginx", false),
    );
    let options = Options {
        class: Some(GatewayClass {
            name: "weir".into(),
            default: false,
        }),
        ..Options::default()
    };
    let served = |yaml: &str| -> Vec<String> {
        let c = compile_yaml_with(yaml, options.clone());
        c.reports
            .iter()
            .filter(|r| r.object.kind == ObjectKind::Ingress)
            .map(|r| r.object.name.clone())
            .collect()
    };
    assert_eq!(
        served(&format!(
            "{base}{}",
            class("weir", "weir.dev/ingress-controller", false)
        )),
        ["legacy", "mine"]
    );
    assert_eq!(
        served(&format!(
            "{base}{}",
            class("weir", "weir.dev/ingress-controller", true)
        )),
        ["classless", "legacy", "mine"],
        "the default class also takes Ingresses that name none"
    );
    assert_eq!(
        served(&format!(
            "{base}{}",
            class("weir", "example.com/other", true)
        )),
        ["legacy"],
        "an IngressClass named weir of another controller is not weir's"
    );
    let c = compile_yaml_with(
        &format!(
            "{base}{}",
            class("weir", "weir.dev/ingress-controller", false)
        ),
        options.clone(),
    );
    assert!(
        c.snapshot
            .virtual_hosts
            .iter()
            .all(|v| v.host != "theirs.example")
    );
    // Standalone mode (no class) serves every Ingress.
    let c = compile_yaml(&base);
    assert_eq!(
        c.reports
            .iter()
            .filter(|r| r.object.kind == ObjectKind::Ingress)
            .count(),
        4
    );
}

#[test]
fn tls_hosts_take_their_secret_and_redirect_plain_http() {
    let tls = "  tls:
  - hosts: [shop.example]
    secretName: shop-tls
  - hosts: ['*.wild.example']
    secretName: wild-tls\n";
    let yaml = format!(
        "{SERVICES}{}{}{}{}{}{}{}",
        tls_secret("shop-tls", &["shop.example"]),
        tls_secret("wild-tls", &["*.wild.example"]),
        ingress(
            "secure",
            &[],
            &format!("{tls}{}", simple("shop.example", "/"))
        ),
        ingress(
            "wild",
            &[],
            &format!("{tls}{}", simple("a.wild.example", "/"))
        ),
        ingress(
            "kept-plain",
            &[(&nginx("ssl-redirect"), "false")],
            &format!("{tls}{}", simple("shop.example", "/plain"))
        ),
        ingress(
            "forced",
            &[(&nginx("force-ssl-redirect"), "true")],
            &simple("forced.example", "/")
        ),
        ingress(
            "no-secret",
            &[],
            &format!(
                "  tls: [{{hosts: [bare.example]}}]\n{}",
                simple("bare.example", "/")
            )
        ),
    );
    let c = compile_yaml(&yaml);
    for name in ["secure", "wild", "kept-plain", "forced"] {
        assert_eq!(ingress_report(&c, name).diagnostics, vec![], "{name}");
    }
    let hosts_of = |secret: &str| {
        c.snapshot
            .certificates
            .iter()
            .find(|cert| cert.secret == secret)
            .map(|cert| cert.hosts.clone())
    };
    assert_eq!(hosts_of("shop/shop-tls"), Some(vec!["shop.example".into()]));
    assert_eq!(
        hosts_of("shop/wild-tls"),
        Some(vec!["a.wild.example".into()])
    );
    let shop = rules_of(&c.snapshot, "shop.example");
    let redirect_of = |rule: &Rule| rule.https_redirect.map(|r| (r.status, r.port));
    let by_route = |route: &str| {
        shop.iter()
            .find(|r| r.route.starts_with(route))
            .copied()
            .unwrap()
    };
    assert_eq!(
        redirect_of(by_route("shop/ingress:secure:")),
        Some((308, None))
    );
    assert_eq!(redirect_of(by_route("shop/ingress:kept-plain:")), None);
    let (forced, _) = only_forward(&c.snapshot, "forced.example");
    assert_eq!(redirect_of(forced), Some((308, None)));
    let (wild, _) = only_forward(&c.snapshot, "a.wild.example");
    assert_eq!(redirect_of(wild), Some((308, None)));
    let (bare, _) = only_forward(&c.snapshot, "bare.example");
    assert_eq!(
        redirect_of(bare),
        None,
        "no certificate from the Ingress: no redirect into a TLS handshake weir cannot finish"
    );
}

#[test]
fn rewrite_target_with_use_regex_rewrites_with_the_path_s_groups() {
    let yaml = format!(
        "{SERVICES}{}{}",
        ingress(
            "regex",
            &[
                (&nginx("use-regex"), "true"),
                (&nginx("rewrite-target"), "/$2"),
            ],
            &simple("a.example", "/something(/|$)(.*)")
        ),
        ingress(
            "plain",
            &[(&nginx("rewrite-target"), "/")],
            &simple("b.example", "/app")
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(ingress_report(&c, "regex").diagnostics, vec![]);
    let a = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "a.example")
        .unwrap();
    assert_eq!(
        a.entries[0].path,
        PathPattern::Regex("(?i)(?:/something(/|$)(.*)).*".into()),
        "a case-insensitive expression matched from the start, as ingress-nginx's location ~*"
    );
    let (_, forward) = only_forward(&c.snapshot, "a.example");
    assert_eq!(
        forward.path_rewrite.as_deref(),
        Some(&PathRewrite::Regex(RegexSubstitution {
            pattern: "(?i)^(?:/something(/|$)(.*))".into(),
            substitution: "/${2}".into(),
        }))
    );
    // A rewrite makes the paths expressions even without use-regex, as in ingress-nginx.
    let b = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "b.example")
        .unwrap();
    assert_eq!(
        b.entries[0].path,
        PathPattern::Regex("(?i)(?:/app).*".into())
    );
    let (_, forward) = only_forward(&c.snapshot, "b.example");
    assert_eq!(
        forward.path_rewrite.as_deref(),
        Some(&PathRewrite::Regex(RegexSubstitution {
            pattern: "(?i)^(?:/app)".into(),
            substitution: "/".into(),
        }))
    );
}

#[test]
fn fixed_redirects_replace_the_backend() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        ingress(
            "moved",
            &[(&nginx("permanent-redirect"), "https://new.example/landing")],
            &simple("old.example", "/")
        ),
        ingress(
            "moved-308",
            &[
                (&nginx("permanent-redirect"), "https://new.example:8443/x"),
                (&nginx("permanent-redirect-code"), "308"),
            ],
            &simple("old2.example", "/")
        ),
        ingress(
            "elsewhere",
            &[(&nginx("temporal-redirect"), "http://tmp.example")],
            &simple("busy.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    let only = |host: &str| {
        let rules = rules_of(&c.snapshot, host);
        assert_eq!(rules.len(), 1);
        redirect(rules[0]).clone()
    };
    let moved = only("old.example");
    assert_eq!(
        (
            moved.scheme.as_deref(),
            moved.host.as_deref(),
            moved.port,
            moved.status
        ),
        (Some("https"), Some("new.example"), None, 301)
    );
    assert_eq!(
        moved.path,
        Some(PathRewrite::ReplaceFull("/landing".into()))
    );
    let moved = only("old2.example");
    assert_eq!((moved.port, moved.status), (Some(8443), 308));
    let elsewhere = only("busy.example");
    assert_eq!(
        (
            elsewhere.scheme.as_deref(),
            elsewhere.status,
            elsewhere.path.clone()
        ),
        (
            Some("http"),
            302,
            Some(PathRewrite::ReplaceFull("/".into()))
        )
    );
}

#[test]
fn backend_protocol_body_size_timeouts_and_upstream_vhost_shape_forwarding() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        ingress(
            "grpc",
            &[
                (&nginx("backend-protocol"), "GRPC"),
                (&nginx("proxy-body-size"), "8m"),
                (&nginx("proxy-connect-timeout"), "3"),
                (&nginx("proxy-read-timeout"), "120"),
                (&nginx("proxy-send-timeout"), "90"),
                (&nginx("upstream-vhost"), "internal.web.svc"),
                (&nginx("x-forwarded-prefix"), "/shop"),
            ],
            &simple("grpc.example", "/")
        ),
        ingress(
            "tls-upstream",
            &[
                (&nginx("backend-protocol"), "HTTPS"),
                (&nginx("proxy-body-size"), "0"),
            ],
            &simple("secure.example", "/")
        ),
        ingress(
            "grpcs",
            &[(&nginx("backend-protocol"), "grpcs")],
            &simple("grpcs.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    for name in ["grpc", "tls-upstream", "grpcs"] {
        assert_eq!(ingress_report(&c, name).diagnostics, vec![], "{name}");
    }
    let (_, grpc) = only_forward(&c.snapshot, "grpc.example");
    assert_eq!(backends_of(grpc), [("service:shop/web:80:h2c", 1)]);
    assert_eq!(
        c.snapshot.backends["service:shop/web:80:h2c"].protocol,
        BackendProtocol::H2c
    );
    assert_eq!(grpc.max_body_bytes, Some(8 << 20));
    assert_eq!(
        (
            grpc.timeouts.connect_ms,
            grpc.timeouts.request_ms,
            grpc.timeouts.idle_ms
        ),
        (3_000, 120_000, 120_000),
        "read bounds the wait for headers; the longer of read and send bounds silences"
    );
    assert_eq!(grpc.host_rewrite.as_deref(), Some("internal.web.svc"));
    assert_eq!(
        grpc.request_headers.as_ref().unwrap().set["x-forwarded-prefix"],
        "/shop"
    );
    let (_, secure) = only_forward(&c.snapshot, "secure.example");
    let backend = &c.snapshot.backends[&secure.backends[0].backend];
    assert_eq!(backend.protocol, BackendProtocol::Https);
    assert_eq!(backend.server_name.as_deref(), Some("web.shop.svc"));
    assert_eq!(secure.max_body_bytes, Some(u64::MAX), "0 is no limit");
    let (_, grpcs) = only_forward(&c.snapshot, "grpcs.example");
    assert_eq!(
        c.snapshot.backends[&grpcs.backends[0].backend].protocol,
        BackendProtocol::Https,
        "gRPC over TLS: HTTP/2 chosen by ALPN"
    );
}

#[test]
fn cors_annotations_become_a_cors_policy() {
    let yaml = format!(
        "{SERVICES}{}{}",
        ingress(
            "defaults",
            &[(&nginx("enable-cors"), "true")],
            &simple("a.example", "/")
        ),
        ingress(
            "custom",
            &[
                (&nginx("enable-cors"), "true"),
                (
                    &nginx("cors-allow-origin"),
                    "https://app.example, https://*.tools.example"
                ),
                (&nginx("cors-allow-methods"), "GET, POST"),
                (&nginx("cors-allow-headers"), "X-Token"),
                (&nginx("cors-expose-headers"), "X-Request-Id"),
                (&nginx("cors-max-age"), "600"),
            ],
            &simple("b.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    for name in ["defaults", "custom"] {
        assert_eq!(ingress_report(&c, name).diagnostics, vec![], "{name}");
    }
    let (rule, _) = only_forward(&c.snapshot, "a.example");
    let cors = rule.cors.as_ref().expect("cors");
    assert_eq!(cors.allow_origins, ["*"]);
    assert_eq!(
        cors.allow_methods,
        ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]
    );
    assert!(cors.allow_headers.contains(&"authorization".to_owned()));
    assert!(
        !cors.allow_credentials,
        "browsers refuse credentials with the * origin"
    );
    assert_eq!(cors.max_age_seconds, Some(1_728_000));
    let (rule, _) = only_forward(&c.snapshot, "b.example");
    let cors = rule.cors.as_ref().expect("cors");
    assert_eq!(
        cors.allow_origins,
        ["https://app.example", "https://*.tools.example"]
    );
    assert_eq!(cors.allow_methods, ["GET", "POST"]);
    assert_eq!(cors.allow_headers, ["x-token"]);
    assert_eq!(cors.expose_headers, ["x-request-id"]);
    assert!(cors.allow_credentials);
    assert_eq!(cors.max_age_seconds, Some(600));
}

#[test]
fn source_ranges_client_limits_app_root_and_plugins() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        plugin("audit", &inline_plugin(HELLO_PLUGIN)),
        ingress(
            "guarded",
            &[
                (&nginx("whitelist-source-range"), "10.0.0.0/8, 192.0.2.1"),
                (&nginx("denylist-source-range"), "10.9.0.0/16"),
                (&nginx("limit-rps"), "20"),
                (&nginx("limit-burst-multiplier"), "3"),
                (&nginx("limit-connections"), "4"),
                (&nginx("app-root"), "/dashboard"),
                ("weir.dev/plugins", "audit"),
            ],
            &simple("guarded.example", "/")
        ),
        ingress(
            "allowlist",
            &[(&nginx("allowlist-source-range"), "2001:db8::/32")],
            &simple("v6.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(ingress_report(&c, "guarded").diagnostics, vec![]);
    let rules = rules_of(&c.snapshot, "guarded.example");
    assert_eq!(rules.len(), 2);
    let root = redirect(rules[0]);
    assert_eq!(
        (root.path.clone(), root.status),
        (Some(PathRewrite::ReplaceFull("/dashboard".into())), 302),
        "/ answers with the application root"
    );
    let forwarded = rules[1];
    let ranges = forwarded.source_ranges.as_ref().unwrap();
    assert_eq!(ranges.allow, ["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(ranges.deny, ["10.9.0.0/16"]);
    let limits = forwarded.client_limits.as_ref().unwrap();
    assert_eq!(
        (
            limits.requests_per_second,
            limits.burst,
            limits.concurrent_requests
        ),
        (Some(20), 60, Some(4))
    );
    assert_eq!(forwarded.plugins.len(), 1);
    assert_eq!(forwarded.plugins[0].plugin, "shop/audit");
    let (v6, _) = only_forward(&c.snapshot, "v6.example");
    assert_eq!(v6.source_ranges.as_ref().unwrap().allow, ["2001:db8::/32"]);
}

#[test]
fn canaries_split_the_main_ingress_by_header_cookie_and_weight() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        ingress("main", &[], &simple("shop.example", "/")),
        ingress(
            "canary",
            &[
                (&nginx("canary"), "true"),
                (&nginx("canary-weight"), "10"),
                (&nginx("canary-by-header"), "X-Canary"),
                (&nginx("canary-by-cookie"), "canary"),
            ],
            "  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-canary, port: {number: 80}}}}"
        ),
        ingress(
            "orphan",
            &[
                (&nginx("canary"), "true"),
                (&nginx("canary-by-header"), "X-Canary"),
                (&nginx("canary-by-header-value"), "yes"),
            ],
            &simple("nowhere.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(ingress_report(&c, "main").diagnostics, vec![]);
    let canary = ingress_report(&c, "canary");
    assert_eq!(canary.diagnostics, vec![]);
    assert_eq!(canary.in_snapshot, InSnapshot::Whole);
    let vhost = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host == "shop.example")
        .unwrap();
    /// An entry's header conditions and the backends of its rule, with weights.
    type Described<'a> = (Vec<ValueCondition>, Vec<(&'a str, u32)>);
    let described: Vec<Described<'_>> = vhost
        .entries
        .iter()
        .map(|e| {
            (
                e.headers.clone(),
                backends_of(forward(&c.snapshot.rules[&e.rule])),
            )
        })
        .collect();
    let header = |name: &str, kind, value: &str| ValueCondition {
        name: name.into(),
        kind,
        value: Some(value.into()),
    };
    let main = "service:shop/web:80";
    let canary_backend = "service:shop/web-canary:80";
    assert_eq!(
        described,
        [
            (
                vec![header("x-canary", ValueMatchType::Exact, "always")],
                vec![(canary_backend, 1)]
            ),
            (
                vec![header("x-canary", ValueMatchType::Exact, "never")],
                vec![(main, 1)]
            ),
            (
                vec![header(
                    "cookie",
                    ValueMatchType::Regex,
                    r"(?:.*;\s*)?canary=always(?:\s*;.*)?"
                )],
                vec![(canary_backend, 1)]
            ),
            (
                vec![header(
                    "cookie",
                    ValueMatchType::Regex,
                    r"(?:.*;\s*)?canary=never(?:\s*;.*)?"
                )],
                vec![(main, 1)]
            ),
            (vec![], vec![(main, 90), (canary_backend, 10)]),
        ],
        "header before cookie before weight, as ingress-nginx orders them"
    );
    let orphan = ingress_report(&c, "orphan");
    let message = diagnostic(orphan, "spec.rules[0].http.paths[0]", Reason::NoMainIngress);
    assert!(message.contains("nowhere.example"), "{message}");
    assert_eq!(
        condition(orphan, ConditionType::Accepted),
        (false, Reason::NoMainIngress)
    );
    assert!(
        c.snapshot
            .virtual_hosts
            .iter()
            .all(|v| v.host != "nowhere.example")
    );
}

#[test]
fn unknown_annotations_warn_and_snippets_and_auth_are_refused() {
    let yaml = format!(
        "{SERVICES}{}{}{}{}",
        ingress(
            "buffered",
            &[
                (&nginx("proxy-buffering"), "on"),
                ("weir.dev/plugin", "typo"),
                ("cert-manager.io/cluster-issuer", "letsencrypt"),
            ],
            &simple("buffered.example", "/")
        ),
        ingress(
            "snippet",
            &[(
                &nginx("configuration-snippet"),
                "more_set_headers \"X: y\";"
            )],
            &simple("snippet.example", "/")
        ),
        ingress(
            "basic-auth",
            &[
                (&nginx("auth-type"), "basic"),
                (&nginx("auth-secret"), "users")
            ],
            &simple("auth.example", "/")
        ),
        ingress(
            "bad-value",
            &[(&nginx("proxy-body-size"), "8 megabytes")],
            &simple("bad.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    let buffered = ingress_report(&c, "buffered");
    diagnostic(
        buffered,
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-buffering]",
        Reason::UnsupportedAnnotation,
    );
    diagnostic(
        buffered,
        "metadata.annotations[weir.dev/plugin]",
        Reason::UnsupportedAnnotation,
    );
    assert_eq!(
        buffered.diagnostics.len(),
        2,
        "other tools' annotations are not weir's business"
    );
    assert_eq!(buffered.in_snapshot, InSnapshot::Whole, "still served");
    only_forward(&c.snapshot, "buffered.example");

    let snippet = ingress_report(&c, "snippet");
    let message = diagnostic(
        snippet,
        "metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]",
        Reason::Invalid,
    );
    assert!(
        message.contains("raw nginx configuration is refused"),
        "{message}"
    );
    let auth = ingress_report(&c, "basic-auth");
    let message = diagnostic(
        auth,
        "metadata.annotations[nginx.ingress.kubernetes.io/auth-type]",
        Reason::Invalid,
    );
    assert!(message.contains("never exposed without it"), "{message}");
    let bad = ingress_report(&c, "bad-value");
    diagnostic(
        bad,
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]",
        Reason::Invalid,
    );
    for (report, host) in [
        (snippet, "snippet.example"),
        (auth, "auth.example"),
        (bad, "bad.example"),
    ] {
        assert_eq!(report.in_snapshot, InSnapshot::No);
        assert!(c.snapshot.virtual_hosts.iter().all(|v| v.host != host));
    }
}

#[test]
fn missing_backends_are_reported_with_the_ingress_s_own_fields() {
    let yaml = format!(
        "{SERVICES}{}",
        ingress(
            "broken",
            &[("weir.dev/plugins", "absent")],
            "  rules:
  - host: broken.example
    http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: gone, port: {number: 80}}}}
      - {path: /b, pathType: Prefix, backend: {service: {name: web, port: {name: nope}}}}
      - {path: /c, pathType: Prefix, backend: {service: {name: web, port: {number: 81}}}}"
        )
    );
    let c = compile_yaml(&yaml);
    let report = ingress_report(&c, "broken");
    diagnostic(
        report,
        "spec.rules[0].http.paths[0].backend.service.name",
        Reason::BackendNotFound,
    );
    diagnostic(
        report,
        "spec.rules[0].http.paths[1].backend.service.port.name",
        Reason::BackendNotFound,
    );
    diagnostic(
        report,
        "spec.rules[0].http.paths[2].backend.service.port",
        Reason::BackendNotFound,
    );
    diagnostic(
        report,
        "metadata.annotations[weir.dev/plugins]",
        Reason::PluginNotFound,
    );
    assert_eq!(
        condition(report, ConditionType::ResolvedRefs),
        (false, Reason::BackendNotFound)
    );
}

#[test]
fn ingresses_and_routes_share_one_host_space_and_the_older_keeps_a_match() {
    let created = |yaml: String, at: &str| {
        yaml.replacen(
            "  namespace: shop\n",
            &format!("  namespace: shop\n  creationTimestamp: '{at}'\n"),
            1,
        )
    };
    let route_yaml = "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata:\n  name: api\n  namespace: shop\n  creationTimestamp: '2026-01-01T00:00:00Z'\nspec:\n  hosts: [shop.example]\n  rules: [{matches: [{path: {value: /api}}], directResponse: {status: 204}}]\n";
    let yaml = format!(
        "{SERVICES}{route_yaml}{}",
        created(
            ingress("late", &[], &simple("shop.example", "/api")),
            "2026-02-01T00:00:00Z"
        ),
    );
    let c = compile_yaml(&yaml);
    // Reported on both: the Route keeps the match, Accepted, and is told of the Ingress.
    let api = route_report(&c, "shop", "api");
    let note = diagnostic(api, "spec.rules[0].matches[0]", Reason::KeptOverNewer);
    assert!(note.contains("newer Ingress shop/late"), "{note}");
    let accepted = desired_condition(api, ConditionType::Accepted);
    assert!(accepted.status, "{accepted:?}");
    assert!(
        accepted.message.contains("Ingress shop/late"),
        "{accepted:?}"
    );
    assert_eq!(api.in_snapshot, InSnapshot::Whole);
    let late = ingress_report(&c, "late");
    let message = diagnostic(late, "spec.rules[0].http.paths[0].path", Reason::Conflicted);
    assert!(message.contains("Route shop/api"), "{message}");
    assert_eq!(late.in_snapshot, InSnapshot::No);

    // The other way round: the Ingress is older, so the Route is told.
    let yaml = format!(
        "{SERVICES}{}{}",
        route_yaml.replace("2026-01-01", "2026-03-01"),
        created(
            ingress("early", &[], &simple("shop.example", "/api")),
            "2026-02-01T00:00:00Z"
        ),
    );
    let c = compile_yaml(&yaml);
    let early = ingress_report(&c, "early");
    assert_eq!(
        early
            .diagnostics
            .iter()
            .map(|d| d.reason)
            .collect::<Vec<_>>(),
        [Reason::KeptOverNewer],
        "{early:#?}"
    );
    assert_eq!(
        early.diagnostics[0].field,
        "spec.rules[0].http.paths[0].path"
    );
    let message = diagnostic(
        route_report(&c, "shop", "api"),
        "spec.rules[0].matches[0]",
        Reason::Conflicted,
    );
    assert!(message.contains("Ingress shop/early"), "{message}");
}

#[test]
fn a_canary_header_may_name_its_value_or_a_pattern() {
    let canary = |name: &str, host: &str, by: (&str, &str)| {
        ingress(
            name,
            &[
                (&nginx("canary"), "true"),
                (&nginx("canary-by-header"), "X-Beta"),
                (&nginx(by.0), by.1),
            ],
            &format!(
                "  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web-canary, port: {{number: 80}}}}}}}}"
            ),
        )
    };
    let yaml = format!(
        "{SERVICES}{}{}{}{}",
        ingress("by-value", &[], &simple("value.example", "/")),
        canary(
            "by-value-canary",
            "value.example",
            ("canary-by-header-value", "opted-in")
        ),
        ingress("by-pattern", &[], &simple("pattern.example", "/")),
        canary(
            "by-pattern-canary",
            "pattern.example",
            ("canary-by-header-pattern", "^(beta|rc)$")
        ),
    );
    let c = compile_yaml(&yaml);
    let first_headers = |host: &str| {
        let vhost = c
            .snapshot
            .virtual_hosts
            .iter()
            .find(|v| v.host == host)
            .unwrap();
        (
            vhost.entries[0].headers.clone(),
            backends_of(forward(&c.snapshot.rules[&vhost.entries[0].rule])),
        )
    };
    assert_eq!(
        first_headers("value.example"),
        (
            vec![ValueCondition {
                name: "x-beta".into(),
                kind: ValueMatchType::Exact,
                value: Some("opted-in".into())
            }],
            vec![("service:shop/web-canary:80", 1)]
        )
    );
    assert_eq!(
        first_headers("pattern.example"),
        (
            vec![ValueCondition {
                name: "x-beta".into(),
                kind: ValueMatchType::Regex,
                value: Some("^(beta|rc)$".into())
            }],
            vec![("service:shop/web-canary:80", 1)]
        )
    );
}

#[test]
fn retries_balancing_and_server_aliases() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        ingress(
            "retried",
            &[
                (
                    &nginx("proxy-next-upstream"),
                    "error timeout http_502 http_404 non_idempotent"
                ),
                (&nginx("proxy-next-upstream-tries"), "5"),
                (&nginx("load-balance"), "round_robin"),
                (&nginx("server-alias"), "www.shop.example, Shop.Example.net"),
            ],
            &simple("shop.example", "/")
        ),
        ingress(
            "not-retried",
            &[
                (&nginx("proxy-next-upstream"), "off"),
                (&nginx("load-balance"), "chash"),
            ],
            &simple("once.example", "/")
        ),
        ingress(
            "ewma",
            &[(&nginx("load-balance"), "ewma")],
            &simple("ewma.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    let retried = ingress_report(&c, "retried");
    let message = diagnostic(
        retried,
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-next-upstream]",
        Reason::UnsupportedAnnotation,
    );
    assert!(
        message.starts_with("http_404, non_idempotent not retried"),
        "{message}"
    );
    assert_eq!(retried.diagnostics.len(), 1);
    for host in ["shop.example", "www.shop.example", "shop.example.net"] {
        let (rule, forward) = only_forward(&c.snapshot, host);
        assert_eq!(rule.route, "shop/ingress:retried:shop.example", "{host}");
        let retries = forward.retries.as_ref().expect("retries");
        assert_eq!(retries.attempts, 4, "five tries in all");
        assert_eq!(
            retries.retry_on,
            [RetryOn::ConnectFailure, RetryOn::Reset, RetryOn::Timeout]
        );
        assert_eq!(retries.statuses, [502]);
        assert_eq!(forward.load_balancer, LoadBalancer::RoundRobin);
    }
    let not_retried = ingress_report(&c, "not-retried");
    diagnostic(
        not_retried,
        "metadata.annotations[nginx.ingress.kubernetes.io/load-balance]",
        Reason::UnsupportedAnnotation,
    );
    let (_, once) = only_forward(&c.snapshot, "once.example");
    assert!(once.retries.is_none(), "off: never tried again");
    assert_eq!(once.load_balancer, LoadBalancer::LeastRequest);
    let (_, ewma) = only_forward(&c.snapshot, "ewma.example");
    assert_eq!(ewma.load_balancer, LoadBalancer::LeastRequest);
}

#[test]
fn from_to_www_redirect_sends_the_other_name_to_the_ingress_s_host() {
    let yaml = format!(
        "{SERVICES}{}{}{}",
        tls_secret("both-tls", &["shop.example", "www.shop.example"]),
        ingress(
            "bare",
            &[(&nginx("from-to-www-redirect"), "true")],
            &format!(
                "  tls: [{{hosts: [shop.example, www.shop.example], secretName: both-tls}}]\n{}",
                simple("shop.example", "/")
            )
        ),
        ingress(
            "www",
            &[(&nginx("from-to-www-redirect"), "true")],
            &simple("www.blog.example", "/")
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(ingress_report(&c, "bare").diagnostics, vec![]);
    assert_eq!(ingress_report(&c, "www").diagnostics, vec![]);
    let only_redirect = |host: &str| {
        let rules = rules_of(&c.snapshot, host);
        assert_eq!(rules.len(), 1, "{host}");
        redirect(rules[0]).clone()
    };
    let to_bare = only_redirect("www.shop.example");
    assert_eq!(
        (
            to_bare.host.as_deref(),
            to_bare.status,
            to_bare.scheme.clone(),
            to_bare.path.clone()
        ),
        (Some("shop.example"), 308, None, None),
        "scheme, path and query kept"
    );
    let to_www = only_redirect("blog.example");
    assert_eq!(to_www.host.as_deref(), Some("www.blog.example"));
    let certificate = c
        .snapshot
        .certificates
        .iter()
        .find(|cert| cert.secret == "shop/both-tls")
        .unwrap();
    assert_eq!(
        certificate.hosts,
        ["shop.example", "www.shop.example"],
        "the redirecting name keeps its certificate"
    );
}

#[test]
fn a_canary_without_its_service_is_reported_on_itself_and_takes_no_requests() {
    let yaml = format!(
        "{SERVICES}{}{}",
        ingress("main", &[], &simple("shop.example", "/")),
        ingress(
            "canary",
            &[(&nginx("canary"), "true"), (&nginx("canary-weight"), "50")],
            "  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: not-deployed-yet, port: {number: 80}}}}"
        ),
    );
    let c = compile_yaml(&yaml);
    assert_eq!(ingress_report(&c, "main").diagnostics, vec![]);
    let canary = ingress_report(&c, "canary");
    let message = diagnostic(
        canary,
        "spec.rules[0].http.paths[0].backend.service.name",
        Reason::BackendNotFound,
    );
    assert!(
        message.contains("the canary takes no requests"),
        "{message}"
    );
    let (_, forward) = only_forward(&c.snapshot, "shop.example");
    assert_eq!(backends_of(forward), [("service:shop/web:80", 1)]);
}

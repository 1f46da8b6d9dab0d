//! The Gateway API kinds as weir reads them: manifests in the shapes the Gateway API
//! docs show, the defaults upstream's schema implies, unknown fields refused in files
//! and kept out of the way when read from a cluster, and objects written back as read.

mod support;

use kube::{CustomResourceExt, Resource};
use support::manifests;
use weir_crds::gateway::*;
use weir_crds::manifest::{Document, parse};

const HTTP_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: store
  namespace: shop
spec:
  parentRefs:
  - name: example-gateway
    sectionName: http
  - name: example-gateway
    namespace: infra
    sectionName: https
    port: 443
  hostnames:
  - store.example.com
  - "*.store.example.com"
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /login
    - path:
        type: Exact
        value: /cart
      headers:
      - name: env
        value: canary
      - type: RegularExpression
        name: x-user
        value: "^(alice|bob)$"
      queryParams:
      - name: debug
        value: "1"
      - type: RegularExpression
        name: lang
        value: "^en"
      method: GET
    - path:
        type: RegularExpression
        value: "/item/[0-9]+"
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-store
          value: main
        add:
        - name: x-via
          value: weir
        remove:
        - x-debug
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: x-served-by
          value: weir
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: store-shadow
          port: 8080
        percent: 10
    - type: URLRewrite
      urlRewrite:
        hostname: store.internal
        path:
          type: ReplacePrefixMatch
          replacePrefixMatch: /auth
    - type: ExtensionRef
      extensionRef:
        group: weir.dev
        kind: Plugin
        name: audit
    backendRefs:
    - name: store-v1
      port: 8080
      weight: 90
    - name: store-v2
      namespace: canary
      port: 8080
      weight: 10
      filters:
      - type: RequestMirror
        requestMirror:
          backendRef:
            group: ""
            kind: Service
            name: store-v2-shadow
            port: 8080
          fraction:
            numerator: 1
            denominator: 3
    timeouts:
      request: 10s
      backendRequest: 2s
  - matches:
    - path:
        type: PathPrefix
        value: /old
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: shop.example.com
        path:
          type: ReplaceFullPath
          replaceFullPath: /new
        port: 443
        statusCode: 301
  - backendRefs:
    - name: store-default
      port: 80
"#;

const GATEWAY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: example-gateway
  namespace: infra
spec:
  gatewayClassName: weir
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels:
            shared-gateway-access: "true"
          matchExpressions:
          - key: team
            operator: In
            values: [store, web]
  - name: https
    hostname: "*.example.com"
    protocol: HTTPS
    port: 443
    tls:
      mode: Terminate
      certificateRefs:
      - kind: Secret
        group: ""
        name: example-com-cert
      - name: shared-cert
        namespace: certs
    allowedRoutes:
      kinds:
      - kind: HTTPRoute
  - name: quic
    protocol: example.com/quic
    port: 8443
  addresses:
  - value: 192.0.2.10
  - type: Hostname
    value: gateway.example.com
"#;

const GATEWAY_CLASS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: weir
spec:
  controllerName: weir.dev/gateway-controller
  description: The weir ingress proxy
  parametersRef:
    group: weir.dev
    kind: GatewayConfig
    name: default
    namespace: weir-system
"#;

const REFERENCE_GRANT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: allow-shop-routes
  namespace: canary
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    namespace: shop
  to:
  - group: ""
    kind: Service
  - group: ""
    kind: Secret
    name: shared-cert
"#;

fn http_route(yaml: &str) -> HTTPRoute {
    let mut manifests = manifests(yaml);
    assert_eq!(manifests.http_routes.len(), 1);
    manifests.http_routes.remove(0)
}

/// The error of the only document of `yaml`, as `field: message`.
fn manifest_error(yaml: &str) -> String {
    let documents = parse(yaml);
    assert_eq!(documents.len(), 1);
    match &documents[0] {
        Err(error) => format!("{}{}", error.field, error.message),
        Ok(Document::Object(object)) => panic!("parsed: {object:?}"),
        Ok(Document::Ignored { kind }) => panic!("ignored as {kind}"),
    }
}

#[test]
fn an_http_route_attaches_to_listeners_for_its_hostnames() {
    let route = http_route(HTTP_ROUTE);
    let spec = &route.spec;

    assert_eq!(spec.parent_refs.len(), 2);
    let [same, other] = &spec.parent_refs[..] else {
        unreachable!()
    };
    assert_eq!(same.group_or_default(), "gateway.networking.k8s.io");
    assert_eq!(same.kind_or_default(), "Gateway");
    assert_eq!(same.namespace_or("shop"), "shop");
    assert_eq!(same.section_name.as_deref(), Some("http"));
    assert_eq!(same.port, None);
    assert_eq!(other.namespace_or("shop"), "infra");
    assert_eq!(other.section_name.as_deref(), Some("https"));
    assert_eq!(other.port, Some(443));
    assert_eq!(spec.hostnames, ["store.example.com", "*.store.example.com"]);
    assert_eq!(spec.rules.len(), 3);
    assert_eq!(spec.rules_or_default(), &spec.rules[..]);
}

#[test]
fn http_route_matches_of_each_type() {
    let route = http_route(HTTP_ROUTE);
    let matches = &route.spec.rules[0].matches;
    assert_eq!(matches.len(), 3);

    let prefix = matches[0].path_or_default();
    assert_eq!(prefix.kind_or_default(), &PathMatchType::PathPrefix);
    assert_eq!(prefix.value_or_default(), "/login");
    assert_eq!(matches[0].method, None);

    let exact = &matches[1];
    assert_eq!(
        exact.path_or_default().kind_or_default(),
        &PathMatchType::Exact
    );
    assert_eq!(exact.path_or_default().value_or_default(), "/cart");
    assert_eq!(exact.headers.len(), 2);
    assert_eq!(exact.headers[0].kind, None);
    assert_eq!(exact.headers[0].kind_or_default(), &HeaderMatchType::Exact);
    assert_eq!(
        (
            exact.headers[0].name.as_str(),
            exact.headers[0].value.as_str()
        ),
        ("env", "canary")
    );
    assert_eq!(
        exact.headers[1].kind_or_default(),
        &HeaderMatchType::RegularExpression
    );
    assert_eq!(exact.headers[1].value, "^(alice|bob)$");
    assert_eq!(
        exact.query_params[0].kind_or_default(),
        &QueryParamMatchType::Exact
    );
    assert_eq!(exact.query_params[0].value, "1");
    assert_eq!(
        exact.query_params[1].kind_or_default(),
        &QueryParamMatchType::RegularExpression
    );
    assert_eq!(exact.query_params[1].name, "lang");
    assert_eq!(exact.method, Some(HTTPMethod::Get));

    let regex = matches[2].path_or_default();
    assert_eq!(regex.kind_or_default(), &PathMatchType::RegularExpression);
    assert_eq!(regex.value_or_default(), "/item/[0-9]+");
}

#[test]
fn http_route_filters_of_each_type() {
    let route = http_route(HTTP_ROUTE);
    let filters = &route.spec.rules[0].filters;
    let kinds: Vec<&str> = filters.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestMirror",
            "URLRewrite",
            "ExtensionRef"
        ]
    );

    assert_eq!(filters[0].kind, HTTPRouteFilterType::RequestHeaderModifier);
    let request_headers = filters[0].request_header_modifier.as_ref().unwrap();
    assert_eq!(
        request_headers.set,
        [HTTPHeader {
            name: "x-store".into(),
            value: "main".into()
        }]
    );
    assert_eq!(request_headers.add[0].name, "x-via");
    assert_eq!(request_headers.remove, ["x-debug"]);
    assert_eq!(filters[0].response_header_modifier, None);

    let response_headers = filters[1].response_header_modifier.as_ref().unwrap();
    assert!(response_headers.set.is_empty());
    assert_eq!(response_headers.add[0].value, "weir");

    let mirror = filters[2].request_mirror.as_ref().unwrap();
    assert_eq!(mirror.backend_ref.name, "store-shadow");
    assert_eq!(mirror.backend_ref.group_or_default(), "");
    assert_eq!(mirror.backend_ref.kind_or_default(), "Service");
    assert_eq!(mirror.backend_ref.namespace_or("shop"), "shop");
    assert_eq!(mirror.backend_ref.port, Some(8080));
    assert_eq!(mirror.percent, Some(10));
    assert_eq!(mirror.fraction, None);

    let rewrite = filters[3].url_rewrite.as_ref().unwrap();
    assert_eq!(filters[3].kind, HTTPRouteFilterType::URLRewrite);
    assert_eq!(rewrite.hostname.as_deref(), Some("store.internal"));
    let path = rewrite.path.as_ref().unwrap();
    assert_eq!(path.kind, HTTPPathModifierType::ReplacePrefixMatch);
    assert_eq!(path.replace_prefix_match.as_deref(), Some("/auth"));
    assert_eq!(path.replace_full_path, None);

    assert_eq!(
        filters[4].extension_ref,
        Some(LocalObjectReference {
            group: "weir.dev".into(),
            kind: "Plugin".into(),
            name: "audit".into()
        })
    );

    let redirect_filter = &route.spec.rules[1].filters[0];
    assert_eq!(redirect_filter.kind, HTTPRouteFilterType::RequestRedirect);
    let redirect = redirect_filter.request_redirect.as_ref().unwrap();
    assert_eq!(redirect.scheme, Some(RedirectScheme::Https));
    assert_eq!(redirect.hostname.as_deref(), Some("shop.example.com"));
    let path = redirect.path.as_ref().unwrap();
    assert_eq!(path.kind, HTTPPathModifierType::ReplaceFullPath);
    assert_eq!(path.replace_full_path.as_deref(), Some("/new"));
    assert_eq!(redirect.port, Some(443));
    assert_eq!(redirect.status_code_or_default(), 301);
}

#[test]
fn http_route_weighted_backends_and_timeouts() {
    let route = http_route(HTTP_ROUTE);
    let rule = &route.spec.rules[0];
    let [stable, canary] = &rule.backend_refs[..] else {
        panic!("two backends: {:?}", rule.backend_refs)
    };
    assert_eq!(stable.name, "store-v1");
    assert_eq!(stable.group_or_default(), "");
    assert_eq!(stable.kind_or_default(), "Service");
    assert_eq!(stable.namespace_or("shop"), "shop");
    assert_eq!(stable.port, Some(8080));
    assert_eq!(stable.weight_or_default(), 90);
    assert!(stable.filters.is_empty());
    assert_eq!(canary.namespace_or("shop"), "canary");
    assert_eq!(canary.weight_or_default(), 10);

    let mirror = canary.filters[0].request_mirror.as_ref().unwrap();
    assert_eq!(mirror.backend_ref.group.as_deref(), Some(""));
    assert_eq!(mirror.backend_ref.kind.as_deref(), Some("Service"));
    let fraction = mirror.fraction.as_ref().unwrap();
    assert_eq!(
        (fraction.numerator, fraction.denominator_or_default()),
        (1, 3)
    );

    let timeouts = rule.timeouts.as_ref().unwrap();
    assert_eq!(timeouts.request.as_deref(), Some("10s"));
    assert_eq!(timeouts.backend_request.as_deref(), Some("2s"));
    assert_eq!(route.spec.rules[1].timeouts, None);
}

#[test]
fn http_route_defaults_are_methods_not_values() {
    let route = http_route(HTTP_ROUTE);
    let fallback = &route.spec.rules[2];
    assert!(fallback.matches.is_empty());
    let [only] = fallback.matches_or_default() else {
        panic!("one default match")
    };
    assert_eq!(only.path, None);
    assert_eq!(
        only.path_or_default().kind_or_default(),
        &PathMatchType::PathPrefix
    );
    assert_eq!(only.path_or_default().value_or_default(), "/");
    assert!(only.headers.is_empty() && only.query_params.is_empty());
    assert_eq!(only.method, None);
    assert_eq!(fallback.backend_refs[0].weight, None);
    assert_eq!(fallback.backend_refs[0].weight_or_default(), 1);

    let bare = http_route(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bare}\n\
         spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{path: {value: /x}}, {path: {type: Exact}}]\n",
    );
    let matches = bare.spec.rules[0].matches_or_default();
    assert_eq!(
        matches[0].path_or_default().kind_or_default(),
        &PathMatchType::PathPrefix
    );
    assert_eq!(matches[0].path_or_default().value_or_default(), "/x");
    assert_eq!(
        matches[1].path_or_default().kind_or_default(),
        &PathMatchType::Exact
    );
    assert_eq!(matches[1].path_or_default().value_or_default(), "/");

    let empty = http_route(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: empty}\nspec: {}\n",
    );
    assert!(empty.spec.parent_refs.is_empty() && empty.spec.rules.is_empty());
    let [rule] = empty.spec.rules_or_default() else {
        panic!("one default rule")
    };
    assert!(rule.backend_refs.is_empty() && rule.filters.is_empty());
    assert_eq!(
        rule.matches_or_default()[0]
            .path_or_default()
            .value_or_default(),
        "/"
    );
}

#[test]
fn a_gateway_with_http_and_https_listeners() {
    let gateway = manifests(GATEWAY).gateways.remove(0);
    let spec = &gateway.spec;
    assert_eq!(gateway.metadata.namespace.as_deref(), Some("infra"));
    assert_eq!(spec.gateway_class_name, "weir");
    let [http, https, quic] = &spec.listeners[..] else {
        panic!("three listeners: {:?}", spec.listeners)
    };

    assert_eq!((http.name.as_str(), http.port), ("http", 80));
    assert_eq!(http.protocol, ProtocolType::Http);
    assert_eq!(http.hostname, None);
    assert_eq!(http.tls, None);
    let namespaces = http.allowed_routes_or_default().namespaces_or_default();
    assert_eq!(namespaces.from_or_default(), FromNamespaces::Selector);
    let selector = namespaces.selector.as_ref().unwrap();
    assert_eq!(
        selector.match_labels.as_ref().unwrap()["shared-gateway-access"],
        "true"
    );
    let expression = &selector.match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (expression.key.as_str(), expression.operator.as_str()),
        ("team", "In")
    );
    assert_eq!(
        expression.values.as_deref(),
        Some(&["store".to_owned(), "web".to_owned()][..])
    );
    assert!(http.allowed_routes_or_default().kinds.is_empty());

    assert_eq!(https.protocol, ProtocolType::Https);
    assert_eq!(https.hostname.as_deref(), Some("*.example.com"));
    let tls = https.tls.as_ref().unwrap();
    assert_eq!(tls.mode, Some(TLSModeType::Terminate));
    assert!(tls.options.is_empty());
    let [own, shared] = &tls.certificate_refs[..] else {
        panic!("two certificates: {:?}", tls.certificate_refs)
    };
    assert_eq!(own.name, "example-com-cert");
    assert_eq!(
        (own.group.as_deref(), own.kind.as_deref()),
        (Some(""), Some("Secret"))
    );
    assert_eq!(own.namespace_or("infra"), "infra");
    assert_eq!(
        (shared.group.as_deref(), shared.kind.as_deref()),
        (None, None)
    );
    assert_eq!(shared.group_or_default(), "");
    assert_eq!(shared.kind_or_default(), "Secret");
    assert_eq!(shared.namespace_or("infra"), "certs");
    let allowed = https.allowed_routes.as_ref().unwrap();
    assert_eq!(allowed.namespaces, None);
    assert_eq!(
        allowed.namespaces_or_default().from_or_default(),
        FromNamespaces::Same
    );
    assert_eq!(allowed.kinds[0].kind, HTTP_ROUTE_KIND);
    assert_eq!(allowed.kinds[0].group_or_default(), GROUP);

    assert_eq!(
        quic.protocol,
        ProtocolType::Other("example.com/quic".into())
    );
    assert_eq!(quic.protocol.as_str(), "example.com/quic");
    assert_eq!(quic.allowed_routes, None);
    let defaults = quic.allowed_routes_or_default();
    assert_eq!(
        defaults.namespaces_or_default().from_or_default(),
        FromNamespaces::Same
    );
    assert_eq!(defaults.namespaces_or_default().selector, None);

    let [ip, host] = &spec.addresses[..] else {
        panic!("two addresses: {:?}", spec.addresses)
    };
    assert_eq!(ip.kind, None);
    assert_eq!(ip.kind_or_default(), &AddressType::IPAddress);
    assert_eq!(ip.value.as_deref(), Some("192.0.2.10"));
    assert_eq!(host.kind_or_default(), &AddressType::Hostname);
    assert_eq!(spec.infrastructure, None);
}

#[test]
fn a_passthrough_listener_and_the_default_tls_mode() {
    let gateway = manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: weir\n  listeners:\n\
         \x20 - {name: tls, protocol: TLS, port: 443, tls: {mode: Passthrough}}\n\
         \x20 - {name: https, protocol: HTTPS, port: 8443, tls: {certificateRefs: [{name: c}], options: {example.com/min-version: '1.3'}}}\n",
    )
    .gateways
    .remove(0);
    let [passthrough, https] = &gateway.spec.listeners[..] else {
        unreachable!()
    };
    assert_eq!(passthrough.protocol, ProtocolType::Tls);
    let tls = passthrough.tls.as_ref().unwrap();
    assert_eq!(tls.mode_or_default(), TLSModeType::Passthrough);
    assert!(tls.certificate_refs.is_empty());
    let tls = https.tls.as_ref().unwrap();
    assert_eq!(tls.mode, None);
    assert_eq!(tls.mode_or_default(), TLSModeType::Terminate);
    assert_eq!(tls.options["example.com/min-version"], "1.3");
}

#[test]
fn a_gateway_class_and_a_reference_grant() {
    let class = manifests(GATEWAY_CLASS).gateway_classes.remove(0);
    assert_eq!(class.metadata.name.as_deref(), Some("weir"));
    assert_eq!(class.spec.controller_name, "weir.dev/gateway-controller");
    assert_eq!(
        class.spec.description.as_deref(),
        Some("The weir ingress proxy")
    );
    assert_eq!(
        class.spec.parameters_ref,
        Some(ParametersReference {
            group: "weir.dev".into(),
            kind: "GatewayConfig".into(),
            name: "default".into(),
            namespace: Some("weir-system".into()),
        })
    );
    assert_eq!(class.status, None);

    let grant = manifests(REFERENCE_GRANT).reference_grants.remove(0);
    assert_eq!(grant.metadata.namespace.as_deref(), Some("canary"));
    assert_eq!(
        grant.spec.from,
        [ReferenceGrantFrom {
            group: GROUP.into(),
            kind: HTTP_ROUTE_KIND.into(),
            namespace: "shop".into(),
        }]
    );
    assert_eq!(
        grant.spec.to,
        [
            ReferenceGrantTo {
                group: CORE_GROUP.into(),
                kind: SERVICE_KIND.into(),
                name: None,
            },
            ReferenceGrantTo {
                group: CORE_GROUP.into(),
                kind: SECRET_KIND.into(),
                name: Some("shared-cert".into()),
            },
        ]
    );
}

#[test]
fn the_manifest_reader_collects_each_kind() {
    let all = format!("{GATEWAY_CLASS}---{GATEWAY}---{HTTP_ROUTE}---{REFERENCE_GRANT}");
    let manifests = manifests(&all);
    assert_eq!(
        (
            manifests.gateway_classes.len(),
            manifests.gateways.len(),
            manifests.http_routes.len(),
            manifests.reference_grants.len()
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn an_unknown_field_is_an_error_naming_its_path() {
    let typo = HTTP_ROUTE.replace("      weight: 10\n", "      wieght: 10\n");
    assert_eq!(
        manifest_error(&typo),
        "spec.rules[0].backendRefs[1].wieght: unknown field"
    );

    // A rule's `name` is standard only from v1.4 on.
    let named = HTTP_ROUTE.replace(
        "  - backendRefs:\n",
        "  - name: fallback\n    backendRefs:\n",
    );
    assert_eq!(manifest_error(&named), "spec.rules[2].name: unknown field");

    let typo = GATEWAY.replace(
        "      mode: Terminate\n",
        "      mode: Terminate\n      certificateRef: {name: x}\n",
    );
    assert_eq!(
        manifest_error(&typo),
        "spec.listeners[1].tls.certificateRef: unknown field"
    );

    let typo = GATEWAY_CLASS.replace("  description:", "  descripton:");
    assert_eq!(manifest_error(&typo), "spec.descripton: unknown field");

    let typo = REFERENCE_GRANT.replace("    name: shared-cert\n", "    names: [shared-cert]\n");
    assert_eq!(manifest_error(&typo), "spec.to[1].names: unknown field");
}

#[test]
fn a_closed_enum_refuses_other_values() {
    let error = manifest_error(&GATEWAY.replace("from: Selector", "from: Some"));
    assert!(
        error
            .starts_with("spec.listeners[0].allowedRoutes.namespaces.from: unknown variant `Some`"),
        "{error}"
    );
}

#[test]
fn read_from_a_cluster_unknown_fields_and_values_are_kept_out_of_the_way() {
    // An experimental-channel HTTPRoute: a named rule, a CORS filter, a retry policy.
    let json = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{
                "name": "api",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                "filters": [{"type": "CORS", "cors": {"allowOrigins": ["*"]}}],
                "retry": {"attempts": 2},
                "backendRefs": [{"name": "api", "port": 80}]
            }]
        }
    });
    let route: HTTPRoute = serde_json::from_value(json).unwrap();
    let rule = &route.spec.rules[0];
    assert_eq!(
        rule.filters[0].kind,
        HTTPRouteFilterType::Other("CORS".into())
    );
    assert_eq!(rule.backend_refs[0].name, "api");

    // The manifest reader refuses the same object, naming the first unknown field.
    let yaml = serde_yaml_ng::to_string(&serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"rules": [{"filters": [{"type": "CORS", "cors": {}}]}]}
    }))
    .unwrap();
    assert_eq!(
        manifest_error(&yaml),
        "spec.rules[0].filters[0].cors: unknown field"
    );
}

#[test]
fn open_enums_keep_unknown_values_as_written() {
    for (text, known) in [
        ("PathPrefix", PathMatchType::PathPrefix),
        ("RegularExpression", PathMatchType::RegularExpression),
        ("Prefix", PathMatchType::Other("Prefix".into())),
    ] {
        let parsed: PathMatchType = serde_json::from_value(text.into()).unwrap();
        assert_eq!(parsed, known);
        assert_eq!(parsed.as_str(), text);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), text);
    }
    assert_eq!(HTTPMethod::from("PATCH".to_owned()), HTTPMethod::Patch);
    assert_eq!(String::from(HTTPMethod::Patch), "PATCH");
    assert_eq!(
        ProtocolType::from("tcp".to_owned()),
        ProtocolType::Other("tcp".into())
    );
    assert_eq!(
        RedirectScheme::from("https".to_owned()),
        RedirectScheme::Https
    );
}

#[test]
fn objects_are_written_back_as_read() {
    for yaml in [HTTP_ROUTE, GATEWAY, GATEWAY_CLASS, REFERENCE_GRANT] {
        let read: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        let [Ok(Document::Object(object))] = &parse(yaml)[..] else {
            panic!("one object in {yaml}")
        };
        let written = match object {
            weir_crds::manifest::Object::HTTPRoute(o) => serde_json::to_value(o),
            weir_crds::manifest::Object::Gateway(o) => serde_json::to_value(o),
            weir_crds::manifest::Object::GatewayClass(o) => serde_json::to_value(o),
            weir_crds::manifest::Object::ReferenceGrant(o) => serde_json::to_value(o),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(written.unwrap(), read);
    }
}

#[test]
fn status_as_the_api_server_returns_it_round_trips() {
    let json = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "g", "namespace": "infra", "generation": 2},
        "spec": {"gatewayClassName": "weir", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        "status": {
            "addresses": [{"type": "IPAddress", "value": "192.0.2.10"}],
            "conditions": [{
                "type": "Programmed", "status": "True", "reason": "Programmed", "message": "",
                "observedGeneration": 2, "lastTransitionTime": "2025-01-01T00:00:00Z"
            }],
            "listeners": [{
                "name": "http",
                "supportedKinds": [],
                "attachedRoutes": 0,
                "conditions": []
            }]
        }
    });
    let gateway: Gateway = serde_json::from_value(json.clone()).unwrap();
    let status = gateway.status.as_ref().unwrap();
    assert_eq!(status.conditions[0].type_, "Programmed");
    assert_eq!(status.listeners[0].attached_routes, 0);
    // Required upstream: an empty list is written, not left out.
    assert_eq!(serde_json::to_value(&gateway).unwrap(), json);

    let json = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "gw", "sectionName": "http"}]},
        "status": {"parents": [{
            "parentRef": {"name": "gw", "sectionName": "http"},
            "controllerName": "weir.dev/gateway-controller",
            "conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z"
            }]
        }]}
    });
    let route: HTTPRoute = serde_json::from_value(json.clone()).unwrap();
    let parent = &route.status.as_ref().unwrap().parents[0];
    assert_eq!(parent.parent_ref, route.spec.parent_refs[0]);
    assert_eq!(parent.controller_name, "weir.dev/gateway-controller");
    assert_eq!(serde_json::to_value(&route).unwrap(), json);

    let unreported = HTTPRouteStatus::default();
    assert_eq!(
        serde_json::to_value(&unreported).unwrap(),
        serde_json::json!({"parents": []})
    );
}

#[test]
fn the_kinds_are_the_upstream_resources() {
    assert_eq!(HTTPRoute::api_version(&()), "gateway.networking.k8s.io/v1");
    assert_eq!(HTTPRoute::kind(&()), HTTP_ROUTE_KIND);
    assert_eq!(HTTPRoute::group(&()), GROUP);
    assert_eq!(HTTPRoute::plural(&()), "httproutes");
    assert_eq!(Gateway::kind(&()), GATEWAY_KIND);
    assert_eq!(Gateway::plural(&()), "gateways");
    assert_eq!(GatewayClass::plural(&()), "gatewayclasses");
    assert_eq!(
        ReferenceGrant::api_version(&()),
        "gateway.networking.k8s.io/v1beta1"
    );
    assert_eq!(ReferenceGrant::plural(&()), "referencegrants");

    assert_eq!(GatewayClass::crd().spec.scope, "Cluster");
    for scope in [
        Gateway::crd().spec.scope,
        HTTPRoute::crd().spec.scope,
        ReferenceGrant::crd().spec.scope,
    ] {
        assert_eq!(scope, "Namespaced");
    }
}

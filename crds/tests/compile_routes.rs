//! The compiler on Routes: every kind of match, precedence, actions, and one test per kind
//! of bad input, each naming the object and field.

mod support;

use support::*;
use weir_crds::compile::report::InSnapshot;
use weir_crds::condition::{ConditionType, Reason};
use weir_crds::route::ValueMatchType;
use weir_crds::snapshot::{
    Action, Mirror, PathPattern, PathRewrite, RegexSubstitution, ValueCondition,
};

#[test]
fn every_match_type_is_compiled() {
    let c = compile_yaml(&route(
        "api",
        "  hosts: [api.example.com]
  rules:
  - matches:
    - path: {type: Exact, value: /healthz}
    - path: {type: Prefix, value: /api}
      methods: [POST, GET]
      headers: [{name: X-Canary, value: 'true'}, {name: X-Debug, type: Present}]
      query: [{name: v, type: Regex, value: '[0-9]+'}]
    - path: {type: Template, value: '/users/{id}'}
    - path: {type: Regex, value: '/files/.*\\.png'}
    directResponse: {status: 200, body: ok}",
    ));
    assert_eq!(route_report(&c, "shop", "api").diagnostics, vec![]);
    let host = &c.snapshot.virtual_hosts[0];
    assert_eq!(host.host, "api.example.com");
    let paths: Vec<&PathPattern> = host.entries.iter().map(|e| &e.path).collect();
    assert_eq!(
        paths,
        [
            &PathPattern::Exact("/healthz".into()),
            &PathPattern::Template("/users/{id}".into()),
            &PathPattern::Regex("/files/.*\\.png".into()),
            &PathPattern::Prefix("/api".into()),
        ]
    );
    let prefix = &host.entries[3];
    assert_eq!(prefix.methods, ["GET", "POST"]);
    assert_eq!(
        prefix.headers,
        [
            ValueCondition {
                name: "x-canary".into(),
                kind: ValueMatchType::Exact,
                value: Some("true".into())
            },
            ValueCondition {
                name: "x-debug".into(),
                kind: ValueMatchType::Present,
                value: None
            },
        ]
    );
    assert_eq!(
        prefix.query,
        [ValueCondition {
            name: "v".into(),
            kind: ValueMatchType::Regex,
            value: Some("[0-9]+".into())
        }]
    );
    assert!(host.entries.iter().all(|e| e.rule == "shop/api/0"));
}

#[test]
fn no_match_means_every_path_and_no_host_means_every_host() {
    let c = compile_yaml(&route("all", "  rules: [{directResponse: {status: 204}}]"));
    let host = &c.snapshot.virtual_hosts[0];
    assert_eq!(host.host, "*");
    assert_eq!(host.entries[0].path, PathPattern::Prefix("/".into()));
}

#[test]
fn most_specific_entry_comes_first_across_routes() {
    let yaml = [
        route("a", "  hosts: [x.example]\n  rules: [{matches: [{path: {type: Prefix, value: /a}}], directResponse: {status: 200}}]"),
        route("b", "  hosts: [x.example]\n  rules: [{matches: [{path: {type: Prefix, value: /a/b}}], directResponse: {status: 200}}]"),
        route("c", "  hosts: [x.example]\n  rules: [{matches: [{path: {type: Prefix, value: /a}, methods: [GET]}], directResponse: {status: 200}}]"),
        route("d", "  hosts: [x.example]\n  rules: [{matches: [{path: {type: Exact, value: /a}}], directResponse: {status: 200}}]"),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    let order: Vec<&str> = c.snapshot.virtual_hosts[0]
        .entries
        .iter()
        .map(|e| e.rule.as_str())
        .collect();
    assert_eq!(order, ["shop/d/0", "shop/b/0", "shop/c/0", "shop/a/0"]);
}

#[test]
fn actions_are_lowered_with_defaults() {
    let c = compile_yaml(&route(
        "actions",
        "  rules:
  - matches: [{path: {value: /old}}]
    redirect: {scheme: https, host: new.example.com, replacePrefix: /new, statusCode: 301}
  - matches: [{path: {type: Exact, value: /maintenance}}]
    directResponse: {status: 503, headers: {Retry-After: '120'}, body: down for maintenance}
  - matches: [{path: {value: /api}}]
    backends: [{url: 'http://127.0.0.1:9000/base', weight: 3}, {url: 'h2c://backend.local', weight: 0}]
    rewrite: {stripPrefix: true, host: internal.example}
    timeouts: {request: 1m30s, connect: 250ms}
    retries: {attempts: 3, retryOn: [Reset, ConnectFailure], statuses: [503, 502], backoff: {base: 10ms, max: 1s}}
    loadBalancer: RoundRobin
    maxConcurrentRequests: 100
    outlierDetection: {consecutiveFailures: 3}",
    ));
    assert_eq!(route_report(&c, "shop", "actions").diagnostics, vec![]);
    let rules = &c.snapshot.rules;
    let Action::Redirect(redirect) = &rules["shop/actions/0"].action else {
        panic!("redirect")
    };
    assert_eq!(redirect.status, 301);
    assert_eq!(
        redirect.path,
        Some(PathRewrite::ReplacePrefix("/new".into()))
    );
    assert_eq!(redirect.scheme.as_deref(), Some("https"));

    let Action::Respond(respond) = &rules["shop/actions/1"].action else {
        panic!("respond")
    };
    assert_eq!(respond.status, 503);
    // Sorted by name, as the wire's JSON object is.
    let headers: Vec<(&str, &str)> = respond
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("retry-after", "120")
        ]
    );

    let Action::Forward(forward) = &rules["shop/actions/2"].action else {
        panic!("forward")
    };
    assert_eq!(forward.backends.len(), 1, "a zero weight sends nothing");
    assert_eq!(
        forward.backends[0].backend,
        "url:http://127.0.0.1:9000/base"
    );
    assert_eq!(forward.backends[0].weight, 3);
    assert_eq!(
        forward.path_rewrite.as_deref(),
        Some(&PathRewrite::ReplacePrefix("/".into()))
    );
    assert_eq!(forward.host_rewrite.as_deref(), Some("internal.example"));
    assert_eq!(
        (
            forward.timeouts.request_ms,
            forward.timeouts.idle_ms,
            forward.timeouts.connect_ms
        ),
        (90_000, 60_000, 250)
    );
    let retries = forward.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 3);
    assert_eq!(retries.statuses, [502, 503]);
    assert_eq!(
        (
            retries.backoff_base_ms,
            retries.backoff_max_ms,
            retries.budget_percent
        ),
        (10, 1000, 20)
    );
    assert_eq!(forward.max_concurrent_requests, Some(100));
    assert_eq!(forward.outlier_detection.unwrap().consecutive_failures, 3);
    let backend = &c.snapshot.backends["url:http://127.0.0.1:9000/base"];
    assert_eq!(backend.base_path.as_deref(), Some("/base"));
    assert_eq!(
        (
            backend.endpoints[0].host.as_str(),
            backend.endpoints[0].port
        ),
        ("127.0.0.1", 9000)
    );
    assert!(
        !c.snapshot
            .backends
            .contains_key("url:h2c://backend.local:80"),
        "unused backends are left out"
    );
}

/// WebSocket is the one upgrade a rule allows unless it names others; names lose their
/// case and version; an empty list allows none.
#[test]
fn client_policies_are_lowered_and_shared_by_the_rules_of_a_route() {
    let c = compile_yaml(&route(
        "guarded",
        "  hosts: [a.example]
  httpsRedirect: {}
  sourceRanges: {allow: [10.1.2.3/8, 192.0.2.7], deny: ['2001:db8::1/32']}
  clientLimits: {requestsPerSecond: 10}
  rules:
  - matches: [{path: {value: /api}}]
    backends: [{url: 'http://a'}]
    maxRequestBodyBytes: 1048576
    rewrite: {regex: {pattern: '^/api/(?<rest>.*)', substitution: '/v2/${rest}'}}
    requestHeaders: {set: [{name: X-Env, value: prod}], add: [{name: X-Tag, value: a}], remove: [X-Debug, Cookie]}
  - directResponse: {status: 204}
    responseHeaders: {set: [{name: Cache-Control, value: no-store}]}",
    ));
    assert_eq!(route_report(&c, "shop", "guarded").diagnostics, vec![]);
    let forward = &c.snapshot.rules["shop/guarded/0"];
    let fixed = &c.snapshot.rules["shop/guarded/1"];
    for rule in [forward, fixed] {
        let redirect = rule.https_redirect.expect("https redirect");
        assert_eq!((redirect.status, redirect.port), (308, None));
        let ranges = rule.source_ranges.as_ref().expect("ranges");
        assert_eq!(ranges.allow, ["10.0.0.0/8", "192.0.2.7/32"]);
        assert_eq!(ranges.deny, ["2001:db8::/32"]);
        let limits = rule.client_limits.as_ref().expect("limits");
        assert_eq!(limits.scope, "shop/guarded");
        assert_eq!(
            (
                limits.requests_per_second,
                limits.burst,
                limits.concurrent_requests
            ),
            (Some(10), 50, None),
            "burst defaults to five seconds' worth"
        );
    }
    assert!(std::sync::Arc::ptr_eq(
        forward.client_limits.as_ref().unwrap(),
        fixed.client_limits.as_ref().unwrap()
    ));
    let Action::Forward(forward) = &forward.action else {
        panic!("forward")
    };
    assert_eq!(forward.max_body_bytes, Some(1_048_576));
    let request_headers = forward.request_headers.as_ref().expect("request headers");
    assert_eq!(request_headers.set["x-env"], "prod");
    assert_eq!(request_headers.add["x-tag"], "a");
    assert_eq!(request_headers.remove, ["cookie", "x-debug"]);
    let response_headers = c.snapshot.rules["shop/guarded/1"]
        .response_headers
        .as_ref()
        .expect("response headers");
    assert_eq!(response_headers.set["cache-control"], "no-store");
    assert_eq!(
        forward.path_rewrite.as_deref(),
        Some(&PathRewrite::Regex(RegexSubstitution {
            pattern: "^/api/(?<rest>.*)".into(),
            substitution: "/v2/${rest}".into()
        }))
    );
}

#[test]
fn upgrades_default_to_websocket() {
    let c = compile_yaml(&route(
        "r",
        "  rules:
  - matches: [{path: {value: /a}}]
    backends: [{url: 'http://127.0.0.1:1'}]
  - matches: [{path: {value: /b}}]
    backends: [{url: 'http://127.0.0.1:1'}]
    upgrades: [WebSocket/13, connect-udp, websocket]
    timeouts: {tunnelIdle: 1h}
  - matches: [{path: {value: /c}}]
    backends: [{url: 'http://127.0.0.1:1'}]
    upgrades: []",
    ));
    assert_eq!(route_report(&c, "shop", "r").diagnostics, vec![]);
    let forward = |index: u32| match &c.snapshot.rules[&format!("shop/r/{index}")].action {
        Action::Forward(forward) => forward.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(forward(0).upgrades, ["websocket"]);
    assert_eq!(forward(0).timeouts.tunnel_idle_ms, 300_000);
    assert_eq!(forward(1).upgrades, ["websocket", "connect-udp"]);
    assert_eq!(forward(1).timeouts.tunnel_idle_ms, 3_600_000);
    assert!(forward(2).upgrades.is_empty());
}

#[test]
fn without_a_retry_policy_only_connect_failures_are_retried_once() {
    let c = compile_yaml(&route(
        "r",
        "  rules: [{backends: [{url: 'http://127.0.0.1:1'}]}]",
    ));
    let Action::Forward(forward) = &c.snapshot.rules["shop/r/0"].action else {
        panic!()
    };
    let retries = forward.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 1);
    assert_eq!(
        retries.retry_on,
        [weir_crds::route::RetryOn::ConnectFailure]
    );

    let c = compile_yaml(&route(
        "r",
        "  rules: [{backends: [{url: 'http://127.0.0.1:1'}], retries: {attempts: 0}}]",
    ));
    let Action::Forward(forward) = &c.snapshot.rules["shop/r/0"].action else {
        panic!()
    };
    assert_eq!(forward.retries, None);
}

#[test]
fn mirrors_are_lowered_to_fractions_and_their_backends_kept() {
    let c = compile_yaml(&route(
        "r",
        "  rules:
  - backends: [{url: 'http://primary.local'}]
    mirrors:
    - backend: {url: 'http://shadow.local:8080/base'}
    - backend: {url: 'http://primary.local'}
      percent: 10
    - backend: {url: 'h2c://third.local'}
      fraction: {numerator: 1, denominator: 3}
    - backend: {url: 'http://shadow.local:8080/base'}
      fraction: {numerator: 5}
    - backend: {url: 'http://never.local'}
      percent: 0",
    ));
    assert_eq!(route_report(&c, "shop", "r").diagnostics, vec![]);
    let Action::Forward(forward) = &c.snapshot.rules["shop/r/0"].action else {
        panic!("forward")
    };
    let mirror = |backend: &str, numerator, denominator| Mirror {
        backend: backend.into(),
        numerator,
        denominator,
    };
    assert_eq!(
        forward.mirrors,
        [
            mirror("url:http://shadow.local:8080/base", 100, 100),
            mirror("url:http://primary.local:80", 10, 100),
            mirror("url:h2c://third.local:80", 1, 3),
            mirror("url:http://shadow.local:8080/base", 5, 100),
            mirror("url:http://never.local:80", 0, 100),
        ]
    );
    assert_eq!(forward.backends.len(), 1, "mirrors are not backends");
    let backends: Vec<&str> = c.snapshot.backends.keys().map(String::as_str).collect();
    assert_eq!(
        backends,
        [
            "url:h2c://third.local:80",
            "url:http://never.local:80",
            "url:http://primary.local:80",
            "url:http://shadow.local:8080/base",
        ],
        "a backend only mirrors use is in the snapshot"
    );
}

#[test]
fn mirror_backends_are_resolved_like_backends() {
    let yaml = route(
        "r",
        "  rules:
  - backends: [{url: 'http://primary.local'}]
    mirrors: [{backend: {url: 'http://shadow.local'}}, {backend: {name: ghost, port: 80}}]",
    );
    let c = compile_yaml(&yaml);
    let report = route_report(&c, "shop", "r");
    assert_eq!(
        diagnostic(
            report,
            "spec.rules[0].mirrors[1].backend.name",
            Reason::BackendNotFound
        ),
        "Service shop/ghost not found"
    );
    assert_eq!(
        condition(report, ConditionType::ResolvedRefs),
        (false, Reason::BackendNotFound)
    );
    assert_eq!(
        condition(report, ConditionType::Accepted),
        (true, Reason::Accepted)
    );
    assert_eq!(
        report.in_snapshot,
        InSnapshot::Whole,
        "a mirror that cannot be reached does not keep the rule from serving"
    );
    assert!(
        c.snapshot.backends["service:shop/ghost:80"]
            .endpoints
            .is_empty()
    );

    let c = compile_yaml_with(
        &yaml,
        weir_crds::Options {
            allow_url_backends: false,
            ..Default::default()
        },
    );
    diagnostic(
        route_report(&c, "shop", "r"),
        "spec.rules[0].mirrors[0].backend.url",
        Reason::RefNotPermitted,
    );
    assert!(
        c.snapshot.backends["url:http://shadow.local:80"]
            .endpoints
            .is_empty(),
        "a forbidden URL mirror gets no endpoint"
    );
}

/// One Route per kind of invalid field: each is left out, with `Accepted=False`,
/// reason `Invalid`, naming the field.
#[test]
fn each_kind_of_invalid_route_field_is_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "bad-host",
            "  hosts: [Not_A_Host]\n  rules: [{directResponse: {status: 200}}]",
            "spec.hosts[0]",
        ),
        (
            "unnormal-prefix",
            "  rules: [{matches: [{path: {value: /a//b}}], directResponse: {status: 200}}]",
            "spec.rules[0].matches[0].path.value",
        ),
        (
            "bad-template",
            "  rules: [{matches: [{path: {type: Template, value: '/u/{1}'}}], directResponse: {status: 200}}]",
            "spec.rules[0].matches[0].path.value",
        ),
        (
            "bad-regex",
            "  rules: [{matches: [{path: {type: Regex, value: '/(a'}}], directResponse: {status: 200}}]",
            "spec.rules[0].matches[0].path.value",
        ),
        (
            "bad-header-regex",
            "  rules: [{matches: [{headers: [{name: x, type: Regex, value: '(('}]}], directResponse: {status: 200}}]",
            "spec.rules[0].matches[0].headers[0].value",
        ),
        (
            "header-without-value",
            "  rules: [{matches: [{headers: [{name: x}]}], directResponse: {status: 200}}]",
            "spec.rules[0].matches[0].headers[0].value",
        ),
        (
            "two-actions",
            "  rules: [{directResponse: {status: 200}, redirect: {host: a.example}}]",
            "spec.rules[0]",
        ),
        (
            "no-action",
            "  rules: [{matches: [{path: {value: /}}]}]",
            "spec.rules[0]",
        ),
        (
            "rewrite-on-redirect",
            "  rules: [{redirect: {host: a.example}, rewrite: {stripPrefix: true}}]",
            "spec.rules[0]",
        ),
        (
            "prefix-rewrite-of-regex",
            "  rules: [{matches: [{path: {type: Regex, value: /a.*}}], backends: [{url: 'http://a'}], rewrite: {replacePrefix: /b}}]",
            "spec.rules[0].rewrite.replacePrefix",
        ),
        (
            "two-rewrites",
            "  rules: [{backends: [{url: 'http://a'}], rewrite: {stripPrefix: true, replacePath: /x}}]",
            "spec.rules[0].rewrite",
        ),
        (
            "bad-duration",
            "  rules: [{backends: [{url: 'http://a'}], timeouts: {request: 10 seconds}}]",
            "spec.rules[0].timeouts.request",
        ),
        (
            "h2c-upgrade",
            "  rules: [{backends: [{url: 'http://a'}], upgrades: [websocket, h2c]}]",
            "spec.rules[0].upgrades[1]",
        ),
        (
            "bad-upgrade",
            "  rules: [{backends: [{url: 'http://a'}], upgrades: ['web socket']}]",
            "spec.rules[0].upgrades[0]",
        ),
        (
            "upgrades-on-redirect",
            "  rules: [{redirect: {host: a.example}, upgrades: [websocket]}]",
            "spec.rules[0]",
        ),
        (
            "bad-tunnel-idle",
            "  rules: [{backends: [{url: 'http://a'}], timeouts: {tunnelIdle: forever}}]",
            "spec.rules[0].timeouts.tunnelIdle",
        ),
        (
            "backoff-inverted",
            "  rules: [{backends: [{url: 'http://a'}], retries: {backoff: {base: 1s, max: 10ms}}}]",
            "spec.rules[0].retries.backoff.max",
        ),
        (
            "too-many-retries",
            "  rules: [{backends: [{url: 'http://a'}], retries: {attempts: 50}}]",
            "spec.rules[0].retries.attempts",
        ),
        (
            "credentials-any-origin",
            "  cors: {allowOrigins: ['*'], allowCredentials: true}\n  rules: [{directResponse: {status: 200}}]",
            "spec.cors.allowCredentials",
        ),
        (
            "bad-origin",
            "  cors: {allowOrigins: [example.com]}\n  rules: [{directResponse: {status: 200}}]",
            "spec.cors.allowOrigins[0]",
        ),
        (
            "zero-weights",
            "  rules: [{backends: [{url: 'http://a', weight: 0}]}]",
            "spec.rules[0].backends",
        ),
        (
            "name-and-url",
            "  rules: [{backends: [{url: 'http://a', name: svc, port: 80}]}]",
            "spec.rules[0].backends[0]",
        ),
        (
            "ftp-url",
            "  rules: [{backends: [{url: 'ftp://a'}]}]",
            "spec.rules[0].backends[0].url",
        ),
        (
            "url-credentials",
            "  rules: [{backends: [{url: 'http://user:pw@a'}]}]",
            "spec.rules[0].backends[0].url",
        ),
        (
            "bad-status",
            "  rules: [{directResponse: {status: 99}}]",
            "spec.rules[0].directResponse.status",
        ),
        (
            "bad-response-header",
            "  rules: [{directResponse: {status: 200, headers: {'bad header': x}}}]",
            "spec.rules[0].directResponse.headers.bad header",
        ),
        ("no-rules", "  rules: []", "spec.rules"),
        (
            "host-header-change",
            "  rules: [{backends: [{url: 'http://a'}], requestHeaders: {set: [{name: Host, value: x}]}}]",
            "spec.rules[0].requestHeaders.set[0].name",
        ),
        (
            "header-named-twice",
            "  rules: [{directResponse: {status: 200}, responseHeaders: {set: [{name: x-a, value: '1'}], remove: [X-A]}}]",
            "spec.rules[0].responseHeaders.remove[0]",
        ),
        (
            "request-headers-on-redirect",
            "  rules: [{redirect: {host: a.example}, requestHeaders: {remove: [x-a]}}]",
            "spec.rules[0]",
        ),
        (
            "protocol-of-url",
            "  rules: [{backends: [{url: 'http://a', protocol: HTTPS}]}]",
            "spec.rules[0].backends[0].protocol",
        ),
        (
            "bad-range",
            "  sourceRanges: {allow: [10.0.0.0/8], deny: [10.0.0.0/40]}\n  rules: [{directResponse: {status: 200}}]",
            "spec.sourceRanges.deny[0]",
        ),
        (
            "limits-without-limit",
            "  clientLimits: {burst: 5}\n  rules: [{directResponse: {status: 200}}]",
            "spec.clientLimits",
        ),
        (
            "body-limit-on-redirect",
            "  rules: [{redirect: {host: a.example}, maxRequestBodyBytes: 10}]",
            "spec.rules[0]",
        ),
        (
            "bad-rewrite-regex",
            "  rules: [{backends: [{url: 'http://a'}], rewrite: {regex: {pattern: '/(a', substitution: /b}}}]",
            "spec.rules[0].rewrite.regex.pattern",
        ),
        (
            "rewrite-unknown-group",
            "  rules: [{backends: [{url: 'http://a'}], rewrite: {regex: {pattern: '^/a/(.*)', substitution: '/$2'}}}]",
            "spec.rules[0].rewrite.regex.substitution",
        ),
        (
            "rewrite-relative",
            "  rules: [{backends: [{url: 'http://a'}], rewrite: {regex: {pattern: '^/a/(.*)', substitution: '$1'}}}]",
            "spec.rules[0].rewrite.regex.substitution",
        ),
        (
            "plugin-twice",
            "  plugins: [{name: p}, {name: p}]\n  rules: [{directResponse: {status: 200}}]",
            "spec.plugins[1].name",
        ),
        (
            "mirror-weight",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b', weight: 1}}]}]",
            "spec.rules[0].mirrors[0].backend.weight",
        ),
        (
            "mirror-on-redirect",
            "  rules: [{redirect: {host: a.example}, mirrors: [{backend: {url: 'http://b'}}]}]",
            "spec.rules[0].mirrors",
        ),
        (
            "mirror-on-direct-response",
            "  rules: [{directResponse: {status: 200}, mirrors: [{backend: {url: 'http://b'}}]}]",
            "spec.rules[0].mirrors",
        ),
        (
            "mirror-percent-and-fraction",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, percent: 5, fraction: {numerator: 1}}]}]",
            "spec.rules[0].mirrors[0]",
        ),
        (
            "mirror-percent-above-100",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, percent: 101}]}]",
            "spec.rules[0].mirrors[0].percent",
        ),
        (
            "mirror-fraction-above-one",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, fraction: {numerator: 3, denominator: 2}}]}]",
            "spec.rules[0].mirrors[0].fraction",
        ),
        (
            "mirror-fraction-out-of-0",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}, fraction: {numerator: 0, denominator: 0}}]}]",
            "spec.rules[0].mirrors[0].fraction.denominator",
        ),
        (
            "mirror-name-without-port",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'http://b'}}, {backend: {name: svc}}]}]",
            "spec.rules[0].mirrors[1].backend",
        ),
        (
            "mirror-url",
            "  rules: [{backends: [{url: 'http://a'}], mirrors: [{backend: {url: 'ftp://b'}}]}]",
            "spec.rules[0].mirrors[0].backend.url",
        ),
    ];
    let mut yaml = String::new();
    for (name, spec, _) in cases {
        yaml.push_str(&route(name, spec));
    }
    yaml.push_str(&plugin("p", &inline_plugin(HELLO_PLUGIN)));
    let c = compile_yaml(&yaml);
    for (name, _, field) in cases {
        let report = route_report(&c, "shop", name);
        let message = diagnostic(report, field, Reason::Invalid);
        assert!(!message.is_empty());
        assert_eq!(report.in_snapshot, InSnapshot::No, "{name}");
        assert_eq!(
            condition(report, ConditionType::Accepted),
            (false, Reason::Invalid),
            "{name}"
        );
    }
    assert!(
        c.snapshot.rules.is_empty(),
        "no invalid Route is programmed: {:?}",
        c.snapshot.rules.keys()
    );
}

#[test]
fn diagnostics_explain_themselves() {
    let c = compile_yaml(&route(
        "r",
        "  rules: [{matches: [{path: {value: /a/../b}}], directResponse: {status: 200}}]",
    ));
    let message = diagnostic(
        route_report(&c, "shop", "r"),
        "spec.rules[0].matches[0].path.value",
        Reason::Invalid,
    );
    assert_eq!(message, "\"/a/../b\" is not in normal form; write \"/b\"");
    let conditions = route_report(&c, "shop", "r").conditions();
    assert_eq!(
        conditions[0].message,
        "spec.rules[0].matches[0].path.value: \"/a/../b\" is not in normal form; write \"/b\""
    );
}

/// A Route kept in a compact form whose spec cannot be read back (as a store's copy
/// might be): what the compiler sees through [`weir_crds::RouteSource`].
#[derive(Debug)]
struct Unreadable(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta);

impl weir_crds::RouteSource for Unreadable {
    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.0
    }

    fn class_name(&self) -> Option<&str> {
        None
    }

    fn route(&self) -> Result<std::borrow::Cow<'_, weir_crds::Route>, String> {
        Err("expected value at line 1 column 1".into())
    }
}

#[test]
fn a_route_source_that_cannot_be_read_is_reported_and_the_rest_served() {
    let m = manifests(&route(
        "ok",
        "  hosts: [ok.example.com]\n  rules: [{directResponse: {status: 200}}]",
    ));
    let broken = Unreadable(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some("broken".into()),
        namespace: Some("shop".into()),
        generation: Some(2),
        ..Default::default()
    });
    let mut inputs = m.inputs();
    inputs.routes.push(&broken);
    let c = weir_crds::compile(&inputs);
    let report = route_report(&c, "shop", "broken");
    assert_eq!(report.generation, Some(2));
    assert_eq!(report.in_snapshot, InSnapshot::No);
    assert_eq!(
        diagnostic(report, "spec", Reason::Invalid),
        "the stored Route cannot be read: expected value at line 1 column 1"
    );
    assert_eq!(
        route_report(&c, "shop", "ok").in_snapshot,
        InSnapshot::Whole
    );
    assert_eq!(c.snapshot.rules.len(), 1);
}

#[test]
fn url_backends_can_be_forbidden() {
    let m = manifests(&route(
        "r",
        "  rules: [{backends: [{url: 'http://169.254.169.254'}]}]",
    ));
    let mut inputs = m.inputs();
    inputs.options.allow_url_backends = false;
    let c = weir_crds::compile(&inputs);
    let report = route_report(&c, "shop", "r");
    diagnostic(
        report,
        "spec.rules[0].backends[0].url",
        Reason::RefNotPermitted,
    );
    assert_eq!(
        condition(report, ConditionType::ResolvedRefs),
        (false, Reason::RefNotPermitted)
    );
    let backend = c.snapshot.backends.values().next().unwrap();
    assert!(
        backend.endpoints.is_empty(),
        "the forbidden URL gets no endpoint"
    );
}

#[test]
fn conflicting_routes_older_wins_and_loser_is_told() {
    let yaml = "---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: newer, namespace: b, creationTimestamp: '2026-02-01T00:00:00Z'}
spec:
  hosts: [shop.example]
  rules:
  - matches: [{path: {value: /cart}}, {path: {value: /other}}]
    directResponse: {status: 201}
---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: older, namespace: a, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  hosts: [shop.example]
  # Namespace a owns the host and shares it with b; their matches still conflict.
  allowedNamespaces: [b]
  rules: [{matches: [{path: {value: /cart}}], directResponse: {status: 200}}]
";
    let c = compile_yaml(yaml);
    assert_eq!(route_report(&c, "a", "older").diagnostics, vec![]);
    assert_eq!(
        route_report(&c, "a", "older").in_snapshot,
        InSnapshot::Whole
    );
    let loser = route_report(&c, "b", "newer");
    let message = diagnostic(loser, "spec.rules[0].matches[0]", Reason::Conflicted);
    assert!(message.contains("Route a/older"), "{message}");
    assert_eq!(
        condition(loser, ConditionType::Accepted),
        (false, Reason::Conflicted)
    );
    assert_eq!(
        loser.in_snapshot,
        InSnapshot::Partly,
        "its other match still serves"
    );
    let entries: Vec<(&PathPattern, &str)> = c.snapshot.virtual_hosts[0]
        .entries
        .iter()
        .map(|e| (&e.path, e.rule.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            (&PathPattern::Prefix("/other".into()), "b/newer/0"),
            (&PathPattern::Prefix("/cart".into()), "a/older/0")
        ]
    );
}

#[test]
fn a_route_with_two_hosts_loses_its_matches_on_one_and_keeps_them_on_the_other() {
    let yaml = "---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: newer, namespace: b, creationTimestamp: '2026-02-01T00:00:00Z'}
spec:
  hosts: [one.example, two.example]
  rules:
  - matches: [{path: {value: /pay}}, {path: {value: /cart}}, {path: {value: /help}}]
    directResponse: {status: 201}
---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: older, namespace: a, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  hosts: [one.example]
  allowedNamespaces: [b]
  rules:
  - matches: [{path: {value: /cart}}, {path: {value: /pay}}]
    directResponse: {status: 200}
";
    let c = compile_yaml(yaml);
    let loser = route_report(&c, "b", "newer");
    let conflicts: Vec<(&str, &str)> = loser
        .diagnostics
        .iter()
        .map(|d| (d.field.as_str(), d.message.as_str()))
        .collect();
    let message = "host one.example: the same match is claimed by Route a/older, which takes \
                   precedence (older, or as old and first by namespace/name)";
    assert_eq!(
        conflicts,
        [
            ("spec.rules[0].matches[0]", message),
            ("spec.rules[0].matches[1]", message)
        ],
        "told in the order of its matches"
    );
    assert_eq!(loser.in_snapshot, InSnapshot::Partly);
    assert_eq!(route_report(&c, "a", "older").diagnostics, vec![]);
    let entries = |host: &str| -> Vec<(String, String)> {
        let vhost = c.snapshot.virtual_hosts.iter().find(|h| h.host == host);
        vhost
            .unwrap_or_else(|| panic!("no virtual host {host}"))
            .entries
            .iter()
            .map(|e| (format!("{:?}", e.path), e.rule.clone()))
            .collect()
    };
    let pair = |path: &str, rule: &str| {
        (
            format!("{:?}", PathPattern::Prefix(path.into())),
            rule.to_owned(),
        )
    };
    assert_eq!(
        entries("one.example"),
        [
            pair("/cart", "a/older/0"),
            pair("/help", "b/newer/0"),
            pair("/pay", "a/older/0")
        ],
        "longer paths first, then the older Route"
    );
    assert_eq!(
        entries("two.example"),
        [
            pair("/cart", "b/newer/0"),
            pair("/help", "b/newer/0"),
            pair("/pay", "b/newer/0")
        ],
        "every match is kept on the host nobody else claims"
    );
}

#[test]
fn same_age_conflicts_go_to_namespace_then_name_order() {
    let yaml = [
        route(
            "zeta",
            "  hosts: [x.example]\n  rules: [{directResponse: {status: 201}}]",
        ),
        route(
            "alpha",
            "  hosts: [x.example]\n  rules: [{directResponse: {status: 200}}]",
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    diagnostic(
        route_report(&c, "shop", "zeta"),
        "spec.rules[0].matches",
        Reason::Conflicted,
    );
    assert_eq!(route_report(&c, "shop", "zeta").in_snapshot, InSnapshot::No);
    assert_eq!(c.snapshot.virtual_hosts[0].entries[0].rule, "shop/alpha/0");
}

#[test]
fn different_methods_or_hosts_do_not_conflict() {
    let yaml = [
        route("get", "  hosts: [x.example]\n  rules: [{matches: [{methods: [GET]}], directResponse: {status: 200}}]"),
        route("post", "  hosts: [x.example]\n  rules: [{matches: [{methods: [POST]}], directResponse: {status: 200}}]"),
        route("other-host", "  hosts: [y.example]\n  rules: [{matches: [{methods: [GET]}], directResponse: {status: 200}}]"),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    for name in ["get", "post", "other-host"] {
        assert_eq!(route_report(&c, "shop", name).diagnostics, vec![], "{name}");
    }
}

#[test]
fn wildcard_hosts_are_their_own_virtual_hosts() {
    let c = compile_yaml(&route(
        "w",
        "  hosts: ['*.example.com', API.example.com]\n  rules: [{directResponse: {status: 200}}]",
    ));
    // Upper case is refused by the schema, like the API server would.
    diagnostic(
        route_report(&c, "shop", "w"),
        "spec.hosts[1]",
        Reason::Invalid,
    );
    let c = compile_yaml(&route(
        "w",
        "  hosts: ['*.example.com', api.example.com]\n  rules: [{directResponse: {status: 200}}]",
    ));
    let hosts: Vec<&str> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|h| h.host.as_str())
        .collect();
    assert_eq!(hosts, ["*.example.com", "api.example.com"]);
}

#[test]
fn a_gateway_class_compiles_and_reports_only_its_own_objects() {
    let yaml = [
        route(
            "public",
            "  hosts: [www.example]\n  rules: [{directResponse: {status: 200}}]",
        ),
        route(
            "internal",
            "  className: internal\n  hosts: [admin.example]\n  plugins: [{name: shared}, {name: audit}]\n  rules: [{directResponse: {status: 200}}]",
        ),
        route(
            "borrows",
            "  className: internal\n  hosts: [ops.example]\n  plugins: [{name: public-only}]\n  rules: [{directResponse: {status: 200}}]",
        ),
        plugin("shared", &inline_plugin(HELLO_PLUGIN)),
        plugin(
            "audit",
            &format!("  className: internal\n{}", inline_plugin(HELLO_PLUGIN)),
        ),
        plugin(
            "public-only",
            &format!("  className: weir\n{}", inline_plugin(HELLO_PLUGIN)),
        ),
    ]
    .concat();
    let m = manifests(&yaml);
    let compile_for = |name: &str, default: bool| {
        let mut inputs = m.inputs();
        inputs.options.class = Some(weir_crds::GatewayClass {
            name: name.into(),
            default,
        });
        weir_crds::compile(&inputs)
    };
    let hosts = |c: &weir_crds::Compilation| -> Vec<String> {
        c.snapshot
            .virtual_hosts
            .iter()
            .map(|h| h.host.clone())
            .collect()
    };
    let reported = |c: &weir_crds::Compilation| -> Vec<String> {
        c.reports.iter().map(|r| r.object.to_string()).collect()
    };

    // The default gateway: class-less objects and its own class; it reports on the
    // shared Plugin, never on the internal gateway's objects.
    let public = compile_for("weir", true);
    assert_eq!(hosts(&public), ["www.example"]);
    assert_eq!(
        reported(&public),
        [
            "Route shop/public",
            "Plugin shop/public-only",
            "Plugin shop/shared"
        ]
    );

    // The internal gateway: its own Routes, running its own and shared Plugins, but not
    // another class's, and said so; it reports on none of the shared objects.
    let internal = compile_for("internal", false);
    assert_eq!(hosts(&internal), ["admin.example"]);
    assert_eq!(
        reported(&internal),
        [
            "Route shop/borrows",
            "Route shop/internal",
            "Plugin shop/audit"
        ]
    );
    let message = diagnostic(
        route_report(&internal, "shop", "borrows"),
        "spec.plugins[0].name",
        Reason::PluginNotFound,
    );
    assert!(message.contains("gateway class \"weir\""), "{message}");
    let chain = &internal
        .snapshot
        .rules
        .values()
        .next()
        .expect("the internal Route's rule")
        .plugins;
    assert_eq!(
        chain.iter().map(|c| c.plugin.as_str()).collect::<Vec<_>>(),
        ["shop/shared", "shop/audit"]
    );

    // No class (standalone): everything.
    let all = weir_crds::compile(&m.inputs());
    assert_eq!(all.snapshot.virtual_hosts.len(), 3);
}

const OWNERSHIP: &str = "---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: shop, namespace: shop, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  hosts: [shop.example, '*.apps.example']
  rules: [{directResponse: {status: 200, body: shop}}]
---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: steal, namespace: mallory, creationTimestamp: '2026-02-01T00:00:00Z'}
spec:
  hosts: [shop.example, admin.apps.example, mallory.example]
  rules: [{matches: [{path: {value: /admin}}], directResponse: {status: 200, body: mallory}}]
---
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: late-owner, namespace: late, creationTimestamp: '2026-03-01T00:00:00Z'}
spec:
  hosts: [mallory.example]
  rules: [{directResponse: {status: 200, body: late}}]
";

/// A host belongs to the namespace of the oldest Route claiming it (or an older wildcard
/// covering it): another namespace's Route for it is `HostNotOwned`, and its other hosts
/// still serve.
#[test]
fn hosts_belong_to_the_namespace_that_claimed_them_first() {
    let c = compile_yaml(OWNERSHIP);
    assert_eq!(route_report(&c, "shop", "shop").diagnostics, vec![]);
    let thief = route_report(&c, "mallory", "steal");
    assert!(thief.diagnostics.iter().all(|d| d.field == "spec.hosts"));
    assert_eq!(
        messages(thief, Reason::HostNotOwned),
        [
            "host admin.apps.example belongs to namespace shop (its Route shop/shop claimed *.apps.example first); \
             a Route there for this host can let namespace mallory in with allowedNamespaces",
            "host shop.example belongs to namespace shop (its Route shop/shop claimed shop.example first); \
             a Route there for this host can let namespace mallory in with allowedNamespaces",
        ]
    );
    assert_eq!(
        condition(thief, ConditionType::Accepted),
        (false, Reason::HostNotOwned)
    );
    assert_eq!(
        thief.in_snapshot,
        InSnapshot::Partly,
        "mallory.example serves"
    );
    let late = route_report(&c, "late", "late-owner");
    diagnostic(late, "spec.hosts", Reason::HostNotOwned);
    let hosts: Vec<(&str, Vec<&str>)> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|h| {
            (
                h.host.as_str(),
                h.entries.iter().map(|e| e.rule.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("*.apps.example", vec!["shop/shop/0"]),
            ("mallory.example", vec!["mallory/steal/0"]),
            ("shop.example", vec!["shop/shop/0"]),
        ]
    );
}

/// The owner lets other namespaces in with `allowedNamespaces` on its Route for the host.
#[test]
fn owners_delegate_hosts_with_allowed_namespaces() {
    let yaml = OWNERSHIP.replace(
        "  hosts: [shop.example, '*.apps.example']\n",
        "  hosts: [shop.example, '*.apps.example']\n  allowedNamespaces: [mallory]\n",
    );
    let c = compile_yaml(&yaml);
    assert_eq!(route_report(&c, "mallory", "steal").diagnostics, vec![]);
    let shop = c
        .snapshot
        .virtual_hosts
        .iter()
        .find(|h| h.host == "shop.example")
        .unwrap();
    let rules: Vec<&str> = shop.entries.iter().map(|e| e.rule.as_str()).collect();
    assert_eq!(rules, ["mallory/steal/0", "shop/shop/0"]);
    let everyone = OWNERSHIP.replace(
        "  hosts: [shop.example, '*.apps.example']\n",
        "  hosts: [shop.example, '*.apps.example']\n  allowedNamespaces: ['*']\n",
    );
    let c = compile_yaml(&everyone);
    assert_eq!(route_report(&c, "mallory", "steal").diagnostics, vec![]);
}

/// Every host and wildcards at a public suffix are claims for trusted namespaces only.
#[test]
fn broad_claims_need_a_trusted_namespace() {
    let yaml = [
        route("catch-all", "  rules: [{directResponse: {status: 404}}]"),
        route("dot-com", "  hosts: ['*.com', '*.co.uk', '*.example.com']\n  rules: [{directResponse: {status: 200}}]"),
    ]
    .concat();
    let trusting = |namespaces: &[&str]| weir_crds::Options {
        trusted_namespaces: Some(namespaces.iter().map(|n| n.to_string()).collect()),
        ..weir_crds::Options::default()
    };
    let c = compile_yaml_with(&yaml, trusting(&["weir-system"]));
    let catch_all = route_report(&c, "shop", "catch-all");
    let message = diagnostic(catch_all, "spec.hosts", Reason::HostNotPermitted);
    assert!(
        message.starts_with("every host (hosts: []): only namespaces the operator trusts"),
        "{message}"
    );
    assert_eq!(catch_all.in_snapshot, InSnapshot::No);
    let wildcards = route_report(&c, "shop", "dot-com");
    assert_eq!(
        wildcards.diagnostics.len(),
        2,
        "{:?}",
        wildcards.diagnostics
    );
    let hosts: Vec<&str> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|h| h.host.as_str())
        .collect();
    assert_eq!(hosts, ["*.example.com"]);

    let c = compile_yaml_with(&yaml, trusting(&["shop"]));
    assert_eq!(route_report(&c, "shop", "catch-all").diagnostics, vec![]);
    assert_eq!(route_report(&c, "shop", "dot-com").diagnostics, vec![]);
}

//! Routing through a real proxy to real upstreams: precedence, normalization, hosts,
//! conditions, rewrites, fixed responses, redirects, and the 404 for no route.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn most_specific_match_wins_and_paths_are_normalized() {
    let exact = Upstream::named("exact").await;
    let template = Upstream::named("template").await;
    let prefix = Upstream::named("prefix").await;
    let longer = Upstream::named("longer-prefix").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  hosts: [shop.example]
  rules:
  - matches: [{{path: {{type: Prefix, value: /}}}}]
    backends: [{{url: '{}'}}]
  - matches: [{{path: {{type: Prefix, value: /admin}}}}]
    backends: [{{url: '{}'}}]
  - matches: [{{path: {{type: Template, value: '/users/{{id}}'}}}}]
    backends: [{{url: '{}'}}]
  - matches: [{{path: {{type: Exact, value: /users/me}}}}]
    backends: [{{url: '{}'}}]",
                prefix.url(),
                longer.url(),
                template.url(),
                exact.url()
            ),
        ))
        .await;
    let cases = [
        ("/users/me", "exact"),
        ("/users/42", "template"),
        ("/users/42/orders", "prefix"),
        ("/admin/panel", "longer-prefix"),
        ("/adminx", "prefix"),
        ("/public/../admin/x", "longer-prefix"),
        ("//admin", "longer-prefix"),
        ("/%61dmin", "longer-prefix"),
        ("/public/%2e%2e/admin", "longer-prefix"),
        ("/users/./me", "exact"),
    ];
    for (path, expected) in cases {
        let answer = get(&proxy.url(path), "shop.example").await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.text(), expected, "{path}");
    }
    // The upstream receives the normalized path, the one that was routed.
    let seen = longer.requests();
    assert!(
        seen.iter().all(|s| s.uri.starts_with("/admin")),
        "{:?}",
        seen.iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn no_route_is_a_json_404_and_bad_paths_are_400() {
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            "  hosts: [a.example]\n  rules: [{directResponse: {status: 200}}]",
        ))
        .await;
    let answer = get(&proxy.url("/x"), "b.example").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.headers["content-type"], "application/json");
    let body = answer.json();
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["message"], "no route matches b.example/x");
    assert_eq!(
        body["requestId"],
        answer.headers["x-request-id"].to_str().unwrap()
    );

    let answer = get(&proxy.url("/a%5c..%5cadmin"), "a.example").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"], "bad_request");
    proxy.stop().await;
}

#[tokio::test]
async fn hosts_methods_headers_and_query_select_rules() {
    let wild = Upstream::named("wild").await;
    let exact = Upstream::named("exact-host").await;
    let canary = Upstream::named("canary").await;
    let posts = Upstream::named("posts").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&format!(
        "{}{}",
        route("wild", &format!("  hosts: ['*.example.com']\n  rules: [{{backends: [{{url: '{}'}}]}}]", wild.url())),
        route(
            "api",
            &format!(
                "  hosts: [api.example.com]
  rules:
  - matches: [{{path: {{value: /v1}}, headers: [{{name: X-Canary, value: 'yes'}}]}}, {{path: {{value: /v1}}, query: [{{name: canary, type: Present}}]}}]
    backends: [{{url: '{}'}}]
  - matches: [{{path: {{value: /v1}}, methods: [POST]}}]
    backends: [{{url: '{}'}}]
  - matches: [{{path: {{value: /v1}}}}]
    backends: [{{url: '{}'}}]",
                canary.url(),
                posts.url(),
                exact.url()
            )
        )
    )).await;
    let c = client();
    let request = |method: Method, path: &str, host: &str, canary: bool| {
        let mut builder = Request::builder()
            .method(method)
            .uri(proxy.url(path))
            .header("host", host);
        if canary {
            builder = builder.header("x-canary", "yes");
        }
        builder.body(Full::default()).unwrap()
    };
    assert_eq!(
        send(&c, request(Method::GET, "/v1/a", "api.example.com", false))
            .await
            .text(),
        "exact-host"
    );
    assert_eq!(
        send(
            &c,
            request(Method::GET, "/v1/a", "API.Example.com:8080", true)
        )
        .await
        .text(),
        "canary"
    );
    assert_eq!(
        send(
            &c,
            request(Method::GET, "/v1/a?canary", "api.example.com", false)
        )
        .await
        .text(),
        "canary"
    );
    assert_eq!(
        send(&c, request(Method::POST, "/v1/a", "api.example.com", false))
            .await
            .text(),
        "posts"
    );
    assert_eq!(
        send(&c, request(Method::GET, "/other", "api.example.com", false))
            .await
            .text(),
        "wild",
        "falls through to the wildcard"
    );
    assert_eq!(
        send(&c, request(Method::GET, "/", "deep.sub.example.com", false))
            .await
            .text(),
        "wild"
    );
    assert_eq!(
        send(&c, request(Method::GET, "/", "example.com", false))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    proxy.stop().await;
}

#[tokio::test]
async fn rewrites_reach_the_upstream() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules:
  - matches: [{{path: {{value: /api}}}}]
    backends: [{{url: '{0}/base'}}]
    rewrite: {{stripPrefix: true, host: internal.example}}
  - matches: [{{path: {{value: /old}}}}]
    backends: [{{url: '{0}'}}]
    rewrite: {{replacePrefix: /new}}
  - matches: [{{path: {{type: Exact, value: /fixed}}}}]
    backends: [{{url: '{0}'}}]
    rewrite: {{replacePath: /elsewhere}}",
                upstream.url()
            ),
        ))
        .await;
    get(&proxy.url("/api/users?page=2"), "a.example").await;
    get(&proxy.url("/old/x/"), "a.example").await;
    get(&proxy.url("/fixed?q=1"), "a.example").await;
    let seen = upstream.requests();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/base/users?page=2", "/new/x/", "/elsewhere?q=1"]);
    assert_eq!(seen[0].headers["host"], "internal.example");
    assert_eq!(seen[1].headers["host"], "a.example");
    proxy.stop().await;
}

#[tokio::test]
async fn direct_responses_and_redirects_are_answered_by_the_proxy() {
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            "  rules:
  - matches: [{path: {type: Exact, value: /healthz}}]
    directResponse: {status: 200, body: ok, headers: {x-served-by: weir}}
  - matches: [{path: {value: /docs}}]
    redirect: {scheme: https, host: docs.example.com, replacePrefix: /v2, statusCode: 301}
  - matches: [{path: {value: /tmp}}]
    redirect: {path: /moved}",
        ))
        .await;
    let answer = get(&proxy.url("/healthz"), "a.example").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "ok")
    );
    assert_eq!(answer.headers["x-served-by"], "weir");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");

    let answer = get(&proxy.url("/docs/intro?lang=en"), "a.example:8080").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        answer.headers["location"],
        "https://docs.example.com/v2/intro?lang=en"
    );

    let answer = get(&proxy.url("/tmp/x"), "a.example:8080").await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(answer.headers["location"], "http://a.example:8080/moved");
    proxy.stop().await;
}

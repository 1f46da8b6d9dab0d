//! A Route's request policies through a real proxy to real upstreams: the redirect of
//! plain HTTP to HTTPS, client address ranges, limits per client, a rule's own body
//! limit, regular expression rewrites of the path, and header changes.

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::time::Instant;

/// `GET url` with a Host header and more headers.
async fn get_with(url: &str, host: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(url).header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::default()).unwrap()).await
}

fn error_code(answer: &Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_and_tls_is_served() {
    let upstream = Upstream::named("served").await;
    let (secret, cert) = tls_secret("shop.example", "shop-cert");
    let proxy = TestProxy::start(|c| c.tls_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    proxy
        .apply_yaml(&format!(
            "{secret}{}{}",
            route(
                "shop",
                &format!(
                    "  hosts: [shop.example]
  tls: {{secretName: shop-cert}}
  httpsRedirect: {{port: 8443}}
  cors: {{allowOrigins: ['https://app.example']}}
  rules: [{{backends: [{{url: '{}'}}]}}]",
                    upstream.url()
                )
            ),
            route(
                "moved",
                "  hosts: [moved.example]
  httpsRedirect: {statusCode: 301}
  rules: [{directResponse: {status: 200}}]"
            )
        ))
        .await;

    // The request's port is not the HTTPS one: it is left out; the rule's port is named.
    let answer = get(&proxy.url("/a/b?x=1&y=2"), "shop.example:8080").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        answer.headers["location"],
        "https://shop.example:8443/a/b?x=1&y=2"
    );
    // Before CORS: a preflight over plain HTTP is redirected too.
    let preflight = Request::options(proxy.url("/a"))
        .header("host", "shop.example")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(&client(), preflight).await.status,
        StatusCode::PERMANENT_REDIRECT
    );
    let answer = get(&proxy.url("/"), "moved.example").await;
    assert_eq!(answer.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(answer.headers["location"], "https://moved.example/");
    assert!(upstream.requests().is_empty());

    // Over TLS the request is served.
    let (_, _, tls) = tls_connect(&proxy, "shop.example", &cert).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = tokio::time::timeout(
        PATIENCE,
        sender.send_request(
            Request::get("https://shop.example/a/b")
                .body(Full::<bytes::Bytes>::default())
                .unwrap(),
        ),
    )
    .await
    .expect("answer in time")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_may_say_the_client_used_https() {
    let spec = "  httpsRedirect: {}\n  rules: [{directResponse: {status: 200, body: served}}]";
    let behind_lb = TestProxy::start(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    behind_lb.apply_yaml(&route("r", spec)).await;
    let https = [("x-forwarded-proto", "https")];
    let answer = get_with(&behind_lb.url("/p"), "shop.example", &https).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "served");
    let answer = get_with(
        &behind_lb.url("/p?q"),
        "shop.example",
        &[("x-forwarded-proto", "http")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(answer.headers["location"], "https://shop.example/p?q");
    behind_lb.stop().await;

    // A client that is not a trusted proxy cannot claim it.
    let exposed = TestProxy::start(|_| {}).await;
    exposed.apply_yaml(&route("r", spec)).await;
    let answer = get_with(&exposed.url("/p"), "shop.example", &https).await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT);
    exposed.stop().await;
}

#[tokio::test]
async fn source_ranges_allow_and_deny_client_addresses() {
    // The test's client is 127.0.0.1.
    let proxy = TestProxy::start(|_| {}).await;
    let respond = "rules: [{directResponse: {status: 200, body: served}}]";
    proxy
        .apply_yaml(&format!(
            "{}{}{}",
            route(
                "denied",
                &format!("  hosts: [denied.example]\n  sourceRanges: {{deny: [127.0.0.0/8]}}\n  {respond}")
            ),
            route(
                "elsewhere",
                &format!("  hosts: [elsewhere.example]\n  sourceRanges: {{allow: [10.0.0.0/8]}}\n  {respond}")
            ),
            route(
                "local",
                &format!("  hosts: [local.example]\n  sourceRanges: {{allow: [10.0.0.0/8, 127.0.0.1], deny: [127.0.0.2]}}\n  {respond}")
            ),
        ))
        .await;
    for host in ["denied.example", "elsewhere.example"] {
        let answer = get(&proxy.url("/"), host).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{host}");
        assert_eq!(error_code(&answer), "client_not_allowed", "{host}");
    }
    assert_eq!(
        get(&proxy.url("/"), "local.example").await.status,
        StatusCode::OK
    );
    // From a client that is not a trusted proxy, X-Forwarded-For is not believed.
    let claimed = get_with(
        &proxy.url("/"),
        "elsewhere.example",
        &[("x-forwarded-for", "10.1.2.3")],
    )
    .await;
    assert_eq!(claimed.status, StatusCode::FORBIDDEN);
    proxy.stop().await;
}

#[tokio::test]
async fn source_ranges_judge_the_client_a_trusted_proxy_names() {
    let proxy = TestProxy::start(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    proxy
        .apply_yaml(&route(
            "r",
            "  sourceRanges: {allow: ['2001:db8::/32', 10.0.0.0/8], deny: ['2001:db8:bad::/48']}
  rules: [{directResponse: {status: 200, body: served}}]",
        ))
        .await;
    let cases = [
        ("2001:db8::7", StatusCode::OK),
        ("2001:db8:bad::1", StatusCode::FORBIDDEN),
        ("2001:db9::1", StatusCode::FORBIDDEN),
        ("10.1.2.3", StatusCode::OK),
        // An IPv4 client named in its IPv6 form is the IPv4 address.
        ("::ffff:10.1.2.3", StatusCode::OK),
        ("192.0.2.1", StatusCode::FORBIDDEN),
        // The right-most address that is not a trusted proxy is the client.
        ("10.1.2.3, 192.0.2.1", StatusCode::FORBIDDEN),
        ("192.0.2.1, 10.1.2.3, 127.0.0.5", StatusCode::OK),
    ];
    for (forwarded_for, expected) in cases {
        let answer = get_with(
            &proxy.url("/"),
            "x.example",
            &[("x-forwarded-for", forwarded_for)],
        )
        .await;
        assert_eq!(answer.status, expected, "{forwarded_for}");
    }
    proxy.stop().await;
}

/// Sends GETs, in turn to each of `hosts_paths`, until one is answered 429: the number
/// answered 200 before it, the 429, and the time from the first request to the 429.
async fn passes_until_limited(
    proxy: &TestProxy,
    hosts_paths: &[(&str, &str)],
) -> (u64, Answer, Duration) {
    let started = Instant::now();
    let mut passed = 0;
    for (host, path) in hosts_paths.iter().cycle().take(500) {
        let answer = get(&proxy.url(path), host).await;
        match answer.status {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => return (passed, answer, started.elapsed()),
            other => panic!("{host}{path}: {other}"),
        }
    }
    panic!("no request was limited");
}

/// Requests a client may send at once in the rate tests: `burst` is 19.
const ALLOWANCE: u64 = 20;

/// The rate test's Routes: two rules of `limited` share its limits, `other` has its own.
fn rate_routes(extra: &str) -> String {
    let limits = "  clientLimits: {requestsPerSecond: 1, burst: 19}";
    format!(
        "{}{}{extra}",
        route(
            "limited",
            &format!(
                "  hosts: [limited.example]\n{limits}
  rules:
  - matches: [{{path: {{type: Prefix, value: /a}}}}]
    directResponse: {{status: 200, body: a}}
  - matches: [{{path: {{type: Prefix, value: /b}}}}]
    directResponse: {{status: 200, body: b}}"
            )
        ),
        route(
            "other",
            &format!(
                "  hosts: [other.example]\n{limits}\n  rules: [{{directResponse: {{status: 200}}}}]"
            )
        ),
    )
}

#[tokio::test]
async fn client_rates_allow_a_burst_shared_by_a_routes_rules_then_answer_429() {
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&rate_routes("")).await;
    let both_rules = [("limited.example", "/a"), ("limited.example", "/b")];
    let (passed, limited, elapsed) = passes_until_limited(&proxy, &both_rules).await;
    // One a second comes back: a slow machine may see a few more than the burst.
    assert!(
        (ALLOWANCE..=ALLOWANCE + elapsed.as_secs() + 1).contains(&passed),
        "{passed} passed in {elapsed:?}"
    );
    assert_eq!(error_code(&limited), "client_rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Another Route counts on its own.
    let (passed, _, _) = passes_until_limited(&proxy, &[("other.example", "/")]).await;
    assert!(passed >= ALLOWANCE, "{passed}");
    proxy.stop().await;
}

#[tokio::test]
async fn client_rates_survive_a_reload_with_the_same_settings() {
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&rate_routes("")).await;
    let started = Instant::now();
    passes_until_limited(&proxy, &[("limited.example", "/a")]).await;
    // A new snapshot, with the same limits and one more Route.
    let unrelated = route(
        "unrelated",
        "  hosts: [unrelated.example]\n  rules: [{directResponse: {status: 200}}]",
    );
    proxy.apply_yaml(&rate_routes(&unrelated)).await;
    let (passed, _, _) = passes_until_limited(&proxy, &[("limited.example", "/a")]).await;
    // A fresh allowance would let the whole burst through again.
    assert!(
        passed <= started.elapsed().as_secs() + 1 && passed < ALLOWANCE,
        "{passed} passed after the reload, {:?} after the first request",
        started.elapsed()
    );

    // New settings start afresh.
    proxy
        .apply_yaml(&rate_routes(&unrelated).replace("burst: 19", "burst: 29"))
        .await;
    let (passed, _, _) = passes_until_limited(&proxy, &[("limited.example", "/a")]).await;
    assert!(passed >= 30, "{passed}");
    proxy.stop().await;
}

#[tokio::test]
async fn requests_in_flight_per_client_are_limited() {
    let (upstream, gate) = Upstream::gated("done").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  clientLimits: {{concurrentRequests: 2}}\n  rules: [{{backends: [{{url: '{}'}}]}}]",
                upstream.url()
            ),
        ))
        .await;
    let url = proxy.url("/slow");
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, "x.example").await })
        })
        .collect();
    wait_for(|| upstream.requests().len() == 2).await;
    let refused = get(&url, "x.example").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&refused), "client_rate_limited");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(
        upstream.requests().len(),
        2,
        "the refused request stayed here"
    );

    gate.add_permits(2);
    for request in held {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    // Their responses have been sent: their places are free again (a place is given back
    // as the proxy sends the end of a response, which may be a moment after the client
    // has read it).
    gate.add_permits(2);
    let deadline = Instant::now() + PATIENCE;
    let mut served = 0;
    while served < 2 {
        let answer = get(&url, "x.example").await;
        match answer.status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{other}: {}", answer.text()),
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_rule_may_accept_more_or_less_than_the_proxy_body_limit() {
    let upstream =
        Upstream::start(|seen| async move { text(StatusCode::OK, &seen.body.len().to_string()) })
            .await;
    let proxy = TestProxy::start(|c| c.limits.max_body_bytes = 1000).await;
    let backend = format!("backends: [{{url: '{}'}}]", upstream.url());
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules:
  - matches: [{{path: {{type: Prefix, value: /big}}}}]
    maxRequestBodyBytes: 5000
    {backend}
  - matches: [{{path: {{type: Prefix, value: /small}}}}]
    maxRequestBodyBytes: 100
    {backend}
  - {backend}"
            ),
        ))
        .await;
    let post = |path: &str, size: usize| {
        Request::post(proxy.url(path))
            .body(Full::from(vec![b'x'; size]))
            .unwrap()
    };
    let answer = send(&client(), post("/big", 2000)).await;
    assert_eq!(
        (answer.status, answer.text()),
        (StatusCode::OK, "2000".into())
    );
    let answer = send(&client(), post("/default", 2000)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let answer = send(&client(), post("/small", 200)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&answer), "body_too_large");
    assert_eq!(answer.json()["message"], "request body exceeds 100 bytes");

    // Chunked bodies are counted as they stream.
    let chunked = |path: &str, size: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{size:x}\r\n{}\r\n0\r\n\r\n",
            "x".repeat(size)
        )
    };
    let answer = raw_exchange(&proxy, chunked("/big", 2000).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("2000"), "{answer}");
    let answer = raw_exchange(&proxy, chunked("/small", 50).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_exchange(&proxy, chunked("/small", 200).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer = raw_exchange(&proxy, chunked("/default", 2000).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn regex_rewrites_replace_the_whole_path_and_keep_the_query() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    let backend = format!("backends: [{{url: '{}'}}]", upstream.url());
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules:
  - matches: [{{path: {{type: Prefix, value: /api}}}}]
    rewrite: {{regex: {{pattern: '^/api/v(\\d+)/(.*)$', substitution: '/v$1/internal/$2'}}}}
    {backend}
  - matches: [{{path: {{type: Prefix, value: /users}}}}]
    rewrite: {{regex: {{pattern: '/users/(?P<id>[0-9]+)', substitution: '/people/${{id}}/profile'}}}}
    {backend}"
            ),
        ))
        .await;
    let cases = [
        ("/api/v2/items/7?q=1", "/v2/internal/items/7?q=1"),
        ("/api/vx/items", "/api/vx/items"),
        ("/users/42/orders?all", "/people/42/profile?all"),
        ("/users/me", "/users/me"),
        // The pattern sees the normalized path.
        ("/users/./%34%32", "/people/42/profile"),
    ];
    for (path, _) in cases {
        assert_eq!(
            get(&proxy.url(path), "x.example").await.status,
            StatusCode::OK
        );
    }
    let seen: Vec<String> = upstream.requests().into_iter().map(|s| s.uri).collect();
    let expected: Vec<&str> = cases.iter().map(|(_, upstream)| *upstream).collect();
    assert_eq!(seen, expected);
    proxy.stop().await;
}

#[tokio::test]
async fn header_changes_reach_the_upstream_and_every_answer() {
    let upstream = Upstream::start(|_| async move {
        let mut response = text(StatusCode::OK, "served");
        response
            .headers_mut()
            .insert("x-internal", "secret".parse().unwrap());
        response
            .headers_mut()
            .insert("cache-control", "no-store".parse().unwrap());
        response
    })
    .await;
    let proxy = TestProxy::start(|_| {}).await;
    let changes = "
    requestHeaders:
      set: [{name: X-Env, value: prod}]
      add: [{name: X-Tag, value: gateway}]
      remove: [X-Debug]
    responseHeaders:
      set: [{name: Cache-Control, value: 'max-age=60'}]
      add: [{name: Vary, value: Accept}]
      remove: [X-Internal]";
    proxy
        .apply_yaml(&route(
            "edited",
            &format!(
                "  hosts: [edited.example]
  rules:
  - matches: [{{path: {{value: /down}}}}]
    backends: [{{url: 'http://127.0.0.1:1'}}]
    responseHeaders: {{set: [{{name: X-Answered-By, value: weir}}]}}
  - backends: [{{url: '{}'}}]{changes}",
                upstream.url()
            ),
        ))
        .await;
    let answer = get_with(
        &proxy.url("/"),
        "edited.example",
        &[("x-env", "dev"), ("x-tag", "client"), ("x-debug", "1")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = &upstream.requests()[0].headers;
    assert_eq!(seen["x-env"], "prod", "set replaces the client's value");
    let tags: Vec<&str> = seen
        .get_all("x-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["client", "gateway"], "add keeps the client's value");
    assert!(!seen.contains_key("x-debug"));
    assert_eq!(answer.headers["cache-control"], "max-age=60");
    assert_eq!(answer.headers["vary"], "Accept");
    assert!(!answer.headers.contains_key("x-internal"));

    // The proxy's own answers (here: the backend cannot be reached) get them too.
    let down = get(&proxy.url("/down"), "edited.example").await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.text());
    assert_eq!(down.headers["x-answered-by"], "weir");
    proxy.stop().await;
}

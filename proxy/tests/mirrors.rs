//! Request mirroring through a real proxy to real upstreams: the mirror gets the request
//! as the primary backend gets it (body included), never holds up or fails the request
//! itself, and a share of 0 sends it nothing.

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

/// The value of `weir_mirror_requests_total{result}` (0 before the first).
fn mirrored(proxy: &TestProxy, result: &str) -> u64 {
    let metrics = weir_proxy::metrics::encode(&proxy.gateway.registry);
    let prefix = format!("weir_mirror_requests_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_mirror_gets_the_request_as_the_backend_gets_it() {
    let primary = Upstream::named("primary").await;
    let shadow = Upstream::named("shadow").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  hosts: [shop.example]
  rules:
  - matches: [{{path: {{value: /api}}}}]
    backends: [{{url: '{}'}}]
    rewrite: {{replacePrefix: /v2, host: internal.example}}
    requestHeaders: {{set: [{{name: x-env, value: prod}}], remove: [x-drop]}}
    mirrors: [{{backend: {{url: '{}'}}}}]",
                primary.url(),
                shadow.url()
            ),
        ))
        .await;

    let request = Request::get(proxy.url("/api/items?q=1"))
        .header("host", "shop.example")
        .header("x-custom", "kept")
        .header("x-drop", "dropped")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "primary", "the primary backend answers");
    wait_for(|| shadow.requests().len() == 1).await;

    let (sent, copied) = (&primary.requests()[0], &shadow.requests()[0]);
    assert_eq!(copied.method, "GET");
    assert_eq!(copied.uri, "/v2/items?q=1");
    assert_eq!(copied.uri, sent.uri);
    for name in [
        "host",
        "x-env",
        "x-custom",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-host",
    ] {
        assert_eq!(copied.headers.get(name), sent.headers.get(name), "{name}");
    }
    assert_eq!(copied.headers["host"], "internal.example");
    assert_eq!(copied.headers["x-env"], "prod");
    assert!(!copied.headers.contains_key("x-drop"));
    wait_for(|| mirrored(&proxy, "sent") == 1).await;
    proxy.stop().await;
}

#[tokio::test]
async fn request_bodies_reach_the_mirror_intact() {
    let primary = Upstream::named("primary").await;
    let shadow = Upstream::named("shadow").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: '{}'}}], mirrors: [{{backend: {{url: '{}'}}}}]}}]",
                primary.url(),
                shadow.url()
            ),
        ))
        .await;

    // A small body with a length is kept by the proxy (for retries): copied whole.
    let kept = Request::post(proxy.url("/kept"))
        .header("content-type", "application/json")
        .body(Full::from(r#"{"order": 42}"#))
        .unwrap();
    assert_eq!(send(&client(), kept).await.status, StatusCode::OK);
    wait_for(|| shadow.requests().len() == 1).await;
    let copied = &shadow.requests()[0];
    assert_eq!(copied.method, "POST");
    assert_eq!(copied.body, r#"{"order": 42}"#);
    assert_eq!(copied.headers["content-type"], "application/json");

    // A chunked body streams upstream, and to the mirror as the upstream reads it.
    let chunks: Vec<String> = (0..6).map(|i| format!("{i}").repeat(8 * 1024)).collect();
    let mut raw = String::from(
        "POST /streamed HTTP/1.1\r\nhost: shop.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for chunk in &chunks {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let answer = raw_exchange(&proxy, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_for(|| shadow.requests().len() == 2).await;
    let whole = chunks.concat();
    assert_eq!(primary.requests()[1].body, whole);
    let copied = &shadow.requests()[1];
    assert_eq!(copied.uri, "/streamed");
    assert_eq!(copied.body, whole, "the mirror gets the whole body");
    wait_for(|| mirrored(&proxy, "sent") == 2).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_mirror_that_is_down_or_hangs_changes_nothing_for_the_request() {
    let primary = Upstream::named("primary").await;
    let (hanging, gate) = Upstream::gated("late").await;
    let down = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = TestProxy::start(|_| {}).await;
    let rule = |host: &str, mirror: &str| {
        route(
            host,
            &format!(
                "  hosts: [{host}.example]\n  rules: [{{backends: [{{url: '{}'}}], mirrors: [{{backend: {{url: '{mirror}'}}}}]}}]",
                primary.url()
            ),
        )
    };
    proxy
        .apply_yaml(&format!(
            "{}{}",
            rule("down", &format!("http://{down}")),
            rule("hangs", &hanging.url())
        ))
        .await;

    let answer = get(&proxy.url("/"), "down.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "primary");
    wait_for(|| mirrored(&proxy, "failed") == 1).await;

    // The mirror holds the request it got until the gate opens; the client has its
    // answer by then.
    let answer = get(&proxy.url("/"), "hangs.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "primary");
    wait_for(|| hanging.requests().len() == 1).await;
    assert_eq!(gate.available_permits(), 0, "the mirror is still held");
    assert_eq!(mirrored(&proxy, "sent"), 0);
    gate.add_permits(1);
    wait_for(|| mirrored(&proxy, "sent") == 1).await;
    assert_eq!(mirrored(&proxy, "failed"), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_share_of_zero_is_never_mirrored() {
    let primary = Upstream::named("primary").await;
    let never = Upstream::named("never").await;
    let always = Upstream::named("always").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules:
  - backends: [{{url: '{}'}}]
    mirrors:
    - {{backend: {{url: '{}'}}, percent: 0}}
    - {{backend: {{url: '{}'}}, fraction: {{numerator: 0, denominator: 1}}}}
    - {{backend: {{url: '{}'}}, percent: 100}}",
                primary.url(),
                never.url(),
                never.url(),
                always.url()
            ),
        ))
        .await;
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        assert_eq!(
            get(&proxy.url("/"), "any.example").await.status,
            StatusCode::OK
        );
    }
    // Every request's mirrors start together: once the one that takes every request has
    // them all, the others have had their chance.
    wait_for(|| always.requests().len() == REQUESTS).await;
    assert!(never.requests().is_empty());
    assert_eq!(primary.requests().len(), REQUESTS);
    proxy.stop().await;
}

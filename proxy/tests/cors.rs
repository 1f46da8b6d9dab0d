//! CORS through the proxy: preflights never reach the upstream; actual requests from
//! allowed origins get the headers browsers need.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn preflights_are_answered_by_the_proxy() {
    let upstream = Upstream::named("data").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&route(
        "api",
        &format!(
            "  cors: {{allowOrigins: ['https://app.example.com'], allowMethods: [GET, PUT], allowHeaders: [authorization], exposeHeaders: [x-total], allowCredentials: true, maxAge: 10m}}
  rules: [{{backends: [{{url: '{}'}}]}}]",
            upstream.url()
        ),
    )).await;
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri(proxy.url("/items"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "Authorization")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), preflight).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(answer.headers["access-control-allow-methods"], "GET, PUT");
    assert_eq!(
        answer.headers["access-control-allow-headers"],
        "authorization"
    );
    assert_eq!(answer.headers["access-control-allow-credentials"], "true");
    assert_eq!(answer.headers["access-control-max-age"], "600");
    assert!(
        upstream.requests().is_empty(),
        "the upstream never sees a preflight"
    );

    let refused = Request::builder()
        .method(Method::OPTIONS)
        .uri(proxy.url("/items"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PUT")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), refused).await;
    assert!(!answer.headers.contains_key("access-control-allow-origin"));

    let actual = Request::get(proxy.url("/items"))
        .header("origin", "https://app.example.com")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), actual).await;
    assert_eq!(answer.text(), "data");
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(answer.headers["access-control-expose-headers"], "x-total");
    assert_eq!(answer.headers["vary"], "Origin");
    proxy.stop().await;
}

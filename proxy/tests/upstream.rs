//! Upstream behaviour with real loopback servers: endpoints from EndpointSlices,
//! balancing, weights, retries, outlier ejection, the concurrency limit and timeouts.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Service `svc` (port 80) whose endpoints are `addresses`, one EndpointSlice each.
fn service(addresses: &[SocketAddr]) -> String {
    let mut yaml = "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: test}\nspec: {ports: [{name: http, port: 80}]}\n".to_owned();
    for (i, address) in addresses.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}, namespace: test, labels: {{kubernetes.io/service-name: svc}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: ['{}']}}]\n",
            address.port(),
            address.ip()
        ));
    }
    yaml
}

/// A loopback address nobody listens on (connections are refused).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn round_robin_spreads_over_every_endpoint() {
    let a = Upstream::named("a").await;
    let b = Upstream::named("b").await;
    let c = Upstream::named("c").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            service(&[a.addr, b.addr, c.addr]),
            route(
                "r",
                "  rules: [{backends: [{name: svc, port: 80}], loadBalancer: RoundRobin}]"
            )
        ))
        .await;
    for _ in 0..30 {
        assert_eq!(get(&proxy.url("/"), "x").await.status, StatusCode::OK);
    }
    assert_eq!(
        [a.requests().len(), b.requests().len(), c.requests().len()],
        [10, 10, 10]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn weights_split_traffic_between_backends() {
    let light = Upstream::named("light").await;
    let heavy = Upstream::named("heavy").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: '{}', weight: 1}}, {{url: '{}', weight: 3}}]}}]",
                light.url(),
                heavy.url()
            ),
        ))
        .await;
    let mut heavy_count = 0;
    for _ in 0..400 {
        if get(&proxy.url("/"), "x").await.text() == "heavy" {
            heavy_count += 1;
        }
    }
    // Expected 300; the bounds are more than five standard deviations away.
    assert!(
        (250..=350).contains(&heavy_count),
        "{heavy_count} of 400 went to the weight-3 backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_endpoint() {
    let live = Upstream::named("live").await;
    let dead = closed_port().await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            service(&[dead, live.addr]),
            route(
                "r",
                "  rules: [{backends: [{name: svc, port: 80}], loadBalancer: RoundRobin}]"
            )
        ))
        .await;
    for _ in 0..10 {
        let answer = send(
            &client(),
            Request::post(proxy.url("/"))
                .body(Full::from("payload"))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    assert!(
        live.requests().iter().all(|s| s.body == "payload"),
        "the body is sent again on retry"
    );
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    assert!(
        metrics.contains(
            "weir_upstream_errors_total{backend=\"service:test/svc:80\",kind=\"connect\"}"
        ),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_json_502() {
    let dead = closed_port().await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: 'http://{dead}'}}]}}]"),
        ))
        .await;
    let answer = get(&proxy.url("/"), "x").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"], "upstream_unreachable");
    proxy.stop().await;
}

#[tokio::test]
async fn configured_statuses_are_retried_for_idempotent_methods_only() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flaky = {
        let calls = calls.clone();
        Upstream::start(move |_| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n.is_multiple_of(2) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "busy")
                } else {
                    text(StatusCode::OK, "done")
                }
            }
        })
        .await
    };
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&route(
        "r",
        &format!("  rules: [{{backends: [{{url: '{}'}}], retries: {{attempts: 2, statuses: [503], backoff: {{base: 1ms, max: 5ms}}}}}}]", flaky.url()),
    )).await;
    let answer = get(&proxy.url("/"), "x").await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (StatusCode::OK, "done")
    );
    assert_eq!(flaky.requests().len(), 2);
    for seen in flaky.requests() {
        assert_eq!(
            seen.headers["host"], "x",
            "every try carries the request's headers"
        );
    }

    let answer = send(
        &client(),
        Request::post(proxy.url("/")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "POST is not retried on a status"
    );
    assert_eq!(flaky.requests().len(), 3);
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    assert!(
        metrics.contains("weir_upstream_retries_total{route=\"test/r\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn failing_endpoints_are_ejected() {
    let broken =
        Upstream::start(|_| async { text(StatusCode::INTERNAL_SERVER_ERROR, "broken") }).await;
    let healthy = Upstream::named("healthy").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&format!(
        "{}{}",
        service(&[broken.addr, healthy.addr]),
        route(
            "r",
            "  rules: [{backends: [{name: svc, port: 80}], loadBalancer: RoundRobin, retries: {attempts: 0},
      outlierDetection: {consecutiveFailures: 3, baseEjectionTime: 10m, maxEjectionPercent: 50}}]"
        )
    )).await;
    let mut errors = 0;
    for _ in 0..30 {
        if get(&proxy.url("/"), "x").await.status != StatusCode::OK {
            errors += 1;
        }
    }
    assert_eq!(
        broken.requests().len(),
        3,
        "ejected after three consecutive failures"
    );
    assert_eq!(errors, 3);
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    assert!(
        metrics.contains("weir_outlier_ejections_total{backend=\"service:test/svc:80\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_concurrency_limit_sheds_with_503() {
    let (slow, gate) = Upstream::gated("finally").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: '{}'}}], maxConcurrentRequests: 2}}]",
                slow.url()
            ),
        ))
        .await;
    let url = proxy.url("/");
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_owned(url.clone())))
        .collect();
    wait_for(|| slow.requests().len() == 2).await;
    let shed = get(&url, "x").await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.json()["error"], "upstream_overloaded");
    gate.add_permits(2);
    for request in held {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    // The finished requests gave their slots back.
    gate.add_permits(1);
    assert_eq!(get(&url, "x").await.status, StatusCode::OK);
    proxy.stop().await;
}

async fn get_owned(url: String) -> Answer {
    get(&url, "x").await
}

#[tokio::test]
async fn a_slow_upstream_gets_504() {
    let slow = Upstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        text(StatusCode::OK, "too late")
    })
    .await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: '{}'}}], timeouts: {{request: 300ms}}}}]",
                slow.url()
            ),
        ))
        .await;
    let answer = get(&proxy.url("/"), "x").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.json()["error"], "upstream_timeout");
    proxy.stop().await;
}

/// An upstream that accepts nothing: its accept queue is full, so new connections hang.
fn unaccepting_listener() -> (socket2::Socket, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue; further SYNs are dropped and connects hang.
    let fillers = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    (socket, fillers)
}

#[tokio::test]
async fn connect_timeout_ends_a_hanging_connect() {
    let (socket, _fillers) = unaccepting_listener();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let proxy = TestProxy::start(|_| {}).await;
    proxy.apply_yaml(&route(
        "r",
        &format!("  rules: [{{backends: [{{url: 'http://{addr}'}}], timeouts: {{connect: 200ms, request: 1m}}}}]"),
    )).await;
    let answer = get(&proxy.url("/"), "x").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert_eq!(answer.json()["error"], "upstream_unreachable");
    proxy.stop().await;
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_after_the_idle_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = stream.read(&mut buffer).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: 'http://{addr}'}}], timeouts: {{idle: 300ms}}}}]"
            ),
        ))
        .await;
    let response = client()
        .request(
            Request::get(proxy.url("/"))
                .header("host", "x")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(
        PATIENCE,
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .expect("cut in time");
    assert!(
        body.is_err(),
        "the stream must end with an error, not hang or look complete"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn services_without_endpoints_answer_503() {
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            service(&[]),
            route("r", "  rules: [{backends: [{name: svc, port: 80}]}]")
        ))
        .await;
    let answer = send(
        &client(),
        Request::builder()
            .method(Method::GET)
            .uri(proxy.url("/"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["error"], "no_healthy_upstream");
    proxy.stop().await;
}

#[tokio::test]
async fn keep_alive_connections_to_upstreams_are_reused_per_shard() {
    let upstream = Upstream::named("kept").await;
    let proxy = TestProxy::start(|c| c.workers = 2).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", upstream.url()),
        ))
        .await;
    // Each request on a new client connection, so both shards serve some; each shard
    // keeps its upstream connection for the next request it serves.
    for _ in 0..40 {
        let answer = get(&proxy.url("/"), "x").await;
        assert_eq!(answer.text(), "kept");
    }
    let opened = upstream
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&opened),
        "{opened} upstream connections for 40 requests on 2 shards"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn idle_connections_the_upstream_closed_are_not_reused() {
    // An upstream that answers one request per connection and then closes it without
    // saying so (no `connection: close`), and counts the connections it accepts.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let proxy = TestProxy::start(|c| c.workers = 1).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: 'http://{addr}'}}]}}]"),
        ))
        .await;
    for _ in 0..3 {
        let answer = get(&proxy.url("/"), "x").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.text(), "ok");
        // Long enough for the upstream to have closed the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    proxy.stop().await;
}

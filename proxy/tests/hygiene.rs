//! Header hygiene and request limits, seen from a real upstream and from raw sockets:
//! hop-by-hop headers, forwarding headers, request ids, trace context, smuggling-shaped
//! framing, header and body size limits, and slow clients.

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy_to(
    upstream: &Upstream,
    tweak: impl FnOnce(&mut weir_proxy::config::ProxyConfig),
) -> TestProxy {
    let proxy = TestProxy::start(tweak).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", upstream.url()),
        ))
        .await;
    proxy
}

#[tokio::test]
async fn hop_by_hop_and_forged_forwarding_headers_do_not_reach_the_upstream() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |_| {}).await;
    let request = Request::get(proxy.url("/"))
        .header("host", "shop.example")
        .header("connection", "x-internal")
        .header("x-internal", "secret")
        .header("keep-alive", "timeout=100")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("true-client-ip", "6.6.6.6")
        .header("x-forwarded-port", "8443")
        .header("x-forwarded-prefix", "/admin")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "client-chosen-id")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.headers["x-request-id"], "client-chosen-id");
    let seen = &upstream.requests()[0];
    for gone in [
        "x-internal",
        "keep-alive",
        "proxy-authorization",
        "connection",
        "x-real-ip",
        "true-client-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "shop.example");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["forwarded"],
        "for=127.0.0.1;host=\"shop.example\";proto=http"
    );
    assert_eq!(seen.headers["x-request-id"], "client-chosen-id");
    assert_eq!(
        seen.headers["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "trace context is propagated"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn trusted_proxies_keep_the_chain_and_requests_get_ids() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    let request = Request::get(proxy.url("/"))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    let answer = send(&client(), request).await;
    let seen = &upstream.requests()[0];
    assert_eq!(seen.headers["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "a generated id");
    assert_eq!(seen.headers["x-request-id"], id);
    proxy.stop().await;
}

#[tokio::test]
async fn smuggling_shaped_requests_are_refused() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |_| {}).await;
    let answer = raw_exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Behind an honest request on the same connection, too.
    let answer = raw_exchange(
        &proxy,
        b"GET /first HTTP/1.1\r\nhost: x\r\n\r\nPOST /second HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the honest request went upstream"
    );
    assert_eq!(upstream.requests()[0].uri, "/first");
    let answer = raw_exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        upstream.requests().len(),
        1,
        "nothing more reached the upstream"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.limits.max_header_bytes = 8 * 1024;
        c.limits.max_body_bytes = 1000;
    })
    .await;
    let big_header = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = raw_exchange(&proxy, big_header.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let answer = send(
        &client(),
        Request::post(proxy.url("/"))
            .body(Full::from(vec![b'x'; 2000]))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json()["error"], "body_too_large");

    // Without a length up front, the limit applies while the body streams.
    let chunked = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
        "y".repeat(2000)
    );
    let answer = raw_exchange(&proxy, chunked.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(upstream.requests().iter().all(|s| s.body.len() <= 1000));
    proxy.stop().await;
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.limits.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    let mut stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Never finish the head: the proxy must close the connection by itself.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn connections_that_send_no_request_are_closed() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.limits.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    // Nothing at all, half an HTTP/2 preface, a whole preface and SETTINGS but no request:
    // each is closed by the proxy once the header read timeout has passed.
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n", H2_PREFACE_AND_SETTINGS] {
        let mut stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
        stream.write_all(opening).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{:?}: the connection was not closed",
            String::from_utf8_lossy(opening)
        );
    }
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

/// An HTTP/2 (h2c) connection to the proxy: the request side and the task driving it.
async fn h2c_connection(
    proxy: &TestProxy,
) -> (
    hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

/// Sends `GET /` over `sender` and expects 200.
async fn h2c_get(sender: &mut hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>) {
    let request = Request::get("http://x/").body(Full::default()).unwrap();
    let response = sender.send_request(request).await.expect("served");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_connection_that_sent_a_request_outlives_the_header_read_timeout() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.limits.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let (mut sender, _connection) = h2c_connection(&proxy).await;
    for _ in 0..2 {
        h2c_get(&mut sender).await;
        // Idle for longer than the header read timeout: the connection has opened, so it
        // stays.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(upstream.requests().len(), 2);
    proxy.stop().await;
}

/// An HTTP/1.1 connection to the proxy that has had one request served and stays open.
async fn served_connection(
    proxy: &TestProxy,
) -> hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>> {
    let stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "x")
        .body(Full::default())
        .unwrap();
    let response = sender.send_request(request).await.expect("served");
    assert_eq!(response.status(), StatusCode::OK);
    sender
}

/// Whether a new connection is closed by the proxy without an answer.
async fn refused(proxy: &TestProxy) -> bool {
    let mut stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answered or closed");
    read.is_err() || answer.is_empty()
}

#[tokio::test]
async fn connections_beyond_the_limits_are_closed_and_counted() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| c.limits.max_connections_per_client = 2).await;
    let first = served_connection(&proxy).await;
    let _second = served_connection(&proxy).await;
    assert!(refused(&proxy).await, "a third connection from one client");
    drop(first);
    // The proxy sees the first connection end, and its place is free again.
    tokio::time::timeout(PATIENCE, async {
        while refused(&proxy).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a place was freed");
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    assert!(
        metrics.contains("weir_connections_refused_total{reason=\"per_client\"}"),
        "{metrics}"
    );
    proxy.stop().await;

    let proxy = proxy_to(&upstream, |c| c.limits.max_connections = 1).await;
    let _only = served_connection(&proxy).await;
    assert!(
        refused(&proxy).await,
        "a second connection to a proxy full up"
    );
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    assert!(
        metrics.contains("weir_connections_refused_total{reason=\"total\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |c| {
        c.limits.idle_timeout = Duration::from_millis(300)
    })
    .await;
    let (mut sender, connection) = h2c_connection(&proxy).await;
    h2c_get(&mut sender).await;
    // No further request: the proxy sends GOAWAY and the connection ends.
    let ended = tokio::time::timeout(PATIENCE, connection).await;
    assert!(ended.is_ok(), "the idle connection was not closed");
    proxy.stop().await;
}

#[tokio::test]
async fn ambiguous_hosts_are_refused_and_the_routed_one_is_forwarded() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |_| {}).await;
    for (request, why) in [
        (
            &b"GET / HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n"[..],
            "two Host headers",
        ),
        (
            b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 without Host",
        ),
        (
            b"GET http://a.example/ HTTP/1.1\r\nhost: b.example\r\nconnection: close\r\n\r\n",
            "a Host other than the absolute-form authority",
        ),
    ] {
        let answer = raw_exchange(&proxy, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{why}: {answer}");
    }
    assert!(upstream.requests().is_empty());

    let answer = raw_exchange(
        &proxy,
        b"GET http://A.example/ HTTP/1.1\r\nhost: a.EXAMPLE\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_exchange(&proxy, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200"),
        "HTTP/1.0 without Host: {answer}"
    );
    let seen = upstream.requests();
    assert_eq!(
        seen[0].headers["host"], "A.example",
        "the upstream is told the authority that was routed"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn path_parameters_are_refused() {
    // `/admin;x` is `/admin` to Spring and `/public/..;/admin` is `/admin` to Tomcat: a
    // proxy that routed them as written would skip `/admin`'s plugins or reach it through
    // `/public`.
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |_| {}).await;
    for path in ["/public/..;/admin", "/admin;x", "/a;jsessionid=1/b"] {
        let answer = get(&proxy.url(path), "x").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.text().contains("';'"), "{path}: {}", answer.text());
    }
    assert!(upstream.requests().is_empty());
    assert_eq!(get(&proxy.url("/a%3Bb"), "x").await.status, StatusCode::OK);
    proxy.stop().await;
}

#[tokio::test]
async fn plugins_see_a_sanitized_request_and_keep_the_headers_they_set() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: look, namespace: test}}\nspec:\n  source:\n    code: |\n      export default {{ beforeRequest(ctx) {{ ctx.upstream.headers.set(\"x-plugin-saw\", ctx.request.headers[\"x-real-ip\"] ?? \"nothing\"); ctx.upstream.headers.set(\"x-user\", \"alice\"); }} }};\n{}",
            route(
                "r",
                &format!(
                    "  plugins: [{{name: look}}]\n  rules: [{{backends: [{{url: '{}'}}]}}]",
                    upstream.url()
                )
            )
        ))
        .await;
    let request = Request::get(proxy.url("/"))
        .header("host", "x")
        .header("x-real-ip", "6.6.6.6")
        // The client names the header the plugin sets as hop-by-hop.
        .header("connection", "x-user")
        .header("x-user", "mallory")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client(), request).await.status, StatusCode::OK);
    let seen = &upstream.requests()[0];
    assert_eq!(seen.headers["x-plugin-saw"], "nothing");
    assert_eq!(seen.headers["x-user"], "alice", "the plugin's header stays");
    proxy.stop().await;
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream, |_| {}).await;
    for coding in ["gzip, chunked", "chunked, chunked"] {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: {coding}\r\nconnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        );
        let answer = raw_exchange(&proxy, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{coding}: {answer}");
        assert!(answer.contains("unsupported_transfer_coding"), "{answer}");
    }
    assert!(upstream.requests().is_empty());
    let answer = raw_exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: Chunked\r\nconnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(upstream.requests()[0].body, "ok");
    proxy.stop().await;
}

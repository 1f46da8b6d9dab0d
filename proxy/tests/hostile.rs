//! The hostile-input suite: requests as attackers write them, sent as raw bytes to a
//! running proxy. Each case names the status it must get and whether any of it may reach
//! the upstream; after every case the proxy must still serve an honest request. The
//! shapes: request smuggling (CL.TE, TE.CL, duplicate, signed and hex `Content-Length`,
//! obfuscated and listed `Transfer-Encoding`, bad and overflowing chunk sizes), line
//! endings and folding, NUL and control bytes, invalid methods and request targets,
//! encoded traversal, oversized heads, forged forwarding and identity headers, and header
//! injection through a plugin's patch.

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy in front of `upstream` for `/`, with `/admin` answered by the proxy itself
/// (`admin`), `/public` going upstream, and `/inject` running a plugin that tries to
/// smuggle a header line into the upstream request.
async fn proxy_to(upstream: &Upstream) -> TestProxy {
    let proxy = TestProxy::start(|c| c.limits.max_header_bytes = 8 * 1024).await;
    let plugin = "---
apiVersion: weir.dev/v1alpha1
kind: Plugin
metadata: {name: inject, namespace: test}
spec:
  source:
    code: |
      export default { beforeRequest(ctx) { ctx.upstream.headers.set(\"x-note\", \"a\\r\\nx-injected: 1\"); } };
";
    let routes = route(
        "r",
        &format!(
            "  rules:
  - backends: [{{url: '{0}'}}]
  - matches: [{{path: {{type: Prefix, value: /admin}}}}]
    directResponse: {{status: 200, body: admin}}
  - matches: [{{path: {{type: Prefix, value: /public}}}}]
    backends: [{{url: '{0}'}}]",
            upstream.url()
        ),
    ) + &route(
        "inject",
        &format!(
            "  plugins: [{{name: inject}}]\n  rules: [{{matches: [{{path: {{value: /inject}}}}], backends: [{{url: '{}'}}]}}]",
            upstream.url()
        ),
    );
    proxy.apply_yaml(&format!("{plugin}{routes}")).await;
    proxy
}

/// Sends raw bytes and returns the status code of the first answer, or `closed` when the
/// proxy closed the connection without one.
async fn first_status(proxy: &TestProxy, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    // A proxy that refuses early may close before reading everything: ignore that.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
            if answer.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("an answer or a close");
    let answer = String::from_utf8_lossy(&answer);
    match answer.split(' ').nth(1) {
        Some(status) if answer.starts_with("HTTP/1.1 ") => status.to_owned(),
        _ => "closed".to_owned(),
    }
}

/// Whether the proxy still answers an honest request.
async fn still_serves(proxy: &TestProxy) -> bool {
    get(&proxy.url("/"), "x").await.status == http::StatusCode::OK
}

/// One hostile request: what it is, its bytes, the statuses it may get, and whether any
/// of it may reach the upstream.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expected: &'static [&'static str],
    upstream_may_see: bool,
}

fn case(name: &'static str, bytes: &str, expected: &'static [&'static str]) -> Case {
    Case {
        name,
        bytes: bytes.as_bytes().to_vec(),
        expected,
        upstream_may_see: false,
    }
}

fn passes(name: &'static str, bytes: &str, expected: &'static [&'static str]) -> Case {
    Case {
        upstream_may_see: true,
        ..case(name, bytes, expected)
    }
}

fn cases() -> Vec<Case> {
    let big_head = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    vec![
        // Smuggling: two framings, or one the proxy and a backend could read differently.
        case(
            "CL.TE",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nG",
            &["400"],
        ),
        case(
            "TE.CL",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            &["400"],
        ),
        case(
            "duplicate content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
            &["400"],
        ),
        case(
            "listed content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4, 5\r\n\r\nabcde",
            &["400"],
        ),
        case(
            "signed content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +4\r\n\r\nabcd",
            &["400"],
        ),
        case(
            "negative content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
            &["400"],
        ),
        case(
            "hex content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0x4\r\n\r\nabcd",
            &["400"],
        ),
        case(
            "overflowing content-length",
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            &["400", "413"],
        ),
        case(
            "transfer-encoding with a space before the colon",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
            &["400"],
        ),
        case(
            "obfuscated transfer-encoding",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
            &["400", "501"],
        ),
        case(
            "listed transfer-encoding",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            &["501"],
        ),
        case(
            "two transfer-encoding headers",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n0\r\n\r\n",
            &["400", "501"],
        ),
        case(
            "transfer-encoding on HTTP/1.0",
            "POST / HTTP/1.0\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            &["400"],
        ),
        case(
            "bad chunk size",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            &["400"],
        ),
        case(
            "overflowing chunk size",
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            &["400"],
        ),
        // Line endings, folding, bytes that do not belong in a head.
        case(
            "obs-fold",
            "GET / HTTP/1.1\r\nhost: x\r\nx-a: a\r\n b\r\n\r\n",
            &["400"],
        ),
        case(
            "NUL in a header value",
            "GET / HTTP/1.1\r\nhost: x\r\nx-a: a\0b\r\n\r\n",
            &["400"],
        ),
        case(
            "control byte in a header value",
            "GET / HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n",
            &["400"],
        ),
        case(
            "bare CR in a header value",
            "GET / HTTP/1.1\r\nhost: x\r\nx-a: a\rb\r\n\r\n",
            &["400"],
        ),
        case(
            "space in a header name",
            "GET / HTTP/1.1\r\nhost: x\r\nx a: b\r\n\r\n",
            &["400"],
        ),
        case(
            "encoded NUL in the path",
            "GET /a%00b HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        // Methods and request targets.
        case(
            "invalid method",
            "G(T / HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        case(
            "space in the target",
            "GET /a b HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        case("no target", "GET HTTP/1.1\r\nhost: x\r\n\r\n", &["400"]),
        case(
            "unknown version",
            "GET / HTTP/1.7\r\nhost: x\r\n\r\n",
            &["400", "505"],
        ),
        case(
            "asterisk target on GET",
            "GET * HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400", "404"],
        ),
        case(
            "authority target on GET",
            "GET x:80 HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400", "404"],
        ),
        // Encoded traversal: normalized before matching, never around /admin via /public.
        case(
            "dot segments around a prefix",
            "GET /public/../admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            &["200"],
        ),
        case(
            "encoded dot segments",
            "GET /public/%2e%2e/admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            &["200"],
        ),
        case(
            "encoded slash",
            "GET /public/..%2fadmin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            &["200"],
        ),
        case(
            "backslash",
            "GET /public\\..\\admin HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        case(
            "encoded backslash",
            "GET /public/..%5cadmin HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        case(
            "path parameter",
            "GET /public/..;/admin HTTP/1.1\r\nhost: x\r\n\r\n",
            &["400"],
        ),
        passes(
            "double encoding stays encoded",
            "GET /public/%252e%252e/admin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            &["200"],
        ),
        // Host confusion.
        case(
            "two hosts",
            "GET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
            &["400"],
        ),
        case("no host", "GET / HTTP/1.1\r\n\r\n", &["400"]),
        case(
            "host disagreeing with the absolute target",
            "GET http://x/ HTTP/1.1\r\nhost: y\r\n\r\n",
            &["400"],
        ),
        // Sizes.
        case("oversized head", &big_head, &["431"]),
        case("too many headers", &many_headers, &["431", "400"]),
        // A plugin's header value with CR LF cannot add a header line upstream.
        case(
            "header injection through a plugin",
            "GET /inject HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            &["503"],
        ),
    ]
}

#[tokio::test]
async fn hostile_requests_get_their_status_and_the_proxy_keeps_serving() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream).await;
    let mut failures = Vec::new();
    for case in cases() {
        let before = upstream.requests().len();
        let status = first_status(&proxy, &case.bytes).await;
        let reached = upstream.requests().len() > before;
        if !case.expected.contains(&status.as_str()) {
            failures.push(format!(
                "{}: got {status}, expected one of {:?}",
                case.name, case.expected
            ));
        }
        if reached && !case.upstream_may_see {
            failures.push(format!("{}: reached the upstream", case.name));
        }
        if !still_serves(&proxy).await {
            failures.push(format!("{}: the proxy stopped serving", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // What got through was sanitized: no injected line, and the encoded path stayed
    // encoded (a backend decoding once sees `%2e%2e`, not `..`).
    for seen in upstream.requests() {
        assert!(!seen.headers.contains_key("x-injected"), "{seen:?}");
    }
    assert!(
        upstream
            .requests()
            .iter()
            .any(|seen| seen.uri == "/public/%252e%252e/admin"),
        "{:?}",
        upstream.requests()
    );
    proxy.stop().await;
}

/// Forged forwarding and identity headers from an untrusted client never reach the
/// upstream as the client wrote them.
#[tokio::test]
async fn forged_forwarding_and_identity_headers_are_replaced_or_removed() {
    let upstream = Upstream::named("ok").await;
    let proxy = proxy_to(&upstream).await;
    let status = first_status(
        &proxy,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-forwarded-for: 10.0.0.1\r\n\
          x-forwarded-host: admin.internal\r\nx-forwarded-proto: https\r\nforwarded: for=10.0.0.1\r\n\
          x-real-ip: 10.0.0.1\r\ntrue-client-ip: 10.0.0.1\r\nx-forwarded-port: 443\r\n\
          x-forwarded-prefix: /admin\r\n\r\n",
    )
    .await;
    assert_eq!(status, "200");
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "x");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    for removed in [
        "x-real-ip",
        "true-client-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
    ] {
        assert!(!seen.headers.contains_key(removed), "{removed}: {seen:?}");
    }
    assert!(
        seen.headers
            .get_all("forwarded")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("10.0.0.1")),
        "{seen:?}"
    );
    proxy.stop().await;
}

/// A client that stops sending its request body is answered 408 after the route's idle
/// timeout, whether the body is read ahead (small, retryable) or streamed upstream.
#[tokio::test]
async fn a_stalled_request_body_gets_408() {
    let upstream = Upstream::named("ok").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: '{}'}}], timeouts: {{idle: 300ms}}}}]",
                upstream.url()
            ),
        ))
        .await;
    for declared in [100, 1 << 20] {
        let head =
            format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {declared}\r\n\r\nonly a part");
        assert_eq!(
            first_status(&proxy, head.as_bytes()).await,
            "408",
            "{declared}"
        );
    }
    assert!(still_serves(&proxy).await);
    proxy.stop().await;
}

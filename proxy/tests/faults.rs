//! Fault injection: upstreams that reset mid-body, hang, answer garbage or close after
//! the head; Redis going away and coming back under plugins that use the cache; snapshot
//! pushes every 50 ms under load; and a `weir-proxy` process whose memory must come back
//! to where it was after many faulty exchanges. Each: the expected statuses, and the proxy
//! serving on.

#[path = "../plugin-runtime/tests/common/redis.rs"]
mod redis_server;
mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use redis_server::Redis;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream misbehaving by path: `/reset` sends part of a body then resets the
/// connection, `/hang` never answers, `/garbage` answers something that is not HTTP,
/// `/close-after-head` sends a head promising a body and closes; anything else gets 200.
async fn faulty_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream));
        }
    });
    address
}

async fn misbehave(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    match path.as_str() {
        "/reset" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                .await;
            let _ = stream.write_all(&[b'x'; 1000]).await;
            // Linger 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        "/hang" => {
            let _ = stream.read(&mut buffer).await;
        }
        "/garbage" => {
            let _ = stream.write_all(b"THIS IS NOT HTTP\r\n\r\n").await;
        }
        "/close-after-head" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                .await;
        }
        _ => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    }
}

/// What the client got: the status and whether the whole body arrived (`200 whole`,
/// `200 cut`), or `closed` when the connection closed before a response head.
async fn fetch(proxy_url: &str) -> String {
    let request = Request::get(proxy_url)
        .header("host", "faults.example")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, client().request(request))
        .await
        .expect("an answer in time");
    let Ok(response) = response else {
        return "closed".to_owned();
    };
    let status = response.status().as_u16();
    let whole = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the body ends in time")
        .is_ok();
    format!("{status} {}", if whole { "whole" } else { "cut" })
}

#[tokio::test]
async fn failing_upstreams_get_their_statuses_and_the_proxy_serves_on() {
    let upstream = faulty_upstream().await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: 'http://{upstream}'}}], timeouts: {{request: 500ms}}, retries: {{attempts: 0}}}}]"
            ),
        ))
        .await;
    // An upstream failing after its head may have had its status sent on already: the
    // client then sees the response cut short, or the connection closed; never a whole
    // response.
    let cut: &[&str] = &["200 cut", "closed"];
    let cases: [(&str, &[&str]); 4] = [
        ("/reset", cut),
        ("/close-after-head", cut),
        ("/hang", &["504 whole"]),
        ("/garbage", &["502 whole"]),
    ];
    for round in 0..3 {
        for (path, expected) in cases {
            let got = fetch(&proxy.url(path)).await;
            assert!(
                expected.contains(&got.as_str()),
                "{path}, round {round}: {got}"
            );
            assert_eq!(fetch(&proxy.url("/ok")).await, "200 whole", "after {path}");
        }
    }
    proxy.stop().await;
}

const CACHE_PLUGINS: &str = "---
apiVersion: weir.dev/v1alpha1
kind: Plugin
metadata: {name: careful, namespace: test}
spec:
  # Longer than a Redis command may take (1 s), so the plugin sees the failure itself.
  timeoutMs: 3000
  source:
    code: |
      export default { async beforeRequest(ctx) {
        try { await ctx.services.cache.set(\"k\", \"v\"); ctx.response.headers.set(\"x-cache\", \"up\"); }
        catch (e) { ctx.response.headers.set(\"x-cache\", \"down\"); }
      } };
---
apiVersion: weir.dev/v1alpha1
kind: Plugin
metadata: {name: strict, namespace: test}
spec:
  failurePolicy: Closed
  source:
    code: |
      export default { async beforeRequest(ctx) { await ctx.services.cache.set(\"k\", \"v\"); } };
";

/// Cache calls fail while Redis is away, as each plugin's failure policy says (a plugin
/// that catches carries on, a `Closed` one answers 503), the proxy stays up, and the cache
/// works again once Redis is back.
#[tokio::test]
async fn redis_going_away_and_coming_back() {
    let mut redis = Redis::start().await;
    let port = redis.port;
    let proxy = TestProxy::start(|c| {
        c.plugins.cache.redis_url = Some(format!("redis://127.0.0.1:{port}/"));
    })
    .await;
    let routes = route(
        "careful",
        "  hosts: [careful.example]\n  plugins: [{name: careful}]\n  rules: [{directResponse: {status: 200, body: fine}}]",
    ) + &route(
        "strict",
        "  hosts: [strict.example]\n  plugins: [{name: strict}]\n  rules: [{directResponse: {status: 200, body: fine}}]",
    );
    proxy.apply_yaml(&format!("{CACHE_PLUGINS}{routes}")).await;
    let cache_state = || async {
        let answer = get(&proxy.url("/"), "careful.example").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.headers["x-cache"].to_str().unwrap().to_owned()
    };
    let strict = || async { get(&proxy.url("/"), "strict.example").await.status };
    assert_eq!(cache_state().await, "up");
    assert_eq!(strict().await, StatusCode::OK);

    redis.child.kill().await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while cache_state().await != "down" {
        assert!(
            std::time::Instant::now() < deadline,
            "cache calls never failed"
        );
    }
    assert_eq!(strict().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&proxy.url("/"), "careful.example").await.text(), "fine");

    let _redis = Redis::start_on(port).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while cache_state().await != "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(strict().await, StatusCode::OK);
    proxy.stop().await;
}

/// Thousands of faulty exchanges leave a `weir-proxy` process's memory where it was once
/// warmed up: nothing is kept per failed request.
#[tokio::test]
async fn faulty_exchanges_leave_memory_where_it_was() {
    let upstream = faulty_upstream().await;
    let proxy = support::process::ProxyProcess::start(
        &route(
            "r",
            &format!(
                "  rules: [{{backends: [{{url: 'http://{upstream}'}}], timeouts: {{request: 200ms}}, retries: {{attempts: 0}}}}]"
            ),
        ),
        &["--workers", "1", "--no-access-log"],
    );
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", proxy.port);
    let round = |count: usize| {
        let url = &url;
        async move {
            for i in 0..count {
                let path = ["/reset", "/close-after-head", "/garbage", "/ok"][i % 4];
                fetch(&url(path)).await;
            }
        }
    };
    round(1000).await;
    let warmed = proxy.rss_kib();
    round(2000).await;
    let after = proxy.rss_kib();
    let grown_kib = after.saturating_sub(warmed);
    eprintln!("RSS warmed {warmed} KiB, after 2,000 more faulty exchanges {after} KiB");
    // 2,000 exchanges: a leak of 4 KiB per exchange would be 8 MiB.
    assert!(
        grown_kib < 8 * 1024,
        "grew by {grown_kib} KiB over 2,000 faulty exchanges"
    );
}

/// Snapshots pushed through the admin API every 50 ms while clients keep requesting: no
/// request fails, every push is applied, and the last one is what serves.
#[tokio::test]
async fn snapshot_pushes_every_50_ms_under_load() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const TOKEN: &str = "a-push-token-of-at-least-32-characters";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let proxy = Arc::new(TestProxy::start(|c| c.admin_token_file = Some(token_file)).await);
    let snapshot = |version: u64| {
        let yaml = route(
            "r",
            &format!("  rules: [{{directResponse: {{status: 200, body: 'v{version}'}}}}]"),
        );
        serde_json::to_vec(&compile_yaml(&yaml, version)).unwrap()
    };
    let push = |version: u64| {
        let request = Request::put(proxy.admin_url(weir_crds::admin::SNAPSHOT_PATH))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::from(snapshot(version)))
            .unwrap();
        async move { send(&client(), request).await.status }
    };
    assert_eq!(push(1).await, StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (proxy, stop, served) = (proxy.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = get(&proxy.url("/"), "x").await;
                    if answer.status != StatusCode::OK || !answer.text().starts_with('v') {
                        failures.push(format!("{} {}", answer.status, answer.text()));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    for version in 2..=60 {
        assert_eq!(push(version).await, StatusCode::OK, "push {version}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(served.load(Ordering::Relaxed) > 60, "load kept flowing");
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "v60");
}

//! The admin API over real HTTP: authentication, snapshot pushes and their answers,
//! readiness, health and metrics.

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

const TOKEN: &str = "s3cret-token-of-at-least-32-characters";

async fn proxy_with_token() -> (TestProxy, tempfile::TempDir) {
    proxy_with_token_and(|_| {}).await
}

/// A proxy whose token file holds `TOKEN`, with `tweak` applied to its configuration.
async fn proxy_with_token_and(
    tweak: impl FnOnce(&mut weir_proxy::config::ProxyConfig),
) -> (TestProxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let proxy = TestProxy::start(|c| {
        c.admin_token_file = Some(token_file);
        tweak(c);
    })
    .await;
    (proxy, dir)
}

async fn admin(
    proxy: &TestProxy,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    request_to(&proxy.admin_url(path), method, token, body).await
}

/// `method url`, with the bearer `token` if given.
async fn request_to(url: &str, method: Method, token: Option<&str>, body: Vec<u8>) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(&client(), request.body(Full::from(body)).unwrap()).await
}

fn snapshot_bytes(version: u64, body: &str) -> Vec<u8> {
    let snapshot = compile_yaml(
        &route(
            "r",
            &format!("  rules: [{{directResponse: {{status: 200, body: {body}}}}}]"),
        ),
        version,
    );
    serde_json::to_vec(&snapshot).unwrap()
}

#[tokio::test]
async fn snapshot_endpoints_need_the_token() {
    let (proxy, _dir) = proxy_with_token().await;
    for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
        let answer = admin(
            &proxy,
            Method::PUT,
            "/v1/snapshot",
            token,
            snapshot_bytes(1, "x"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(answer.json()["error"], "unauthorized");
        let answer = admin(&proxy, Method::GET, "/v1/snapshot/version", token, vec![]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert!(!proxy.gateway.is_ready(), "nothing was applied");
    proxy.stop().await;
}

#[tokio::test]
async fn pushes_apply_in_order_and_readiness_follows() {
    let (proxy, _dir) = proxy_with_token().await;
    let ready = admin(&proxy, Method::GET, "/readyz", None, vec![]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&proxy.url("/"), "x").await.json()["error"], "not_ready");
    let version = admin(
        &proxy,
        Method::GET,
        "/v1/snapshot/version",
        Some(TOKEN),
        vec![],
    )
    .await
    .json();
    assert_eq!(version["version"], 0);

    let answer = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        snapshot_bytes(5, "five"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["version"], 5);
    assert!(body["hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        admin(&proxy, Method::GET, "/readyz", None, vec![])
            .await
            .json()["version"],
        5
    );
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "five");

    // The same push again is fine; an older one, or another with the same number, is not.
    assert_eq!(
        admin(
            &proxy,
            Method::PUT,
            "/v1/snapshot",
            Some(TOKEN),
            snapshot_bytes(5, "five")
        )
        .await
        .status,
        StatusCode::OK
    );
    let stale = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        snapshot_bytes(4, "four"),
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.json()["error"], "stale_version");
    assert_eq!(stale.json()["currentVersion"], 5);
    let conflicting = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        snapshot_bytes(5, "other"),
    )
    .await;
    assert_eq!(conflicting.status, StatusCode::CONFLICT);
    assert_eq!(
        get(&proxy.url("/"), "x").await.text(),
        "five",
        "refused pushes change nothing"
    );

    assert_eq!(
        admin(
            &proxy,
            Method::PUT,
            "/v1/snapshot",
            Some(TOKEN),
            snapshot_bytes(6, "six")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "six");
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_snapshots_are_refused_with_a_reason() {
    let (proxy, _dir) = proxy_with_token().await;
    let answer = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"], "invalid_snapshot");

    let mut tampered: serde_json::Value = serde_json::from_slice(&snapshot_bytes(1, "x")).unwrap();
    tampered["rules"]["test/r/0"]["action"]["body"] = "tampered".into();
    let answer = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        serde_json::to_vec(&tampered).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.json()["message"].as_str().unwrap().contains("hash"));

    let mut future: serde_json::Value = serde_json::from_slice(&snapshot_bytes(1, "x")).unwrap();
    future["format"] = 99.into();
    let answer = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        serde_json::to_vec(&future).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("format 99")
    );
    proxy.stop().await;
}

/// `PUT /v1/snapshot` with `body` sent as `Content-Encoding: encoding`.
async fn push_encoded(proxy: &TestProxy, encoding: &str, body: Vec<u8>) -> Answer {
    let request = Request::put(proxy.admin_url("/v1/snapshot"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-encoding", encoding)
        .body(Full::from(body))
        .unwrap();
    send(&client(), request).await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn snapshots_may_come_gzip_compressed() {
    let (proxy, _dir) = proxy_with_token().await;
    let answer = push_encoded(&proxy, "gzip", gzip(&snapshot_bytes(1, "zipped"))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["version"], 1);
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "zipped");

    // A coding the proxy does not speak: 415, naming the one it does (RFC 7694).
    let answer = push_encoded(&proxy, "br", snapshot_bytes(2, "brotli")).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.json()["error"], "unsupported_encoding");
    assert_eq!(answer.headers["accept-encoding"], "gzip");

    // Not gzip at all, and a small body that decompresses past the 64 MiB limit.
    let answer = push_encoded(&proxy, "gzip", snapshot_bytes(2, "plain")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.text().contains("not valid gzip"),
        "{}",
        answer.text()
    );
    let bomb = gzip(&vec![b' '; weir_proxy::admin::MAX_SNAPSHOT_BYTES + 1]);
    assert!(bomb.len() < 1024 * 1024);
    let answer = push_encoded(&proxy, "gzip", bomb).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["error"], "invalid_snapshot");
    assert!(answer.text().contains("larger than"), "{}", answer.text());

    // Nothing of that replaced what is served.
    assert_eq!(get(&proxy.url("/"), "x").await.text(), "zipped");
    proxy.stop().await;
}

#[tokio::test]
async fn objects_the_proxy_cannot_load_are_named_in_the_answer() {
    let (proxy, _dir) = proxy_with_token().await;
    let mut snapshot = compile_yaml(
        &format!(
            "{}{}",
            route(
                "good",
                "  hosts: [good.example]\n  rules: [{directResponse: {status: 200, body: good}}]"
            ),
            route(
                "bad",
                "  hosts: [bad.example]\n  rules: [{directResponse: {status: 200}}]"
            )
        ),
        1,
    );
    // A certificate whose key does not match: valid PEM, unusable pair.
    let one = rcgen::generate_simple_self_signed(vec!["bad.example".into()]).unwrap();
    let two = rcgen::generate_simple_self_signed(vec!["bad.example".into()]).unwrap();
    snapshot
        .certificates
        .push(weir_crds::snapshot::Certificate {
            hosts: vec!["bad.example".into()],
            secret: "test/mismatch".into(),
            routes: vec!["test/bad".into()],
            chain_pem: one.cert.pem(),
            key_pem: weir_crds::snapshot::PrivateKeyPem(two.signing_key.serialize_pem()),
        });
    snapshot.hash = snapshot.content_hash();
    let answer = admin(
        &proxy,
        Method::PUT,
        "/v1/snapshot",
        Some(TOKEN),
        serde_json::to_vec(&snapshot).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let failures = answer.json()["failures"].clone();
    assert_eq!(failures[0]["kind"], "Route");
    assert_eq!(
        (
            failures[0]["namespace"].as_str(),
            failures[0]["name"].as_str()
        ),
        (Some("test"), Some("bad"))
    );
    assert!(
        failures[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{failures}"
    );
    assert_eq!(
        get(&proxy.url("/"), "good.example").await.text(),
        "good",
        "the rest is served"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let (proxy, _dir) = proxy_with_token().await;
    proxy.apply_yaml(&route("api", "  rules: [{matches: [{path: {type: Template, value: '/users/{id}'}}], directResponse: {status: 200}}]")).await;
    assert_eq!(
        admin(&proxy, Method::GET, "/healthz", None, vec![])
            .await
            .json()["status"],
        "ok"
    );
    for id in ["1", "2", "3"] {
        get(&proxy.url(&format!("/users/{id}")), "x").await;
    }
    get(&proxy.url("/nothing/here"), "x").await;
    let metrics = admin(&proxy, Method::GET, "/metrics", None, vec![])
        .await
        .text();
    assert!(
        metrics.contains("weir_requests_total{route=\"test/api\",status_class=\"2xx\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_requests_total{route=\"-\",status_class=\"4xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_request_duration_seconds_count{route=\"test/api\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("weir_active_connections"), "{metrics}");
    assert!(metrics.contains("weir_snapshot_version 1"), "{metrics}");
    assert!(
        !metrics.contains("/users/1"),
        "route labels are names, never raw paths"
    );
    assert_eq!(
        admin(&proxy, Method::GET, "/nope", None, vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_metrics_listener_serves_probes_and_metrics_only() {
    let (proxy, _dir) =
        proxy_with_token_and(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_address = proxy.addresses.metrics.expect("metrics listener bound");
    let on_metrics = |method: Method, path: &str, token: Option<&'static str>| {
        let url = format!("http://{metrics_address}{path}");
        async move { request_to(&url, method, token, Vec::new()).await }
    };

    // Not ready before the first snapshot, ready after; health and metrics need no token.
    assert_eq!(
        on_metrics(Method::GET, "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    proxy
        .apply_yaml(&route("r", "  rules: [{directResponse: {status: 200}}]"))
        .await;
    assert_eq!(
        on_metrics(Method::GET, "/readyz", None).await.json()["status"],
        "ready"
    );
    assert_eq!(
        on_metrics(Method::GET, "/healthz", None).await.status,
        StatusCode::OK
    );
    assert!(
        on_metrics(Method::GET, "/metrics", None)
            .await
            .text()
            .contains("weir_snapshot_version 1")
    );

    // Snapshots cannot be read or pushed there, even with the token.
    for (method, path) in [
        (Method::GET, weir_crds::admin::VERSION_PATH),
        (Method::PUT, weir_crds::admin::SNAPSHOT_PATH),
    ] {
        let answer = on_metrics(method, path, Some(TOKEN)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.json()["error"], "not_found");
    }
    // The admin listener still serves them.
    assert_eq!(
        admin(
            &proxy,
            Method::GET,
            weir_crds::admin::VERSION_PATH,
            Some(TOKEN),
            vec![]
        )
        .await
        .json()["version"],
        1
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_admin_listener_speaks_https_when_given_a_certificate() {
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["weir-admin.local".into()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let proxy =
        TestProxy::start(|c| c.admin_tls = Some(weir_proxy::config::TlsFiles { cert, key })).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(proxy.addresses.admin)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("weir-admin.local").unwrap(),
            stream,
        )
        .await
        .expect("TLS handshake with the admin certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("/healthz")
                .body(Full::<bytes::Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"status":"ok"}"#);

    // Plain HTTP to the admin port gets nowhere.
    let plain = tokio::time::timeout(
        PATIENCE,
        client().request(
            Request::get(proxy.admin_url("/healthz"))
                .body(Full::default())
                .unwrap(),
        ),
    )
    .await;
    assert!(!matches!(plain, Ok(Ok(ref r)) if r.status() == StatusCode::OK));
    proxy.stop().await;
}

/// The token guards snapshots, which carry TLS private keys: a short one is refused at
/// start, and so is a plain-HTTP admin listener on a non-loopback address unless allowed.
#[tokio::test]
async fn weak_admin_setups_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "short-token\n").unwrap();
    let config = |tweak: &dyn Fn(&mut weir_proxy::config::ProxyConfig)| {
        let mut config = weir_proxy::config::ProxyConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        tweak(&mut config);
        config
    };
    let start = |config| async {
        weir_proxy::Proxy::start(config, Default::default(), Vec::new())
            .await
            .err()
            .map(|e| e.to_string())
    };

    let short = start(config(&|c| c.admin_token_file = Some(token_file.clone()))).await;
    let short = short.expect("a short token is refused");
    assert!(short.contains("11 characters; at least 32"), "{short}");

    let everywhere = "0.0.0.0:0".parse().unwrap();
    let plain = start(config(&|c| c.admin_listen = everywhere)).await;
    let plain = plain.expect("plain HTTP on every address is refused");
    assert!(
        plain.contains("not a loopback address and has no TLS"),
        "{plain}"
    );
    let allowed = start(config(&|c| {
        c.admin_listen = everywhere;
        c.admin_plaintext_allowed = true;
    }))
    .await;
    assert_eq!(allowed, None, "allowed with --admin-allow-plaintext");
}

/// A rotated token file (a Kubernetes Secret update swaps it) takes effect without a
/// restart; a rotation to an unusable token keeps the previous one.
#[tokio::test]
async fn the_token_file_is_read_again_when_it_changes() {
    let (proxy, dir) = proxy_with_token().await;
    let version = |token: &'static str| {
        let proxy = &proxy;
        async move {
            admin(
                proxy,
                Method::GET,
                weir_crds::admin::VERSION_PATH,
                Some(token),
                vec![],
            )
            .await
            .status
        }
    };
    assert_eq!(version(TOKEN).await, StatusCode::OK);

    const ROTATED: &str = "a-rotated-token-also-of-32-characters-or-more";
    let replace = |content: &str| {
        let fresh = dir.path().join("token.new");
        std::fs::write(&fresh, content).unwrap();
        std::fs::rename(&fresh, dir.path().join("token")).unwrap();
    };
    replace(ROTATED);
    assert_eq!(version(ROTATED).await, StatusCode::OK);
    assert_eq!(version(TOKEN).await, StatusCode::UNAUTHORIZED);

    replace("");
    assert_eq!(
        version(ROTATED).await,
        StatusCode::OK,
        "an empty file keeps the token"
    );
    proxy.stop().await;
}

/// With `--metrics-require-token`, `/metrics` needs the token on both listeners; probes
/// never do.
#[tokio::test]
async fn metrics_can_require_the_token() {
    let (proxy, _dir) = proxy_with_token_and(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_require_token = true;
    })
    .await;
    let metrics_address = proxy.addresses.metrics.unwrap();
    for base in [proxy.admin_url(""), format!("http://{metrics_address}")] {
        let get = |path: &str, token: Option<&'static str>| {
            let url = format!("{base}{path}");
            async move { request_to(&url, Method::GET, token, Vec::new()).await }
        };
        let refused = get("/metrics", None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{base}");
        assert_eq!(refused.json()["error"], "unauthorized");
        assert_eq!(
            get("/metrics", Some("wrong")).await.status,
            StatusCode::UNAUTHORIZED
        );
        let answered = get("/metrics", Some(TOKEN)).await;
        assert!(
            answered.text().contains("weir_active_connections"),
            "{base}"
        );
        assert_eq!(get("/healthz", None).await.status, StatusCode::OK, "{base}");
    }
    proxy.stop().await;
}

/// Slow clients on the admin and metrics listeners: a connection that sends nothing, or
/// half a request head, is closed (after the admin listeners' 10 s read timeout).
#[tokio::test]
async fn admin_connections_that_send_no_request_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let proxy = TestProxy::start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let listeners = [proxy.addresses.admin, proxy.addresses.metrics.unwrap()];
    let openings: [&'static [u8]; 2] = [b"", b"GET /metrics HTTP/1.1\r\nhost: x\r\n"];
    // All at once: each waits out the same timeout.
    let slow_clients = listeners.into_iter().flat_map(|address| {
        openings.into_iter().map(move |opening| async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.write_all(opening).await.unwrap();
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
            assert!(
                closed.is_ok(),
                "{address}: {:?} kept open",
                String::from_utf8_lossy(opening)
            );
        })
    });
    futures::future::join_all(slow_clients).await;
    proxy.stop().await;
}

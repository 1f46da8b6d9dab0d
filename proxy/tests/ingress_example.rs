//! `examples/ingress`: real-world Ingresses with ingress-nginx annotations, served by
//! `weir-proxy --config`, walked as its README does (with the example's backend ports
//! replaced by this test's upstreams).

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;
use weir_crds::compile::report::{InSnapshot, ObjectKind};
use weir_crds::condition::Reason;

const FILES: [&str; 2] = ["services.yaml", "ingresses.yaml"];

/// An upstream answering with its name, the path and the Host header it received.
async fn echo(name: &'static str) -> Upstream {
    Upstream::start(move |seen| async move {
        let host = seen
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        text(StatusCode::OK, &format!("{name} {} {host}", seen.uri))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_example_serves_its_annotations() {
    let storefront = echo("storefront").await;
    let api = echo("catalog-api").await;
    let canary = echo("catalog-api-canary").await;
    let office = echo("back-office").await;
    let dir = example_dir(
        "ingress",
        &FILES,
        &[
            (19081, storefront.addr.port()),
            (19082, api.addr.port()),
            (19083, canary.addr.port()),
            (19084, office.addr.port()),
        ],
    );

    // What the compiler says of the example: everything served, one annotation reported.
    let manifests = manifests_in(dir.path(), &FILES);
    let compilation = weir_crds::compile(&manifests.inputs());
    for name in [
        "storefront",
        "catalog-api",
        "catalog-api-canary",
        "back-office",
        "old-domain",
    ] {
        let report = compilation
            .report(ObjectKind::Ingress, "shop", name)
            .unwrap_or_else(|| panic!("Ingress {name} reported"));
        assert_eq!(report.in_snapshot, InSnapshot::Whole, "{name}");
        let expected: &[&str] = if name == "storefront" {
            &["metadata.annotations[nginx.ingress.kubernetes.io/proxy-buffering]"]
        } else {
            &[]
        };
        let fields: Vec<&str> = report
            .diagnostics
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(fields, expected, "{name}");
        assert!(
            report
                .diagnostics
                .iter()
                .all(|d| d.reason == Reason::UnsupportedAnnotation)
        );
    }

    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;
    let client = client();
    let request =
        |method: Method, path: &str, host: &str, headers: &[(&str, &str)], body: Vec<u8>| {
            let mut builder = Request::builder()
                .method(method)
                .uri(proxy.url(path))
                .header("host", host);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            send(&client, builder.body(Full::from(body)).unwrap())
        };
    let get = |path: &'static str,
               host: &'static str,
               headers: &'static [(&'static str, &'static str)]| {
        request(Method::GET, path, host, headers, Vec::new())
    };

    // app-root: `/` goes to the application root; the storefront serves it.
    let root = get("/", "shop.localhost", &[]).await;
    assert_eq!(root.status, StatusCode::FOUND);
    assert_eq!(root.headers["location"], "http://shop.localhost/store");
    let store = get("/store/cart", "shop.localhost", &[]).await;
    assert_eq!(store.text(), "storefront /store/cart shop.localhost");

    // The regex rewrite cuts /api/v1; the canary takes what asks for it, by header or
    // cookie, and the header wins over the cookie.
    let to_canary = get(
        "/api/v1/items/7",
        "shop.localhost",
        &[("x-canary", "always")],
    )
    .await;
    assert_eq!(
        to_canary.text(),
        "catalog-api-canary /items/7 shop.localhost"
    );
    let by_cookie = get(
        "/api/v1/items",
        "shop.localhost",
        &[("cookie", "theme=dark; canary=always")],
    )
    .await;
    assert!(by_cookie.text().starts_with("catalog-api-canary /items "));
    let header_wins = get(
        "/api/v1/items",
        "shop.localhost",
        &[("x-canary", "never"), ("cookie", "canary=always")],
    )
    .await;
    assert!(header_wins.text().starts_with("catalog-api /items "));
    // By weight: 10% to the canary, so of 200 requests both see some, the main most.
    let mut to_main = 0;
    for _ in 0..200 {
        let answer = get("/api/v1", "shop.localhost", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        if answer.text().starts_with("catalog-api / ") {
            to_main += 1;
        } else {
            assert!(
                answer.text().starts_with("catalog-api-canary / "),
                "{}",
                answer.text()
            );
        }
    }
    assert!(
        (140..200).contains(&to_main),
        "{to_main} of 200 to the main build"
    );

    // CORS for the storefront's origin, answered by the proxy.
    let preflight = request(
        Method::OPTIONS,
        "/api/v1/items",
        "shop.localhost",
        &[
            ("origin", "http://shop.localhost"),
            ("access-control-request-method", "POST"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "http://shop.localhost"
    );

    // The back office is for the office network only: this test is not in it.
    let office_answer = get("/", "admin.shop.localhost", &[]).await;
    assert_eq!(office_answer.status, StatusCode::FORBIDDEN);
    assert!(office.requests().is_empty());

    // The old domain redirects, whatever the path.
    let moved = get("/anything", "old-shop.localhost", &[]).await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert!(
        moved.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("http://shop.localhost/store"),
        "{:?}",
        moved.headers["location"]
    );

    // proxy-body-size: 1m. Refused by its Content-Length before the body is read (a
    // client still sending 2 MB would see the connection closed under it).
    let upload = raw_exchange(
        &proxy,
        b"POST /store/upload HTTP/1.1\r\nHost: shop.localhost\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(upload.starts_with("HTTP/1.1 413"), "{upload}");
    let small = request(
        Method::POST,
        "/store/upload",
        "shop.localhost",
        &[],
        vec![0; 1000],
    )
    .await;
    assert_eq!(small.status, StatusCode::OK);
    proxy.stop().await;
}

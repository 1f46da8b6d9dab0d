//! `examples/gateway-api`: a Gateway and HTTPRoutes served by `weir-proxy --config`,
//! walked as its README does (with the example's backend ports replaced by this test's
//! upstreams).

mod support;

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;
use weir_crds::compile::report::{InSnapshot, ObjectKind};

const FILES: [&str; 3] = ["gateway.yaml", "services.yaml", "routes.yaml"];

/// An upstream answering with its name, the method, the path and the Host header and
/// `x-cart-checked` it received.
async fn echo(name: &'static str) -> Upstream {
    Upstream::start(move |seen| async move {
        let header = |name: &str| {
            seen.headers
                .get(name)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        text(
            StatusCode::OK,
            &format!(
                "{name} {} {} {} {}",
                seen.method,
                seen.uri,
                header("host"),
                header("x-cart-checked")
            ),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_api_example_serves_its_routes() {
    let storefront = echo("storefront").await;
    let api = echo("catalog-api").await;
    let api_v2 = echo("catalog-api-v2").await;
    let checkout = echo("checkout").await;
    let dir = example_dir(
        "gateway-api",
        &FILES,
        &[
            (19091, storefront.addr.port()),
            (19092, api.addr.port()),
            (19093, api_v2.addr.port()),
            (19094, checkout.addr.port()),
        ],
    );

    // What the compiler says of the example: everything accepted and served.
    let manifests = manifests_in(dir.path(), &FILES);
    let compilation = weir_crds::compile(&manifests.inputs());
    for (kind, namespace, name) in [
        (ObjectKind::GatewayClass, "", "weir"),
        (ObjectKind::Gateway, "infra", "public"),
        (ObjectKind::HTTPRoute, "shop", "storefront"),
        (ObjectKind::HTTPRoute, "shop", "old-domain"),
    ] {
        let report = compilation
            .report(kind, namespace, name)
            .unwrap_or_else(|| panic!("{kind} {namespace}/{name} reported"));
        assert_eq!(report.diagnostics, vec![], "{kind} {name}");
        assert_eq!(report.in_snapshot, InSnapshot::Whole, "{kind} {name}");
    }

    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;
    let client = client();
    let request = |method: Method, path: &str, host: &str, headers: &[(&str, &str)]| {
        let mut builder = Request::builder()
            .method(method)
            .uri(proxy.url(path))
            .header("host", host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        send(&client, builder.body(Full::default()).unwrap())
    };

    // The storefront, with the response header its filter sets.
    let home = request(Method::GET, "/", "shop.localhost", &[]).await;
    assert_eq!(home.text(), "storefront GET / shop.localhost -");
    assert_eq!(home.headers["x-served-by"], "weir");

    // The catalog API: v2 for whoever asks for it; else 10% of requests.
    let asked = request(
        Method::GET,
        "/api/items",
        "shop.localhost",
        &[("x-version", "2")],
    )
    .await;
    assert!(asked.text().starts_with("catalog-api-v2 GET /api/items "));
    let mut to_v1 = 0;
    for _ in 0..200 {
        let answer = request(Method::GET, "/api", "shop.localhost", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        if answer.text().starts_with("catalog-api GET") {
            to_v1 += 1;
        } else {
            assert!(
                answer.text().starts_with("catalog-api-v2 GET"),
                "{}",
                answer.text()
            );
        }
    }
    assert!((150..200).contains(&to_v1), "{to_v1} of 200 to v1");

    // Old links are rewritten to the API.
    let old_link = request(Method::GET, "/catalog/items/7", "shop.localhost", &[]).await;
    assert!(
        old_link.text().starts_with("catalog-api GET /api/items/7 "),
        "{}",
        old_link.text()
    );

    // Checkout: POST only, in the payments namespace, through the require-cart plugin.
    let refused = request(Method::POST, "/checkout", "shop.localhost", &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.text().contains("cart_missing"),
        "{}",
        refused.text()
    );
    assert!(checkout.requests().is_empty());
    let paid = request(
        Method::POST,
        "/checkout",
        "shop.localhost",
        &[("x-cart", "c-42")],
    )
    .await;
    assert_eq!(paid.text(), "checkout POST /checkout shop.localhost c-42");
    let looked = request(Method::GET, "/checkout", "shop.localhost", &[]).await;
    assert!(
        looked.text().starts_with("storefront GET /checkout "),
        "a GET is the storefront's: {}",
        looked.text()
    );

    // The old domain redirects, path and all.
    let moved = request(Method::GET, "/store/cart", "old-shop.localhost", &[]).await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        moved.headers["location"],
        "http://shop.localhost/store/cart"
    );

    // A host no listener admits is not served.
    let elsewhere = request(Method::GET, "/", "shop.example.com", &[]).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    proxy.stop().await;
}

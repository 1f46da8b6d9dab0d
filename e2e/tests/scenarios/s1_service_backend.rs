//! Scenario 1: a Route to a Service backend. Traffic flows and the Route is `Accepted`,
//! `ResolvedRefs` and `Programmed`; when the Service's endpoints change (one added, one
//! made not ready) traffic follows within 2 s.

use std::time::Duration;

use weir_e2e::Scenario;
use weir_e2e::http::get;
use weir_e2e::objects::{self, Endpoint};
use weir_e2e::scenario::OperatorOptions;

use crate::common::{programmed, route, to_service};

const HOST: &str = "web.e2e.example";
/// How fast endpoint changes must reach traffic.
const FOLLOW: Duration = Duration::from_secs(2);

#[tokio::test]
async fn s1_traffic_follows_the_endpoints_of_a_service_backend() {
    let Some(mut scenario) = Scenario::start("s1").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let a = scenario.backend("a").await;
    let b = scenario.backend("b").await;
    let proxy = scenario.proxy("a").await;
    scenario.publish_proxies(&[&proxy]).await;
    let ready = |backend: &weir_e2e::scenario::Backend, ready| Endpoint {
        address: backend.address,
        ready,
    };
    scenario
        .backend_service(&ns, "web", &[ready(&a, true)])
        .await;
    objects::apply(&scenario.client, &ns, route("web", HOST, to_service("web"))).await;
    let _operator = scenario.operator(&OperatorOptions::new("s1"));

    let routes = objects::routes(&scenario.client, &ns);
    let (web, _) = scenario
        .wait_for(&routes, "web", Duration::from_secs(60), programmed(1))
        .await;
    assert_eq!(web.metadata.generation, Some(1));
    scenario
        .wait_until("backend a serves", Duration::from_secs(10), || async {
            served_by(&proxy, "a").await
        })
        .await;

    // One endpoint added: b starts receiving requests.
    scenario
        .backend_endpoints(&ns, "web", &[ready(&a, true), ready(&b, true)])
        .await;
    let took = scenario
        .wait_until("backend b receives requests", FOLLOW, || async {
            for _ in 0..10 {
                if served_by(&proxy, "b").await.is_ok() {
                    return Ok(());
                }
            }
            Err("ten requests, none served by b".to_owned())
        })
        .await;
    println!("s1: an added endpoint took traffic after {took:?}");

    // a made not ready: only b serves.
    scenario
        .backend_endpoints(&ns, "web", &[ready(&a, false), ready(&b, true)])
        .await;
    let took = scenario
        .wait_until("only backend b serves", FOLLOW, || async {
            for _ in 0..10 {
                served_by(&proxy, "b").await?;
            }
            Ok(())
        })
        .await;
    println!("s1: a not-ready endpoint stopped taking traffic after {took:?}");

    // Endpoints are not the Route's spec: its status still describes generation 1, now
    // programmed with the snapshot that has the new endpoints.
    let (web, _) = scenario
        .wait_for(&routes, "web", Duration::from_secs(10), programmed(1))
        .await;
    assert_eq!(web.metadata.generation, Some(1));
}

/// Whether one request to `HOST` is answered by backend `name`.
async fn served_by(proxy: &weir_e2e::scenario::Proxy, name: &str) -> Result<(), String> {
    let response = get(proxy.traffic, HOST, "/")
        .await
        .map_err(|e| format!("no response: {e}"))?;
    if response.status == 200 && response.body == format!("backend {name}") {
        Ok(())
    } else {
        Err(format!("{} {}", response.status, response.body))
    }
}

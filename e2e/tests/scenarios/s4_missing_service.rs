//! Scenario 4: a Route to a Service that does not exist: `ResolvedRefs=False`
//! (`BackendNotFound`) while the other Routes serve; once the Service exists the Route is
//! programmed and serves.

use std::time::Duration;

use weir_e2e::Scenario;
use weir_e2e::http::get;
use weir_e2e::objects::{self, Endpoint};
use weir_e2e::scenario::OperatorOptions;

use crate::common::{answers, current, expect, programmed, route, to_service};

#[tokio::test]
async fn s4_a_route_to_a_missing_service_waits_for_it() {
    let Some(mut scenario) = Scenario::start("s4").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let a = scenario.backend("a").await;
    let b = scenario.backend("b").await;
    let proxy = scenario.proxy("a").await;
    scenario.publish_proxies(&[&proxy]).await;
    scenario
        .backend_service(
            &ns,
            "web",
            &[Endpoint {
                address: a.address,
                ready: true,
            }],
        )
        .await;
    let client = scenario.client.clone();
    objects::apply(
        &client,
        &ns,
        route("web", "web.e2e.example", to_service("web")),
    )
    .await;
    objects::apply(
        &client,
        &ns,
        route("late", "late.e2e.example", to_service("late")),
    )
    .await;
    let _operator = scenario.operator(&OperatorOptions::new("s4"));

    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&routes, "web", timeout, programmed(1))
        .await;
    let (late, _) = scenario
        .wait_for(&routes, "late", timeout, |r| {
            current(r)?;
            expect(r, "Accepted", "True", "Accepted")?;
            expect(r, "ResolvedRefs", "False", "BackendNotFound")
        })
        .await;
    println!(
        "s4: ResolvedRefs=False says {:?}",
        objects::message(&late, "ResolvedRefs")
    );
    // The other Route serves; the late one has no endpoints to send to.
    scenario
        .wait_until("web serves", Duration::from_secs(10), || async {
            answers(proxy.traffic, "web.e2e.example", "backend a").await
        })
        .await;
    let response = get(proxy.traffic, "late.e2e.example", "/")
        .await
        .expect("a response");
    assert_eq!(
        response.status, 503,
        "the late Route without its Service: {response:?}"
    );

    // The Service appears.
    scenario
        .backend_service(
            &ns,
            "late",
            &[Endpoint {
                address: b.address,
                ready: true,
            }],
        )
        .await;
    scenario
        .wait_for(&routes, "late", timeout, programmed(1))
        .await;
    scenario
        .wait_until("late serves", Duration::from_secs(10), || async {
            answers(proxy.traffic, "late.e2e.example", "backend b").await
        })
        .await;
    answers(proxy.traffic, "web.e2e.example", "backend a")
        .await
        .unwrap_or_else(|e| scenario.fail(&e));
    scenario
        .wait_for(&routes, "web", timeout, programmed(1))
        .await;
}

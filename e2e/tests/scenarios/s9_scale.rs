//! Scenario 9: 200 Routes created at once are all `Programmed` within 10 s and served;
//! then 1,000 more, whose time to be programmed and served is reported (printed), not
//! asserted: timing goals belong in benchmarks, this only shows they converge.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::ListParams;
use weir_e2e::Scenario;
use weir_e2e::objects;
use weir_e2e::scenario::OperatorOptions;

use crate::common::{answers, programmed, route};

/// Routes created at once whose programming is asserted.
const ASSERTED: usize = 200;
/// Routes created at once whose programming is reported.
const REPORTED: usize = 1000;
/// Concurrent create requests.
const CONCURRENT_WRITES: usize = 32;

fn host(i: usize) -> String {
    format!("r{i}.scale.e2e.example")
}

fn numbered(i: usize) -> serde_json::Value {
    route(
        &format!("r{i}"),
        &host(i),
        serde_json::json!([{"directResponse": {"status": 200, "body": format!("route {i}")}}]),
    )
}

#[tokio::test]
async fn s9_200_routes_are_programmed_within_10s_and_1000_are_timed() {
    let Some(mut scenario) = Scenario::start("s9").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let proxy = scenario.proxy("a").await;
    scenario.publish_proxies(&[&proxy]).await;
    let client = scenario.client.clone();
    let _operator = scenario.operator(&OperatorOptions::new("s9"));
    // A warm operator: it has listed everything and programmed the proxy once.
    objects::apply(&client, &ns, numbered(0)).await;
    let routes = objects::routes(&client, &ns);
    scenario
        .wait_for(&routes, "r0", Duration::from_secs(60), programmed(1))
        .await;

    let took = create_and_wait(&scenario, 1..=ASSERTED, Duration::from_secs(10)).await;
    println!("s9: {ASSERTED} Routes created at once were all Programmed after {took:?}");
    serve_all(&scenario, proxy.traffic, 1..=ASSERTED).await;

    let took = create_and_wait(
        &scenario,
        ASSERTED + 1..=ASSERTED + REPORTED,
        Duration::from_secs(300),
    )
    .await;
    println!(
        "s9: {REPORTED} Routes created at once (with {} already there) were all Programmed after {took:?}",
        ASSERTED + 1
    );
    serve_all(&scenario, proxy.traffic, ASSERTED + 1..=ASSERTED + REPORTED).await;
}

/// Creates Routes `numbers` at once and waits until every one is Programmed on the one
/// proxy at generation 1, failing when that takes longer than `timeout` from the first
/// create; the time from the first create to the last Programmed.
async fn create_and_wait(
    scenario: &Scenario,
    numbers: std::ops::RangeInclusive<usize>,
    timeout: Duration,
) -> Duration {
    let ns = scenario.ns();
    let client = &scenario.client;
    let start = Instant::now();
    futures::stream::iter(numbers.clone())
        .map(|i| objects::apply(client, ns, numbered(i)))
        .buffer_unordered(CONCURRENT_WRITES)
        .collect::<Vec<_>>()
        .await;
    let created = start.elapsed();
    let routes = objects::routes(client, ns);
    let wanted: std::collections::BTreeSet<String> =
        numbers.clone().map(|i| format!("r{i}")).collect();
    let check = programmed(1);
    // Listing a thousand Routes costs tens of milliseconds of this process's and the API
    // server's CPU, which the operator shares: look four times a second.
    scenario
        .wait_until_every(
            &format!("{} Routes Programmed", wanted.len()),
            timeout.saturating_sub(created),
            Duration::from_millis(250),
            || {
                let (routes, wanted, check) = (routes.clone(), &wanted, &check);
                async move {
                    let list = routes
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| format!("listing Routes: {e}"))?;
                    let mut waiting = Vec::new();
                    for route in &list.items {
                        let name = route.metadata.name.clone().unwrap_or_default();
                        if wanted.contains(&name)
                            && let Err(why) = check(route)
                        {
                            waiting.push(format!("{name}: {why}"));
                        }
                    }
                    let listed = list
                        .items
                        .iter()
                        .filter(|r| r.metadata.name.as_ref().is_some_and(|n| wanted.contains(n)))
                        .count();
                    if listed == wanted.len() && waiting.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} of {} not yet Programmed, e.g. {:?}",
                            waiting.len() + wanted.len() - listed,
                            wanted.len(),
                            waiting.first()
                        ))
                    }
                }
            },
        )
        .await;
    let took = start.elapsed();
    println!("s9: creating {} Routes took {created:?}", wanted.len());
    assert!(
        took <= timeout,
        "{} Routes were Programmed {took:?} after the first create, more than {timeout:?}",
        wanted.len()
    );
    took
}

/// Every Route of `numbers` answers on its host.
async fn serve_all(
    scenario: &Scenario,
    proxy: std::net::SocketAddr,
    numbers: std::ops::RangeInclusive<usize>,
) {
    for i in numbers {
        if let Err(e) = answers(proxy, &host(i), &format!("route {i}")).await {
            scenario.fail(&e);
        }
    }
}

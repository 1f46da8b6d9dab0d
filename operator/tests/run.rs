//! The reconcile loop: nothing happens before the stores sync, a burst of changes gives
//! one build, a new proxy endpoint gets the snapshot without a build, a standby builds
//! nothing, and shutdown ends the loop.

mod support;

use std::time::Duration;

use support::*;
use tokio::sync::{mpsc, watch};
use weir_operator::reconcile::run;
use weir_operator::watch::Change;

fn reconciles(h: &weir_operator::metrics::Metrics) -> u64 {
    let text = h.encode();
    text.lines()
        .find_map(|l| l.strip_prefix("weir_operator_reconciles_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen in time"));
}

#[tokio::test]
async fn bursts_are_debounced_and_new_proxies_served_at_once() {
    let first = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let Harness {
        reconciler,
        stores: _,
        mut writers,
        api,
        metrics,
    } = Harness::new();
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let (leading_tx, leading_rx) = watch::channel(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let debounce = Duration::from_millis(300);
    let task = tokio::spawn(run(reconciler, changes_rx, leading_rx, stop_rx, debounce));

    // Not ready: the stores have not listed anything, so nothing is built or pushed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(reconciles(&metrics), 0);
    assert!(!metrics.is_ready());

    let route = route_json("api", 1, "api.example.com", "v1");
    api.know(&weir_path("routes", "shop", "api"), &route);
    fill(&mut writers.routes[0], vec![support::route(&route)]);
    fill(&mut writers.plugins[0], Vec::new());
    fill(&mut writers.config_maps[0], Vec::new());
    fill(&mut writers.services[0], Vec::new());
    fill(&mut writers.endpoint_slices[0], Vec::new());
    fill(&mut writers.secrets[0], Vec::new());
    fill(&mut writers.ingresses[0], Vec::new());
    fill(&mut writers.ingress_classes[0], Vec::new());
    fill(&mut writers.publish_service[0], Vec::new());
    fill(&mut writers.gateway_classes[0], Vec::new());
    fill(&mut writers.gateways[0], Vec::new());
    fill(&mut writers.http_routes[0], Vec::new());
    fill(&mut writers.reference_grants[0], Vec::new());
    fill(&mut writers.namespaces[0], Vec::new());
    fill(&mut writers.proxy_slices[0], slices_for(&[first.addr]));
    eventually("the first build", || reconciles(&metrics) == 1).await;
    assert!(metrics.is_ready());
    eventually("the first push", || first.versions() == [1]).await;

    // A burst of ten changes within the debounce gives one build.
    for i in 0..10 {
        apply(
            &mut writers.routes[0],
            support::route(&route_json(
                "api",
                2 + i,
                "api.example.com",
                &format!("v{i}"),
            )),
        );
        changes_tx.send(Change::Objects).unwrap();
    }
    eventually("the burst's build", || reconciles(&metrics) == 2).await;
    eventually("the burst's push", || first.versions() == [1, 2]).await;
    tokio::time::sleep(debounce * 3).await;
    assert_eq!(reconciles(&metrics), 2, "one build for the whole burst");

    // A new proxy endpoint: pushed to at once, without a build.
    let second = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    fill(
        &mut writers.proxy_slices[0],
        slices_for(&[first.addr, second.addr]),
    );
    changes_tx.send(Change::Proxies).unwrap();
    eventually("the push to the new proxy", || second.versions() == [2]).await;
    assert_eq!(reconciles(&metrics), 2);
    assert_eq!(first.versions(), [1, 2]);

    // A standby builds and pushes nothing.
    leading_tx.send(false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    apply(
        &mut writers.routes[0],
        support::route(&route_json("api", 50, "api.example.com", "standby")),
    );
    changes_tx.send(Change::Objects).unwrap();
    tokio::time::sleep(debounce * 3).await;
    assert_eq!(reconciles(&metrics), 2);
    assert_eq!(first.versions(), [1, 2]);

    // Leading again: a build at once, numbered above what the proxies serve.
    leading_tx.send(true).unwrap();
    eventually("the new leader's build", || first.versions().len() == 3).await;
    assert_eq!(reconciles(&metrics), 3);
    let versions = first.versions();
    assert!(versions[2] > 2, "{versions:?}");
    eventually("the push to the second proxy", || {
        second.versions().last() == versions.last()
    })
    .await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
}

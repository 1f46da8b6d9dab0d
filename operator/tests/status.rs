//! Status writes against the `tower_test` fake API server: they run in the background
//! with bounded concurrency, back off when the API server answers `429`, are coalesced
//! per object (a write superseded while queued is never sent), and a change to one object
//! among many writes one status.

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use serde_json::Value;
use support::*;
use weir_operator::status::StatusLimits;

fn routes(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| route_json(&format!("r{i}"), 1, &format!("r{i}.example.com"), "hello"))
        .collect()
}

fn limits(concurrency: usize) -> StatusLimits {
    StatusLimits {
        concurrency,
        per_second: NonZeroU32::new(10_000).unwrap(),
    }
}

#[tokio::test]
async fn writes_are_bounded_and_back_off_when_the_api_server_refuses() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::with_limits(limits(3));
    h.objects(&routes(20), &[], Vec::new());
    h.proxies(&[proxy.addr]);
    *h.api.status_delay.lock().unwrap() = Duration::from_millis(30);
    *h.api.refuse_status.lock().unwrap() = 2;

    let outcome = h.lead().await;
    assert_eq!(outcome.status.queued, 20);
    let patches = h.api.take_status_patches();
    // 2 refused with 429 and sent again, 20 applied.
    assert_eq!(patches.len(), 22, "{patches:#?}");
    for i in 0..20 {
        let status = h.api.objects.lock().unwrap()[&weir_path("routes", "shop", &format!("r{i}"))]
            ["status"]
            .clone();
        assert_eq!(
            condition(&serde_json::json!({"status": status}), "Programmed")["status"],
            "True"
        );
    }
    let (now, most) = *h.api.status_in_flight.lock().unwrap();
    assert_eq!(now, 0);
    assert!(
        (2..=3).contains(&most),
        "at most 3 writes at once, and more than one: {most}"
    );
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains("weir_operator_status_writes_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_operator_status_writes_total{outcome=\"written\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_operator_status_queue 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_write_superseded_while_queued_is_not_sent() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::with_limits(limits(1));
    h.objects(&routes(3), &[], Vec::new());
    h.proxies(&[proxy.addr]);
    h.api.status_held.send_replace(true);

    // Three writes queued; one at a time, so r1 and r2 wait behind r0, which is held.
    let first = within(h.reconciler.lead()).await;
    assert_eq!(first.status.queued, 3);
    // r1 changes before its first write went out: only its newest status is written.
    apply(
        &mut h.writers.routes[0],
        route(&route_json("r1", 2, "r1.example.com", "changed")),
    );
    let second = within(h.reconciler.reconcile()).await;
    assert_eq!(second.status.queued, 1);
    h.api.status_held.send_replace(false);
    within(h.reconciler.status().idle()).await;
    let patches = h.api.take_status_patches();
    let r1: Vec<&Value> = patches
        .iter()
        .filter(|(path, _)| path.ends_with("/routes/r1/status"))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(r1.len(), 1, "{patches:#?}");
    assert_eq!(r1[0]["status"]["observedGeneration"], 2);
    assert_eq!(patches.len(), 3, "{patches:#?}");
}

#[tokio::test]
async fn one_change_among_many_objects_writes_one_status() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::new();
    h.objects(&routes(100), &[], Vec::new());
    h.proxies(&[proxy.addr]);
    h.lead().await;
    let patches = h.api.take_status_patches();
    assert_eq!(patches.len(), 100);
    h.echo_status(&patches);

    apply(
        &mut h.writers.routes[0],
        route(&route_json("r7", 2, "r7.example.com", "changed")),
    );
    let outcome = h.reconcile().await;
    assert_eq!(outcome.version, 2);
    assert_eq!(proxy.versions(), [1, 2]);
    assert_eq!((outcome.status.queued, outcome.status.unchanged), (1, 99));
    let patches = h.api.take_status_patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert!(patches[0].0.ends_with("/routes/r7/status"));
}

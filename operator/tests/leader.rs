//! Leader election against the fake API server's Leases: one leader at a time, a standby
//! takes over once the leader stops renewing, a released Lease is taken at once, and
//! only the leader's reconciler pushes.

mod support;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use support::*;
use tokio::sync::watch;
use weir_operator::config::LeaseConfig;
use weir_operator::leader::Elector;
use weir_operator::metrics::Metrics;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/weir/leases/weir-operator";

fn elector(client: &kube::Client, identity: &str) -> Elector {
    Elector::new(
        client.clone(),
        &LeaseConfig {
            name: "weir-operator".into(),
            namespace: "weir".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        },
    )
}

fn holder(api: &FakeApi) -> serde_json::Value {
    api.leases.lock().unwrap()[LEASE]["spec"]["holderIdentity"].clone()
}

/// Makes the Lease look unrenewed for a minute, as when its holder died.
fn age_lease(api: &FakeApi) {
    let past = Timestamp::from_second(Timestamp::now().as_second() - 60).unwrap();
    let mut leases = api.leases.lock().unwrap();
    let lease = leases.get_mut(LEASE).unwrap();
    lease["spec"]["renewTime"] = json!(format!("{}", past.strftime("%Y-%m-%dT%H:%M:%S.000000Z")));
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_stops_renewing() {
    let (client, api) = FakeApi::start();
    let a = elector(&client, "replica-a");
    let b = elector(&client, "replica-b");

    assert!(
        a.try_lead().await.unwrap(),
        "the first replica creates the Lease"
    );
    assert_eq!(holder(&api), "replica-a");
    assert!(!b.try_lead().await.unwrap(), "a held Lease is not taken");
    assert!(a.try_lead().await.unwrap(), "the holder renews");
    assert!(!b.try_lead().await.unwrap());
    assert_eq!(
        api.leases.lock().unwrap()[LEASE]["spec"]["leaseTransitions"],
        0
    );

    // replica-a stops renewing: once the Lease has expired, replica-b takes it.
    age_lease(&api);
    assert!(b.try_lead().await.unwrap());
    assert_eq!(holder(&api), "replica-b");
    assert_eq!(
        api.leases.lock().unwrap()[LEASE]["spec"]["leaseTransitions"],
        1
    );
    assert!(
        !a.try_lead().await.unwrap(),
        "the old leader is now a standby"
    );

    // A released Lease is taken at once.
    b.release().await.unwrap();
    assert!(holder(&api).is_null());
    assert!(a.try_lead().await.unwrap());
    assert_eq!(holder(&api), "replica-a");
}

#[tokio::test]
async fn two_replicas_racing_for_a_free_lease_get_one_leader() {
    let (client, api) = FakeApi::start();
    let a = elector(&client, "replica-a");
    let b = elector(&client, "replica-b");
    assert!(a.try_lead().await.unwrap());
    age_lease(&api);
    // Both see an expired Lease; the resourceVersion lets only one write win.
    let c = elector(&client, "replica-c");
    let (ra, rb) = tokio::join!(b.try_lead(), c.try_lead());
    assert_eq!(
        [ra.unwrap(), rb.unwrap()].iter().filter(|w| **w).count(),
        1,
        "exactly one replica takes the Lease"
    );
}

#[tokio::test]
async fn the_election_loop_publishes_leadership_and_releases_on_shutdown() {
    let (client, api) = FakeApi::start();
    let metrics = Metrics::new();
    let (leading_tx, mut leading_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(elector(&client, "replica-a").run(leading_tx, stop_rx, metrics.clone()));
    tokio::time::timeout(PATIENCE, leading_rx.wait_for(|l| *l))
        .await
        .expect("leads in time")
        .unwrap();
    assert!(metrics.encode().contains("weir_operator_leader 1"));

    // A standby loop sees the Lease held and does not lead.
    let (standby_tx, standby_rx) = watch::channel(false);
    let (standby_stop_tx, standby_stop_rx) = watch::channel(false);
    let standby = tokio::spawn(elector(&client, "replica-b").run(
        standby_tx,
        standby_stop_rx,
        Metrics::new(),
    ));
    // Wait until the standby has asked at least once.
    let asked = |api: &FakeApi| {
        api.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == http::Method::GET)
            .count()
    };
    let before = asked(&api);
    tokio::time::timeout(PATIENCE, async {
        while asked(&api) <= before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(!*standby_rx.borrow());

    // The leader shuts down and releases: the standby takes over without waiting for the
    // Lease to expire (it polls every third of the 15 s duration).
    stop_tx.send(true).unwrap();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    assert!(holder(&api).is_null());
    let mut standby_rx = standby_rx;
    tokio::time::timeout(PATIENCE, standby_rx.wait_for(|l| *l))
        .await
        .expect("the standby takes over")
        .unwrap();
    assert_eq!(holder(&api), "replica-b");
    standby_stop_tx.send(true).unwrap();
    tokio::time::timeout(PATIENCE, standby)
        .await
        .unwrap()
        .unwrap();
}

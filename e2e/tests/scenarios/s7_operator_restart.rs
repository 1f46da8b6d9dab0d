//! Scenario 7: the operator restarted, then two replicas with the leader killed: traffic
//! never stops, the standby takes over when the Lease expires (not before, and at its
//! first look after), and status converges (changes made after each step are programmed
//! and served).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use weir_e2e::Scenario;
use weir_e2e::http::Load;
use weir_e2e::objects;
use weir_e2e::scenario::{OperatorOptions, Proxy};

use crate::common::{programmed, route};

const HOST: &str = "steady.e2e.example";
/// Short, so the takeover is quick; the operator polls the Lease every third of it.
const LEASE: Duration = Duration::from_secs(6);

/// The Route at `version`: `/` to the backend, `/version` answered with the version.
fn steady(version: u32) -> serde_json::Value {
    route(
        "steady",
        HOST,
        json!([
            {"matches": [{"path": {"type": "Exact", "value": "/version"}}],
             "directResponse": {"status": 200, "body": version.to_string()}},
            {"backends": [{"name": "web", "port": 80}]}
        ]),
    )
}

#[tokio::test]
async fn s7_operator_restart_and_leader_failover_keep_traffic_flowing() {
    let Some(mut scenario) = Scenario::start("s7").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    objects::apply(&client, &ns, steady(1)).await;
    let options = |identity: &str| OperatorOptions {
        lease_duration: LEASE,
        ..OperatorOptions::new(identity)
    };
    let mut first = scenario.operator(&options("s7-first"));
    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&routes, "steady", timeout, programmed(1))
        .await;
    scenario
        .wait_until("version 1 served", Duration::from_secs(10), || {
            version(&proxy, 1)
        })
        .await;

    let load = Load::start(proxy.traffic, HOST, "/", |r| {
        r.status == 200 && r.body == "backend a"
    });

    // A restart: SIGTERM (the Lease is released), then the same replica again.
    assert!(
        first.stop(Duration::from_secs(10)),
        "the operator did not exit within 10 s of SIGTERM"
    );
    first.restart();
    objects::apply(&client, &ns, steady(2)).await;
    let (_, took) = scenario
        .wait_for(&routes, "steady", timeout, |r| {
            if r.metadata.generation == Some(2) {
                programmed(1)(r)
            } else {
                Err(format!("generation {:?}", r.metadata.generation))
            }
        })
        .await;
    println!("s7: after a restart, generation 2 was programmed within {took:?}");
    scenario
        .wait_until("version 2 served", Duration::from_secs(10), || {
            version(&proxy, 2)
        })
        .await;

    // A standby; then the leader is killed (nothing released).
    let _second = scenario.operator(&options("s7-second"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let leader = holder(&leases).await;
    assert_eq!(
        leader.as_deref(),
        Some("s7-first"),
        "the first replica leads"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.kill();
    let killed = Instant::now();
    // The dead leader's last renewal: the Lease expires LEASE after it.
    let renewed = renew_time(&leases).await;
    let took = scenario
        .wait_until("the standby takes the Lease", LEASE * 2, || {
            let leases = leases.clone();
            async move {
                match holder(&leases).await {
                    Some(h) if h == "s7-second" => Ok(()),
                    other => Err(format!("held by {other:?}")),
                }
            }
        })
        .await;
    // The standby stamps the Lease with the time it took it.
    let taken = renew_time(&leases).await;
    let after_expiry = taken - (renewed + LEASE.as_millis() as i64);
    println!(
        "s7: the standby took the Lease {took:?} after the leader was killed, {after_expiry} ms after it expired (Lease {LEASE:?})"
    );
    // Not before the Lease expired (two leaders), and at its first look after that: a
    // standby looks every third of the Lease duration.
    assert!(
        after_expiry > 0,
        "the standby took the Lease {} ms before it expired",
        -after_expiry
    );
    assert!(
        after_expiry <= (LEASE / 3 + Duration::from_millis(500)).as_millis() as i64,
        "the standby took the Lease {after_expiry} ms after it expired, later than its next look"
    );
    assert!(
        killed.elapsed() <= LEASE + LEASE / 3 + Duration::from_millis(500),
        "the standby took over {:?} after the kill",
        killed.elapsed()
    );
    objects::apply(&client, &ns, steady(3)).await;
    let (_, took) = scenario
        .wait_for(&routes, "steady", timeout, |r| {
            if r.metadata.generation == Some(3) {
                programmed(1)(r)
            } else {
                Err(format!("generation {:?}", r.metadata.generation))
            }
        })
        .await;
    println!("s7: after the failover, generation 3 was programmed within {took:?}");
    scenario
        .wait_until("version 3 served", Duration::from_secs(10), || {
            version(&proxy, 3)
        })
        .await;

    let (sent, failures) = load.finish().await;
    println!(
        "s7: {sent} requests during the restart and the failover, {} failed",
        failures.len()
    );
    assert!(sent > 100, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
}

/// The Lease's holder.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("weir-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// The Lease's `renewTime`, in milliseconds since the epoch.
async fn renew_time(leases: &Api<Lease>) -> i64 {
    leases
        .get("weir-operator")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.renew_time)
        .expect("a renewed Lease")
        .0
        .as_millisecond()
}

/// Whether `/version` answers `version`.
async fn version(proxy: &Proxy, version: u32) -> Result<(), String> {
    let response = weir_e2e::http::get(proxy.traffic, HOST, "/version")
        .await
        .map_err(|e| e.to_string())?;
    if response.status == 200 && response.body == version.to_string() {
        Ok(())
    } else {
        Err(format!("{} {:?}", response.status, response.body))
    }
}

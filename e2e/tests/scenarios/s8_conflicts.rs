//! Scenario 8: two Routes in different namespaces claim the same host and path. The host
//! belongs to the namespace of the older Route (docs/operator.md, "Hosts are owned"), so
//! for the newer one to contend at all the owner delegates the host to its namespace with
//! `allowedNamespaces`; then the usual per-match precedence decides: the older Route wins
//! and the newer is `Accepted=False`, `Conflicted`. A third namespace the owner did not
//! delegate to is refused earlier, for the host itself: `HostNotOwned`. All of them show
//! in the all-namespaces table `kubectl get routes -A` prints.

use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::{Value, json};
use weir_e2e::Scenario;
use weir_e2e::objects::{self, message};
use weir_e2e::scenario::OperatorOptions;

use crate::common::{answers, current, expect, programmed};

const HOST: &str = "shared.e2e.example";

fn claim(name: &str, body: &str, allowed: &[&str]) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name},
        "spec": {
            "hosts": [HOST],
            "allowedNamespaces": allowed,
            "rules": [{"matches": [{"path": {"type": "Prefix", "value": "/"}}],
                       "directResponse": {"status": 200, "body": body}}]
        }
    })
}

/// `Accepted=False` with `reason`, and left out of the proxies (`NotProgrammed`).
fn refused(reason: &'static str) -> impl Fn(&DynamicObject) -> Result<(), String> {
    move |r| {
        current(r)?;
        expect(r, "Accepted", "False", reason)?;
        expect(r, "Programmed", "False", "NotProgrammed")
    }
}

#[tokio::test]
async fn s8_the_older_route_wins_a_host_and_path_across_namespaces() {
    let Some(mut scenario) = Scenario::start("s8").await else {
        return;
    };
    let owner = scenario.ns().to_owned();
    let delegated = scenario.add_namespace("s8-delegated").await;
    let stranger = scenario.add_namespace("s8-stranger").await;
    let proxy = scenario.proxy("a").await;
    scenario.publish_proxies(&[&proxy]).await;
    let client = scenario.client.clone();
    let _operator = scenario.operator(&OperatorOptions {
        namespaces: vec![owner.clone(), delegated.clone(), stranger.clone()],
        ..OperatorOptions::new("s8")
    });

    objects::apply(
        &client,
        &owner,
        claim("first", "from the owner", &[&delegated]),
    )
    .await;
    let owner_routes = objects::routes(&client, &owner);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&owner_routes, "first", timeout, programmed(1))
        .await;
    // Creation times have whole seconds: make "older" unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    objects::apply(
        &client,
        &delegated,
        claim("second", "from the delegate", &[]),
    )
    .await;
    objects::apply(&client, &stranger, claim("third", "from a stranger", &[])).await;

    let (second, _) = scenario
        .wait_for(
            &objects::routes(&client, &delegated),
            "second",
            timeout,
            refused("Conflicted"),
        )
        .await;
    let said = message(&second, "Accepted");
    assert!(
        said.contains(&format!("{owner}/first")),
        "Conflicted names the winner {owner}/first: {said:?}"
    );
    let (third, _) = scenario
        .wait_for(
            &objects::routes(&client, &stranger),
            "third",
            timeout,
            refused("HostNotOwned"),
        )
        .await;
    println!("s8: the delegate's Route: {said:?}");
    println!(
        "s8: the stranger's Route: {:?}",
        message(&third, "Accepted")
    );
    scenario
        .wait_for(&owner_routes, "first", timeout, programmed(1))
        .await;
    for _ in 0..10 {
        answers(proxy.traffic, HOST, "from the owner")
            .await
            .unwrap_or_else(|e| scenario.fail(&e));
    }

    // What `kubectl get routes -A` shows: the API server's table of Routes in every
    // namespace, with the CRD's printer columns.
    let request = http::Request::get("/apis/weir.dev/v1alpha1/routes?includeObject=Metadata")
        .header(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .body(Vec::new())
        .expect("a request");
    let table: Value = client.request(request).await.expect("the table of Routes");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let programmed_column = columns
        .iter()
        .position(|c| *c == "Programmed")
        .unwrap_or_else(|| panic!("no Programmed column in {columns:?}"));
    let row = |namespace: &str, name: &str| -> Value {
        table["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["object"]["metadata"]["namespace"] == namespace
                    && r["object"]["metadata"]["name"] == name
            })
            .map(|r| r["cells"].clone())
            .unwrap_or_else(|| panic!("{namespace}/{name} is not in the table: {table}"))
    };
    for (namespace, name, programmed) in [
        (&owner, "first", "True"),
        (&delegated, "second", "False"),
        (&stranger, "third", "False"),
    ] {
        let cells = row(namespace, name);
        assert_eq!(cells[0], name, "{cells}");
        assert_eq!(
            cells[programmed_column], programmed,
            "{namespace}/{name}: {cells}"
        );
        println!("s8: get routes -A: {namespace} {cells}");
    }
}

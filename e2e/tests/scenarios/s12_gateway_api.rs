//! Scenario 12: the Gateway API. The operator starts on an API server without the
//! Gateway API; upstream's CRDs (v1.3.0, standard channel) are installed after it, and it
//! picks them up (API discovery). A GatewayClass of weir's controller, a Gateway with an
//! HTTP listener on the proxies' port and an HTTPRoute to a Service are served, and their
//! status is what the Gateway API defines: the class `Accepted`, the Gateway `Accepted`
//! and `Programmed` with one route attached and the `--publish-address` as its address,
//! the HTTPRoute's `parents` entry `Accepted` and `ResolvedRefs`, each written once. The
//! CRDs (and with them every object of theirs) are deleted at the end.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use weir_e2e::Scenario;
use weir_e2e::gateway_api::{GatewayApiCrds, crds_dir};
use weir_e2e::objects::{self, FIELD_MANAGER};
use weir_e2e::scenario::{OperatorOptions, TLS_PORT, TRAFFIC_PORT};

use crate::common::served_only_on;

const HOST: &str = "gateway.e2e.example";
const ADDRESS: &str = "203.0.113.12";
const CONTROLLER: &str = "weir.dev/gateway-controller";
const GROUP_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The dynamic API of the Gateway API `kind`: in `namespace`, or cluster-wide.
fn gateway_api(client: &kube::Client, namespace: Option<&str>, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        kind,
    ));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// The conditions of `list` that are not `True` with the generation they describe.
fn not_true(list: &Value, generation: Option<i64>) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "True" || c["observedGeneration"].as_i64() != generation)
        .map(Value::to_string)
        .collect()
}

/// Checks that `list` has every one of `types`, `True` at `generation`, and nothing that
/// is not (but `Conflicted`, which is `False` when all is well).
fn all_true(list: &Value, types: &[&str], generation: Option<i64>) -> Result<(), String> {
    for type_ in types {
        let found = list
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == *type_);
        if !found {
            return Err(format!("no {type_} condition in {list}"));
        }
    }
    let wrong: Vec<String> = not_true(list, generation)
        .into_iter()
        .filter(|c| !c.contains("\"NoConflicts\""))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("not True at generation {generation:?}: {wrong:?}"))
    }
}

#[tokio::test]
async fn s12_gateway_api_objects_are_served_with_their_status_once_the_crds_are_installed() {
    let Some(mut scenario) = Scenario::start("s12").await else {
        return;
    };
    let crds = match crds_dir() {
        Ok(dir) => dir,
        Err(why) => {
            eprintln!("skipping e2e test s12: {why}");
            return;
        }
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();

    // The operator starts while the API server has no Gateway API.
    let mut options = OperatorOptions::new("s12");
    options.extra_args = [
        "--publish-address",
        ADDRESS,
        "--gateway-api-discovery-interval",
        "1s",
        "--gateway-http-port",
        &TRAFFIC_PORT.to_string(),
        "--gateway-https-port",
        &TLS_PORT.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    // Declared before the operator, so dropped after it: the CRDs go once it stopped.
    let installed;
    let operator = scenario.operator(&options);
    let logged = |needle: &'static str| {
        let logs = operator.logs().clone();
        move || {
            let found = logs.last(200).iter().any(|line| line.contains(needle));
            async move {
                if found {
                    Ok(())
                } else {
                    Err(format!("no log line says {needle:?}"))
                }
            }
        }
    };
    scenario
        .wait_until(
            "the operator found no Gateway API",
            Duration::from_secs(60),
            logged("does not serve the Gateway API"),
        )
        .await;

    installed = GatewayApiCrds::install(&client, &crds).await;
    assert!(
        installed
            .names
            .contains(&"httproutes.gateway.networking.k8s.io".to_owned()),
        "{:?}",
        installed.names
    );
    scenario
        .wait_until(
            "the operator watching the Gateway API",
            Duration::from_secs(60),
            logged("serves the Gateway API: watching"),
        )
        .await;

    let classes = gateway_api(&client, None, "GatewayClass");
    let class = json!({"apiVersion": GROUP_VERSION, "kind": "GatewayClass",
        "metadata": {"name": "weir"}, "spec": {"controllerName": CONTROLLER}});
    classes
        .patch(
            "weir",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("the GatewayClass applies");
    objects::apply(
        &client,
        &ns,
        json!({"apiVersion": GROUP_VERSION, "kind": "Gateway", "metadata": {"name": "edge"},
        "spec": {"gatewayClassName": "weir", "listeners": [
            {"name": "http", "port": TRAFFIC_PORT, "protocol": "HTTP"}
        ]}}),
    )
    .await;
    objects::apply(
        &client,
        &ns,
        json!({"apiVersion": GROUP_VERSION, "kind": "HTTPRoute", "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "edge"}], "hostnames": [HOST],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/shop"}}],
                                "backendRefs": [{"name": "web", "port": 80}]}]}}),
    )
    .await;

    let traffic = proxy.traffic;
    scenario
        .wait_until(
            "the HTTPRoute served",
            Duration::from_secs(60),
            || async move {
                let served = served_only_on(traffic, HOST, "/shop/cart", "/admin").await?;
                if served.body == "backend a" {
                    Ok(())
                } else {
                    Err(format!("/shop/cart answered {:?}", served.body))
                }
            },
        )
        .await;

    scenario
        .wait_for(&classes, "weir", Duration::from_secs(30), |class| {
            all_true(
                &class.data["status"]["conditions"],
                &["Accepted"],
                class.metadata.generation,
            )
        })
        .await;
    let gateways = gateway_api(&client, Some(&ns), "Gateway");
    scenario
        .wait_for(&gateways, "edge", Duration::from_secs(30), |gateway| {
            let generation = gateway.metadata.generation;
            let status = &gateway.data["status"];
            all_true(
                &status["conditions"],
                &["Accepted", "Programmed"],
                generation,
            )?;
            let listener = &status["listeners"][0];
            all_true(
                &listener["conditions"],
                &["Accepted", "Programmed", "ResolvedRefs", "Conflicted"],
                generation,
            )?;
            if listener["attachedRoutes"] != 1 {
                return Err(format!("listener {listener}"));
            }
            if status["addresses"] != json!([{"type": "IPAddress", "value": ADDRESS}]) {
                return Err(format!("addresses {}", status["addresses"]));
            }
            Ok(())
        })
        .await;
    let routes = gateway_api(&client, Some(&ns), "HTTPRoute");
    scenario
        .wait_for(&routes, "web", Duration::from_secs(30), |route| {
            let parents = route.data["status"]["parents"].as_array().cloned();
            let [parent] = parents
                .unwrap_or_default()
                .try_into()
                .map_err(|p| format!("parents {p:?}"))?;
            if parent["controllerName"] != CONTROLLER || parent["parentRef"]["name"] != "edge" {
                return Err(format!("parent {parent}"));
            }
            all_true(
                &parent["conditions"],
                &["Accepted", "ResolvedRefs"],
                route.metadata.generation,
            )
        })
        .await;

    // Written once: a status that differed from what the API server shows in anything
    // it fills in would be written again at every build, each write bringing the next.
    let versions = || async {
        let mut versions = Vec::new();
        for (api, name) in [(&classes, "weir"), (&gateways, "edge"), (&routes, "web")] {
            let object = api.get(name).await.expect("the object");
            versions.push(object.metadata.resource_version.unwrap_or_default());
        }
        versions
    };
    let before = versions().await;
    objects::apply(&client, &ns, objects::service("other")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(versions().await, before, "the statuses were written again");
}

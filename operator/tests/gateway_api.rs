//! Gateway API status against the `tower_test` fake API server: weir's GatewayClass,
//! Gateway (listeners with attached routes, the published addresses) and HTTPRoute
//! (`parents`, another controller's entry kept) get their status once, by merge patch,
//! nothing more once the stores show it; an HTTPRoute changed meanwhile (`409 Conflict`)
//! is written again from the object as it is now; a failing parent is a Warning Event.

mod support;

use std::time::Duration;

use http::Method;
use k8s_openapi::api::core::v1::{Namespace, Service};
use serde_json::{Value, json};
use support::*;
use weir_crds::gateway::{Gateway, GatewayClass, HTTPRoute};
use weir_operator::status::Publish;

const GROUP_PATH: &str = "/apis/gateway.networking.k8s.io/v1";

fn class_json() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "weir", "uid": "uid-class", "generation": 1},
        "spec": {"controllerName": "weir.dev/gateway-controller"}
    })
}

fn gateway_json() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "shop", "uid": "uid-edge", "generation": 2},
        "spec": {"gatewayClassName": "weir", "listeners": [
            {"name": "http", "port": 8080, "protocol": "HTTP", "hostname": "*.shop.example"}
        ]}
    })
}

/// Another controller's entry in an HTTPRoute's `parents`.
fn theirs() -> Value {
    json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "their-gateway"},
        "controllerName": "example.com/other-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                        "lastTransitionTime": "2024-01-01T00:00:00Z", "observedGeneration": 1}]
    })
}

fn http_route_json(name: &str, service: &str, version: &str, parents: Vec<Value>) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": version},
        "spec": {
            "parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"},
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "their-gateway"}
            ],
            "hostnames": [format!("{name}.shop.example")],
            "rules": [{"backendRefs": [{"name": service, "port": 80}]}]
        },
        "status": {"parents": parents}
    })
}

fn path_of(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    match kind {
        "GatewayClass" => format!("{GROUP_PATH}/gatewayclasses/{name}"),
        "Gateway" => format!("{GROUP_PATH}/namespaces/shop/gateways/{name}"),
        _ => format!("{GROUP_PATH}/namespaces/shop/httproutes/{name}"),
    }
}

/// The Gateway API status patches seen so far, waiting for `count`.
async fn gateway_api_patches(api: &FakeApi, count: usize) -> Vec<(String, Value)> {
    api.wait_for_status_patches(count, |path| path.starts_with(GROUP_PATH))
        .await
}

fn patch_of<'a>(patches: &'a [(String, Value)], object: &Value) -> &'a Value {
    let path = format!("{}/status", path_of(object));
    &patches
        .iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("no patch of {path} among {patches:#?}"))
        .1
}

/// `(type, status, reason)` of each condition, with the generation they describe.
fn summary(conditions: &Value, generation: i64) -> Vec<(String, String, String)> {
    conditions
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            assert_eq!(c["observedGeneration"], generation, "{c}");
            let text = |key: &str| c[key].as_str().unwrap().to_owned();
            (text("type"), text("status"), text("reason"))
        })
        .collect()
}

fn triple(kind: &str, status: &str, reason: &str) -> (String, String, String) {
    (kind.to_owned(), status.to_owned(), reason.to_owned())
}

/// The object as the API server shows it after `patch` (its status, the next version).
fn after(object: &Value, patch: &Value) -> Value {
    let mut object = object.clone();
    object["status"] = patch["status"].clone();
    if let Some(version) = object["metadata"]["resourceVersion"].as_str() {
        let next = version.parse::<u64>().unwrap() + 1;
        object["metadata"]["resourceVersion"] = json!(next.to_string());
    }
    object
}

fn parse<K: serde::de::DeserializeOwned>(value: &Value) -> K {
    serde_json::from_value(value.clone()).unwrap()
}

/// A harness serving class `weir`, publishing an IP and a host name, with Service `web`
/// and namespace `shop` in the stores.
fn harness() -> Harness {
    let options = weir_crds::Options {
        class: Some(weir_crds::GatewayClass {
            name: "weir".into(),
            default: true,
        }),
        ..weir_crds::Options::default()
    };
    let mut h = Harness::with_options(options).publishing(Publish::Addresses(vec![
        "203.0.113.7".into(),
        "lb.shop.example".into(),
    ]));
    h.objects(&[], &[], Vec::new());
    let web: Service = parse(&json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }));
    fill(&mut h.writers.services[0], vec![web]);
    let shop: Namespace = parse(&json!({"metadata": {"name": "shop"}}));
    fill(&mut h.writers.namespaces[0], vec![shop]);
    fill(&mut h.writers.reference_grants[0], Vec::new());
    h
}

#[tokio::test]
async fn gateway_api_status_is_written_once_keeping_other_controllers_parents() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = harness();
    let class = class_json();
    let gateway = gateway_json();
    let web = http_route_json("web", "web", "5", vec![theirs()]);
    let broken = http_route_json("broken", "missing", "3", Vec::new());
    for object in [&class, &gateway, &web, &broken] {
        h.api.know(&path_of(object), object);
    }
    fill(&mut h.writers.gateway_classes[0], vec![parse(&class)]);
    fill(&mut h.writers.gateways[0], vec![parse(&gateway)]);
    fill(
        &mut h.writers.http_routes[0],
        vec![parse(&web), parse(&broken)],
    );
    h.proxies(&[proxy.addr]);

    h.lead().await;
    // A parent whose backend is missing is a Warning Event on the HTTPRoute (published
    // with the write, so before the writes are done).
    let event = h.api.wait_for_event("BackendNotFound", "missing").await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "HTTPRoute");
    assert_eq!(event["regarding"]["name"], "broken");
    let patches = gateway_api_patches(&h.api, 4).await;
    assert_eq!(patches.len(), 4, "{patches:#?}");

    let class_patch = patch_of(&patches, &class);
    assert_eq!(
        summary(&class_patch["status"]["conditions"], 1),
        [triple("Accepted", "True", "Accepted")]
    );

    let gateway_patch = patch_of(&patches, &gateway);
    let status = &gateway_patch["status"];
    assert_eq!(
        summary(&status["conditions"], 2),
        [
            triple("Accepted", "True", "Accepted"),
            triple("Programmed", "True", "Programmed"),
        ]
    );
    let programmed = &status["conditions"][1]["message"];
    assert_eq!(programmed, "applied on 1/1 proxies");
    assert_eq!(
        status["addresses"],
        json!([
            {"type": "IPAddress", "value": "203.0.113.7"},
            {"type": "Hostname", "value": "lb.shop.example"}
        ])
    );
    let listener = &status["listeners"][0];
    assert_eq!(listener["name"], "http");
    assert_eq!(listener["attachedRoutes"], 2, "both routes attach to it");
    assert_eq!(
        listener["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    assert_eq!(
        summary(&listener["conditions"], 2),
        [
            triple("Accepted", "True", "Accepted"),
            triple("Conflicted", "False", "NoConflicts"),
            triple("Programmed", "True", "Programmed"),
            triple("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );

    // The HTTPRoute's parents: the other controller's entry as it was, then weir's; the
    // patch applies only to the version read.
    let web_patch = patch_of(&patches, &web);
    assert_eq!(web_patch["metadata"]["resourceVersion"], "5");
    let parents = web_patch["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:#?}");
    assert_eq!(parents[0], theirs());
    assert_eq!(parents[1]["controllerName"], "weir.dev/gateway-controller");
    assert_eq!(parents[1]["parentRef"]["name"], "edge");
    assert_eq!(
        summary(&parents[1]["conditions"], 1),
        [
            triple("Accepted", "True", "Accepted"),
            triple("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );

    let broken_patch = patch_of(&patches, &broken);
    let resolved = &broken_patch["status"]["parents"][0]["conditions"][1];
    assert_eq!(
        (&resolved["type"], &resolved["reason"]),
        (&json!("ResolvedRefs"), &json!("BackendNotFound"))
    );

    // The stores show what was written: nothing is written again, and no Event repeats.
    apply(
        &mut h.writers.gateway_classes[0],
        parse::<GatewayClass>(&after(&class, class_patch)),
    );
    apply(
        &mut h.writers.gateways[0],
        parse::<Gateway>(&after(&gateway, gateway_patch)),
    );
    apply(
        &mut h.writers.http_routes[0],
        parse::<HTTPRoute>(&after(&web, web_patch)),
    );
    apply(
        &mut h.writers.http_routes[0],
        parse::<HTTPRoute>(&after(&broken, broken_patch)),
    );
    let outcome = h.reconcile().await;
    assert_eq!(outcome.status.queued, 0, "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again: Vec<_> = h
        .api
        .take()
        .into_iter()
        .filter(|s| s.method != Method::GET)
        .collect();
    assert!(again.is_empty(), "{again:#?}");
}

#[tokio::test]
async fn an_http_route_changed_meanwhile_is_written_again_from_the_object_as_it_is() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = harness();
    let class = class_json();
    let gateway = gateway_json();
    // The store shows version 5; meanwhile another controller wrote its entry (6).
    let read = http_route_json("web", "web", "5", Vec::new());
    let current = http_route_json("web", "web", "6", vec![theirs()]);
    for object in [&class, &gateway, &current] {
        h.api.know(&path_of(object), object);
    }
    fill(&mut h.writers.gateway_classes[0], vec![parse(&class)]);
    fill(&mut h.writers.gateways[0], vec![parse(&gateway)]);
    fill(&mut h.writers.http_routes[0], vec![parse(&read)]);
    h.proxies(&[proxy.addr]);

    h.lead().await;
    let route_path = format!("{}/status", path_of(&read));
    let refused: Vec<_> = gateway_api_patches(&h.api, 3)
        .await
        .into_iter()
        .filter(|(p, _)| *p == route_path)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1["metadata"]["resourceVersion"], "5");
    let conflicts = h
        .metrics
        .encode()
        .lines()
        .any(|l| l.starts_with("weir_operator_status_writes_total{outcome=\"conflict\"} 1"));
    assert!(conflicts, "{}", h.metrics.encode());

    // The watch brings the object as it is: written from it, the other entry kept.
    apply(&mut h.writers.http_routes[0], parse(&current));
    h.reconcile().await;
    let written = gateway_api_patches(&h.api, 1).await;
    assert_eq!(written.len(), 1, "{written:#?}");
    let (path, body) = &written[0];
    assert_eq!(*path, route_path);
    assert_eq!(body["metadata"]["resourceVersion"], "6");
    let parents = body["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:#?}");
    assert_eq!(parents[0], theirs());
    assert_eq!(parents[1]["controllerName"], "weir.dev/gateway-controller");
    let stored = h.api.objects.lock().unwrap()[&path_of(&read)].clone();
    assert_eq!(stored["status"]["parents"].as_array().unwrap().len(), 2);
}

//! Scenario 11: a Kubernetes Ingress of weir's IngressClass, with ingress-nginx
//! annotations, is served like a Route; one of another class is not. The operator writes
//! `--publish-address` into the served Ingress's `status.loadBalancer` (a merge patch of
//! the Ingress status subresource, as the API server takes it) and reports the annotation
//! weir does not map in a Warning Event on the Ingress.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use weir_e2e::Scenario;
use weir_e2e::http::get;
use weir_e2e::objects;
use weir_e2e::scenario::OperatorOptions;

use crate::common::served_only_on;

const HOST: &str = "ingress.e2e.example";
const OTHER_HOST: &str = "other-class.e2e.example";
const ADDRESS: &str = "203.0.113.9";

fn ingress(name: &str, class: &str, host: &str) -> serde_json::Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": {
            "nginx.ingress.kubernetes.io/use-regex": "true",
            "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
            "nginx.ingress.kubernetes.io/proxy-buffering": "off"
        }},
        "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
            {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}
    })
}

#[tokio::test]
async fn s11_an_ingress_is_served_with_its_status_and_events() {
    let Some(mut scenario) = Scenario::start("s11").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    // weir's IngressClass (cluster-scoped: deleted at the end).
    let classes: Api<IngressClass> = Api::all(client.clone());
    let class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "weir"}, "spec": {"controller": "weir.dev/ingress-controller"}});
    classes
        .patch(
            "weir",
            &PatchParams::apply("weir-e2e").force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("the IngressClass applies");
    objects::apply(&client, &ns, ingress("shop", "weir", HOST)).await;
    objects::apply(&client, &ns, ingress("theirs", "nginx", OTHER_HOST)).await;
    let mut options = OperatorOptions::new("s11");
    options.extra_args = vec!["--publish-address".into(), ADDRESS.into()];
    let _operator = scenario.operator(&options);

    let traffic = proxy.traffic;
    scenario
        .wait_until(
            "the Ingress served",
            Duration::from_secs(60),
            || async move {
                served_only_on(traffic, HOST, "/api/orders", "/orders")
                    .await
                    .map(drop)
            },
        )
        .await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    scenario
        .wait_until(
            "status.loadBalancer of the served Ingress",
            Duration::from_secs(30),
            || {
                let ingresses = ingresses.clone();
                async move {
                    let shop = ingresses.get("shop").await.map_err(|e| e.to_string())?;
                    let shown = shop
                        .status
                        .and_then(|s| s.load_balancer)
                        .and_then(|lb| lb.ingress)
                        .unwrap_or_default();
                    match shown.as_slice() {
                        [entry] if entry.ip.as_deref() == Some(ADDRESS) => Ok(()),
                        other => Err(format!("status.loadBalancer.ingress is {other:?}")),
                    }
                }
            },
        )
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    scenario
        .wait_until(
            "a Warning Event naming the unsupported annotation",
            Duration::from_secs(30),
            || {
                let events = events.clone();
                async move {
                    let list = events
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    let found = list.items.iter().any(|e| {
                        e.reason.as_deref() == Some("UnsupportedAnnotation")
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("shop")
                            && e.note
                                .as_deref()
                                .is_some_and(|n| n.contains("proxy-buffering"))
                    });
                    if found {
                        Ok(())
                    } else {
                        Err(format!("{} events, none of them it", list.items.len()))
                    }
                }
            },
        )
        .await;

    // The other controller's Ingress is neither served nor written to.
    let other = get(traffic, OTHER_HOST, "/api/orders")
        .await
        .expect("an answer");
    assert_eq!(other.status.as_u16(), 404);
    let theirs = ingresses.get("theirs").await.expect("the other Ingress");
    assert!(
        theirs
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .is_empty(),
        "weir wrote the status of another class's Ingress"
    );
    classes
        .delete("weir", &DeleteParams::default())
        .await
        .expect("the IngressClass is deleted");
}

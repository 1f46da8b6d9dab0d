//! Ingresses against the `tower_test` fake API server: an Ingress's conditions become
//! Warning Events (its status has no conditions), and the addresses of the published
//! Service are written into `status.loadBalancer` of the Ingresses weir serves, once.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};
use support::*;
use weir_operator::status::Publish;

fn ingress_json(name: &str, class: &str, annotations: Value, host: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "generation": 1, "annotations": annotations},
        "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    })
}

fn ingress_path(name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/{name}")
}

#[tokio::test]
async fn ingress_warnings_are_events_and_served_ingresses_publish_the_proxy_addresses() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let options = weir_crds::Options {
        class: Some(weir_crds::GatewayClass {
            name: "weir".into(),
            default: true,
        }),
        ..weir_crds::Options::default()
    };
    let mut h = Harness::with_options(options).publishing(Publish::Service {
        namespace: "weir".into(),
        name: "weir-proxy".into(),
    });
    h.objects(&[], &[], Vec::new());
    let web = ingress_json("web", "weir", json!({}), "shop.example");
    let buffered = ingress_json(
        "buffered",
        "weir",
        json!({"nginx.ingress.kubernetes.io/proxy-buffering": "on"}),
        "b.example",
    );
    let theirs = ingress_json("theirs", "nginx", json!({}), "theirs.example");
    for ingress in [&web, &buffered, &theirs] {
        h.api.know(
            &ingress_path(ingress["metadata"]["name"].as_str().unwrap()),
            ingress,
        );
    }
    let as_ingress = |v: &Value| serde_json::from_value::<Ingress>(v.clone()).unwrap();
    fill(
        &mut h.writers.ingresses[0],
        vec![as_ingress(&web), as_ingress(&buffered), as_ingress(&theirs)],
    );
    let class: IngressClass = serde_json::from_value(json!({
        "metadata": {"name": "weir"}, "spec": {"controller": "weir.dev/ingress-controller"}
    }))
    .unwrap();
    fill(&mut h.writers.ingress_classes[0], vec![class]);
    let web_service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    fill(&mut h.writers.services[0], vec![web_service]);
    let published: Service = serde_json::from_value(json!({
        "metadata": {"name": "weir-proxy", "namespace": "weir"},
        "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.7"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    }))
    .unwrap();
    fill(&mut h.writers.publish_service[0], vec![published]);
    h.proxies(&[proxy.addr]);

    h.lead().await;
    let event = h
        .api
        .wait_for_event("UnsupportedAnnotation", "proxy-buffering")
        .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Ingress");
    assert_eq!(event["regarding"]["name"], "buffered");

    let mut patches = h
        .api
        .wait_for_status_patches(2, |path| path.contains("/ingresses/"))
        .await;
    patches.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = patches.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("{}/status", ingress_path("buffered")),
            format!("{}/status", ingress_path("web")),
        ],
        "the Ingresses weir serves, not the other controller's"
    );
    for (_, body) in &patches {
        assert_eq!(
            body,
            &json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}})
        );
    }
    for (path, _) in &patches {
        assert!(
            !path.contains("/apis/weir.dev/"),
            "an Ingress gets no conditions written"
        );
    }

    // Once the stores show the addresses, nothing more is written.
    let shown = |v: &Value| {
        let mut v = v.clone();
        v["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}});
        as_ingress(&v)
    };
    fill(
        &mut h.writers.ingresses[0],
        vec![shown(&web), shown(&buffered), as_ingress(&theirs)],
    );
    h.reconcile().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again: Vec<_> = h
        .api
        .take()
        .into_iter()
        .filter(|s| s.path.contains("/ingresses/"))
        .collect();
    assert!(again.is_empty(), "{again:?}");
}

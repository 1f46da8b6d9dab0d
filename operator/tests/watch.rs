//! The watchers against the fake API server: stores fill from the initial lists, an edit
//! of a ConfigMap that a Plugin reads announces a change (and one no Plugin reads does
//! not), and the proxy admin Service's EndpointSlices announce proxy changes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::sync::mpsc;
use weir_operator::config::{Config, LeaseConfig, Namespaces};
use weir_operator::metrics::Metrics;
use weir_operator::watch::{Change, spawn};
use weir_operator::world::stores_for;

fn config() -> Config {
    Config {
        namespaces: Namespaces::All,
        proxies: proxy_config(),
        lease: LeaseConfig {
            name: "weir-operator".into(),
            namespace: "weir".into(),
            identity: "test".into(),
            duration: Duration::from_secs(15),
        },
        metrics_address: "127.0.0.1:0".parse().unwrap(),
        debounce: Duration::from_millis(100),
        compile: weir_crds::Options::default(),
        status: weir_operator::status::StatusLimits::default(),
        config_map_selector: None,
        watch_ingresses: true,
        publish: weir_operator::status::Publish::Nothing,
        watch_gateway_api: false,
        gateway_api_discovery_interval: Duration::from_secs(30),
    }
}

fn cm(name: &str, code: &str, version: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
           "data": {"index.ts": code}})
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a change is announced in time")
        .expect("the channel is open")
}

#[tokio::test]
async fn config_map_edits_announce_a_change_only_when_a_plugin_reads_them() {
    let (client, api) = FakeApi::start();
    let mut plugin = plugin_json("auth", 1, "auth-src");
    plugin["metadata"]["resourceVersion"] = json!("1");
    plugin["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
        "apiVersion": "weir.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
    plugin["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{\"the\": \"whole object\"}",
        "team": "payments"
    });
    plugin["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm"});
    api.lists.lock().unwrap().extend([
        ("/apis/weir.dev/v1alpha1/plugins".to_owned(), vec![plugin]),
        (
            "/api/v1/configmaps".to_owned(),
            vec![cm("auth-src", GOOD_PLUGIN, "1"), cm("unrelated", "x", "1")],
        ),
    ]);
    let (stores, writers) = stores_for(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tasks = spawn(&client, &config(), &stores, writers, tx, Metrics::new());
    tokio::time::timeout(PATIENCE, stores.wait_until_ready())
        .await
        .expect("every store lists");
    assert_eq!(stores.world().plugins.len(), 1);
    assert_eq!(stores.world().config_maps.len(), 2);
    // What the stores never read is not kept: managed fields, annotations (kubectl's
    // last-applied copy among them), labels; what the compiler reads is.
    let stored = &stores.world().plugins[0].metadata;
    assert!(stored.managed_fields.as_ref().is_none_or(Vec::is_empty));
    assert_eq!(stored.annotations, None);
    assert_eq!(stored.labels, None);
    assert_eq!(stored.generation, Some(1));
    assert_eq!(stored.name.as_deref(), Some("auth"));
    // Drain the announcements of the initial lists.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}

    // An edit of a ConfigMap no Plugin reads is stored but announces nothing.
    api.watch_event("/api/v1/configmaps", "MODIFIED", cm("unrelated", "y", "2"));
    tokio::time::timeout(PATIENCE, async {
        loop {
            let world = stores.world();
            let edited = world.config_maps.iter().any(|c| {
                c.metadata.name.as_deref() == Some("unrelated")
                    && c.data
                        .as_ref()
                        .and_then(|d| d.get("index.ts"))
                        .map(String::as_str)
                        == Some("y")
            });
            if edited {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the edit reaches the store");
    assert!(
        rx.try_recv().is_err(),
        "an unrelated ConfigMap announced a change"
    );

    // An edit of the Plugin's source announces a change.
    api.watch_event(
        "/api/v1/configmaps",
        "MODIFIED",
        cm("auth-src", BROKEN_PLUGIN, "3"),
    );
    assert_eq!(next_change(&mut rx).await, Change::Objects);

    // The proxy admin Service's EndpointSlices announce proxy changes.
    let mut slice =
        serde_json::to_value(proxy_slice("admin-0", &["127.0.0.1:9901".parse().unwrap()])).unwrap();
    slice["metadata"]["resourceVersion"] = json!("4");
    api.watch_event(
        "/apis/discovery.k8s.io/v1/namespaces/weir/endpointslices",
        "ADDED",
        slice,
    );
    assert_eq!(next_change(&mut rx).await, Change::Proxies);
    assert_eq!(stores.proxy_slices().len(), 1);

    // Secrets are watched without the types the operator never reads (tokens, pull
    // credentials, Helm releases): a field selector.
    let secret_watch = api.first_query("/api/v1/secrets");
    for not_watched in [
        "type%21%3Dkubernetes.io%2Fservice-account-token",
        "type%21%3Dhelm.sh%2Frelease.v1",
    ] {
        assert!(secret_watch.contains(not_watched), "{secret_watch}");
    }
    // Without --config-map-selector, every ConfigMap in scope is listed.
    let config_map_list = api.first_query("/api/v1/configmaps");
    assert!(
        !config_map_list.contains("labelSelector"),
        "{config_map_list}"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn a_config_map_selector_narrows_the_config_map_watch() {
    let (client, api) = FakeApi::start();
    let (stores, writers) = stores_for(1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut config = config();
    config.config_map_selector = Some("weir.dev/plugin-source=true".into());
    let tasks = spawn(&client, &config, &stores, writers, tx, Metrics::new());
    tokio::time::timeout(PATIENCE, stores.wait_until_ready())
        .await
        .expect("every store lists");
    let query = api.first_query("/api/v1/configmaps");
    assert!(
        query.contains("labelSelector=weir.dev%2Fplugin-source%3Dtrue"),
        "{query}"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn ingresses_keep_their_settings_and_the_published_service_is_watched_by_name() {
    let (client, api) = FakeApi::start();
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"the\": \"whole object\"}",
                "nginx.ingress.kubernetes.io/rewrite-target": "/$2"
            }},
        "spec": {"rules": [{"host": "shop.example"}]}
    });
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "weir", "resourceVersion": "1",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "weir.dev/ingress-controller"}
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "weir-proxy", "namespace": "weir", "resourceVersion": "1"},
        "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.7"]}
    });
    api.lists.lock().unwrap().extend([
        (
            "/apis/networking.k8s.io/v1/ingresses".to_owned(),
            vec![ingress],
        ),
        (
            "/apis/networking.k8s.io/v1/ingressclasses".to_owned(),
            vec![class],
        ),
        ("/api/v1/namespaces/weir/services".to_owned(), vec![service]),
    ]);
    let (stores, writers) = stores_for(1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut config = config();
    config.publish = weir_operator::status::Publish::Service {
        namespace: "weir".into(),
        name: "weir-proxy".into(),
    };
    let tasks = spawn(&client, &config, &stores, writers, tx, Metrics::new());
    tokio::time::timeout(PATIENCE, stores.wait_until_ready())
        .await
        .expect("every store lists");
    let world = stores.world();
    let annotations = world.ingresses[0].metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["nginx.ingress.kubernetes.io/rewrite-target"],
        "an Ingress's annotations are its settings; kubectl's copy of it is not kept"
    );
    let class_annotations = world.ingress_classes[0]
        .metadata
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        class_annotations["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(stores.publish_service().is_some());
    let query = api.first_query("/api/v1/namespaces/weir/services");
    assert!(
        query.contains("fieldSelector=metadata.name%3Dweir-proxy"),
        "{query}"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn secrets_nothing_reads_are_kept_without_their_data_and_listed_again_once_read() {
    let (client, api) = FakeApi::start();
    let secret = |name: &str, type_: &str, version: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": type_,
               "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
               "data": {"key": "c2VjcmV0LWtleS12YWx1ZQ=="}})
    };
    api.lists.lock().unwrap().extend([(
        "/api/v1/secrets".to_owned(),
        vec![
            secret("signing", "Opaque", "1"),
            secret("certificate", "kubernetes.io/tls", "1"),
        ],
    )]);
    let (stores, writers) = stores_for(1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let tasks = spawn(&client, &config(), &stores, writers, tx, Metrics::new());
    tokio::time::timeout(PATIENCE, stores.wait_until_ready())
        .await
        .expect("every store lists");
    let data_of = |name: &str| {
        stores
            .world()
            .secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .map(|s| s.data.is_some())
    };
    assert_eq!(
        data_of("signing"),
        Some(false),
        "nothing reads it: metadata only"
    );
    assert_eq!(
        data_of("certificate"),
        Some(true),
        "TLS Secrets keep their data"
    );
    let lists_before = api
        .take()
        .iter()
        .filter(|s| s.path == "/api/v1/secrets" && !s.query.contains("watch=true"))
        .count();
    assert_eq!(lists_before, 1);

    // A Plugin starts reading it: the Secrets are listed again, its data kept this time.
    let mut plugin = plugin_json("auth", 1, "auth-src");
    plugin["metadata"]["resourceVersion"] = json!("2");
    plugin["spec"]["secretRefs"] = json!([{"path": "/key", "secretName": "signing", "key": "key"}]);
    api.watch_event("/apis/weir.dev/v1alpha1/plugins", "ADDED", plugin);
    tokio::time::timeout(PATIENCE, async {
        while data_of("signing") != Some(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the Secret's data is kept once a Plugin reads it");
    assert!(
        api.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path == "/api/v1/secrets" && !s.query.contains("watch=true")),
        "listed again"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn gateway_api_is_watched_once_discovery_shows_it_and_no_longer_once_it_is_gone() {
    let (client, api) = FakeApi::start();
    let gateway = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "shop", "resourceVersion": "1"},
        "spec": {"gatewayClassName": "weir", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    });
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "resourceVersion": "1",
                     "labels": {"team": "shop"}, "annotations": {"owner": "someone"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    });
    api.lists.lock().unwrap().extend([
        (
            "/apis/gateway.networking.k8s.io/v1/gateways".to_owned(),
            vec![gateway],
        ),
        ("/api/v1/namespaces".to_owned(), vec![namespace]),
    ]);
    let (stores, writers) = stores_for(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut config = config();
    config.watch_gateway_api = true;
    config.gateway_api_discovery_interval = Duration::from_millis(100);
    let tasks = spawn(&client, &config, &stores, writers, tx, Metrics::new());

    // Not served: the stores count as listed, empty, and nothing of it is watched.
    tokio::time::timeout(PATIENCE, stores.wait_until_ready())
        .await
        .expect("every store lists, the Gateway API's empty");
    assert!(stores.world().gateways.is_empty());
    let gateway_api_requests = |api: &FakeApi| {
        api.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with("/apis/gateway.networking.k8s.io/v1/"))
            .count()
    };
    assert_eq!(gateway_api_requests(&api), 0);
    assert!(
        api.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.path != "/api/v1/namespaces"),
        "Namespaces are watched only for the Gateway API"
    );

    // The CRDs are installed: discovery shows every kind, and the watches start.
    api.discover(
        "gateway.networking.k8s.io/v1",
        &[
            ("gatewayclasses", "GatewayClass"),
            ("gateways", "Gateway"),
            ("httproutes", "HTTPRoute"),
        ],
    );
    api.discover(
        "gateway.networking.k8s.io/v1beta1",
        &[("referencegrants", "ReferenceGrant")],
    );
    while rx.try_recv().is_ok() {}
    tokio::time::timeout(PATIENCE, async {
        while stores.world().gateways.is_empty() || stores.world().namespaces.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the Gateway and the Namespace are listed once the Gateway API is served");
    assert_eq!(next_change(&mut rx).await, Change::Objects);
    let world = stores.world();
    assert_eq!(world.gateways[0].spec.listeners[0].name, "http");
    // Namespaces: a metadata-only watch, of which their labels are kept.
    let shop = &world.namespaces[0];
    assert_eq!(shop.metadata.labels.as_ref().unwrap()["team"], "shop");
    assert_eq!(shop.metadata.annotations, None);
    assert_eq!(shop.spec, None);
    let namespace_list = api
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path == "/api/v1/namespaces")
        .map(|s| s.accept.clone())
        .unwrap();
    assert!(
        namespace_list.contains("as=PartialObjectMetadataList"),
        "{namespace_list}"
    );

    // The CRDs are removed: the watches stop and the stores are emptied.
    api.discovery.lock().unwrap().clear();
    tokio::time::timeout(PATIENCE, async {
        while !stores.world().gateways.is_empty() || !stores.world().namespaces.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stores are emptied once the Gateway API is gone");
    for task in tasks {
        task.abort();
    }
}

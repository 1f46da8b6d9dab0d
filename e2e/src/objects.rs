//! Kubernetes objects the scenarios write and read: the CRDs, test namespaces, Services
//! with the EndpointSlices a controller manager would otherwise write (the suite needs
//! no kubelet and no controller manager), and any object as JSON by server-side apply.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};

/// Field manager of everything the suite applies.
pub const FIELD_MANAGER: &str = "weir-e2e";

/// Prefix of every namespace the suite creates; the test process's pid ends the name.
pub const NAMESPACE_PREFIX: &str = "weir-e2e-";

/// Label on every object the suite applies: the test process's pid.
pub const RUN_LABEL: &str = "weir-e2e/run";

/// The kinds of objects the suite and the operator create in test namespaces.
const KINDS: [(&str, &str); 8] = [
    ("weir.dev/v1alpha1", "Route"),
    ("weir.dev/v1alpha1", "Plugin"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("coordination.k8s.io/v1", "Lease"),
    ("networking.k8s.io/v1", "Ingress"),
];

/// A client for the API server of `KUBECONFIG`, or `None` (after saying why in one line)
/// when the variable is unset. For tests that need only the API server.
pub async fn client_or_skip(test: &str) -> Option<Client> {
    if !crate::kubeconfig_set() {
        eprintln!(
            "skipping e2e test {test}: KUBECONFIG is not set (the e2e suite needs a Kubernetes API server)"
        );
        return None;
    }
    Some(
        Client::try_default()
            .await
            .expect("KUBECONFIG names a reachable API server"),
    )
}

/// Applies weir's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [weir_crds::Route::crd(), weir_crds::Plugin::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        wait_established(&crds, &name).await;
    }
}

/// Waits until the API server serves the CRD `name` (`Established`).
pub async fn wait_established(crds: &Api<CustomResourceDefinition>, name: &str) {
    let established = crate::wait::until(
        &format!("CRD {name} established"),
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let current = crds.get(name).await.map_err(|e| e.to_string())?;
            let conditions = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                Ok(())
            } else {
                Err(format!("conditions {conditions:?}"))
            }
        },
    )
    .await;
    if let Err(timeout) = established {
        panic!("{timeout}");
    }
}

/// A fresh namespace for one test, deleted when dropped (also when the test panics).
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates `weir-e2e-<suffix>-<pid>`: namespaces never finish deleting on an API
    /// server without a controller manager, so every run needs names of its own.
    pub async fn create(client: &Client, suffix: &str) -> Self {
        let name = format!("{NAMESPACE_PREFIX}{suffix}-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        crate::with_own_client(move |client| async move {
            delete_namespace(client, &name).await;
        });
    }
}

/// Deletes what the suite made in namespace `name`, then the namespace. An API server
/// without a controller manager never empties a deleted namespace: thousands of Routes
/// left in namespaces that stay `Terminating` forever would slow down every later list of
/// Routes (the operator's, `kubectl get routes -A`). With a controller manager this only
/// does its work earlier.
pub async fn delete_namespace(client: Client, name: &str) {
    for (api_version, kind) in KINDS {
        let _ = api(&client, name, api_version, kind)
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
    }
    let namespaces: Api<Namespace> = Api::all(client);
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
}

/// The pid that ends a suite namespace's name.
fn run_of_namespace(name: &str) -> Option<u32> {
    name.strip_prefix(NAMESPACE_PREFIX)?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

/// Deletes the objects and namespaces of the runs `of` selects (by the test process's
/// pid): those of crashed runs, or this run's when it is interrupted. Objects are found
/// by [`RUN_LABEL`], one list per kind, so namespaces already emptied cost nothing.
/// Returns how many objects it found.
pub async fn delete_runs(client: &Client, of: impl Fn(u32) -> bool) -> usize {
    let mut found_objects = 0;
    let selector = ListParams::default().labels(RUN_LABEL);
    for (api_version, kind) in KINDS {
        let resource = resource_of(&json!({"apiVersion": api_version, "kind": kind}));
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let Ok(found) = all.list_metadata(&selector).await else {
            continue;
        };
        let mut runs = std::collections::BTreeSet::new();
        for object in found {
            let run = object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RUN_LABEL));
            if let (Some(namespace), Some(run)) = (object.metadata.namespace, run)
                && run.parse::<u32>().is_ok_and(&of)
            {
                found_objects += 1;
                runs.insert((namespace, run.clone()));
            }
        }
        for (namespace, run) in runs {
            let _ = api(client, &namespace, api_version, kind)
                .delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(&format!("{RUN_LABEL}={run}")),
                )
                .await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Ok(list) = namespaces.list(&Default::default()).await {
        for namespace in list {
            let name = namespace.metadata.name.unwrap_or_default();
            let terminating =
                namespace.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
            if !terminating && run_of_namespace(&name).is_some_and(&of) {
                // What the operator made there too (its Lease), which has no label.
                delete_namespace(client.clone(), &name).await;
            }
        }
    }
    found_objects
}

/// The API resource of a manifest's `apiVersion` and `kind`.
fn resource_of(manifest: &Value) -> ApiResource {
    let api_version = manifest["apiVersion"].as_str().expect("apiVersion");
    let kind = manifest["kind"].as_str().expect("kind");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// The dynamic API of `kind` (`Route`, `Plugin`, `ConfigMap`, …) in `namespace`.
pub fn api(client: &Client, namespace: &str, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let resource = resource_of(&json!({"apiVersion": api_version, "kind": kind}));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The API of weir Routes in `namespace`.
pub fn routes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    api(client, namespace, "weir.dev/v1alpha1", "Route")
}

/// The API of weir Plugins in `namespace`.
pub fn plugins(client: &Client, namespace: &str) -> Api<DynamicObject> {
    api(client, namespace, "weir.dev/v1alpha1", "Plugin")
}

/// Applies `manifest` (any namespaced kind, `metadata.name` set) in `namespace` by
/// server-side apply, labelled with [`RUN_LABEL`], returning the object as stored.
pub async fn apply(client: &Client, namespace: &str, mut manifest: Value) -> DynamicObject {
    let resource = resource_of(&manifest);
    manifest["metadata"]["labels"][RUN_LABEL] = Value::from(std::process::id().to_string());
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_owned();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(manifest).expect("a Kubernetes object");
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {namespace}/{name}: {e}", resource.kind))
}

/// A Service `name` with port 80 (`http`) and no cluster IP, for Routes to refer to.
pub fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    })
}

/// One endpoint of an EndpointSlice: an address and whether it is ready.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// The endpoint's address.
    pub address: Ipv4Addr,
    /// Its `ready` condition.
    pub ready: bool,
}

/// The EndpointSlice `<service>-e2e` of Service `service`: `endpoints` on `port`, the
/// port named `port_name` (the Service port's name).
pub fn endpoint_slice(service: &str, port_name: &str, port: u16, endpoints: &[Endpoint]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| json!({"addresses": [e.address.to_string()], "conditions": {"ready": e.ready}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-e2e"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

/// The condition `type` of an object's `status.conditions`.
pub fn condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether the condition `type` of `object` has `status` and `reason` and describes the
/// object's current generation.
pub fn has_condition(object: &DynamicObject, type_: &str, status: &str, reason: &str) -> bool {
    condition(object, type_).is_some_and(|c| {
        c["status"] == status
            && c["reason"] == reason
            && c["observedGeneration"].as_i64() == object.metadata.generation
    })
}

/// The `message` of the condition `type`, or `""`.
pub fn message<'a>(object: &'a DynamicObject, type_: &str) -> &'a str {
    condition(object, type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_carry_their_run() {
        assert_eq!(run_of_namespace("weir-e2e-s8-delegated-4242"), Some(4242));
        assert_eq!(run_of_namespace("weir-e2e-s1-4242"), Some(4242));
        assert_eq!(run_of_namespace("weir-e2e-rbac"), None);
        assert_eq!(run_of_namespace("kube-system"), None);
    }
}

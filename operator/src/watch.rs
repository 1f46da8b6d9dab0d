//! The watchers: one reflector per kind and watched namespace, each change announced on
//! the [`Changes`] channel. ConfigMaps and Secrets only count when a Plugin, Route or
//! Ingress refers to them, so unrelated churn in a busy cluster builds nothing.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use weir_crds::compile::DATA_NOT_KEPT;
use weir_crds::{Plugin, Route};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::world::{Stores, Writers};

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// An object the compiler reads: build a new snapshot (after the debounce).
    Objects,
    /// The proxy endpoints: push the current snapshot to new ones right away.
    Proxies,
}

/// Sender of changes.
pub type Changes = mpsc::UnboundedSender<Change>;

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether a ConfigMap event matters: some Plugin's source is in it.
pub fn config_map_matters(config_map: &ConfigMap, plugins: &[Store<Plugin>]) -> bool {
    let namespace = config_map.namespace().unwrap_or_default();
    let name = config_map.name_any();
    plugins
        .iter()
        .any(|s| s.find(|p| p.uses_config_map(&namespace, &name)).is_some())
}

/// Whether a Secret event matters: some Route's or Ingress's certificate, or a config
/// value of some Plugin or Route plugin override, is in it.
pub fn secret_matters(
    secret: &Secret,
    routes: &[Store<Route>],
    plugins: &[Store<Plugin>],
    ingresses: &[Store<Ingress>],
) -> bool {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    routes
        .iter()
        .any(|s| s.find(|r| r.uses_secret(&namespace, &name)).is_some())
        || plugins
            .iter()
            .any(|s| s.find(|p| p.uses_secret(&namespace, &name)).is_some())
        || ingresses.iter().any(|s| {
            s.find(|i| {
                i.namespace().as_deref() == Some(namespace.as_str())
                    && ingress_secret_names(i).any(|secret| secret == name)
            })
            .is_some()
        })
}

/// The Secrets of its namespace an Ingress reads: its TLS certificates'.
fn ingress_secret_names(ingress: &Ingress) -> impl Iterator<Item = &str> {
    ingress
        .spec
        .iter()
        .flat_map(|spec| spec.tls.iter().flatten())
        .filter_map(|tls| tls.secret_name.as_deref())
}

/// The Secret type whose data is always kept: certificates, small, and read by name.
const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// What the Secret store keeps of `secret`: everything when a Route, Plugin or Ingress
/// reads it (or it is a TLS Secret), else its metadata only, marked [`DATA_NOT_KEPT`], so
/// memory tracks the Secrets weir reads, not every Opaque Secret of the cluster.
pub fn project_secret(
    secret: &mut Secret,
    routes: &[Store<Route>],
    plugins: &[Store<Plugin>],
    ingresses: &[Store<Ingress>],
) {
    let tls = secret.type_.as_deref() == Some(TLS_SECRET_TYPE);
    if tls || secret_matters(secret, routes, plugins, ingresses) {
        return;
    }
    secret.data = None;
    secret.string_data = None;
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DATA_NOT_KEPT.to_owned(), "true".to_owned());
}

/// Lists the Secrets again when an object reads one whose data was not kept.
#[derive(Clone)]
struct SecretRelist {
    secrets: Vec<Store<Secret>>,
    relist: Arc<watch::Sender<u64>>,
}

impl SecretRelist {
    /// Lists the Secrets again when `object` reads one stored without its data.
    fn check<K: ReadsSecrets>(&self, object: &K) {
        let namespace = object.namespace().unwrap_or_default();
        if reads_dropped_data(&namespace, object.secrets_read().into_iter(), &self.secrets) {
            self.relist.send_modify(|n| *n += 1);
        }
    }

    /// The event and list-complete callbacks of a watch of objects that read Secrets
    /// (`store` is theirs): each announces a change with `changed`, then checks the
    /// object (or, once listed, every object) for Secrets to list again.
    fn reading<K>(
        &self,
        store: &[Store<K>],
        changed: impl Fn() + Clone + Send + 'static,
    ) -> (
        impl FnMut(&K) + Send + 'static,
        impl FnMut() + Send + 'static,
    )
    where
        K: ReadsSecrets + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        let (relist, on_change) = (self.clone(), changed.clone());
        let on_event = move |object: &K| {
            on_change();
            relist.check(object);
        };
        let (relist, store) = (self.clone(), store.to_vec());
        let on_ready = move || {
            changed();
            for object in store.iter().flat_map(|s| s.state()) {
                relist.check(&*object);
            }
        };
        (on_event, on_ready)
    }
}

/// Objects that read Secrets of their own namespace.
trait ReadsSecrets: Resource {
    /// The names of the Secrets it reads.
    fn secrets_read(&self) -> Vec<&str>;
}

impl ReadsSecrets for Route {
    fn secrets_read(&self) -> Vec<&str> {
        self.secret_names().collect()
    }
}

impl ReadsSecrets for Plugin {
    fn secrets_read(&self) -> Vec<&str> {
        self.secret_names().collect()
    }
}

impl ReadsSecrets for Ingress {
    fn secrets_read(&self) -> Vec<&str> {
        ingress_secret_names(self).collect()
    }
}

/// Whether some of `names` (Secrets of `namespace` an object reads) is in the store
/// without its data: it was not read when it was listed, so the Secrets are listed again.
pub fn reads_dropped_data<'a>(
    namespace: &str,
    mut names: impl Iterator<Item = &'a str>,
    secrets: &[Store<Secret>],
) -> bool {
    names.any(|name| {
        secrets.iter().any(|store| {
            store
                .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
                .is_some_and(|secret| {
                    secret
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(DATA_NOT_KEPT))
                })
        })
    })
}

/// Secrets the operator never reads, left out of its watch (a field selector): service
/// account and bootstrap tokens, image pull credentials and Helm's release records, which
/// are most of a cluster's Secrets and none of them TLS certificates or plugin keys.
pub const SECRETS_NOT_WATCHED: &str = "type!=kubernetes.io/service-account-token,\
type!=bootstrap.kubernetes.io/token,type!=kubernetes.io/dockerconfigjson,\
type!=kubernetes.io/dockercfg,type!=helm.sh/release.v1";

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs one reflector until its watch ends, calling `on_event` for each object event.
/// When `relist` changes, the watch starts again from a fresh list (`streams` makes
/// it): the store is replaced by what the list holds once it is complete.
async fn reflect<K, S>(
    kind: &'static str,
    mut writer: Writer<K>,
    mut streams: impl FnMut() -> S + Send,
    mut relist: Option<watch::Receiver<u64>>,
    metrics: Metrics,
    mut on_event: impl FnMut(&K) + Send,
    mut on_ready: impl FnMut() + Send,
) where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    loop {
        let stream = streams();
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = relisted(relist.as_mut()) => break,
            };
            let Some(event) = event else {
                return;
            };
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    match &event {
                        watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                            on_event(object)
                        }
                        watcher::Event::InitDone => on_ready(),
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                    }
                }
                Err(e) => {
                    metrics.watch_error(kind);
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                }
            }
        }
        tracing::info!(kind, "listing again");
    }
}

/// Resolves when `relist` changes; never without one (or once its sender is gone).
async fn relisted(relist: Option<&mut watch::Receiver<u64>>) {
    let changed = match relist {
        Some(relist) => relist.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// What of its objects' labels and annotations a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Neither: nothing reads them.
    Nothing,
    /// Labels: the compiler reads them (an EndpointSlice's [`SERVICE_NAME_LABEL`]).
    Labels,
    /// Annotations but `kubectl apply`'s copy of the object: they are an Ingress's
    /// settings, and say which IngressClass is the default.
    Annotations,
}

/// The annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the stores never read and what can be as large as the object itself:
/// `metadata.managedFields` (server-side apply's bookkeeping, one entry per field
/// manager), the annotations (`kubectl apply`'s last-applied copy of the whole object
/// among them) unless `keep` keeps them, and the labels unless `keep` keeps them (Helm
/// and GitOps tools put several on every object, and each small map costs half a
/// kilobyte). The operator's memory then tracks what it compiles.
fn trim<K: Resource>(object: &mut K, keep: Keep) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    match keep {
        Keep::Annotations => {
            if let Some(annotations) = &mut meta.annotations {
                annotations.remove(LAST_APPLIED);
            }
        }
        Keep::Nothing | Keep::Labels => meta.annotations = None,
    }
    if keep != Keep::Labels {
        meta.labels = None;
    }
}

fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    keep: Keep,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    watcher(api, config)
        .default_backoff()
        .modify(move |object| trim(object, keep))
}

/// Marks the store of a kind not watched as listed, and empty.
fn ready_and_empty<K>(mut writer: Writer<K>)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Starts every watcher; they run until the returned tasks are aborted.
pub fn spawn(
    client: &Client,
    config: &Config,
    stores: &Stores,
    writers: Writers,
    changes: Changes,
    metrics: Metrics,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let scopes = config.namespaces.scopes();
    let Writers {
        routes,
        plugins,
        config_maps,
        services,
        endpoint_slices,
        secrets,
        ingresses,
        ingress_classes,
        proxy_slices,
        publish_service,
    } = writers;
    let objects = {
        let changes = changes.clone();
        move || {
            let _ = changes.send(Change::Objects);
        }
    };
    // Secrets nothing read when they were listed are kept without their data; an object
    // that starts reading one makes the Secret watches list again.
    let (relist_secrets, secrets_relisted) = watch::channel(0u64);
    let relist_for = SecretRelist {
        secrets: stores.secrets.clone(),
        relist: Arc::new(relist_secrets),
    };
    for (scope, writer) in scopes.iter().zip(routes) {
        let (on_event, on_ready) = relist_for.reading(&stores.routes, objects.clone());
        let api = api::<Route>(client, scope.as_deref());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Nothing);
        tasks.push(tokio::spawn(reflect(
            "Route",
            writer,
            streams,
            None,
            metrics.clone(),
            on_event,
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(plugins) {
        let (on_event, on_ready) = relist_for.reading(&stores.plugins, objects.clone());
        let api = api::<Plugin>(client, scope.as_deref());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Nothing);
        tasks.push(tokio::spawn(reflect(
            "Plugin",
            writer,
            streams,
            None,
            metrics.clone(),
            on_event,
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(config_maps) {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let plugin_stores = stores.plugins.clone();
        let mut selected = watcher::Config::default();
        if let Some(selector) = &config.config_map_selector {
            selected = selected.labels(selector);
        }
        let api = api::<ConfigMap>(client, scope.as_deref());
        let watched = selected;
        let streams = move || watch(api.clone(), watched.clone(), Keep::Nothing);
        tasks.push(tokio::spawn(reflect(
            "ConfigMap",
            writer,
            streams,
            None,
            metrics.clone(),
            move |cm| {
                if config_map_matters(cm, &plugin_stores) {
                    on_event()
                }
            },
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(services) {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let api = api::<Service>(client, scope.as_deref());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Nothing);
        tasks.push(tokio::spawn(reflect(
            "Service",
            writer,
            streams,
            None,
            metrics.clone(),
            move |_| on_event(),
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(endpoint_slices) {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let api = api::<EndpointSlice>(client, scope.as_deref());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Labels);
        tasks.push(tokio::spawn(reflect(
            "EndpointSlice",
            writer,
            streams,
            None,
            metrics.clone(),
            move |_| on_event(),
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(secrets) {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let route_stores = stores.routes.clone();
        let plugin_stores = stores.plugins.clone();
        let ingress_stores = stores.ingresses.clone();
        // TLS certificates and plugin keys (Opaque, or any type a team uses for them); the
        // data of those nothing reads is not kept.
        let api = api::<Secret>(client, scope.as_deref());
        let watched = watcher::Config::default().fields(SECRETS_NOT_WATCHED);
        let readers = (
            stores.routes.clone(),
            stores.plugins.clone(),
            stores.ingresses.clone(),
        );
        let streams = move || {
            let (routes, plugins, ingresses) = readers.clone();
            watch(api.clone(), watched.clone(), Keep::Nothing)
                .modify(move |secret| project_secret(secret, &routes, &plugins, &ingresses))
        };
        tasks.push(tokio::spawn(reflect(
            "Secret",
            writer,
            streams,
            Some(secrets_relisted.clone()),
            metrics.clone(),
            move |secret| {
                if secret_matters(secret, &route_stores, &plugin_stores, &ingress_stores) {
                    on_event()
                }
            },
            on_ready,
        )));
    }
    for (scope, writer) in scopes.iter().zip(ingresses) {
        if !config.watch_ingresses {
            ready_and_empty(writer);
            continue;
        }
        let (on_event, on_ready) = relist_for.reading(&stores.ingresses, objects.clone());
        let api = api::<Ingress>(client, scope.as_deref());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Annotations);
        tasks.push(tokio::spawn(reflect(
            "Ingress",
            writer,
            streams,
            None,
            metrics.clone(),
            on_event,
            on_ready,
        )));
    }
    for writer in ingress_classes {
        if !config.watch_ingresses {
            ready_and_empty(writer);
            continue;
        }
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let api = Api::<IngressClass>::all(client.clone());
        let watched = watcher::Config::default();
        let streams = move || watch(api.clone(), watched.clone(), Keep::Annotations);
        tasks.push(tokio::spawn(reflect(
            "IngressClass",
            writer,
            streams,
            None,
            metrics.clone(),
            move |_| on_event(),
            on_ready,
        )));
    }
    for writer in publish_service {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let crate::status::Publish::Service { namespace, name } = &config.publish else {
            ready_and_empty(writer);
            continue;
        };
        let api = Api::<Service>::namespaced(client.clone(), namespace);
        let watched = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let streams = move || watch(api.clone(), watched.clone(), Keep::Nothing);
        tasks.push(tokio::spawn(reflect(
            "PublishService",
            writer,
            streams,
            None,
            metrics.clone(),
            move |_| on_event(),
            on_ready,
        )));
    }
    let proxies = Arc::new(move || {
        let _ = changes.send(Change::Proxies);
    });
    for writer in proxy_slices {
        let (on_event, on_ready) = (proxies.clone(), proxies.clone());
        let api = Api::<EndpointSlice>::namespaced(client.clone(), &config.proxies.namespace);
        let watched = watcher::Config::default()
            .labels(&format!("{SERVICE_NAME_LABEL}={}", config.proxies.service));
        let streams = move || watch(api.clone(), watched.clone(), Keep::Labels);
        tasks.push(tokio::spawn(reflect(
            "ProxyEndpointSlice",
            writer,
            streams,
            None,
            metrics.clone(),
            move |_| on_event(),
            move || on_ready(),
        )));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> serde_json::Value {
        serde_json::json!({
            "name": "a", "namespace": "shop", "uid": "u1", "generation": 2,
            "labels": {"app.kubernetes.io/managed-by": "Helm", "kubernetes.io/service-name": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"a\":1}", "meta.helm.sh/release-name": "shop"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
        })
    }

    #[test]
    fn stores_keep_what_the_operator_reads() {
        let mut route: Route = serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route", "metadata": metadata(),
            "spec": {"rules": [{"directResponse": {"status": 200}}]}
        }))
        .unwrap();
        let before = route.clone();
        trim(&mut route, Keep::Nothing);
        assert_eq!(route.metadata.labels, None);
        assert_eq!(route.metadata.annotations, None);
        assert_eq!(route.metadata.managed_fields, None);
        assert_eq!(route.metadata.uid, before.metadata.uid);
        assert_eq!(route.metadata.generation, Some(2));
        assert_eq!(route.spec, before.spec);

        let mut slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "addressType": "IPv4", "endpoints": [], "metadata": metadata()
        }))
        .unwrap();
        trim(&mut slice, Keep::Labels);
        assert_eq!(
            slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(slice.metadata.annotations, None);
        assert_eq!(slice.metadata.managed_fields, None);

        let mut ingress: Ingress =
            serde_json::from_value(serde_json::json!({"metadata": metadata()})).unwrap();
        trim(&mut ingress, Keep::Annotations);
        let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["meta.helm.sh/release-name"],
            "an Ingress keeps its settings, not kubectl's copy of itself"
        );
        assert_eq!(ingress.metadata.labels, None);
    }
}

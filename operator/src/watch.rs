//! The watchers: one reflector per kind and watched namespace, each change announced on
//! the [`Changes`] channel. ConfigMaps and Secrets only count when a Plugin, Route,
//! Ingress or Gateway refers to them, so unrelated churn in a busy cluster builds nothing.
//! The Gateway API kinds (and Namespaces, read for them) are watched while the API server
//! serves the Gateway API ([`crate::discovery`]).

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use weir_crds::compile::DATA_NOT_KEPT;
use weir_crds::gateway::{
    CORE_GROUP, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, SECRET_KIND,
};
use weir_crds::{Plugin, Route};

use crate::config::Config;
use crate::discovery::{GatewayApi, watch_gateway_api};
use crate::metrics::Metrics;
use crate::stored_route::StoredRoute;
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

/// The stores of the objects that read Secrets: a Secret counts when one of them does.
#[derive(Clone, Default)]
pub struct SecretReaders {
    /// Routes (certificates, plugin config values).
    pub routes: Vec<Store<StoredRoute>>,
    /// Plugins (config values).
    pub plugins: Vec<Store<Plugin>>,
    /// Ingresses (certificates).
    pub ingresses: Vec<Store<Ingress>>,
    /// Gateways (their HTTPS listeners' certificates).
    pub gateways: Vec<Store<Gateway>>,
}

impl SecretReaders {
    /// The readers among `stores`.
    pub fn of(stores: &Stores) -> Self {
        Self {
            routes: stores.routes.clone(),
            plugins: stores.plugins.clone(),
            ingresses: stores.ingresses.clone(),
            gateways: stores.gateways.clone(),
        }
    }
}

/// Whether a Secret event matters: some Route's, Ingress's or Gateway listener's
/// certificate, or a config value of some Plugin or Route plugin override, is in it.
pub fn secret_matters(secret: &Secret, readers: &SecretReaders) -> bool {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    reads(&readers.routes, &namespace, &name)
        || reads(&readers.plugins, &namespace, &name)
        || reads(&readers.ingresses, &namespace, &name)
        || reads(&readers.gateways, &namespace, &name)
}

/// Whether an object of `stores` reads Secret `namespace/name`.
fn reads<K>(stores: &[Store<K>], namespace: &str, name: &str) -> bool
where
    K: ReadsSecrets + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    stores.iter().any(|s| {
        s.find(|o| o.secrets_read().contains(&(namespace, name)))
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

/// What the Secret store keeps of `secret`: everything when a Route, Plugin, Ingress or
/// Gateway reads it (or it is a TLS Secret), else its metadata only, marked
/// [`DATA_NOT_KEPT`], so memory tracks the Secrets weir reads, not every Opaque Secret of
/// the cluster.
pub fn project_secret(secret: &mut Secret, readers: &SecretReaders) {
    let tls = secret.type_.as_deref() == Some(TLS_SECRET_TYPE);
    if tls || secret_matters(secret, readers) {
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
        if reads_dropped_data(object.secrets_read().into_iter(), &self.secrets) {
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

/// Objects that read Secrets.
trait ReadsSecrets: Resource {
    /// The namespace and name of each Secret it reads.
    fn secrets_read(&self) -> Vec<(&str, &str)>;
}

/// `names`, Secrets of the namespace of the object `meta` describes.
fn in_namespace_of<'a>(
    meta: &'a kube::api::ObjectMeta,
    names: impl Iterator<Item = &'a str>,
) -> Vec<(&'a str, &'a str)> {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    names.map(|name| (namespace, name)).collect()
}

impl ReadsSecrets for StoredRoute {
    fn secrets_read(&self) -> Vec<(&str, &str)> {
        in_namespace_of(&self.metadata, self.secret_names())
    }
}

impl ReadsSecrets for Plugin {
    fn secrets_read(&self) -> Vec<(&str, &str)> {
        in_namespace_of(&self.metadata, self.secret_names())
    }
}

impl ReadsSecrets for Ingress {
    fn secrets_read(&self) -> Vec<(&str, &str)> {
        in_namespace_of(&self.metadata, ingress_secret_names(self))
    }
}

impl ReadsSecrets for Gateway {
    /// Its listeners' certificate references to Secrets, in its namespace or (granted by
    /// a ReferenceGrant) another.
    fn secrets_read(&self) -> Vec<(&str, &str)> {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        self.spec
            .listeners
            .iter()
            .filter_map(|listener| listener.tls.as_ref())
            .flat_map(|tls| &tls.certificate_refs)
            .filter(|r| r.group_or_default() == CORE_GROUP && r.kind_or_default() == SECRET_KIND)
            .map(|r| (r.namespace_or(namespace), r.name.as_str()))
            .collect()
    }
}

/// Whether some of `secrets_read` (namespace and name of the Secrets an object reads) is
/// in the store without its data: it was not read when it was listed, so the Secrets are
/// listed again.
pub fn reads_dropped_data<'a>(
    mut secrets_read: impl Iterator<Item = (&'a str, &'a str)>,
    secrets: &[Store<Secret>],
) -> bool {
    secrets_read.any(|(namespace, name)| {
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
    writer: Writer<K>,
    streams: impl FnMut() -> S + Send,
    relist: Option<watch::Receiver<u64>>,
    metrics: Metrics,
    on_event: impl FnMut(&K) + Send,
    on_ready: impl FnMut() + Send,
) where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut reflector = Reflector {
        kind,
        writer,
        streams,
        metrics,
        on_event,
        on_ready,
    };
    reflector.watch(relist).await;
}

/// One reflector: the writer of its store, how it watches (`streams` makes the watch),
/// and what it calls: `on_event` for each object event, `on_ready` once a list is
/// complete.
struct Reflector<K, F, E, R>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    kind: &'static str,
    writer: Writer<K>,
    streams: F,
    metrics: Metrics,
    on_event: E,
    on_ready: R,
}

impl<K, F, E, R> Reflector<K, F, E, R>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    E: FnMut(&K) + Send,
    R: FnMut() + Send,
{
    /// Watches until the watch ends (see [`reflect`]).
    async fn watch<S>(&mut self, mut relist: Option<watch::Receiver<u64>>)
    where
        F: FnMut() -> S + Send,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    {
        let kind = self.kind;
        loop {
            let stream = (self.streams)();
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
                        self.writer.apply_watcher_event(&event);
                        match &event {
                            watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                                (self.on_event)(object)
                            }
                            watcher::Event::InitDone => (self.on_ready)(),
                            watcher::Event::Init | watcher::Event::InitApply(_) => {}
                        }
                    }
                    Err(e) => {
                        self.metrics.watch_error(kind);
                        tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                    }
                }
            }
            tracing::info!(kind, "listing again");
        }
    }

    /// Watches (a Gateway API kind, or Namespaces, read for it) while `served` says the
    /// API server serves the Gateway API. While it does not, the store is empty and
    /// counts as listed; when it stops, the watch stops and the store is emptied
    /// (announced with `on_ready`). Until the first answer the store is not listed, so no
    /// snapshot is built without the Gateway API objects of a cluster that has them.
    async fn while_served<S>(mut self, mut served: watch::Receiver<GatewayApi>)
    where
        F: FnMut() -> S + Send,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    {
        let mut listed_empty = false;
        loop {
            let now = *served.borrow_and_update();
            match now {
                GatewayApi::Unknown => {}
                GatewayApi::Absent => {
                    if !listed_empty {
                        listed_empty = true;
                        empty(&mut self.writer);
                        (self.on_ready)();
                    }
                }
                GatewayApi::Present => {
                    listed_empty = false;
                    let watching = self.watch(None);
                    let gone = served.wait_for(|known| *known != GatewayApi::Present);
                    tokio::select! {
                        () = watching => return,
                        answer = gone => if answer.is_err() { return },
                    }
                    continue;
                }
            }
            if served.changed().await.is_err() {
                return;
            }
        }
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

/// Empties a store as an empty list would, marking it listed: the store of a kind not
/// watched, or no longer served.
fn empty<K>(writer: &mut Writer<K>)
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
        gateway_classes,
        gateways,
        http_routes,
        reference_grants,
        namespaces,
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
        let streams = move || {
            watch(api.clone(), watched.clone(), Keep::Nothing)
                .map_ok(|event| projected(event, StoredRoute::from))
        };
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
        let readers = SecretReaders::of(stores);
        // TLS certificates and plugin keys (Opaque, or any type a team uses for them); the
        // data of those nothing reads is not kept.
        let api = api::<Secret>(client, scope.as_deref());
        let watched = watcher::Config::default().fields(SECRETS_NOT_WATCHED);
        let projected = readers.clone();
        let streams = move || {
            let readers = projected.clone();
            watch(api.clone(), watched.clone(), Keep::Nothing)
                .modify(move |secret| project_secret(secret, &readers))
        };
        tasks.push(tokio::spawn(reflect(
            "Secret",
            writer,
            streams,
            Some(secrets_relisted.clone()),
            metrics.clone(),
            move |secret| {
                if secret_matters(secret, &readers) {
                    on_event()
                }
            },
            on_ready,
        )));
    }
    for (scope, mut writer) in scopes.iter().zip(ingresses) {
        if !config.watch_ingresses {
            empty(&mut writer);
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
    for mut writer in ingress_classes {
        if !config.watch_ingresses {
            empty(&mut writer);
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
    for mut writer in publish_service {
        let (on_event, on_ready) = (objects.clone(), objects.clone());
        let crate::status::Publish::Service { namespace, name } = &config.publish else {
            empty(&mut writer);
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
    tasks.extend(spawn_gateway_api(
        client,
        config,
        GatewayApiWriters {
            gateway_classes,
            gateways,
            http_routes,
            reference_grants,
            namespaces,
        },
        &relist_for,
        stores,
        &objects,
        &metrics,
    ));
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

/// The writers of the Gateway API stores.
struct GatewayApiWriters {
    gateway_classes: Vec<Writer<GatewayClass>>,
    gateways: Vec<Writer<Gateway>>,
    http_routes: Vec<Writer<HTTPRoute>>,
    reference_grants: Vec<Writer<ReferenceGrant>>,
    namespaces: Vec<Writer<Namespace>>,
}

/// Starts asking whether the Gateway API is served and the watches of its kinds (and of
/// Namespaces), which run while it is; with `--watch-gateway-api=false`, marks their
/// stores listed and empty. Returns the tasks started.
fn spawn_gateway_api(
    client: &Client,
    config: &Config,
    writers: GatewayApiWriters,
    relist_for: &SecretRelist,
    stores: &Stores,
    objects: &(impl Fn() + Clone + Send + 'static),
    metrics: &Metrics,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let GatewayApiWriters {
        gateway_classes,
        gateways,
        http_routes,
        reference_grants,
        namespaces,
    } = writers;
    if !config.watch_gateway_api {
        gateway_classes.into_iter().for_each(|mut w| empty(&mut w));
        gateways.into_iter().for_each(|mut w| empty(&mut w));
        http_routes.into_iter().for_each(|mut w| empty(&mut w));
        reference_grants.into_iter().for_each(|mut w| empty(&mut w));
        namespaces.into_iter().for_each(|mut w| empty(&mut w));
        return tasks;
    }
    let (known, served) = watch::channel(GatewayApi::Unknown);
    tasks.push(tokio::spawn(watch_gateway_api(
        client.clone(),
        config.gateway_api_discovery_interval,
        known,
        metrics.clone(),
    )));
    let served = &served;
    tasks.extend(while_served_each(
        "GatewayClass",
        [Api::all(client.clone())],
        gateway_classes,
        served,
        metrics,
        || every_change(objects),
    ));
    tasks.extend(while_served_each(
        "Gateway",
        scoped(client, config),
        gateways,
        served,
        metrics,
        || relist_for.reading(&stores.gateways, objects.clone()),
    ));
    tasks.extend(while_served_each(
        "HTTPRoute",
        scoped(client, config),
        http_routes,
        served,
        metrics,
        || every_change(objects),
    ));
    tasks.extend(while_served_each(
        "ReferenceGrant",
        scoped(client, config),
        reference_grants,
        served,
        metrics,
        || every_change(objects),
    ));
    for writer in namespaces {
        let (on_event, on_ready) = every_change(objects);
        let client = client.clone();
        let streams = move || namespace_labels(client.clone());
        let reflector = Reflector {
            kind: "Namespace",
            writer,
            streams,
            metrics: metrics.clone(),
            on_event,
            on_ready,
        };
        tasks.push(tokio::spawn(reflector.while_served(served.clone())));
    }
    tasks
}

/// The API of namespaced kind `K` in each watched namespace (or all of them).
fn scoped<K>(client: &Client, config: &Config) -> Vec<Api<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    config
        .namespaces
        .scopes()
        .iter()
        .map(|scope| api(client, scope.as_deref()))
        .collect()
}

/// Callbacks announcing every event and every complete list as a change.
fn every_change<K, F>(changed: &F) -> (impl FnMut(&K) + Send + 'static, F)
where
    F: Fn() + Clone + Send + 'static,
{
    let on_event = changed.clone();
    (move |_: &K| on_event(), changed.clone())
}

/// Starts [`Reflector::while_served`] for each writer of a kind, watching what the API beside it
/// names (one per watched namespace, or the cluster), with the callbacks `callbacks` makes.
fn while_served_each<K, E, R>(
    kind: &'static str,
    apis: impl IntoIterator<Item = Api<K>>,
    writers: Vec<Writer<K>>,
    served: &watch::Receiver<GatewayApi>,
    metrics: &Metrics,
    mut callbacks: impl FnMut() -> (E, R),
) -> Vec<tokio::task::JoinHandle<()>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    E: FnMut(&K) + Send + 'static,
    R: FnMut() + Send + 'static,
{
    apis.into_iter()
        .zip(writers)
        .map(|(api, writer)| {
            let (on_event, on_ready) = callbacks();
            let streams = move || watch(api.clone(), watcher::Config::default(), Keep::Nothing);
            let reflector = Reflector {
                kind,
                writer,
                streams,
                metrics: metrics.clone(),
                on_event,
                on_ready,
            };
            tokio::spawn(reflector.while_served(served.clone()))
        })
        .collect()
}

/// Namespaces as listeners' namespace selectors read them: a metadata-only watch (no
/// spec or status crosses the wire), each kept as its name and labels.
fn namespace_labels(
    client: Client,
) -> impl Stream<Item = Result<watcher::Event<Namespace>, watcher::Error>> + Send {
    let api = Api::<PartialObjectMeta<Namespace>>::all(client);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map_ok(|event| projected(event, namespace_of))
        .modify(|namespace| trim(namespace, Keep::Labels))
}

/// `event` with its object turned into what the store keeps of it by `project`.
fn projected<A, B>(event: watcher::Event<A>, project: impl Fn(A) -> B) -> watcher::Event<B> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(project(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(project(object)),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(project(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// A Namespace with the metadata of `meta` and nothing else.
fn namespace_of(meta: PartialObjectMeta<Namespace>) -> Namespace {
    Namespace {
        metadata: meta.metadata,
        ..Namespace::default()
    }
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
    fn a_stored_route_reads_the_secrets_of_its_namespace() {
        let route: Route = serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "tls": {"secretName": "api-cert"},
                "plugins": [{"name": "auth",
                             "secretRefs": [{"path": "/key", "secretName": "auth-key", "key": "k"}]}],
                "rules": [{"directResponse": {"status": 200}}]
            }
        }))
        .unwrap();
        let stored = StoredRoute::from(route);
        assert_eq!(
            stored.secrets_read(),
            [("shop", "api-cert"), ("shop", "auth-key")]
        );
    }

    #[test]
    fn a_plugin_reads_the_secrets_of_its_namespace() {
        let mut plugin: Plugin = serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "auth", "namespace": "shop"},
            "spec": {
                "source": {"configMapRef": {"name": "auth-src", "key": "index.ts"}},
                "secretRefs": [{"path": "/key", "secretName": "auth-keys", "key": "hs256"}]
            }
        }))
        .unwrap();
        assert_eq!(plugin.secrets_read(), [("shop", "auth-keys")]);
        plugin.metadata.namespace = Some("pay".into());
        assert_eq!(plugin.secrets_read(), [("pay", "auth-keys")]);
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

//! Writing status: the conditions the compiler and the proxies' acks add up to, applied
//! by server-side apply (field manager [`FIELD_MANAGER`]) on each Route and Plugin, only
//! when they changed; and a Kubernetes Event when an object is rejected or fails to load.
//! An Ingress has no conditions in its status: its conditions are decided the same way
//! but only their Events are published, and its `status.loadBalancer` is written by
//! [`load_balancer`]. weir's Gateway API objects get the status the Gateway API defines
//! ([`gateway_api`]), through the same book and task.
//!
//! The reconciler only decides ([`StatusWriter::update`]); the writes run in a task of
//! their own ([`sender`]) with bounded concurrency and rate, so they never hold up a build
//! or a push. The [`book`] coalesces them per object.

mod book;
mod gateway_api;
mod load_balancer;
mod sender;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tokio::sync::{Notify, watch};
use weir_crds::Plugin;
use weir_crds::admin::ProxyAck;
use weir_crds::compile::ObjectRef;
use weir_crds::compile::report::{ObjectKind, ObjectReport};
use weir_crds::condition::{DesiredCondition, summary};
use weir_crds::gateway::{Gateway, GatewayClass, HTTPRoute};
use weir_crds::programmed::programmed;

use crate::metrics::Metrics;
use crate::stored_route::StoredRoute;
pub use book::{Body, Failure, Sent};
use book::{Book, Stored, StoredStatus};
pub use gateway_api::{GatewayApiStatus, Inputs as GatewayApiInputs, gateway_addresses};
pub use load_balancer::{LoadBalancerWriter, Publish, published};

/// Field manager of the operator's status writes.
pub const FIELD_MANAGER: &str = "weir-operator";

/// How fast status is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusLimits {
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Writes started per second, at most (bursts up to `concurrency`).
    pub per_second: NonZeroU32,
}

impl Default for StatusLimits {
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_second: NonZeroU32::new(500).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// What one round of status decisions did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Objects whose status changed: a write is queued.
    pub queued: usize,
    /// Objects whose status was already right.
    pub unchanged: usize,
}

/// Every condition an object should have: the compiler's, `Programmed` (the object being
/// served as it is now from snapshot `since` on), and their kstatus summary.
pub fn desired_conditions(
    report: &ObjectReport,
    since: u64,
    acks: &[ProxyAck],
) -> Vec<DesiredCondition> {
    let mut desired = report.conditions();
    desired.push(programmed(report, since, acks));
    desired.extend(summary(&desired));
    desired
}

/// Now, to the second, as the API server stores condition times.
fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

/// What the status task and the reconciler share.
struct Shared {
    book: Mutex<Book>,
    /// Wakes the task: writes were queued.
    queued: Notify,
    /// Writes queued or in flight.
    outstanding: watch::Sender<usize>,
}

impl Shared {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, book: &Book) {
        self.outstanding.send_replace(book.outstanding());
    }
}

/// Decides status and hands the writes to its task, which stops when this is dropped.
pub struct StatusWriter {
    shared: Arc<Shared>,
    recorder: Recorder,
    metrics: Metrics,
    load_balancers: LoadBalancerWriter,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An object of the world whose status is decided.
#[derive(Clone, Copy)]
enum Object<'a> {
    Route(&'a StoredRoute),
    Plugin(&'a Plugin),
    Ingress(&'a Ingress),
    GatewayApi(gateway_api::Stored<'a>),
}

impl<'a> Object<'a> {
    /// Where Events about it point.
    fn reference(self) -> ObjectReference {
        match self {
            Self::Route(route) => route.object_ref(&()),
            Self::Plugin(plugin) => plugin.object_ref(&()),
            Self::Ingress(ingress) => ingress.object_ref(&()),
            Self::GatewayApi(gateway_api::Stored::GatewayClass(class)) => class.object_ref(&()),
            Self::GatewayApi(gateway_api::Stored::Gateway(gateway)) => gateway.object_ref(&()),
            Self::GatewayApi(gateway_api::Stored::HTTPRoute(route)) => route.object_ref(&()),
        }
    }

    /// Its kind, for the [`index`].
    fn kind(self) -> ObjectKind {
        match self {
            Self::Route(_) => ObjectKind::Route,
            Self::Plugin(_) => ObjectKind::Plugin,
            Self::Ingress(_) => ObjectKind::Ingress,
            Self::GatewayApi(gateway_api::Stored::GatewayClass(_)) => ObjectKind::GatewayClass,
            Self::GatewayApi(gateway_api::Stored::Gateway(_)) => ObjectKind::Gateway,
            Self::GatewayApi(gateway_api::Stored::HTTPRoute(_)) => ObjectKind::HTTPRoute,
        }
    }

    /// Its metadata.
    fn meta(self) -> &'a ObjectMeta {
        match self {
            Self::Route(route) => &route.metadata,
            Self::Plugin(plugin) => &plugin.metadata,
            Self::Ingress(ingress) => &ingress.metadata,
            Self::GatewayApi(gateway_api::Stored::GatewayClass(class)) => &class.metadata,
            Self::GatewayApi(gateway_api::Stored::Gateway(gateway)) => &gateway.metadata,
            Self::GatewayApi(gateway_api::Stored::HTTPRoute(route)) => &route.metadata,
        }
    }

    /// Its stored `status.conditions` and `status.observedGeneration` (an Ingress has
    /// neither; a Gateway API object's status is read whole).
    fn status(self) -> (&'a [Condition], Option<i64>) {
        let status = match self {
            Self::Route(route) => route
                .status
                .as_ref()
                .map(|s| (s.conditions.as_slice(), s.observed_generation)),
            Self::Plugin(plugin) => plugin
                .status
                .as_ref()
                .map(|s| (s.conditions.as_slice(), s.observed_generation)),
            Self::Ingress(_) | Self::GatewayApi(_) => None,
        };
        status.unwrap_or((&[], None))
    }
}

/// Key of an object in the [`index`].
type Key<'a> = (ObjectKind, &'a str, &'a str);

/// The objects of the world by kind, namespace and name.
fn index<'a>(world: &'a Reported) -> HashMap<Key<'a>, Object<'a>> {
    let routes = world.routes.iter().map(|route| Object::Route(route));
    let plugins = world.plugins.iter().map(|plugin| Object::Plugin(plugin));
    let ingresses = world
        .ingresses
        .iter()
        .map(|ingress| Object::Ingress(ingress));
    let classes = world
        .gateway_classes
        .iter()
        .map(|class| Object::GatewayApi(gateway_api::Stored::GatewayClass(class)));
    let gateways = world
        .gateways
        .iter()
        .map(|gateway| Object::GatewayApi(gateway_api::Stored::Gateway(gateway)));
    let http_routes = world
        .http_routes
        .iter()
        .map(|route| Object::GatewayApi(gateway_api::Stored::HTTPRoute(route)));
    routes
        .chain(plugins)
        .chain(ingresses)
        .chain(classes)
        .chain(gateways)
        .chain(http_routes)
        .map(|object| {
            let meta = object.meta();
            let namespace = meta.namespace.as_deref().unwrap_or_default();
            let name = meta.name.as_deref().unwrap_or_default();
            ((object.kind(), namespace, name), object)
        })
        .collect()
}

/// The objects status is written on, as the stores hold them now.
#[derive(Clone, Debug, Default)]
pub struct Reported {
    /// Routes.
    pub routes: Vec<Arc<StoredRoute>>,
    /// Plugins.
    pub plugins: Vec<Arc<Plugin>>,
    /// Ingresses.
    pub ingresses: Vec<Arc<Ingress>>,
    /// GatewayClasses.
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: Vec<Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: Vec<Arc<HTTPRoute>>,
}

impl StatusWriter {
    /// A writer using `client` within `limits`; Events name `instance` as the reporting
    /// instance. Starts its task.
    pub fn new(client: Client, instance: &str, metrics: Metrics, limits: StatusLimits) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(instance.into()),
            },
        );
        let shared = Arc::new(Shared {
            book: Mutex::new(Book::default()),
            queued: Notify::new(),
            outstanding: watch::Sender::new(0),
        });
        let load_balancers =
            LoadBalancerWriter::new(client.clone(), metrics.clone(), limits.concurrency);
        let task = tokio::spawn(sender::run(
            shared.clone(),
            client,
            recorder.clone(),
            metrics.clone(),
            limits,
        ));
        Self {
            shared,
            recorder,
            metrics,
            load_balancers,
            task,
        }
    }

    /// Forgets what was decided and written, dropping queued writes: leadership was
    /// regained (another replica may have written since) or lost (this one must stop).
    pub fn forget(&self) {
        let mut book = self.shared.book();
        book.forget();
        self.shared.count(&book);
        self.load_balancers.forget();
    }

    /// Writes `addresses` into the `status.loadBalancer` of every reported Ingress of
    /// `ingresses` that shows others; returns how many writes started.
    pub fn publish_addresses(
        &self,
        ingresses: &[Arc<Ingress>],
        reports: &[ObjectReport],
        addresses: &[k8s_openapi::api::networking::v1::IngressLoadBalancerIngress],
    ) -> usize {
        self.load_balancers.update(ingresses, reports, addresses)
    }

    /// Decides the status of every reported object (served as it is now since the
    /// snapshot `since` names), as stored now in `world`, and queues the writes of those
    /// that changed. `gateway_api` holds what a Gateway API object's status needs besides
    /// its report, and what the proxies acknowledged.
    pub fn update(
        &self,
        world: &Reported,
        reports: &[ObjectReport],
        since: impl Fn(&ObjectRef) -> u64,
        gateway_api: &GatewayApiInputs<'_>,
    ) -> Written {
        let mut written = Written::default();
        let now = now();
        let index = index(world);
        let mut book = self.shared.book();
        for report in reports {
            let object = &report.object;
            let key = (object.kind, object.namespace.as_str(), object.name.as_str());
            let Some(&found) = index.get(&key) else {
                continue;
            };
            let meta = found.meta();
            let queued = if let Object::GatewayApi(stored) = found {
                let built = stored.build(report, since(object), gateway_api, &now);
                let stored = StoredStatus {
                    uid: meta.uid.as_deref(),
                    resource_version: meta.resource_version.as_deref(),
                    status: stored.shown(),
                };
                book.decide_status(object, stored, built, || found.reference())
            } else {
                let desired = desired_conditions(report, since(object), gateway_api.acks);
                let (conditions, generation) = found.status();
                let stored = Stored {
                    uid: meta.uid.as_deref(),
                    conditions,
                    generation,
                };
                book.decide(
                    object,
                    stored,
                    report.generation,
                    &desired,
                    || found.reference(),
                    &now,
                )
            };
            if queued {
                written.queued += 1;
            } else {
                written.unchanged += 1;
            }
        }
        let live: HashSet<&ObjectRef> = reports.iter().map(|r| &r.object).collect();
        book.retain(&live);
        self.shared.count(&book);
        drop(book);
        if written.queued > 0 {
            self.shared.queued.notify_one();
        }
        written
    }

    /// Writes queued or in flight.
    pub fn outstanding(&self) -> usize {
        *self.shared.outstanding.borrow()
    }

    /// Waits until every queued write was sent (tests, and measuring).
    pub async fn idle(&self) {
        let mut outstanding = self.shared.outstanding.subscribe();
        let _ = outstanding.wait_for(|n| *n == 0).await;
    }

    /// Announces with a Normal Event on `regarding` (the proxy admin Service) that
    /// snapshot `version` is served by every proxy: the one place the version of the
    /// served snapshot is written to the API, once per snapshot instead of on every
    /// object. Runs in the background.
    pub fn announce_applied(&self, regarding: ObjectReference, version: u64, note: String) {
        let recorder = self.recorder.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let event = Event {
                type_: EventType::Normal,
                reason: "SnapshotApplied".into(),
                note: Some(truncate_note(&note)),
                action: format!("Apply snapshot {version}"),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &regarding).await {
                metrics.error("event");
                tracing::warn!(error = %e, "publishing an event failed");
            }
        });
    }
}

/// Event notes are limited to 1 KiB.
fn truncate_note(note: &str) -> String {
    const MAX: usize = 1000;
    if note.len() <= MAX {
        return note.to_owned();
    }
    let mut end = MAX - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

//! The reconciler: on a change, build the snapshot, push it to every proxy that does not
//! serve it yet, and bring status up to date. Only the leader runs it; [`run`] is the
//! loop that debounces changes and follows leadership.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use weir_crds::admin::admin_endpoints;
use weir_crds::compile::gateway_api::GatewayApiFacts;
use weir_crds::compile::report::ObjectReport;

use crate::build::{BuildThread, Builder};
use crate::config::ProxyConfig;
use crate::metrics::Metrics;
use crate::push::{Fleet, PushBody, Pusher, highest_version, push_all};
use crate::status::{
    GatewayApiInputs, Publish, Reported, StatusWriter, Written, gateway_addresses, published,
};
use crate::watch::Change;
use crate::world::Stores;

/// First pause before pushing again to proxies that lag.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Longest pause between retries.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Rounds of pushes when proxies answer that they serve a newer version.
const RENUMBER_ROUNDS: usize = 3;

/// What one reconcile did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Version of the current snapshot.
    pub version: u64,
    /// Endpoints pushed to.
    pub pushed: Vec<String>,
    /// Proxy endpoints serving the current snapshot, of all.
    pub in_sync: (usize, usize),
    /// Status decisions (the writes run in the background).
    pub status: Written,
}

/// The operator's state between reconciles.
pub struct Reconciler {
    stores: Stores,
    builder: Builder,
    build_thread: BuildThread,
    fleet: Fleet,
    pusher: Pusher,
    status: StatusWriter,
    metrics: Metrics,
    port_name: Option<String>,
    admin_service: ObjectReference,
    reports: Vec<ObjectReport>,
    gateway_api: GatewayApiFacts,
    announced: Option<u64>,
    body: Option<(u64, String, PushBody)>,
    publish: Publish,
}

impl Reconciler {
    /// A reconciler reading `stores`, compiling with `options`, pushing with `pusher` to
    /// the admin endpoints of `proxies`, writing status with `status`.
    pub fn new(
        stores: Stores,
        options: weir_crds::Options,
        pusher: Pusher,
        status: StatusWriter,
        metrics: Metrics,
        proxies: &ProxyConfig,
    ) -> Self {
        Self {
            stores,
            builder: Builder::new(options),
            build_thread: BuildThread::spawn(),
            fleet: Fleet::default(),
            pusher,
            status,
            metrics,
            port_name: proxies.port_name.clone(),
            admin_service: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(proxies.namespace.clone()),
                name: Some(proxies.service.clone()),
                ..ObjectReference::default()
            },
            reports: Vec::new(),
            gateway_api: GatewayApiFacts::default(),
            announced: None,
            body: None,
            publish: Publish::Nothing,
        }
    }

    /// Publishes `publish`'s addresses in the status of the Ingresses and Gateways served.
    pub fn publishing(mut self, publish: Publish) -> Self {
        self.publish = publish;
        self
    }

    /// The status writer (to wait for its writes).
    pub fn status(&self) -> &StatusWriter {
        &self.status
    }

    /// What each proxy endpoint acknowledged.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The current snapshot's version, if one was built.
    pub fn version(&self) -> Option<u64> {
        self.builder.current().map(|s| s.version)
    }

    fn refresh_endpoints(&mut self) -> bool {
        let slices = self.stores.proxy_slices();
        let slices: Vec<_> = slices.iter().map(|s| &**s).collect();
        let endpoints = admin_endpoints(&slices, self.port_name.as_deref());
        self.fleet.set_endpoints(&endpoints)
    }

    /// Takes over as leader: numbers snapshots above every version a proxy serves, then
    /// reconciles. Status is rewritten from what the stores say, since another replica
    /// may have written it meanwhile.
    pub async fn lead(&mut self) -> Outcome {
        self.status.forget();
        self.announced = None;
        self.refresh_endpoints();
        let highest = highest_version(&self.pusher, &self.fleet.endpoints()).await;
        self.builder.number_above(highest);
        self.reconcile().await
    }

    /// Objects changed: builds, pushes and writes status.
    pub async fn reconcile(&mut self) -> Outcome {
        self.refresh_endpoints();
        // The last build's reports go first, and the objects are read only for the build:
        // held past it, they would keep the versions the stores replace meanwhile (every
        // status write replaces its object), each object twice at 10,000 Routes.
        self.reports = Vec::new();
        let world = self.stores.world();
        let (routes, plugins) = (world.routes.len(), world.plugins.len());
        let builder = std::mem::take(&mut self.builder);
        let (builder, build) = self.build_thread.build(builder, world).await;
        self.builder = builder;
        let version = build.version;
        tracing::info!(
            version,
            changed = build.changed,
            took_ms = build.duration.as_millis() as u64,
            routes,
            plugins,
            "snapshot built"
        );
        self.metrics.reconciled(build.duration, version);
        self.reports = build.reports;
        self.gateway_api = build.gateway_api;
        self.sync().await
    }

    /// The proxy endpoints changed: pushes the current snapshot to new ones at once.
    pub async fn proxies_changed(&mut self) -> Outcome {
        if self.builder.current().is_none() {
            return self.reconcile().await;
        }
        self.refresh_endpoints();
        self.sync().await
    }

    /// Leadership was lost: queued status writes are dropped.
    pub fn follow(&mut self) {
        self.status.forget();
    }

    /// Whether some proxy lags.
    pub fn needs_retry(&self) -> bool {
        self.builder
            .current()
            .is_some_and(|s| !self.fleet.lagging(s.version, &s.hash).is_empty())
    }

    /// The push body of the current snapshot (none before the first build), made once per
    /// version and hash and kept for the pushes after.
    fn body(&mut self) -> Option<PushBody> {
        let snapshot = self.builder.current()?;
        let (version, hash) = (snapshot.version, &snapshot.hash);
        match &self.body {
            Some((v, h, body)) if *v == version && h == hash => Some(body.clone()),
            _ => {
                let body = PushBody::new(snapshot);
                self.body = Some((version, hash.clone(), body.clone()));
                Some(body)
            }
        }
    }

    /// Pushes the current snapshot to every proxy that lags, then writes status.
    pub async fn sync(&mut self) -> Outcome {
        let mut pushed = Vec::new();
        for _ in 0..RENUMBER_ROUNDS {
            let Some(snapshot) = self.builder.current() else {
                break;
            };
            let lagging = self.fleet.lagging(snapshot.version, &snapshot.hash);
            if lagging.is_empty() {
                break;
            }
            let Some(body) = self.body() else {
                break;
            };
            let metrics = self.metrics.clone();
            let round = push_all(&self.pusher, &lagging, &body, |took, ok| {
                metrics.pushed(took, ok)
            })
            .await;
            for (endpoint, outcome) in &round.outcomes {
                self.fleet.record(endpoint, outcome);
            }
            pushed.extend(lagging);
            match round.stale_above() {
                Some(current) if self.builder.number_above(current) => {
                    tracing::info!(current, "a proxy serves a newer version: renumbering");
                }
                _ => break,
            }
        }
        let Some(snapshot) = self.builder.current() else {
            return Outcome::default();
        };
        let (version, hash) = (snapshot.version, snapshot.hash.clone());
        let in_sync = self.fleet.in_sync(version, &hash);
        let total = self.fleet.len();
        self.metrics.proxies(total, in_sync);
        if in_sync == total && total > 0 && self.announced != Some(version) {
            self.announced = Some(version);
            self.metrics.applied(version);
            tracing::info!(version, proxies = total, "snapshot applied on every proxy");
            self.status.announce_applied(
                self.admin_service.clone(),
                version,
                format!("snapshot {version} ({hash}) applied on {total}/{total} proxies"),
            );
        }
        let builder = &self.builder;
        let reported = Reported {
            routes: self.stores.routes(),
            plugins: self.stores.plugins(),
            ingresses: self.stores.ingresses(),
            gateway_classes: self.stores.gateway_classes(),
            gateways: self.stores.gateways(),
            http_routes: self.stores.http_routes(),
        };
        let service = self.stores.publish_service();
        let published = published(&self.publish, service.as_deref());
        let gateway_addresses = gateway_addresses(published.as_deref().unwrap_or_default());
        let status = self.status.update(
            &reported,
            &self.reports,
            |object| builder.served_since(object),
            &GatewayApiInputs {
                facts: &self.gateway_api,
                addresses: &gateway_addresses,
                acks: &self.fleet.acks(),
            },
        );
        if let Some(addresses) = published {
            self.status
                .publish_addresses(&reported.ingresses, &self.reports, &addresses);
        }
        Outcome {
            version,
            pushed,
            in_sync: (in_sync, total),
            status,
        }
    }
}

/// Runs the reconciler until `shutdown` flips: waits for the stores to sync, follows
/// leadership from `leading`, collects changes for `debounce` so a burst gives one
/// build, and retries with backoff while proxies lag.
pub async fn run(
    mut reconciler: Reconciler,
    mut changes: mpsc::UnboundedReceiver<Change>,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    debounce: Duration,
) {
    let stores = reconciler.stores.clone();
    tokio::select! {
        () = stores.wait_until_ready() => {}
        () = crate::stopped(&mut shutdown) => return,
    }
    reconciler.metrics.set_ready(true);
    tracing::info!("watches synced");
    let mut leader = false;
    let mut retry_at: Option<Instant> = None;
    let mut retry_delay = FIRST_RETRY;
    // Check leadership once now: it may have been won before the stores synced.
    let mut check_leader = true;
    loop {
        if check_leader {
            check_leader = false;
            let now_leading = *leading.borrow_and_update();
            if now_leading && !leader {
                leader = true;
                reconciler.lead().await;
            } else if !now_leading && leader {
                leader = false;
                reconciler.follow();
            }
        } else {
            tokio::select! {
                () = crate::stopped(&mut shutdown) => break,
                changed = leading.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    check_leader = true;
                    continue;
                }
                change = changes.recv() => {
                    let Some(change) = change else { break };
                    let mut objects = change == Change::Objects;
                    if objects {
                        tokio::time::sleep(debounce).await;
                    }
                    while let Ok(more) = changes.try_recv() {
                        objects |= more == Change::Objects;
                    }
                    if !leader {
                        continue;
                    }
                    if objects {
                        reconciler.reconcile().await;
                    } else {
                        reconciler.proxies_changed().await;
                    }
                }
                () = async {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if leader => {
                    retry_at = None;
                    retry_delay = (retry_delay * 2).min(MAX_RETRY);
                    reconciler.proxies_changed().await;
                }
            }
        }
        if leader && reconciler.needs_retry() {
            retry_at.get_or_insert_with(|| Instant::now() + retry_delay);
        } else {
            retry_at = None;
            retry_delay = FIRST_RETRY;
        }
    }
}

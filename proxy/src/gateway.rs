//! The gateway: what every connection of a running proxy shares. It holds the current
//! snapshot behind an atomic pointer: applying a snapshot swaps it whole, and requests in
//! flight keep the one they started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use thiserror::Error;
use weir_crds::snapshot::{SNAPSHOT_FORMAT, Snapshot};
use weir_plugin_runtime::PluginRuntime;

use crate::admission::Admission;
use crate::config::ProxyConfig;
use crate::loaded::{LiveState, LoadedSnapshot, plugin_load_failure};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::client::UpstreamClients;
use weir_crds::admin::Applied;

/// Why a snapshot was refused; the current one keeps serving.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Not a snapshot this proxy can read, or its hash does not match its content.
    #[error("{0}")]
    Invalid(String),
    /// Older than (or conflicting with) the snapshot being served.
    #[error("snapshot version {offered} is not newer than the current version {current}")]
    Stale {
        /// Version offered.
        offered: u64,
        /// Version served.
        current: u64,
    },
}

/// The shared state of a running proxy.
pub struct Gateway {
    /// Startup configuration.
    pub config: ProxyConfig,
    /// Metric families.
    pub metrics: Metrics,
    /// Metric handles of requests that matched no route.
    pub unrouted: RouteMetrics,
    /// Everything registered for `/metrics`.
    pub registry: Registry,
    /// The ways of connecting to upstreams; each shard has its own clients for them.
    pub clients: UpstreamClients,
    /// The plugin runtime: loads plugin versions into every shard's isolates.
    pub plugins: PluginRuntime,
    /// Client connections counted against the connection limits.
    pub admission: Arc<Admission>,
    current: Arc<ArcSwap<LoadedSnapshot>>,
    ready: AtomicBool,
    live: LiveState,
    apply_lock: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// A gateway serving the empty snapshot, not ready; shards attach to its plugin
    /// runtime as they start.
    pub fn new(
        config: ProxyConfig,
        mut registry: Registry,
        clients: UpstreamClients,
    ) -> Result<Self, weir_plugin_runtime::StartError> {
        let metrics = Metrics::register(&mut registry);
        let plugins = PluginRuntime::start(&config.plugins, &mut registry)?;
        Ok(Self {
            admission: Arc::new(Admission::new(&config.limits)),
            config,
            unrouted: metrics.route(crate::metrics::NO_ROUTE),
            metrics,
            registry,
            clients,
            plugins,
            current: Arc::new(ArcSwap::from_pointee(LoadedSnapshot::empty())),
            ready: AtomicBool::new(false),
            live: LiveState::default(),
            apply_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The snapshot being served.
    pub fn current(&self) -> Arc<LoadedSnapshot> {
        self.current.load_full()
    }

    /// The shared pointer to the snapshot being served (for the TLS certificate resolver).
    pub fn current_handle(&self) -> Arc<ArcSwap<LoadedSnapshot>> {
        self.current.clone()
    }

    /// Whether a snapshot has been applied.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Checks, loads (plugins included) and swaps in a snapshot pushed by the operator.
    pub async fn apply(&self, snapshot: &Snapshot) -> Result<Applied, ApplyError> {
        let _serialized = self.apply_lock.lock().await;
        let result = self.apply_locked(snapshot, true).await;
        self.metrics.snapshot_load(result.is_ok());
        result
    }

    /// Loads and swaps in a snapshot compiled locally (standalone mode), whose version the
    /// proxy itself numbers.
    pub async fn apply_local(&self, snapshot: &Snapshot) -> Applied {
        let _serialized = self.apply_lock.lock().await;
        let current = self.current.load_full();
        if self.is_ready() && current.hash == snapshot.hash {
            return Applied {
                version: current.version,
                hash: current.hash.clone(),
                failures: Vec::new(),
            };
        }
        let applied = self.swap(snapshot).await;
        self.metrics.snapshot_load(true);
        applied
    }

    async fn apply_locked(
        &self,
        snapshot: &Snapshot,
        check_version: bool,
    ) -> Result<Applied, ApplyError> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(ApplyError::Invalid(format!(
                "snapshot format {} is not supported (this proxy reads format {SNAPSHOT_FORMAT})",
                snapshot.format
            )));
        }
        if !snapshot.hash_is_valid() {
            return Err(ApplyError::Invalid(
                "the hash does not match the content".into(),
            ));
        }
        let current = self.current.load_full();
        if check_version && self.is_ready() {
            if snapshot.version == current.version && snapshot.hash == current.hash {
                return Ok(Applied {
                    version: current.version,
                    hash: current.hash.clone(),
                    failures: Vec::new(),
                });
            }
            if snapshot.version <= current.version {
                return Err(ApplyError::Stale {
                    offered: snapshot.version,
                    current: current.version,
                });
            }
        }
        Ok(self.swap(snapshot).await)
    }

    async fn swap(&self, snapshot: &Snapshot) -> Applied {
        // New plugin versions load beside the old ones; chains built from this set keep
        // their versions for as long as a request holds them.
        let plugins = self.plugins.load(&snapshot.plugins).await;
        let (loaded, mut failures) = LoadedSnapshot::load(
            snapshot,
            &plugins.set,
            &self.live,
            &self.metrics,
            &self.clients,
        );
        failures.extend(plugins.failures.iter().map(plugin_load_failure));
        self.current.store(Arc::new(loaded));
        self.ready.store(true, Ordering::Release);
        self.live.prune();
        self.metrics
            .snapshot_version
            .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
        for failure in &failures {
            tracing::warn!(
                kind = failure.kind,
                namespace = %failure.namespace,
                name = %failure.name,
                version = snapshot.version,
                "left out of the snapshot: {}",
                failure.message
            );
        }
        tracing::info!(version = snapshot.version, hash = %snapshot.hash, "snapshot applied");
        Applied {
            version: snapshot.version,
            hash: snapshot.hash.clone(),
            failures,
        }
    }
}

//! The API the proxy calls: start once, attach each shard, load each snapshot's plugins
//! (into every shard's isolates). Requests run their hooks through their shard's
//! [`ShardPlugins`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::Mutex;
use weir_crds::snapshot::PluginBundle;

use crate::clock::Clock;
use crate::config::RuntimeConfig;
use crate::engine::{HostOps, PluginCode};
use crate::forward_allow::ForwardAllowList;
use crate::metrics::Metrics;
use crate::plugin_set::{LoadFailure, Loaded, PluginEntry, PluginSet, PluginVersion, next_id};
use crate::quickjs::QuickJs;
use crate::services::Services;
use crate::services::cache::Cache;
use crate::services::fetch::Fetcher;
use crate::shard::{ShardPlugins, Shards, Shared};

/// Why the runtime could not start: a config field the proxy must report.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `cache.redisUrl` is not a Redis URL.
    #[error("cache.redisUrl: {0}")]
    RedisUrl(#[from] redis::RedisError),
    /// `fetch` is misconfigured (e.g. an invalid CIDR in `allowNetworks`).
    #[error("{0}")]
    Fetch(String),
    /// A forward allow-list prefix is not an http(s) URL.
    #[error("{0}")]
    ForwardAllowList(String),
}

/// The plugin runtime of one proxy process: what every shard shares, and the loading of
/// plugin versions into every shard. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<Shared>,
    shards: Arc<Shards>,
    /// The last loaded set: versions are reused from it, and failed plugins fall back to it.
    current: Arc<Mutex<Arc<PluginSet>>>,
    /// What a plugin may ask for.
    limits: PluginLimits,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Sets up the host services; the metrics go into `registry`. No isolate exists until
    /// a shard attaches ([`PluginRuntime::attach`]).
    pub fn start(config: &RuntimeConfig, registry: &mut Registry) -> Result<Self, StartError> {
        let cache = Cache::new(&config.cache, Clock::System)?;
        let fetcher = Fetcher::new(&config.fetch).map_err(StartError::Fetch)?;
        let services = Services::new(cache, Arc::new(fetcher), config.body_limit_bytes);
        Self::with_services(config, registry, services, Clock::System)
    }

    /// [`PluginRuntime::start`] with the given host services and clock (plugin tests stub
    /// them).
    pub(crate) fn with_services(
        config: &RuntimeConfig,
        registry: &mut Registry,
        services: Services,
        clock: Clock,
    ) -> Result<Self, StartError> {
        let host: Arc<dyn HostOps + Send + Sync> = Arc::new(services);
        let metrics = Arc::new(Metrics::register(registry));
        let shared = Arc::new(Shared {
            engine: Arc::new(QuickJs { clock }),
            host,
            metrics: metrics.clone(),
            forward_allow_list: ForwardAllowList::new(&config.forward_allow_list)
                .map_err(StartError::ForwardAllowList)?,
            cpu_budget: Duration::from_millis(config.cpu_budget_ms.max(1)),
        });
        Ok(Self {
            shared,
            shards: Arc::new(Shards::default()),
            current: Arc::new(Mutex::new(Arc::new(PluginSet::new(metrics)))),
            limits: PluginLimits::new(config),
        })
    }

    /// Makes the calling thread a shard with isolates of its own: every version loaded
    /// from now on is loaded there too, and versions loaded before are instantiated there
    /// on first use. Call it on the shard's thread, within its `tokio::task::LocalSet`.
    pub fn attach(&self) -> ShardPlugins {
        self.shards.attach(self.shared.clone())
    }

    /// Loads a snapshot's plugins: code whose hash (and memory limit) is unchanged reuses
    /// the loaded version; new code is loaded in every isolate thread beside the old and
    /// its `onLoad` run. A plugin that fails keeps its previous version when there is one.
    pub async fn load(&self, plugins: &BTreeMap<String, PluginBundle>) -> Loaded {
        let mut current = self.current.lock().await;
        let mut set = PluginSet::new(self.shared.metrics.clone());
        let mut failures = Vec::new();
        for (id, bundle) in plugins {
            let previous = current.plugins.get(id);
            let memory_limit = bundle.memory_limit_mib as usize * 1024 * 1024;
            let timeout = Duration::from_millis(u64::from(bundle.timeout_ms.max(1)));
            let reusable = previous
                .and_then(|entry| entry.version.clone())
                .filter(|version| version.serves(&bundle.code_hash, memory_limit));
            let loaded = match (reusable, self.limits.refusal(bundle)) {
                (_, Some(refusal)) => Err(refusal),
                (Some(version), None) => Ok(version),
                (None, None) => {
                    let code = PluginCode {
                        plugin: Arc::from(id.as_str()),
                        code: bundle.code.clone(),
                        modules: Arc::new(bundle.modules.clone()),
                        memory_limit,
                        load_timeout: self.limits.load_timeout(timeout),
                        config_json: Arc::from(bundle.config.to_string()),
                    };
                    let code = Arc::new(code);
                    let version_id = next_id();
                    match self.shards.load(version_id, &code).await {
                        Ok(hooks) => Ok(Arc::new(PluginVersion::new(
                            version_id,
                            code,
                            bundle.code_hash.clone(),
                            hooks,
                            self.shards.clone(),
                        ))),
                        Err(message) => {
                            // Shards where it did load drop it again.
                            self.shards.unload(version_id, &code);
                            Err(message)
                        }
                    }
                }
            };
            let version = match loaded {
                Ok(version) => Some(version),
                Err(message) => {
                    let kept = previous.and_then(|entry| entry.version.clone());
                    tracing::warn!(plugin = %id, %message, kept_previous = kept.is_some(), "plugin did not load");
                    failures.push(LoadFailure {
                        plugin: id.clone(),
                        namespace: bundle.namespace.clone(),
                        name: bundle.name.clone(),
                        message,
                        kept_previous: kept.is_some(),
                    });
                    kept
                }
            };
            set.plugins.insert(
                id.clone(),
                PluginEntry {
                    version,
                    timeout,
                    failure_policy: bundle.failure_policy,
                },
            );
        }
        let set = Arc::new(set);
        *current = set.clone();
        Loaded { set, failures }
    }
}

/// The proxy-wide maxima every tenant's plugins are held to.
#[derive(Debug, Clone, Copy)]
struct PluginLimits {
    max_timeout_ms: u32,
    max_memory_limit_mib: u32,
    max_load: Duration,
}

impl PluginLimits {
    fn new(config: &RuntimeConfig) -> Self {
        Self {
            max_timeout_ms: config.max_timeout_ms,
            max_memory_limit_mib: config.max_memory_limit_mib,
            max_load: Duration::from_millis(config.max_load_ms.max(1)),
        }
    }

    /// Why a plugin asking for these limits is not loaded, if it asks too much.
    fn refusal(&self, bundle: &PluginBundle) -> Option<String> {
        if bundle.timeout_ms > self.max_timeout_ms {
            return Some(format!(
                "timeoutMs {} is above this proxy's maximum of {} (--plugin-max-timeout)",
                bundle.timeout_ms, self.max_timeout_ms
            ));
        }
        if bundle.memory_limit_mib > self.max_memory_limit_mib {
            return Some(format!(
                "memoryLimitMiB {} is above this proxy's maximum of {} (--plugin-max-memory-mib)",
                bundle.memory_limit_mib, self.max_memory_limit_mib
            ));
        }
        None
    }

    /// Time for evaluating a module and its `onLoad`: ten hook budgets, at least a second
    /// (so a large plugin still loads on a busy machine), at most the maximum.
    fn load_timeout(&self, hook_timeout: Duration) -> Duration {
        (hook_timeout * 10)
            .max(Duration::from_secs(1))
            .min(self.max_load)
    }
}

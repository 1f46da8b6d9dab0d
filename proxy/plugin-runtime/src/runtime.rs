//! The API the proxy calls: start once, load each snapshot's plugins, and run a request's
//! `beforeRequest` and `afterResponse` hooks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, oneshot};
use weir_crds::snapshot::PluginBundle;

use crate::config::RuntimeConfig;
use crate::engine::{HostOps, PluginCode};
use crate::metrics::Metrics;
use crate::outcome::{AfterResponse, BeforeRequest, Carry, FailureKind, Hook, PluginFailure};
use crate::patch::{RequestPatch, ResponsePatch};
use crate::plugin_set::{
    Chain, LoadFailure, Loaded, PluginEntry, PluginSet, PluginVersion, next_id,
};
use crate::pool::{Job, Pool, Shared};
use crate::quickjs::QuickJs;
use crate::request::{RequestInfo, RequestScope, ResponseInfo};
use crate::services::Services;
use crate::services::cache::Cache;
use crate::services::fetch::Fetcher;

/// Why the runtime could not start: a config field the proxy must report.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `cache.redisUrl` is not a Redis URL.
    #[error("cache.redisUrl: {0}")]
    RedisUrl(#[from] redis::RedisError),
    /// `fetch` is misconfigured (e.g. an invalid CIDR in `allowNetworks`).
    #[error("{0}")]
    Fetch(String),
    /// The isolate threads could not be started.
    #[error("starting isolate threads: {0}")]
    Threads(#[from] std::io::Error),
}

/// The plugin runtime of one proxy process. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    pool: Arc<Pool>,
    /// The last loaded set: versions are reused from it, and failed plugins fall back to it.
    current: Arc<Mutex<Arc<PluginSet>>>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Starts the isolate threads and host services. `handle` is the proxy's tokio runtime,
    /// where host services (cache, fetch, body reads) run; the metrics go into `registry`.
    pub fn start(
        config: &RuntimeConfig,
        registry: &mut Registry,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, StartError> {
        let cache = Cache::new(&config.cache)?;
        let fetcher = Fetcher::new(&config.fetch).map_err(StartError::Fetch)?;
        let host: Arc<dyn HostOps> = Arc::new(Services::new(
            handle,
            cache,
            fetcher,
            config.body_limit_bytes,
        ));
        Self::with_host(config, registry, host)
    }

    /// Starts the runtime with other host services (the plugin test harness adds its own).
    pub(crate) fn with_host(
        config: &RuntimeConfig,
        registry: &mut Registry,
        host: Arc<dyn HostOps>,
    ) -> Result<Self, StartError> {
        let threads = match config.isolate_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let shared = Arc::new(Shared {
            engine: Arc::new(QuickJs),
            host,
            metrics: Arc::new(Metrics::register(registry)),
            forward_allow_list: config.forward_allow_list.clone(),
        });
        Ok(Self {
            pool: Arc::new(Pool::start(threads, shared)?),
            current: Arc::new(Mutex::new(Arc::new(PluginSet::default()))),
        })
    }

    /// Loads a snapshot's plugins: code whose hash (and memory limit) is unchanged reuses
    /// the loaded version; new code is loaded in every isolate thread beside the old and
    /// its `onLoad` run. A plugin that fails keeps its previous version when there is one.
    pub async fn load(&self, plugins: &BTreeMap<String, PluginBundle>) -> Loaded {
        let mut current = self.current.lock().await;
        let mut set = PluginSet::default();
        let mut failures = Vec::new();
        for (id, bundle) in plugins {
            let previous = current.plugins.get(id);
            let memory_limit = bundle.memory_limit_mib as usize * 1024 * 1024;
            let timeout = Duration::from_millis(u64::from(bundle.timeout_ms.max(1)));
            let reusable = previous
                .and_then(|entry| entry.version.clone())
                .filter(|version| version.serves(&bundle.code_hash, memory_limit));
            let version = match reusable {
                Some(version) => Some(version),
                None => {
                    let code = PluginCode {
                        plugin: Arc::from(id.as_str()),
                        code: bundle.code.clone(),
                        memory_limit,
                        load_timeout: load_timeout(timeout),
                        config_json: Arc::from(bundle.config.to_string()),
                    };
                    let code = Arc::new(code);
                    let version_id = next_id();
                    match self.pool.load(version_id, &code).await {
                        Ok(hooks) => Some(Arc::new(PluginVersion::new(
                            version_id,
                            code,
                            bundle.code_hash.clone(),
                            hooks,
                            self.pool.clone(),
                        ))),
                        Err(message) => {
                            // Threads where it did load drop it again.
                            self.pool.unload(version_id);
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
                    }
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

    /// Runs the chain's `beforeRequest` hooks in order. Keep the [`Carry`] for
    /// [`PluginRuntime::after_response`], whatever the outcome.
    pub async fn before_request(
        &self,
        chain: &Arc<Chain>,
        request: RequestInfo,
    ) -> (BeforeRequest, Carry) {
        let request = Arc::new(RequestScope::new(request));
        if !chain
            .links
            .iter()
            .any(|link| link.runs(Hook::BeforeRequest))
        {
            let mut carry = Carry::empty(request);
            carry.ran = (0..chain.links.len()).collect();
            return (BeforeRequest::Continue(RequestPatch::default()), carry);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Before {
            chain: chain.clone(),
            request: request.clone(),
            reply,
        };
        match self.dispatch(job, answer).await {
            Some(outcome) => outcome,
            None => (
                BeforeRequest::Failed(stopped(chain, Hook::BeforeRequest)),
                Carry::empty(request),
            ),
        }
    }

    /// Runs `afterResponse` of the plugins that took part in `beforeRequest` (see
    /// [`Carry`]), in chain order, on the response about to be sent.
    pub async fn after_response(
        &self,
        chain: &Arc<Chain>,
        carry: Carry,
        response: ResponseInfo,
    ) -> AfterResponse {
        let runs = |index: &usize| {
            chain
                .links
                .get(*index)
                .is_some_and(|link| link.runs(Hook::AfterResponse))
        };
        if !carry.ran.iter().any(runs) {
            return AfterResponse::Continue(ResponsePatch::default());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::After {
            chain: chain.clone(),
            carry,
            response,
            reply,
        };
        self.dispatch(job, answer)
            .await
            .unwrap_or_else(|| AfterResponse::Failed(stopped(chain, Hook::AfterResponse)))
    }

    async fn dispatch<T>(&self, job: Job, answer: oneshot::Receiver<T>) -> Option<T> {
        if !self.pool.dispatch(job) {
            return None;
        }
        answer.await.ok()
    }
}

/// Time for evaluating a module and its `onLoad`: ten hook budgets, at least a second, so
/// a large plugin still loads on a busy machine.
fn load_timeout(hook_timeout: Duration) -> Duration {
    (hook_timeout * 10).max(Duration::from_secs(1))
}

impl Carry {
    fn empty(request: Arc<RequestScope>) -> Self {
        Self {
            request,
            state: None,
            user: None,
            ran: Vec::new(),
        }
    }
}

/// The failure reported when an isolate thread is gone (it cannot be in practice: no
/// plugin code runs outside QuickJS's guards).
fn stopped(chain: &Chain, hook: Hook) -> PluginFailure {
    PluginFailure {
        plugin: chain
            .links
            .first()
            .map_or_else(String::new, |link| link.plugin.to_string()),
        hook,
        kind: FailureKind::Exception,
        detail: "the isolate thread stopped".into(),
    }
}

//! A snapshot made ready to serve: routes compiled into a router, backends with live
//! state, certificates parsed. Loading never fails as a whole: what cannot be loaded is
//! left out and named, like the compiler does (partial config).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::Semaphore;
use weir_crds::snapshot::{Action, Cors, Forward, RedirectAction, Respond, Snapshot};
use weir_plugin_runtime::{Chain, PluginSet};

use crate::certs::CertStore;
use crate::metrics::{Metrics, RouteMetrics};
use crate::router::Router;
use crate::upstream::client::{Connector, UpstreamClients};
use crate::upstream::endpoint::EndpointState;
use crate::upstream::retry::RetryBudget;
use crate::upstream::{LoadedBackend, Persisted};
use weir_crds::admin::LoadFailure;
use weir_crds::compile::report::ObjectKind;
use weir_crds::snapshot::Endpoint;

/// The report of a plugin the runtime could not load (its module did not evaluate, or
/// `onLoad` threw or overran), as the admin API answers it.
pub fn plugin_load_failure(failure: &weir_plugin_runtime::LoadFailure) -> LoadFailure {
    let message = if failure.kept_previous {
        format!("{}; the previous version keeps serving", failure.message)
    } else {
        failure.message.clone()
    };
    LoadFailure::new(
        ObjectKind::Plugin,
        &failure.namespace,
        &failure.name,
        message,
    )
}

/// State that outlives snapshots.
#[derive(Default)]
pub struct LiveState {
    endpoints: Persisted<(String, Endpoint), EndpointState>,
    limiters: Persisted<(String, String, u32), Semaphore>,
    budgets: Persisted<String, RetryBudget>,
}

impl LiveState {
    /// Forgets state no snapshot holds.
    pub fn prune(&self) {
        self.endpoints.prune();
        self.limiters.prune();
        self.budgets.prune();
    }
}

/// A snapshot ready to serve.
pub struct LoadedSnapshot {
    /// Its version.
    pub version: u64,
    /// Its content hash.
    pub hash: String,
    /// Its routes.
    pub router: Router<LoadedRule>,
    /// Its certificates, by host.
    pub certificates: CertStore,
}

/// A rule ready to serve.
pub struct LoadedRule {
    /// Rule id.
    pub id: String,
    /// `namespace/name` of the Route.
    pub route: String,
    /// The Route's metric handles.
    pub metrics: RouteMetrics,
    /// What to do.
    pub action: LoadedAction,
    /// CORS policy.
    pub cors: Option<Arc<Cors>>,
    /// Plugins to run, in order, resolved against the plugin versions of this snapshot:
    /// requests in flight keep the versions they started with.
    pub plugins: Arc<Chain>,
}

/// A rule's action, ready to serve.
pub enum LoadedAction {
    /// Proxy upstream.
    Forward(LoadedForward),
    /// Answer with a redirect.
    Redirect(RedirectAction),
    /// Answer with a fixed response.
    Respond(FixedResponse),
}

/// Forwarding, ready to serve.
pub struct LoadedForward {
    /// Backends with their weights and concurrency limiters.
    pub targets: Vec<Target>,
    /// Sum of the weights.
    pub total_weight: u64,
    /// Timeouts, retries, rewrites, balancing and outlier settings.
    pub policy: Forward,
    /// Requests and retries in flight for this rule.
    pub budget: Arc<RetryBudget>,
}

/// A backend of a rule.
pub struct Target {
    /// The backend.
    pub backend: Arc<LoadedBackend>,
    /// How this rule connects to it (protocol, connect timeout, TLS name): each shard
    /// has its own client for it.
    pub connector: Connector,
    /// Its share of requests.
    pub weight: u32,
    /// Limit of concurrent requests from this rule, if any.
    pub limiter: Option<Arc<Semaphore>>,
}

/// A prepared fixed response.
pub struct FixedResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl LoadedSnapshot {
    /// The empty snapshot a proxy starts with.
    pub fn empty() -> Self {
        let snapshot = Snapshot::empty();
        let (router, _) = Router::build(&[], |_| None);
        Self {
            version: snapshot.version,
            hash: snapshot.hash,
            router,
            certificates: CertStore::default(),
        }
    }

    /// Loads `snapshot`, reusing live state, with rule plugin chains resolved against
    /// `plugins` (the snapshot's plugins, already loaded in the runtime); returns what
    /// could not be loaded.
    pub fn load(
        snapshot: &Snapshot,
        plugins: &PluginSet,
        live: &LiveState,
        metrics: &Metrics,
        clients: &UpstreamClients,
    ) -> (Self, Vec<LoadFailure>) {
        let mut failures = Vec::new();
        let backends: HashMap<&str, Arc<LoadedBackend>> = snapshot
            .backends
            .iter()
            .map(|(id, b)| {
                (
                    id.as_str(),
                    Arc::new(LoadedBackend::load(id, b, &live.endpoints)),
                )
            })
            .collect();
        let mut route_metrics: HashMap<&str, RouteMetrics> = HashMap::new();
        let mut rules = HashMap::new();
        for (id, rule) in &snapshot.rules {
            let metrics = route_metrics
                .entry(rule.route.as_str())
                .or_insert_with(|| metrics.route(&rule.route))
                .clone();
            match load_action(id, &rule.action, &backends, live, clients) {
                Ok(action) => {
                    rules.insert(
                        id.as_str(),
                        Arc::new(LoadedRule {
                            id: id.clone(),
                            route: rule.route.clone(),
                            metrics,
                            action,
                            cors: rule.cors.clone(),
                            plugins: plugins.chain(&rule.plugins),
                        }),
                    );
                }
                Err(message) => failures.push(LoadFailure::route(
                    &rule.route,
                    format!("rule {id}: {message}"),
                )),
            }
        }
        let (router, errors) = Router::build(&snapshot.virtual_hosts, |id| rules.get(id).cloned());
        for error in errors {
            let route = snapshot
                .rules
                .get(&error.rule)
                .map_or(error.rule.as_str(), |r| r.route.as_str());
            failures.push(LoadFailure::route(route, error.to_string()));
        }
        let (certificates, certificate_failures) = CertStore::load(&snapshot.certificates);
        failures.extend(certificate_failures);
        let loaded = Self {
            version: snapshot.version,
            hash: snapshot.hash.clone(),
            router,
            certificates,
        };
        (loaded, failures)
    }
}

fn load_action(
    rule_id: &str,
    action: &Action,
    backends: &HashMap<&str, Arc<LoadedBackend>>,
    live: &LiveState,
    clients: &UpstreamClients,
) -> Result<LoadedAction, String> {
    Ok(match action {
        Action::Forward(forward) => {
            let targets = forward
                .backends
                .iter()
                .map(|weighted| {
                    let backend = backends
                        .get(weighted.backend.as_str())
                        .cloned()
                        .ok_or_else(|| {
                            format!("backend {} is not in the snapshot", weighted.backend)
                        })?;
                    let limiter = forward.max_concurrent_requests.map(|limit| {
                        live.limiters.get_or_insert(
                            (rule_id.to_owned(), weighted.backend.clone(), limit),
                            || Semaphore::new(limit as usize),
                        )
                    });
                    let connector = clients.connector(
                        backend.protocol,
                        forward.timeouts.connect_ms,
                        backend.server_name.as_deref(),
                    );
                    Ok(Target {
                        backend,
                        connector,
                        weight: weighted.weight,
                        limiter,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum();
            if total_weight == 0 {
                return Err("no backend has a positive weight".into());
            }
            LoadedAction::Forward(LoadedForward {
                targets,
                total_weight,
                policy: (**forward).clone(),
                budget: live
                    .budgets
                    .get_or_insert(rule_id.to_owned(), RetryBudget::default),
            })
        }
        Action::Redirect(redirect) => LoadedAction::Redirect((**redirect).clone()),
        Action::Respond(respond) => LoadedAction::Respond(fixed_response(respond)?),
    })
}

fn fixed_response(respond: &Respond) -> Result<FixedResponse, String> {
    let status = StatusCode::from_u16(respond.status)
        .map_err(|e| format!("status {}: {e}", respond.status))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &respond.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        headers.insert(name, value);
    }
    Ok(FixedResponse {
        status,
        headers,
        body: Bytes::from(respond.body.clone()),
    })
}

impl std::fmt::Debug for LoadedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSnapshot")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

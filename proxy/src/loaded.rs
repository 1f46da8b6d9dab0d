//! A snapshot made ready to serve: routes compiled into a router, backends with live
//! state, certificates parsed. Loading never fails as a whole: what cannot be loaded is
//! left out and named, like the compiler does (partial config).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::Semaphore;
use weir_crds::snapshot::{
    Action, ClientLimits, Cors, Forward, HttpsRedirectAction, RedirectAction, Respond, Rule,
    Snapshot,
};
use weir_plugin_runtime::{Chain, HeaderEdits, PluginSet};

use crate::certs::CertStore;
use crate::client_limits::ClientLimiter;
use crate::metrics::{Metrics, RouteMetrics};
use crate::rewrite::Rewrite;
use crate::router::Router;
use crate::source_ranges::AddressRanges;
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
    client_limits: Persisted<ClientLimits, ClientLimiter>,
}

impl LiveState {
    /// Forgets state no snapshot holds.
    pub fn prune(&self) {
        self.endpoints.prune();
        self.limiters.prune();
        self.budgets.prune();
        self.client_limits.prune();
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
    /// Redirect of plain-HTTP requests to HTTPS.
    pub https_redirect: Option<HttpsRedirectAction>,
    /// Client addresses served.
    pub source_ranges: Option<AddressRanges>,
    /// Limits per client address, shared with the Route's other rules.
    pub client_limits: Option<Arc<ClientLimiter>>,
    /// Changes to the response's headers, whatever answered.
    pub response_headers: Option<HeaderEdits>,
}

impl LoadedRule {
    /// The largest request body this rule accepts: its own limit when it forwards with
    /// one, `proxy_limit` (the proxy's `--max-body-bytes`) otherwise.
    pub fn max_body_bytes(&self, proxy_limit: u64) -> u64 {
        match &self.action {
            LoadedAction::Forward(forward) => forward.max_body_bytes(proxy_limit),
            LoadedAction::Redirect(_) | LoadedAction::Respond(_) => proxy_limit,
        }
    }
}

/// A rule's action, ready to serve.
pub enum LoadedAction {
    /// Proxy upstream. Boxed: it is much larger than the others.
    Forward(Box<LoadedForward>),
    /// Answer with a redirect.
    Redirect(LoadedRedirect),
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
    /// The path rewrite of `policy`, compiled.
    pub path_rewrite: Option<Rewrite>,
    /// Changes to the request's headers before it goes upstream (after the plugins').
    pub request_headers: Option<HeaderEdits>,
    /// Requests and retries in flight for this rule.
    pub budget: Arc<RetryBudget>,
    /// Backends that get a copy of a share of the requests.
    pub mirrors: Vec<LoadedMirror>,
}

impl LoadedForward {
    /// The largest request body: the rule's own limit, or `proxy_limit`.
    pub fn max_body_bytes(&self, proxy_limit: u64) -> u64 {
        self.policy.max_body_bytes.unwrap_or(proxy_limit)
    }
}

/// A redirect, ready to serve.
pub struct LoadedRedirect {
    /// Where to.
    pub action: RedirectAction,
    /// The path rewrite of `action`, compiled.
    pub path: Option<Rewrite>,
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

/// A mirror of a rule: a backend that gets a copy of `numerator` out of every
/// `denominator` requests.
pub struct LoadedMirror {
    /// The backend.
    pub backend: Arc<LoadedBackend>,
    /// How to connect to it, with the rule's connect timeout.
    pub connector: Connector,
    /// Requests copied out of every `denominator`.
    pub numerator: u32,
    /// Positive.
    pub denominator: u32,
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
            let loaded = load_rule(id, rule, &backends, live, clients).map(|parts| LoadedRule {
                id: id.clone(),
                route: rule.route.clone(),
                metrics,
                action: parts.action,
                cors: rule.cors.clone(),
                plugins: plugins.chain(&rule.plugins),
                https_redirect: rule.https_redirect,
                source_ranges: parts.source_ranges,
                client_limits: parts.client_limits,
                response_headers: rule.response_headers.as_deref().map(HeaderEdits::from),
            });
            match loaded {
                Ok(loaded) => {
                    rules.insert(id.as_str(), Arc::new(loaded));
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

/// What a rule needs beyond the snapshot's own values.
struct RuleParts {
    action: LoadedAction,
    source_ranges: Option<AddressRanges>,
    client_limits: Option<Arc<ClientLimiter>>,
}

fn load_rule(
    rule_id: &str,
    rule: &Rule,
    backends: &HashMap<&str, Arc<LoadedBackend>>,
    live: &LiveState,
    clients: &UpstreamClients,
) -> Result<RuleParts, String> {
    let source_ranges = rule
        .source_ranges
        .as_deref()
        .map(AddressRanges::load)
        .transpose()?;
    let client_limits = match &rule.client_limits {
        Some(limits) => {
            // Made before the lookup, so that settings it refuses fail the rule; unused
            // when the Route's limiter lives on from an earlier snapshot.
            let limiter = ClientLimiter::new(limits)?;
            Some(
                live.client_limits
                    .get_or_insert((**limits).clone(), || limiter),
            )
        }
        None => None,
    };
    Ok(RuleParts {
        action: load_action(rule_id, &rule.action, backends, live, clients)?,
        source_ranges,
        client_limits,
    })
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
            let backend = |id: &str| {
                let backend = backends
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("backend {id} is not in the snapshot"))?;
                let connector = clients.connector(
                    backend.protocol,
                    forward.timeouts.connect_ms,
                    backend.server_name.as_deref(),
                );
                Ok::<_, String>((backend, connector))
            };
            let targets = forward
                .backends
                .iter()
                .map(|weighted| {
                    let (backend, connector) = backend(&weighted.backend)?;
                    let limiter = forward.max_concurrent_requests.map(|limit| {
                        live.limiters.get_or_insert(
                            (rule_id.to_owned(), weighted.backend.clone(), limit),
                            || Semaphore::new(limit as usize),
                        )
                    });
                    Ok(Target {
                        backend,
                        connector,
                        weight: weighted.weight,
                        limiter,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mirrors = forward
                .mirrors
                .iter()
                .map(|mirror| {
                    if mirror.denominator == 0 {
                        return Err(format!("the mirror to {} draws out of 0", mirror.backend));
                    }
                    let (backend, connector) = backend(&mirror.backend)?;
                    Ok(LoadedMirror {
                        backend,
                        connector,
                        numerator: mirror.numerator,
                        denominator: mirror.denominator,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let total_weight = targets.iter().map(|t| u64::from(t.weight)).sum();
            if total_weight == 0 {
                return Err("no backend has a positive weight".into());
            }
            LoadedAction::Forward(Box::new(LoadedForward {
                targets,
                total_weight,
                path_rewrite: forward
                    .path_rewrite
                    .as_deref()
                    .map(Rewrite::load)
                    .transpose()?,
                request_headers: forward.request_headers.as_deref().map(HeaderEdits::from),
                policy: (**forward).clone(),
                budget: live
                    .budgets
                    .get_or_insert(rule_id.to_owned(), RetryBudget::default),
                mirrors,
            }))
        }
        Action::Redirect(redirect) => LoadedAction::Redirect(LoadedRedirect {
            path: redirect.path.as_ref().map(Rewrite::load).transpose()?,
            action: (**redirect).clone(),
        }),
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

//! Step 2: the backend a request goes to: the one a plugin steered it to
//! (`ctx.forward`), else one of the rule's by weight; and the rule's concurrency permit
//! for it.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use rand::RngExt;
use tokio::sync::OwnedSemaphorePermit;
use weir_crds::snapshot::{Backend, BackendProtocol, Endpoint};
use weir_plugin_runtime::Upstream;

use super::prepare::Prepared;
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::loaded::{LoadedForward, Target};
use crate::metrics::UpstreamErrorKind;
use crate::upstream::{LoadedBackend, Persisted};

/// The chosen target: one of the rule's, or one made for a steered URL.
pub(super) enum Chosen<'f> {
    /// A backend of the rule.
    Rule(&'f Target),
    /// An allow-listed URL a plugin chose.
    Url(Box<Target>),
}

impl Chosen<'_> {
    /// The target.
    pub(super) fn target(&self) -> &Target {
        match self {
            Self::Rule(target) => target,
            Self::Url(target) => target,
        }
    }
}

/// The target for this request; a steered URL also sets the path and `Host` sent.
pub(super) fn choose<'f>(
    gateway: &Gateway,
    forward: &'f LoadedForward,
    steered: Option<&Upstream>,
    prepared: &mut Prepared,
) -> Chosen<'f> {
    match steered {
        None => Chosen::Rule(by_weight(forward)),
        Some(Upstream::Backend(id)) => Chosen::Rule(
            forward
                .targets
                .iter()
                .find(|target| target.backend.id == *id)
                .unwrap_or_else(|| by_weight(forward)),
        ),
        Some(Upstream::Url(url)) => match url_target(gateway, forward, url) {
            Ok((target, path)) => {
                prepared.path = path;
                if let Some(authority) = target.backend.endpoints[0].authority.as_ref()
                    && let Ok(value) = HeaderValue::from_str(authority.as_str())
                {
                    prepared.parts.headers.insert(header::HOST, value);
                }
                Chosen::Url(Box::new(target))
            }
            Err(message) => {
                tracing::warn!(url, "ctx.forward: {message}; the rule's backends are used");
                Chosen::Rule(by_weight(forward))
            }
        },
    }
}

/// The rule's limit of concurrent requests to the target: a permit, or 503 (shed, not
/// queued) when the limit is reached.
pub(super) fn permit(
    gateway: &Gateway,
    target: &Target,
) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
    let Some(limiter) = &target.limiter else {
        return Ok(None);
    };
    let backend = &target.backend.id;
    limiter.clone().try_acquire_owned().map(Some).map_err(|_| {
        gateway
            .metrics
            .upstream_error(backend, UpstreamErrorKind::Overloaded);
        ProxyError::Overloaded {
            backend: backend.clone(),
        }
    })
}

/// A backend by weight.
fn by_weight(forward: &LoadedForward) -> &Target {
    if forward.targets.len() == 1 {
        return &forward.targets[0];
    }
    let mut point = rand::rng().random_range(0..forward.total_weight);
    for target in &forward.targets {
        let weight = u64::from(target.weight);
        if point < weight {
            return target;
        }
        point -= weight;
    }
    &forward.targets[forward.targets.len() - 1]
}

/// A target for an allow-listed URL chosen by `ctx.forward(url)`, and the path and query
/// to send there. It has no live state: such targets are not balanced or ejected.
fn url_target(
    gateway: &Gateway,
    forward: &LoadedForward,
    url: &str,
) -> Result<(Target, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let protocol = match parsed.scheme() {
        "http" => BackendProtocol::Http,
        "https" => BackendProtocol::Https,
        other => return Err(format!("scheme {other} is not supported")),
    };
    let host = match parsed.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("the URL has no host".into()),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let server_name = (protocol == BackendProtocol::Https).then(|| host.clone());
    let backend = Backend {
        protocol,
        endpoints: vec![Endpoint { host, port }],
        server_name: server_name.clone(),
        base_path: None,
        unresolved: None,
    };
    let id = format!("url:{}", parsed.origin().ascii_serialization());
    let loaded = LoadedBackend::load(&id, &backend, &Persisted::default());
    let connector = gateway.clients.connector(
        protocol,
        forward.policy.timeouts.connect_ms,
        server_name.as_deref(),
    );
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    let target = Target {
        backend: Arc::new(loaded),
        connector,
        weight: 1,
        limiter: None,
    };
    Ok((target, path))
}

//! Step 1: the request as the upstream gets it: its path (the rule's rewrite, or a path a
//! plugin chose), its headers (host, hop-by-hop, forwarding) and its body (kept for
//! retries when small, streamed otherwise).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Limited};
use weir_plugin_runtime::Upstream;

use super::ForwardRequest;
use super::tunnel::ClientUpgrade;
use crate::body::{self, ClientBody, IdleTimeout, ProxyBody};
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::headers;
use crate::loaded::LoadedForward;

/// Request bodies up to this size (with a known length) are kept so the request can be
/// retried; larger or unknown-length bodies stream once and are not retried.
const REPLAYABLE_BODY_BYTES: u64 = 64 * 1024;

/// The request made ready for the upstream, before a backend is chosen.
pub(super) struct Prepared {
    /// Method, URI (the client's) and the headers to send.
    pub(super) parts: http::request::Parts,
    /// Path and query to send, before the backend's base path.
    pub(super) path: String,
    /// The body.
    pub(super) body: RequestBody,
    /// The client side of a protocol upgrade it asks for and the rule allows.
    pub(super) client_upgrade: Option<ClientUpgrade>,
}

impl Prepared {
    /// Whether the request asks for an upgrade the rule allows.
    pub(super) fn upgrade(&self) -> bool {
        self.client_upgrade.is_some()
    }
}

/// The request body, kept for retries when small.
pub(super) enum RequestBody {
    Empty,
    Kept(Bytes),
    Streaming(Option<ProxyBody>),
}

impl RequestBody {
    /// The body for the next try, if there is one to send.
    pub(super) fn for_try(&mut self) -> Option<ProxyBody> {
        match self {
            Self::Empty => Some(body::empty()),
            Self::Kept(bytes) => Some(body::full(bytes.clone())),
            Self::Streaming(body) => body.take(),
        }
    }

    /// Whether it can be sent again.
    pub(super) fn replayable(&self) -> bool {
        !matches!(self, Self::Streaming(_))
    }
}

/// Rewrites the path and headers and takes the body; gives back the upstream a plugin
/// steered the request to, if one did.
pub(super) async fn prepare(
    gateway: &Gateway,
    forward: &LoadedForward,
    request: ForwardRequest<'_>,
) -> Result<(Prepared, Option<Upstream>), ProxyError> {
    let policy = &forward.policy;
    let ForwardRequest {
        request: mut client_request,
        path: client_path,
        matched_prefix,
        host,
        conn,
        steering,
    } = request;
    // An upgrade the rule does not allow (h2c never) goes upstream as a plain request:
    // its `Upgrade` header is removed with the other hop-by-hop ones.
    let upgrade = headers::upgrade_allowed(client_request.headers(), &policy.upgrades);
    if !upgrade && let Some(asked) = client_request.headers().get(header::UPGRADE) {
        tracing::debug!(
            ?asked,
            "an upgrade the rule does not allow: forwarded as a plain request"
        );
    }
    let client_upgrade = upgrade.then(|| ClientUpgrade {
        upgrade: hyper::upgrade::on(&mut client_request),
        connection: conn.clone(),
    });
    let (mut parts, incoming) = client_request.into_parts();

    let mut path = match (steering.path, &forward.path_rewrite) {
        (Some(chosen), _) => chosen,
        (None, None) => client_path.to_owned(),
        (None, Some(rewrite)) => rewrite.apply(client_path, matched_prefix),
    };
    match steering.query {
        // A plugin's query replaces whatever query the path had.
        Some(query) => {
            path.truncate(path.find('?').unwrap_or(path.len()));
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query);
            }
        }
        None => {
            if let Some(query) = parts.uri.query()
                && !path.contains('?')
            {
                path.push('?');
                path.push_str(query);
            }
        }
    }

    if let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        // The request was routed by its target's authority (absolute form, HTTP/2's
        // `:authority`): the upstream is told exactly that one.
        parts.headers.insert(header::HOST, value);
    }
    headers::remove_hop_by_hop(&mut parts.headers, upgrade);
    headers::set_forwarded(
        &mut parts.headers,
        &conn.peer,
        host,
        &gateway.config.trusted_proxies,
    );
    if let Some(host_rewrite) = &policy.host_rewrite
        && let Ok(value) = HeaderValue::from_str(host_rewrite)
    {
        parts.headers.insert(header::HOST, value);
    }
    if let Some(changes) = &forward.request_headers {
        changes.apply_to_map(&mut parts.headers);
    }

    let body = request_body(
        incoming,
        &parts.headers,
        policy.retries.is_some(),
        Duration::from_millis(policy.timeouts.idle_ms),
        forward.max_body_bytes(gateway.config.limits.max_body_bytes),
    )
    .await?;
    let prepared = Prepared {
        parts,
        path,
        body,
        client_upgrade,
    };
    Ok((prepared, steering.upstream))
}

/// Reads the request body ahead when it is small and the request may be retried;
/// otherwise streams it, watched for silence and size.
async fn request_body(
    incoming: ClientBody,
    headers: &http::HeaderMap,
    may_retry: bool,
    idle: Duration,
    max_bytes: u64,
) -> Result<RequestBody, ProxyError> {
    use http_body::Body as _;
    if incoming.is_end_stream() {
        return Ok(RequestBody::Empty);
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let watched = IdleTimeout::new(incoming, idle);
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    if may_retry && length.is_some_and(|l| l <= REPLAYABLE_BODY_BYTES) {
        let collected = Limited::new(watched, limit)
            .collect()
            .await
            .map_err(|e| request_body_failure(&*e, max_bytes))?;
        return Ok(RequestBody::Kept(collected.to_bytes()));
    }
    Ok(RequestBody::Streaming(Some(
        Limited::new(watched, limit).boxed_unsync(),
    )))
}

/// How the client is answered when its request body failed, read ahead here or while it
/// streamed upstream: over the size limit (413), silent for the idle timeout (408), or
/// not valid HTTP framing, such as a bad chunk size (400).
pub(super) fn request_body_failure(
    error: &(dyn std::error::Error + 'static),
    max_body_bytes: u64,
) -> ProxyError {
    let chain = || std::iter::successors(Some(error), |e| e.source());
    if chain().any(|e| e.is::<http_body_util::LengthLimitError>()) {
        return ProxyError::BodyTooLarge {
            limit: max_body_bytes,
        };
    }
    if let Some(idle) = chain().find_map(|e| e.downcast_ref::<crate::body::IdleTimeoutError>()) {
        return ProxyError::RequestBodyTimeout(idle.to_string());
    }
    let causes: Vec<String> = chain().map(ToString::to_string).collect();
    ProxyError::BadRequest(format!("reading the request body: {}", causes.join(": ")))
}

//! Step 3: one try. An endpoint of the backend (balanced, healthy, not tried yet), the
//! request sent to it within the try's time, and what came of it, recorded in the
//! endpoint's health and the metrics.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, Version};
use tokio::time::Instant;
use tracing::Instrument as _;
use weir_crds::snapshot::BackendProtocol;

use super::prepare::{self, Prepared};
use super::retry;
use crate::access_log::AccessRecord;
use crate::error::ProxyError;
use crate::loaded::{LoadedForward, Target};
use crate::metrics::UpstreamErrorKind;
use crate::shard::Shard;
use crate::telemetry;
use crate::upstream::LoadedBackend;
use crate::upstream::client::{UpstreamBody, UpstreamError};
use crate::upstream::endpoint::{InFlight, now_ms};
use crate::upstream::retry::Failure;

/// The time a request has upstream.
pub(super) struct Timing {
    /// When the whole request (all tries) must be done.
    pub(super) deadline: Instant,
    /// Longest time of one try.
    pub(super) per_try: Duration,
}

/// Where the tries go: the rule's forwarding policy, the chosen target, the path.
pub(super) struct Destination<'a> {
    pub(super) forward: &'a LoadedForward,
    pub(super) target: &'a Target,
    pub(super) path: &'a PathAndQuery,
}

/// An upstream's answer, with any status; the endpoint counts the request in flight
/// until the response body ends.
pub(super) struct Answered {
    pub(super) response: Response<UpstreamBody>,
    pub(super) in_flight: InFlight,
}

/// Sends the request to one endpoint of the target's backend that `tried` does not hold
/// yet (and adds it there): its answer, or how the try failed (`Err` of the inner
/// result), or an error that ends the request.
pub(super) async fn attempt(
    shard: &Shard,
    destination: &Destination<'_>,
    prepared: &mut Prepared,
    tried: &mut Vec<usize>,
    timing: &Timing,
    record: &mut AccessRecord,
) -> Result<Result<Answered, Failure>, ProxyError> {
    let gateway = &*shard.gateway;
    let Destination {
        forward,
        target,
        path,
    } = *destination;
    let backend = &target.backend;
    if let Some(why) = &backend.unresolved {
        return Err(ProxyError::BackendUnresolved {
            backend: backend.id.clone(),
            why: why.clone(),
        });
    }
    let Some(index) = backend.pick(forward.policy.load_balancer, tried, now_ms()) else {
        gateway
            .metrics
            .upstream_error(&backend.id, UpstreamErrorKind::NoEndpoint);
        return Err(ProxyError::NoHealthyUpstream {
            backend: backend.id.clone(),
        });
    };
    tried.push(index);
    let endpoint = &backend.endpoints[index];
    record.upstream = endpoint.authority.clone();
    record.tries += 1;
    let uri = backend
        .uri(index, path)
        .ok_or_else(|| ProxyError::UpstreamUnreachable {
            backend: backend.id.clone(),
            reason: format!(
                "endpoint {:?} is not a valid address",
                endpoint.address.host
            ),
        })?;
    let Some(body) = prepared.body.for_try() else {
        return Err(ProxyError::UpstreamFailed {
            backend: backend.id.clone(),
            reason: "the request body was already sent".into(),
        });
    };
    let mut request = Request::new(body);
    *request.method_mut() = prepared.parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = upstream_version(backend.protocol, prepared.upgrade());
    // A try that no other can follow takes the headers; an earlier one copies them.
    *request.headers_mut() = if retry::may_follow(forward, tried.len()) {
        prepared.parts.headers.clone()
    } else {
        std::mem::take(&mut prepared.parts.headers)
    };

    let span = if gateway.config.otlp_endpoint.is_some() {
        let span = tracing::info_span!(
            target: telemetry::SPAN_TARGET,
            "upstream",
            otel.kind = "client",
            server.address = %endpoint.address.host,
            server.port = endpoint.address.port,
            http.response.status_code = tracing::field::Empty,
        );
        telemetry::inject_trace(&span, request.headers_mut());
        span
    } else {
        tracing::Span::none()
    };
    let in_flight = endpoint.start_request();
    let remaining = timing.deadline.saturating_duration_since(Instant::now());
    let outcome = tokio::time::timeout(
        timing.per_try.min(remaining),
        shard.send_upstream(&target.connector, request, prepared.upgrade()),
    )
    .instrument(span.clone())
    .await;
    let failure = match outcome {
        Ok(Ok(response)) => {
            span.record("http.response.status_code", response.status().as_u16());
            let healthy = response.status().as_u16() < 500;
            record_health(shard, forward, backend, index, healthy);
            return Ok(Ok(Answered {
                response,
                in_flight,
            }));
        }
        Ok(Err(error)) => match client_body_failure(
            &error,
            forward.max_body_bytes(gateway.config.limits.max_body_bytes),
        ) {
            // The client's fault, not the upstream's: its answer, and no health penalty.
            Some(refusal) => return Err(refusal),
            None if error.is_connect() => Failure::Connect,
            None => Failure::Reset,
        },
        Err(_elapsed) => Failure::Timeout,
    };
    drop(in_flight);
    record_health(shard, forward, backend, index, false);
    let kind = match failure {
        Failure::Connect => UpstreamErrorKind::Connect,
        Failure::Timeout => UpstreamErrorKind::Timeout,
        _ => UpstreamErrorKind::Reset,
    };
    gateway.metrics.upstream_error(&backend.id, kind);
    Ok(Err(failure))
}

/// The HTTP version a request goes upstream with: HTTP/2 to h2c backends (but for an
/// upgrade, which only HTTP/1.1 has), HTTP/1.1 otherwise (HTTPS picks its own by ALPN).
pub(super) fn upstream_version(protocol: BackendProtocol, upgrade: bool) -> Version {
    match protocol {
        BackendProtocol::H2c if !upgrade => Version::HTTP_2,
        _ => Version::HTTP_11,
    }
}

/// Feeds passive health checking with the outcome of a try.
fn record_health(
    shard: &Shard,
    forward: &LoadedForward,
    backend: &LoadedBackend,
    index: usize,
    success: bool,
) {
    let now = now_ms();
    let policy = forward.policy.outlier_detection.as_ref();
    let endpoint = &backend.endpoints[index];
    if success {
        endpoint.record_success(policy, now);
    } else if endpoint.record_failure(policy, now, backend.ejected(now), backend.endpoints.len()) {
        shard.gateway.metrics.ejection(&backend.id);
        tracing::warn!(backend = %backend.id, endpoint = %format!("{}:{}", endpoint.address.host, endpoint.address.port), "endpoint ejected after consecutive failures");
    }
}

/// How the client is answered when a try failed because the client's own request body
/// failed while it streamed upstream (hyper reports the body's error as a "user" error,
/// with that error as its source; see [`prepare::request_body_failure`]). `None` when the
/// upstream failed.
fn client_body_failure(error: &UpstreamError, max_body_bytes: u64) -> Option<ProxyError> {
    let body_error = error
        .hyper_error()
        .filter(|e| e.is_user())
        .and_then(std::error::Error::source)?;
    Some(prepare::request_body_failure(body_error, max_body_bytes))
}

//! Forwarding a request upstream: path and header rewriting, backend choice by weight,
//! the concurrency limit, endpoint choice, tries with retries inside the request timeout,
//! passive health, and the response streamed back (or a protocol upgrade tunnelled).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use rand::RngExt;
use tokio::time::Instant;
use tracing::Instrument as _;
use weir_crds::path::replace_prefix;
use weir_crds::route::RetryOn;
use weir_crds::snapshot::{Backend, BackendProtocol, Endpoint, PathRewrite};
use weir_plugin_runtime::Upstream;

use crate::access_log::AccessRecord;
use crate::body::{self, BoxError, ClientBody, IdleTimeout, Observed, ProxyBody};
use crate::error::ProxyError;
use crate::gateway::Gateway;
use crate::headers;
use crate::loaded::{LoadedForward, LoadedRule, Target};
use crate::metrics::UpstreamErrorKind;
use crate::pipeline::ConnInfo;
use crate::shard::Shard;
use crate::telemetry;
use crate::upstream::client::{UpstreamBody, UpstreamError};
use crate::upstream::endpoint::now_ms;
use crate::upstream::retry::{self, Failure};
use crate::upstream::{LoadedBackend, Persisted};

/// Request bodies up to this size (with a known length) are kept so the request can be
/// retried; larger or unknown-length bodies stream once and are not retried.
const REPLAYABLE_BODY_BYTES: u64 = 64 * 1024;

/// A request on its way upstream.
pub struct ForwardRequest<'a> {
    /// The client's request.
    pub request: Request<ClientBody>,
    /// Its normalized path.
    pub path: &'a str,
    /// The `Prefix`/`Exact` value that matched, for prefix rewrites.
    pub matched_prefix: Option<&'a str>,
    /// The host it asked for.
    pub host: &'a str,
    /// Its connection.
    pub conn: &'a ConnInfo,
    /// What plugins chose instead of the rule's own rewrite and backend choice.
    pub steering: Steering,
}

/// A path and an upstream chosen by plugins (`ctx.upstream.path`, `ctx.forward`).
#[derive(Debug, Default)]
pub struct Steering {
    /// The path (and query, if it has one) sent upstream instead of the rule's rewrite of
    /// the client's; without a query, the client's query is kept.
    pub path: Option<String>,
    /// Another backend of the rule, or an allow-listed URL (validated by the runtime).
    pub upstream: Option<Upstream>,
}

/// The request body, kept for retries when small.
enum RequestBody {
    Empty,
    Kept(Bytes),
    Streaming(Option<ProxyBody>),
}

impl RequestBody {
    /// The body for the next try, if there is one to send.
    fn for_try(&mut self) -> Option<ProxyBody> {
        match self {
            Self::Empty => Some(body::empty()),
            Self::Kept(bytes) => Some(body::full(bytes.clone())),
            Self::Streaming(body) => body.take(),
        }
    }

    fn replayable(&self) -> bool {
        !matches!(self, Self::Streaming(_))
    }
}

/// Sends the request to one of the rule's backends and returns the upstream's response.
pub async fn forward(
    shard: &Shard,
    rule: &LoadedRule,
    forward: &LoadedForward,
    request: ForwardRequest<'_>,
    record: &mut AccessRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let gateway = &*shard.gateway;
    let policy = &forward.policy;
    let ForwardRequest {
        request: mut client_request,
        path,
        matched_prefix,
        host,
        conn,
        steering,
    } = request;
    let upgrade = headers::is_upgrade(client_request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut client_request));
    let (mut parts, incoming) = client_request.into_parts();

    let mut upstream_path = match (&steering.path, &policy.path_rewrite) {
        (Some(chosen), _) => chosen.clone(),
        (None, None) => path.to_owned(),
        (None, Some(PathRewrite::ReplacePrefix(with))) => {
            replace_prefix(matched_prefix.unwrap_or("/"), with, path)
        }
        (None, Some(PathRewrite::ReplaceFull(full))) => full.clone(),
    };
    if let Some(query) = parts.uri.query()
        && !upstream_path.contains('?')
    {
        upstream_path.push('?');
        upstream_path.push_str(query);
    }

    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        // HTTP/2 clients name the host in `:authority`; HTTP/1.1 upstreams need `Host`.
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

    let idle = Duration::from_millis(policy.timeouts.idle_ms);
    let mut body = request_body(
        incoming,
        &parts.headers,
        policy.retries.is_some(),
        idle,
        gateway.config.limits.max_body_bytes,
    )
    .await?;

    let chosen_url;
    let target = match &steering.upstream {
        None => choose_target(forward),
        Some(Upstream::Backend(id)) => forward
            .targets
            .iter()
            .find(|target| target.backend.id == *id)
            .unwrap_or_else(|| choose_target(forward)),
        Some(Upstream::Url(url)) => match url_target(gateway, forward, url) {
            Ok((target, path)) => {
                upstream_path = path;
                if let Some(authority) = target.backend.endpoints[0].authority.as_ref()
                    && let Ok(value) = HeaderValue::from_str(authority.as_str())
                {
                    parts.headers.insert(header::HOST, value);
                }
                chosen_url = target;
                &chosen_url
            }
            Err(message) => {
                tracing::warn!(url, "ctx.forward: {message}; the rule's backends are used");
                choose_target(forward)
            }
        },
    };
    let backend = &target.backend;
    let upstream_path = backend
        .upstream_path(&upstream_path)
        .map_err(|e| ProxyError::BadRequest(format!("upstream path: {e}")))?;
    let permit = match &target.limiter {
        Some(limiter) => Some(limiter.clone().try_acquire_owned().map_err(|_| {
            gateway
                .metrics
                .upstream_error(&backend.id, UpstreamErrorKind::Overloaded);
            ProxyError::Overloaded {
                backend: backend.id.clone(),
            }
        })?),
        None => None,
    };

    let request_timeout = Duration::from_millis(policy.timeouts.request_ms);
    let deadline = Instant::now() + request_timeout;
    let per_try = match &policy.retries {
        Some(retries) if retries.retry_on.contains(&RetryOn::Timeout) => {
            request_timeout / (retries.attempts + 1)
        }
        _ => request_timeout,
    };
    let version = match backend.protocol {
        BackendProtocol::H2c if !upgrade => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let _request_in_flight = forward.budget.start_request();
    let mut _retry_in_flight = None;
    let mut tried = Vec::new();
    let first_try = Instant::now();
    loop {
        let now = now_ms();
        let Some(index) = backend.pick(policy.load_balancer, &tried, now) else {
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
        let uri =
            backend
                .uri(index, &upstream_path)
                .ok_or_else(|| ProxyError::UpstreamUnreachable {
                    backend: backend.id.clone(),
                    reason: format!(
                        "endpoint {:?} is not a valid address",
                        endpoint.address.host
                    ),
                })?;
        let Some(try_body) = body.for_try() else {
            return Err(ProxyError::UpstreamFailed {
                backend: backend.id.clone(),
                reason: "the request body was already sent".into(),
            });
        };
        let mut upstream_request = Request::new(try_body);
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = uri;
        *upstream_request.version_mut() = version;
        *upstream_request.headers_mut() = parts.headers.clone();

        let span = if gateway.config.otlp_endpoint.is_some() {
            let span = tracing::info_span!(
                target: telemetry::SPAN_TARGET,
                "upstream",
                otel.kind = "client",
                server.address = %endpoint.address.host,
                server.port = endpoint.address.port,
                http.response.status_code = tracing::field::Empty,
            );
            telemetry::inject_trace(&span, upstream_request.headers_mut());
            span
        } else {
            tracing::Span::none()
        };
        let in_flight = endpoint.start_request();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::time::timeout(
            per_try.min(remaining),
            shard.send_upstream(&target.connector, upstream_request, upgrade),
        )
        .instrument(span.clone())
        .await;
        if let Ok(Ok(response)) = &outcome {
            span.record("http.response.status_code", response.status().as_u16());
        }
        let failure = match outcome {
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let failed = status >= 500;
                record_health(gateway, forward, backend, index, !failed);
                let retry_status = failed.then_some(Failure::Status(status));
                if let Some(failure) = retry_status
                    && let Some(guard) =
                        may_retry(forward, &parts.method, failure, tried.len(), &body)
                {
                    _retry_in_flight = Some(guard);
                    drop(response);
                    rule.metrics.retry();
                    wait_backoff(forward, tried.len(), deadline).await;
                    continue;
                }
                record.upstream_ms = Some(first_try.elapsed().as_secs_f64() * 1000.0);
                return Ok(respond(
                    response,
                    upgrade,
                    client_upgrade,
                    idle,
                    permit,
                    in_flight,
                ));
            }
            Ok(Err(error)) => {
                if is_body_too_large(&error) {
                    return Err(ProxyError::BodyTooLarge {
                        limit: gateway.config.limits.max_body_bytes,
                    });
                }
                if error.is_connect() {
                    Failure::Connect
                } else {
                    Failure::Reset
                }
            }
            Err(_elapsed) => Failure::Timeout,
        };
        drop(in_flight);
        record_health(gateway, forward, backend, index, false);
        let kind = match failure {
            Failure::Connect => UpstreamErrorKind::Connect,
            Failure::Timeout => UpstreamErrorKind::Timeout,
            _ => UpstreamErrorKind::Reset,
        };
        gateway.metrics.upstream_error(&backend.id, kind);
        let out_of_time = Instant::now() >= deadline;
        if !out_of_time
            && let Some(guard) = may_retry(forward, &parts.method, failure, tried.len(), &body)
        {
            _retry_in_flight = Some(guard);
            rule.metrics.retry();
            wait_backoff(forward, tried.len(), deadline).await;
            continue;
        }
        return Err(match failure {
            Failure::Connect => ProxyError::UpstreamUnreachable {
                backend: backend.id.clone(),
                reason: "connection failed".into(),
            },
            Failure::Timeout => ProxyError::UpstreamTimeout {
                backend: backend.id.clone(),
                timeout_ms: if out_of_time {
                    policy.timeouts.request_ms
                } else {
                    u64::try_from(per_try.as_millis()).unwrap_or(u64::MAX)
                },
            },
            _ => ProxyError::UpstreamFailed {
                backend: backend.id.clone(),
                reason: "the connection closed before a response".into(),
            },
        });
    }
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
            .map_err(|e| ProxyError::BadRequest(format!("reading the request body: {e}")))?;
        return Ok(RequestBody::Kept(collected.to_bytes()));
    }
    Ok(RequestBody::Streaming(Some(
        Limited::new(watched, limit).boxed_unsync(),
    )))
}

/// A backend by weight.
fn choose_target(forward: &LoadedForward) -> &Target {
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

/// Feeds passive health checking with the outcome of a try.
fn record_health(
    gateway: &Gateway,
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
        gateway.metrics.ejection(&backend.id);
        tracing::warn!(backend = %backend.id, endpoint = %format!("{}:{}", endpoint.address.host, endpoint.address.port), "endpoint ejected after consecutive failures");
    }
}

/// A retry guard when the failure may be retried: attempts left, a retryable failure, a
/// body that can be sent again, and room in the retry budget.
fn may_retry<'f>(
    forward: &'f LoadedForward,
    method: &http::Method,
    failure: Failure,
    tries: usize,
    body: &RequestBody,
) -> Option<retry::BudgetGuard<'f>> {
    let policy = forward.policy.retries.as_ref()?;
    let retries_done = u32::try_from(tries.saturating_sub(1)).unwrap_or(u32::MAX);
    if retries_done >= policy.attempts
        || !retry::is_retryable(policy, method, failure)
        || !body.replayable()
    {
        return None;
    }
    forward.budget.try_retry(policy.budget_percent)
}

async fn wait_backoff(forward: &LoadedForward, tries: usize, deadline: Instant) {
    let Some(policy) = &forward.policy.retries else {
        return;
    };
    let wait = retry::backoff(policy, u32::try_from(tries).unwrap_or(u32::MAX));
    tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
}

fn is_body_too_large(error: &UpstreamError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The upstream's response on its way to the client: hop-by-hop headers removed, the
/// body watched for silence, the concurrency permit and in-flight count held until it
/// ends. A `101 Switching Protocols` starts a tunnel between the two upgraded connections.
fn respond(
    mut response: Response<UpstreamBody>,
    upgrade_requested: bool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    idle: Duration,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    in_flight: crate::upstream::endpoint::InFlight,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade_requested;
    if switching && let Some(client_upgrade) = client_upgrade {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::task::spawn_local(async move {
            let held = (permit, in_flight);
            if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            drop(held);
        });
        let (mut parts, _) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, body::empty());
    }
    let (mut parts, incoming) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    let held = (permit, in_flight);
    let body = Observed::new(IdleTimeout::new(incoming, idle), move |_| drop(held))
        .map_err(|e: BoxError| e)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

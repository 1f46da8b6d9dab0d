//! The request pipeline: checks, routing, CORS, then the rule's action (a fixed response,
//! a redirect, or forwarding upstream), with metrics and the access log at the end.
//!
//! ```text
//! request ─> framing checks ─> path normalization ─> route ─> HTTPS redirect?
//!        ─> source ranges ─> client limits ─> body size (Content-Length) ─> CORS preflight?
//!        ─> plugins' beforeRequest (only when the rule has plugins; see `plugins`)
//!        ─> action: respond | redirect | forward (balance, limit, mirror, retry)
//!        ─> plugins' afterResponse ─> CORS headers
//!        ─> metrics ─> response body streams ─> access log line
//! ```

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument as _;
use weir_crds::path;
use weir_crds::snapshot::HttpsRedirectAction;
use weir_plugin_runtime::{BeforeRequest, HeaderEdits};

use crate::access_log::AccessRecord;
use crate::body::{self, ClientBody, IdleTimeout, Observed, ProxyBody};
use crate::connection::ConnInfo;
use crate::error::ProxyError;
use crate::forward::{self, ForwardRequest, Steering};
use crate::gateway::Gateway;
use crate::headers::{self, X_REQUEST_ID};
use crate::loaded::{FixedResponse, LoadedAction, LoadedRedirect, LoadedRule, LoadedSnapshot};
use crate::router::{RequestHead, request_host};
use crate::shard::Shard;
use crate::{cors, framing, plugins, telemetry};

/// Longest silence of a request body plugins read on a rule that does not forward.
const PLUGIN_BODY_IDLE: Duration = Duration::from_secs(60);

/// Serves one request on its shard. Never fails: errors become responses here.
pub async fn handle(
    shard: Rc<Shard>,
    conn: Rc<ConnInfo>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let gateway = &*shard.gateway;
    let started = Instant::now();
    let request_id = headers::ensure_request_id(request.headers_mut());
    let client = headers::client_ip(
        request.headers(),
        conn.peer.ip,
        &gateway.config.trusted_proxies,
    );
    let mut record = AccessRecord::new(request_id, request.method().clone(), client, started);
    let snapshot = gateway.current();
    let mut route_metrics = None;
    // Asked first, and for every request, so the answers stay in request order.
    let conflicting_framing = conn.framing.next_request_conflicts();
    let span = request_span(gateway, &request, &record.request_id);
    let served = if conflicting_framing {
        Err(ProxyError::BadRequest(
            "the request has both Content-Length and Transfer-Encoding".into(),
        ))
    } else {
        serve(
            &shard,
            &snapshot,
            &conn,
            request,
            &mut record,
            &mut route_metrics,
        )
        .instrument(span.clone())
        .await
    };
    let mut response = match served {
        Ok(response) => response,
        Err(error) => {
            record.error = Some(error.code());
            error.into_response(&record.request_id)
        }
    };
    if let Ok(id) = HeaderValue::from_str(&record.request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if let Some(route) = &record.route {
        span.record("http.route", route.as_str());
    }
    let elapsed = started.elapsed().as_secs_f64();
    match route_metrics {
        Some(metrics) => metrics.record(status, elapsed),
        None => gateway.unrouted.record(status, elapsed),
    }
    if gateway.config.access_log {
        response = response
            .map(|body| Observed::new(body, move |end| record.write(status, end)).boxed_unsync());
    }
    Ok(response)
}

/// The request's span when traces are exported, continuing the client's trace.
fn request_span(gateway: &Gateway, request: &Request<Incoming>, request_id: &str) -> tracing::Span {
    if gateway.config.otlp_endpoint.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: telemetry::SPAN_TARGET,
        "request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id,
    );
    telemetry::continue_trace(&span, request.headers());
    span
}

async fn serve(
    shard: &Rc<Shard>,
    snapshot: &LoadedSnapshot,
    conn: &Rc<ConnInfo>,
    mut request: Request<Incoming>,
    record: &mut AccessRecord,
    route_metrics: &mut Option<crate::metrics::RouteMetrics>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let gateway = &*shard.gateway;
    if let Some(codings) = framing::unsupported_transfer_coding(request.headers()) {
        return Err(ProxyError::UnsupportedTransferCoding(codings));
    }
    if !gateway.is_ready() {
        return Err(ProxyError::NotReady);
    }
    headers::remove_connection_named(request.headers_mut());
    if !headers::is_trusted(conn.peer.ip, &gateway.config.trusted_proxies) {
        headers::remove_client_claims(request.headers_mut());
    }
    record.host = request_host(request.version(), request.uri(), request.headers())
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    record.path = path::normalize(request.uri().path())
        .map_err(|e| ProxyError::BadRequest(format!("path {:?}: {e}", request.uri().path())))?;
    let head = RequestHead {
        host: &record.host,
        path: &record.path,
        query: request.uri().query(),
        method: request.method(),
        headers: request.headers(),
        tls: conn.tls,
    };
    let mut matched = snapshot
        .router
        .route(&head)
        .ok_or_else(|| ProxyError::NoRoute {
            host: record.host.clone(),
            path: record.path.clone(),
        })?;
    let rule = matched.target.clone();
    record.route = Some(rule.route.clone());
    *route_metrics = Some(rule.metrics.clone());

    if let Some(redirect) = &rule.https_redirect
        && !headers::client_used_https(
            request.headers(),
            &conn.peer,
            &gateway.config.trusted_proxies,
        )
    {
        return Ok(https_redirect(redirect, &record.host, request.uri()));
    }
    if let Some(ranges) = &rule.source_ranges
        && !ranges.admits(record.client)
    {
        return Err(ProxyError::ClientNotAllowed(record.client));
    }
    let client_permit = match &rule.client_limits {
        Some(limiter) => limiter.admit(record.client)?,
        None => None,
    };
    // After routing: a rule may accept larger bodies than the proxy's default.
    let limit = rule.max_body_bytes(gateway.config.limits.max_body_bytes);
    if content_length(request.headers()).is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }

    if let Some(policy) = &rule.cors
        && cors::is_preflight(request.method(), request.headers())
    {
        return Ok(cors::preflight(policy, request.headers()));
    }
    let origin = rule
        .cors
        .as_ref()
        .and_then(|_| request.headers().get(header::ORIGIN).cloned());
    let params = std::mem::take(&mut matched.params);
    let matched_prefix = matched.matched_prefix.map(str::to_owned);
    let rule_ref = Rule {
        rule: &rule,
        matched_prefix: matched_prefix.as_deref(),
    };
    let mut response = if rule.plugins.is_empty() {
        let request = request.map(ClientBody::Incoming);
        // An error answers here, so the rule's response header changes apply to it too.
        match act(shard, rule_ref, conn, request, record, Steering::default()).await {
            Ok(response) => response,
            Err(error) => {
                record.error = Some(error.code());
                error.into_response(&record.request_id)
            }
        }
    } else {
        // Boxed so that the future of requests without plugins stays small.
        Box::pin(with_plugins(
            shard, rule_ref, conn, request, &params, record,
        ))
        .await?
    };
    if let Some(changes) = &rule.response_headers {
        changes.apply_to_map(response.headers_mut());
    }
    if let Some(policy) = &rule.cors {
        cors::decorate(policy, origin.as_ref(), response.headers_mut());
    }
    if let Some(permit) = client_permit {
        // The request is in flight for its client until its response has been sent.
        response = response.map(|body| Observed::new(body, move |_| drop(permit)).boxed_unsync());
    }
    Ok(response)
}

/// The redirect of a plain-HTTP request to the same host (without the request's port),
/// path and query over HTTPS. The path is the one the client sent, not normalized.
fn https_redirect(
    redirect: &HttpsRedirectAction,
    host: &str,
    uri: &http::Uri,
) -> Response<ProxyBody> {
    let mut location = format!("https://{host}");
    if let Some(port) = redirect.port {
        location.push_str(&format!(":{port}"));
    }
    location.push_str(uri.path_and_query().map_or("/", |p| p.as_str()));
    redirect_to(redirect.status, &location)
}

/// An empty response with `status` and `Location: location`.
fn redirect_to(status: u16, location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The matched rule and the `Prefix`/`Exact` value that matched.
#[derive(Clone, Copy)]
struct Rule<'a> {
    rule: &'a LoadedRule,
    matched_prefix: Option<&'a str>,
}

/// Runs the rule's action: a fixed response, a redirect, or forwarding upstream.
async fn act(
    shard: &Rc<Shard>,
    rule: Rule<'_>,
    conn: &Rc<ConnInfo>,
    request: Request<ClientBody>,
    record: &mut AccessRecord,
    steering: Steering,
) -> Result<Response<ProxyBody>, ProxyError> {
    Ok(match &rule.rule.action {
        LoadedAction::Respond(fixed) => fixed_response(fixed),
        LoadedAction::Redirect(redirect) => redirect_response(
            redirect,
            &request,
            &record.path,
            rule.matched_prefix,
            conn.tls,
        ),
        LoadedAction::Forward(forward) => {
            let path = record.path.clone();
            let host = record.host.clone();
            let forward_request = ForwardRequest {
                request,
                path: &path,
                matched_prefix: rule.matched_prefix,
                host: &host,
                conn,
                steering,
            };
            // Boxed: the forwarding future is large, and moving it around costs more than
            // one allocation.
            Box::pin(forward::forward(
                shard,
                rule.rule,
                forward,
                forward_request,
                record,
            ))
            .await?
        }
    })
}

/// Runs the rule's action between its plugins' `beforeRequest` and `afterResponse`
/// hooks. Whatever answers (upstream, plugin, proxy error) goes through `afterResponse`
/// of the plugins that ran; a failure of a `Closed` plugin answers 503.
async fn with_plugins(
    shard: &Rc<Shard>,
    rule: Rule<'_>,
    conn: &Rc<ConnInfo>,
    request: Request<Incoming>,
    params: &[(String, String)],
    record: &mut AccessRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let chain = &rule.rule.plugins;
    let (parts, incoming) = request.into_parts();
    let idle = match &rule.rule.action {
        LoadedAction::Forward(forward) => Duration::from_millis(forward.policy.timeouts.idle_ms),
        _ => PLUGIN_BODY_IDLE,
    };
    // A request without a body (most GETs) has nothing for plugins to read.
    let lazy = if incoming.is_end_stream() {
        None
    } else {
        plugins::lazy_body(
            IdleTimeout::new(incoming, idle).boxed_unsync(),
            &parts.headers,
        )
    };
    let info = plugins::request_info(
        &plugins::RequestContext {
            parts: &parts,
            tls: conn.tls,
            record,
            rule: rule.rule,
            path_params: params,
        },
        lazy.as_ref(),
    );
    let (outcome, carry) = shard.plugins.before_request(chain, info).await;
    record.user = carry.user().map(str::to_owned);
    let body = match &lazy {
        Some(lazy) => lazy.take().await,
        None => body::empty(),
    };
    let mut request = Request::from_parts(parts, ClientBody::Boxed(body));
    let (answered, response_edits) = match outcome {
        BeforeRequest::Continue(patch) => {
            patch.headers.apply_to_map(request.headers_mut());
            if let Some(replaced) = patch.body {
                // A plugin's body replaces the client's, with its own length.
                let headers = request.headers_mut();
                headers.remove(header::TRANSFER_ENCODING);
                headers.insert(header::CONTENT_LENGTH, replaced.len().into());
                *request.body_mut() = ClientBody::Boxed(body::full(replaced));
            }
            let steering = Steering {
                path: patch.path,
                query: patch.query,
                upstream: patch.upstream,
            };
            (
                act(shard, rule, conn, request, record, steering).await,
                patch.response_headers,
            )
        }
        BeforeRequest::Respond(local) => {
            drop(request);
            (Ok(plugins::local_response(local)), HeaderEdits::default())
        }
        // The runtime logged the failure with its detail and the request id.
        BeforeRequest::Failed(failure) => (
            Err(ProxyError::PluginFailed(failure)),
            HeaderEdits::default(),
        ),
    };
    let mut response = match answered {
        Ok(response) => response,
        Err(error) => {
            record.error = Some(error.code());
            error.into_response(&record.request_id)
        }
    };
    response_edits.apply_to_map(response.headers_mut());
    plugins::after_response(&shard.plugins, chain, carry, response).await
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn fixed_response(fixed: &FixedResponse) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(fixed.body.clone()));
    *response.status_mut() = fixed.status;
    *response.headers_mut() = fixed.headers.clone();
    response
}

fn redirect_response(
    loaded: &LoadedRedirect,
    request: &Request<ClientBody>,
    path: &str,
    matched_prefix: Option<&str>,
    tls: bool,
) -> Response<ProxyBody> {
    let redirect = &loaded.action;
    let scheme = redirect
        .scheme
        .as_deref()
        .unwrap_or(if tls { "https" } else { "http" });
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let (request_host, request_port) = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            (host.to_owned(), Some(port.to_owned()))
        }
        _ => (authority, None),
    };
    let host = redirect.host.clone().unwrap_or(request_host);
    // A port is kept only while the scheme stays the same; a new scheme means its default.
    let port = match (redirect.port, &redirect.scheme) {
        (Some(port), _) => Some(port.to_string()),
        (None, Some(_)) => None,
        (None, None) => request_port,
    };
    let new_path = match &loaded.path {
        None => path.to_owned(),
        Some(rewrite) => rewrite.apply(path, matched_prefix),
    };
    let mut location = format!("{scheme}://{host}");
    if let Some(port) = port {
        location.push(':');
        location.push_str(&port);
    }
    location.push_str(&new_path);
    if let Some(query) = request.uri().query() {
        location.push('?');
        location.push_str(query);
    }
    redirect_to(redirect.status, &location)
}

//! Plugins in the request pipeline: what the proxy tells the plugin runtime about a
//! request and its response, and how it applies what the hooks propose. Plugins propose,
//! the proxy decides: header edits are applied before the proxy's own header hygiene, a
//! `ctx.forward` target was validated by the runtime, and a failure becomes an error
//! response in `error.rs` like any other.
//!
//! ```text
//! route matched, rule has plugins
//!   ─> beforeRequest (body readable on demand, kept for forwarding)
//!        continue: upstream header edits, path, upstream choice ─> action
//!        respond:  the plugin's answer            ─┐
//!        failed:   503 plugin_failed (Closed)     ─┤
//!   ─> response headers set in beforeRequest      <┘
//!   ─> afterResponse on whatever answers (body buffered only when a hook reads it)
//!        continue: status, header edits, body    failed: 503 plugin_failed
//! ```
//!
//! Rules without plugins never come here.

pub mod body;
pub mod test_command;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body::Body as _;
use weir_plugin_runtime::{
    AfterResponse, BodySource, Carry, Chain, LocalResponse, RequestInfo, ResponseInfo, ShardPlugins,
};

use crate::access_log::AccessRecord;
use crate::body::{self as proxy_body, ProxyBody};
use crate::error::ProxyError;
use crate::loaded::{LoadedAction, LoadedRule};
use body::LazyBody;

/// What the pipeline knows of a request when its plugins run.
pub struct RequestContext<'a> {
    /// Head of the client's request.
    pub parts: &'a Parts,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The access record (host, normalized path, client, request id).
    pub record: &'a AccessRecord,
    /// The matched rule.
    pub rule: &'a LoadedRule,
    /// Template parameters of the matched path.
    pub path_params: &'a [(String, String)],
}

/// `ctx.request` for a request: its head, and the body as a [`LazyBody`] the pipeline
/// takes back after `beforeRequest`.
pub fn request_info(request: &RequestContext<'_>, body: Option<&LazyBody>) -> RequestInfo {
    let RequestContext {
        parts,
        tls,
        record,
        rule,
        path_params,
    } = request;
    let scheme = if *tls { "https" } else { "http" };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(record.path.as_str(), |p| p.as_str());
    let backends = match &rule.action {
        LoadedAction::Forward(forward) => forward
            .targets
            .iter()
            .map(|target| target.backend.id.clone())
            .collect(),
        _ => Vec::new(),
    };
    RequestInfo {
        method: parts.method.as_str().to_owned(),
        url: format!("{scheme}://{}{path_and_query}", record.host),
        path: record.path.clone(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: header_pairs(&parts.headers),
        route: rule.route.clone(),
        path_params: path_params.iter().cloned().collect::<BTreeMap<_, _>>(),
        client_ip: Some(record.client),
        request_id: record.request_id.clone(),
        backends,
        body: body.map(|body| Arc::new(body.clone()) as Arc<dyn BodySource>),
    }
}

/// A body for plugins to read, unless it is empty.
pub fn lazy_body(body: ProxyBody, headers: &HeaderMap) -> Option<LazyBody> {
    if body.is_end_stream() {
        return None;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Some(LazyBody::new(body, length))
}

/// Headers as plugins see them: lower-case names in order, values as text.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The answer a plugin made in `beforeRequest`.
pub fn local_response(local: LocalResponse) -> Response<ProxyBody> {
    let mut response = Response::new(proxy_body::full(local.body));
    *response.status_mut() = StatusCode::from_u16(local.status).unwrap_or(StatusCode::OK);
    for (name, value) in &local.headers {
        // The runtime checked names and values when the plugin made them.
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(name.as_str()),
            header::HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Runs the chain's `afterResponse` hooks on `response` and applies what they changed.
/// The body is handed to them lazily: it is buffered only when a hook reads it.
pub async fn after_response(
    runtime: &ShardPlugins,
    chain: &Arc<Chain>,
    carry: Carry,
    response: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    if !carry.after_response_runs(chain) {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let lazy = lazy_body(body, &parts.headers);
    let info = ResponseInfo {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body: lazy
            .as_ref()
            .map(|body| Arc::new(body.clone()) as Arc<dyn BodySource>),
    };
    let patch = match runtime.after_response(chain, carry, info).await {
        AfterResponse::Continue(patch) => patch,
        AfterResponse::Failed(failure) => return Err(ProxyError::PluginFailed(failure)),
    };
    if let Some(status) = patch.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        parts.status = status;
    }
    patch.headers.apply_to_map(&mut parts.headers);
    let body = match (patch.body, lazy) {
        (Some(replaced), _) => {
            // The new body's length is its own; hyper frames it.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
            proxy_body::full(replaced)
        }
        (None, Some(lazy)) => lazy.take().await,
        (None, None) => proxy_body::empty(),
    };
    Ok(Response::from_parts(parts, body))
}

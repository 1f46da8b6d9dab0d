//! Every way the proxy can fail a request, and the one place where such a failure
//! becomes an HTTP response: a status and a JSON body saying what happened, never a stack.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use thiserror::Error;
use weir_plugin_runtime::PluginFailure;

use crate::body::{self, ProxyBody};

/// Why the proxy answered a request itself with an error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The request is malformed or ambiguous (bad path, smuggling-shaped framing).
    #[error("{0}")]
    BadRequest(String),
    /// The request's body is sent with a transfer coding other than plain `chunked`
    /// (such as `gzip, chunked`), which weir would otherwise drop on the way upstream.
    #[error("transfer coding {0:?} is not supported; only chunked is")]
    UnsupportedTransferCoding(String),
    /// No route matches the request.
    #[error("no route matches {host}{path}")]
    NoRoute {
        /// Host of the request.
        host: String,
        /// Normalized path.
        path: String,
    },
    /// The request body is larger than the proxy accepts.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The client stopped sending its request body for longer than the route's idle
    /// timeout.
    #[error("the request body stalled: {0}")]
    RequestBodyTimeout(String),
    /// The client's address is not one the rule serves (its Route's `sourceRanges`).
    #[error("client address {0} is not allowed")]
    ClientNotAllowed(std::net::IpAddr),
    /// The client is over a limit of its Route's `clientLimits`.
    #[error("too many requests from this client ({limit}); retry after {retry_after_secs} s")]
    ClientLimited {
        /// The limit it is over.
        limit: ClientLimit,
        /// Seconds until it may try again, as `Retry-After` says.
        retry_after_secs: u64,
    },
    /// No snapshot has been applied yet.
    #[error("the proxy has no configuration yet")]
    NotReady,
    /// The chosen backend's reference is invalid (a Gateway API backend of another kind,
    /// not permitted, or not found): answered 500, as the Gateway API asks.
    #[error("backend {backend} cannot be used: {why}")]
    BackendUnresolved {
        /// Backend id.
        backend: String,
        /// Why, as the route's status says it.
        why: String,
    },
    /// The chosen backend has no endpoint that can take the request.
    #[error("backend {backend} has no healthy endpoint")]
    NoHealthyUpstream {
        /// Backend id.
        backend: String,
    },
    /// The backend is at its concurrency limit; the request was shed instead of queued.
    #[error("backend {backend} is at its limit of concurrent requests")]
    Overloaded {
        /// Backend id.
        backend: String,
    },
    /// No connection to an endpoint could be opened.
    #[error("upstream {backend} is unreachable: {reason}")]
    UpstreamUnreachable {
        /// Backend id.
        backend: String,
        /// What went wrong, without addresses of internal hosts beyond the backend id.
        reason: String,
    },
    /// The upstream failed mid-exchange (reset, protocol error).
    #[error("upstream {backend} failed: {reason}")]
    UpstreamFailed {
        /// Backend id.
        backend: String,
        /// What went wrong.
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream {backend} did not answer within {timeout_ms} ms")]
    UpstreamTimeout {
        /// Backend id.
        backend: String,
        /// The timeout that ran out.
        timeout_ms: u64,
    },
    /// A plugin with `failurePolicy: Closed` failed (threw, overran its time budget, ran
    /// out of memory, or has no loaded version). The answer names the plugin; what went
    /// wrong (which may carry secrets) only goes to the log.
    #[error("plugin {} failed", .0.plugin)]
    PluginFailed(PluginFailure),
}

impl ProxyError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::ClientNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ClientLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotReady | Self::NoHealthyUpstream { .. } | Self::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::PluginFailed(_) => StatusCode::from_u16(PluginFailure::STATUS)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Self::UpstreamUnreachable { .. } | Self::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BackendUnresolved { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedTransferCoding(_) => "unsupported_transfer_coding",
            Self::NoRoute { .. } => "no_route",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::RequestBodyTimeout(_) => "request_body_timeout",
            Self::ClientNotAllowed(_) => "client_not_allowed",
            Self::ClientLimited { .. } => "client_rate_limited",
            Self::NotReady => "not_ready",
            Self::NoHealthyUpstream { .. } => "no_healthy_upstream",
            Self::Overloaded { .. } => "upstream_overloaded",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamFailed { .. } => "upstream_failed",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::PluginFailed(_) => "plugin_failed",
            Self::BackendUnresolved { .. } => "backend_unresolved",
        }
    }

    /// The response the client gets.
    pub fn into_response(self, request_id: &str) -> Response<ProxyBody> {
        let mut body =
            json!({ "error": self.code(), "message": self.to_string(), "requestId": request_id });
        if let Self::PluginFailed(failure) = &self {
            body["plugin"] = json!(failure.plugin);
        }
        let mut response = json_response(self.status(), &body);
        if let Self::ClientLimited {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// Which of a Route's `clientLimits` a client is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLimit {
    /// `requestsPerSecond` with its burst.
    Rate,
    /// `concurrentRequests`.
    Concurrency,
}

impl std::fmt::Display for ClientLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rate => "requests per second",
            Self::Concurrency => "requests in flight",
        })
    }
}

/// A JSON response with `content-type: application/json`.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<ProxyBody> {
    // Plain data with string keys: serializing it cannot fail.
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use weir_plugin_runtime::{FailureKind, Hook};

    use super::*;

    #[test]
    fn plugin_failures_name_the_plugin_and_hide_the_detail() {
        let error = ProxyError::PluginFailed(PluginFailure {
            plugin: "shop/jwt".into(),
            hook: Hook::BeforeRequest,
            kind: FailureKind::Exception,
            detail: "TypeError: secret at jwt.ts:3".into(),
        });
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.code(), "plugin_failed");
        assert!(!error.to_string().contains("secret"));
        assert_eq!(error.to_string(), "plugin shop/jwt failed");
    }

    #[test]
    fn client_limits_say_when_to_retry() {
        let response = ProxyError::ClientLimited {
            limit: ClientLimit::Rate,
            retry_after_secs: 3,
        }
        .into_response("id");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}

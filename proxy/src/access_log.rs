//! The access log: one structured line per request, written when its response body has
//! been sent (so bytes and durations are the real ones). It goes through `tracing` with
//! target `weir::access`, so the JSON log format makes it one JSON object per line.

use std::net::IpAddr;

use tokio::time::Instant;

use crate::body::BodyEnd;

/// What is known about a request while it is served.
#[derive(Debug)]
pub struct AccessRecord {
    /// Request id.
    pub request_id: String,
    /// Method.
    pub method: http::Method,
    /// Requested host.
    pub host: String,
    /// Normalized path (no query: queries often carry secrets).
    pub path: String,
    /// The client's address.
    pub client: IpAddr,
    /// `namespace/name` of the Route that matched.
    pub route: Option<String>,
    /// Endpoint of the last upstream try.
    pub upstream: Option<http::uri::Authority>,
    /// Time from the first upstream try to the response head, in milliseconds.
    pub upstream_ms: Option<f64>,
    /// Tries sent upstream.
    pub tries: u32,
    /// Error code when the proxy answered with an error.
    pub error: Option<&'static str>,
    /// `ctx.user` as the rule's plugins left it (JSON), when they set one.
    pub user: Option<String>,
    /// When the request arrived.
    pub started: Instant,
}

impl AccessRecord {
    /// A record for a request that just arrived.
    pub fn new(request_id: String, method: http::Method, client: IpAddr, started: Instant) -> Self {
        Self {
            request_id,
            method,
            host: String::new(),
            path: String::new(),
            client,
            route: None,
            upstream: None,
            upstream_ms: None,
            tries: 0,
            error: None,
            user: None,
            started,
        }
    }

    /// Writes the line.
    pub fn write(&self, status: u16, end: BodyEnd) {
        tracing::info!(
            target: "weir::access",
            request_id = %self.request_id,
            method = %self.method,
            host = %self.host,
            path = %self.path,
            client = %self.client,
            route = self.route.as_deref().unwrap_or(crate::metrics::NO_ROUTE),
            upstream = self.upstream.as_ref().map_or("-", http::uri::Authority::as_str),
            status,
            bytes_sent = end.bytes,
            complete = end.complete,
            tries = self.tries,
            upstream_ms = self.upstream_ms.unwrap_or(0.0),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            error = self.error.unwrap_or("-"),
            user = self.user.as_deref().unwrap_or("-"),
        );
    }
}

//! Prometheus metrics. Labels are Route names and backend ids from the snapshot, never raw
//! paths or hosts from requests, so cardinality stays bounded by configuration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::Refusal;

/// Route label of requests that matched no route.
pub const NO_ROUTE: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClass {
    route: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendKind {
    backend: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The proxy's metric families.
pub struct Metrics {
    requests: Family<RouteClass, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
    retries: Family<RouteLabel, Counter>,
    upstream_errors: Family<BackendKind, Counter>,
    ejections: Family<BackendLabel, Counter>,
    snapshot_loads: Family<Outcome, Counter>,
    /// Client connections open now.
    pub active_connections: Gauge,
    connections_refused: Family<RefusalLabel, Counter>,
    mirror_requests: Family<ResultLabel, Counter>,
    /// Version of the snapshot being served.
    pub snapshot_version: Gauge,
}

/// The metric handles of one route, made once per snapshot so requests do not look
/// labels up.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    retries: Counter,
}

/// What an upstream try failed with, as counted.
#[derive(Clone, Copy, Debug)]
pub enum UpstreamErrorKind {
    /// Could not connect.
    Connect,
    /// Connection broke.
    Reset,
    /// No answer in time.
    Timeout,
    /// Shed at the concurrency limit.
    Overloaded,
    /// No endpoint available.
    NoEndpoint,
}

/// What came of a copy of a request for a mirror, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorResult {
    /// The mirror answered (with any status).
    Sent,
    /// It did not: no endpoint, no connection, reset, out of time, or its copy of the
    /// body was given up.
    Failed,
    /// Not sent: the shard had as many mirrors in flight as it allows.
    Skipped,
}

impl Metrics {
    /// Registers the families in `registry` (prefix `weir`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            retries: Family::default(),
            upstream_errors: Family::default(),
            ejections: Family::default(),
            snapshot_loads: Family::default(),
            active_connections: Gauge::default(),
            connections_refused: Family::default(),
            mirror_requests: Family::default(),
            snapshot_version: Gauge::default(),
        };
        let weir = registry.sub_registry_with_prefix("weir");
        weir.register(
            "requests",
            "Requests answered, by route and status class",
            metrics.requests.clone(),
        );
        weir.register(
            "request_duration_seconds",
            "Time from request head to response head, by route",
            metrics.durations.clone(),
        );
        weir.register(
            "upstream_retries",
            "Retries sent upstream, by route",
            metrics.retries.clone(),
        );
        weir.register(
            "upstream_errors",
            "Failed upstream tries, by backend and kind (connect, reset, timeout, overloaded, no_endpoint)",
            metrics.upstream_errors.clone(),
        );
        weir.register(
            "outlier_ejections",
            "Endpoints ejected by passive health checks, by backend",
            metrics.ejections.clone(),
        );
        weir.register(
            "snapshot_loads",
            "Snapshots offered, by outcome (applied, rejected)",
            metrics.snapshot_loads.clone(),
        );
        weir.register(
            "active_connections",
            "Client connections open",
            metrics.active_connections.clone(),
        );
        weir.register(
            "connections_refused",
            "Client connections closed when accepted, by the limit they were beyond",
            metrics.connections_refused.clone(),
        );
        weir.register(
            "mirror_requests",
            "Copies of requests for mirrors, by result (sent: the mirror answered; failed: it did not; skipped: too many mirrors in flight)",
            metrics.mirror_requests.clone(),
        );
        weir.register(
            "snapshot_version",
            "Version of the snapshot being served",
            metrics.snapshot_version.clone(),
        );
        metrics
    }

    /// The handles of `route`.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let class = |status_class| {
            self.requests
                .get_or_create(&RouteClass {
                    route: route.to_owned(),
                    status_class,
                })
                .clone()
        };
        let label = RouteLabel {
            route: route.to_owned(),
        };
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.durations.get_or_create(&label).clone(),
            retries: self.retries.get_or_create(&label).clone(),
        }
    }

    /// Counts a failed upstream try.
    pub fn upstream_error(&self, backend: &str, kind: UpstreamErrorKind) {
        let kind = match kind {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Overloaded => "overloaded",
            UpstreamErrorKind::NoEndpoint => "no_endpoint",
        };
        self.upstream_errors
            .get_or_create(&BackendKind {
                backend: backend.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts an ejection.
    pub fn ejection(&self, backend: &str) {
        self.ejections
            .get_or_create(&BackendLabel {
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// Counts a snapshot offered to the proxy.
    pub fn snapshot_load(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.snapshot_loads
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// Counts a copy of a request for a mirror.
    pub fn mirror(&self, result: MirrorResult) {
        let result = match result {
            MirrorResult::Sent => "sent",
            MirrorResult::Failed => "failed",
            MirrorResult::Skipped => "skipped",
        };
        self.mirror_requests
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a connection closed when accepted.
    pub fn connection_refused(&self, refusal: Refusal) {
        self.connections_refused
            .get_or_create(&RefusalLabel {
                reason: refusal.label(),
            })
            .inc();
    }
}

impl RouteMetrics {
    /// Records an answered request.
    pub fn record(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }

    /// Records a retry.
    pub fn retry(&self) {
        self.retries.inc();
    }
}

/// The registry in Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

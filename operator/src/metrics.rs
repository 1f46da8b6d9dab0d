//! Prometheus metrics, and the HTTP server of `/metrics`, `/healthz` and `/readyz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Labels naming what failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

/// Labels of a push's or a status write's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The operator's metrics, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    build_seconds: Histogram,
    push_seconds: Family<OutcomeLabels, Histogram>,
    proxies: Gauge,
    proxies_in_sync: Gauge,
    snapshot_version: Gauge,
    applied_version: Gauge,
    status_writes: Family<OutcomeLabels, Counter>,
    status_queue: Gauge,
    leader: Gauge,
    ready: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir_operator");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Snapshot builds followed by pushes and status writes",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Failures by kind: watch, push, status, event, lease",
            errors.clone(),
        );
        let build_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "snapshot_build_duration_seconds",
            "Time compiling one snapshot",
            build_seconds.clone(),
        );
        let push_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "push_duration_seconds",
            "Time pushing a snapshot to one proxy, retries included",
            push_seconds.clone(),
        );
        let proxies = Gauge::default();
        registry.register("proxies", "Ready proxy endpoints", proxies.clone());
        let proxies_in_sync = Gauge::default();
        registry.register(
            "proxies_in_sync",
            "Proxy endpoints serving the current snapshot",
            proxies_in_sync.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the current snapshot",
            snapshot_version.clone(),
        );
        let applied_version = Gauge::default();
        registry.register(
            "snapshot_applied_version",
            "Version of the last snapshot every proxy acknowledged",
            applied_version.clone(),
        );
        let status_writes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "status_writes",
            "Status patches sent, by outcome: written, gone (object deleted), conflict (an HTTPRoute changed since its status was decided), failed",
            status_writes.clone(),
        );
        let status_queue = Gauge::default();
        registry.register(
            "status_queue",
            "Status writes queued or in flight",
            status_queue.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            errors,
            build_seconds,
            push_seconds,
            proxies,
            proxies_in_sync,
            snapshot_version,
            applied_version,
            status_writes,
            status_queue,
            leader,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts a reconcile.
    pub fn reconciled(&self, build: Duration, version: u64) {
        self.reconciles.inc();
        self.build_seconds.observe(build.as_secs_f64());
        self.snapshot_version.set(version as i64);
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Counts a watch error on `kind` objects.
    pub fn watch_error(&self, kind: &str) {
        self.error(&format!("watch_{}", kind.to_lowercase()));
    }

    /// Observes one push.
    pub fn pushed(&self, took: Duration, ok: bool) {
        let outcome = if ok { "applied" } else { "failed" };
        self.push_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
        if !ok {
            self.error("push");
        }
    }

    /// Sets the proxy gauges.
    pub fn proxies(&self, total: usize, in_sync: usize) {
        self.proxies.set(total as i64);
        self.proxies_in_sync.set(in_sync as i64);
    }

    /// Records that every proxy acknowledged snapshot `version`.
    pub fn applied(&self, version: u64) {
        self.applied_version.set(version as i64);
    }

    /// Counts one status write.
    pub fn status_write(&self, sent: crate::status::Sent) {
        let outcome = match sent {
            crate::status::Sent::Written => "written",
            crate::status::Sent::Gone => "gone",
            crate::status::Sent::Conflict => "conflict",
            crate::status::Sent::Failed => {
                self.error("status");
                "failed"
            }
        };
        self.status_writes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Sets the gauge of status writes waiting.
    pub fn status_queue(&self, outstanding: usize) {
        self.status_queue.set(outstanding as i64);
    }

    /// Sets the leader gauge.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Marks the operator ready (stores synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether the operator is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match path {
            "/metrics" => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.encode(),
            ),
            "/healthz" => (
                StatusCode::OK,
                "application/json",
                r#"{"status":"ok"}"#.into(),
            ),
            "/readyz" if self.is_ready() => (
                StatusCode::OK,
                "application/json",
                r#"{"status":"ready"}"#.into(),
            ),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                r#"{"error":"not_ready","message":"the watches have not synced yet"}"#.into(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":"not_found"}"#.into(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    }
}

/// Binds the metrics address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    futures::pin_mut!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = metrics.respond(request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_and_health_answers() {
        let metrics = Metrics::new();
        metrics.reconciled(Duration::from_millis(3), 42);
        metrics.pushed(Duration::from_millis(5), false);
        metrics.proxies(3, 2);
        let text = metrics.encode();
        for name in [
            "weir_operator_reconciles_total 1",
            "weir_operator_errors_total{kind=\"push\"} 1",
            "weir_operator_snapshot_build_duration_seconds_count 1",
            "weir_operator_push_duration_seconds_count{outcome=\"failed\"} 1",
            "weir_operator_proxies_in_sync 2",
            "weir_operator_snapshot_version 42",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert_eq!(metrics.respond("/healthz").status(), StatusCode::OK);
        assert_eq!(
            metrics.respond("/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.set_ready(true);
        assert_eq!(metrics.respond("/readyz").status(), StatusCode::OK);
        assert_eq!(metrics.respond("/nope").status(), StatusCode::NOT_FOUND);
    }
}

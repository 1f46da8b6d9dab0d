//! Logs and traces. Logs are `tracing` events, as JSON lines or text. Traces: when an
//! OTLP endpoint is configured, each request and each upstream try is an OpenTelemetry
//! span exported over OTLP/HTTP, continuing the client's W3C `traceparent` and passing a
//! new one upstream; without an endpoint, `traceparent` travels through untouched and
//! spans cost nothing.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Target of the spans exported as OpenTelemetry spans; nothing else sees them.
pub const SPAN_TARGET: &str = "weir::otel";

/// Timeout of one OTLP export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Tracing set up for the process; shut it down to flush spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: logs filtered by `RUST_LOG` (default `info`), and
    /// an OTLP span exporter when `otlp_endpoint` is set. Must run inside a tokio runtime.
    pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Self, String> {
        let filter = || {
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info"))
                .add_directive(
                    format!("{SPAN_TARGET}=off")
                        .parse()
                        .expect("a valid directive"),
                )
        };
        let logs = match format {
            // The thread names the shard (`weir-shard-N`) that served a request.
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_thread_names(true)
                .with_filter(filter())
                .boxed(),
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_thread_names(true)
                .with_filter(filter())
                .boxed(),
        };
        let (provider, spans) = match otlp_endpoint {
            Some(endpoint) => {
                let provider = otlp_provider(endpoint)?;
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("weir-proxy"))
                    .with_filter(
                        tracing_subscriber::filter::Targets::new()
                            .with_target(SPAN_TARGET, tracing::Level::INFO),
                    );
                opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                (Some(provider), Some(layer))
            }
            None => (None, None),
        };
        tracing_subscriber::registry()
            .with(logs)
            .with(spans)
            .try_init()
            .map_err(|e| format!("installing the log subscriber: {e}"))?;
        Ok(Self { provider })
    }

    /// Whether spans are exported.
    pub fn exports_spans(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!("flushing spans: {e}");
        }
    }
}

fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let client = OnTokio {
        inner: opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|e| format!("OTLP needs a tokio runtime: {e}"))?,
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("weir-proxy")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Runs the hyper-based OTLP client on the proxy's tokio runtime: the batch exporter
/// calls it from its own thread, which has no runtime.
#[derive(Debug)]
struct OnTokio {
    inner: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OnTokio {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

/// Makes `span` a child of the client's trace context, if the request carries one.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Writes `span`'s trace context into the upstream request's `traceparent`.
pub fn inject_trace(span: &tracing::Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

//! Traces: with `--otlp-endpoint`, the proxy process exports a span per request and per
//! upstream try over OTLP/HTTP, continuing the client's W3C trace and passing its own
//! span upstream as `traceparent`. Runs the real binary against a real OTLP/HTTP receiver.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::process::ProxyProcess;
use support::*;
use tokio::net::TcpListener;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// An OTLP/HTTP receiver: decodes `POST /v1/traces` and keeps the spans.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        for resource in export.resource_spans {
                            for scope in resource.scope_spans {
                                kept.lock().unwrap().extend(scope.spans);
                            }
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (endpoint, spans)
}

#[tokio::test]
async fn requests_and_upstream_tries_become_spans_of_the_client_trace() {
    let (endpoint, spans) = otlp_receiver().await;
    let upstream = Upstream::named("ok").await;
    let proxy = ProxyProcess::start(
        &route(
            "traced",
            &format!("  rules: [{{backends: [{{url: '{}'}}]}}]", upstream.url()),
        ),
        &["--otlp-endpoint", &endpoint],
    );
    let port = proxy.port;
    let url = format!("http://127.0.0.1:{port}/traced");
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = Request::get(&url)
                .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
                .body(Full::<Bytes>::default())
                .unwrap();
            if let Ok(response) = client().request(request).await {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the proxy comes up");
    assert_eq!(answer.status(), StatusCode::OK);

    // SIGTERM: the proxy drains and flushes its spans before exiting.
    let status = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    let spans = spans.lock().unwrap().clone();
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
            .clone()
    };
    let request = named("request");
    let upstream_try = named("upstream");
    assert_eq!(
        hex(&request.trace_id),
        CLIENT_TRACE,
        "the client's trace continues"
    );
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(upstream_try.trace_id, request.trace_id);
    assert_eq!(
        upstream_try.parent_span_id, request.span_id,
        "the upstream try is a child of the request"
    );
    let sent = upstream.requests()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sent,
        format!("00-{CLIENT_TRACE}-{}-01", hex(&upstream_try.span_id)),
        "the upstream sees the try's span"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

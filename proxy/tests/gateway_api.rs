//! What the proxy does for Gateway API routes beyond weir's own Routes: a backend whose
//! reference is invalid gets its share of the requests answered 500.

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_backend_reference_gets_its_share_answered_500() {
    let upstream = Upstream::start(|_| async { text(StatusCode::OK, "served") }).await;
    let dir = tempfile::tempdir().unwrap();
    let port = upstream.addr.port();
    let manifests = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: weir}}
spec: {{controllerName: weir.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  gatewayClassName: weir
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: partly}}
spec:
  parentRefs: [{{name: public}}]
  rules:
  - backendRefs:
    - {{name: web, port: 80}}
    - {{name: missing, port: 80}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-local
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"
    );
    std::fs::write(dir.path().join("gateway.yaml"), manifests).unwrap();
    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;
    let client = client();
    let (mut served, mut failed) = (0, 0);
    for _ in 0..60 {
        let request = Request::builder()
            .uri(proxy.url("/"))
            .header("host", "shop.localhost")
            .body(Full::default())
            .unwrap();
        let answer = send(&client, request).await;
        match answer.status {
            StatusCode::OK => served += 1,
            StatusCode::INTERNAL_SERVER_ERROR => {
                let body = answer.json();
                assert_eq!(body["error"], "backend_unresolved", "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("Service default/missing with port 80 not found"),
                    "{body}"
                );
                failed += 1;
            }
            other => panic!("unexpected {other}: {}", answer.text()),
        }
    }
    // Equal weights: both shares are seen (all 60 one way has odds of 2^-59).
    assert!(served > 0 && failed > 0, "{served} served, {failed} failed");
    assert_eq!(upstream.requests().len(), served);
    proxy.stop().await;
}

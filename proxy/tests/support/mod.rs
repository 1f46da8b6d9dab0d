//! Test support: a proxy started in-process on loopback ports, real upstream servers on
//! loopback, clients, and snapshots compiled from manifests as users write them.

#![allow(dead_code, missing_docs)]

pub mod process;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use weir_crds::manifest::{Document, Manifests, parse};
use weir_crds::snapshot::Snapshot;
use weir_proxy::BoundAddresses;
use weir_proxy::Proxy;
use weir_proxy::config::ProxyConfig;
use weir_proxy::gateway::Gateway;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A proxy running in-process.
pub struct TestProxy {
    pub addresses: BoundAddresses,
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts a proxy on loopback with free ports; `tweak` adjusts the config.
    pub async fn start(tweak: impl FnOnce(&mut ProxyConfig)) -> Self {
        // Logs show with `RUST_LOG=...` (errors only otherwise), captured per test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.access_log = false;
        tweak(&mut config);
        let proxy = Proxy::start(config, Registry::default(), Vec::new())
            .await
            .expect("proxy starts");
        let addresses = proxy.addresses();
        let gateway = proxy.gateway().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(proxy.run(async move {
            let _ = rx.await;
        }));
        Self {
            addresses,
            gateway,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Applies manifests compiled as a snapshot, numbered above the current one.
    pub async fn apply_yaml(&self, yaml: &str) -> Snapshot {
        let snapshot = compile_yaml(yaml, self.gateway.current().version + 1);
        let applied = self
            .gateway
            .apply(&snapshot)
            .await
            .expect("snapshot applies");
        assert!(applied.failures.is_empty(), "{:?}", applied.failures);
        snapshot
    }

    /// `http://127.0.0.1:<port>` of the plain-text listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.traffic)
    }

    /// `http://127.0.0.1:<port>` of the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.admin)
    }

    /// Stops accepting and waits for the drain to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE * 3, task)
                .await
                .expect("proxy stops")
                .unwrap();
        }
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

/// Parses manifests, failing the test on a document that does not parse.
pub fn manifests(yaml: &str) -> Manifests {
    let mut manifests = Manifests::default();
    for document in parse(yaml) {
        if let Document::Object(object) = document.expect("manifest parses") {
            manifests.add(object);
        }
    }
    manifests
}

/// `files` of `examples/NAME` in a temporary directory, their loopback ports (written
/// `port: N}`) swapped for the test's: `ports` maps the example's to the test's.
pub fn example_dir(example: &str, files: &[&str], ports: &[(u16, u16)]) -> tempfile::TempDir {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(example);
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        let mut text = std::fs::read_to_string(source.join(file)).unwrap();
        for (from, to) in ports {
            text = text.replace(&format!("port: {from}}}"), &format!("port: {to}}}"));
        }
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

/// The manifests of `files` in `dir`.
pub fn manifests_in(dir: &std::path::Path, files: &[&str]) -> Manifests {
    let texts: Vec<String> = files
        .iter()
        .map(|file| std::fs::read_to_string(dir.join(file)).unwrap())
        .collect();
    manifests(&texts.join("\n---\n"))
}

/// Compiles manifests into a snapshot with the given version.
pub fn compile_yaml(yaml: &str, version: u64) -> Snapshot {
    let manifests = manifests(yaml);
    let compilation = weir_crds::compile(&manifests.inputs());
    for report in &compilation.reports {
        assert!(
            report.diagnostics.is_empty(),
            "{}: {:?}",
            report.object,
            report.diagnostics
        );
    }
    let mut snapshot = compilation.snapshot;
    snapshot.version = version;
    snapshot
}

/// A Route named `name` in namespace `test` with a spec (YAML, indented by two).
pub fn route(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: test}}\nspec:\n{spec}\n"
    )
}

/// What an upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync>;

/// A real HTTP/1.1 and HTTP/2 (h2c) server on loopback that records what it sees.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// An upstream answering 200 with body `name`, so tests can tell upstreams apart.
    pub async fn named(name: &'static str) -> Self {
        Self::start(move |_| async move { text(StatusCode::OK, name) }).await
    }

    /// An upstream answering with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |seen| Box::pin(handler(seen)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let seen = seen.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let handler = handler.clone();
                            let seen = seen.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let record = Seen {
                                    method: parts.method.to_string(),
                                    uri: parts.uri.to_string(),
                                    version: parts.version,
                                    headers: parts.headers,
                                    body,
                                };
                                seen.lock().unwrap().push(record.clone());
                                Ok::<_, Infallible>(handler(record).await)
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// An upstream that holds every request until the returned gate gets a permit for
    /// it, then answers 200 with `body`.
    pub async fn gated(body: &'static str) -> (Self, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = gate.clone();
        let upstream = Self::start(move |_| {
            let gate = held.clone();
            async move {
                let _pass = gate.acquire().await;
                text(StatusCode::OK, body)
            }
        })
        .await;
        (upstream, gate)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (with patience) until `condition` holds.
pub async fn wait_for(condition: impl Fn() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition reached in time");
}

/// A response with a text body.
pub fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

/// An HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` with `client` and reads the whole answer.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Answer {
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("answer in time")
        .expect("request sent");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body in time")
        .expect("body read")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET url` with a Host header.
pub async fn get(url: &str, host: &str) -> Answer {
    let request = Request::get(url)
        .header(http::header::HOST, host)
        .body(Full::default())
        .unwrap();
    send(&client(), request).await
}

/// Sends raw bytes and returns what the proxy answers before closing.
pub async fn raw_exchange(proxy: &TestProxy, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy.addresses.traffic).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A TLS Secret `secret` (YAML) with a fresh self-signed certificate for `host`, and
/// that certificate.
pub fn tls_secret(host: &str, secret: &str) -> (String, CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}, namespace: test}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(certified.cert.pem()),
        indent(certified.signing_key.serialize_pem()),
    );
    (yaml, certified.cert.der().clone())
}

/// Opens TLS to the proxy with SNI `host`, trusting `root`; returns the presented
/// certificate, the ALPN protocol, and the stream.
pub async fn tls_connect(
    proxy: &TestProxy,
    host: &'static str,
    root: &CertificateDer<'static>,
) -> (
    CertificateDer<'static>,
    Option<Vec<u8>>,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = TcpStream::connect(proxy.addresses.tls.unwrap())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host).unwrap(), stream)
        .await
        .expect("handshake with the right certificate");
    let (_, session) = tls.get_ref();
    let presented = session.peer_certificates().unwrap()[0].clone().into_owned();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    (presented, alpn, tls)
}

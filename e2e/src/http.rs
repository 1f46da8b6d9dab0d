//! Traffic: one HTTP/1.1 request per connection to a proxy, in plain text or over TLS
//! with SNI, and a load generator that counts failures while a scenario changes things.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Time one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, the TLS handshake or the exchange failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The response was not HTTP.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The request took longer than its timeout.
    #[error("no response within {REQUEST_TIMEOUT:?}")]
    Timeout,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body as text.
    pub body: String,
    /// The certificate the server presented (TLS only).
    pub certificate: Option<CertificateDer<'static>>,
}

impl Response {
    /// The header `name` as text, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// `GET http://<host><path>` sent to `proxy`.
pub async fn get(proxy: SocketAddr, host: &str, path: &str) -> Result<Response, HttpError> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let stream = TcpStream::connect(proxy).await?;
        exchange(stream, host, path, None).await
    })
    .await
    .map_err(|_| HttpError::Timeout)?
}

/// `GET https://<host><path>` sent to `proxy` with SNI `host`, trusting only `roots`.
pub async fn get_tls(
    proxy: SocketAddr,
    host: &str,
    path: &str,
    roots: &[CertificateDer<'static>],
) -> Result<Response, HttpError> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| std::io::Error::other(format!("a trust anchor: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(store)
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let stream = TcpStream::connect(proxy).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned());
        exchange(tls, host, path, certificate).await
    })
    .await
    .map_err(|_| HttpError::Timeout)?
}

async fn exchange<S>(
    stream: S,
    host: &str,
    path: &str,
    certificate: Option<CertificateDer<'static>>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let response = sender.send_request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    connection.abort();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        certificate,
    })
}

/// Requests sent in a loop by a few concurrent clients until stopped, counting the ones
/// that failed: no response, or a response `ok` refuses.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    clients: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    /// Clients sending requests at once, each one after another.
    const CLIENTS: usize = 4;

    /// Starts sending `GET http://<host><path>` to `proxy`.
    pub fn start(
        proxy: SocketAddr,
        host: &str,
        path: &str,
        ok: impl Fn(&Response) -> bool + Send + Sync + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(ok);
        let clients = (0..Self::CLIENTS)
            .map(|_| {
                let (stop, sent, ok) = (stop.clone(), sent.clone(), ok.clone());
                let (host, path) = (host.to_owned(), path.to_owned());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match get(proxy, &host, &path).await {
                            Ok(response) if ok(&response) => {}
                            Ok(response) => failures.push(format!(
                                "{} {}: {}",
                                response.status,
                                response.body.trim(),
                                headers_line(&response.headers)
                            )),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    failures
                })
            })
            .collect();
        Self {
            stop,
            sent,
            clients,
        }
    }

    /// Stops, returning how many requests were sent and the failures.
    pub async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for client in self.clients {
            failures.extend(client.await.expect("a load client does not panic"));
        }
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

fn headers_line(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

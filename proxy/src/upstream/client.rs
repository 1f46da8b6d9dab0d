//! HTTP clients to upstreams with pooled keep-alive connections. A [`Connector`] is one
//! way of connecting (protocol, connect timeout, TLS server name), named once when a
//! snapshot loads; every shard has its own connections ([`ShardClients`]), so connection
//! pools are never shared between shards and a request never waits on another shard's
//! lock. Plain HTTP/1.1 goes through the shard's [`Http1Pool`], driven by the request's
//! own task; HTTPS (HTTP/1.1 or HTTP/2 by ALPN), h2c and protocol upgrades go through a
//! hyper-util client per shard and connector, whose connections run as tasks of the
//! shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use weir_crds::snapshot::BackendProtocol;

use super::http1::{Http1Error, Http1Pool, PoolKey, PooledBody};
use crate::body::ProxyBody;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A client for one way of connecting.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// One way of connecting to upstreams.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectorKey {
    /// HTTP/1.1, HTTP/2 without TLS, or HTTPS.
    pub protocol: BackendProtocol,
    /// Connect timeout, in milliseconds.
    pub connect_ms: u64,
    /// The TLS server name checked in the upstream's certificate.
    pub server_name: Option<String>,
}

/// A way of connecting with its process-wide number, which shards index their clients by.
#[derive(Clone, Debug)]
pub struct Connector {
    /// Dense, stable for the life of the process.
    pub id: usize,
    /// What it connects with.
    pub key: Arc<ConnectorKey>,
}

/// The connectors of a proxy and the TLS setup they share. Consulted when a snapshot is
/// loaded (and for `ctx.forward` URLs), never for an ordinary request.
pub struct UpstreamClients {
    tls: rustls::ClientConfig,
    known: Mutex<HashMap<Arc<ConnectorKey>, usize>>,
}

impl UpstreamClients {
    /// Connectors verifying HTTPS upstreams against the Mozilla roots plus `extra_roots`.
    pub fn new(
        extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in extra_roots {
            roots.add(root)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The connector for a backend's protocol, a connect timeout and a TLS server name.
    pub fn connector(
        &self,
        protocol: BackendProtocol,
        connect_ms: u64,
        server_name: Option<&str>,
    ) -> Connector {
        let key = ConnectorKey {
            protocol,
            connect_ms,
            server_name: server_name.map(str::to_owned),
        };
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((key, id)) = known.get_key_value(&key) {
            return Connector {
                id: *id,
                key: key.clone(),
            };
        }
        let id = known.len();
        let key = Arc::new(key);
        known.insert(key.clone(), id);
        Connector { id, key }
    }

    fn build(&self, key: &ConnectorKey) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(key.connect_ms)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http();
        let server_name = key
            .server_name
            .clone()
            .and_then(|name| ServerName::try_from(name).ok());
        let builder = match server_name {
            // Requests name the endpoint's address; TLS must name the backend.
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_all_versions().wrap_connector(http);
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        if key.protocol == BackendProtocol::H2c {
            client.http2_only(true);
        }
        client.build(connector)
    }
}

/// One shard's upstream connections: its HTTP/1.1 pool, and its clients for the other
/// protocols by connector id, made on first use. Lives on the shard.
pub struct ShardClients {
    http1: Rc<Http1Pool>,
    by_connector: RefCell<Vec<Option<UpstreamClient>>>,
}

impl ShardClients {
    /// The clients of the calling shard (its pool sweeps idle connections as a task of
    /// the shard).
    pub fn start() -> Self {
        Self {
            http1: Http1Pool::start(),
            by_connector: RefCell::new(Vec::new()),
        }
    }

    /// Sends `request` (absolute URI of the endpoint, `Host` set) the way `connector`
    /// says; `upgrade` when the request asks for a protocol upgrade.
    pub async fn send(
        &self,
        clients: &UpstreamClients,
        connector: &Connector,
        mut request: Request<ProxyBody>,
        upgrade: bool,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let in_task = connector.key.protocol == BackendProtocol::Http && !upgrade;
        match request.uri().authority().cloned() {
            Some(authority) if in_task => {
                let key = PoolKey {
                    authority,
                    connect_timeout: Duration::from_millis(connector.key.connect_ms),
                };
                // HTTP/1.1 upstreams get the origin form.
                if let Some(path) = request.uri().path_and_query().cloned() {
                    *request.uri_mut() = path.into();
                }
                let response = self.http1.send(&key, request).await?;
                Ok(response.map(UpstreamBody::Pooled))
            }
            _ => {
                let client = self.client(clients, connector);
                let response = client.request(request).await?;
                Ok(response.map(UpstreamBody::Shared))
            }
        }
    }

    fn client(&self, clients: &UpstreamClients, connector: &Connector) -> UpstreamClient {
        let mut by_connector = self.by_connector.borrow_mut();
        if by_connector.len() <= connector.id {
            by_connector.resize(connector.id + 1, None);
        }
        by_connector[connector.id]
            .get_or_insert_with(|| clients.build(&connector.key))
            .clone()
    }
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Through the shard's HTTP/1.1 pool.
    #[error(transparent)]
    Http1(#[from] Http1Error),
    /// Through a shard's hyper-util client.
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

impl UpstreamError {
    /// Whether no connection was made (so the request was never sent).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Http1(e) => e.is_connect(),
            Self::Client(e) => e.is_connect(),
        }
    }

    /// The hyper error of the exchange, if it got that far.
    pub fn hyper_error(&self) -> Option<&hyper::Error> {
        match self {
            Self::Http1(Http1Error::Http(e)) => Some(e),
            Self::Http1(Http1Error::Connect { .. }) => None,
            Self::Client(e) => std::error::Error::source(e)?.downcast_ref(),
        }
    }
}

/// An upstream's response body, from either kind of client.
pub enum UpstreamBody {
    /// From the shard's HTTP/1.1 pool.
    Pooled(PooledBody),
    /// From a hyper-util client.
    Shared(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Pooled(body) => Pin::new(body).poll_frame(cx),
            Self::Shared(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(body) => body.is_end_stream(),
            Self::Shared(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Pooled(body) => body.size_hint(),
            Self::Shared(body) => body.size_hint(),
        }
    }
}

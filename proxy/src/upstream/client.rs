//! HTTP clients to upstreams with pooled keep-alive connections. A [`Connector`] is one
//! way of connecting (protocol, connect timeout, TLS server name), named once when a
//! snapshot loads; every shard has its own client per connector ([`ShardClients`]), so
//! connection pools are never shared between shards and a request never waits on another
//! shard's lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use weir_crds::snapshot::BackendProtocol;

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

/// One shard's clients, by connector id, made on first use.
#[derive(Default)]
pub struct ShardClients {
    by_connector: RefCell<Vec<Option<UpstreamClient>>>,
}

impl ShardClients {
    /// This shard's client for `connector`.
    pub fn get(&self, clients: &UpstreamClients, connector: &Connector) -> UpstreamClient {
        let mut by_connector = self.by_connector.borrow_mut();
        if by_connector.len() <= connector.id {
            by_connector.resize(connector.id + 1, None);
        }
        by_connector[connector.id]
            .get_or_insert_with(|| clients.build(&connector.key))
            .clone()
    }
}

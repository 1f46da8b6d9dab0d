//! HTTP clients to upstreams with pooled keep-alive connections. One client per way of
//! connecting (protocol, connect timeout, TLS server name); within a client, connections
//! are pooled per endpoint, since requests name the endpoint's address.

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

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    protocol: BackendProtocol,
    connect_ms: u64,
    server_name: Option<String>,
}

/// The clients of a proxy, made on first use.
pub struct UpstreamClients {
    tls: rustls::ClientConfig,
    clients: Mutex<HashMap<ClientKey, UpstreamClient>>,
}

impl UpstreamClients {
    /// Clients verifying HTTPS upstreams against the Mozilla roots plus `extra_roots`.
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
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The client for a backend's protocol, a connect timeout and a TLS server name.
    pub fn get(
        &self,
        protocol: BackendProtocol,
        connect_ms: u64,
        server_name: Option<&str>,
    ) -> UpstreamClient {
        let key = ClientKey {
            protocol,
            connect_ms,
            server_name: server_name.map(str::to_owned),
        };
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clients
            .entry(key)
            .or_insert_with_key(|key| self.build(key))
            .clone()
    }

    fn build(&self, key: &ClientKey) -> UpstreamClient {
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

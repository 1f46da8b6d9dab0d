//! weir's data plane. A proxy serves a snapshot (routes, backends, certificates,
//! plugins) that the operator pushes to its admin listener, or that it compiles itself
//! from a directory of manifests in standalone mode. Snapshots swap atomically: requests
//! in flight finish on the one they started with.

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod body;
pub mod certs;
pub mod cli;
pub mod client_limits;
pub mod config;
pub mod connection;
pub mod cors;
pub mod error;
pub mod forward;
pub mod framing;
pub mod gateway;
pub mod headers;
pub mod loaded;
pub mod metrics;
pub mod pipeline;
pub mod plugins;
pub mod rewrite;
pub mod router;
pub mod server;
pub mod shard;
pub mod source_ranges;
pub mod standalone;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use admin::AdminToken;
use config::ProxyConfig;
use gateway::Gateway;
use server::{AdminSetup, ControlListeners};
use shard::listeners::{self, Sharing};
use shard::thread::{ShardInbound, Shards};
use standalone::{ConfigDir, DirWatch};
use upstream::client::UpstreamClients;

/// Why a proxy could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is unusable (exit code 64).
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound, or a shard could not start.
    #[error("binding listeners: {0}")]
    Bind(#[from] std::io::Error),
}

/// Where a proxy listens.
#[derive(Clone, Copy, Debug)]
pub struct BoundAddresses {
    /// Plain-text traffic.
    pub traffic: SocketAddr,
    /// TLS traffic.
    pub tls: Option<SocketAddr>,
    /// Admin.
    pub admin: SocketAddr,
    /// Health, readiness and metrics.
    pub metrics: Option<SocketAddr>,
}

/// A proxy with its listeners bound and its shards serving.
pub struct Proxy {
    gateway: Arc<Gateway>,
    control: ControlListeners,
    admin: AdminSetup,
    shards: Shards,
    addresses: BoundAddresses,
    config_watch: Option<DirWatch>,
}

impl Proxy {
    /// Checks the configuration, binds the listeners, starts the shards and, in
    /// standalone mode, compiles and loads the config directory once before the shards
    /// accept their first connection. Runs on the control thread's
    /// runtime, where the admin listener and snapshot loading live.
    pub async fn start(
        config: ProxyConfig,
        registry: Registry,
        extra_upstream_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, StartError> {
        let metrics_need_token = config.metrics_require_token;
        let token = AdminToken::from_file(config.admin_token_file.as_deref())
            .map_err(|e| StartError::Config(format!("--admin-token-file {e}")))?;
        if config.admin_tls.is_none()
            && !config.admin_listen.ip().is_loopback()
            && !config.admin_plaintext_allowed
        {
            return Err(StartError::Config(format!(
                "--admin-listen {} is not a loopback address and has no TLS: snapshots carry TLS private keys and the push token. Give it --admin-tls-cert and --admin-tls-key, listen on loopback, or pass --admin-allow-plaintext on a network you trust",
                config.admin_listen
            )));
        }
        let admin_tls = match &config.admin_tls {
            Some(files) => Some(TlsAcceptor::from(Arc::new(
                tls::admin_config(&files.cert, &files.key)
                    .map_err(|e| StartError::Config(format!("admin TLS: {e}")))?,
            ))),
            None => None,
        };
        let clients = UpstreamClients::new(extra_upstream_roots)
            .map_err(|e| StartError::Config(format!("upstream CA: {e}")))?;
        let mut config_watch = match &config.config_dir {
            Some(dir) => Some(
                DirWatch::new(ConfigDir::new(dir.clone()))
                    .map_err(|e| StartError::Config(e.to_string()))?,
            ),
            None => None,
        };
        let control = ControlListeners {
            admin: TcpListener::bind(config.admin_listen).await?,
            metrics: match config.metrics_listen {
                Some(address) => Some(TcpListener::bind(address).await?),
                None => None,
            },
        };
        let sharing = if config.reuse_port {
            Sharing::ReusePort
        } else {
            Sharing::HandOver
        };
        let (traffic, traffic_inbound) = listeners::bind(config.listen, config.workers, sharing)?;
        let (tls, mut tls_inbound) = match config.tls_listen {
            Some(address) => {
                let (bound, inbound) = listeners::bind(address, config.workers, sharing)?;
                (Some(bound), inbound.into_iter().map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        tls_inbound.resize_with(traffic_inbound.len(), || None);
        let inbound = traffic_inbound
            .into_iter()
            .zip(tls_inbound)
            .map(|(traffic, tls)| ShardInbound { traffic, tls })
            .collect();
        let addresses = BoundAddresses {
            traffic,
            tls,
            admin: control.admin.local_addr()?,
            metrics: control
                .metrics
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
        };
        let gateway = Arc::new(
            Gateway::new(config, registry, clients)
                .map_err(|e| StartError::Config(format!("plugin runtime: {e}")))?,
        );
        let traffic_tls = match tls {
            Some(_) => Some(TlsAcceptor::from(Arc::new(
                tls::traffic_config(gateway.current_handle())
                    .map_err(|e| StartError::Config(format!("TLS listener: {e}")))?,
            ))),
            None => None,
        };
        let shards = Shards::start(gateway.clone(), inbound, traffic_tls).await?;
        if let Some(watch) = &mut config_watch {
            let snapshot = watch
                .compile()
                .map_err(|e| StartError::Config(e.to_string()))?;
            gateway.apply_local(&snapshot).await;
        }
        shards.open();
        Ok(Self {
            gateway,
            control,
            admin: AdminSetup {
                token,
                tls: admin_tls,
                metrics_need_token,
            },
            shards,
            addresses,
            config_watch,
        })
    }

    /// Where the proxy listens.
    pub fn addresses(&self) -> BoundAddresses {
        self.addresses
    }

    /// The shared state (for tests and embedding).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains every shard.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if let Some(watch) = self.config_watch {
            tokio::spawn(watch.run(self.gateway.clone()));
        }
        server::serve_control(self.gateway, self.control, self.admin, async {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining in-flight requests");
            self.shards.stop().await;
            tracing::info!("every shard drained");
        })
        .await;
    }
}

//! weir's data plane. A proxy serves a snapshot (routes, backends, certificates,
//! plugins) that the operator pushes to its admin listener, or that it compiles itself
//! from a directory of manifests in standalone mode. Snapshots swap atomically: requests
//! in flight finish on the one they started with.

pub mod access_log;
pub mod admin;
pub mod body;
pub mod cli;
pub mod config;
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
pub mod router;
pub mod server;
pub mod standalone;
pub mod telemetry;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use admin::AdminToken;
use config::ProxyConfig;
use gateway::Gateway;
use server::{AdminSetup, BoundAddresses, Listeners};
use standalone::{ConfigDir, DirWatch};
use upstream::client::UpstreamClients;

/// Why a proxy could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is unusable (exit code 64).
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("binding listeners: {0}")]
    Bind(#[from] std::io::Error),
}

/// A proxy with its listeners bound, ready to run.
pub struct Proxy {
    gateway: Arc<Gateway>,
    listeners: Listeners,
    admin: AdminSetup,
    config_watch: Option<DirWatch>,
}

impl Proxy {
    /// Checks the configuration, binds the listeners and, in standalone mode, compiles
    /// the config directory once.
    pub async fn start(
        config: ProxyConfig,
        registry: Registry,
        extra_upstream_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, StartError> {
        let token = AdminToken::from_file(config.admin_token_file.as_deref())
            .map_err(|e| StartError::Config(format!("admin token file: {e}")))?;
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
        let listeners = Listeners::bind(&config).await?;
        let gateway = Arc::new(
            Gateway::new(config, registry, clients)
                .map_err(|e| StartError::Config(format!("plugin runtime: {e}")))?,
        );
        if let Some(watch) = &mut config_watch {
            let snapshot = watch
                .compile()
                .map_err(|e| StartError::Config(e.to_string()))?;
            gateway.apply_local(&snapshot).await;
        }
        Ok(Self {
            gateway,
            listeners,
            admin: AdminSetup {
                token,
                tls: admin_tls,
            },
            config_watch,
        })
    }

    /// Where the proxy listens.
    pub fn addresses(&self) -> std::io::Result<BoundAddresses> {
        self.listeners.addresses()
    }

    /// The shared state (for tests and embedding).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        if let Some(watch) = self.config_watch {
            tokio::spawn(watch.run(self.gateway.clone()));
        }
        server::serve(self.gateway, self.listeners, self.admin, shutdown).await;
    }
}

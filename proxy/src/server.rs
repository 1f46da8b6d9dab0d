//! Listeners and connections: the traffic listeners (plain text with HTTP/1.1 and h2c,
//! TLS with ALPN), the admin listener, connection limits, and graceful shutdown (stop
//! accepting, let in-flight requests finish up to a deadline).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminEndpoints, AdminToken};
use crate::framing::FramingWatch;
use crate::gateway::Gateway;
use crate::pipeline::{self, ConnInfo};

/// Interval of HTTP/2 keep-alive pings, which close connections to dead clients.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Concurrent streams per HTTP/2 connection.
const H2_MAX_STREAMS: u32 = 1000;

/// The bound listeners of a proxy.
pub struct Listeners {
    /// Plain-text traffic.
    pub traffic: TcpListener,
    /// TLS traffic.
    pub tls: Option<TcpListener>,
    /// Admin.
    pub admin: TcpListener,
    /// Health, readiness and metrics.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds every configured listener.
    pub async fn bind(config: &crate::config::ProxyConfig) -> std::io::Result<Self> {
        Ok(Self {
            traffic: TcpListener::bind(config.listen).await?,
            tls: match config.tls_listen {
                Some(address) => Some(TcpListener::bind(address).await?),
                None => None,
            },
            admin: TcpListener::bind(config.admin_listen).await?,
            metrics: match config.metrics_listen {
                Some(address) => Some(TcpListener::bind(address).await?),
                None => None,
            },
        })
    }

    /// Addresses actually bound (port 0 picks a free port).
    pub fn addresses(&self) -> std::io::Result<BoundAddresses> {
        Ok(BoundAddresses {
            traffic: self.traffic.local_addr()?,
            tls: self.tls.as_ref().map(TcpListener::local_addr).transpose()?,
            admin: self.admin.local_addr()?,
            metrics: self
                .metrics
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
        })
    }
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

/// How the admin listener is protected.
pub struct AdminSetup {
    /// The snapshot push token.
    pub token: AdminToken,
    /// TLS for the admin listener, if configured.
    pub tls: Option<TlsAcceptor>,
}

/// What every connection task shares for shutting down: the signal to stop and the
/// tracker that knows when all have finished.
#[derive(Clone)]
struct Drain {
    signal: CancellationToken,
    connections: TaskTracker,
}

/// Serves until `shutdown` resolves, then drains in-flight requests for up to the
/// configured drain timeout.
pub async fn serve(
    gateway: Arc<Gateway>,
    listeners: Listeners,
    admin: AdminSetup,
    shutdown: impl Future<Output = ()>,
) {
    let drain = Drain {
        signal: CancellationToken::new(),
        connections: TaskTracker::new(),
    };
    let traffic_builder = Arc::new(traffic_builder(&gateway));
    let tls = match (
        &listeners.tls,
        crate::tls::traffic_config(gateway.current_handle()),
    ) {
        (Some(_), Ok(config)) => Some(TlsAcceptor::from(Arc::new(config))),
        (Some(_), Err(e)) => {
            tracing::error!("TLS listener disabled: {e}");
            None
        }
        (None, _) => None,
    };
    let mut accept_loops = tokio::task::JoinSet::new();
    accept_loops.spawn(accept_traffic(
        gateway.clone(),
        listeners.traffic,
        None,
        traffic_builder.clone(),
        drain.clone(),
    ));
    if let (Some(listener), Some(tls)) = (listeners.tls, tls) {
        accept_loops.spawn(accept_traffic(
            gateway.clone(),
            listener,
            Some(tls),
            traffic_builder,
            drain.clone(),
        ));
    }
    accept_loops.spawn(accept_admin(
        gateway.clone(),
        listeners.admin,
        AdminEndpoints::All(admin.token),
        admin.tls,
        drain.clone(),
    ));
    if let Some(metrics) = listeners.metrics {
        accept_loops.spawn(accept_admin(
            gateway.clone(),
            metrics,
            AdminEndpoints::Probes,
            None,
            drain.clone(),
        ));
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    accept_loops.shutdown().await;
    drain.signal.cancel();
    drain.connections.close();
    match tokio::time::timeout(gateway.config.drain_timeout, drain.connections.wait()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!(timeout = ?gateway.config.drain_timeout, "drain timeout reached, closing remaining connections")
        }
    }
}

/// Drives a connection; when the drain starts, asks it to finish its in-flight requests
/// and close (HTTP/1 after the current response, HTTP/2 with GOAWAY).
async fn drive<C, E>(
    connection: C,
    drain: &Drain,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = drain.signal.cancelled() => graceful(connection.as_mut()),
    }
    connection.await
}

fn traffic_builder(gateway: &Gateway) -> auto::Builder<TokioExecutor> {
    let limits = &gateway.config.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

async fn accept_traffic(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    drain: Drain,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let drain = drain.clone();
        drain.connections.clone().spawn(async move {
            gateway.metrics.active_connections.inc();
            let service = |framing| {
                let conn = Arc::new(ConnInfo::new(peer, tls.is_some(), framing));
                let gateway = gateway.clone();
                service_fn(move |request| pipeline::handle(gateway.clone(), conn.clone(), request))
            };
            let result = match &tls {
                Some(acceptor) => {
                    match handshake(acceptor, stream, gateway.config.limits.header_read_timeout)
                        .await
                    {
                        Some(stream) => {
                            let (stream, framing) = FramingWatch::new(stream);
                            let connection = builder.serve_connection_with_upgrades(
                                TokioIo::new(stream),
                                service(framing),
                            );
                            drive(connection, &drain, |c| c.graceful_shutdown()).await
                        }
                        None => Ok(()),
                    }
                }
                None => {
                    let (stream, framing) = FramingWatch::new(stream);
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service(framing));
                    drive(connection, &drain, |c| c.graceful_shutdown()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
            gateway.metrics.active_connections.dec();
        });
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}

async fn accept_admin(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    endpoints: AdminEndpoints,
    tls: Option<TlsAcceptor>,
    drain: Drain,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let gateway = gateway.clone();
        let endpoints = endpoints.clone();
        let tls = tls.clone();
        let builder = builder.clone();
        let drain = drain.clone();
        drain.connections.clone().spawn(async move {
            let service = service_fn(move |request| {
                admin::handle(gateway.clone(), endpoints.clone(), request)
            });
            let result = match tls {
                Some(acceptor) => match handshake(&acceptor, stream, Duration::from_secs(10)).await
                {
                    Some(stream) => {
                        drive(
                            builder.serve_connection(TokioIo::new(stream), service),
                            &drain,
                            |c| c.graceful_shutdown(),
                        )
                        .await
                    }
                    None => Ok(()),
                },
                None => {
                    drive(
                        builder.serve_connection(TokioIo::new(stream), service),
                        &drain,
                        |c| c.graceful_shutdown(),
                    )
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "admin connection ended with an error: {e}");
            }
        });
    }
}

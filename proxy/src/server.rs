//! Connections: serving one traffic connection on its shard (HTTP/1.1 and h2c in plain
//! text, HTTP/1.1 and HTTP/2 by ALPN over TLS), the admin and metrics listeners on the
//! control thread, and graceful shutdown (stop accepting, let in-flight requests finish
//! up to a deadline).

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminEndpoints, AdminToken};
use crate::config::Limits;
use crate::connection::{ConnInfo, OpenConnection};
use crate::framing::FramingWatch;
use crate::gateway::Gateway;
use crate::pipeline;
use crate::shard::Shard;

/// Interval of HTTP/2 keep-alive pings, which close connections to dead clients.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Time an admin client has for its TLS handshake and request head.
const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs futures of a shard's connections (HTTP/2 streams, upgrades) on the shard itself:
/// they may hold the shard's `!Send` state, such as its isolates.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardExecutor;

impl<F: Future + 'static> hyper::rt::Executor<F> for ShardExecutor {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// How a shard serves its traffic connections.
pub type TrafficBuilder = auto::Builder<ShardExecutor>;

/// What the connections of one shard (or of the admin listeners) share for shutting
/// down: the signal to stop and the tracker that knows when all have finished.
#[derive(Clone, Default)]
pub struct Drain {
    signal: CancellationToken,
    /// The connections being served.
    pub connections: TaskTracker,
}

impl Drain {
    /// Asks every connection to finish its in-flight requests and close, and waits for
    /// them, at most `timeout`.
    pub async fn finish(&self, timeout: Duration, shard: usize) {
        self.signal.cancel();
        self.connections.close();
        match tokio::time::timeout(timeout, self.connections.wait()).await {
            Ok(()) => tracing::debug!(shard, "connections drained"),
            Err(_) => tracing::warn!(
                shard,
                ?timeout,
                "drain timeout reached, closing remaining connections"
            ),
        }
    }
}

/// What a connection has been doing, for its two deadlines. Its first request must come
/// within the header read timeout from its accept: hyper bounds an HTTP/1 request head
/// once its HTTP/1 connection reads one, but not what comes before (the TLS handshake,
/// the bytes read to tell HTTP/1 from HTTP/2, an HTTP/2 preface and the frames before
/// the first request), so a client that connects and sends nothing, or half a preface,
/// would hold its connection forever. After that, a connection that starts no request
/// for the idle timeout is asked to close (HTTP/2 with GOAWAY; its streams in flight
/// finish).
#[derive(Clone, Debug)]
struct Activity {
    accepted: Instant,
    first_request_within: Duration,
    idle_timeout: Duration,
    /// Milliseconds from `accepted` to the start of the latest request, plus one; 0
    /// before the first.
    last_request: Arc<AtomicU64>,
}

/// Why a connection's time is up.
enum Ending {
    /// No request came before the first request's deadline: close at once.
    NoRequest,
    /// No request started for the idle timeout: close gracefully.
    Idle,
}

impl Activity {
    /// A connection accepted now.
    fn start(first_request_within: Duration, idle_timeout: Duration) -> Self {
        Self {
            accepted: Instant::now(),
            first_request_within,
            idle_timeout,
            last_request: Arc::default(),
        }
    }

    /// When the first request (TLS handshake included) must have come.
    fn first_request_deadline(&self) -> Instant {
        self.accepted + self.first_request_within
    }

    /// Notes the start of a request.
    fn request(&self) {
        let since = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_request
            .store(since.saturating_add(1), Ordering::Relaxed);
    }

    /// Resolves when the connection's time is up.
    async fn ended(&self) -> Ending {
        loop {
            let now = Instant::now();
            let last = self.last_request.load(Ordering::Relaxed);
            let wake = if last == 0 {
                let deadline = self.first_request_deadline();
                if now >= deadline {
                    return Ending::NoRequest;
                }
                // Looks again after an idle timeout at most, in case a request came.
                deadline.min(now + self.idle_timeout)
            } else {
                let idle_end = self.accepted + Duration::from_millis(last - 1) + self.idle_timeout;
                if now >= idle_end {
                    return Ending::Idle;
                }
                idle_end
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Drives a connection. When the drain starts or the connection has been idle too long,
/// asks it to finish its in-flight requests and close (HTTP/1 after the current
/// response, HTTP/2 with GOAWAY); when no first request came in time, closes it.
async fn drive<C, E>(
    connection: C,
    activity: &Activity,
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
        ending = activity.ended() => match ending {
            Ending::NoRequest => {
                tracing::debug!("no request within the header read timeout: closing");
                return Ok(());
            }
            Ending::Idle => {
                tracing::debug!("idle for the idle timeout: closing");
                graceful(connection.as_mut());
            }
        },
    }
    connection.await
}

/// The connection settings of a shard's traffic listeners.
pub fn traffic_builder(limits: &Limits) -> TrafficBuilder {
    let mut builder = auto::Builder::new(ShardExecutor);
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
        .max_concurrent_streams(limits.http2.max_concurrent_streams)
        .max_send_buf_size(
            usize::try_from(limits.http2.max_send_buffer_bytes).unwrap_or(usize::MAX),
        )
        .initial_stream_window_size(limits.http2.stream_window_bytes)
        .initial_connection_window_size(limits.http2.connection_window_bytes)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Serves one traffic connection on `shard`, TLS first when `tls` is given; `open`
/// counts it until it (or the tunnel it becomes) ends.
pub async fn serve_traffic(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    open_connection: OpenConnection,
    tls: Option<TlsAcceptor>,
    builder: Rc<TrafficBuilder>,
) {
    let limits = &shard.gateway.config.limits;
    let activity = Activity::start(limits.header_read_timeout, limits.idle_timeout);
    if let Some(stream) = open(tls.as_ref(), stream, activity.first_request_deadline()).await {
        let (stream, framing) = FramingWatch::new(stream);
        let conn = Rc::new(ConnInfo::new(peer, tls.is_some(), framing, open_connection));
        let drain = shard.drain.clone();
        let service = {
            let shard = shard.clone();
            let activity = activity.clone();
            service_fn(move |request| {
                activity.request();
                pipeline::handle(shard.clone(), conn.clone(), request)
            })
        };
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(e) = drive(connection, &activity, &drain, |c| c.graceful_shutdown()).await {
            tracing::debug!(%peer, "connection ended with an error: {e}");
        }
    }
}

/// The byte stream of an accepted connection: with `tls`, the TLS stream once its
/// handshake is done by `deadline` (none when it fails or runs late), else the plain one.
async fn open(
    tls: Option<&TlsAcceptor>,
    stream: TcpStream,
    deadline: Instant,
) -> Option<Either<tokio_rustls::server::TlsStream<TcpStream>, TcpStream>> {
    match tls {
        Some(acceptor) => handshake(acceptor, stream, deadline)
            .await
            .map(Either::Left),
        None => Some(Either::Right(stream)),
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    deadline: Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// How the admin listener is protected.
pub struct AdminSetup {
    /// The snapshot push token.
    pub token: AdminToken,
    /// TLS for the admin listener, if configured.
    pub tls: Option<TlsAcceptor>,
    /// Whether `/metrics` needs the token too.
    pub metrics_need_token: bool,
}

/// The listeners of the control thread.
pub struct ControlListeners {
    /// Snapshots, health, readiness and metrics.
    pub admin: TcpListener,
    /// Health, readiness and metrics only.
    pub metrics: Option<TcpListener>,
}

/// Serves the admin (and metrics) listeners until `shutdown` resolves.
pub async fn serve_control(
    gateway: Arc<Gateway>,
    listeners: ControlListeners,
    admin: AdminSetup,
    shutdown: impl Future<Output = ()>,
) {
    let drain = Drain::default();
    let mut accept_loops = tokio::task::JoinSet::new();
    accept_loops.spawn(accept_admin(
        gateway.clone(),
        listeners.admin,
        AdminEndpoints {
            snapshots: true,
            token: admin.token.clone(),
            metrics_need_token: admin.metrics_need_token,
        },
        admin.tls,
        drain.clone(),
    ));
    if let Some(metrics) = listeners.metrics {
        accept_loops.spawn(accept_admin(
            gateway.clone(),
            metrics,
            AdminEndpoints {
                snapshots: false,
                token: admin.token,
                metrics_need_token: admin.metrics_need_token,
            },
            None,
            drain.clone(),
        ));
    }
    shutdown.await;
    accept_loops.shutdown().await;
    drain.finish(ADMIN_READ_TIMEOUT, usize::MAX).await;
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
        .header_read_timeout(ADMIN_READ_TIMEOUT);
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
            let activity = Activity::start(ADMIN_READ_TIMEOUT, gateway.config.limits.idle_timeout);
            let service = {
                let activity = activity.clone();
                service_fn(move |request| {
                    activity.request();
                    admin::handle(gateway.clone(), endpoints.clone(), request)
                })
            };
            let Some(stream) = open(tls.as_ref(), stream, activity.first_request_deadline()).await
            else {
                return;
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = drive(connection, &activity, &drain, |c| c.graceful_shutdown()).await {
                tracing::debug!(%peer, "admin connection ended with an error: {e}");
            }
        });
    }
}

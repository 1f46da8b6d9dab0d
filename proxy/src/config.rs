//! The proxy's own configuration: listeners, limits, admin access and telemetry. Routes,
//! backends and plugins are not here: they come from snapshots.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use weir_plugin_runtime::RuntimeConfig;

/// Everything `weir-proxy` is started with.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Plain-text listener (HTTP/1.1 and HTTP/2 with prior knowledge).
    pub listen: SocketAddr,
    /// TLS listener (HTTP/1.1 and HTTP/2 by ALPN), certificates chosen by SNI from the
    /// snapshot. `None` disables it.
    pub tls_listen: Option<SocketAddr>,
    /// Admin listener: snapshots, health, readiness and metrics.
    pub admin_listen: SocketAddr,
    /// A second, plain-HTTP listener serving only health, readiness and metrics, for
    /// kubelet probes and Prometheus, so that the admin listener can be closed to all but
    /// the operator. `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the bearer token for `PUT /v1/snapshot`. Without it, snapshots cannot
    /// be pushed (standalone mode).
    pub admin_token_file: Option<PathBuf>,
    /// Certificate and key (PEM files) making the admin listener HTTPS.
    pub admin_tls: Option<TlsFiles>,
    /// Whether the admin listener may serve plain HTTP on a non-loopback address; without
    /// it, such a configuration refuses to start (snapshots carry TLS private keys).
    pub admin_plaintext_allowed: bool,
    /// Whether `/metrics` (on the admin and the metrics listeners) needs the admin token.
    pub metrics_require_token: bool,
    /// Standalone mode: a directory of Route, Plugin, ConfigMap and Secret manifests,
    /// compiled at start and again whenever a file changes.
    pub config_dir: Option<PathBuf>,
    /// Shards: threads serving traffic, each with its own listeners, upstream pools and
    /// plugin isolates.
    pub workers: usize,
    /// Whether each shard binds its own socket with `SO_REUSEPORT` (the kernel spreads
    /// connections); off, or where the option is missing, one shard accepts and hands
    /// connections to the others in turn.
    pub reuse_port: bool,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are trusted and extended;
    /// from anyone else those headers are replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// Request limits.
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// OTLP/HTTP endpoint (`http://collector:4318`) that request and upstream spans are
    /// exported to; `None` exports nothing (trace context is still propagated).
    pub otlp_endpoint: Option<String>,
    /// Whether one JSON access-log line is written per request.
    pub access_log: bool,
    /// The plugin runtime: isolate threads, body threshold, cache, fetch and forward
    /// allow-lists.
    pub plugins: RuntimeConfig,
}

/// Paths of a PEM certificate chain and private key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Limits on what a client may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: u64,
    /// Time a client has to send a complete request head, counted from when the
    /// connection is ready for it (so it also closes idle HTTP/1 keep-alive connections);
    /// for a new connection, from its accept to its first request (TLS handshake and
    /// HTTP/2 preface included).
    pub header_read_timeout: Duration,
    /// Time a connection may go without starting a request before it is asked to close
    /// (HTTP/2 with GOAWAY; its streams in flight finish).
    pub idle_timeout: Duration,
    /// Client connections open at once across all shards; more are closed when accepted.
    pub max_connections: usize,
    /// Client connections open at once from one client address (0: no limit).
    pub max_connections_per_client: usize,
    /// What one HTTP/2 client connection may hold of the proxy's memory.
    pub http2: Http2Limits,
}

/// Bounds on one HTTP/2 client connection. A client that opens every stream it may and
/// reads none of the responses holds at most `max_concurrent_streams` times
/// `max_send_buffer_bytes` of response data in the proxy; one that uploads faster than
/// upstreams read holds at most `connection_window_bytes` of request data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams (requests) open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Response bytes queued per stream for a client that is not reading them.
    pub max_send_buffer_bytes: u32,
    /// Request body bytes a client may send on one stream before the proxy reads them.
    pub stream_window_bytes: u32,
    /// Request body bytes a client may send on all its streams together before the
    /// proxy reads them.
    pub connection_window_bytes: u32,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            max_send_buffer_bytes: 32 * 1024,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            max_connections: 100_000,
            max_connections_per_client: 0,
            http2: Http2Limits::default(),
        }
    }
}

impl ProxyConfig {
    /// A configuration listening on the given addresses with default limits, no TLS, no
    /// admin token, no standalone directory.
    pub fn new(listen: SocketAddr, admin_listen: SocketAddr) -> Self {
        Self {
            listen,
            tls_listen: None,
            admin_listen,
            metrics_listen: None,
            admin_token_file: None,
            admin_plaintext_allowed: false,
            metrics_require_token: false,
            admin_tls: None,
            config_dir: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reuse_port: true,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(30),
            otlp_endpoint: None,
            access_log: true,
            plugins: RuntimeConfig::default(),
        }
    }
}

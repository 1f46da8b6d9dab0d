//! Command-line flags (each also readable from a `WEIR_*` environment variable) and their
//! translation into a [`ProxyConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use weir_plugin_runtime::{
    CacheConfig, DEFAULT_BODY_LIMIT_BYTES, DEFAULT_MAX_MEMORY_LIMIT_MIB, FetchConfig,
    MAX_CPU_BUDGET_MS, RuntimeConfig,
};

use crate::config::{Http2Limits, Limits, ProxyConfig, TlsFiles};
use crate::telemetry::LogFormat;

/// weir's data plane: routes and proxies HTTP traffic from snapshots pushed by the
/// operator, or from a directory of manifests (`--config`).
#[derive(Debug, Parser)]
#[command(name = "weir-proxy", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A tool instead of the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Standalone mode: a directory of Route, Plugin, ConfigMap and Secret manifests,
    /// reloaded when a file changes.
    #[arg(long = "config", env = "WEIR_CONFIG", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Plain-text listener (HTTP/1.1 and h2c).
    #[arg(long, env = "WEIR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// TLS listener; certificates come from the Routes' TLS Secrets, chosen by SNI.
    #[arg(long, env = "WEIR_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,

    /// Admin listener (snapshots, /healthz, /readyz, /metrics). Keep it off public networks.
    #[arg(long, env = "WEIR_ADMIN_LISTEN", default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,

    /// Plain-HTTP listener serving only /healthz, /readyz and /metrics (probes and
    /// Prometheus), so the admin listener can be reachable by the operator alone.
    #[arg(long, env = "WEIR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// File holding the bearer token that snapshot pushes must carry.
    #[arg(long, env = "WEIR_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// PEM certificate chain making the admin listener HTTPS (with --admin-tls-key).
    #[arg(long, env = "WEIR_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,

    /// PEM private key of the admin certificate.
    #[arg(long, env = "WEIR_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,

    /// Let the admin listener serve plain HTTP on a non-loopback address (without it, the
    /// proxy refuses to start so: snapshots carry TLS private keys and the push token).
    #[arg(long, env = "WEIR_ADMIN_ALLOW_PLAINTEXT")]
    pub admin_allow_plaintext: bool,

    /// `/metrics` answers only requests with the admin token (`Authorization: Bearer`),
    /// on the admin and the metrics listeners.
    #[arg(
        long,
        env = "WEIR_METRICS_REQUIRE_TOKEN",
        requires = "admin_token_file"
    )]
    pub metrics_require_token: bool,

    /// Extra CA certificates (PEM) trusted for HTTPS upstreams, besides the public roots.
    #[arg(long, env = "WEIR_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,

    /// Shards: threads serving traffic, each with its own listeners, upstream
    /// connections and plugin isolates (default: one per CPU).
    #[arg(long, env = "WEIR_WORKERS")]
    pub workers: Option<usize>,

    /// A trusted proxy network (CIDR) whose X-Forwarded-* headers are kept; repeatable.
    #[arg(
        long = "trusted-proxy",
        env = "WEIR_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// Largest request head in bytes (431 beyond).
    #[arg(long, env = "WEIR_MAX_HEADER_BYTES", default_value_t = Limits::default().max_header_bytes)]
    pub max_header_bytes: usize,

    /// Largest request body in bytes (413 beyond).
    #[arg(long, env = "WEIR_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    pub max_body_bytes: u64,

    /// Time a client has to send a request head (a new connection: from its accept to its
    /// first request, TLS handshake and HTTP/2 preface included); also the idle limit of
    /// HTTP/1 keep-alive connections.
    #[arg(long, env = "WEIR_HEADER_READ_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a connection may go without starting a request before it is asked to close
    /// (HTTP/2 with GOAWAY; its streams in flight finish).
    #[arg(long, env = "WEIR_IDLE_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Client connections open at once, all shards together; more are closed when
    /// accepted and counted in `weir_connections_refused_total{reason="total"}`.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Client connections open at once from one client address (the TCP peer); 0: no
    /// limit. Leave it off behind a load balancer that does not keep client addresses.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_CLIENT", default_value_t = Limits::default().max_connections_per_client)]
    pub max_connections_per_client: usize,

    /// HTTP/2 streams (requests) a client may have open at once on one connection.
    #[arg(long, env = "WEIR_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = Http2Limits::default().max_concurrent_streams, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,

    /// Response bytes the proxy queues per HTTP/2 stream for a client that is not reading
    /// them; with --http2-max-concurrent-streams, what a slow reader can hold.
    #[arg(long, env = "WEIR_HTTP2_MAX_SEND_BUFFER_BYTES", default_value_t = Http2Limits::default().max_send_buffer_bytes, value_parser = clap::value_parser!(u32).range(1024..))]
    pub http2_max_send_buffer_bytes: u32,

    /// Request body bytes an HTTP/2 client may send on one stream ahead of the proxy
    /// reading them (the stream's flow-control window).
    #[arg(long, env = "WEIR_HTTP2_STREAM_WINDOW_BYTES", default_value_t = Http2Limits::default().stream_window_bytes, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub http2_stream_window_bytes: u32,

    /// Request body bytes an HTTP/2 client may send on all its streams together ahead of
    /// the proxy reading them (the connection's flow-control window).
    #[arg(long, env = "WEIR_HTTP2_CONNECTION_WINDOW_BYTES", default_value_t = Http2Limits::default().connection_window_bytes, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub http2_connection_window_bytes: u32,

    /// Time in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "WEIR_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// OTLP/HTTP collector (e.g. http://otel-collector:4318) for request spans.
    #[arg(long, env = "WEIR_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Log format.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Do not write an access-log line per request.
    #[arg(long, env = "WEIR_NO_ACCESS_LOG")]
    pub no_access_log: bool,

    /// Longest uninterrupted run of a plugin hook's JavaScript (until it returns or
    /// awaits a host service) before it is interrupted: the longest a hook can stall the
    /// other connections of its shard (at most 1s).
    #[arg(long, env = "WEIR_PLUGIN_CPU_BUDGET", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub plugin_cpu_budget: Duration,

    /// Largest `timeoutMs` a Plugin may ask for; a Plugin asking more does not load (its
    /// previous version keeps serving) and its status says why.
    #[arg(long, env = "WEIR_PLUGIN_MAX_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub plugin_max_timeout: Duration,

    /// Largest `memoryLimitMiB` a Plugin may ask for (each shard runs an isolate of every
    /// plugin); a Plugin asking more does not load.
    #[arg(long, env = "WEIR_PLUGIN_MAX_MEMORY_MIB", default_value_t = DEFAULT_MAX_MEMORY_LIMIT_MIB, value_parser = clap::value_parser!(u32).range(1..))]
    pub plugin_max_memory_mib: u32,

    /// Longest evaluation of a plugin's module with its `onLoad` (ten hook budgets, at
    /// least 1s, at most this): the longest a plugin being loaded can stall a shard.
    #[arg(long, env = "WEIR_PLUGIN_MAX_LOAD_TIME", default_value = "2s", value_parser = humantime::parse_duration)]
    pub plugin_max_load_time: Duration,

    /// Largest request or response body handed to plugins whole, in bytes; larger
    /// bodies stream through the proxy and plugins cannot read them.
    #[arg(long, env = "WEIR_PLUGIN_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT_BYTES)]
    pub plugin_body_limit: usize,

    /// Redis URL (`redis://host:6379/0`) behind `ctx.services.cache`, so proxy replicas
    /// share entries; without it the cache is in this process's memory.
    #[arg(long, env = "WEIR_PLUGIN_REDIS_URL")]
    pub plugin_redis_url: Option<String>,

    /// Prefix of every Redis key the plugin cache writes, so several weir installations
    /// (or environments) can share one Redis without seeing each other's entries.
    #[arg(long, env = "WEIR_PLUGIN_REDIS_KEY_PREFIX", default_value = "weir:")]
    pub plugin_redis_key_prefix: String,

    /// Longest a plugin cache call may wait for Redis. After a failure, calls fail at once
    /// for a second instead of each waiting this long while Redis is down. Keep it below
    /// the plugins' `timeoutMs`, so their `onStoreError`-style handling runs.
    #[arg(long, env = "WEIR_PLUGIN_REDIS_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub plugin_redis_timeout: Duration,

    /// A network (CIDR) `ctx.services.http.fetch` may reach although it is loopback,
    /// private, link-local or metadata; repeatable.
    #[arg(
        long = "plugin-fetch-allow",
        env = "WEIR_PLUGIN_FETCH_ALLOW",
        value_delimiter = ','
    )]
    pub plugin_fetch_allow: Vec<String>,

    /// A network (CIDR) `ctx.services.http.fetch` may never reach, whatever
    /// --plugin-fetch-allow says: the cluster's pod and service ranges; repeatable.
    #[arg(
        long = "plugin-fetch-deny",
        env = "WEIR_PLUGIN_FETCH_DENY",
        value_delimiter = ','
    )]
    pub plugin_fetch_deny: Vec<String>,

    /// A URL prefix `ctx.forward(url)` may send requests to, besides the route's own
    /// backends; repeatable.
    #[arg(
        long = "plugin-forward-allow",
        env = "WEIR_PLUGIN_FORWARD_ALLOW",
        value_delimiter = ','
    )]
    pub plugin_forward_allow: Vec<String>,
}

/// Tools run by `weir-proxy` instead of the proxy.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Reads a directory of manifests as `--config DIR` would and compiles it: prints
    /// one line per problem (`file: Kind namespace/name: field: message`) and exits 1
    /// when there is any, 0 when every object compiles cleanly, 64 when the directory
    /// cannot be read. For CI of a GitOps repository (`kubectl kustomize` output too).
    Check {
        /// Directory of Route, Plugin, ConfigMap, Secret, Service and EndpointSlice
        /// manifests (`*.yaml`, `*.yml`, recursively).
        dir: PathBuf,
        /// Whether URL backends are allowed, as in standalone mode; pass `false` to
        /// check as a cluster install's operator does (`--allow-url-backends`).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        allow_url_backends: bool,
        /// The Services and TLS Secrets Routes name live in the cluster, not in the
        /// directory: a missing one is not reported.
        #[arg(long)]
        refs_in_cluster: bool,
    },
}

/// `weir-proxy plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Runs the `*.test.ts` suites of a directory against their plugins with the real
    /// engine; exits 1 unless every test passes.
    Test {
        /// Directory of `*.test.ts` files and the plugins they test.
        dir: PathBuf,
    },
}

impl Cli {
    /// The proxy configuration these flags describe, or what is wrong with them.
    pub fn to_config(&self) -> Result<ProxyConfig, String> {
        if let Some(dir) = &self.config_dir
            && !dir.is_dir()
        {
            return Err(format!("--config {}: not a directory", dir.display()));
        }
        if self.workers == Some(0) {
            return Err("--workers must be at least 1".into());
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !endpoint.starts_with("http://")
        {
            return Err(format!(
                "--otlp-endpoint {endpoint}: only http:// collectors are supported"
            ));
        }
        let mut config = ProxyConfig::new(self.listen, self.admin_listen);
        config.tls_listen = self.tls_listen;
        config.metrics_listen = self.metrics_listen;
        config.admin_token_file = self.admin_token_file.clone();
        config.admin_plaintext_allowed = self.admin_allow_plaintext;
        config.metrics_require_token = self.metrics_require_token;
        config.admin_tls = match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        config.config_dir = self.config_dir.clone();
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config.trusted_proxies = self.trusted_proxies.clone();
        config.limits = Limits {
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            http2: Http2Limits {
                max_concurrent_streams: self.http2_max_concurrent_streams,
                max_send_buffer_bytes: self.http2_max_send_buffer_bytes,
                stream_window_bytes: self.http2_stream_window_bytes,
                connection_window_bytes: self.http2_connection_window_bytes,
            },
        };
        config.drain_timeout = self.drain_timeout;
        config.otlp_endpoint = self.otlp_endpoint.clone();
        config.access_log = !self.no_access_log;
        let cpu_budget_ms = u64::try_from(self.plugin_cpu_budget.as_millis()).unwrap_or(u64::MAX);
        if !(1..=MAX_CPU_BUDGET_MS).contains(&cpu_budget_ms) {
            return Err(format!(
                "--plugin-cpu-budget must be between 1ms and {MAX_CPU_BUDGET_MS}ms"
            ));
        }
        let max_timeout_ms = u32::try_from(self.plugin_max_timeout.as_millis())
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or("--plugin-max-timeout must be between 1ms and 49 days")?;
        let max_load_ms = u64::try_from(self.plugin_max_load_time.as_millis())
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or("--plugin-max-load-time must be at least 1ms")?;
        let redis_timeout_ms = u64::try_from(self.plugin_redis_timeout.as_millis())
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or("--plugin-redis-timeout must be at least 1ms")?;
        config.plugins = RuntimeConfig {
            cpu_budget_ms,
            max_timeout_ms,
            max_memory_limit_mib: self.plugin_max_memory_mib,
            max_load_ms,
            body_limit_bytes: self.plugin_body_limit,
            cache: CacheConfig {
                redis_url: self.plugin_redis_url.clone(),
                key_prefix: self.plugin_redis_key_prefix.clone(),
                timeout_ms: redis_timeout_ms,
                ..CacheConfig::default()
            },
            fetch: FetchConfig {
                allow_networks: self.plugin_fetch_allow.clone(),
                deny_networks: self.plugin_fetch_deny.clone(),
                ..FetchConfig::default()
            },
            forward_allow_list: self.plugin_forward_allow.clone(),
        };
        Ok(config)
    }

    /// The extra upstream CA certificates.
    pub fn upstream_roots(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let Some(path) = &self.upstream_ca_file else {
            return Ok(Vec::new());
        };
        let roots = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--upstream-ca-file {}: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!(
                "--upstream-ca-file {}: no certificate in it",
                path.display()
            ));
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let cli = Cli::try_parse_from(["weir-proxy"]).unwrap();
        let config = cli.to_config().unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(20));
        assert!(config.access_log);

        let cli = Cli::try_parse_from(["weir-proxy", "--config", "/nonexistent/dir"]).unwrap();
        assert!(cli.to_config().unwrap_err().contains("not a directory"));
        assert!(Cli::try_parse_from(["weir-proxy", "--trusted-proxy", "not-a-cidr"]).is_err());
        assert!(
            Cli::try_parse_from(["weir-proxy", "--admin-tls-cert", "x"]).is_err(),
            "needs the key too"
        );
        let cli = Cli::try_parse_from([
            "weir-proxy",
            "--trusted-proxy",
            "10.0.0.0/8,192.168.0.0/16",
            "--header-read-timeout",
            "5s",
        ])
        .unwrap();
        let config = cli.to_config().unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(5));

        let cli = Cli::try_parse_from([
            "weir-proxy",
            "--workers",
            "3",
            "--plugin-forward-allow",
            "https://a.example/,https://b.example/",
            "--plugin-redis-url",
            "redis://127.0.0.1:6379/0",
            "--plugin-redis-key-prefix",
            "staging:",
            "--plugin-redis-timeout",
            "80ms",
        ])
        .unwrap();
        let config = cli.to_config().unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.plugins.cpu_budget_ms, 20, "the default CPU budget");
        assert_eq!(config.plugins.forward_allow_list.len(), 2);
        assert_eq!(config.plugins.body_limit_bytes, DEFAULT_BODY_LIMIT_BYTES);
        assert!(config.plugins.cache.redis_url.is_some());
        assert_eq!(config.plugins.cache.key_prefix, "staging:");
        assert_eq!(config.plugins.cache.timeout_ms, 80);
        assert_eq!(
            (
                config.plugins.max_timeout_ms,
                config.plugins.max_memory_limit_mib,
                config.plugins.max_load_ms
            ),
            (10_000, 256, 2_000),
            "the default plugin maxima"
        );
        let cli = Cli::try_parse_from([
            "weir-proxy",
            "--plugin-max-timeout",
            "250ms",
            "--plugin-max-memory-mib",
            "64",
            "--plugin-max-load-time",
            "500ms",
        ])
        .unwrap();
        let plugins = cli.to_config().unwrap().plugins;
        assert_eq!(
            (
                plugins.max_timeout_ms,
                plugins.max_memory_limit_mib,
                plugins.max_load_ms
            ),
            (250, 64, 500)
        );
        let cli = Cli::try_parse_from(["weir-proxy", "plugin", "test", "plugins/x"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Plugin(PluginCommand::Test { .. }))
        ));
    }
}

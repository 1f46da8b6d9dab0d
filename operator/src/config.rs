//! Command-line flags (each also readable from a `WEIR_*` environment variable) and the
//! validated [`Config`] the operator runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use thiserror::Error;
use weir_crds::admin::{MIN_TOKEN_CHARS, token_in};

/// weir's operator: watches Routes, Plugins and what they refer to, compiles them into a
/// snapshot, pushes it to every proxy and writes status.
#[derive(Debug, Parser)]
#[command(name = "weir-operator", version)]
pub struct Cli {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(long = "namespaces", env = "WEIR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Name of the Service whose EndpointSlices list the proxies' admin endpoints.
    #[arg(long, env = "WEIR_PROXY_SERVICE", default_value = "weir-proxy-admin")]
    pub proxy_service: String,

    /// Namespace of that Service (default: the operator's own, from the client config).
    #[arg(long, env = "WEIR_PROXY_NAMESPACE")]
    pub proxy_namespace: Option<String>,

    /// Name of the EndpointSlice port of the admin listener; the first port when unset.
    #[arg(long, env = "WEIR_PROXY_ADMIN_PORT_NAME")]
    pub proxy_admin_port_name: Option<String>,

    /// Speak plain HTTP to the proxies' admin listeners instead of HTTPS (tests, local runs).
    #[arg(long, env = "WEIR_PROXY_INSECURE_HTTP")]
    pub proxy_insecure_http: bool,

    /// File holding the bearer token snapshot pushes carry.
    #[arg(long, env = "WEIR_ADMIN_TOKEN_FILE")]
    pub admin_token_file: PathBuf,

    /// PEM CA certificates the proxies' admin certificates are checked against.
    #[arg(long, env = "WEIR_PROXY_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// DNS name every proxy's admin certificate is checked for, instead of the pod IP the
    /// operator connects to (one certificate for all proxies, such as the Helm chart's).
    #[arg(long, env = "WEIR_PROXY_SERVER_NAME")]
    pub proxy_server_name: Option<String>,

    /// Gateway class served: Routes and Plugins whose `spec.className` is this name.
    #[arg(long, env = "WEIR_CLASS", default_value = "weir")]
    pub class: String,

    /// Whether Routes and Plugins that name no class are served too (the default
    /// gateway; at most one per cluster should be).
    #[arg(long, env = "WEIR_DEFAULT_CLASS", default_value_t = true, action = clap::ArgAction::Set)]
    pub default_class: bool,

    /// Whether Routes may send traffic to URL backends (`backends[].url`). Off, Routes
    /// reach only Services of their own namespace, so a namespace owner cannot point the
    /// gateway at arbitrary or internal addresses.
    #[arg(long, env = "WEIR_ALLOW_URL_BACKENDS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_url_backends: bool,

    /// Namespaces whose Routes may claim every host (`hosts: []`) or a wildcard at a
    /// public suffix (`*.com`), comma-separated; `*` trusts every namespace. Default: the
    /// operator's own namespace.
    #[arg(long, env = "WEIR_TRUSTED_NAMESPACES", value_delimiter = ',')]
    pub trusted_namespaces: Vec<String>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "WEIR_METRICS_ADDRESS", default_value = "0.0.0.0:9090")]
    pub metrics_address: SocketAddr,

    /// Log format.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Quiet time after a change before a snapshot is built: a burst gives one build.
    #[arg(long, env = "WEIR_DEBOUNCE", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,

    /// Time one push to one proxy may take.
    #[arg(long, env = "WEIR_PUSH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub push_timeout: Duration,

    /// Attempts per push to one proxy before it is reported as failing (backoff between).
    #[arg(long, env = "WEIR_PUSH_ATTEMPTS", default_value_t = 3)]
    pub push_attempts: u32,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "WEIR_LEASE_NAME", default_value = "weir-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the proxy Service's namespace).
    #[arg(long, env = "WEIR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a Lease holds without renewal before a standby takes over.
    #[arg(long, env = "WEIR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Label selector of the ConfigMaps watched for plugin sources (e.g.
    /// `weir.dev/plugin-source=true`); unset watches every ConfigMap in the watched
    /// namespaces. In a cluster with many or large ConfigMaps, a selector keeps the
    /// operator's memory to the plugin sources.
    #[arg(long, env = "WEIR_CONFIG_MAP_SELECTOR")]
    pub config_map_selector: Option<String>,

    /// Status writes in flight at once.
    #[arg(long, env = "WEIR_STATUS_CONCURRENCY", default_value_t = crate::status::StatusLimits::default().concurrency)]
    pub status_concurrency: usize,

    /// Status writes started per second, at most; the API server's `429` answers slow
    /// them further (exponential backoff).
    #[arg(long, env = "WEIR_STATUS_WRITES_PER_SECOND", default_value_t = crate::status::StatusLimits::default().per_second)]
    pub status_writes_per_second: std::num::NonZeroU32,

    /// This replica's identity in the Lease (default: the host name and process id).
    #[arg(long, env = "WEIR_IDENTITY")]
    pub identity: Option<String>,

    /// Whether Kubernetes Ingresses of the class (`--class`, an IngressClass with
    /// controller `weir.dev/ingress-controller`) are served. Off, the operator does not
    /// watch Ingresses or IngressClasses at all.
    #[arg(long, env = "WEIR_WATCH_INGRESSES", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_ingresses: bool,

    /// The proxies' traffic Service (`NAMESPACE/NAME`) whose addresses served Ingresses
    /// show in `status.loadBalancer` (its load balancer's, else its external IPs, else
    /// its cluster IP).
    #[arg(long, env = "WEIR_PUBLISH_SERVICE")]
    pub publish_service: Option<String>,

    /// Addresses (IPs or host names, comma-separated) served Ingresses show in
    /// `status.loadBalancer` instead of `--publish-service`'s.
    #[arg(long, env = "WEIR_PUBLISH_ADDRESS", value_delimiter = ',')]
    pub publish_address: Vec<String>,

    /// Whether Gateway API objects (GatewayClasses with controller
    /// `weir.dev/gateway-controller`, their Gateways, the HTTPRoutes attached to them) are
    /// served once the API server serves the Gateway API. Off, the operator neither looks
    /// for the Gateway API nor watches any of its kinds or Namespaces.
    #[arg(long, env = "WEIR_WATCH_GATEWAY_API", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_gateway_api: bool,

    /// How often the operator asks the API server whether it serves the Gateway API (its
    /// CRDs installed or removed).
    #[arg(long, env = "WEIR_GATEWAY_API_DISCOVERY_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub gateway_api_discovery_interval: Duration,

    /// The port Gateway listeners of protocol HTTP must name: the proxy Service's plain
    /// HTTP port. With `--gateway-https-port`; unset, listeners may name any port.
    #[arg(long, env = "WEIR_GATEWAY_HTTP_PORT", requires = "gateway_https_port")]
    pub gateway_http_port: Option<u16>,

    /// The port Gateway listeners of protocol HTTPS must name: the proxy Service's TLS
    /// port. With `--gateway-http-port`.
    #[arg(long, env = "WEIR_GATEWAY_HTTPS_PORT", requires = "gateway_http_port")]
    pub gateway_https_port: Option<u16>,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// What is wrong with the flags.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A flag has an unusable value.
    #[error("{flag}: {message}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A file named by a flag cannot be read.
    #[error("{flag} {path}: {source}")]
    Unreadable {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which namespaces are watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace.
    All,
    /// These.
    Only(Vec<String>),
}

impl Namespaces {
    /// The namespaces as a list, `None` standing for all.
    pub fn scopes(&self) -> Vec<Option<String>> {
        match self {
            Self::All => vec![None],
            Self::Only(list) => list.iter().cloned().map(Some).collect(),
        }
    }
}

/// Where the proxies' admin endpoints are listed and how to talk to them.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Name of the admin Service.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// Port name in its EndpointSlices, or the first port.
    pub port_name: Option<String>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Bearer token.
    pub token: String,
    /// The file it was read from, read again when a proxy refuses the token (a rotated
    /// Secret); `None` keeps `token`.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for HTTPS, or the public roots when absent.
    pub ca_pem: Option<Vec<u8>>,
    /// Name checked in the proxies' certificates instead of their address.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// Time one push may take.
    pub push_timeout: Duration,
    /// Attempts per push.
    pub push_attempts: u32,
}

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// How long the Lease holds without renewal.
    pub duration: Duration,
}

/// Everything the operator runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watched namespaces.
    pub namespaces: Namespaces,
    /// The proxies.
    pub proxies: ProxyConfig,
    /// Leader election.
    pub lease: LeaseConfig,
    /// Address of the metrics and health endpoints.
    pub metrics_address: SocketAddr,
    /// Quiet time before a build.
    pub debounce: Duration,
    /// Compiler switches: the gateway class served, URL backends.
    pub compile: weir_crds::Options,
    /// How fast status is written.
    pub status: crate::status::StatusLimits,
    /// Label selector of the ConfigMaps watched, if any.
    pub config_map_selector: Option<String>,
    /// Whether Ingresses and IngressClasses are watched.
    pub watch_ingresses: bool,
    /// What served Ingresses publish in `status.loadBalancer`, and Gateways in
    /// `status.addresses`.
    pub publish: crate::status::Publish,
    /// Whether the Gateway API is looked for, and its kinds watched once served.
    pub watch_gateway_api: bool,
    /// How often the API server is asked whether it serves the Gateway API.
    pub gateway_api_discovery_interval: Duration,
}

/// The push token in `path` (white space around it trimmed), refused when it is shorter
/// than the proxies accept.
pub fn read_token(path: &std::path::Path) -> Result<String, ConfigError> {
    let token = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        flag: "--admin-token-file",
        path: path.display().to_string(),
        source,
    })?;
    token_in(&token)
        .map(str::to_owned)
        .map_err(|chars| ConfigError::Invalid {
            flag: "--admin-token-file",
            message: format!(
                "the token has {chars} characters; the proxies require at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)"
            ),
        })
}

impl Cli {
    /// The validated configuration, reading the token and CA files; `default_namespace`
    /// is the client's namespace, used where a namespace flag is unset.
    pub fn to_config(&self, default_namespace: &str) -> Result<Config, ConfigError> {
        let token = read_token(&self.admin_token_file)?;
        let ca_pem = match &self.ca_file {
            Some(path) => Some(
                std::fs::read(path).map_err(|source| ConfigError::Unreadable {
                    flag: "--ca-file",
                    path: path.display().to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        if self.proxy_service.is_empty() {
            return Err(ConfigError::Invalid {
                flag: "--proxy-service",
                message: "must not be empty".into(),
            });
        }
        if self.push_attempts == 0 {
            return Err(ConfigError::Invalid {
                flag: "--push-attempts",
                message: "must be at least 1".into(),
            });
        }
        if self.push_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                flag: "--push-timeout",
                message: "must be more than zero".into(),
            });
        }
        if self.gateway_api_discovery_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                flag: "--gateway-api-discovery-interval",
                message: "must be at least 1s".into(),
            });
        }
        if self.status_concurrency == 0 {
            return Err(ConfigError::Invalid {
                flag: "--status-concurrency",
                message: "must be at least 1".into(),
            });
        }
        if self.lease_duration < Duration::from_secs(2) {
            return Err(ConfigError::Invalid {
                flag: "--lease-duration",
                message: "must be at least 2s".into(),
            });
        }
        let server_name = match &self.proxy_server_name {
            Some(name) => Some(
                rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    ConfigError::Invalid {
                        flag: "--proxy-server-name",
                        message: format!("{name:?}: {e}"),
                    }
                })?,
            ),
            None => None,
        };
        if self.proxy_insecure_http && server_name.is_some() {
            return Err(ConfigError::Invalid {
                flag: "--proxy-server-name",
                message: "has no use with --proxy-insecure-http".into(),
            });
        }
        if !weir_crds::route::is_class_name(&self.class) {
            return Err(ConfigError::Invalid {
                flag: "--class",
                message: format!(
                    "{:?} is not a DNS label (lower case letters, digits and '-', at most 63)",
                    self.class
                ),
            });
        }
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let proxy_namespace = self
            .proxy_namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_owned());
        Ok(Config {
            namespaces: if namespaces.is_empty() {
                Namespaces::All
            } else {
                Namespaces::Only(namespaces)
            },
            proxies: ProxyConfig {
                service: self.proxy_service.clone(),
                namespace: proxy_namespace.clone(),
                port_name: self.proxy_admin_port_name.clone(),
                scheme: if self.proxy_insecure_http {
                    "http"
                } else {
                    "https"
                },
                token,
                token_file: Some(self.admin_token_file.clone()),
                ca_pem,
                server_name,
                push_timeout: self.push_timeout,
                push_attempts: self.push_attempts,
            },
            lease: LeaseConfig {
                name: self.lease_name.clone(),
                namespace: self.lease_namespace.clone().unwrap_or(proxy_namespace),
                identity: self.identity.clone().unwrap_or_else(default_identity),
                duration: self.lease_duration,
            },
            metrics_address: self.metrics_address,
            debounce: self.debounce,
            compile: weir_crds::Options {
                allow_url_backends: self.allow_url_backends,
                class: Some(weir_crds::GatewayClass {
                    name: self.class.clone(),
                    default: self.default_class,
                }),
                trusted_namespaces: self.trusted(default_namespace),
                listener_ports: self.gateway_http_port.zip(self.gateway_https_port).map(
                    |(http, https)| weir_crds::compile::gateway_api::ListenerPorts { http, https },
                ),
            },
            status: crate::status::StatusLimits {
                concurrency: self.status_concurrency,
                per_second: self.status_writes_per_second,
            },
            config_map_selector: self
                .config_map_selector
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            watch_ingresses: self.watch_ingresses,
            publish: self.publish()?,
            watch_gateway_api: self.watch_gateway_api,
            gateway_api_discovery_interval: self.gateway_api_discovery_interval,
        })
    }

    /// What Ingresses publish: fixed addresses, or a Service's.
    fn publish(&self) -> Result<crate::status::Publish, ConfigError> {
        let addresses: Vec<String> = self
            .publish_address
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if !addresses.is_empty() {
            return Ok(crate::status::Publish::Addresses(addresses));
        }
        let Some(service) = self.publish_service.as_deref().map(str::trim) else {
            return Ok(crate::status::Publish::Nothing);
        };
        match service.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                Ok(crate::status::Publish::Service {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(ConfigError::Invalid {
                flag: "--publish-service",
                message: format!("{service:?} is not NAMESPACE/NAME"),
            }),
        }
    }
}

impl Cli {
    /// The namespaces trusted with broad host claims; `None` for all (`*`).
    fn trusted(&self, default_namespace: &str) -> Option<std::collections::BTreeSet<String>> {
        let listed: std::collections::BTreeSet<String> = self
            .trusted_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if listed.contains("*") {
            return None;
        }
        if listed.is_empty() {
            return Some(std::collections::BTreeSet::from([
                default_namespace.to_owned()
            ]));
        }
        Some(listed)
    }
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "weir-operator".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weir-operator").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_become_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, " secret-token-of-at-least-32-characters\n").unwrap();
        let token = token.to_str().unwrap();
        let cli = parse(&[
            "--admin-token-file",
            token,
            "--namespaces",
            "shop, ,pay",
            "--proxy-insecure-http",
            "--debounce",
            "1s",
        ]);
        let config = cli.to_config("weir").unwrap();
        assert_eq!(
            config.namespaces,
            Namespaces::Only(vec!["shop".into(), "pay".into()])
        );
        assert_eq!(
            config.proxies.token,
            "secret-token-of-at-least-32-characters"
        );
        assert_eq!(config.proxies.scheme, "http");
        assert_eq!(config.proxies.namespace, "weir");
        assert_eq!(config.lease.namespace, "weir");
        assert_eq!(config.debounce, Duration::from_secs(1));
        assert_eq!(
            config.compile,
            weir_crds::Options {
                allow_url_backends: false,
                class: Some(weir_crds::GatewayClass {
                    name: "weir".into(),
                    default: true
                }),
                trusted_namespaces: Some(["weir".to_owned()].into()),
                listener_ports: None,
            },
            "a cluster install serves the default class, no URL backends, and trusts its own \
             namespace only with broad hosts"
        );
        let trusting = |flag: &str| {
            parse(&["--admin-token-file", token, "--trusted-namespaces", flag])
                .to_config("weir")
                .unwrap()
                .compile
                .trusted_namespaces
        };
        assert_eq!(trusting("*"), None);
        assert_eq!(
            trusting("edge, platform"),
            Some(["edge".to_owned(), "platform".to_owned()].into())
        );
        let all = parse(&["--admin-token-file", token])
            .to_config("x")
            .unwrap();
        assert_eq!(all.namespaces, Namespaces::All);
        assert_eq!(all.proxies.scheme, "https");
        assert_eq!(all.proxies.server_name, None);
        let internal = parse(&[
            "--admin-token-file",
            token,
            "--class",
            "internal",
            "--default-class=false",
            "--allow-url-backends=true",
            "--proxy-server-name",
            "weir-proxy-admin.weir.svc",
        ])
        .to_config("x")
        .unwrap();
        assert_eq!(
            internal.compile.class,
            Some(weir_crds::GatewayClass {
                name: "internal".into(),
                default: false
            })
        );
        assert!(internal.compile.allow_url_backends);
        assert!(config.watch_gateway_api);
        assert_eq!(
            config.gateway_api_discovery_interval,
            Duration::from_secs(30)
        );
        let gateway = parse(&[
            "--admin-token-file",
            token,
            "--gateway-http-port",
            "8080",
            "--gateway-https-port",
            "8443",
            "--watch-gateway-api=false",
        ])
        .to_config("x")
        .unwrap();
        assert_eq!(
            gateway.compile.listener_ports,
            Some(weir_crds::compile::gateway_api::ListenerPorts {
                http: 8080,
                https: 8443
            })
        );
        assert!(!gateway.watch_gateway_api);
        assert!(
            Cli::try_parse_from([
                "weir-operator",
                "--admin-token-file",
                token,
                "--gateway-http-port",
                "80"
            ])
            .is_err(),
            "one listener port without the other"
        );
        assert_eq!(
            internal
                .proxies
                .server_name
                .map(|n| n.to_str().into_owned()),
            Some("weir-proxy-admin.weir.svc".to_owned())
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let missing = parse(&["--admin-token-file", "/nonexistent/token"]);
        let error = missing.to_config("x").unwrap_err().to_string();
        assert!(
            error.starts_with("--admin-token-file /nonexistent/token"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "short\n").unwrap();
        let short = parse(&["--admin-token-file", token.to_str().unwrap()]);
        let error = short.to_config("x").unwrap_err().to_string();
        assert!(
            error.contains("5 characters; the proxies require at least 32"),
            "{error}"
        );
        std::fs::write(&token, "t".repeat(32)).unwrap();
        let token = token.to_str().unwrap();
        let zero = parse(&["--admin-token-file", token, "--push-attempts", "0"]);
        assert!(
            zero.to_config("x")
                .unwrap_err()
                .to_string()
                .contains("--push-attempts")
        );
        for (args, flag) in [
            (&["--class", "Public_Gateway"][..], "--class"),
            (
                &["--proxy-server-name", "not a name"][..],
                "--proxy-server-name",
            ),
            (
                &["--proxy-server-name", "a.b", "--proxy-insecure-http"][..],
                "--proxy-server-name",
            ),
        ] {
            let cli = parse(&[&["--admin-token-file", token][..], args].concat());
            let error = cli.to_config("x").unwrap_err().to_string();
            assert!(error.starts_with(flag), "{args:?}: {error}");
        }
        let discovery = parse(&[
            "--admin-token-file",
            token,
            "--gateway-api-discovery-interval",
            "0s",
        ]);
        assert!(
            discovery
                .to_config("x")
                .unwrap_err()
                .to_string()
                .starts_with("--gateway-api-discovery-interval")
        );
        let lease = parse(&["--admin-token-file", token, "--lease-duration", "1s"]);
        assert!(
            lease
                .to_config("x")
                .unwrap_err()
                .to_string()
                .contains("--lease-duration")
        );
    }
}

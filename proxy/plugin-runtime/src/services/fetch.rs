//! `ctx.services.http.fetch`: outbound HTTP(S) for plugins that refuses loopback, private,
//! link-local and metadata addresses unless allow-listed.
//!
//! The check runs on the addresses the connection is made to: the resolver used by the
//! connector returns only permitted addresses, so a name that resolves to a public address
//! when checked and to 127.0.0.1 when connecting (DNS rebinding) cannot get through, and
//! IP-literal URLs are checked before any connection. Redirects are not followed: the
//! plugin sees the 3xx and may fetch the `location` itself, which is checked again.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use futures::future::LocalBoxFuture;

use super::crypto::{self, Encoding};
use crate::config::FetchConfig;

/// Networks no plugin reaches unless allow-listed.
const REFUSED_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    // NAT64 (RFC 6052, RFC 8215): they reach IPv4 hosts, private ones included.
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    // Site-local (deprecated, still routed by some networks).
    "fec0::/10",
    "ff00::/8",
    // Azure's platform endpoint (wireserver), reachable from every VM.
    "168.63.129.16/32",
];

/// Why a fetch failed; the plugin's promise rejects with this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The URL, method or a header is not valid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The address is loopback, private, link-local or metadata, and not allow-listed.
    #[error("refused: {0} is not a public address (allow it with fetch.allowNetworks)")]
    Refused(String),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Failed(String),
}

/// Which addresses a plugin may connect to.
#[derive(Debug, Clone)]
pub(crate) struct AddressPolicy {
    refused: Vec<IpNet>,
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
}

impl AddressPolicy {
    /// The built-in refused networks, with `allow` (CIDRs) exempted from them and `deny`
    /// (CIDRs) refused whatever `allow` says; an invalid CIDR is an error naming it.
    pub(crate) fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let refused = REFUSED_NETWORKS
            .iter()
            .filter_map(|cidr| cidr.parse().ok())
            .collect();
        Ok(Self {
            refused,
            allowed: networks(allow, "fetch.allowNetworks")?,
            denied: networks(deny, "fetch.denyNetworks")?,
        })
    }

    /// Whether a plugin may connect to `ip`.
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address reaches the IPv4 host.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let within = |networks: &[IpNet]| networks.iter().any(|net| net.contains(&ip));
        !within(&self.denied) && (within(&self.allowed) || !within(&self.refused))
    }
}

/// CIDRs (or single addresses) of the `field` setting, parsed.
fn networks(cidrs: &[String], field: &str) -> Result<Vec<IpNet>, String> {
    cidrs
        .iter()
        .map(|cidr| {
            cidr.parse::<IpNet>()
                .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                .map_err(|e| format!("{field}: {cidr:?}: {e}"))
        })
        .collect()
}

/// A resolver that hands the connector only permitted addresses.
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|address| policy.permits(address.ip()))
                .collect();
            if permitted.is_empty() {
                let addresses: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    FetchError::Refused(format!("{host} ({})", addresses.join(", "))),
                ));
            }
            Ok(permitted.into_iter())
        })
    }
}

/// Where `ctx.services.http.fetch` goes: the network ([`Fetcher`]), or in plugin tests
/// the answers a test stubbed.
pub(crate) trait HttpClient: Send + Sync {
    /// Runs one fetch.
    fn fetch(&self, request: FetchRequest)
    -> LocalBoxFuture<'_, Result<FetchResponse, FetchError>>;
}

/// A fetch as the plugin asked for it.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchRequest {
    pub(crate) url: String,
    pub(crate) method: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Option<String>,
    /// A binary body, base64 (instead of `body`).
    #[serde(default)]
    pub(crate) body_base64: Option<String>,
    pub(crate) timeout_ms: Option<u64>,
}

/// What the plugin gets back.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchResponse {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    /// The body when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// The body as base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

impl FetchResponse {
    /// A response with `body`, kept as text when it is UTF-8.
    pub(crate) fn new(status: u16, headers: BTreeMap<String, String>, body: Vec<u8>) -> Self {
        let (body, body_base64) = match String::from_utf8(body) {
            Ok(text) => (Some(text), None),
            Err(bytes) => (
                None,
                Some(crypto::encode(bytes.as_bytes(), Encoding::Base64)),
            ),
        };
        Self {
            status,
            headers,
            body,
            body_base64,
        }
    }
}

/// The HTTP client behind `fetch`.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    policy: Arc<AddressPolicy>,
    config: FetchConfig,
}

impl HttpClient for Fetcher {
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> LocalBoxFuture<'_, Result<FetchResponse, FetchError>> {
        Box::pin(self.fetch_within_limit(request))
    }
}

impl Fetcher {
    pub(crate) fn new(config: &FetchConfig) -> Result<Self, String> {
        let policy = Arc::new(AddressPolicy::new(
            &config.allow_networks,
            &config.deny_networks,
        )?);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(config.max_timeout_ms)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| format!("TLS for fetch: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            policy,
            config: config.clone(),
        })
    }

    /// Runs one fetch within its time limit.
    async fn fetch_within_limit(&self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let timeout_ms = request
            .timeout_ms
            .unwrap_or(self.config.default_timeout_ms)
            .clamp(1, self.config.max_timeout_ms);
        let exchange = self.exchange(request);
        tokio::time::timeout(Duration::from_millis(timeout_ms), exchange)
            .await
            .map_err(|_| FetchError::Timeout(timeout_ms))?
    }

    async fn exchange(&self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let uri: http::Uri = request
            .url
            .parse()
            .map_err(|e| FetchError::Invalid(format!("url {:?}: {e}", request.url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(FetchError::Invalid(format!(
                "url {:?}: only http and https",
                request.url
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| FetchError::Invalid(format!("url {:?} has no host", request.url)))?;
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            && !self.policy.permits(ip)
        {
            return Err(FetchError::Refused(ip.to_string()));
        }
        let mut builder = http::Request::builder()
            .method(request.method.as_str())
            .uri(uri);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = match request.body_base64 {
            Some(base64) => Bytes::from(
                crypto::decode(&base64, Encoding::Base64)
                    .map_err(|e| FetchError::Invalid(format!("body: {e}")))?,
            ),
            None => Bytes::from(request.body.unwrap_or_default()),
        };
        let body = Full::new(body);
        let outgoing = builder
            .body(body)
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        let response = self.client.request(outgoing).await.map_err(|e| {
            // The resolver's refusal arrives wrapped in connect errors.
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(error) = source {
                if let Some(io) = error.downcast_ref::<std::io::Error>()
                    && io.kind() == std::io::ErrorKind::PermissionDenied
                {
                    return FetchError::Failed(io.to_string());
                }
                source = error.source();
            }
            FetchError::Failed(format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))
        })?;
        let status = response.status().as_u16();
        let mut headers = BTreeMap::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|existing: &mut String| {
                    existing.push_str(", ");
                    existing.push_str(&value);
                })
                .or_insert(value);
        }
        let limit = self.config.max_response_bytes;
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| FetchError::Failed(format!("response body (limit {limit} bytes): {e}")))?
            .to_bytes();
        Ok(FetchResponse::new(status, headers, body.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        let policy = AddressPolicy::new(&[], &[]).unwrap();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "fec0::1",
            "168.63.129.16",
        ] {
            assert!(!policy.permits(refused.parse().unwrap()), "{refused}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(policy.permits(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn allow_listed_networks_are_permitted() {
        let policy = AddressPolicy::new(&["127.0.0.1".into(), "10.0.0.0/8".into()], &[]).unwrap();
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("10.9.9.9".parse().unwrap()));
        assert!(!policy.permits("127.0.0.2".parse().unwrap()));
        assert!(
            AddressPolicy::new(&["not-a-cidr".into()], &[])
                .unwrap_err()
                .contains("not-a-cidr")
        );
    }

    /// The cluster's pod and service ranges are refused even inside an allowed network,
    /// and even when they are public addresses.
    #[test]
    fn denied_networks_win() {
        let policy = AddressPolicy::new(
            &["10.0.0.0/8".into()],
            &["10.96.0.0/12".into(), "2001:db8:42::/56".into()],
        )
        .unwrap();
        assert!(policy.permits("10.1.2.3".parse().unwrap()));
        assert!(!policy.permits("10.96.0.1".parse().unwrap()));
        assert!(!policy.permits("2001:db8:42::1".parse().unwrap()));
        assert!(
            AddressPolicy::new(&[], &["pods".into()])
                .unwrap_err()
                .contains("fetch.denyNetworks")
        );
    }
}

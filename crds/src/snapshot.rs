//! The `Snapshot`: everything a proxy needs to serve, compiled from the Routes, Plugins,
//! ConfigMaps, Services, EndpointSlices and Secrets of the cluster (or of a directory).
//!
//! A proxy swaps a whole snapshot at once. The format is JSON (serde), versioned by
//! [`SNAPSHOT_FORMAT`]; `docs/snapshot.md` describes it for people. Maps are `BTreeMap`s
//! and lists are sorted by the compiler, so equal inputs serialize to equal bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plugin::{FailurePolicy, PluginScope};
use crate::route::{LoadBalancer, RetryOn, ValueMatchType};

/// The version of the wire format itself. A proxy refuses snapshots of another format.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Everything a proxy serves, at one version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`] of the producer.
    pub format: u32,
    /// Grows by one whenever the content changes; proxies report the version they run.
    pub version: u64,
    /// `sha256:` of the content (everything but `version` and `hash`).
    pub hash: String,
    /// Hosts with their match entries, most specific entry first.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Rules by id (`namespace/route/index`): what to do with a matched request. Boxed:
    /// the compiler assembles this map from tens of thousands of rules, and a map of
    /// pointers is built without copying each rule through its buffers.
    pub rules: BTreeMap<String, Box<Rule>>,
    /// Upstreams by id (`service:namespace/name:port` or `url:<url>`).
    pub backends: BTreeMap<String, Backend>,
    /// Plugin bundles by id (`namespace/name`).
    pub plugins: BTreeMap<String, PluginBundle>,
    /// TLS certificates, chosen by SNI.
    pub certificates: Vec<Certificate>,
}

/// The part of a snapshot the hash covers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Content<'a> {
    format: u32,
    virtual_hosts: &'a [VirtualHost],
    rules: &'a BTreeMap<String, Box<Rule>>,
    backends: &'a BTreeMap<String, Backend>,
    plugins: &'a BTreeMap<String, PluginBundle>,
    certificates: &'a [Certificate],
}

impl Snapshot {
    /// An empty snapshot at version 0: what a proxy has before its first real one.
    pub fn empty() -> Self {
        let mut snapshot = Self {
            format: SNAPSHOT_FORMAT,
            version: 0,
            hash: String::new(),
            virtual_hosts: Vec::new(),
            rules: BTreeMap::new(),
            backends: BTreeMap::new(),
            plugins: BTreeMap::new(),
            certificates: Vec::new(),
        };
        snapshot.hash = snapshot.content_hash();
        snapshot
    }

    /// `sha256:<hex>` of the content, independent of `version` and `hash`.
    pub fn content_hash(&self) -> String {
        let content = Content {
            format: self.format,
            virtual_hosts: &self.virtual_hosts,
            rules: &self.rules,
            backends: &self.backends,
            plugins: &self.plugins,
            certificates: &self.certificates,
        };
        // Hashed as it is serialized, without holding the JSON (megabytes for thousands
        // of Routes). Serializing plain data into a hasher cannot fail.
        let mut hasher = HashWriter(Sha256::new());
        let _ = serde_json::to_writer(&mut hasher, &content);
        format!("sha256:{}", hex::encode(hasher.0.finalize()))
    }

    /// Whether `hash` is the hash of the content (a check against corruption in transit).
    pub fn hash_is_valid(&self) -> bool {
        self.hash == self.content_hash()
    }
}

/// Feeds what is written into a SHA-256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A host (`api.example.com`, `*.example.com`, or `*` for any host) and its match entries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// The host pattern, lower case.
    pub host: String,
    /// Match entries, most specific first: the first that matches a request wins.
    pub entries: Vec<MatchEntry>,
}

/// A request match leading to a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MatchEntry {
    /// Id of the rule in [`Snapshot::rules`].
    pub rule: String,
    /// Path condition, on the normalized path.
    pub path: PathPattern,
    /// Methods allowed (upper case); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions (names lower case), all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueCondition>,
    /// Query parameter conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueCondition>,
    /// Only requests over TLS (`true`) or over plain HTTP (`false`); unset takes both. Set
    /// for Gateway API routes attached only to HTTPS listeners, or only to HTTP ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// A path condition. See [`crate::path`] for normalization and segment rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(tag = "type", content = "value")]
pub enum PathPattern {
    /// The path equals this.
    Exact(String),
    /// A `{param}` template.
    Template(String),
    /// A regular expression that must match the whole path.
    Regex(String),
    /// The path lies under this prefix, segment-wise.
    Prefix(String),
}

/// A header or query parameter condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ValueCondition {
    /// Header name (lower case) or query parameter name.
    pub name: String,
    /// How to compare.
    #[serde(rename = "type")]
    pub kind: ValueMatchType,
    /// Value or regular expression; absent for `Present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// What to do with requests matched to one rule of one Route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// `namespace/name` of the Route: the route label in metrics and access logs.
    pub route: String,
    /// Index of the rule within the Route.
    pub index: u32,
    /// The action.
    pub action: Action,
    /// CORS policy; preflights are answered by the proxy. Shared by the rules of a Route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Arc<Cors>>,
    /// Plugins run for these requests, in order. Shared by the rules of a Route.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub plugins: Arc<[PluginCall]>,
    /// Plain-HTTP requests are redirected to HTTPS instead of being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<HttpsRedirectAction>,
    /// Client addresses allowed and refused. Shared by the rules of a Route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<Arc<SourceRanges>>,
    /// Limits per client address. Shared by the rules of a Route, which count together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limits: Option<Arc<ClientLimits>>,
    /// Changes to the response's headers, whatever answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<Box<HeaderChanges>>,
}

/// Changes to a set of headers, applied in this order: `remove`, `set`, `add`. Names are
/// lower case and each appears once across the three.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderChanges {
    /// Headers replaced (or created) with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Values added after those there are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// The redirect of plain-HTTP requests to HTTPS.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpsRedirectAction {
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// Port of the target, when not 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Client address ranges (CIDRs in canonical form: `10.0.0.0/8`, `2001:db8::/32`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SourceRanges {
    /// Only these are served; empty means every address not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// These are refused (403), checked first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Limits per client address, counted by each proxy on its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ClientLimits {
    /// What the rules sharing these limits have in common (`namespace/route`): their
    /// counts are one.
    pub scope: String,
    /// Sustained requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// Requests allowed at once above the sustained rate.
    #[serde(default)]
    pub burst: u32,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_requests: Option<u32>,
}

/// The action of a rule. Each kind is boxed: a rule is a value of the snapshot's largest
/// map (30,000 of them for 10,000 Routes), and an inline `Forward` made every rule,
/// redirects and fixed responses too, five times the size of its other fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// Proxy to backends.
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect(Box<RedirectAction>),
    /// Answer with a fixed response.
    Respond(Box<Respond>),
}

/// Proxying to weighted backends.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// Backends with their weights (all weights positive).
    pub backends: Vec<WeightedBackend>,
    /// Path rewrite before going upstream. Boxed, as the request headers' changes: most
    /// rules have neither, and each takes tens of bytes inline in every forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_rewrite: Option<Box<PathRewrite>>,
    /// Host header sent upstream instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    /// Time limits.
    pub timeouts: TimeoutsMs,
    /// Retry policy; absent means no retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Load-balancing algorithm across a backend's endpoints.
    pub load_balancer: LoadBalancer,
    /// Requests in flight per backend before shedding with 503; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// Passive outlier ejection; absent means endpoints are never ejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<Outliers>,
    /// Protocols a client may upgrade to (lower case, without versions; never `h2c`).
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Largest request body, in bytes; absent means the proxy's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Changes to the request's headers before it goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<Box<HeaderChanges>>,
    /// Backends that get a copy of a share of the requests; their answers are dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
}

/// A backend that gets a copy of `numerator` out of every `denominator` requests of a
/// rule, drawn at random for each request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// Id in [`Snapshot::backends`].
    pub backend: String,
    /// Requests copied out of every `denominator` (at most `denominator`; 0: none).
    pub numerator: u32,
    /// Positive.
    pub denominator: u32,
}

/// The protocols a rule allows upgrades to when its Route names none: WebSocket.
pub fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_owned()]
}

/// The protocol an `Upgrade` token names, as rules list it and the proxy compares it:
/// without its version, trimmed, lower case (`WebSocket/13` is `websocket`).
pub fn upgrade_protocol(token: &str) -> String {
    token
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The protocol no upgrade may switch to, whatever a rule says: an `h2c` upgrade would
/// let a client speak HTTP/2 to the backend past the proxy's routing and plugins.
pub const NEVER_UPGRADED: &str = "h2c";

/// A backend and its weight.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WeightedBackend {
    /// Id in [`Snapshot::backends`].
    pub backend: String,
    /// Relative share of requests (positive).
    pub weight: u32,
}

/// A path rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", content = "value")]
pub enum PathRewrite {
    /// Replace the matched `Prefix` (or `Exact`) value with this.
    ReplacePrefix(String),
    /// Replace the whole path with this.
    ReplaceFull(String),
    /// Replace the whole path with a regular expression's substitution.
    Regex(RegexSubstitution),
}

/// A path rewritten by a regular expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegexSubstitution {
    /// Searched in the normalized path.
    pub pattern: String,
    /// The new path, with `$n`/`${name}` for the groups.
    pub substitution: String,
}

/// Time limits in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsMs {
    /// Routing until upstream response headers.
    pub request_ms: u64,
    /// Longest silence while a body streams.
    pub idle_ms: u64,
    /// Opening a connection to an endpoint.
    pub connect_ms: u64,
    /// Longest silence both ways on an upgraded connection.
    #[serde(default = "default_tunnel_idle_ms")]
    pub tunnel_idle_ms: u64,
}

/// How long an upgraded connection may be silent when its Route does not say: 300 s.
pub const DEFAULT_TUNNEL_IDLE_MS: u64 = 300_000;

fn default_tunnel_idle_ms() -> u64 {
    DEFAULT_TUNNEL_IDLE_MS
}

/// A retry policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Retries after the first try.
    pub attempts: u32,
    /// Failure kinds retried.
    pub retry_on: Vec<RetryOn>,
    /// Upstream statuses retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// First backoff.
    pub backoff_base_ms: u64,
    /// Longest backoff.
    pub backoff_max_ms: u64,
    /// Retries allowed as a percentage of requests in flight.
    pub budget_percent: u32,
}

/// Passive outlier ejection settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Outliers {
    /// Consecutive failures that eject an endpoint.
    pub consecutive_failures: u32,
    /// First ejection time; each further ejection of the same endpoint lasts longer.
    pub base_ejection_ms: u64,
    /// Most endpoints of a backend out at once, in percent.
    pub max_ejection_percent: u32,
}

/// A redirect answered by the proxy; unset parts keep the request's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedirectAction {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Target host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A fixed response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Respond {
    /// Status code.
    pub status: u16,
    /// Headers (names lower case), sorted by name; a map on the wire. A list, not a
    /// `BTreeMap`: a map's first node holds room for eleven entries, and most fixed
    /// responses have one header (10,000 of them at 10,000 Routes).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "sorted_map")]
    pub headers: Vec<(String, String)>,
    /// Body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// A list of name and value pairs sorted by name, as a JSON object.
mod sorted_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(pairs.iter().map(|(name, value)| (name, value)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// A CORS policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins: exact, `scheme://*.domain`, or `*`.
    pub allow_origins: Vec<String>,
    /// Allowed methods.
    pub allow_methods: Vec<String>,
    /// Allowed request headers (lower case), or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub allow_credentials: bool,
    /// Preflight cache time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
}

/// A plugin run for a rule, with the config it sees there.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PluginCall {
    /// Id in [`Snapshot::plugins`].
    pub plugin: String,
    /// The plugin's config merged with the Route's override, already validated, as JSON
    /// text: what the plugin runtime hands to isolates, and a few dozen bytes where a
    /// parsed value takes kilobytes (10,000 Routes hold tens of thousands). Every rule of
    /// a Route shares its Route's.
    pub config: Arc<serde_json::value::RawValue>,
}

impl PluginCall {
    /// A call of `plugin` with `config`, kept as its JSON text.
    pub fn new(plugin: impl Into<String>, config: &serde_json::Value) -> Self {
        // A Value always serializes.
        let config = serde_json::value::to_raw_value(config)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
        Self {
            plugin: plugin.into(),
            config: Arc::from(config),
        }
    }
}

impl PartialEq for PluginCall {
    /// The same plugin with the same config text (the compiler writes configs with sorted
    /// keys, so equal configs have equal text).
    fn eq(&self, other: &Self) -> bool {
        self.plugin == other.plugin && self.config.get() == other.config.get()
    }
}

/// An upstream: how to speak to it and where its endpoints are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Wire protocol.
    pub protocol: BackendProtocol,
    /// Endpoints; empty means the backend has none ready (503).
    pub endpoints: Vec<Endpoint>,
    /// TLS server name for `Https` backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Prepended to every request path (from a URL backend's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// Why the backend cannot be used, when its reference is invalid (a Gateway API
    /// backend of another kind, not permitted, or not found): the requests its weight
    /// sends it are answered 500, as the Gateway API asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
}

/// How the proxy speaks to a backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 or HTTP/2 (by ALPN) over TLS.
    Https,
    /// HTTP/2 over TCP without TLS.
    H2c,
}

/// An endpoint: an IP address or a DNS name, and a port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// IP address or DNS name (resolved by the proxy).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A compiled plugin.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PluginBundle {
    /// Namespace of the Plugin.
    pub namespace: String,
    /// Name of the Plugin.
    pub name: String,
    /// `metadata.generation` of the Plugin this bundle was compiled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The entry ES module, as JavaScript.
    pub code: String,
    /// The modules the entry imports (`./name`), directly or not, as JavaScript by file
    /// name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, String>,
    /// `sha256:` of `code` and `modules`: the plugin version isolates load.
    pub code_hash: String,
    /// The plugin's own config (Routes see it merged with their override).
    pub config: serde_json::Value,
    /// Places of `config` whose values came from Secrets (`secretRefs`): JSON Pointer →
    /// `Secret ns/name, key k`, so the compiler's messages about Routes' configs never show
    /// them. The proxy does not read it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_paths: BTreeMap<String, String>,
    /// The JSON Schema configs were checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// Position among global plugins.
    pub order: i32,
    /// Global or attached.
    pub scope: PluginScope,
    /// Time budget per hook call.
    pub timeout_ms: u32,
    /// Memory limit per isolate.
    #[serde(rename = "memoryLimitMiB")]
    pub memory_limit_mib: u32,
    /// What a failure does to the request.
    pub failure_policy: FailurePolicy,
}

/// A TLS certificate and the hosts it serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Host patterns (exact or `*.domain`) that select this certificate by SNI.
    pub hosts: Vec<String>,
    /// `namespace/name` of the Secret.
    pub secret: String,
    /// `namespace/name` of the Routes that name the Secret, to report load problems on.
    pub routes: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub chain_pem: String,
    /// PEM private key.
    pub key_pem: PrivateKeyPem,
}

/// A PEM private key; `Debug` does not print it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct PrivateKeyPem(pub String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_response_headers_are_a_sorted_map_on_the_wire() {
        let json = r#"{"status":200,"headers":{"x-b":"2","content-type":"text/plain"}}"#;
        let respond: Respond = serde_json::from_str(json).unwrap();
        assert_eq!(
            respond.headers,
            [
                ("content-type".to_owned(), "text/plain".to_owned()),
                ("x-b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(
            serde_json::to_string(&respond).unwrap(),
            r#"{"status":200,"headers":{"content-type":"text/plain","x-b":"2"}}"#
        );
        let bare: Respond = serde_json::from_str(r#"{"status":204}"#).unwrap();
        assert!(bare.headers.is_empty());
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"status":204}"#);
    }

    #[test]
    fn hash_ignores_version_and_tracks_content() {
        let mut a = Snapshot::empty();
        assert!(a.hash_is_valid());
        let before = a.content_hash();
        a.version = 7;
        assert_eq!(a.content_hash(), before);
        a.certificates.push(Certificate {
            hosts: vec!["a.example".into()],
            secret: "ns/s".into(),
            routes: vec!["ns/r".into()],
            chain_pem: "chain".into(),
            key_pem: PrivateKeyPem("key".into()),
        });
        assert_ne!(a.content_hash(), before);
        assert!(!a.hash_is_valid());
    }

    #[test]
    fn private_keys_do_not_leak_into_debug_output() {
        let key = PrivateKeyPem("-----BEGIN PRIVATE KEY-----secret".into());
        assert!(!format!("{key:?}").contains("secret"));
    }
}

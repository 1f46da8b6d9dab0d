//! The `Route` custom resource: which requests a host and path bring to which backends,
//! and what happens on the way (rewrites, timeouts, retries, CORS, TLS, plugins).
//!
//! The schema carries every rule OpenAPI and CEL can express, so `kubectl apply` refuses
//! nonsense early; the compiler checks the same rules again because standalone mode reads
//! these types from files with no API server in front.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Conditions;

/// Pattern of a host name: DNS labels, lower case, optionally behind a leading `*.` wildcard.
pub const HOST_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

/// Whether `host` is a host name as Routes take it ([`HOST_PATTERN`], at most 253 bytes):
/// lower-case DNS labels, optionally behind `*.`. For hosts that reach the compiler
/// without the Route schema in front (those of Ingresses).
pub fn is_host_name(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Pattern of a gateway class name (`spec.className`): a DNS label.
pub const CLASS_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Whether `name` is a valid gateway class name ([`CLASS_NAME_PATTERN`], at most 63 bytes).
pub fn is_class_name(name: &str) -> bool {
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(inner)
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Pattern of a duration such as `250ms`, `10s` or `1m30s` (the Gateway API form).
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// Pattern of an HTTP header or query parameter name (an RFC 9110 token).
pub const TOKEN_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

/// A Route sends requests for some hosts to backends, or answers them itself.
// Printer columns repeat `type_ = "string"`, which is what the lint flags.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Route",
    namespaced,
    status = "RouteStatus",
    shortname = "wr",
    category = "weir",
    derive = "PartialEq",
    doc = "A Route sends requests for some hosts to backends, or answers them itself.",
    printcolumn(name = "Hosts", type_ = "string", json_path = ".spec.hosts"),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The gateway class that serves this Route: the `--class` of a weir operator. Unset
    /// means the default gateway (the operator started with `--default-class=true`).
    /// Lets two gateways (say a public and an internal one) share a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(CLASS_NAME_PATTERN))]
    pub class_name: Option<String>,

    /// Host names this Route serves, exact (`api.example.com`) or wildcards: `*.example.com`
    /// matches every subdomain (`a.example.com`, `a.b.example.com`) but not `example.com`,
    /// and the longest wildcard wins. Empty means every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253), pattern(HOST_PATTERN)))]
    pub hosts: Vec<String>,

    /// The rules, each a set of matches and what to do with a matching request.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<RouteRule>,

    /// TLS certificate for the hosts of this Route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,

    /// CORS policy; the proxy answers preflight requests itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,

    /// Plugins run for this Route, in this order, after the namespace's global plugins.
    /// Listing a global plugin here only overrides its config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub plugins: Vec<PluginAttachment>,

    /// Namespaces whose Routes may also serve this Route's hosts (`*`: every namespace).
    /// A host belongs to the namespace of the oldest Route that claims it (or of an
    /// older wildcard covering it); Routes of other namespaces for that host are
    /// `Accepted=False`, `HostNotOwned`, unless a Route of the owning namespace for that
    /// host lists their namespace here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub allowed_namespaces: Vec<String>,

    /// Requests that arrive over plain HTTP are answered with a redirect to `https`
    /// (same host and path) instead of being served. A request counts as HTTPS when it
    /// came over TLS, or from a trusted proxy that says so in `X-Forwarded-Proto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<HttpsRedirect>,

    /// Client addresses allowed and refused (403): `deny` is checked first, then, when
    /// `allow` is not empty, the address must be in it. The client address is the
    /// connection's peer, or what a trusted proxy put in `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<SourceRanges>,

    /// Limits per client address, counted by each proxy replica on its own: requests
    /// over them are answered 429 with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limits: Option<ClientLimits>,
}

/// The redirect of plain-HTTP requests to HTTPS.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpsRedirect {
    /// Status code. Default 308 (the method and body are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<RedirectStatus>,

    /// Port of the HTTPS target; unset means 443 (left out of the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// Client address ranges, as CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRanges {
    /// Only these clients are served; empty means every client not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub allow: Vec<String>,

    /// These clients are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub deny: Vec<String>,
}

/// Limits on what one client address may ask of a Route.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.requestsPerSecond) || has(self.concurrentRequests)",
        "message": "set requestsPerSecond, concurrentRequests or both"
    }
]))]
pub struct ClientLimits {
    /// Sustained requests per second, per client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests_per_second: Option<u32>,

    /// Requests a client may send at once above the sustained rate. Default: five times
    /// `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10_000_000))]
    pub burst: Option<u32>,

    /// Requests one client address may have in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub concurrent_requests: Option<u32>,
}

/// What the API server and the operator report about a Route.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// `Accepted`, `ResolvedRefs` and `Programmed`, each with `observedGeneration`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,

    /// The `metadata.generation` the conditions describe: while it is below the
    /// object's generation, the operator has not caught up with the last change (kstatus
    /// reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One rule: requests matching any of `matches` get this rule's action, which is exactly
/// one of `backends`, `redirect` and `directResponse`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.backends), has(self.redirect), has(self.directResponse)].filter(x, x).size() == 1",
        "message": "set exactly one of backends, redirect and directResponse"
    },
    {
        "rule": "!has(self.rewrite) || has(self.backends)",
        "message": "rewrite applies only to rules with backends"
    },
    {
        "rule": "(!has(self.timeouts) && !has(self.retries) && !has(self.loadBalancer) && !has(self.maxConcurrentRequests) && !has(self.outlierDetection) && !has(self.upgrades) && !has(self.maxRequestBodyBytes) && !has(self.requestHeaders)) || has(self.backends)",
        "message": "timeouts, retries, loadBalancer, maxConcurrentRequests, outlierDetection, upgrades, maxRequestBodyBytes and requestHeaders apply only to rules with backends"
    },
    {
        "rule": "!has(self.upgrades) || self.upgrades.all(p, !p.matches('^(?i)h2c(/.*)?$'))",
        "message": "h2c upgrades are never allowed: HTTP/2 clients are served directly (h2c with prior knowledge, or TLS with ALPN)"
    },
    {
        "rule": "!has(self.mirrors) || size(self.mirrors) == 0 || has(self.backends)",
        "message": "mirrors apply only to rules with backends: a redirect or a fixed response sends nothing upstream to copy"
    }
]))]
pub struct RouteRule {
    /// Request matches; a request matching any one of them selects this rule. Empty
    /// means every path (`Prefix /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub matches: Vec<RouteMatch>,

    /// Backends to proxy to, chosen by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub backends: Option<Vec<BackendRef>>,

    /// Answer with a redirect instead of proxying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,

    /// Answer with a fixed response instead of proxying (health endpoints, maintenance pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,

    /// Rewrite of the path and host before the request goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,

    /// Time limits for requests of this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,

    /// When and how often failed requests are tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,

    /// How requests are spread over a backend's endpoints. Default `LeastRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,

    /// Requests this rule may have in flight to each backend at once; further requests
    /// are shed with 503 instead of queueing. Unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_concurrent_requests: Option<u32>,

    /// Passive health checking: endpoints that keep failing are taken out for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,

    /// Protocols a client may switch its connection to with `Upgrade` on this rule, as
    /// `Upgrade` names them (`websocket`, ...). Default `[websocket]`; `[]` allows none.
    /// A request asking for any other protocol goes upstream as a plain request, without
    /// its `Upgrade` header. `h2c` is never allowed: it would let a client speak HTTP/2
    /// to the backend past the proxy's routing and plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub upgrades: Option<Vec<String>>,

    /// Largest request body accepted, in bytes; larger ones are answered 413. Unset
    /// means the proxy's `--max-body-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_request_body_bytes: Option<u64>,

    /// Headers of the request changed before it goes upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderModifier>,

    /// Headers of the response changed before it goes to the client (whatever answered:
    /// the backend, a redirect, a fixed response or an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderModifier>,

    /// Backends that also get a copy of requests (all of them, or a share), as the
    /// primary backend gets it: after the rewrite and the header changes. Their answers
    /// are dropped, and they never slow down or fail the request itself. Only for rules
    /// with backends; upgrade requests (WebSocket) are not mirrored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub mirrors: Vec<RequestMirror>,
}

/// A backend that gets a copy of a rule's requests, whose answers are dropped.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.percent) && has(self.fraction))",
        "message": "set at most one of percent and fraction"
    },
    {
        "rule": "!has(self.backend.weight)",
        "message": "a mirror's share of requests is its percent or fraction; weight applies to backends"
    }
]))]
pub struct RequestMirror {
    /// Where the copies go: a Service (`name` and `port`, optionally `protocol`) or a
    /// `url`, as for backends, without `weight`.
    pub backend: BackendRef,

    /// Share of the rule's requests copied, in percent. Default 100 (with no
    /// `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<u32>,

    /// Share of the rule's requests copied, as a fraction, for shares a whole percent
    /// cannot say (the Gateway API `RequestMirror` filter's `fraction`). At most one of
    /// `percent` and `fraction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<MirrorFraction>,
}

/// A share of requests: `numerator` out of every `denominator`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.numerator <= (has(self.denominator) ? self.denominator : 100)",
        "message": "the numerator cannot be greater than the denominator"
    }
]))]
pub struct MirrorFraction {
    /// Requests copied out of every `denominator`.
    #[schemars(range(min = 0))]
    pub numerator: u32,

    /// Out of how many requests, at least 1. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub denominator: Option<u32>,
}

/// Changes to a set of headers: `remove` first, then `set` (replacing every value of the
/// name), then `add` (after the values there are). Names compare case-insensitively; a
/// name appears at most once across the three. Framing and hop-by-hop headers
/// (`content-length`, `transfer-encoding`, `connection`, ...) and `host` cannot be changed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Headers replaced (or created) with these values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub set: Vec<HeaderEntry>,

    /// Values added to these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub add: Vec<HeaderEntry>,

    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 256), pattern(TOKEN_PATTERN))
    )]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderEntry {
    /// The name.
    #[schemars(length(min = 1, max = 256), pattern(TOKEN_PATTERN))]
    pub name: String,

    /// The value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// Conditions a request must meet, all of them, to match.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition. Unset means `Prefix /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,

    /// Methods allowed; empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub methods: Vec<HttpMethod>,

    /// Header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<ValueMatch>,

    /// Query parameter conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub query: Vec<ValueMatch>,
}

/// How a request path is compared. Request paths are normalized first (dot segments
/// resolved, repeated slashes merged, `%2F` and unreserved escapes decoded).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// The kind of comparison.
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,

    /// The path, template or regular expression. Exact, Prefix and Template values are
    /// absolute paths in normalized form.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// The kinds of path comparison, from most to least specific when several match.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PathMatchType {
    /// The whole path equals the value.
    Exact,
    /// A template such as `/users/{id}/orders/{order}`: each `{name}` matches one
    /// non-empty segment and is passed on to plugins as a path parameter.
    Template,
    /// A regular expression (RE2 syntax) that must match the whole path.
    Regex,
    /// The path starts with the value, segment by segment: `/api` matches `/api` and
    /// `/api/users`, not `/apis`.
    #[default]
    Prefix,
}

/// HTTP request methods.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl HttpMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Options => "OPTIONS",
            Self::Trace => "TRACE",
            Self::Patch => "PATCH",
        }
    }
}

/// A condition on a named header or query parameter.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.type) && self.type == 'Present') || has(self.value)",
        "message": "value is required unless type is Present"
    }
]))]
pub struct ValueMatch {
    /// Header or query parameter name; header names compare case-insensitively.
    #[schemars(length(min = 1, max = 256), pattern(TOKEN_PATTERN))]
    pub name: String,

    /// The kind of comparison. Default `Exact`.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,

    /// The value, or regular expression, to compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
}

/// How a header or query value is compared.
#[derive(
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum ValueMatchType {
    /// The value equals `value`.
    #[default]
    Exact,
    /// The value matches the regular expression `value` in whole.
    Regex,
    /// The header or parameter is present, whatever its value.
    Present,
}

/// A backend: a Kubernetes Service in the Route's namespace (`name` and `port`), or an
/// explicit `url` (standalone mode, external services).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.url) ? !has(self.name) && !has(self.port) : has(self.name) && has(self.port)",
        "message": "set either url, or name and port"
    },
    {
        "rule": "!has(self.url) || !has(self.protocol)",
        "message": "a URL backend's scheme says its protocol; protocol applies to Services"
    }
]))]
pub struct BackendRef {
    /// Name of a Service in the Route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: Option<String>,

    /// Port of the Service (its `port`, not the target port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,

    /// An explicit URL: `http://`, `https://` or `h2c://` (HTTP/2 without TLS), host,
    /// optional port and optional base path prepended to every request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^(https?|h2c)://"))]
    pub url: Option<String>,

    /// Relative share of requests. Default 1; 0 sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub weight: Option<u32>,

    /// How the proxy speaks to the Service. Default: from the port's `appProtocol`
    /// (`https`, `kubernetes.io/h2c`), else HTTP/1.1. A URL backend's scheme says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ServiceProtocol>,

    /// The Service's namespace when it is not the Route's. Never read from a Route: set
    /// only by the translation of kinds that may refer across namespaces (a Gateway API
    /// `HTTPRoute`, once a `ReferenceGrant` allows it).
    #[serde(skip)]
    #[schemars(skip)]
    pub namespace: Option<String>,

    /// Why the reference cannot be used, already told to its object. Never read from a
    /// Route: set only by translations whose kind asks that requests for an invalid
    /// backend fail (a Gateway API `HTTPRoute`: 500) rather than the reference being
    /// dropped.
    #[serde(skip)]
    #[schemars(skip)]
    pub unresolved: Option<String>,
}

/// Protocols the proxy speaks to a Service.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceProtocol {
    /// HTTP/1.1 over TCP.
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/1.1 or HTTP/2 (by ALPN) over TLS, the certificate verified for
    /// `NAME.NAMESPACE.svc`.
    #[serde(rename = "HTTPS")]
    Https,
    /// HTTP/2 without TLS (gRPC).
    #[serde(rename = "H2C")]
    H2c,
}

/// An HTTP redirect answered by the proxy. Unset parts keep the request's own.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.path) && has(self.replacePrefix))",
        "message": "set at most one of path and replacePrefix"
    }
]))]
pub struct Redirect {
    /// Scheme of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<RedirectScheme>,

    /// Host of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: Option<String>,

    /// Port of the target; unset means the scheme's default port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,

    /// Replaces the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern("^/"))]
    pub path: Option<String>,

    /// Replaces the part of the path matched by a `Prefix` match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern("^/"))]
    pub replace_prefix: Option<String>,

    /// Status code. Default 302.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<RedirectStatus>,
}

/// Schemes a redirect may send to.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum RedirectScheme {
    Http,
    Https,
}

/// Redirect status codes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(try_from = "u16", into = "u16")]
#[schemars(with = "u16", extend("enum" = [301, 302, 303, 307, 308]))]
#[allow(missing_docs)]
pub enum RedirectStatus {
    MovedPermanently,
    Found,
    SeeOther,
    TemporaryRedirect,
    PermanentRedirect,
}

impl TryFrom<u16> for RedirectStatus {
    type Error = String;
    fn try_from(code: u16) -> Result<Self, String> {
        Ok(match code {
            301 => Self::MovedPermanently,
            302 => Self::Found,
            303 => Self::SeeOther,
            307 => Self::TemporaryRedirect,
            308 => Self::PermanentRedirect,
            other => {
                return Err(format!(
                    "{other} is not a redirect status (301, 302, 303, 307, 308)"
                ));
            }
        })
    }
}

impl From<RedirectStatus> for u16 {
    fn from(status: RedirectStatus) -> u16 {
        match status {
            RedirectStatus::MovedPermanently => 301,
            RedirectStatus::Found => 302,
            RedirectStatus::SeeOther => 303,
            RedirectStatus::TemporaryRedirect => 307,
            RedirectStatus::PermanentRedirect => 308,
        }
    }
}

/// A fixed response answered by the proxy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponse {
    /// Status code.
    #[schemars(range(min = 200, max = 599))]
    pub status: u16,

    /// Response headers. A body without `content-type` is sent as `text/plain`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub headers: BTreeMap<String, String>,

    /// Response body, at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
}

/// Path and host rewriting before the request goes upstream.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.stripPrefix) && self.stripPrefix, has(self.replacePrefix), has(self.replacePath), has(self.regex)].filter(x, x).size() <= 1",
        "message": "set at most one of stripPrefix, replacePrefix, replacePath and regex"
    }
]))]
pub struct Rewrite {
    /// Remove the part of the path matched by the `Prefix` match (same as
    /// `replacePrefix: /`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<bool>,

    /// Replace the part of the path matched by the `Prefix` match with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern("^/"))]
    pub replace_prefix: Option<String>,

    /// Replace the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern("^/"))]
    pub replace_path: Option<String>,

    /// Replace the whole path by a regular expression's substitution: when `pattern`
    /// matches the path, the path becomes `substitution` with `$1`, `$2`, ... (or
    /// `${name}`) replaced by the pattern's groups. A path the pattern does not match is
    /// sent as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<RegexRewrite>,

    /// Host header sent upstream instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        pattern(
            r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$"
        )
    )]
    pub host: Option<String>,
}

/// A regular expression rewrite of the path.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewrite {
    /// A regular expression (RE2 syntax), searched in the normalized path; anchor it with
    /// `^` and `$` to match the whole path.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,

    /// The new path, with `$n` and `${name}` standing for the pattern's groups (`$$` for
    /// a dollar sign). It must start with `/` once the groups are put in.
    #[schemars(length(min = 1, max = 1024))]
    pub substitution: String,
}

/// Time limits, as durations such as `250ms`, `10s` or `1m30s`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request, from routing until the upstream's response headers; 504 after.
    /// Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub request: Option<String>,

    /// Longest silence while a body streams either way before the stream is cut.
    /// Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub idle: Option<String>,

    /// Time to open a connection to an endpoint. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub connect: Option<String>,

    /// Longest time an upgraded connection (a WebSocket) may carry no bytes either way
    /// before it is closed. Default 300s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub tunnel_idle: Option<String>,
}

/// Retries of failed requests. Only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE,
/// TRACE) are retried, and retries count against a budget so they cannot multiply load.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first try. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: Option<u32>,

    /// Failures that are retried. Default `[ConnectFailure]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 3))]
    pub retry_on: Option<Vec<RetryOn>>,

    /// Upstream status codes that are retried too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 500, max = 599)))]
    pub statuses: Vec<u16>,

    /// Wait between tries, growing exponentially with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,

    /// Retries allowed, as a percentage of requests in flight. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub budget_percent: Option<u32>,
}

/// Kinds of failure a retry policy can retry.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum RetryOn {
    /// The connection to the endpoint could not be opened.
    ConnectFailure,
    /// The connection was reset before response headers arrived.
    Reset,
    /// The try ran out of time (the per-try share of the request timeout).
    Timeout,
}

/// Exponential backoff between retries.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First wait. Default 25ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub base: Option<String>,

    /// Longest wait. Default 250ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max: Option<String>,
}

/// Load-balancing algorithms.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LoadBalancer {
    /// Each endpoint in turn.
    RoundRobin,
    /// Of two endpoints picked at random, the one with fewer requests in flight.
    #[default]
    LeastRequest,
}

/// Passive outlier detection.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Consecutive failures (connect errors and 5xx) that eject an endpoint. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: Option<u32>,

    /// How long an ejected endpoint stays out, growing with each ejection. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub base_ejection_time: Option<String>,

    /// Most endpoints of a backend ejected at once, in percent. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_ejection_percent: Option<u32>,
}

/// TLS for a Route's hosts.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A Secret of type `kubernetes.io/tls` in the Route's namespace (`tls.crt`, `tls.key`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A CORS policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins allowed: exact (`https://app.example.com`), with a wildcard host label
    /// (`https://*.example.com`), or `*`.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 512)))]
    pub allow_origins: Vec<String>,

    /// Methods allowed. Default GET, HEAD, POST.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub allow_methods: Vec<HttpMethod>,

    /// Request headers allowed, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub allow_headers: Vec<String>,

    /// Response headers the browser may expose to scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), pattern(TOKEN_PATTERN))
    )]
    pub expose_headers: Vec<String>,

    /// Whether credentials (cookies, authorization) may be sent. Not allowed together
    /// with the `*` origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,

    /// How long the browser may cache a preflight answer. Unset leaves it to the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_age: Option<String>,
}

/// A plugin run for a Route, with an optional override of its config.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginAttachment {
    /// Name of a Plugin in the Route's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Merged over the Plugin's own `config` (JSON merge patch) for this Route only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub config: Option<serde_json::Value>,

    /// Values of the override taken from Secrets of the Route's namespace (put into
    /// `config` before it is merged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub secret_refs: Vec<crate::plugin::ConfigSecretRef>,
}

impl Route {
    /// The Secrets of its namespace this Route reads: its certificate's, and those of its
    /// plugin overrides' `secretRefs`.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        let tls = self.spec.tls.iter().map(|tls| tls.secret_name.as_str());
        let refs = self
            .spec
            .plugins
            .iter()
            .flat_map(|attachment| &attachment.secret_refs)
            .map(|r| r.secret_name.as_str());
        tls.chain(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_the_schema_pattern() {
        let pattern = regex::Regex::new(HOST_PATTERN).unwrap();
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}example", "a.".repeat(127));
        for host in [
            "example.com",
            "*.example.com",
            "a-b.c0",
            "x",
            "*.x",
            "*",
            "**.x",
            "a.*.x",
            "-a.x",
            "a-.x",
            "A.x",
            "a..x",
            "a.x.",
            "",
            "a_b.x",
            &long_label,
            &long_name,
        ] {
            assert_eq!(
                is_host_name(host),
                pattern.is_match(host) && host.len() <= 253,
                "{host:?}"
            );
        }
    }

    #[test]
    fn class_names_follow_the_schema_pattern() {
        let pattern = regex::Regex::new(CLASS_NAME_PATTERN).unwrap();
        let long = "a".repeat(64);
        for name in [
            "weir",
            "internal-2",
            "a",
            "0",
            "-a",
            "a-",
            "Weir",
            "a_b",
            "",
            &long,
        ] {
            assert_eq!(
                is_class_name(name),
                pattern.is_match(name) && name.len() <= 63,
                "{name:?}"
            );
        }
    }
}

//! The `HTTPRoute` (`gateway.networking.k8s.io/v1`, namespaced): which HTTP requests
//! arriving at its parent Gateways go to which backends, and what filters do on the way.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::{
    BackendObjectReference, CORE_GROUP, LocalObjectReference, ParentReference, SERVICE_KIND,
    open_enum,
};

/// An HTTPRoute: HTTP rules for some host names, attached to listeners of Gateways.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    namespaced,
    status = "HTTPRouteStatus",
    derive = "PartialEq",
    doc = "An HTTPRoute: HTTP rules for some host names, attached to listeners of Gateways."
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    /// The Gateways (or listeners of them) the route attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,

    /// Host names served, exact or `*.` wildcards, matched against the `Host` header;
    /// empty means the host names of the listeners attached to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,

    /// The rules; empty means one rule matching every request, with no backends
    /// ([`Self::rules_or_default`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HTTPRouteRule>,
}

/// The rules of a route that lists none.
static DEFAULT_RULES: [HTTPRouteRule; 1] = [HTTPRouteRule {
    matches: Vec::new(),
    filters: Vec::new(),
    backend_refs: Vec::new(),
    timeouts: None,
}];

impl HTTPRouteSpec {
    /// The rules, or what an empty list means: one rule matching every request (its
    /// matches are empty, see [`HTTPRouteRule::matches_or_default`]) with no backends.
    pub fn rules_or_default(&self) -> &[HTTPRouteRule] {
        if self.rules.is_empty() {
            &DEFAULT_RULES
        } else {
            &self.rules
        }
    }
}

/// One rule: requests matching any of `matches` go through `filters` to one of
/// `backendRefs`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    /// Conditions on the request, any of which selects this rule; empty means a
    /// `PathPrefix` match on `/` ([`Self::matches_or_default`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HTTPRouteMatch>,

    /// What is done to matching requests and their responses, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HTTPRouteFilter>,

    /// Where matching requests go, picked by weight. Empty (and no filter answering)
    /// means requests get an error response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,

    /// Time limits for matching requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HTTPRouteTimeouts>,
}

/// The matches of a rule that lists none: every path (an unset path means `PathPrefix`
/// `/`).
static DEFAULT_MATCHES: [HTTPRouteMatch; 1] = [HTTPRouteMatch {
    path: None,
    headers: Vec::new(),
    query_params: Vec::new(),
    method: None,
}];

impl HTTPRouteRule {
    /// The matches, or what an empty list means: one match with an unset path, which
    /// is a `PathPrefix` match on `/`.
    pub fn matches_or_default(&self) -> &[HTTPRouteMatch] {
        if self.matches.is_empty() {
            &DEFAULT_MATCHES
        } else {
            &self.matches
        }
    }
}

/// Conditions a request must all meet.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    /// The path condition; unset means a `PathPrefix` match on `/`
    /// ([`Self::path_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,

    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HTTPHeaderMatch>,

    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HTTPQueryParamMatch>,

    /// The request method; unset means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HTTPMethod>,
}

/// The path condition of a match without one: both fields unset, so `PathPrefix` `/`.
static DEFAULT_PATH_MATCH: HTTPPathMatch = HTTPPathMatch {
    kind: None,
    value: None,
};

impl HTTPRouteMatch {
    /// The path condition, or what an unset one means: a match whose type and value are
    /// unset, which is `PathPrefix` `/`.
    pub fn path_or_default(&self) -> &HTTPPathMatch {
        self.path.as_ref().unwrap_or(&DEFAULT_PATH_MATCH)
    }
}

/// A condition on the request path.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathMatch {
    /// How the path is compared; unset means `PathPrefix` ([`Self::kind_or_default`]).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<PathMatchType>,

    /// The path or regular expression; unset means `/` ([`Self::value_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl HTTPPathMatch {
    /// How the path is compared, `PathPrefix` when unset.
    pub fn kind_or_default(&self) -> &PathMatchType {
        self.kind.as_ref().unwrap_or(&PathMatchType::PathPrefix)
    }

    /// The path or regular expression, `/` when unset.
    pub fn value_or_default(&self) -> &str {
        self.value.as_deref().unwrap_or("/")
    }
}

open_enum! {
    /// How a request path is compared.
    PathMatchType {
        /// The path equals the value, case-sensitively.
        Exact = "Exact",
        /// The path starts with the value, element by element: `/abc` matches `/abc` and
        /// `/abc/def`, not `/abcdef`; a trailing `/` in the value is ignored.
        PathPrefix = "PathPrefix",
        /// The path matches a regular expression (implementation-specific dialect).
        RegularExpression = "RegularExpression",
    }
}

/// A condition on a request header.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPHeaderMatch {
    /// How the value is compared; unset means `Exact` ([`Self::kind_or_default`]).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<HeaderMatchType>,

    /// The header name, case-insensitive. Only the first match of a name counts.
    pub name: String,

    /// The value or regular expression.
    pub value: String,
}

impl HTTPHeaderMatch {
    /// How the value is compared, `Exact` when unset.
    pub fn kind_or_default(&self) -> &HeaderMatchType {
        self.kind.as_ref().unwrap_or(&HeaderMatchType::Exact)
    }
}

open_enum! {
    /// How a request header value is compared.
    HeaderMatchType {
        /// The value equals the given one.
        Exact = "Exact",
        /// The value matches a regular expression (implementation-specific dialect).
        RegularExpression = "RegularExpression",
    }
}

/// A condition on a query parameter.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPQueryParamMatch {
    /// How the value is compared; unset means `Exact` ([`Self::kind_or_default`]).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<QueryParamMatchType>,

    /// The parameter name, case-sensitive. Only the first match of a name counts.
    pub name: String,

    /// The value or regular expression.
    pub value: String,
}

impl HTTPQueryParamMatch {
    /// How the value is compared, `Exact` when unset.
    pub fn kind_or_default(&self) -> &QueryParamMatchType {
        self.kind.as_ref().unwrap_or(&QueryParamMatchType::Exact)
    }
}

open_enum! {
    /// How a query parameter value is compared.
    QueryParamMatchType {
        /// The value equals the given one.
        Exact = "Exact",
        /// The value matches a regular expression (implementation-specific dialect).
        RegularExpression = "RegularExpression",
    }
}

open_enum! {
    /// A request method.
    HTTPMethod {
        /// `GET`.
        Get = "GET",
        /// `HEAD`.
        Head = "HEAD",
        /// `POST`.
        Post = "POST",
        /// `PUT`.
        Put = "PUT",
        /// `DELETE`.
        Delete = "DELETE",
        /// `CONNECT`.
        Connect = "CONNECT",
        /// `OPTIONS`.
        Options = "OPTIONS",
        /// `TRACE`.
        Trace = "TRACE",
        /// `PATCH`.
        Patch = "PATCH",
    }
}

/// A filter: `type` says which one, and the field named after it holds its settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteFilter {
    /// Which filter this is.
    #[serde(rename = "type")]
    pub kind: HTTPRouteFilterType,

    /// Settings of a `RequestHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HTTPHeaderFilter>,

    /// Settings of a `ResponseHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HTTPHeaderFilter>,

    /// Settings of a `RequestMirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<HTTPRequestMirrorFilter>,

    /// Settings of a `RequestRedirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HTTPRequestRedirectFilter>,

    /// Settings of a `URLRewrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<HTTPURLRewriteFilter>,

    /// The object of an `ExtensionRef`, an implementation-specific filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
}

open_enum! {
    /// Which filter an [`HTTPRouteFilter`] is.
    HTTPRouteFilterType {
        /// Sets, adds or removes request headers.
        RequestHeaderModifier = "RequestHeaderModifier",
        /// Sets, adds or removes response headers.
        ResponseHeaderModifier = "ResponseHeaderModifier",
        /// Sends a copy of the request to another backend, ignoring its response.
        RequestMirror = "RequestMirror",
        /// Answers with a redirect.
        RequestRedirect = "RequestRedirect",
        /// Rewrites the host or path before forwarding.
        URLRewrite = "URLRewrite",
        /// An implementation-specific filter, described by the object referred to.
        ExtensionRef = "ExtensionRef",
    }
}

/// Changes to headers: `set` replaces, `add` appends, `remove` deletes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPHeaderFilter {
    /// Headers set, replacing any value they had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HTTPHeader>,

    /// Headers added to any values they had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HTTPHeader>,

    /// Names of headers removed, case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPHeader {
    /// The name, case-insensitive.
    pub name: String,

    /// The value.
    pub value: String,
}

/// A redirect response; each field unset keeps that part of the request URL.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRequestRedirectFilter {
    /// The scheme of the `Location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<RedirectScheme>,

    /// The host name of the `Location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,

    /// The path of the `Location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,

    /// The port of the `Location`; unset means the scheme's well-known port when
    /// `scheme` is set, else the listener's port. Left out of the URL when it is the
    /// scheme's well-known port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// The response status; unset means 302 ([`Self::status_code_or_default`]).
    /// Upstream allows 301 and 302 and may add more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

impl HTTPRequestRedirectFilter {
    /// The response status, 302 when unset.
    pub fn status_code_or_default(&self) -> u16 {
        self.status_code.unwrap_or(302)
    }
}

open_enum! {
    /// The scheme of a redirect's `Location`.
    RedirectScheme {
        /// `http`.
        Http = "http",
        /// `https`.
        Https = "https",
    }
}

/// A new path for a redirect or a rewrite: `type` says which field holds it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathModifier {
    /// How the path is changed.
    #[serde(rename = "type")]
    pub kind: HTTPPathModifierType,

    /// The whole new path, for `ReplaceFullPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,

    /// What replaces the part of the path a `PathPrefix` match matched, for
    /// `ReplacePrefixMatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

open_enum! {
    /// How a redirect or rewrite changes the path.
    HTTPPathModifierType {
        /// The path is replaced by `replaceFullPath`.
        ReplaceFullPath = "ReplaceFullPath",
        /// The prefix the rule's `PathPrefix` match matched is replaced by
        /// `replacePrefixMatch`; only valid with such a match.
        ReplacePrefixMatch = "ReplacePrefixMatch",
    }
}

/// A rewrite of the request before it is forwarded.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPURLRewriteFilter {
    /// The new `Host` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,

    /// The new path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,
}

/// A copy of requests sent to another backend, whose responses are dropped. At most
/// one of `percent` and `fraction` is set; neither means every request.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRequestMirrorFilter {
    /// Where the copies go.
    pub backend_ref: BackendObjectReference,

    /// The share of requests mirrored, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,

    /// The share of requests mirrored, as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// A fraction, `numerator` at most `denominator`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fraction {
    /// The numerator.
    pub numerator: u32,

    /// The denominator, at least 1; unset means 100 ([`Self::denominator_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<u32>,
}

impl Fraction {
    /// The denominator, 100 when unset.
    pub fn denominator_or_default(&self) -> u32 {
        self.denominator.unwrap_or(100)
    }
}

/// A backend of a rule, with its weight and its own filters. The same fields as a
/// [`BackendObjectReference`], written out because serde's `flatten` would hide unknown
/// fields from the manifest reader.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    /// API group of the backend; unset means the core group `""`
    /// ([`Self::group_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// Kind of the backend; unset means `Service` ([`Self::kind_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,

    /// Name of the backend.
    pub name: String,

    /// Namespace of the backend; unset means the route's own ([`Self::namespace_or`]).
    /// Another namespace needs a ReferenceGrant there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Port of the backend: for a Service, its `port`. Required for a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// Share of the rule's requests, relative to the other backends' weights; unset
    /// means 1 ([`Self::weight_or_default`]), 0 means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,

    /// Filters for requests sent to this backend only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HTTPRouteFilter>,
}

impl HTTPBackendRef {
    /// The backend's API group, the core group `""` when unset.
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(CORE_GROUP)
    }

    /// The backend's kind, `Service` when unset.
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or(SERVICE_KIND)
    }

    /// The backend's namespace, `route_namespace` when unset.
    pub fn namespace_or<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(route_namespace)
    }

    /// The backend's weight, 1 when unset.
    pub fn weight_or_default(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

/// Time limits, as Gateway API durations (`10s`, `1m30s`, `250ms`); `0s` means none.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteTimeouts {
    /// From the start of the request to the end of the response, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,

    /// For one try at a backend; at most `request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// What the controllers of an HTTPRoute's parents report on it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteStatus {
    /// One entry per parent reference a controller serves; each controller writes its
    /// own entries and keeps the others'. Required upstream, so written even when empty.
    pub parents: Vec<RouteParentStatus>,
}

/// The status of a route for one of its parents.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent reference, as the route spells it.
    pub parent_ref: ParentReference,

    /// The controller that wrote this entry (a GatewayClass's `controllerName`).
    pub controller_name: String,

    /// `Accepted` and `ResolvedRefs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

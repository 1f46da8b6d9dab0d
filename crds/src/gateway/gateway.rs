//! The `Gateway` (`gateway.networking.k8s.io/v1`, namespaced): where traffic comes in
//! (listeners: port, protocol, host name, TLS) and which routes may attach to each.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::shared::{GROUP, LocalObjectReference, SecretObjectReference, open_enum};

/// A Gateway: the listeners of one instance of a GatewayClass.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    namespaced,
    status = "GatewayStatus",
    derive = "PartialEq",
    doc = "A Gateway: the listeners of one instance of a GatewayClass."
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass this Gateway belongs to, and so the controller serving it.
    pub gateway_class_name: String,

    /// Where the Gateway accepts connections; names are unique, and so is each
    /// combination of port, protocol and host name.
    pub listeners: Vec<Listener>,

    /// Addresses asked for the Gateway; unset lets the controller choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewaySpecAddress>,

    /// Labels, annotations and parameters for the resources the controller creates for
    /// this Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
}

/// One way in: a port, a protocol and optionally a host name, and which routes attach.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// The listener's name, unique in the Gateway: what a route's `sectionName` names.
    pub name: String,

    /// The host name served, exact or a `*.` wildcard; unset means every host. Ignored
    /// for TCP and UDP. A route attaches only if one of its host names intersects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,

    /// The port listened on.
    pub port: u16,

    /// The protocol spoken on the port.
    pub protocol: ProtocolType,

    /// TLS for HTTPS and TLS listeners; must be unset for HTTP, TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTLSConfig>,

    /// Which routes may attach; unset means routes of the Gateway's namespace, of the
    /// kinds the protocol supports ([`Self::allowed_routes_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// The routes a listener allows when `allowedRoutes` is unset.
static DEFAULT_ALLOWED_ROUTES: AllowedRoutes = AllowedRoutes {
    namespaces: None,
    kinds: Vec::new(),
};

impl Listener {
    /// The listener's `allowedRoutes`, or what an unset one means: routes of the
    /// Gateway's namespace, of the kinds the protocol supports.
    pub fn allowed_routes_or_default(&self) -> &AllowedRoutes {
        self.allowed_routes
            .as_ref()
            .unwrap_or(&DEFAULT_ALLOWED_ROUTES)
    }
}

open_enum! {
    /// The protocol of a listener. Upstream names the core ones and lets an
    /// implementation add its own (domain-prefixed, such as `weir.dev/grpc`).
    ProtocolType {
        /// HTTP/1.1 or HTTP/2 cleartext; routes: HTTPRoute.
        Http = "HTTP",
        /// HTTP over TLS terminated by the Gateway; routes: HTTPRoute.
        Https = "HTTPS",
        /// TLS, terminated or passed through by SNI; routes: TLSRoute, TCPRoute.
        Tls = "TLS",
        /// TCP; routes: TCPRoute.
        Tcp = "TCP",
        /// UDP; routes: UDPRoute.
        Udp = "UDP",
    }
}

/// TLS on a listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTLSConfig {
    /// Whether the Gateway terminates TLS or passes it through; unset means
    /// `Terminate` ([`Self::mode_or_default`]). HTTPS listeners terminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TLSModeType>,

    /// Certificates and keys to terminate with, usually Secrets of type
    /// `kubernetes.io/tls`; the first that fits a client's SNI is used. Unused with
    /// `Passthrough`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,

    /// Implementation-specific TLS settings, domain-prefixed keys
    /// (`example.com/min-version`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl GatewayTLSConfig {
    /// The TLS mode, `Terminate` when unset.
    pub fn mode_or_default(&self) -> TLSModeType {
        self.mode.unwrap_or(TLSModeType::Terminate)
    }
}

/// What a listener does with TLS. Upstream closes this set.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TLSModeType {
    /// The Gateway terminates TLS with the listener's certificates.
    Terminate,
    /// The Gateway routes the TLS stream by SNI without decrypting it.
    Passthrough,
}

/// Which routes may attach to a listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from; unset means the Gateway's own
    /// ([`Self::namespaces_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,

    /// Kinds of route allowed; empty means the kinds the listener's protocol supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// The namespaces routes may come from when `namespaces` is unset.
static DEFAULT_ROUTE_NAMESPACES: RouteNamespaces = RouteNamespaces {
    from: None,
    selector: None,
};

impl AllowedRoutes {
    /// The `namespaces`, or what an unset one means: the Gateway's own namespace.
    pub fn namespaces_or_default(&self) -> &RouteNamespaces {
        self.namespaces
            .as_ref()
            .unwrap_or(&DEFAULT_ROUTE_NAMESPACES)
    }
}

/// Namespaces routes may attach to a listener from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// Which namespaces; unset means `Same` ([`Self::from_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromNamespaces>,

    /// The namespaces allowed, by their labels, when `from` is `Selector`; ignored
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl RouteNamespaces {
    /// Which namespaces, `Same` when unset.
    pub fn from_or_default(&self) -> FromNamespaces {
        self.from.unwrap_or(FromNamespaces::Same)
    }
}

/// Where routes may come from. Upstream closes this set.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FromNamespaces {
    /// Every namespace.
    All,
    /// Namespaces whose labels match `selector`.
    Selector,
    /// The Gateway's namespace.
    Same,
}

/// A kind of route, in `allowedRoutes.kinds` and a listener's `supportedKinds`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// API group of the kind; unset means `gateway.networking.k8s.io`
    /// ([`Self::group_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// The kind, such as `HTTPRoute`.
    pub kind: String,
}

impl RouteGroupKind {
    /// The API group of the kind, `gateway.networking.k8s.io` when unset.
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(GROUP)
    }
}

open_enum! {
    /// How a Gateway address is written. Upstream names three and lets an
    /// implementation add its own (domain-prefixed).
    AddressType {
        /// An IPv4 or IPv6 address.
        IPAddress = "IPAddress",
        /// A DNS name, possibly a `*.` wildcard.
        Hostname = "Hostname",
        /// A name the implementation resolves, such as a named IP pool.
        NamedAddress = "NamedAddress",
    }
}

/// An address asked for a Gateway.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpecAddress {
    /// How `value` is written; unset means `IPAddress` ([`Self::kind_or_default`]).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AddressType>,

    /// The address; unset (v1.3 and later) lets the controller pick one of this type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl GatewaySpecAddress {
    /// How the address is written, `IPAddress` when unset.
    pub fn kind_or_default(&self) -> &AddressType {
        self.kind.as_ref().unwrap_or(&AddressType::IPAddress)
    }
}

/// What the controller should put on the resources it creates for a Gateway.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels for the created resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations for the created resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Controller-specific configuration of this Gateway, in an object of its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<LocalObjectReference>,
}

/// What the controller reports on a Gateway.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The addresses the Gateway is reachable at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,

    /// `Accepted` and `Programmed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// One entry per listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// An address a Gateway is reachable at.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    /// How `value` is written; unset means `IPAddress` ([`Self::kind_or_default`]).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AddressType>,

    /// The address.
    pub value: String,
}

impl GatewayStatusAddress {
    /// How the address is written, `IPAddress` when unset.
    pub fn kind_or_default(&self) -> &AddressType {
        self.kind.as_ref().unwrap_or(&AddressType::IPAddress)
    }
}

/// What the controller reports on one listener. Every field is required upstream, so
/// empty lists are written too.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,

    /// The route kinds the listener accepts: those of `allowedRoutes.kinds` the
    /// controller supports, or the protocol's defaults.
    pub supported_kinds: Vec<RouteGroupKind>,

    /// How many routes are attached to the listener.
    pub attached_routes: i32,

    /// `Accepted`, `Programmed`, `ResolvedRefs` and `Conflicted`.
    pub conditions: Vec<Condition>,
}

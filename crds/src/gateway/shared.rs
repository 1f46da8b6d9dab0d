//! What the Gateway API kinds share: the group and well-known kinds, the references
//! between objects, and the enums whose set of values upstream keeps open.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the Gateway API kinds.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The core API group (Services, Secrets), which references write as the empty string.
pub const CORE_GROUP: &str = "";

/// The kind of a Gateway, the parent a route attaches to unless it says otherwise.
pub const GATEWAY_KIND: &str = "Gateway";

/// The kind of an HTTPRoute, as listeners list it in `allowedRoutes.kinds` and
/// `supportedKinds`, and ReferenceGrants in `from`.
pub const HTTP_ROUTE_KIND: &str = "HTTPRoute";

/// The kind of a Service, the backend a route forwards to unless it says otherwise.
pub const SERVICE_KIND: &str = "Service";

/// The kind of a Secret, where a listener's certificate is unless it says otherwise.
pub const SECRET_KIND: &str = "Secret";

/// Declares an enum of the values upstream defines for a field, plus `Other` for any
/// other string. Upstream warns that values may be added to these fields (the
/// experimental channel already adds some), and asks that an unknown value make the
/// route or listener unsupported rather than crash the implementation: with a closed
/// serde enum one such object would fail the whole list a watch reads.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$variant_meta:meta])* $variant:ident = $value:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value this version of weir does not know: implementation-specific,
            /// added upstream later, or from the experimental channel. Kept as written.
            Other(String),
        }

        impl $name {
            /// The value as written in the object.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )+
                    Self::Other(value) => value,
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $( $value => Self::$variant, )+
                    _ => Self::Other(value),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                match value {
                    $name::Other(value) => value,
                    known => known.as_str().to_owned(),
                }
            }
        }
    };
}

pub(crate) use open_enum;

/// A route's reference to a parent it wants to attach to: a Gateway, or one listener of
/// it (`sectionName`), or the listeners of it on one port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent; unset means `gateway.networking.k8s.io`
    /// ([`Self::group_or_default`]), and `""` is the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// Kind of the parent; unset means `Gateway` ([`Self::kind_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,

    /// Namespace of the parent; unset means the route's own ([`Self::namespace_or`]).
    /// A parent in another namespace must allow the route in its listeners'
    /// `allowedRoutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Name of the parent.
    pub name: String,

    /// Name of one section of the parent: for a Gateway, a listener's name. Unset means
    /// every section that allows the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,

    /// Port of the parent: for a Gateway, the listeners on that port. Unset means every
    /// port. With `sectionName` too, both must select the same listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl ParentReference {
    /// The parent's API group, `gateway.networking.k8s.io` when unset.
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(GROUP)
    }

    /// The parent's kind, `Gateway` when unset.
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or(GATEWAY_KIND)
    }

    /// The parent's namespace, `route_namespace` (the namespace of the route holding
    /// this reference) when unset.
    pub fn namespace_or<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(route_namespace)
    }
}

/// A reference to a backend, a Service unless it says otherwise. One in another
/// namespace needs a ReferenceGrant in that namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectReference {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,

    /// Port of the backend: for a Service, its `port` (not the target port). Required
    /// when the backend is a Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl BackendObjectReference {
    /// The backend's API group, the core group `""` when unset.
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(CORE_GROUP)
    }

    /// The backend's kind, `Service` when unset.
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or(SERVICE_KIND)
    }

    /// The backend's namespace, `route_namespace` (the namespace of the route holding
    /// this reference) when unset.
    pub fn namespace_or<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(route_namespace)
    }
}

/// A reference to a Secret holding a certificate and key (`kubernetes.io/tls`). One in
/// another namespace needs a ReferenceGrant in that namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// API group of the referent; unset means the core group `""`
    /// ([`Self::group_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// Kind of the referent; unset means `Secret` ([`Self::kind_or_default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,

    /// Name of the referent.
    pub name: String,

    /// Namespace of the referent; unset means the Gateway's own
    /// ([`Self::namespace_or`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl SecretObjectReference {
    /// The referent's API group, the core group `""` when unset.
    pub fn group_or_default(&self) -> &str {
        self.group.as_deref().unwrap_or(CORE_GROUP)
    }

    /// The referent's kind, `Secret` when unset.
    pub fn kind_or_default(&self) -> &str {
        self.kind.as_deref().unwrap_or(SECRET_KIND)
    }

    /// The referent's namespace, `gateway_namespace` (the namespace of the Gateway
    /// holding this reference) when unset.
    pub fn namespace_or<'a>(&'a self, gateway_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(gateway_namespace)
    }
}

/// A reference to an object in the referrer's namespace, every part spelled out: an
/// HTTPRoute's `extensionRef` filter, a Gateway's infrastructure parameters.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API group of the referent, `""` for the core group.
    pub group: String,

    /// Kind of the referent.
    pub kind: String,

    /// Name of the referent.
    pub name: String,
}

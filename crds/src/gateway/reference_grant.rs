//! The `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`, namespaced): the owner of a
//! namespace lets objects of other namespaces refer to objects in it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lets the objects described in `from` refer to the objects described in `to`, which
/// are in this grant's namespace. A cross-namespace reference (an HTTPRoute's backend in
/// another namespace, a Gateway's certificate Secret in another namespace) is valid
/// only when a grant in the referent's namespace allows it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1beta1",
    kind = "ReferenceGrant",
    namespaced,
    derive = "PartialEq",
    doc = "Lets the objects described in `from` refer to the objects described in `to`, in this grant's namespace."
)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// The referrers allowed; any one of them is enough.
    pub from: Vec<ReferenceGrantFrom>,

    /// The referents they may refer to; any one of them is enough.
    pub to: Vec<ReferenceGrantTo>,
}

/// Referrers allowed by a ReferenceGrant: every object of one kind in one namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// API group of the referrers, `""` for the core group.
    pub group: String,

    /// Kind of the referrers, such as `HTTPRoute` or `Gateway`.
    pub kind: String,

    /// Namespace of the referrers.
    pub namespace: String,
}

/// Referents a ReferenceGrant opens, in the grant's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// API group of the referents, `""` for the core group.
    pub group: String,

    /// Kind of the referents, such as `Service` or `Secret`.
    pub kind: String,

    /// Name of the one referent allowed; unset means every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

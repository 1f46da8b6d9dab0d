//! The Gateway API kinds weir serves, as of the v1.3 standard channel: GatewayClass,
//! Gateway and HTTPRoute (`gateway.networking.k8s.io/v1`) and ReferenceGrant
//! (`v1beta1`).
//!
//! weir defines them itself, from the upstream CRD schemas, because the `gateway-api`
//! crate follows another kube and k8s-openapi. The CRDs themselves come from upstream,
//! so these types carry no validation for the schema: the API server validates what it
//! stores, and the compiler checks what standalone mode reads from files.
//!
//! Fields are `Option` where upstream's are optional, and the defaults upstream's schema
//! fills in are methods (`group_or_default`, `kind_or_default`, ...) rather than serde
//! defaults, so an object read and written back keeps only what it had. Enums whose
//! values upstream may extend keep unknown values in an `Other` variant instead of
//! failing to read (see [`HTTPRouteFilterType`]); unknown fields are ignored when
//! reading from a cluster, and refused by the manifest reader.

// One file per kind, named after it; the modules are private and re-exported flat.
#[allow(clippy::module_inception)]
mod gateway;
mod gateway_class;
mod http_route;
mod reference_grant;
mod shared;

pub use gateway::*;
pub use gateway_class::*;
pub use http_route::*;
pub use reference_grant::*;
pub use shared::*;

//! The weir API, shared by the operator and the proxy so the same manifests mean the
//! same thing everywhere: the `Route` and `Plugin` custom resources, the Gateway API
//! kinds weir serves, the `Snapshot` wire format proxies consume, and the pure compiler
//! from the one to the other. Nothing here does I/O.

pub mod admin;
pub mod compile;
pub mod condition;
pub mod crd;
pub mod gateway;
pub mod manifest;
pub mod path;
pub mod plugin;
pub mod programmed;
pub mod route;
pub mod schema;
pub mod snapshot;

pub use compile::{Compilation, GatewayClass, Inputs, Options, RouteSource, compile};
pub use plugin::{Plugin, PluginSpec, PluginStatus};
pub use route::{Route, RouteSpec, RouteStatus};
pub use snapshot::Snapshot;

//! Shards: `weir-proxy` is thread-per-core. A shard is one OS thread with a
//! current-thread tokio runtime and a `LocalSet`, and it owns everything its requests
//! touch: its listening sockets (`SO_REUSEPORT`, see [`listeners`]), its upstream clients
//! and their connection pools, and its plugins' QuickJS isolates. A request never leaves
//! the shard that accepted its connection: hooks run inline, upstream calls are made from
//! the request's own task. Only the snapshot (an `arc-swap`) and the plugin cache are
//! shared between shards.
//!
//! ```text
//! shard thread ─ runtime + LocalSet
//!   ├─ accept loops (plain, TLS) ─> one task per connection ─> pipeline::handle
//!   ├─ ShardPlugins (isolates of every loaded plugin version)
//!   ├─ ShardClients (upstream connection pools)
//!   └─ MirrorsInFlight (mirror requests, each a task of the shard)
//! ```

pub mod listeners;
pub mod thread;

use std::sync::Arc;

use weir_plugin_runtime::ShardPlugins;

use crate::forward::MirrorsInFlight;
use crate::gateway::Gateway;
use crate::server::Drain;
use crate::upstream::client::{Connector, ShardClients, UpstreamBody, UpstreamError};

/// What one shard owns. Lives on its thread (`Rc`), shared by that shard's connections.
pub struct Shard {
    /// Its number, from 0.
    pub index: usize,
    /// What every shard shares: configuration, metrics, the snapshot.
    pub gateway: Arc<Gateway>,
    /// This shard's isolates.
    pub plugins: ShardPlugins,
    /// This shard's upstream clients.
    pub clients: ShardClients,
    /// Its client connections and the tunnels they became, which shutdown lets finish.
    pub drain: Drain,
    /// Its mirror requests in flight.
    pub mirrors: MirrorsInFlight,
}

impl Shard {
    /// Sends a request upstream over this shard's connections (see [`ShardClients`]).
    pub async fn send_upstream(
        &self,
        connector: &Connector,
        request: http::Request<crate::body::ProxyBody>,
        upgrade: bool,
    ) -> Result<http::Response<UpstreamBody>, UpstreamError> {
        self.clients
            .send(&self.gateway.clients, connector, request, upgrade)
            .await
    }
}

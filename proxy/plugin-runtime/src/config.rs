//! The runtime's own configuration: what the proxy passes to [`crate::PluginRuntime::start`].

use serde::{Deserialize, Serialize};

/// Default longest uninterrupted run of JavaScript in a request hook (see
/// [`RuntimeConfig::cpu_budget_ms`]).
pub const DEFAULT_CPU_BUDGET_MS: u64 = 20;

/// Largest [`RuntimeConfig::cpu_budget_ms`] a proxy accepts.
pub const MAX_CPU_BUDGET_MS: u64 = 1_000;

/// Default largest `timeoutMs` a Plugin may ask for (the CRD's own maximum).
pub const DEFAULT_MAX_TIMEOUT_MS: u32 = 10_000;

/// Default largest `memoryLimitMiB` a Plugin may ask for.
pub const DEFAULT_MAX_MEMORY_LIMIT_MIB: u32 = 256;

/// Default longest evaluation of a module with its `onLoad`, in milliseconds.
pub const DEFAULT_MAX_LOAD_MS: u64 = 2_000;

/// Default size up to which a request or response body is handed to a plugin whole.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// How the plugin runtime runs and which host services it offers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Longest uninterrupted run of JavaScript in a request hook, in milliseconds: until
    /// the hook returns or awaits a host service. A hook runs on the shard that serves
    /// its request, so this is the longest a hook can stall the shard's other
    /// connections; a run that goes on longer is interrupted and the hook fails as a
    /// timeout. Each hook is held to the smaller of this and its own `timeoutMs`.
    pub cpu_budget_ms: u64,
    /// Largest body (request or response) a plugin may read, in bytes; bigger bodies stay
    /// in Rust and `text()`/`json()` reject with a clear error.
    pub body_limit_bytes: usize,
    /// Shared cache behind `ctx.services.cache`.
    pub cache: CacheConfig,
    /// Outbound HTTP behind `ctx.services.http.fetch`.
    pub fetch: FetchConfig,
    /// URL prefixes `ctx.forward(url)` may send a request to, besides the route's own
    /// backends (e.g. `https://canary.example.com/`). Anything else is logged and ignored.
    pub forward_allow_list: Vec<String>,
    /// Largest `timeoutMs` a Plugin may ask for; one asking more does not load (its
    /// previous version, if any, keeps serving), so no tenant holds requests longer.
    pub max_timeout_ms: u32,
    /// Largest `memoryLimitMiB` a Plugin may ask for; one asking more does not load. Each
    /// shard runs an isolate of every plugin, so this times the shards bounds what one
    /// plugin can take of the proxy's memory.
    pub max_memory_limit_mib: u32,
    /// Longest time a module's evaluation and its `onLoad` may take, in milliseconds
    /// (ten hook budgets, at least a second, at most this). Modules are evaluated on the
    /// shards, so this is the longest a plugin being loaded can stall them.
    pub max_load_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cpu_budget_ms: DEFAULT_CPU_BUDGET_MS,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            cache: CacheConfig::default(),
            fetch: FetchConfig::default(),
            forward_allow_list: Vec::new(),
            max_timeout_ms: DEFAULT_MAX_TIMEOUT_MS,
            max_memory_limit_mib: DEFAULT_MAX_MEMORY_LIMIT_MIB,
            max_load_ms: DEFAULT_MAX_LOAD_MS,
        }
    }
}

/// Where `ctx.services.cache` keeps its entries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis://host:port/db` to share entries across proxy replicas; absent keeps them in
    /// this process's memory.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several weir installations can share one Redis.
    pub key_prefix: String,
    /// Entries kept in memory at most (in-memory cache only); the least used go first.
    pub max_entries: u64,
    /// Longest time a Redis command may take, in milliseconds.
    pub timeout_ms: u64,
    /// After Redis failed (no answer, no connection), commands fail at once for this long,
    /// in milliseconds, before the next one tries Redis again.
    pub retry_after_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "weir:".into(),
            max_entries: 100_000,
            timeout_ms: 250,
            retry_after_ms: 1_000,
        }
    }
}

/// Limits of `ctx.services.http.fetch`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Networks (CIDR, e.g. `10.0.0.0/8` or `127.0.0.1/32`) a plugin may reach although
    /// they are loopback, private, link-local or metadata addresses.
    pub allow_networks: Vec<String>,
    /// Networks (CIDR) a plugin may never reach, whatever `allow_networks` says: the
    /// cluster's pod and service ranges, which may be public addresses.
    pub deny_networks: Vec<String>,
    /// Time limit of one fetch when the plugin gives none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Longest time limit a plugin may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest response body read, in bytes; a longer body fails the fetch.
    pub max_response_bytes: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            allow_networks: Vec::new(),
            deny_networks: Vec::new(),
            default_timeout_ms: 2_000,
            max_timeout_ms: 10_000,
            max_response_bytes: 1024 * 1024,
        }
    }
}

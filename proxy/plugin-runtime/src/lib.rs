//! weir's plugin runtime: runs the TypeScript plugins of a snapshot (already transpiled to
//! JavaScript) in QuickJS isolates on every shard of `weir-proxy`, inline with the
//! requests the shard serves. Plugins propose, the
//! proxy decides: hooks see a frozen request and a `ctx` of host services, and what they
//! change comes back as a patch the proxy applies. Each hook has a time budget and each
//! isolate a memory limit; a plugin that fails answers 503 or is skipped, as its
//! `failurePolicy` says, and never takes the proxy down. `docs/plugins.md` describes the
//! phases, the patch format and how the proxy embeds this crate.

mod clock;
mod config;
mod engine;
mod forward_allow;
mod metrics;
mod outcome;
mod patch;
mod phases;
mod plugin_set;
mod plugin_test;
mod quickjs;
mod request;
mod runtime;
mod services;
mod shard;

pub use config::{
    CacheConfig, DEFAULT_BODY_LIMIT_BYTES, DEFAULT_CPU_BUDGET_MS, DEFAULT_MAX_MEMORY_LIMIT_MIB,
    FetchConfig, MAX_CPU_BUDGET_MS, RuntimeConfig,
};
pub use outcome::{AfterResponse, BeforeRequest, Carry, FailureKind, Hook, PluginFailure};
pub use patch::{HeaderEdits, LocalResponse, RequestPatch, ResponsePatch, Upstream};
pub use plugin_set::{Chain, LoadFailure, Loaded, PluginSet};
pub use plugin_test::{PluginTestError, SuiteReport, TestOutcome, TestReport, run_plugin_tests};
pub use request::{BodyError, BodySource, BufferedBody, RequestInfo, ResponseInfo};
pub use runtime::{PluginRuntime, StartError};
pub use shard::ShardPlugins;

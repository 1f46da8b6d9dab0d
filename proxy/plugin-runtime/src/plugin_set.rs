//! Plugin sets: the plugins of one snapshot, loaded in the isolates, immutable and
//! reference-counted. Chains are what a rule runs: its plugin calls resolved against a set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_crds::plugin::FailurePolicy;
use weir_crds::snapshot::PluginCall;

use prometheus_client::metrics::histogram::Histogram;

use crate::engine::PluginCode;
use crate::metrics::Metrics;
use crate::outcome::Hook;
use crate::shard::Shards;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id for a plugin version or a chain link's config.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// One version of one plugin, loaded in every shard's isolates. Dropping the last
/// reference unloads it from every shard (isolates finish the calls they have first).
#[derive(Debug)]
pub(crate) struct PluginVersion {
    pub(crate) id: u64,
    pub(crate) code: Arc<PluginCode>,
    pub(crate) code_hash: String,
    pub(crate) hooks: Hooks,
    shards: Arc<Shards>,
}

/// Which request hooks a module exports, known once it loaded: phases no plugin of a
/// request hooks into are skipped without entering an isolate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hooks {
    pub(crate) before_request: bool,
    pub(crate) after_response: bool,
}

impl Hooks {
    pub(crate) fn has(self, hook: Hook) -> bool {
        match hook {
            Hook::OnLoad | Hook::OnUnload => false,
            Hook::BeforeRequest => self.before_request,
            Hook::AfterResponse => self.after_response,
        }
    }
}

impl PluginVersion {
    /// A version loaded under `id` in the shards (see [`Shards::load`]).
    pub(crate) fn new(
        id: u64,
        code: Arc<PluginCode>,
        code_hash: String,
        hooks: Hooks,
        shards: Arc<Shards>,
    ) -> Self {
        Self {
            id,
            code,
            code_hash,
            hooks,
            shards,
        }
    }

    /// Whether a bundle can reuse this version instead of loading its code again.
    pub(crate) fn serves(&self, code_hash: &str, memory_limit: usize) -> bool {
        self.code_hash == code_hash && self.code.memory_limit == memory_limit
    }
}

impl Drop for PluginVersion {
    fn drop(&mut self) {
        self.shards.unload(self.id, &self.code);
    }
}

/// A plugin of a set: its loaded version (if it ever loaded) and how it runs.
#[derive(Clone, Debug)]
pub(crate) struct PluginEntry {
    pub(crate) version: Option<Arc<PluginVersion>>,
    pub(crate) timeout: Duration,
    pub(crate) failure_policy: FailurePolicy,
}

/// The plugins of one snapshot. Requests hold the chains they started with, so a reload
/// never changes the plugins of a request in flight.
#[derive(Debug)]
pub struct PluginSet {
    pub(crate) plugins: BTreeMap<String, PluginEntry>,
    metrics: Arc<Metrics>,
}

impl PluginSet {
    /// An empty set whose chains report to `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            plugins: BTreeMap::new(),
            metrics,
        }
    }

    /// Resolves a rule's plugin calls (`Rule::plugins`, already in run order) against this
    /// set. The proxy does this once per rule when it applies a snapshot.
    pub fn chain(&self, calls: &[PluginCall]) -> Arc<Chain> {
        let links = calls
            .iter()
            .map(|call| Link {
                plugin: Arc::from(call.plugin.as_str()),
                entry: self.plugins.get(&call.plugin).cloned(),
                config_id: next_id(),
                config_json: Arc::from(call.config.get()),
                durations: [Hook::BeforeRequest, Hook::AfterResponse]
                    .map(|hook| self.metrics.hook_duration(&call.plugin, hook.as_str())),
            })
            .collect();
        Arc::new(Chain { links })
    }

    /// Ids (`namespace/name`) of the plugins that have a loaded version.
    pub fn loaded(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .filter(|(_, entry)| entry.version.is_some())
            .map(|(id, _)| id.as_str())
    }
}

/// The plugins a rule runs, in order, with their configs.
#[derive(Debug, Default)]
pub struct Chain {
    pub(crate) links: Vec<Link>,
}

impl Chain {
    /// Whether the rule runs no plugin (the proxy may then skip the runtime entirely).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// One plugin call of a chain.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) plugin: Arc<str>,
    /// `None` when the snapshot has no such plugin.
    pub(crate) entry: Option<PluginEntry>,
    pub(crate) config_id: u64,
    pub(crate) config_json: Arc<str>,
    /// `weir_plugin_hook_duration_seconds` of `beforeRequest` and `afterResponse`.
    durations: [Histogram; 2],
}

impl Link {
    /// Records how long a call of `hook` took.
    pub(crate) fn observe(&self, hook: Hook, seconds: f64) {
        let index = usize::from(hook == Hook::AfterResponse);
        self.durations[index].observe(seconds);
    }

    /// Whether running `hook` for this link needs an isolate thread: the plugin has the
    /// hook, or has no loaded version (which fails the request there, by policy).
    pub(crate) fn runs(&self, hook: Hook) -> bool {
        self.entry
            .as_ref()
            .and_then(|entry| entry.version.as_ref())
            .is_none_or(|version| version.hooks.has(hook))
    }

    /// Closed unless the plugin says Open: an unknown plugin fails safe.
    pub(crate) fn fails_open(&self) -> bool {
        self.entry
            .as_ref()
            .is_some_and(|entry| entry.failure_policy == FailurePolicy::Open)
    }
}

/// A plugin the runtime could not load from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// `namespace/name`.
    pub plugin: String,
    /// Namespace of the Plugin.
    pub namespace: String,
    /// Name of the Plugin.
    pub name: String,
    /// What went wrong, e.g. `onLoad threw: TypeError: …`.
    pub message: String,
    /// Whether an earlier version keeps serving.
    pub kept_previous: bool,
}

/// The result of [`crate::PluginRuntime::load`].
#[derive(Debug)]
pub struct Loaded {
    /// The set to resolve this snapshot's chains against.
    pub set: Arc<PluginSet>,
    /// Plugins that did not load (reported in the `PUT /v1/snapshot` answer).
    pub failures: Vec<LoadFailure>,
}

//! Prometheus metrics of the plugin runtime, registered in the proxy's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the hook duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    plugin: String,
    hook: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    plugin: String,
    kind: String,
}

/// Labels of per-plugin counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

fn hook_histogram() -> Histogram {
    // 10 µs to ~1.3 s.
    Histogram::new(exponential_buckets(0.000_01, 4.0, 9))
}

/// The runtime's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    hook_duration: Family<HookLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    replaced: Family<PluginLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under `weir_plugin_`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            hook_duration: Family::new_with_constructor(hook_histogram),
            errors: Family::default(),
            replaced: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("weir_plugin");
        registry.register(
            "hook_duration_seconds",
            "Time from calling a plugin hook to its completion, awaits included",
            metrics.hook_duration.clone(),
        );
        registry.register(
            "errors",
            "Plugin hook failures by kind: timeout, exception, memory, rejected, not_loaded",
            metrics.errors.clone(),
        );
        registry.register(
            "isolates_replaced",
            "Isolates replaced after a timeout or running out of memory",
            metrics.replaced.clone(),
        );
        metrics
    }

    /// The duration histogram of one plugin's hook: resolved once per chain link, so a
    /// hook call observes it without a label lookup.
    pub(crate) fn hook_duration(&self, plugin: &str, hook: &str) -> Histogram {
        self.hook_duration
            .get_or_create(&HookLabels {
                plugin: plugin.to_owned(),
                hook: hook.to_owned(),
            })
            .clone()
    }

    pub(crate) fn error(&self, plugin: &str, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                plugin: plugin.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub(crate) fn isolate_replaced(&self, plugin: &str) {
        self.replaced
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .inc();
    }
}

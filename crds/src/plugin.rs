//! The `Plugin` custom resource: a TypeScript module with hooks the proxy runs around
//! requests, its config, and the limits it runs under.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Conditions;

/// Default time budget of one hook call, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u32 = 100;

/// Default memory limit of one isolate running the plugin, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 16;

/// A Plugin is TypeScript policy (auth, rate limits, header rules, logging) run by the
/// proxy for the Routes of its namespace.
// Printer columns repeat `type_ = "string"`, which is what the lint flags.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "Plugin",
    namespaced,
    status = "PluginStatus",
    shortname = "wp",
    category = "weir",
    derive = "PartialEq",
    doc = "A Plugin is TypeScript policy run by the proxy for the Routes of its namespace.",
    printcolumn(name = "Scope", type_ = "string", json_path = ".spec.scope"),
    printcolumn(name = "Order", type_ = "integer", json_path = ".spec.order"),
    printcolumn(
        name = "Compiled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Compiled\")].status"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// The gateway class this Plugin belongs to (see the Route's `className`). Unset
    /// means every class: Routes of any gateway may use it, and the default gateway
    /// reports its status. Set it to keep the Plugin to one gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(crate::route::CLASS_NAME_PATTERN))]
    pub class_name: Option<String>,

    /// Where the TypeScript (or JavaScript) module comes from.
    pub source: PluginSource,

    /// The plugin's config, as `ctx.config`; Routes may override parts of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub config: Option<serde_json::Value>,

    /// Config values taken from Secrets of the Plugin's namespace (signing keys, API keys),
    /// so they do not sit in the Plugin in plain text. Resolved when the plugin is
    /// compiled, before `configSchema` is checked; never shown in status or Events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub secret_refs: Vec<ConfigSecretRef>,

    /// JSON Schema the config (after a Route's override) must satisfy, checked when the
    /// plugin is compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub config_schema: Option<serde_json::Value>,

    /// Position among the namespace's global plugins: lower runs first, then by name.
    #[serde(default)]
    #[schemars(range(min = -10000, max = 10000))]
    pub order: i32,

    /// `Global` runs for every Route in the namespace; `Attached` only for Routes that
    /// list the plugin.
    #[serde(default)]
    pub scope: PluginScope,

    /// Time budget of one hook call, in milliseconds; a hook that overruns is interrupted.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 10000))]
    pub timeout_ms: u32,

    /// Memory limit of each isolate running this plugin, in MiB.
    #[serde(default = "default_memory_limit_mib", rename = "memoryLimitMiB")]
    #[schemars(range(min = 1, max = 1024))]
    pub memory_limit_mib: u32,

    /// What happens to a request when the plugin fails (throws, times out, runs out of
    /// memory): `Closed` answers 503, `Open` skips the plugin.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

fn default_memory_limit_mib() -> u32 {
    DEFAULT_MEMORY_LIMIT_MIB
}

/// Where a plugin's source is: inline, or in a ConfigMap of the Plugin's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.code) != has(self.configMapRef)",
        "message": "set exactly one of code and configMapRef"
    }
]))]
pub struct PluginSource {
    /// The module's source text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1_048_576))]
    pub code: Option<String>,

    /// A key of a ConfigMap in the Plugin's namespace holding the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// A key of a ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key within its `data`.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A config value taken from a Secret: the text of the Secret's `key` put at `path` of
/// the config.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSecretRef {
    /// Where the value goes in the config, as a JSON Pointer (RFC 6901): `/keys/0/secret`.
    /// Missing objects on the way are created; array elements must exist.
    #[schemars(length(min = 2, max = 1024), pattern(r"^/"))]
    pub path: String,

    /// Name of a Secret in the object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// Key within the Secret's data; its value must be UTF-8 text.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Which Routes a plugin runs for.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PluginScope {
    /// Every Route in the namespace.
    Global,
    /// Only Routes that list the plugin.
    #[default]
    Attached,
}

/// What happens to a request when a plugin fails.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FailurePolicy {
    /// Answer 503 naming the plugin.
    #[default]
    Closed,
    /// Skip the plugin and go on.
    Open,
}

/// What the operator reports about a Plugin.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// `Accepted`, `ResolvedRefs`, `Compiled` and `Programmed`, each with
    /// `observedGeneration`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,

    /// The `metadata.generation` the conditions describe: while it is below the
    /// object's generation, the operator has not caught up with the last change (kstatus
    /// reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Plugin {
    /// The Secrets of its namespace this Plugin takes config values from.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.spec.secret_refs.iter().map(|r| r.secret_name.as_str())
    }

    /// Whether this Plugin's source is in the ConfigMap `namespace/name`: an edit of that
    /// ConfigMap changes what the Plugin compiles to.
    pub fn uses_config_map(&self, namespace: &str, name: &str) -> bool {
        crate::compile::namespace_of(&self.metadata) == namespace
            && self
                .spec
                .source
                .config_map_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_references_are_per_namespace() {
        let mut plugin = Plugin::new(
            "auth",
            PluginSpec {
                class_name: None,
                source: PluginSource {
                    code: None,
                    config_map_ref: Some(ConfigMapKeyRef {
                        name: "auth-src".into(),
                        key: "index.ts".into(),
                    }),
                },
                config: None,
                secret_refs: vec![ConfigSecretRef {
                    path: "/key".into(),
                    secret_name: "auth-keys".into(),
                    key: "hs256".into(),
                }],
                config_schema: None,
                order: 0,
                scope: PluginScope::Attached,
                timeout_ms: DEFAULT_TIMEOUT_MS,
                memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
                failure_policy: FailurePolicy::Closed,
            },
        );
        plugin.metadata.namespace = Some("shop".into());
        assert!(plugin.uses_config_map("shop", "auth-src"));
        assert!(!plugin.uses_config_map("pay", "auth-src"));
        assert!(!plugin.uses_config_map("shop", "other"));
        plugin.spec.source = PluginSource {
            code: Some("export default {}".into()),
            config_map_ref: None,
        };
        assert!(!plugin.uses_config_map("shop", "auth-src"));
    }
}

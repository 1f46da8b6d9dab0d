//! Plugins: source resolved (inline or ConfigMap), TypeScript transpiled, config checked
//! against `configSchema`, and the result bundled for the proxies.

use std::collections::BTreeMap;

use jsonschema::Validator;
use serde_json::Value;

use super::Index;
use super::modules::link;
use super::report::ObjectReport;
use super::schema_check::{check_plugin_spec, config_validator, report_errors};
use super::secret_refs::{self, FromSecrets};
use crate::Plugin;
use crate::condition::{ConditionType, Reason};
use crate::snapshot::PluginBundle;

/// Compiles the current spec of a Plugin; `None` when it cannot run (the reasons are in
/// `report`, and the caller may keep the last good bundle instead).
pub(crate) fn compile(
    plugin: &Plugin,
    namespace: &str,
    name: &str,
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> Option<PluginBundle> {
    let spec = &plugin.spec;
    check_plugin_spec(&serde_json::to_value(spec).unwrap_or(Value::Null), report);

    let mut config = spec
        .config
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !config.is_object() {
        report.invalid("spec.config", "config must be an object");
    }
    let from_secrets = secret_refs::resolve(
        &mut config,
        &spec.secret_refs,
        namespace,
        index,
        "spec.secretRefs",
        report,
    );
    if let Some(schema) = &spec.config_schema {
        match config_validator(schema) {
            // A config missing a Secret's value would only show errors about its absence.
            Ok(validator) => {
                if let Some(from_secrets) = &from_secrets {
                    report_errors(&validator, &config, "spec.config", from_secrets, report);
                }
            }
            Err(e) => report.invalid("spec.configSchema", format!("not a valid JSON Schema: {e}")),
        }
    }

    let source = source_text(plugin, namespace, index, report);
    if report.is_invalid() {
        return None;
    }
    let (source, secret_paths) = (source?, from_secrets?);
    let read = |file: &str| source.files?.get(file).cloned();
    let linked = match link(source.entry, source.text, read) {
        Ok(linked) => linked,
        Err(errors) => {
            for error in errors {
                // Positions in the entry need no file name; inline code has no other files.
                let mut message = if error.file == source.entry {
                    error.error.to_string()
                } else {
                    error.to_string()
                };
                if source.files.is_none() && error.error.reason == Reason::ModuleNotFound {
                    message.push_str(
                        " (inline code has no other files: put the plugin's files in a ConfigMap)",
                    );
                }
                report.push(
                    source_field(plugin),
                    ConditionType::Compiled,
                    error.error.reason,
                    message,
                );
            }
            return None;
        }
    };
    Some(PluginBundle {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        generation: plugin.metadata.generation,
        code_hash: linked.code_hash(),
        code: linked.code,
        modules: linked.modules,
        config,
        secret_paths,
        config_schema: spec.config_schema.clone(),
        order: spec.order,
        scope: spec.scope,
        timeout_ms: spec.timeout_ms,
        memory_limit_mib: spec.memory_limit_mib,
        failure_policy: spec.failure_policy,
    })
}

fn source_field(plugin: &Plugin) -> &'static str {
    if plugin.spec.source.code.is_some() {
        "spec.source.code"
    } else {
        "spec.source.configMapRef"
    }
}

/// A plugin's source: its entry module and, from a ConfigMap, the files it may import.
struct Source<'i> {
    /// The entry module's file name (its ConfigMap key).
    entry: &'i str,
    /// The entry module's text.
    text: &'i str,
    /// Every file of the ConfigMap by key; `None` for inline code.
    files: Option<&'i BTreeMap<String, String>>,
}

fn source_text<'i>(
    plugin: &'i Plugin,
    namespace: &str,
    index: &Index<'i>,
    report: &mut ObjectReport,
) -> Option<Source<'i>> {
    let source = &plugin.spec.source;
    match (&source.code, &source.config_map_ref) {
        (Some(code), None) => Some(Source {
            entry: "spec.source.code",
            text: code,
            files: None,
        }),
        (None, Some(reference)) => {
            let Some(config_map) = index.config_maps.get(&(namespace, reference.name.as_str()))
            else {
                report.push(
                    "spec.source.configMapRef.name",
                    ConditionType::ResolvedRefs,
                    Reason::ConfigMapNotFound,
                    format!("ConfigMap {namespace}/{} not found", reference.name),
                );
                return None;
            };
            let data = config_map.data.as_ref();
            let text = data.and_then(|d| d.get(&reference.key));
            if text.is_none() {
                let keys: Vec<&str> = data
                    .into_iter()
                    .flat_map(|d| d.keys())
                    .map(String::as_str)
                    .collect();
                report.push(
                    "spec.source.configMapRef.key",
                    ConditionType::ResolvedRefs,
                    Reason::KeyNotFound,
                    format!(
                        "ConfigMap {namespace}/{} has no key {:?} (keys: {})",
                        reference.name,
                        reference.key,
                        if keys.is_empty() {
                            "none".to_owned()
                        } else {
                            keys.join(", ")
                        }
                    ),
                );
            }
            Some(Source {
                entry: &reference.key,
                text: text?,
                files: data,
            })
        }
        _ => {
            report.invalid("spec.source", "set exactly one of code and configMapRef");
            None
        }
    }
}

/// The config a Route sees: the plugin's config with the Route's override merged over
/// it (JSON merge patch; `from_secrets`: the places of the override that came from
/// Secrets), checked against the plugin's `configSchema`.
pub(crate) fn route_config(
    bundle: &PluginBundle,
    schema: Option<&Validator>,
    overrides: Option<(&Value, &FromSecrets)>,
    field: &str,
    report: &mut ObjectReport,
) -> Value {
    let mut config = bundle.config.clone();
    let Some((overrides, from_secrets)) = overrides else {
        return config;
    };
    json_patch::merge(&mut config, overrides);
    if let Some(validator) = schema {
        // Values from the Plugin's Secrets or the Route's: no message may show them.
        let mut hidden = bundle.secret_paths.clone();
        hidden.extend(from_secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        report_errors(validator, &config, field, &hidden, report);
    }
    config
}

/// The compiled `configSchema` of a bundle, if it has one.
pub(crate) fn bundle_schema(bundle: &PluginBundle) -> Option<Validator> {
    // The schema compiled when the bundle did, so this does not fail.
    config_validator(bundle.config_schema.as_ref()?).ok()
}

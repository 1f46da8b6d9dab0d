//! JSON Schema checks: a spec against its own CRD schema (so standalone files, which no
//! API server has seen, meet the same rules as `kubectl apply`), and plugin configs
//! against their `configSchema`.

use std::sync::OnceLock;

use jsonschema::{Draft, Validator, paths::LocationSegment};
use kube::CustomResourceExt;
use serde_json::Value;

use super::report::ObjectReport;
use super::secret_refs::{FromSecrets, source_of};
use crate::{Plugin, Route};

/// Checks a Route's spec against the Route CRD schema.
pub(crate) fn check_route_spec(spec: &Value, report: &mut ObjectReport) {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| spec_validator(&Route::crd()));
    report_errors(validator, spec, "spec", &FromSecrets::default(), report);
}

/// Checks a Plugin's spec against the Plugin CRD schema.
pub(crate) fn check_plugin_spec(spec: &Value, report: &mut ObjectReport) {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| spec_validator(&Plugin::crd()));
    report_errors(validator, spec, "spec", &FromSecrets::default(), report);
}

fn spec_validator(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Validator {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("spec"))
        .expect("derived CRDs have a spec schema");
    let schema = serde_json::to_value(schema).expect("a CRD schema is JSON");
    // OpenAPI v3.0 schemas are JSON Schema draft 4 plus keywords validators ignore
    // (`nullable`, `x-kubernetes-*`); CEL rules are checked by the compiler itself.
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .build(&schema)
        .expect("the generated CRD schema is a valid JSON Schema")
}

/// Compiles a plugin's `configSchema`.
pub(crate) fn config_validator(schema: &Value) -> Result<Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// Adds an `Invalid` diagnostic under `prefix` for each way `value` breaks `validator`.
/// An error about a value that came from a Secret (or holds one) names the Secret and the
/// schema keyword, never the value.
pub(crate) fn report_errors(
    validator: &Validator,
    value: &Value,
    prefix: &str,
    from_secrets: &FromSecrets,
    report: &mut ObjectReport,
) {
    for error in validator.iter_errors(value) {
        let mut field = prefix.to_owned();
        for segment in error.instance_path().iter() {
            match segment {
                LocationSegment::Index(i) => field.push_str(&format!("[{i}]")),
                other => {
                    field.push('.');
                    field.push_str(&other.to_string());
                }
            }
        }
        let message = match source_of(from_secrets, error.instance_path().as_str()) {
            Some(source) => format!(
                "a value from {source} does not satisfy the configSchema's {:?} (not shown: it is secret)",
                error
                    .schema_path()
                    .iter()
                    .last()
                    .map(|keyword| keyword.to_string())
                    .unwrap_or_default()
            ),
            None => error.to_string(),
        };
        report.invalid(field, message);
    }
}

//! Helpers shared by the compiler's integration tests: manifests written as YAML, as
//! users write them.

#![allow(dead_code, missing_docs)]

use weir_crds::Compilation;
use weir_crds::compile::report::{ObjectKind, ObjectReport};
use weir_crds::condition::{ConditionType, DesiredCondition, Reason};
use weir_crds::manifest::{Document, Manifests, parse};

/// Parses manifests, failing the test on any document that does not parse.
pub fn manifests(yaml: &str) -> Manifests {
    let mut manifests = Manifests::default();
    for document in parse(yaml) {
        match document.expect("test manifests parse") {
            Document::Object(object) => manifests.add(object),
            Document::Ignored { .. } => {}
        }
    }
    manifests
}

/// Compiles manifests with default options and no previous snapshot.
pub fn compile_yaml(yaml: &str) -> Compilation {
    compile_yaml_with(yaml, weir_crds::Options::default())
}

/// Compiles manifests with `options` and no previous snapshot.
pub fn compile_yaml_with(yaml: &str, options: weir_crds::Options) -> Compilation {
    let manifests = manifests(yaml);
    let mut inputs = manifests.inputs();
    inputs.options = options;
    weir_crds::compile(&inputs)
}

pub fn route_report<'c>(
    compilation: &'c Compilation,
    namespace: &str,
    name: &str,
) -> &'c ObjectReport {
    compilation
        .report(ObjectKind::Route, namespace, name)
        .unwrap_or_else(|| panic!("no report for Route {namespace}/{name}"))
}

pub fn plugin_report<'c>(
    compilation: &'c Compilation,
    namespace: &str,
    name: &str,
) -> &'c ObjectReport {
    compilation
        .report(ObjectKind::Plugin, namespace, name)
        .unwrap_or_else(|| panic!("no report for Plugin {namespace}/{name}"))
}

/// The messages of every diagnostic of `report` with `reason`, in report order.
pub fn messages(report: &ObjectReport, reason: Reason) -> Vec<&str> {
    report
        .diagnostics
        .iter()
        .filter(|d| d.reason == reason)
        .map(|d| d.message.as_str())
        .collect()
}

/// Asserts that `report` has a diagnostic on `field` with `reason`, and returns its message.
pub fn diagnostic<'r>(report: &'r ObjectReport, field: &str, reason: Reason) -> &'r str {
    report
        .diagnostics
        .iter()
        .find(|d| d.field == field && d.reason == reason)
        .map(|d| d.message.as_str())
        .unwrap_or_else(|| {
            panic!(
                "expected {reason} on {field}, got {:#?}",
                report.diagnostics
            )
        })
}

/// One condition of a report, whole.
pub fn desired_condition(report: &ObjectReport, kind: ConditionType) -> DesiredCondition {
    report
        .conditions()
        .into_iter()
        .find(|c| c.kind == kind)
        .expect("condition present")
}

/// The status and reason of one condition of a report.
pub fn condition(report: &ObjectReport, kind: ConditionType) -> (bool, Reason) {
    let c = desired_condition(report, kind);
    (c.status, c.reason)
}

/// A Route named `name` in namespace `shop` with the given spec (YAML, indented by 2).
pub fn route(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n"
    )
}

/// A Plugin named `name` in namespace `shop` with the given spec.
pub fn plugin(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n"
    )
}

/// A plugin spec with inline code.
pub fn inline_plugin(code: &str) -> String {
    let indented: String = code.lines().map(|l| format!("      {l}\n")).collect();
    format!("  source:\n    code: |\n{indented}")
}

pub const HELLO_PLUGIN: &str = "export default { beforeRequest(ctx) { ctx.state.hello = true; } };";

/// A `kubernetes.io/tls` Secret named `name` in namespace `shop`, self-signed for `hosts`.
pub fn tls_secret(name: &str, hosts: &[&str]) -> String {
    let certified =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(certified.cert.pem()),
        indent(certified.signing_key.serialize_pem())
    )
}

//! The upstream Gateway API CRDs (v1.3.0, standard channel), installed by a scenario
//! and removed when it ends. They are not weir's: the suite reads the files upstream
//! publishes (`config/crd/standard/*.yaml` of kubernetes-sigs/gateway-api at v1.3.0),
//! from the directory [`CRDS_ENV`] names or else the chart's copy ([`CHART_CRDS`]).
//!
//! An API server older than Kubernetes 1.25 does not know CEL transition rules: it
//! refuses every rule that reads `oldSelf` (`undeclared reference to 'oldSelf'`), and
//! upstream's GatewayClass CRD has one (`spec.controllerName` is immutable). Such a CRD
//! is installed without its transition rules, and the suite says so.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::objects::{FIELD_MANAGER, RUN_LABEL, wait_established};

/// Environment variable naming a directory of Gateway API CRD files (upstream's
/// `config/crd/standard/`).
pub const CRDS_ENV: &str = "WEIR_E2E_GATEWAY_API_CRDS";

/// Where the Helm chart keeps upstream's CRDs, relative to the workspace: read when
/// [`CRDS_ENV`] is unset.
pub const CHART_CRDS: &str = "charts/weir/gateway-api-crds";

/// The group of the Gateway API CRDs.
const GROUP: &str = "gateway.networking.k8s.io";

/// The directory of Gateway API CRD files, or why there is none.
pub fn crds_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os(CRDS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CHART_CRDS),
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "no Gateway API CRDs in {} (set {CRDS_ENV} to a directory of upstream's \
             config/crd/standard/*.yaml, v1.3.0)",
            dir.display()
        ))
    }
}

/// The Gateway API CRDs a scenario installed; dropping this deletes them (and so every
/// Gateway API object of the cluster).
pub struct GatewayApiCrds {
    /// The CRDs' names.
    pub names: Vec<String>,
}

impl GatewayApiCrds {
    /// Installs every CRD of `dir` and waits until the API server serves them. CRDs of
    /// the group left by a run of the suite that no longer exists are deleted first; any
    /// other installed already is a failure (deleting it would delete what someone else
    /// made, and the scenario checks that the operator picks up CRDs installed after it
    /// started).
    pub async fn install(client: &Client, dir: &Path) -> Self {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let present = crds
            .list_metadata(&ListParams::default())
            .await
            .expect("listing CRDs");
        for crd in present {
            let name = crd.metadata.name.unwrap_or_default();
            if !name.ends_with(&format!(".{GROUP}")) {
                continue;
            }
            let run = crd.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
            match run.and_then(|r| r.parse::<u32>().ok()) {
                Some(run) if !crate::netns::alive(run) => {
                    delete(&crds, &name).await;
                }
                _ => panic!(
                    "CRD {name} is installed already: this scenario installs the Gateway API \
                     itself, after the operator started; remove it first"
                ),
            }
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let mut names = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let mut crd: Value = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{} names no CRD", file.display()))
                .to_owned();
            crd["metadata"]["labels"][RUN_LABEL] = Value::from(std::process::id().to_string());
            if let Err(kube::Error::Api(refusal)) = apply(&crds, &name, &crd).await {
                if !refusal
                    .message
                    .contains("undeclared reference to 'oldSelf'")
                {
                    panic!("the API server refused CRD {name}: {}", refusal.message);
                }
                let removed = remove_transition_rules(&mut crd);
                eprintln!(
                    "weir-e2e: this API server predates CEL transition rules; installing CRD \
                     {name} without its {removed} (`{}`)",
                    refusal.message.lines().next().unwrap_or_default()
                );
                apply(&crds, &name, &crd)
                    .await
                    .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
            }
            names.push(name);
        }
        for name in &names {
            wait_established(&crds, name).await;
        }
        Self { names }
    }
}

impl Drop for GatewayApiCrds {
    fn drop(&mut self) {
        let names = self.names.clone();
        crate::with_own_client(move |client| async move {
            let crds: Api<CustomResourceDefinition> = Api::all(client);
            for name in &names {
                delete(&crds, name).await;
            }
        });
    }
}

async fn apply(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
    crd: &Value,
) -> Result<CustomResourceDefinition, kube::Error> {
    crds.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
}

async fn delete(crds: &Api<CustomResourceDefinition>, name: &str) {
    let _ = crds.delete(name, &DeleteParams::default()).await;
}

/// Removes every `x-kubernetes-validations` rule that reads `oldSelf` from `schema` (and
/// what it holds); returns how many, as "N transition rules".
fn remove_transition_rules(schema: &mut Value) -> String {
    fn walk(value: &mut Value, removed: &mut usize) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get_mut("x-kubernetes-validations") {
                    let before = rules.len();
                    rules.retain(|r| !r["rule"].as_str().is_some_and(|r| r.contains("oldSelf")));
                    *removed += before - rules.len();
                    if rules.is_empty() {
                        map.remove("x-kubernetes-validations");
                    }
                }
                map.values_mut().for_each(|v| walk(v, removed));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, removed)),
            _ => {}
        }
    }
    let mut removed = 0;
    walk(schema, &mut removed);
    format!(
        "{removed} transition rule{}",
        if removed == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_rules_are_removed_and_the_others_kept() {
        let mut schema = serde_json::json!({"properties": {
            "a": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]},
            "b": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self.size() > 0"}, {"rule": "oldSelf == '' || self == oldSelf"}
            ]}
        }});
        assert_eq!(remove_transition_rules(&mut schema), "2 transition rules");
        assert_eq!(
            schema,
            serde_json::json!({"properties": {
                "a": {"type": "string"},
                "b": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() > 0"}]}
            }})
        );
    }
}

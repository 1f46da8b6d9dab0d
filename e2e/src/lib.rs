//! Helpers for the end-to-end suite. It needs only a Kubernetes API server (no kubelet):
//! operators and proxies run as local processes. Without `KUBECONFIG` every test says so
//! and passes without touching anything, so `cargo test --workspace` works anywhere.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};

/// Field manager of everything the suite applies.
pub const FIELD_MANAGER: &str = "weir-e2e";

/// A client for the API server of `KUBECONFIG`, or `None` (after saying why) when the
/// variable is unset.
pub async fn client_or_skip(test: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "skipping e2e test {test}: KUBECONFIG is not set (the e2e suite needs a Kubernetes API server)"
        );
        return None;
    }
    Some(
        Client::try_default()
            .await
            .expect("KUBECONFIG names a reachable API server"),
    )
}

/// Applies weir's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [weir_crds::Route::crd(), weir_crds::Plugin::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        for _ in 0..100 {
            let current = crds.get(&name).await.expect("CRD readable");
            let established = current
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A fresh namespace for one test; the test deletes it with [`TestNamespace::delete`]
/// (deletion is async, so it cannot happen on drop).
pub struct TestNamespace {
    client: Client,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates `weir-e2e-<suffix>-<pid>`.
    pub async fn create(client: &Client, suffix: &str) -> Self {
        let name = format!("weir-e2e-{suffix}-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        Self {
            client: client.clone(),
            name,
        }
    }

    /// Deletes the namespace.
    pub async fn delete(self) {
        let namespaces: Api<Namespace> = Api::all(self.client);
        let _ = namespaces
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// Path of a workspace binary (`weir-operator`, `weir-proxy`) in the target directory this
/// test runs from; `cargo build --workspace --bins` (as `scripts/test` does) builds them.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

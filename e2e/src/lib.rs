//! The end-to-end harness: the real `weir-operator` and `weir-proxy` binaries, run as
//! processes against a real Kubernetes API server (`KUBECONFIG`). A real API server
//! refuses loopback addresses in EndpointSlices, so the proxies and the backends get
//! addresses on a private /24 of the suite's own ([`netns`]): each proxy in a network
//! namespace on a bridge, the backends on the host's side of that bridge, where the
//! operator and the test itself run too.
//!
//! Nothing here needs a kubelet or a controller manager: the suite writes the
//! EndpointSlices itself. Without root or without `KUBECONFIG` every test says in one line
//! what is missing and passes without touching anything ([`skip_reason`]), so
//! `cargo test --workspace` works anywhere.

pub mod gateway_api;
pub mod http;
pub mod netns;
pub mod objects;
pub mod process;
pub mod scenario;
pub mod tls;
pub mod wait;

pub use objects::{FIELD_MANAGER, TestNamespace, client_or_skip, install_crds};
pub use scenario::Scenario;

/// Runs the future `task` makes on a new thread with a current-thread runtime of its
/// own: for what must run where the test's runtime cannot (a `Drop`, which cannot await
/// and blocks that runtime; a signal watcher outliving a test).
pub(crate) fn on_own_runtime<F, Fut>(task: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(task());
        }
    })
}

/// Runs `task` with a client of its own on [`on_own_runtime`] and waits for it: for a
/// `Drop` that deletes what a test made (it cannot await, and the test's client needs the
/// test's runtime, which the `Drop` blocks). Without a client configuration it does
/// nothing.
pub(crate) fn with_own_client<F, Fut>(task: F)
where
    F: FnOnce(kube::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = on_own_runtime(move || async move {
        if let Ok(client) = kube::Client::try_default().await {
            task(client).await;
        }
    })
    .join();
}

/// Why the suite cannot run here (no `KUBECONFIG`, not root, or both), or `None` when it
/// can.
pub fn skip_reason() -> Option<String> {
    let mut missing = Vec::new();
    if !kubeconfig_set() {
        missing.push("KUBECONFIG is not set (the suite needs a Kubernetes API server)");
    }
    if !rustix::process::geteuid().is_root() {
        missing.push("not root (the suite creates network namespaces)");
    }
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// Environment variable naming a directory to take `weir-operator` and `weir-proxy` from
/// instead of this build's target directory (release builds, installed binaries).
pub const BIN_DIR_ENV: &str = "WEIR_E2E_BIN_DIR";

/// Path of a binary the suite starts: in [`BIN_DIR_ENV`] when set (for `weir-operator`
/// and `weir-proxy`), else in the target directory this test runs from, where
/// `cargo build --bins -p weir-operator -p weir-proxy` puts them and `cargo test` puts the
/// crate's own `weir-e2e-backend`.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let dir = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if name != "weir-e2e-backend" => std::path::PathBuf::from(dir),
        _ => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test>-<hash> -> target/<profile>
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("target directory")
                .to_owned()
        }
    };
    let path = dir.join(file);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins -p weir-operator -p weir-proxy` first",
        path.display()
    );
    path
}

/// Whether `KUBECONFIG` names a file: set and not empty (as `scripts/test` reads it).
pub fn kubeconfig_set() -> bool {
    std::env::var_os("KUBECONFIG").is_some_and(|value| !value.is_empty())
}

//! The end-to-end harness: the real `weir-operator` and `weir-proxy` binaries, run as
//! processes against a real Kubernetes API server (`KUBECONFIG`). A real API server
//! refuses loopback addresses in EndpointSlices, so the proxies and the backends live in
//! network namespaces the suite creates on a private /24 of its own ([`netns`]); the
//! operator and the test itself run on the host and reach them over a bridge.
//!
//! Nothing here needs a kubelet or a controller manager: the suite writes the
//! EndpointSlices itself. Without root or without `KUBECONFIG` every test says in one line
//! what is missing and passes without touching anything ([`skip_reason`]), so
//! `cargo test --workspace` works anywhere.

pub mod http;
pub mod netns;
pub mod objects;
pub mod process;
pub mod scenario;
pub mod tls;
pub mod wait;

pub use objects::{FIELD_MANAGER, TestNamespace, client_or_skip, install_crds};
pub use scenario::Scenario;

/// Why the suite cannot run here (no `KUBECONFIG`, not root, or both), or `None` when it
/// can.
pub fn skip_reason() -> Option<String> {
    let mut missing = Vec::new();
    if std::env::var_os("KUBECONFIG").is_none() {
        missing.push("KUBECONFIG is not set (the suite needs a Kubernetes API server)");
    }
    if !rustix::process::geteuid().is_root() {
        missing.push("not root (the suite creates network namespaces)");
    }
    (!missing.is_empty()).then(|| missing.join(" and "))
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
        "{} is missing: run `cargo build --bins -p weir-operator -p weir-proxy` first",
        path.display()
    );
    path
}

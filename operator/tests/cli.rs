//! The `weir-operator` binary: `--help` works, bad flags and an unusable client
//! configuration exit 64 with a message naming the problem.

use std::process::Command;

fn weir_operator(args: &[&str], kubeconfig: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir-operator"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("WEIR_ADMIN_TOKEN_FILE")
        .output()
        .expect("the binary runs")
}

#[test]
fn bad_configuration_exits_64() {
    let help = weir_operator(&["--help"], "/nonexistent/kubeconfig");
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--namespaces",
        "--proxy-service",
        "--admin-token-file",
        "--ca-file",
        "--metrics-address",
        "--log-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }

    let missing = weir_operator(&[], "/nonexistent/kubeconfig");
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--admin-token-file"));

    let bad = weir_operator(
        &["--admin-token-file", "/t", "--debounce", "soon"],
        "/nonexistent/kubeconfig",
    );
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--debounce"));

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t".repeat(32)).unwrap();
    let no_cluster = weir_operator(
        &[
            "--admin-token-file",
            token.to_str().unwrap(),
            "--log-format",
            "text",
        ],
        "/nonexistent/kubeconfig",
    );
    assert_eq!(no_cluster.status.code(), Some(64));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&no_cluster.stdout),
        String::from_utf8_lossy(&no_cluster.stderr)
    );
    assert!(output.contains("KUBECONFIG"), "{output}");
}

//! The `weir-proxy` binary: bad configuration exits 64 with a message naming the problem.

use std::process::Command;

fn weir_proxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir-proxy"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn bad_configuration_exits_64() {
    let cases: &[(&[&str], &str)] = &[
        (&["--config", "/nonexistent/weir"], "not a directory"),
        (&["--workers", "0"], "--workers"),
        (
            &[
                "--admin-listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--admin-token-file",
                "/nonexistent/token",
            ],
            "admin token file",
        ),
        (
            &["--otlp-endpoint", "grpc://collector:4317"],
            "only http://",
        ),
    ];
    for (args, expected) in cases {
        let output = weir_proxy(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stderr.contains(expected) || stdout.contains(expected),
            "{args:?}: {stderr}{stdout}"
        );
    }
    let output = weir_proxy(&["--listen", "not-an-address"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
    assert_eq!(weir_proxy(&["--help"]).status.code(), Some(0));
}

//! `weir-proxy plugin test DIR` as a library call, on fixture directories.

use std::path::Path;

use weir_plugin_runtime::run_plugin_tests;

fn fixtures(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_suite_passes() {
    let report = run_plugin_tests(&fixtures("passing")).await.unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.counts(), (13, 0), "{report}");
    assert!(
        report.to_string().ends_with("13 passed, 0 failed"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_per_test_and_per_suite() {
    let report = run_plugin_tests(&fixtures("failing")).await.unwrap();
    assert!(!report.passed());
    let text = report.to_string();
    assert_eq!(report.counts(), (1, 3), "{text}");
    assert!(
        text.contains("› a wrong expectation fails: AssertionError: arithmetic: expected 3, got 2"),
        "{text}"
    );
    assert!(
        text.contains("› a test that never ends times out: the hook did not settle"),
        "{text}"
    );
    assert!(
        text.contains("broken.test.ts: ") && text.contains("broken.ts:2:"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_an_error_and_an_empty_one_does_not_pass() {
    assert!(run_plugin_tests(&fixtures("absent")).await.is_err());
    let empty = tempfile::tempdir().unwrap();
    let report = run_plugin_tests(empty.path()).await.unwrap();
    assert!(!report.passed(), "no tests is not a pass");
}

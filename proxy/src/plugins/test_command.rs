//! `weir-proxy plugin test DIR`: runs a directory's `*.test.ts` suites with the real
//! engine (`weir_plugin_runtime::run_plugin_tests`) and prints one line per test.

use std::path::Path;

/// Runs the suites of `dir` and prints the report on stdout (problems on stderr).
/// Returns whether every test passed and there was at least one. Must run on a tokio
/// runtime.
pub async fn run(dir: &Path) -> bool {
    match weir_plugin_runtime::run_plugin_tests(dir).await {
        Ok(report) => {
            println!("{report}");
            if report.counts() == (0, 0) {
                eprintln!(
                    "weir-proxy plugin test: no *.test.ts file in {}",
                    dir.display()
                );
            }
            report.passed()
        }
        Err(e) => {
            eprintln!("weir-proxy plugin test: {e}");
            false
        }
    }
}

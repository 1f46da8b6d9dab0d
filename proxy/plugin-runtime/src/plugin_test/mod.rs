//! `weir-proxy plugin test DIR`: runs a directory's `*.test.ts` suites against the plugins
//! they test, with the real engine and runtime.
//!
//! A suite names its plugin: `plugin: "jwt.ts"` in its default export (a file beside it),
//! or by default the suite's own name without `.test` (`jwt.test.ts` tests `jwt.ts`).
//! Both may import other files of the directory (`./name`). Each test gets a `t` whose
//! `beforeRequest` and `afterResponse` run the plugin's hooks through a [`PluginRuntime`]
//! and return what the proxy would be told, plus assertions (`plugins/sdk/weir.d.ts`,
//! `TestSuite`).

mod harness;
mod logs;
mod stubs;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::Value;
use weir_crds::compile::modules::Linked;
use weir_crds::plugin::{DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIMEOUT_MS, FailurePolicy, PluginScope};
use weir_crds::snapshot::PluginBundle;

use crate::clock::Clock;
use crate::engine::{CallScope, PluginCode};
use crate::plugin_set::PluginSet;
use crate::quickjs::{Prelude, QuickJsIsolate};
use crate::services::Services;
use crate::services::cache::Cache;
use crate::{PluginRuntime, RuntimeConfig, StartError};
use harness::{Harness, PRESET_CODE, PRESET_ID, PluginUnderTest, SuiteServices};
use logs::LogCapture;
use stubs::FetchStubs;

/// Time one test may take, awaits included, unless the suite sets `timeoutMs`.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time budget of the plugin's hooks in tests: more than the production default, so a
/// busy CI machine does not fail a suite.
const PLUGIN_TIMEOUT_MS: u32 = 1_000;

/// Memory of the isolate running a suite.
const SUITE_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// Why the tests of a directory could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PluginTestError {
    /// The directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The runtime did not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The outcome of every suite of a directory.
#[derive(Debug, Default)]
pub struct TestReport {
    /// Suites in file name order.
    pub suites: Vec<SuiteReport>,
}

/// The outcome of one `*.test.ts` file.
#[derive(Debug)]
pub struct SuiteReport {
    /// The test file.
    pub file: PathBuf,
    /// Why the suite could not run (it does not compile, its plugin does not load, ...);
    /// counted as one failure.
    pub error: Option<String>,
    /// Its tests, in the order the suite lists them.
    pub tests: Vec<TestOutcome>,
}

/// The outcome of one test.
#[derive(Debug)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

impl TestReport {
    /// Tests that passed and failed (a suite that could not run counts as one failure).
    pub fn counts(&self) -> (usize, usize) {
        let mut passed = 0;
        let mut failed = 0;
        for suite in &self.suites {
            failed += usize::from(suite.error.is_some());
            for test in &suite.tests {
                if test.failure.is_none() {
                    passed += 1;
                } else {
                    failed += 1;
                }
            }
        }
        (passed, failed)
    }

    /// Whether every suite ran and every test passed (and there was at least one).
    pub fn passed(&self) -> bool {
        let (passed, failed) = self.counts();
        failed == 0 && passed > 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for suite in &self.suites {
            let file = suite.file.display();
            if let Some(error) = &suite.error {
                writeln!(f, "FAIL {file}: {error}")?;
            }
            for test in &suite.tests {
                let ms = test.duration.as_secs_f64() * 1000.0;
                match &test.failure {
                    None => writeln!(f, "ok   {file} › {} ({ms:.1} ms)", test.name)?,
                    Some(why) => writeln!(f, "FAIL {file} › {}: {why}", test.name)?,
                }
            }
        }
        let (passed, failed) = self.counts();
        write!(f, "{passed} passed, {failed} failed")
    }
}

/// Runs every `*.test.ts` file in `dir` (not recursively), each suite on a thread of its
/// own that is a proxy shard: the plugin runs there as it would in the proxy.
pub async fn run_plugin_tests(dir: &Path) -> Result<TestReport, PluginTestError> {
    let read_error = |source| PluginTestError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(".test.ts"))
        .collect();
    files.sort();

    // Checked up front, so a bad configuration is an error rather than a failed suite.
    PluginRuntime::start(&RuntimeConfig::default(), &mut Registry::default())?;
    let mut report = TestReport::default();
    for file in files {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let path = file.clone();
        let spawned = std::thread::Builder::new()
            .name("weir-plugin-test".into())
            .stack_size(8 * 1024 * 1024)
            .spawn(move || {
                let Ok(executor) = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                else {
                    return;
                };
                let local = tokio::task::LocalSet::new();
                let suite = local.block_on(&executor, run_suite(&path));
                let _ = sender.send(suite);
            });
        let suite = match spawned {
            Ok(_) => receiver.await.ok(),
            Err(_) => None,
        };
        report.suites.push(suite.unwrap_or_else(|| SuiteReport {
            file: file.clone(),
            error: Some("the suite's thread stopped".into()),
            tests: Vec::new(),
        }));
    }
    Ok(report)
}

/// What the suite prelude says of a suite.
#[derive(Deserialize)]
struct SuiteDescription {
    plugin: Option<String>,
    config: Value,
    #[serde(rename = "timeoutMs")]
    timeout_ms: Option<u64>,
    tests: Vec<String>,
}

async fn run_suite(file: &Path) -> SuiteReport {
    let mut report = SuiteReport {
        file: file.to_owned(),
        error: None,
        tests: Vec::new(),
    };
    let (runtime, harness) = match start_harness() {
        Ok(started) => started,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    let (isolate, description) = match load_suite(file, harness.clone()) {
        Ok(loaded) => loaded,
        Err(error) => {
            report.error = Some(error);
            return report;
        }
    };
    let stem = file
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".test.ts").to_owned())
        .unwrap_or_default();
    let plugin_file =
        file.with_file_name(description.plugin.unwrap_or_else(|| format!("{stem}.ts")));
    let name = plugin_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = format!("test/{name}");
    // The plugin's log lines go to `t.logs()` while the suite runs.
    let logs = harness.logs.get_or_init(|| LogCapture::new(&id));
    let _capturing = tracing::subscriber::set_default(logs.subscriber());
    match load_plugin(&plugin_file, &name, &description.config, &runtime).await {
        Ok(set) => {
            *harness.plugin.borrow_mut() = Some(PluginUnderTest {
                set,
                id,
                config: description.config,
            });
        }
        Err(error) => {
            report.error = Some(error);
            return report;
        }
    }
    let timeout = description
        .timeout_ms
        .map_or(TEST_TIMEOUT, Duration::from_millis);
    for name in description.tests {
        harness.reset();
        let started = Instant::now();
        let outcome = isolate
            .clone()
            .run_test(name.clone(), timeout, CallScope::default())
            .await;
        let failure = match outcome {
            Ok(report) if report.ok => None,
            Ok(report) => Some(report.thrown.and_then(|t| t.error).unwrap_or_default()),
            Err(failure) => Some(format!("{} ({})", failure.detail, failure.kind.as_str())),
        };
        report.tests.push(TestOutcome {
            name,
            failure,
            duration: started.elapsed(),
        });
    }
    report
}

/// A file of the directory with the files it imports (`./name`, beside it), transpiled.
fn linked(path: &Path) -> Result<Linked, String> {
    let source =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let entry = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let read = |name: &str| std::fs::read_to_string(path.with_file_name(name)).ok();
    weir_crds::compile::modules::link(&entry, &source, read).map_err(|errors| {
        let errors: Vec<String> = errors
            .iter()
            .map(|e| format!("{}:{}", path.with_file_name(&e.file).display(), e.error))
            .collect();
        errors.join("; ")
    })
}

fn load_suite(
    file: &Path,
    harness: Rc<Harness>,
) -> Result<(Rc<QuickJsIsolate>, SuiteDescription), String> {
    let suite = linked(file)?;
    let code = PluginCode {
        plugin: Arc::from(format!("test:{}", file.display())),
        code: suite.code,
        modules: Arc::new(suite.modules),
        memory_limit: SUITE_MEMORY_BYTES,
        load_timeout: TEST_TIMEOUT,
        config_json: Arc::from("{}"),
    };
    // The suite's `Date` reads the plugin's clock too.
    let clock = harness.clock.clone();
    let isolate = QuickJsIsolate::new(
        &code,
        Rc::new(SuiteServices(harness)),
        Prelude::TestSuite,
        &clock,
    )?;
    let description = isolate
        .describe()
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or("the suite does not describe itself")?;
    Ok((isolate, description))
}

/// A runtime whose plugins see a manual clock, an in-memory cache and stubbed fetches,
/// with its shard (the calling thread) in a [`Harness`].
fn start_harness() -> Result<(PluginRuntime, Rc<Harness>), StartError> {
    // A CPU budget as large as the hook budget, for the same reason.
    let config = RuntimeConfig {
        cpu_budget_ms: u64::from(PLUGIN_TIMEOUT_MS).min(crate::MAX_CPU_BUDGET_MS),
        ..RuntimeConfig::default()
    };
    let clock = Clock::manual();
    let cache = Cache::new(&config.cache, clock.clone())?;
    let stubs = Arc::new(FetchStubs::default());
    let services = Services::new(cache.clone(), stubs.clone(), config.body_limit_bytes);
    let runtime =
        PluginRuntime::with_services(&config, &mut Registry::default(), services, clock.clone())?;
    let harness = Rc::new(Harness::new(runtime.attach(), clock, cache, stubs));
    Ok((runtime, harness))
}

/// Loads the plugin of `path` as `test/<name>`, its `onLoad` given the suite's config,
/// with the harness's preset plugin.
async fn load_plugin(
    path: &Path,
    name: &str,
    config: &Value,
    runtime: &PluginRuntime,
) -> Result<Arc<PluginSet>, String> {
    let linked = linked(path)?;
    let preset = weir_crds::compile::modules::link("preset.ts", PRESET_CODE, |_| None)
        .map_err(|e| format!("the harness's preset plugin: {e:?}"))?;
    let bundles = BTreeMap::from([
        (
            format!("test/{name}"),
            test_bundle(name, linked, config.clone()),
        ),
        (
            PRESET_ID.to_owned(),
            test_bundle("preset", preset, Value::Null),
        ),
    ]);
    let loaded = runtime.load(&bundles).await;
    if let Some(failure) = loaded.failures.first() {
        return Err(format!(
            "{} does not load: {}",
            path.display(),
            failure.message
        ));
    }
    Ok(loaded.set)
}

/// A bundle of linked code as the compiler would make it, with the test budget.
fn test_bundle(name: &str, linked: Linked, config: Value) -> PluginBundle {
    PluginBundle {
        namespace: "test".into(),
        name: name.to_owned(),
        generation: None,
        code_hash: linked.code_hash(),
        code: linked.code,
        modules: linked.modules,
        config,
        secret_paths: Default::default(),
        config_schema: None,
        order: 0,
        scope: PluginScope::Attached,
        timeout_ms: PLUGIN_TIMEOUT_MS.max(DEFAULT_TIMEOUT_MS),
        memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
        failure_policy: FailurePolicy::Closed,
    }
}

//! `weir-proxy plugin test DIR`: runs a directory's `*.test.ts` suites against the plugins
//! they test, with the real engine and runtime.
//!
//! A suite names its plugin: `plugin: "jwt.ts"` in its default export (a file beside it),
//! or by default the suite's own name without `.test` (`jwt.test.ts` tests `jwt.ts`).
//! Both may import other files of the directory (`./name`). Each test gets a `t` whose
//! `beforeRequest` and `afterResponse` run the plugin's hooks through a [`PluginRuntime`]
//! and return what the proxy would be told, plus assertions (`plugins/sdk/weir.d.ts`,
//! `TestSuite`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_crds::compile::modules::Linked;
use weir_crds::plugin::{DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIMEOUT_MS, FailurePolicy, PluginScope};
use weir_crds::snapshot::{PluginBundle, PluginCall};

use crate::engine::{CallScope, HostOps, PluginCode};
use crate::outcome::{AfterResponse, BeforeRequest, Carry};
use crate::plugin_set::{Chain, PluginSet};
use crate::quickjs::{Prelude, QuickJsIsolate};
use crate::request::{BufferedBody, RequestInfo, ResponseInfo, joined_headers};
use crate::{PluginRuntime, RuntimeConfig, ShardPlugins, StartError};

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
    let runtime = match PluginRuntime::start(&RuntimeConfig::default(), &mut Registry::default()) {
        Ok(runtime) => runtime,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    let harness = Rc::new(Harness {
        shard: runtime.attach(),
        plugin: RefCell::new(None),
        carries: RefCell::new(HashMap::new()),
        next_carry: Cell::new(1),
    });
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
    match load_plugin(&plugin_file, &runtime).await {
        Ok((set, id)) => {
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
    let isolate = QuickJsIsolate::new(&code, Rc::new(SuiteServices(harness)), Prelude::TestSuite)?;
    let description = isolate
        .describe()
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or("the suite does not describe itself")?;
    Ok((isolate, description))
}

async fn load_plugin(
    path: &Path,
    runtime: &PluginRuntime,
) -> Result<(Arc<PluginSet>, String), String> {
    let linked = linked(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = format!("test/{name}");
    let bundle = PluginBundle {
        namespace: "test".into(),
        name,
        generation: None,
        code_hash: linked.code_hash(),
        code: linked.code,
        modules: linked.modules,
        config: json!({}),
        config_schema: None,
        order: 0,
        scope: PluginScope::Attached,
        timeout_ms: PLUGIN_TIMEOUT_MS.max(DEFAULT_TIMEOUT_MS),
        memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
        failure_policy: FailurePolicy::Closed,
    };
    let loaded = runtime.load(&BTreeMap::from([(id.clone(), bundle)])).await;
    if let Some(failure) = loaded.failures.first() {
        return Err(format!(
            "{} does not load: {}",
            path.display(),
            failure.message
        ));
    }
    Ok((loaded.set, id))
}

struct PluginUnderTest {
    set: Arc<PluginSet>,
    id: String,
    config: Value,
}

/// The suite's host services: `t.beforeRequest` and `t.afterResponse`, run on the
/// suite's shard.
struct Harness {
    shard: ShardPlugins,
    plugin: RefCell<Option<PluginUnderTest>>,
    carries: RefCell<HashMap<u64, (Arc<Chain>, Carry)>>,
    next_carry: Cell<u64>,
}

/// [`Harness`] as the suite isolate's host services.
struct SuiteServices(Rc<Harness>);

impl HostOps for SuiteServices {
    fn call(&self, op: String, args: String, _scope: CallScope) -> LocalBoxFuture<'static, String> {
        let harness = self.0.clone();
        Box::pin(async move {
            match harness.run(&op, &args).await {
                Ok(value) => json!({"ok": true, "value": value}),
                Err(error) => json!({"ok": false, "error": error}),
            }
            .to_string()
        })
    }
}

/// A request as a test describes it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RequestSpec {
    method: Option<String>,
    path: Option<String>,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
    path_params: BTreeMap<String, String>,
    client_ip: Option<String>,
    route: Option<String>,
    request_id: Option<String>,
    backends: Vec<String>,
}

/// A response as a test describes it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseSpec {
    status: Option<u16>,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

fn body_bytes(body: Option<Value>) -> Option<Arc<dyn crate::request::BodySource>> {
    let bytes = match body? {
        Value::String(text) => Bytes::from(text),
        other => Bytes::from(other.to_string()),
    };
    Some(Arc::new(BufferedBody(bytes)))
}

impl Harness {
    async fn run(&self, op: &str, args: &str) -> Result<Value, String> {
        let mut args: Vec<Value> = serde_json::from_str(args).map_err(|e| e.to_string())?;
        args.resize(2, Value::Null);
        match op {
            "test.beforeRequest" => {
                let spec: RequestSpec = serde_json::from_value(args[0].take())
                    .map_err(|e| format!("t.beforeRequest: {e}"))?;
                let config = args[1].take();
                self.before_request(spec, config).await
            }
            "test.afterResponse" => {
                let carry = args[0]
                    .as_u64()
                    .ok_or("t.afterResponse needs the result of t.beforeRequest")?;
                let spec: ResponseSpec = serde_json::from_value(args[1].take())
                    .map_err(|e| format!("t.afterResponse: {e}"))?;
                self.after_response(carry, spec).await
            }
            other => Err(format!("unknown harness call {other:?}")),
        }
    }

    async fn before_request(&self, spec: RequestSpec, config: Value) -> Result<Value, String> {
        let chain = {
            let plugin = self.plugin.borrow();
            let plugin = plugin.as_ref().ok_or("the plugin is not loaded")?;
            let config = if config.is_null() {
                plugin.config.clone()
            } else {
                config
            };
            plugin
                .set
                .chain(&[PluginCall::new(plugin.id.clone(), &config)])
        };
        let path = spec.path.unwrap_or_else(|| "/".into());
        let query = spec.query.unwrap_or_default();
        let request = RequestInfo {
            method: spec.method.unwrap_or_else(|| "GET".into()).to_uppercase(),
            url: format!(
                "http://test.local{path}{}{query}",
                if query.is_empty() { "" } else { "?" }
            ),
            path,
            query,
            headers: spec
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_lowercase(), v))
                .collect(),
            route: spec.route.unwrap_or_else(|| "test/route".into()),
            path_params: spec.path_params,
            client_ip: spec.client_ip.and_then(|ip| ip.parse().ok()),
            request_id: spec.request_id.unwrap_or_else(|| "test-request".into()),
            backends: spec.backends,
            body: body_bytes(spec.body),
        };
        let (outcome, carry) = self.shard.before_request(&chain, request).await;
        let id = self.next_carry.get();
        self.next_carry.set(id + 1);
        self.carries.borrow_mut().insert(id, (chain, carry));
        Ok(match outcome {
            BeforeRequest::Continue(patch) => {
                json!({"outcome": "continue", "carry": id, "patch": patch})
            }
            BeforeRequest::Respond(response) => json!({
                "outcome": "respond",
                "carry": id,
                "response": {
                    "status": response.status,
                    "headers": joined_headers(&response.headers),
                    "body": String::from_utf8_lossy(&response.body),
                    "rejected": response.rejected,
                },
            }),
            BeforeRequest::Failed(failure) => failed(&failure, id),
        })
    }

    async fn after_response(&self, carry: u64, spec: ResponseSpec) -> Result<Value, String> {
        let (chain, carry) = self
            .carries
            .borrow_mut()
            .remove(&carry)
            .ok_or("t.afterResponse was already called for this request")?;
        let response = ResponseInfo {
            status: spec.status.unwrap_or(200),
            headers: spec
                .headers
                .into_iter()
                .map(|(n, v)| (n.to_lowercase(), v))
                .collect(),
            body: body_bytes(spec.body),
        };
        Ok(
            match self.shard.after_response(&chain, carry, response).await {
                AfterResponse::Continue(patch) => json!({
                    "outcome": "continue",
                    "patch": {
                        "status": patch.status,
                        "headers": patch.headers,
                        "body": patch.body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    },
                }),
                AfterResponse::Failed(failure) => failed(&failure, 0),
            },
        )
    }
}

fn failed(failure: &crate::PluginFailure, carry: u64) -> Value {
    json!({
        "outcome": "failed",
        "carry": carry,
        "failure": {
            "kind": failure.kind,
            "hook": failure.hook,
            "detail": failure.detail,
            "status": crate::PluginFailure::STATUS,
            "body": serde_json::from_str::<Value>(&failure.response_body()).unwrap_or_default(),
        },
    })
}

//! The host side of a suite's `t`: runs the plugin under test's hooks on the suite's
//! shard (`t.beforeRequest`, `t.afterResponse`), and gives the test the plugin's cache,
//! clock, fetch stubs and log lines. Each test starts from the same state: the clock back
//! at the suite's start, the cache empty, no stubs, no lines.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_crds::snapshot::PluginCall;

use super::logs::LogCapture;
use super::stubs::{FetchStubs, StubAnswer};
use crate::ShardPlugins;
use crate::clock::Clock;
use crate::engine::{CallScope, HostOps};
use crate::outcome::{AfterResponse, BeforeRequest, Carry};
use crate::plugin_set::{Chain, PluginSet};
use crate::request::{BufferedBody, RequestInfo, ResponseInfo, joined_headers};
use crate::services::cache::Cache;
use crate::services::{plugin_key, ttl_seconds};

/// The plugin run before the plugin under test when a test request gives `user` or
/// `state`: it sets them as an earlier plugin of the chain would.
pub(super) const PRESET_ID: &str = "weir-test/preset";

/// [`PRESET_ID`]'s code: its config is `{user, state}`.
pub(super) const PRESET_CODE: &str = "export default {
  beforeRequest(ctx) {
    const { user, state } = ctx.config;
    if (user !== null) ctx.user = structuredClone(user);
    if (state !== null) Object.assign(ctx.state, structuredClone(state));
  },
};";

/// The loaded plugin a suite tests.
pub(super) struct PluginUnderTest {
    pub(super) set: Arc<PluginSet>,
    pub(super) id: String,
    /// The suite's `config`, for calls that give none.
    pub(super) config: Value,
}

/// What a suite's `t` works on.
pub(super) struct Harness {
    pub(super) shard: ShardPlugins,
    pub(super) plugin: RefCell<Option<PluginUnderTest>>,
    carries: RefCell<HashMap<u64, (Arc<Chain>, Carry)>>,
    next_carry: Cell<u64>,
    /// The clock of the plugin's `Date` and cache (and the suite's `Date`); it stands
    /// still unless a test moves it.
    pub(super) clock: Clock,
    /// Where the clock stands when each test begins.
    start_ms: i64,
    cache: Arc<Cache>,
    stubs: Arc<FetchStubs>,
    pub(super) logs: OnceCell<LogCapture>,
}

impl Harness {
    pub(super) fn new(
        shard: ShardPlugins,
        clock: Clock,
        cache: Arc<Cache>,
        stubs: Arc<FetchStubs>,
    ) -> Self {
        Self {
            shard,
            plugin: RefCell::new(None),
            carries: RefCell::new(HashMap::new()),
            next_carry: Cell::new(1),
            start_ms: clock.now_ms(),
            clock,
            cache,
            stubs,
            logs: OnceCell::new(),
        }
    }

    /// Puts everything a test can change back as it was when the suite began.
    pub(super) fn reset(&self) {
        self.clock.set_ms(self.start_ms);
        if let Cache::Memory(memory) = self.cache.as_ref() {
            memory.clear();
        }
        self.stubs.clear();
        if let Some(logs) = self.logs.get() {
            logs.take();
        }
    }
}

/// [`Harness`] as the suite isolate's host services.
pub(super) struct SuiteServices(pub(super) Rc<Harness>);

impl HostOps for SuiteServices {
    fn call(&self, op: String, args: String, _scope: CallScope) -> LocalBoxFuture<'static, String> {
        let harness = self.0.clone();
        Box::pin(async move { answer(harness.run(&op, &args).await) })
    }

    fn call_now(&self, op: &str, args: &str) -> String {
        answer(self.0.run_now(op, args))
    }
}

fn answer(outcome: Result<Value, String>) -> String {
    match outcome {
        Ok(value) => json!({"ok": true, "value": value}),
        Err(error) => json!({"ok": false, "error": error}),
    }
    .to_string()
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
    /// `ctx.user` as an earlier plugin (an auth plugin) left it.
    user: Option<Value>,
    /// `ctx.state` as earlier plugins left it.
    state: Option<serde_json::Map<String, Value>>,
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

/// The argument list of a harness call, padded with nulls.
fn arguments(args: &str) -> Result<Vec<Value>, String> {
    let mut args: Vec<Value> = serde_json::from_str(args).map_err(|e| e.to_string())?;
    args.resize(3, Value::Null);
    Ok(args)
}

/// A time in milliseconds (the suite's prelude turns Dates and ISO 8601 text into one).
fn milliseconds(value: &Value, call: &str) -> Result<i64, String> {
    value
        .as_f64()
        .filter(|ms| ms.is_finite())
        .map(|ms| ms as i64)
        .ok_or_else(|| format!("{call}: a time in milliseconds (a number or a Date)"))
}

impl Harness {
    /// The calls answered at once: the clock, the fetch stubs, the log lines.
    fn run_now(&self, op: &str, args: &str) -> Result<Value, String> {
        let mut args = arguments(args)?;
        match op {
            "test.clock.now" => Ok(Value::from(self.clock.now_ms())),
            "test.clock.set" => {
                self.clock.set_ms(milliseconds(&args[0], "t.clock.set")?);
                Ok(Value::from(self.clock.now_ms()))
            }
            "test.clock.advance" => {
                let by = milliseconds(&args[0], "t.clock.advance")?;
                self.clock.set_ms(self.clock.now_ms().saturating_add(by));
                Ok(Value::from(self.clock.now_ms()))
            }
            "test.fetch.stub" => {
                let url = args[0]
                    .as_str()
                    .ok_or("t.fetch.stub: the URL must be a string")?
                    .to_owned();
                let answer: StubAnswer = serde_json::from_value(args[1].take())
                    .map_err(|e| format!("t.fetch.stub: {e}"))?;
                let method = args[2].as_str().map(str::to_owned);
                self.stubs.stub(url, method, answer);
                Ok(Value::Null)
            }
            "test.fetch.calls" => {
                serde_json::to_value(self.stubs.calls()).map_err(|e| e.to_string())
            }
            "test.logs" => Ok(Value::from(
                self.logs.get().map(LogCapture::take).unwrap_or_default(),
            )),
            other => Err(format!("unknown harness call {other:?}")),
        }
    }

    /// The cache key of the plugin under test's `key`.
    fn cache_key(&self, key: &Value) -> Result<String, String> {
        let plugin = self.plugin.borrow();
        let plugin = plugin.as_ref().ok_or("the plugin is not loaded")?;
        let key = key.as_str().ok_or("t.cache: the key must be a string")?;
        Ok(plugin_key(&plugin.id, key))
    }

    async fn run(&self, op: &str, args: &str) -> Result<Value, String> {
        let mut args = arguments(args)?;
        match op {
            "test.cache.get" => {
                let stored = self.cache.get(&self.cache_key(&args[0])?).await;
                let stored = stored.map_err(|e| e.to_string())?;
                Ok(stored
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(Value::Null))
            }
            "test.cache.set" => {
                let key = self.cache_key(&args[0])?;
                let ttl = ttl_seconds(args.get(2), "t.cache.set")?;
                self.cache
                    .set(&key, args[1].take().to_string(), ttl)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Value::Null)
            }
            "test.cache.delete" => {
                let key = self.cache_key(&args[0])?;
                Ok(Value::Bool(
                    self.cache.delete(&key).await.map_err(|e| e.to_string())?,
                ))
            }
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

    async fn before_request(&self, mut spec: RequestSpec, config: Value) -> Result<Value, String> {
        let chain = {
            let plugin = self.plugin.borrow();
            let plugin = plugin.as_ref().ok_or("the plugin is not loaded")?;
            let config = if config.is_null() {
                plugin.config.clone()
            } else {
                config
            };
            let under_test = PluginCall::new(plugin.id.clone(), &config);
            if spec.user.is_none() && spec.state.is_none() {
                plugin.set.chain(&[under_test])
            } else {
                let preset = json!({"user": spec.user.take(), "state": spec.state.take()});
                plugin
                    .set
                    .chain(&[PluginCall::new(PRESET_ID.to_owned(), &preset), under_test])
            }
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
                let body = patch
                    .body
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                let mut patch = serde_json::to_value(&patch).map_err(|e| e.to_string())?;
                if let Some(body) = body {
                    patch["body"] = Value::from(body);
                }
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

//! The engine seam: what the isolate pool needs from a JavaScript engine. QuickJS
//! ([`crate::quickjs`]) is the one engine today; a V8 engine would implement the same two
//! traits where V8 can be built.
//!
//! An isolate holds one plugin version and runs on the shard that created it. Calls into
//! it are futures on that shard's local executor, so while one hook awaits a host
//! service, the shard serves other requests.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde::Deserialize;

use crate::outcome::{FailureKind, Hook};
use crate::patch::HeaderEdits;
use crate::request::RequestScope;
use crate::services::ResponseView;

/// A plugin version as an engine loads it.
#[derive(Debug)]
pub(crate) struct PluginCode {
    /// `namespace/name`.
    pub(crate) plugin: Arc<str>,
    /// The entry ES module, as JavaScript.
    pub(crate) code: String,
    /// The modules it imports, as JavaScript by file name.
    pub(crate) modules: Arc<BTreeMap<String, String>>,
    /// Memory limit of each isolate, in bytes.
    pub(crate) memory_limit: usize,
    /// Time budget of `onLoad`.
    pub(crate) load_timeout: Duration,
    /// The plugin's own config, as JSON, for `onLoad`.
    pub(crate) config_json: Arc<str>,
}

/// Creates isolates on the calling shard.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Evaluates the module in a new isolate and runs its `onLoad`.
    fn instantiate(
        &self,
        code: &Arc<PluginCode>,
        host: Rc<dyn HostOps>,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Isolate>, String>>;
}

/// One plugin version loaded in one engine instance.
pub(crate) trait Isolate {
    /// Whether the module exports this hook.
    fn has_hook(&self, hook: Hook) -> bool;
    /// Runs a hook to completion (including awaits), within `input.timeout`, each
    /// uninterrupted run of JavaScript within `input.cpu_budget`.
    fn call(self: Rc<Self>, input: HookInput) -> Call;
    /// False once the isolate was interrupted or ran out of memory: it finishes the calls
    /// it has, and new calls go to a replacement.
    fn is_usable(&self) -> bool;
}

/// A hook call: ended at once, as a synchronous hook does, or still running because it
/// awaits a host service.
// `Done` is the usual case and lives on the stack for a moment: boxing it would be the
// very allocation this type exists to avoid.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Call {
    /// Ended; no future was made.
    Done(HookResult),
    /// Running: its ending comes when the service answers.
    Running(LocalBoxFuture<'static, HookResult>),
}

impl Call {
    /// The call's result, waiting for it if it is still running.
    pub(crate) async fn finished(self) -> HookResult {
        match self {
            Self::Done(result) => result,
            Self::Running(running) => running.await,
        }
    }
}

/// One hook call.
pub(crate) struct HookInput {
    pub(crate) hook: Hook,
    /// Id of the config in the chain, so isolates parse each config once.
    pub(crate) config_id: u64,
    pub(crate) config_json: Arc<str>,
    pub(crate) state: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) timeout: Duration,
    /// Longest uninterrupted run of JavaScript (see `RuntimeConfig::cpu_budget_ms`).
    pub(crate) cpu_budget: Duration,
    /// When the call started: its time budgets count from here.
    pub(crate) started: std::time::Instant,
    pub(crate) scope: CallScope,
}

/// Runs a lifecycle hook (`onLoad`, `onUnload`) of `isolate`, if the module has it, with
/// the plugin's own config and its load budget: why it failed, if it did.
pub(crate) async fn run_lifecycle(
    isolate: &Rc<dyn Isolate>,
    hook: Hook,
    code: &PluginCode,
) -> Result<(), String> {
    if !isolate.has_hook(hook) {
        return Ok(());
    }
    let input = HookInput {
        hook,
        config_id: 0,
        config_json: code.config_json.clone(),
        state: None,
        user: None,
        timeout: code.load_timeout,
        cpu_budget: code.load_timeout,
        started: std::time::Instant::now(),
        scope: CallScope {
            plugin: code.plugin.clone(),
            ..CallScope::default()
        },
    };
    match isolate.clone().call(input).finished().await {
        Ok(report) if report.ok => Ok(()),
        Ok(report) => Err(format!(
            "{} threw: {}",
            hook.as_str(),
            report.thrown.and_then(|t| t.error).unwrap_or_default()
        )),
        Err(failure) => Err(format!(
            "{} failed ({}): {}",
            hook.as_str(),
            failure.kind.as_str(),
            failure.detail
        )),
    }
}

/// What host services may need of the request a hook runs for.
#[derive(Clone, Default)]
pub(crate) struct CallScope {
    pub(crate) plugin: Arc<str>,
    pub(crate) request: Option<Arc<RequestScope>>,
    pub(crate) response: Option<Arc<ResponseView>>,
}

impl HookReport {
    /// Records a response status, body or rejection: in `beforeRequest`, an answer.
    pub(crate) fn response_mut(&mut self) -> &mut ResponseReport {
        self.answer = true;
        self.response.get_or_insert_with(Box::default)
    }
}

impl CallScope {
    pub(crate) fn request_id(&self) -> &str {
        self.request
            .as_ref()
            .map_or("", |request| request.info.request_id.as_str())
    }
}

/// Asynchronous services a hook awaits (`ctx.services`, bodies, the test harness). Ops
/// take and give JSON; the answer is `{"ok":true,"value":…}` or `{"ok":false,"error":…}`.
pub(crate) trait HostOps {
    /// The work of `op`, run as a task of the shard whose hook awaits it.
    fn call(&self, op: String, args: String, scope: CallScope) -> LocalBoxFuture<'static, String>;

    /// An `op` answered at once, without I/O (the plugin test harness's clock, stubs and
    /// captured logs); the answer is JSON `{"ok": …}` like [`HostOps::call`]'s.
    fn call_now(&self, op: &str, _args: &str) -> String {
        serde_json::json!({"ok": false, "error": format!("{op:?} cannot be called synchronously")})
            .to_string()
    }
}

/// The services every shard shares (the proxy's), as one shard's host.
impl<T: HostOps + ?Sized> HostOps for Arc<T> {
    fn call(&self, op: String, args: String, scope: CallScope) -> LocalBoxFuture<'static, String> {
        (**self).call(op, args, scope)
    }

    fn call_now(&self, op: &str, args: &str) -> String {
        (**self).call_now(op, args)
    }
}

/// The engine's result of one hook call.
pub(crate) type HookResult = Result<HookReport, EngineFailure>;

/// A call that did not complete in JavaScript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineFailure {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

/// What a hook did: its changes as `ctx` recorded them through the host object, and how
/// it ended. It moves through every layer of a hook call, so what is rare in it (a
/// failure, a new path, a response) is boxed and the rest stays small.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct HookReport {
    /// False when the hook threw.
    pub(crate) ok: bool,
    /// How it threw, when `ok` is false.
    pub(crate) thrown: Option<Box<Thrown>>,
    /// `ctx.state` as JSON, when the hook looked at it.
    pub(crate) state: Option<String>,
    /// `ctx.user` as JSON, when the hook set it.
    pub(crate) user: Option<String>,
    /// Edits of the upstream request's headers.
    pub(crate) upstream: Option<Box<HeaderEdits>>,
    /// New upstream path and `ctx.forward` target.
    pub(crate) steering: Option<Box<Steering>>,
    /// Response changes.
    pub(crate) response: Option<Box<ResponseReport>>,
    /// `beforeRequest` answered (reject, or a status was set).
    pub(crate) answer: bool,
    /// The answer came from `ctx.reject`.
    pub(crate) rejected: bool,
}

/// How a hook failed, as the prelude reports it (`{"ok":false,"kind":…}`).
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Thrown {
    /// False: the hook threw (the prelude's ending says so).
    pub(crate) ok: bool,
    /// `exception` or `memory`.
    pub(crate) kind: Option<String>,
    /// The exception, as `Name: message`.
    pub(crate) error: Option<String>,
    /// Whether `onError` threw too, and what.
    pub(crate) on_error: Option<String>,
}

/// Where a hook sends the request: a new upstream path, a `ctx.forward` target (not yet
/// validated).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Steering {
    /// New upstream path.
    pub(crate) path: Option<String>,
    /// New upstream query (without `?`; empty: none).
    pub(crate) query: Option<String>,
    /// New upstream body: text, or base64 when `body_base64`.
    pub(crate) body: Option<String>,
    /// Whether `body` is base64.
    pub(crate) body_base64: bool,
    /// `ctx.forward` target, not yet validated.
    pub(crate) forward: Option<String>,
}

/// Response changes a hook made.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ResponseReport {
    pub(crate) status: Option<u16>,
    pub(crate) headers: Option<HeaderEdits>,
    pub(crate) body: Option<String>,
    /// True when `body` is base64 (bytes rather than text).
    pub(crate) body_base64: bool,
}

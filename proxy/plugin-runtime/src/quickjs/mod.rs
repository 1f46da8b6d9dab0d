//! The QuickJS engine: one `rquickjs` runtime per isolate, so each plugin version has its
//! own memory limit and an isolate that was interrupted or ran out of memory can be
//! dropped without touching the others.
//!
//! A hook call enters JavaScript through the prelude (`prelude.js`), which builds `ctx`
//! and reports what the hook changed as JSON. A hook that awaits a host service returns a
//! pending promise: the service runs as a task of this shard, and its answer resumes the
//! hook here; meanwhile the shard serves other connections. QuickJS's interrupt handler
//! bounds each uninterrupted run of JavaScript, so no hook holds its shard for long.

mod bindings;
mod modules;
mod url;
mod utf8;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::LocalBoxFuture;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Runtime, Value};

use crate::clock::Clock;
use crate::engine::{
    Call, CallScope, Engine, EngineFailure, HookInput, HookReport, HookResult, HostOps, Isolate,
    PluginCode, Thrown, run_lifecycle,
};
use crate::outcome::{FailureKind, Hook};

/// What the module's default export is run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prelude {
    /// A plugin: hooks called with a `ctx`.
    Plugin,
    /// A plugin test suite (`*.test.ts`): tests called with a `t`.
    TestSuite,
}

impl Prelude {
    fn source(self) -> &'static str {
        match self {
            Prelude::Plugin => include_str!("prelude.js"),
            Prelude::TestSuite => include_str!("suite.js"),
        }
    }
}

/// Standard globals (`atob`, `TextEncoder`, `structuredClone`, `URL`, `console`, …): a
/// function of the global object, the URL parser ([`url::parser`]), the console's log
/// ([`bindings::console_log`]) and the UTF-8 decoder ([`utf8::decoder`]), called before
/// the plugin module is evaluated.
const GLOBALS: &str = include_str!("globals.js");

/// Native stack QuickJS may use for JavaScript recursion; isolate threads have more.
const MAX_STACK_BYTES: usize = 512 * 1024;

/// Replaces `Date` with one reading a manual clock (plugin tests): a function of the
/// global object and the clock's `now` (milliseconds since the epoch).
const MANUAL_CLOCK: &str = include_str!("clock.js");

/// The QuickJS engine.
#[derive(Debug, Default)]
pub(crate) struct QuickJs {
    /// The time `Date` tells.
    pub(crate) clock: Clock,
}

impl Engine for QuickJs {
    fn instantiate(
        &self,
        code: &Arc<PluginCode>,
        host: Rc<dyn HostOps>,
    ) -> LocalBoxFuture<'static, Result<Rc<dyn Isolate>, String>> {
        let created = QuickJsIsolate::new(code, host, Prelude::Plugin, &self.clock);
        let code = code.clone();
        Box::pin(async move {
            let isolate: Rc<dyn Isolate> = created?;
            run_lifecycle(&isolate, Hook::OnLoad, &code).await?;
            Ok(isolate)
        })
    }
}

/// Arms and observes QuickJS's interrupt handler for the call being run.
#[derive(Default)]
struct Budget {
    /// When the call's time (`timeoutMs`, awaits included) is up, by the wall clock.
    deadline: Cell<Option<Instant>>,
    /// When this run of JavaScript has used its CPU budget, in this thread's CPU time: a
    /// thread the machine deschedules (a busy node, a throttled container) is not charged.
    cpu_deadline: Cell<Option<Duration>>,
    interrupted: Cell<bool>,
}

impl Budget {
    fn over(&self) -> bool {
        self.deadline
            .get()
            .is_some_and(|deadline| Instant::now() >= deadline)
            || self
                .cpu_deadline
                .get()
                .is_some_and(|deadline| thread_cpu_time() >= deadline)
    }
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let used = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(used.tv_sec).unwrap_or(0),
        u32::try_from(used.tv_nsec).unwrap_or(0),
    )
}

/// A call in progress.
struct Invocation {
    deadline: Instant,
    /// Longest uninterrupted run of JavaScript within the call.
    cpu_budget: std::time::Duration,
    /// The plugin's config for this call, as JSON: the prelude asks for it only the
    /// first time it sees the config's id.
    config_json: Arc<str>,
    scope: CallScope,
    /// What the hook changed so far, recorded through the host object.
    report: HookReport,
    /// How it ended (the prelude's ending, or a failure), once it has.
    ending: Option<Result<String, EngineFailure>>,
    /// The task waiting for that ending, if the call went asynchronous.
    waiter: Option<std::task::Waker>,
}

/// A few entries by id, searched in order: an isolate has only a handful of calls in
/// flight at once, so a short vector beats hashing an id on every step of every call.
struct ById<T>(Vec<(u64, T)>);

impl<T> Default for ById<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> ById<T> {
    fn insert(&mut self, id: u64, value: T) {
        self.0.push((id, value));
    }

    fn get(&self, id: u64) -> Option<&T> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.0.iter_mut().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let index = self.0.iter().position(|(i, _)| *i == id)?;
        Some(self.0.swap_remove(index).1)
    }

    /// Removes and returns every entry `matches` picks.
    fn count_where(&self, matches: impl Fn(&T) -> bool) -> usize {
        self.0.iter().filter(|(_, value)| matches(value)).count()
    }

    fn take_where(&mut self, matches: impl Fn(&T) -> bool) -> Vec<T> {
        let mut taken = Vec::new();
        let mut index = 0;
        while index < self.0.len() {
            if matches(&self.0[index].1) {
                taken.push(self.0.swap_remove(index).1);
            } else {
                index += 1;
            }
        }
        taken
    }

    fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.0.drain(..).map(|(_, v)| v)
    }
}

/// A host service call awaited by JavaScript.
struct PendingHostCall {
    invocation: u64,
    resolve: Persistent<Function<'static>>,
    /// Whether it is a `fetch`, counted against [`MAX_FETCHES_IN_FLIGHT`].
    fetch: bool,
    /// Its task, cancelled if the hook ends (times out) before it answers.
    task: tokio::task::AbortHandle,
}

/// `fetch` calls one hook call may have in flight at once; more reject at once, so no
/// plugin turns one request into a flood of outbound connections.
pub(crate) const MAX_FETCHES_IN_FLIGHT: usize = 8;

/// One plugin version in one QuickJS runtime.
pub(crate) struct QuickJsIsolate {
    plugin: Arc<str>,
    host: Rc<dyn HostOps>,
    hooks: Cell<[bool; 4]>,
    usable: Cell<bool>,
    next_id: Cell<u64>,
    budget: Rc<Budget>,
    invocations: RefCell<ById<Invocation>>,
    // JavaScript values: dropped in `Drop` while the runtime still lives.
    runner: RefCell<Option<Persistent<Object<'static>>>>,
    /// The runner's `call`, kept so a hook call needs no property lookup.
    hook_call: RefCell<Option<Persistent<Function<'static>>>>,
    host_calls: RefCell<ById<PendingHostCall>>,
    context: Context,
    runtime: Runtime,
}

impl QuickJsIsolate {
    pub(crate) fn new(
        code: &PluginCode,
        host: Rc<dyn HostOps>,
        prelude: Prelude,
        clock: &Clock,
    ) -> Result<Rc<Self>, String> {
        let runtime = Runtime::new().map_err(|e| format!("QuickJS runtime: {e}"))?;
        runtime.set_memory_limit(code.memory_limit);
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        let modules = modules::PluginModules(code.modules.clone());
        runtime.set_loader(modules::PluginModules(code.modules.clone()), modules);
        let budget = Rc::new(Budget::default());
        let watched = budget.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let over = watched.over();
            if over {
                watched.interrupted.set(true);
            }
            over
        })));
        let context = Context::full(&runtime).map_err(|e| format!("QuickJS context: {e}"))?;
        let isolate = Rc::new(Self {
            plugin: code.plugin.clone(),
            host,
            hooks: Cell::new([false; 4]),
            usable: Cell::new(true),
            next_id: Cell::new(1),
            budget,
            invocations: RefCell::default(),
            runner: RefCell::new(None),
            hook_call: RefCell::new(None),
            host_calls: RefCell::default(),
            context,
            runtime,
        });
        isolate.evaluate(&code.code, code.load_timeout, prelude, clock)?;
        Ok(isolate)
    }

    /// Evaluates the plugin module and the prelude around its default export.
    fn evaluate(
        self: &Rc<Self>,
        code: &str,
        timeout: std::time::Duration,
        prelude: Prelude,
        clock: &Clock,
    ) -> Result<(), String> {
        self.budget.deadline.set(Some(Instant::now() + timeout));
        let weak = Rc::downgrade(self);
        let evaluated = self.context.with(|ctx| -> Result<(), String> {
            let explain = |e: rquickjs::Error| describe(&ctx, e);
            let install: Function = ctx.eval(GLOBALS).map_err(explain)?;
            let parse_url = url::parser(&ctx).map_err(explain)?;
            let console_log = bindings::console_log(&ctx, self.plugin.clone()).map_err(explain)?;
            let decode_utf8 = utf8::decoder(&ctx).map_err(explain)?;
            install
                .call::<_, ()>((ctx.globals(), parse_url, console_log, decode_utf8))
                .map_err(explain)?;
            if let Clock::Manual(_) = clock {
                let install: Function = ctx.eval(MANUAL_CLOCK).map_err(explain)?;
                let clock = clock.clone();
                let now =
                    Function::new(ctx.clone(), move || clock.now_ms() as f64).map_err(explain)?;
                install
                    .call::<_, ()>((ctx.globals(), now))
                    .map_err(explain)?;
            }
            let (module, promise) = Module::declare(ctx.clone(), "plugin", code)
                .and_then(|declared| declared.eval())
                .map_err(explain)?;
            promise.finish::<()>().map_err(explain)?;
            let plugin: Value = module.get("default").map_err(explain)?;
            if !plugin.is_object() {
                return Err("the module's default export is not an object with hooks".into());
            }
            let host = bindings::host_object(&ctx, weak).map_err(explain)?;
            let prelude: Function = ctx.eval(prelude.source()).map_err(explain)?;
            let runner: Object = prelude.call((host, plugin)).map_err(explain)?;
            let names: Vec<String> = runner.get("hooks").map_err(explain)?;
            let has = |name: &str| names.iter().any(|n| n == name);
            // By `Hook::index`.
            self.hooks.set([
                has("onLoad"),
                has("beforeRequest"),
                has("afterResponse"),
                has("onUnload"),
            ]);
            let hook_call: Option<Function> = runner.get("call").map_err(explain)?;
            *self.hook_call.borrow_mut() = hook_call.map(|f| Persistent::save(&ctx, f));
            *self.runner.borrow_mut() = Some(Persistent::save(&ctx, runner));
            Ok(())
        });
        let drained = self.drain();
        self.budget.deadline.set(None);
        if self.budget.interrupted.get() {
            return Err(format!(
                "evaluating the module took longer than {} ms",
                timeout.as_millis()
            ));
        }
        evaluated?;
        drained.map_err(|failure| failure.detail)
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Runs `f` in the context for `invocation`, then the promise jobs it queued, under the
    /// invocation's time budget and its CPU budget for this run, whichever ends first.
    fn enter<R>(
        &self,
        invocation: u64,
        f: impl FnOnce(&Ctx<'_>) -> rquickjs::Result<R>,
    ) -> Result<R, EngineFailure> {
        let budgets = self
            .invocations
            .borrow()
            .get(invocation)
            .map(|i| (i.deadline, i.cpu_budget));
        self.budget
            .deadline
            .set(budgets.map(|(deadline, _)| deadline));
        self.budget
            .cpu_deadline
            .set(budgets.map(|(_, cpu_budget)| thread_cpu_time() + cpu_budget));
        self.budget.interrupted.set(false);
        let result = self
            .context
            .with(|ctx| f(&ctx).map_err(|e| self.classify(&ctx, e)));
        let drained = self.drain();
        self.budget.deadline.set(None);
        self.budget.cpu_deadline.set(None);
        let result = result.and_then(|value| drained.map(|()| value));
        if let Err(failure) = &result
            && matches!(failure.kind, FailureKind::Timeout | FailureKind::Memory)
        {
            self.usable.set(false);
        }
        result
    }

    /// Runs queued promise jobs until none is left.
    fn drain(&self) -> Result<(), EngineFailure> {
        let mut first_failure = None;
        loop {
            match self.runtime.execute_pending_job() {
                Ok(true) => {}
                Ok(false) => break,
                Err(job) => {
                    let failure = job.0.with(|ctx| {
                        let error = ctx.catch();
                        self.classify_value(&ctx, error)
                    });
                    first_failure.get_or_insert(failure);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    fn classify(&self, ctx: &Ctx<'_>, error: rquickjs::Error) -> EngineFailure {
        match error {
            rquickjs::Error::Exception => {
                let value = ctx.catch();
                self.classify_value(ctx, value)
            }
            rquickjs::Error::Allocation => EngineFailure {
                kind: FailureKind::Memory,
                detail: "out of memory".into(),
            },
            other => EngineFailure {
                kind: FailureKind::Exception,
                detail: other.to_string(),
            },
        }
    }

    fn classify_value<'js>(&self, ctx: &Ctx<'js>, value: Value<'js>) -> EngineFailure {
        if self.budget.interrupted.get() {
            return EngineFailure {
                kind: FailureKind::Timeout,
                detail: "interrupted: the hook overran its time budget (its timeoutMs, or the \
                         proxy's CPU budget for one uninterrupted run of JavaScript)"
                    .into(),
            };
        }
        let detail = exception_text(ctx, value);
        let kind = if detail.contains("out of memory") {
            FailureKind::Memory
        } else {
            FailureKind::Exception
        };
        EngineFailure { kind, detail }
    }

    /// Ends an asynchronous call: with the prelude's ending (from `host.settle`), or a
    /// failure found while resuming it. The first ending counts.
    fn finish(&self, invocation: u64, ending: Result<String, EngineFailure>) {
        let waiter = match self.invocations.borrow_mut().get_mut(invocation) {
            Some(call) if call.ending.is_none() => {
                call.ending = Some(ending);
                call.waiter.take()
            }
            _ => None,
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Changes the report of a call in progress; `None` if it is over.
    fn record<R>(
        &self,
        invocation: u64,
        change: impl FnOnce(&mut HookReport, &CallScope) -> R,
    ) -> Option<R> {
        let mut invocations = self.invocations.borrow_mut();
        let invocation = invocations.get_mut(invocation)?;
        Some(change(&mut invocation.report, &invocation.scope))
    }

    fn config_of(&self, invocation: u64) -> Option<Arc<str>> {
        self.invocations
            .borrow()
            .get(invocation)
            .map(|i| i.config_json.clone())
    }

    fn scope_of(&self, invocation: u64) -> Option<CallScope> {
        self.invocations
            .borrow()
            .get(invocation)
            .map(|i| i.scope.clone())
    }

    /// Starts a host service call for JavaScript; its answer resumes the caller later.
    fn start_host_call(
        self: &Rc<Self>,
        invocation: u64,
        resolve: Persistent<Function<'static>>,
        op: String,
        args: String,
    ) {
        let id = self.next_id();
        let scope = self.scope_of(invocation).unwrap_or_default();
        let fetch = op == "http.fetch";
        let fetches_in_flight = self
            .host_calls
            .borrow()
            .count_where(|call| call.fetch && call.invocation == invocation);
        let work = if fetch && fetches_in_flight >= MAX_FETCHES_IN_FLIGHT {
            let refused = serde_json::json!({
                "ok": false,
                "error": format!("fetch: this hook already has {MAX_FETCHES_IN_FLIGHT} fetches in flight; await some first"),
            });
            Box::pin(std::future::ready(refused.to_string()))
        } else {
            self.host.call(op, args, scope)
        };
        let weak = Rc::downgrade(self);
        let task = tokio::task::spawn_local(async move {
            let answer = work.await;
            if let Some(isolate) = weak.upgrade() {
                isolate.finish_host_call(id, answer);
            }
        });
        self.host_calls.borrow_mut().insert(
            id,
            PendingHostCall {
                invocation,
                resolve,
                fetch,
                task: task.abort_handle(),
            },
        );
    }

    fn finish_host_call(&self, id: u64, answer: String) {
        let Some(pending) = self.host_calls.borrow_mut().remove(id) else {
            return;
        };
        let invocation = pending.invocation;
        if self.invocations.borrow().get(invocation).is_none() {
            // The call timed out meanwhile: its continuation never runs.
            self.context.with(|_ctx| drop(pending));
            return;
        }
        let resumed = self.enter(invocation, |ctx| {
            pending.resolve.restore(ctx)?.call::<_, ()>((answer,))
        });
        if let Err(failure) = resumed {
            self.finish(invocation, Err(failure));
        }
    }

    /// Forgets a finished call and whatever host calls it still awaited.
    fn forget(&self, invocation: u64) {
        self.invocations.borrow_mut().remove(invocation);
        let orphans = self
            .host_calls
            .borrow_mut()
            .take_where(|call| call.invocation == invocation);
        if !orphans.is_empty() {
            // Their work (a fetch, a cache call) is of no use any more: cancel it.
            for orphan in &orphans {
                orphan.task.abort();
            }
            self.context.with(|_ctx| drop(orphans));
        }
    }
}

impl QuickJsIsolate {
    /// Runs `start` (a call of the runner) as one invocation, within `timeout` in all and
    /// `cpu_budget` per run of JavaScript: the result when the call ended at once (the
    /// usual case, with no allocation for waiting), else the future of its ending.
    fn invoke(
        self: Rc<Self>,
        started: Instant,
        timeout: std::time::Duration,
        cpu_budget: std::time::Duration,
        config_json: Arc<str>,
        scope: CallScope,
        start: impl for<'js> FnOnce(&Ctx<'js>, u64) -> rquickjs::Result<Option<String>>,
    ) -> Call {
        let invocation = self.next_id();
        let deadline = started + timeout;
        self.invocations.borrow_mut().insert(
            invocation,
            Invocation {
                deadline,
                cpu_budget,
                config_json,
                scope,
                report: HookReport::default(),
                ending: None,
                waiter: None,
            },
        );
        let immediate = self.enter(invocation, |ctx| start(ctx, invocation));
        let ending = match immediate {
            Ok(Some(ending)) => Ok(ending),
            Err(failure) => Err(failure),
            // Settled while its promise jobs ran, or still awaiting a host service.
            Ok(None) => match self.settled(invocation) {
                Some(ending) => ending,
                None => return Call::Running(Box::pin(self.wait(invocation, deadline, timeout))),
            },
        };
        Call::Done(self.conclude(invocation, ending))
    }

    fn settled(&self, invocation: u64) -> Option<Result<String, EngineFailure>> {
        self.invocations
            .borrow_mut()
            .get_mut(invocation)
            .and_then(|call| call.ending.take())
    }

    /// Waits for an asynchronous call's ending, at most until `deadline`.
    async fn wait(
        self: Rc<Self>,
        invocation: u64,
        deadline: Instant,
        timeout: std::time::Duration,
    ) -> HookResult {
        let ending =
            std::future::poll_fn(
                |cx| match self.invocations.borrow_mut().get_mut(invocation) {
                    Some(call) => match call.ending.take() {
                        Some(ending) => std::task::Poll::Ready(ending),
                        None => {
                            call.waiter = Some(cx.waker().clone());
                            std::task::Poll::Pending
                        }
                    },
                    None => std::task::Poll::Ready(Err(EngineFailure {
                        kind: FailureKind::Exception,
                        detail: "the hook's call was forgotten".into(),
                    })),
                },
            );
        let ending = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), ending)
            .await
            .unwrap_or_else(|_| {
                Err(EngineFailure {
                    kind: FailureKind::Timeout,
                    detail: format!("the hook did not settle within {} ms", timeout.as_millis()),
                })
            });
        self.conclude(invocation, ending)
    }

    /// The report of a call that ended: what it recorded, and how it ended.
    fn conclude(&self, invocation: u64, ending: Result<String, EngineFailure>) -> HookResult {
        let recorded = self
            .invocations
            .borrow_mut()
            .get_mut(invocation)
            .map(|i| std::mem::take(&mut i.report));
        self.forget(invocation);
        let ending = ending?;
        let mut report = recorded.unwrap_or_default();
        if ending.is_empty() {
            report.ok = true;
        } else {
            let thrown: Thrown = serde_json::from_str(&ending).map_err(|e| EngineFailure {
                kind: FailureKind::Exception,
                detail: format!("unreadable hook report: {e}"),
            })?;
            report.ok = thrown.ok;
            report.thrown = Some(Box::new(thrown));
        }
        Ok(report)
    }

    /// Runs one test of a suite isolate (see [`Prelude::TestSuite`]).
    pub(crate) async fn run_test(
        self: Rc<Self>,
        name: String,
        timeout: std::time::Duration,
        scope: CallScope,
    ) -> HookResult {
        let runner = self.runner.borrow().clone();
        let started = Instant::now();
        self.invoke(
            started,
            timeout,
            timeout,
            Arc::from("{}"),
            scope,
            move |ctx, invocation| {
                let runner = runner.ok_or(rquickjs::Error::Unknown)?.restore(ctx)?;
                let run: Function = runner.get("run")?;
                run.call((name, invocation as f64))
            },
        )
        .finished()
        .await
    }

    /// What the suite prelude says of the suite (JSON), for [`Prelude::TestSuite`].
    pub(crate) fn describe(&self) -> Option<String> {
        let runner = self.runner.borrow().clone()?;
        self.context
            .with(|ctx| runner.restore(&ctx)?.get::<_, Option<String>>("describe"))
            .ok()
            .flatten()
    }
}

impl Isolate for QuickJsIsolate {
    fn has_hook(&self, hook: Hook) -> bool {
        self.hooks.get()[usize::from(hook.index())]
    }

    fn call(self: Rc<Self>, input: HookInput) -> Call {
        let HookInput {
            hook,
            config_id,
            config_json,
            state,
            user,
            timeout,
            cpu_budget,
            started,
            scope,
        } = input;
        let function = self.hook_call.borrow().clone();
        self.invoke(
            started,
            timeout,
            cpu_budget,
            config_json,
            scope,
            move |ctx, invocation| {
                let call = function.ok_or(rquickjs::Error::Unknown)?.restore(ctx)?;
                call.call((
                    hook.index(),
                    invocation as f64,
                    config_id as f64,
                    state,
                    user,
                ))
            },
        )
    }

    fn is_usable(&self) -> bool {
        self.usable.get()
    }
}

impl Drop for QuickJsIsolate {
    fn drop(&mut self) {
        // Persistent values must go before the runtime that owns them.
        let runner = self.runner.borrow_mut().take();
        let hook_call = self.hook_call.borrow_mut().take();
        let calls: Vec<PendingHostCall> = self.host_calls.borrow_mut().drain().collect();
        self.context.with(|_ctx| {
            drop(runner);
            drop(hook_call);
            drop(calls);
        });
        self.runtime.run_gc();
    }
}

/// `Name: message` of an exception value, or the value as text.
fn exception_text<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> String {
    if let Some(exception) = value.as_exception() {
        let message = exception.message().unwrap_or_default();
        let name: Option<String> = exception.get("name").ok();
        return match name {
            Some(name) if !name.is_empty() => format!("{name}: {message}"),
            _ => message,
        };
    }
    ctx.json_stringify(value)
        .ok()
        .flatten()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| "an exception without a message".into())
}

fn describe(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    match error {
        rquickjs::Error::Exception => exception_text(ctx, ctx.catch()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_budget_counts_this_threads_cpu_time_not_the_wall_clock() {
        let budget = Budget::default();
        budget
            .cpu_deadline
            .set(Some(thread_cpu_time() + Duration::from_millis(20)));
        // Asleep (descheduled) past the budget on the wall clock: not charged.
        std::thread::sleep(Duration::from_millis(60));
        assert!(!budget.over());
        // Running: charged.
        let started = Instant::now();
        while !budget.over() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "20 ms of CPU never ran out"
            );
        }
        // The wall-clock deadline (the hook's timeoutMs) still applies on its own.
        let budget = Budget::default();
        budget.deadline.set(Some(Instant::now()));
        assert!(budget.over());
    }
}

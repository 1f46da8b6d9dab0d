//! Plugins on a proxy shard: every shard (one OS thread of `weir-proxy`, with its own
//! single-threaded executor) owns isolates of every loaded plugin version, and runs a
//! request's hooks on itself, inline: a synchronous hook is one call into JavaScript, and
//! a hook awaiting a host service suspends and resumes on the same shard while the shard
//! serves other connections. Only loading and unloading plugin versions reach a shard from
//! elsewhere, over its control channel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{self, LocalBoxFuture};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, HostOps, Isolate, PluginCode, run_lifecycle};
use crate::forward_allow::ForwardAllowList;
use crate::metrics::Metrics;
use crate::outcome::{AfterResponse, BeforeRequest, Carry, Hook};
use crate::patch::{RequestPatch, ResponsePatch};
use crate::phases;
use crate::plugin_set::{Chain, Hooks, PluginVersion};
use crate::request::{RequestInfo, RequestScope, ResponseInfo};

/// Work for a shard from outside it.
enum Control {
    Load {
        version: u64,
        code: Arc<PluginCode>,
        reply: oneshot::Sender<Result<Hooks, String>>,
    },
    Unload {
        version: u64,
        code: Arc<PluginCode>,
    },
}

/// What every shard's plugins share.
pub(crate) struct Shared {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) host: Arc<dyn HostOps + Send + Sync>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) forward_allow_list: ForwardAllowList,
    /// Longest uninterrupted run of JavaScript in a request hook.
    pub(crate) cpu_budget: std::time::Duration,
}

/// The control channels of the attached shards.
#[derive(Debug, Default)]
pub(crate) struct Shards {
    channels: Mutex<Vec<mpsc::UnboundedSender<Control>>>,
}

impl Shards {
    /// Makes the calling thread a shard: its isolates, and a local task that carries out
    /// control work. Must be called within a `tokio::task::LocalSet`.
    pub(crate) fn attach(&self, shared: Arc<Shared>) -> ShardPlugins {
        let (sender, mut control) = mpsc::unbounded_channel();
        let worker = Rc::new(Worker {
            host: Rc::new(shared.host.clone()),
            shared,
            isolates: RefCell::default(),
            creating: RefCell::default(),
        });
        let serving = worker.clone();
        tokio::task::spawn_local(async move {
            while let Some(job) = control.recv().await {
                match job {
                    Control::Unload { version, code } => {
                        serving.creating.borrow_mut().remove(&version);
                        let retired = serving.isolates.borrow_mut().remove(&version);
                        if let Some(isolate) = retired.filter(|isolate| isolate.is_usable()) {
                            tokio::task::spawn_local(async move {
                                if let Err(why) =
                                    run_lifecycle(&isolate, Hook::OnUnload, &code).await
                                {
                                    tracing::warn!(plugin = %code.plugin, "{why}");
                                }
                            });
                        }
                    }
                    Control::Load {
                        version,
                        code,
                        reply,
                    } => {
                        let worker = serving.clone();
                        tokio::task::spawn_local(async move {
                            let loaded =
                                worker.isolate(version, &code).await.map(|isolate| Hooks {
                                    before_request: isolate.has_hook(Hook::BeforeRequest),
                                    after_response: isolate.has_hook(Hook::AfterResponse),
                                });
                            let _ = reply.send(loaded);
                        });
                    }
                }
            }
        });
        self.lock().push(sender);
        ShardPlugins { worker }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Control>>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads a version on every shard (module evaluated, `onLoad` run): its hooks, or the
    /// first error. Shards that have ended are left out.
    pub(crate) async fn load(&self, version: u64, code: &Arc<PluginCode>) -> Result<Hooks, String> {
        let replies: Vec<_> = {
            let mut channels = self.lock();
            channels.retain(|channel| !channel.is_closed());
            channels
                .iter()
                .filter_map(|channel| {
                    let (reply, answer) = oneshot::channel();
                    let job = Control::Load {
                        version,
                        code: code.clone(),
                        reply,
                    };
                    channel.send(job).is_ok().then_some(answer)
                })
                .collect()
        };
        if replies.is_empty() {
            return Err("no proxy shard is running to load the plugin".into());
        }
        let mut hooks = Hooks::default();
        for answer in replies {
            hooks = answer
                .await
                .unwrap_or_else(|_| Err("the shard stopped while loading".into()))?;
        }
        Ok(hooks)
    }

    /// Drops a version from every shard, after its `onUnload` there (the calls in flight
    /// finish on the isolates they hold).
    pub(crate) fn unload(&self, version: u64, code: &Arc<PluginCode>) {
        for channel in self.lock().iter() {
            let _ = channel.send(Control::Unload {
                version,
                code: code.clone(),
            });
        }
    }
}

/// The plugins of one shard: run a request's hooks on the calling thread. Not `Send`:
/// made by [`crate::PluginRuntime::attach`] on the shard that uses it.
#[derive(Clone)]
pub struct ShardPlugins {
    worker: Rc<Worker>,
}

impl std::fmt::Debug for ShardPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardPlugins").finish_non_exhaustive()
    }
}

impl ShardPlugins {
    /// Runs the chain's `beforeRequest` hooks in order. Keep the [`Carry`] for
    /// [`ShardPlugins::after_response`], whatever the outcome.
    pub async fn before_request(
        &self,
        chain: &Arc<Chain>,
        request: RequestInfo,
    ) -> (BeforeRequest, Carry) {
        let request = Arc::new(RequestScope::new(request));
        if !chain
            .links
            .iter()
            .any(|link| link.runs(Hook::BeforeRequest))
        {
            let mut carry = Carry::empty(request);
            carry.ran = (0..chain.links.len()).collect();
            return (BeforeRequest::Continue(RequestPatch::default()), carry);
        }
        phases::before(&self.worker, chain, request).await
    }

    /// Runs `afterResponse` of the plugins that took part in `beforeRequest` (see
    /// [`Carry`]), in chain order, on the response about to be sent.
    pub async fn after_response(
        &self,
        chain: &Arc<Chain>,
        carry: Carry,
        response: ResponseInfo,
    ) -> AfterResponse {
        if !carry.after_response_runs(chain) {
            return AfterResponse::Continue(ResponsePatch::default());
        }
        phases::after(&self.worker, chain, carry, response).await
    }
}

impl Carry {
    fn empty(request: Arc<RequestScope>) -> Self {
        Self {
            request,
            state: None,
            user: None,
            ran: Vec::new(),
        }
    }
}

/// One shard's isolates.
pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    /// The shared host services, as this shard's isolates call them.
    host: Rc<dyn HostOps>,
    isolates: RefCell<HashMap<u64, Rc<dyn Isolate>, foldhash::fast::RandomState>>,
    /// Isolates being made (module evaluated, `onLoad` running), so the requests that
    /// find a version without a usable isolate share one creation instead of each
    /// making its own.
    creating: RefCell<HashMap<u64, Creation, foldhash::fast::RandomState>>,
}

/// The making of an isolate, awaited by every request that needs it.
type Creation = future::Shared<LocalBoxFuture<'static, Result<Rc<dyn Isolate>, String>>>;

impl Worker {
    /// The usable isolate of a version on this shard, created (and `onLoad` run) when
    /// there is none yet or the last one was interrupted or ran out of memory.
    pub(crate) async fn isolate(
        &self,
        version: u64,
        code: &Arc<PluginCode>,
    ) -> Result<Rc<dyn Isolate>, String> {
        let existing = self.isolates.borrow().get(&version).cloned();
        if let Some(isolate) = &existing
            && isolate.is_usable()
        {
            return Ok(isolate.clone());
        }
        let pending = self.creating.borrow().get(&version).cloned();
        let creation = pending.unwrap_or_else(|| {
            let creation = self
                .shared
                .engine
                .instantiate(code, self.host.clone())
                .shared();
            self.creating.borrow_mut().insert(version, creation.clone());
            creation
        });
        let created = creation.clone().await;
        // The first waiter to resume files the isolate; the others find it done.
        let first = self
            .creating
            .borrow()
            .get(&version)
            .is_some_and(|pending| future::Shared::ptr_eq(pending, &creation));
        if first {
            self.creating.borrow_mut().remove(&version);
            if let Ok(isolate) = &created {
                if existing.is_some() {
                    self.shared.metrics.isolate_replaced(&code.plugin);
                    tracing::warn!(plugin = %code.plugin, "replaced an isolate that was interrupted or ran out of memory");
                }
                self.isolates.borrow_mut().insert(version, isolate.clone());
            }
        }
        created
    }

    /// The usable isolate of a version, if this shard has one: the usual case, found
    /// without making a future.
    pub(crate) fn ready_isolate(&self, version: &PluginVersion) -> Option<Rc<dyn Isolate>> {
        self.isolates
            .borrow()
            .get(&version.id)
            .filter(|isolate| isolate.is_usable())
            .cloned()
    }

    /// The isolate for a chain link's version (see [`Worker::isolate`]).
    pub(crate) async fn isolate_for(
        &self,
        version: &PluginVersion,
    ) -> Result<Rc<dyn Isolate>, String> {
        self.isolate(version.id, &version.code).await
    }
}

//! The isolate pool: a fixed number of isolate threads, each owning its isolates and
//! running a single-threaded executor, so a hook awaiting a host service never blocks the
//! thread and never blocks the proxy's tokio runtime. Requests reach a thread over a
//! channel, round robin.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, HostOps, Isolate, PluginCode};
use crate::metrics::Metrics;
use crate::outcome::{AfterResponse, BeforeRequest, Carry, Hook};
use crate::phases;
use crate::plugin_set::{Chain, Hooks, PluginVersion};
use crate::request::{RequestScope, ResponseInfo};

/// Native stack of an isolate thread; QuickJS itself is held to less.
const ISOLATE_THREAD_STACK: usize = 8 * 1024 * 1024;

/// Work for an isolate thread.
pub(crate) enum Job {
    Load {
        version: u64,
        code: Arc<PluginCode>,
        reply: oneshot::Sender<Result<Hooks, String>>,
    },
    Unload {
        version: u64,
    },
    Before {
        chain: Arc<Chain>,
        request: Arc<RequestScope>,
        reply: oneshot::Sender<(BeforeRequest, Carry)>,
    },
    After {
        chain: Arc<Chain>,
        carry: Carry,
        response: ResponseInfo,
        reply: oneshot::Sender<AfterResponse>,
    },
}

/// Handles to the isolate threads.
#[derive(Debug)]
pub(crate) struct Pool {
    threads: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

/// What every isolate thread shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) host: Arc<dyn HostOps>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) forward_allow_list: Vec<String>,
}

impl Pool {
    /// Starts `threads` isolate threads.
    pub(crate) fn start(threads: usize, shared: Arc<Shared>) -> std::io::Result<Self> {
        let mut senders = Vec::with_capacity(threads);
        for index in 0..threads.max(1) {
            let (sender, receiver) = mpsc::unbounded_channel();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("weir-isolate-{index}"))
                .stack_size(ISOLATE_THREAD_STACK)
                .spawn(move || run_thread(receiver, shared))?;
            senders.push(sender);
        }
        Ok(Self {
            threads: senders,
            next: AtomicUsize::new(0),
        })
    }

    /// Sends a job to the next thread; `false` if that thread is gone.
    pub(crate) fn dispatch(&self, job: Job) -> bool {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.threads[index].send(job).is_ok()
    }

    /// Loads a version in every thread: its hooks, or the first error.
    pub(crate) async fn load(&self, version: u64, code: &Arc<PluginCode>) -> Result<Hooks, String> {
        let mut replies = Vec::with_capacity(self.threads.len());
        for thread in &self.threads {
            let (reply, answer) = oneshot::channel();
            let job = Job::Load {
                version,
                code: code.clone(),
                reply,
            };
            if thread.send(job).is_ok() {
                replies.push(answer);
            }
        }
        let mut hooks = Hooks::default();
        for answer in replies {
            hooks = answer
                .await
                .unwrap_or_else(|_| Err("the isolate thread stopped".into()))?;
        }
        Ok(hooks)
    }

    /// Drops a version from every thread.
    pub(crate) fn unload(&self, version: u64) {
        for thread in &self.threads {
            let _ = thread.send(Job::Unload { version });
        }
    }
}

fn run_thread(mut jobs: mpsc::UnboundedReceiver<Job>, shared: Arc<Shared>) {
    let executor = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(executor) => executor,
        Err(error) => {
            tracing::error!(%error, "an isolate thread could not start its executor");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let worker = Rc::new(Worker {
        shared,
        isolates: RefCell::new(HashMap::new()),
    });
    local.block_on(&executor, async move {
        while let Some(job) = jobs.recv().await {
            let worker = worker.clone();
            match job {
                Job::Unload { version } => {
                    worker.isolates.borrow_mut().remove(&version);
                }
                Job::Load {
                    version,
                    code,
                    reply,
                } => {
                    tokio::task::spawn_local(async move {
                        let loaded = worker.isolate(version, &code).await.map(|isolate| Hooks {
                            before_request: isolate.has_hook(Hook::BeforeRequest),
                            after_response: isolate.has_hook(Hook::AfterResponse),
                        });
                        let _ = reply.send(loaded);
                    });
                }
                Job::Before {
                    chain,
                    request,
                    reply,
                } => {
                    tokio::task::spawn_local(async move {
                        let _ = reply.send(phases::before(&worker, &chain, request).await);
                    });
                }
                Job::After {
                    chain,
                    carry,
                    response,
                    reply,
                } => {
                    tokio::task::spawn_local(async move {
                        let _ = reply.send(phases::after(&worker, &chain, carry, response).await);
                    });
                }
            }
        }
    });
}

/// One isolate thread's state.
pub(crate) struct Worker {
    pub(crate) shared: Arc<Shared>,
    isolates: RefCell<HashMap<u64, Rc<dyn Isolate>>>,
}

impl Worker {
    /// The usable isolate of a version on this thread, created (and `onLoad` run) when
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
        let created = self
            .shared
            .engine
            .instantiate(code, self.shared.host.clone())
            .await?;
        if existing.is_some() {
            self.shared.metrics.isolate_replaced(&code.plugin);
            tracing::warn!(plugin = %code.plugin, "replaced an isolate that was interrupted or ran out of memory");
        }
        self.isolates.borrow_mut().insert(version, created.clone());
        Ok(created)
    }

    /// The isolate for a chain link's version (see [`Worker::isolate`]).
    pub(crate) async fn isolate_for(
        &self,
        version: &PluginVersion,
    ) -> Result<Rc<dyn Isolate>, String> {
        self.isolate(version.id, &version.code).await
    }
}

//! Building snapshots: the compiler run on what the stores hold, with the previous
//! snapshot (for last good plugin bundles), version numbering above every version a
//! proxy has seen, and since which snapshot each object is served as it is now.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use weir_crds::Snapshot;
use weir_crds::compile::gateway_api::GatewayApiFacts;
use weir_crds::compile::report::{ObjectRef, ObjectReport};
use weir_crds::programmed::ServedSince;

use crate::world::World;

/// One build. The snapshot itself stays in the [`Builder`] ([`Builder::current`]): it is
/// the biggest thing the operator holds, and is never copied.
#[derive(Clone, Debug)]
pub struct Build {
    /// The snapshot's version.
    pub version: u64,
    /// The report on each object.
    pub reports: Vec<ObjectReport>,
    /// What Gateway API status needs besides the reports: listeners and parents.
    pub gateway_api: GatewayApiFacts,
    /// How long compiling took.
    pub duration: Duration,
    /// Whether the snapshot differs from the previous one.
    pub changed: bool,
}

/// Builds snapshots, remembering the last one.
#[derive(Debug, Default)]
pub struct Builder {
    options: weir_crds::Options,
    previous: Option<Snapshot>,
    floor: u64,
    served: ServedSince,
}

impl Builder {
    /// A builder compiling with `options` (the gateway class, URL backends).
    pub fn new(options: weir_crds::Options) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// The last snapshot built.
    pub fn current(&self) -> Option<&Snapshot> {
        self.previous.as_ref()
    }

    /// Makes every snapshot from now on numbered above `version` (a version some proxy
    /// serves). Renumbers the current snapshot when it is not above; returns whether it did.
    pub fn number_above(&mut self, version: u64) -> bool {
        self.floor = self.floor.max(version);
        match &mut self.previous {
            Some(snapshot) if snapshot.version <= self.floor => {
                let from = snapshot.version;
                snapshot.version = self.floor + 1;
                self.served.renumbered(from, snapshot.version);
                true
            }
            _ => false,
        }
    }

    /// Since which snapshot `object` is served as it is now (the current version for an
    /// object the last build did not report).
    pub fn served_since(&self, object: &ObjectRef) -> u64 {
        self.served
            .get(object)
            .or_else(|| self.current().map(|s| s.version))
            .unwrap_or_default()
    }

    /// Compiles `world`.
    pub fn build(&mut self, world: &World) -> Build {
        let started = Instant::now();
        // The compiler reads of the previous snapshot only its version, hash and plugin
        // bundles (the last good ones); the rest, most of it, goes before compiling, so
        // two whole snapshots are never held at once (tens of MiB each at 10,000 Routes).
        let previous = self.previous.take().map(|mut previous| {
            previous.virtual_hosts = Vec::new();
            previous.rules.clear();
            previous.backends.clear();
            previous.certificates = Vec::new();
            previous
        });
        let compilation = weir_crds::compile(&world.inputs(previous.as_ref(), &self.options));
        let duration = started.elapsed();
        let mut snapshot = compilation.snapshot;
        let changed = previous.as_ref().is_none_or(|p| p.hash != snapshot.hash);
        if changed && snapshot.version <= self.floor {
            snapshot.version = self.floor + 1;
        }
        let version = snapshot.version;
        self.served.record(&snapshot, &compilation.reports);
        self.previous = Some(snapshot);
        Build {
            version,
            reports: compilation.reports,
            gateway_api: compilation.gateway_api,
            duration,
            changed,
        }
    }
}

/// The thread builds run on. A build at 10,000 Routes allocates tens of MiB, and the
/// snapshot it makes (a third of that) lives until the next one. Run on the runtime's
/// worker threads, each build drew on the allocator heap of whichever worker ran it, and
/// the operator's resident memory followed every heap's high-water mark; on one thread
/// each build reuses the memory the last one gave back. It also keeps a build (half a
/// second at 10,000 Routes) off the workers that run the watches and the status writes.
pub struct BuildThread {
    jobs: mpsc::Sender<Job>,
}

/// One build for the thread: the builder goes there with the world and comes back.
struct Job {
    builder: Builder,
    world: World,
    done: oneshot::Sender<(Builder, Build)>,
}

impl BuildThread {
    /// Starts the thread; it ends when this is dropped.
    pub fn spawn() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let run = move || {
            for mut job in queue {
                let build = job.builder.build(&job.world);
                drop(job.world);
                let _ = job.done.send((job.builder, build));
            }
        };
        // As `std::thread::spawn`, this panics only when the system cannot make a thread.
        std::thread::Builder::new()
            .name("weir-build".into())
            .spawn(run)
            .expect("the operator cannot start its build thread");
        Self { jobs }
    }

    /// Compiles `world` with `builder` on the build thread; gives the builder back with
    /// the build.
    pub async fn build(&self, builder: Builder, world: World) -> (Builder, Build) {
        let (done, built) = oneshot::channel();
        let job = Job {
            builder,
            world,
            done,
        };
        // The thread ends only when this is dropped, or when a build panicked: the
        // compiler's bug, which ends the reconciler too, as a build on its own task did.
        self.jobs
            .send(job)
            .expect("the build thread has stopped: a build panicked");
        built
            .await
            .expect("the build thread has stopped: a build panicked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn route(name: &str, body: &str) -> Arc<crate::stored_route::StoredRoute> {
        let route: weir_crds::Route = serde_json::from_value(serde_json::json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": name, "namespace": "shop", "generation": 1},
                "spec": {"hosts": [format!("{name}.example.com")], "rules": [{"directResponse": {"status": 200, "body": body}}]}
            }))
            .unwrap();
        Arc::new(route.into())
    }

    #[test]
    fn versions_rise_above_the_proxies_and_stay_when_nothing_changed() {
        let mut builder = Builder::default();
        builder.number_above(41);
        let mut world = World::default();
        world.routes.push(route("a", "one"));
        let first = builder.build(&world);
        assert_eq!(first.version, 42);
        assert!(first.changed);
        let again = builder.build(&world);
        assert_eq!(again.version, 42);
        assert!(!again.changed);
        world.routes[0] = route("a", "two");
        assert_eq!(builder.build(&world).version, 43);
        assert!(builder.number_above(50));
        assert_eq!(builder.current().unwrap().version, 51);
        let a = ObjectRef::namespaced(weir_crds::compile::report::ObjectKind::Route, "shop/a");
        assert_eq!(builder.served_since(&a), 51);
        world.routes.push(route("b", "three"));
        assert_eq!(builder.build(&world).version, 52);
        assert_eq!(builder.served_since(&a), 51);
    }

    #[tokio::test]
    async fn the_build_thread_gives_the_builder_back_with_what_it_built() {
        let thread = BuildThread::spawn();
        let mut builder = Builder::default();
        builder.number_above(9);
        let world = World {
            routes: vec![route("a", "one")],
            ..World::default()
        };
        let (builder, first) = thread.build(builder, world.clone()).await;
        assert_eq!((first.version, first.changed), (10, true));
        assert_eq!(first.reports.len(), 1);
        // The builder came back with its snapshot and numbering: the same world again
        // is the same snapshot, a changed one the next version.
        let (builder, again) = thread.build(builder, world).await;
        assert_eq!((again.version, again.changed), (10, false));
        let changed = World {
            routes: vec![route("a", "two")],
            ..World::default()
        };
        let (builder, next) = thread.build(builder, changed).await;
        assert_eq!(next.version, 11);
        assert_eq!(builder.current().unwrap().version, 11);
    }
}

//! Hot reload: new versions load beside old ones, requests in flight finish on the version
//! they started with, unchanged code is not reloaded, and nothing fails meanwhile.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use serde_json::json;
use weir_crds::snapshot::PluginBundle;

fn version(n: usize) -> PluginBundle {
    let mut plugin = bundle(
        "shop/versioned",
        &format!(
            r#"export default {{
                async onLoad(ctx) {{ await ctx.services.cache.incr("loads"); }},
                async beforeRequest(ctx) {{
                    const loads = await ctx.services.cache.get("loads");
                    ctx.upstream.headers.set("x-version", "{n}");
                    ctx.upstream.headers.set("x-loads", String(loads));
                }},
            }};"#
        ),
    );
    plugin.timeout_ms = 5_000;
    plugin
}

#[test]
fn reloading_under_continuous_load_fails_no_request() {
    on_shard(async {
        let runtime = runtime();
        let current = Arc::new(arc_swap_like::Current::new(chain(
            &load(&runtime, vec![version(0)]).await,
            &[("shop/versioned", json!({}))],
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (runtime, current, stop, served) = (
                    runtime.clone(),
                    current.clone(),
                    stop.clone(),
                    served.clone(),
                );
                tokio::task::spawn_local(async move {
                    let mut versions_seen = std::collections::BTreeSet::new();
                    while !stop.load(Ordering::Relaxed) {
                        let chain = current.get();
                        let patch =
                            expect_continue(runtime.before_request(&chain, request("/")).await.0);
                        versions_seen.insert(patch.headers.set["x-version"][0].clone());
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    versions_seen
                })
            })
            .collect();
        for n in 1..=10 {
            let loaded = load(&runtime, vec![version(n)]).await;
            assert!(loaded.failures.is_empty());
            current.set(chain(&loaded, &[("shop/versioned", json!({}))]));
            tokio::task::yield_now().await;
        }
        // Let every client finish requests on the last version.
        let before = served.load(Ordering::Relaxed);
        while served.load(Ordering::Relaxed) < before + 50 {
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut seen = std::collections::BTreeSet::new();
        for client in clients {
            seen.extend(client.await.expect("no client saw a failed request"));
        }
        assert!(seen.contains("10"), "{seen:?}");
        assert!(seen.len() > 1, "requests ran on several versions: {seen:?}");
    });
}

#[test]
fn a_request_in_flight_finishes_on_its_version_and_unchanged_code_is_not_reloaded() {
    on_shard(async {
        let runtime = runtime_with(weir_plugin_runtime::RuntimeConfig {
            ..Default::default()
        })
        .0;
        let mut slow = bundle(
            "shop/slow",
            r#"export default { async beforeRequest(ctx) {
            // Waits until the test has loaded the next version.
            while ((await ctx.services.cache.get("go")) !== true) {}
            ctx.upstream.headers.set("x-version", "old");
        } };"#,
        );
        slow.timeout_ms = 5_000;
        let old = load(&runtime, vec![slow, version(1)]).await;
        let old_chain = chain(&old, &[("shop/slow", json!({}))]);
        let in_flight = tokio::task::spawn_local({
            let runtime = runtime.clone();
            async move { runtime.before_request(&old_chain, request("/")).await.0 }
        });

        let mut new = bundle(
            "shop/slow",
            r#"export default { async beforeRequest(ctx) {
            await ctx.services.cache.set("go", true);
            ctx.upstream.headers.set("x-version", "new");
        } };"#,
        );
        new.timeout_ms = 5_000;
        let reloaded = load(&runtime, vec![new, version(1)]).await;
        let patch = expect_continue(
            runtime
                .before_request(&chain(&reloaded, &[("shop/slow", json!({}))]), request("/"))
                .await
                .0,
        );
        assert_eq!(patch.headers.set["x-version"], ["new"]);
        let patch = expect_continue(in_flight.await.unwrap());
        assert_eq!(patch.headers.set["x-version"], ["old"]);

        // shop/versioned kept its code: it was not loaded again (one thread, one onLoad).
        let patch = expect_continue(
            runtime
                .before_request(
                    &chain(&reloaded, &[("shop/versioned", json!({}))]),
                    request("/"),
                )
                .await
                .0,
        );
        assert_eq!(patch.headers.set["x-loads"], ["1"]);
    });
}

/// The proxy swaps chains with `arc-swap`; a mutex stands in for it here.
mod arc_swap_like {
    use std::sync::{Arc, Mutex};

    use weir_plugin_runtime::Chain;

    pub struct Current(Mutex<Arc<Chain>>);

    impl Current {
        pub fn new(chain: Arc<Chain>) -> Self {
            Self(Mutex::new(chain))
        }
        pub fn get(&self) -> Arc<Chain> {
            self.0.lock().unwrap().clone()
        }
        pub fn set(&self, chain: Arc<Chain>) {
            *self.0.lock().unwrap() = chain;
        }
    }
}

#[test]
fn a_retired_version_runs_its_on_unload_with_its_own_config() {
    on_shard(async {
        let runtime = runtime();
        let keeper = |n: usize| {
            let mut plugin = bundle(
                "shop/keeper",
                &format!(
                    r#"export default {{
                        async onUnload(ctx) {{
                            await ctx.services.cache.set("unloaded", {{ version: {n}, tag: ctx.config.tag }});
                        }},
                        async beforeRequest(ctx) {{
                            ctx.upstream.headers.set("x-unloaded", JSON.stringify(await ctx.services.cache.get("unloaded")));
                        }},
                    }};"#
                ),
            );
            plugin.config = json!({"tag": format!("v{n}")});
            plugin.timeout_ms = 5_000;
            plugin
        };
        let first = load(&runtime, vec![keeper(1)]).await;
        let chain_one = chain(&first, &[("shop/keeper", json!({}))]);
        let patch = expect_continue(runtime.before_request(&chain_one, request("/")).await.0);
        assert_eq!(patch.headers.set["x-unloaded"], ["null"]);
        drop((first, chain_one));

        // Loading version 2 retires version 1: its onUnload runs on the shard.
        let second = load(&runtime, vec![keeper(2)]).await;
        let chain_two = chain(&second, &[("shop/keeper", json!({}))]);
        let mut unloaded = serde_json::Value::Null;
        for _ in 0..1_000 {
            let patch = expect_continue(runtime.before_request(&chain_two, request("/")).await.0);
            unloaded = serde_json::from_str(&patch.headers.set["x-unloaded"][0]).unwrap();
            if !unloaded.is_null() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(unloaded, json!({"version": 1, "tag": "v1"}));
    });
}

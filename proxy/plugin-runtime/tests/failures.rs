//! Every failure path: budgets, memory, exceptions, onError, failure policies, load errors.

mod common;

use common::*;
use serde_json::json;
use weir_crds::plugin::FailurePolicy;
use weir_plugin_runtime::{BeforeRequest, FailureKind, PluginFailure};

fn expect_failed(outcome: BeforeRequest) -> PluginFailure {
    match outcome {
        BeforeRequest::Failed(failure) => failure,
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A plugin that misbehaves on `/bad` and sets a header otherwise, so the same isolate
/// (or its replacement) is seen to keep serving.
fn flaky(id: &str, misbehaviour: &str) -> weir_crds::snapshot::PluginBundle {
    bundle(
        id,
        &format!(
            r#"let calls = 0;
            export default {{ async beforeRequest(ctx) {{
                calls += 1;
                if (ctx.request.path === "/bad") {{ {misbehaviour} }}
                ctx.upstream.headers.set("x-calls", String(calls));
            }} }};"#
        ),
    )
}

#[test]
fn an_infinite_loop_is_interrupted_and_the_isolate_replaced() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(&runtime, vec![flaky("shop/loop", "while (true) {}")]).await;
        let chain = chain(&loaded, &[("shop/loop", json!({}))]);
        let started = std::time::Instant::now();
        let failure = expect_failed(runtime.before_request(&chain, request("/bad")).await.0);
        assert_eq!(failure.kind, FailureKind::Timeout);
        assert_eq!(failure.plugin, "shop/loop");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        // Both threads keep serving; the interrupted isolate was replaced (module state reset).
        for _ in 0..4 {
            let patch = expect_continue(runtime.before_request(&chain, request("/good")).await.0);
            assert!(patch.headers.set.contains_key("x-calls"));
        }
    });
}

#[test]
fn a_loop_after_an_await_is_interrupted_too() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![flaky(
                "shop/late-loop",
                r#"await ctx.services.cache.get("x"); for (;;) {}"#,
            )],
        )
        .await;
        let chain = chain(&loaded, &[("shop/late-loop", json!({}))]);
        let failure = expect_failed(runtime.before_request(&chain, request("/bad")).await.0);
        assert_eq!(failure.kind, FailureKind::Timeout);
        expect_continue(runtime.before_request(&chain, request("/good")).await.0);
    });
}

#[test]
fn a_memory_bomb_hits_the_isolate_limit() {
    on_shard(async {
        let runtime = runtime();
        let mut bomb = flaky(
            "shop/bomb",
            r#"const hoard = []; for (;;) hoard.push(new Array(100000).fill(Math.random()));"#,
        );
        bomb.memory_limit_mib = 8;
        bomb.timeout_ms = 5_000;
        let loaded = load(&runtime, vec![bomb]).await;
        let chain = chain(&loaded, &[("shop/bomb", json!({}))]);
        let failure = expect_failed(runtime.before_request(&chain, request("/bad")).await.0);
        assert_eq!(failure.kind, FailureKind::Memory, "{failure}");
        for _ in 0..4 {
            expect_continue(runtime.before_request(&chain, request("/good")).await.0);
        }
    });
}

#[test]
fn a_throw_fails_closed_with_a_503_body_naming_the_plugin() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![flaky(
                "shop/throw",
                r#"throw new TypeError("token=secret")"#,
            )],
        )
        .await;
        let chain = chain(&loaded, &[("shop/throw", json!({}))]);
        let failure = expect_failed(runtime.before_request(&chain, request("/bad")).await.0);
        assert_eq!(failure.kind, FailureKind::Exception);
        assert_eq!(failure.detail, "TypeError: token=secret");
        assert_eq!(PluginFailure::STATUS, 503);
        assert!(failure.response_body().contains("shop/throw"));
        assert!(!failure.response_body().contains("secret"));
    });
}

#[test]
fn failure_policy_open_skips_the_plugin() {
    on_shard(async {
        let runtime = runtime();
        let mut open = flaky("shop/open", r#"throw new Error("broken")"#);
        open.failure_policy = FailurePolicy::Open;
        let mut slow = flaky("shop/slow", "for (;;) {}");
        slow.failure_policy = FailurePolicy::Open;
        slow.timeout_ms = 20;
        let after = bundle(
            "shop/after",
            r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-after", "ran"); } };"#,
        );
        let loaded = load(&runtime, vec![open, slow, after]).await;
        let chain = chain(
            &loaded,
            &[
                ("shop/open", json!({})),
                ("shop/slow", json!({})),
                ("shop/after", json!({})),
            ],
        );
        let patch = expect_continue(runtime.before_request(&chain, request("/bad")).await.0);
        assert_eq!(patch.headers.set["x-after"], ["ran"]);
        assert!(!patch.headers.set.contains_key("x-calls"));
    });
}

#[test]
fn on_error_sees_the_error_and_may_answer() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![
                bundle(
                    "shop/handled",
                    r#"export default {
                    beforeRequest(ctx) { JSON.parse("{not json"); },
                    async onError(ctx, error) {
                        await ctx.services.cache.incr("errors");
                        ctx.reject(400, { error: "bad_request", detail: error.name });
                    },
                };"#,
                ),
                bundle(
                    "shop/double",
                    r#"export default {
                    beforeRequest(ctx) { throw new Error("first"); },
                    onError(ctx, error) { throw new Error("second after " + error.message); },
                };"#,
                ),
                bundle(
                    "shop/logs-only",
                    r#"export default {
                    beforeRequest(ctx) { throw new Error("oops"); },
                    onError(ctx, error) { ctx.log.error("failed", { message: error.message }); },
                };"#,
                ),
            ],
        )
        .await;

        let handled = chain(&loaded, &[("shop/handled", json!({}))]);
        let BeforeRequest::Respond(response) =
            runtime.before_request(&handled, request("/")).await.0
        else {
            panic!("onError's answer is used")
        };
        assert_eq!(response.status, 400);
        assert_eq!(
            response.body,
            r#"{"error":"bad_request","detail":"SyntaxError"}"#
        );

        let double = chain(&loaded, &[("shop/double", json!({}))]);
        let failure = expect_failed(runtime.before_request(&double, request("/")).await.0);
        assert_eq!(failure.kind, FailureKind::Exception);
        assert!(
            failure.detail.contains("first") && failure.detail.contains("second after first"),
            "{failure}"
        );

        let logs_only = chain(&loaded, &[("shop/logs-only", json!({}))]);
        let failure = expect_failed(runtime.before_request(&logs_only, request("/")).await.0);
        assert_eq!(failure.detail, "Error: oops");
    });
}

#[test]
fn an_unknown_plugin_fails_closed() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(&runtime, vec![]).await;
        let chain = chain(&loaded, &[("shop/ghost", json!({}))]);
        let failure = expect_failed(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(failure.kind, FailureKind::NotLoaded);
    });
}

#[test]
fn invalid_headers_from_a_plugin_fail_the_hook_with_a_clear_message() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![
            bundle("shop/name", r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("bad name", "x"); } };"#),
            bundle("shop/value", r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-v", "a\r\nb"); } };"#),
        ],
    )
    .await;
        let failure = expect_failed(
            runtime
                .before_request(&chain(&loaded, &[("shop/name", json!({}))]), request("/"))
                .await
                .0,
        );
        assert_eq!(
            failure.detail,
            r#"TypeError: invalid header name "bad name""#
        );
        let failure = expect_failed(
            runtime
                .before_request(&chain(&loaded, &[("shop/value", json!({}))]), request("/"))
                .await
                .0,
        );
        assert!(failure.detail.contains("x-v"), "{failure}");
    });
}

#[test]
fn load_failures_are_reported_and_keep_the_previous_version() {
    on_shard(async {
        let runtime = runtime();
        let good = bundle(
            "shop/p",
            r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-v", "1"); } };"#,
        );
        let loaded = load(&runtime, vec![good]).await;
        assert!(loaded.failures.is_empty());

        let cases = [
            (raw_bundle("shop/p", "export default {"), "SyntaxError"),
            (
                bundle(
                    "shop/p",
                    r#"export default { onLoad(ctx) { throw new Error("no key in " + JSON.stringify(ctx.config)); } };"#,
                ),
                "onLoad threw: Error: no key in {}",
            ),
            (
                bundle("shop/p", r#"export default { onLoad() { for (;;) {} } };"#),
                "onLoad failed (timeout)",
            ),
            (
                raw_bundle("shop/p", "export default 42;"),
                "default export is not an object",
            ),
            (
                raw_bundle("shop/p", "for (;;) {} export default {};"),
                "took longer than",
            ),
        ];
        for (mut bad, message) in cases {
            // Loads get ten hook budgets, at least a second.
            bad.timeout_ms = 50;
            let reloaded = load(&runtime, vec![bad]).await;
            assert_eq!(reloaded.failures.len(), 1);
            let failure = &reloaded.failures[0];
            assert!(
                failure.message.contains(message),
                "{} does not contain {message}",
                failure.message
            );
            assert!(failure.kept_previous);
            assert_eq!(
                (failure.namespace.as_str(), failure.name.as_str()),
                ("shop", "p")
            );
            let chain = chain(&reloaded, &[("shop/p", json!({}))]);
            let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
            assert_eq!(
                patch.headers.set["x-v"],
                ["1"],
                "the last good version serves"
            );
        }

        let fresh = common::runtime();
        let loaded = load(&fresh, vec![raw_bundle("shop/new", "export default {")]).await;
        assert!(!loaded.failures[0].kept_previous);
        let failure = expect_failed(
            fresh
                .before_request(&chain(&loaded, &[("shop/new", json!({}))]), request("/"))
                .await
                .0,
        );
        assert_eq!(failure.kind, FailureKind::NotLoaded);
    });
}

#[test]
fn a_hook_that_never_settles_times_out_without_blocking_the_thread() {
    on_shard(async {
        let runtime = runtime_with(weir_plugin_runtime::RuntimeConfig {
            ..Default::default()
        })
        .0;
        let mut stuck = bundle(
            "shop/stuck",
            r#"export default { beforeRequest(ctx) { return new Promise(() => {}); } };"#,
        );
        stuck.timeout_ms = 300;
        let quick = bundle(
            "shop/quick",
            r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-q", "1"); } };"#,
        );
        let loaded = load(&runtime, vec![stuck, quick]).await;
        let stuck_chain = chain(&loaded, &[("shop/stuck", json!({}))]);
        let quick_chain = chain(&loaded, &[("shop/quick", json!({}))]);
        let stuck_call = tokio::task::spawn_local({
            let runtime = runtime.clone();
            async move { runtime.before_request(&stuck_chain, request("/")).await.0 }
        });
        // The single isolate thread serves other requests while the stuck one waits.
        for _ in 0..20 {
            expect_continue(runtime.before_request(&quick_chain, request("/")).await.0);
        }
        let failure = expect_failed(stuck_call.await.unwrap());
        assert_eq!(failure.kind, FailureKind::Timeout);
    });
}

#[test]
fn the_cpu_budget_bounds_each_run_of_javascript_not_the_whole_hook() {
    on_shard(async {
        let (runtime, _) = runtime_with(weir_plugin_runtime::RuntimeConfig {
            cpu_budget_ms: 200,
            max_timeout_ms: 60_000,
            ..weir_plugin_runtime::RuntimeConfig::default()
        });
        let mut looping = bundle(
            "shop/spin",
            r#"const spin = (ms) => { const end = Date.now() + ms; while (Date.now() < end) {} };
            export default { async beforeRequest(ctx) {
                if (ctx.request.path === "/forever") { for (;;) {} }
                // 30 runs of 10 ms: 300 ms of JavaScript in all, none longer than 10 ms.
                for (let i = 0; i < 30; i++) { spin(10); await ctx.services.cache.get("k"); }
                ctx.upstream.headers.set("x-spun", "30");
            } };"#,
        );
        // A wall-clock budget far above both, so only the CPU budget can interrupt.
        looping.timeout_ms = 60_000;
        let loaded = load(&runtime, vec![looping]).await;
        let chain = chain(&loaded, &[("shop/spin", json!({}))]);

        // A loop is interrupted by the CPU budget, long before the hook's timeoutMs.
        let started = std::time::Instant::now();
        let failure = expect_failed(runtime.before_request(&chain, request("/forever")).await.0);
        assert_eq!(failure.kind, FailureKind::Timeout);
        assert!(failure.detail.contains("CPU budget"), "{}", failure.detail);
        assert!(started.elapsed() < std::time::Duration::from_secs(30));

        // Many short runs separated by awaits add up to more than the budget and are fine.
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(patch.headers.set["x-spun"], ["30"]);
    });
}

/// A tenant's plugin cannot ask for more time or memory than the proxy allows, and a
/// module that never finishes evaluating stalls its shard for the proxy's load maximum at
/// most, whatever its own `timeoutMs` says.
#[test]
fn plugins_are_held_to_the_proxy_wide_maxima() {
    on_shard(async {
        let (runtime, _registry) = runtime_with(weir_plugin_runtime::RuntimeConfig {
            max_timeout_ms: 1_000,
            max_memory_limit_mib: 32,
            max_load_ms: 1_000,
            ..Default::default()
        });
        let good = bundle(
            "shop/p",
            r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-v", "1"); } };"#,
        );
        assert!(load(&runtime, vec![good.clone()]).await.failures.is_empty());

        let mut slow = good.clone();
        slow.timeout_ms = 1_001;
        let mut big = good.clone();
        big.memory_limit_mib = 33;
        let mut stuck = raw_bundle("shop/p", "for (;;) {} export default {};");
        // Ten hook budgets would be 10 s.
        stuck.timeout_ms = 1_000;
        for (bad, message) in [
            (slow, "timeoutMs 1001 is above this proxy's maximum of 1000"),
            (big, "memoryLimitMiB 33 is above this proxy's maximum of 32"),
            (stuck, "took longer than 1000 ms"),
        ] {
            let reloaded = load(&runtime, vec![bad]).await;
            assert_eq!(reloaded.failures.len(), 1, "{message}");
            let failure = &reloaded.failures[0];
            assert!(failure.message.contains(message), "{}", failure.message);
            assert!(failure.kept_previous);
            let chain = chain(&reloaded, &[("shop/p", json!({}))]);
            let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
            assert_eq!(
                patch.headers.set["x-v"],
                ["1"],
                "the last good version serves"
            );
        }
    });
}

/// Requests that find their plugin's isolate interrupted share one replacement: the
/// module is evaluated and `onLoad` run once, not once per waiting request.
#[test]
fn an_interrupted_isolate_is_replaced_once_for_all_waiting_requests() {
    on_shard(async {
        let (runtime, registry) = runtime_with(weir_plugin_runtime::RuntimeConfig::default());
        let mut plugin = bundle(
            "shop/once",
            r#"export default {
                // Awaiting in onLoad lets other requests arrive while the isolate is made.
                async onLoad(ctx) { await ctx.services.cache.get("warm-up"); },
                beforeRequest(ctx) {
                    if (ctx.request.path === "/bad") { for (;;) {} }
                    ctx.upstream.headers.set("x-ok", "1");
                },
            };"#,
        );
        plugin.timeout_ms = 200;
        let loaded = load(&runtime, vec![plugin]).await;
        let chain = chain(&loaded, &[("shop/once", json!({}))]);
        expect_failed(runtime.before_request(&chain, request("/bad")).await.0);
        let waiting: Vec<_> = (0..5)
            .map(|_| runtime.before_request(&chain, request("/good")))
            .collect();
        for (outcome, _) in futures::future::join_all(waiting).await {
            assert_eq!(expect_continue(outcome).headers.set["x-ok"], ["1"]);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let replaced = text
            .lines()
            .find(|line| line.starts_with("weir_plugin_isolates_replaced_total{"))
            .unwrap_or_else(|| panic!("no replacement counted: {text}"));
        assert!(replaced.ends_with(" 1"), "{replaced}");
    });
}

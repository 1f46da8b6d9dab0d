//! Benchmark of the plugin runtime: CPU time per request on one shard (a current-thread
//! runtime with a `LocalSet`, hooks called inline, as in `weir-proxy`) for no plugin, a
//! plugin without request hooks, an empty `beforeRequest`, one trivial `beforeRequest`
//! that sets a header, and two plugins with both hooks. Run with
//! `cargo run --release -p weir-bench-plugin-runtime [REQUESTS [SCENARIO]]` (SCENARIO:
//! part of a scenario's name to run only that one); the figures go to
//! `docs/performance.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prometheus_client::registry::Registry;
use weir_crds::plugin::{FailurePolicy, PluginScope};
use weir_crds::snapshot::{PluginBundle, PluginCall};
use weir_plugin_runtime::{
    AfterResponse, BeforeRequest, Chain, PluginRuntime, RequestInfo, ResponseInfo, RuntimeConfig,
    ShardPlugins,
};

// The allocator weir-proxy uses, so the figures are the proxy's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Requests in flight at once, as many connections to a proxy would make.
const CONCURRENCY: usize = 64;

const NO_HOOKS: &str = "export default {};";

const EMPTY_HOOK: &str = "export default { beforeRequest() {} };";

const SET_HEADER: &str =
    r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-weir", "1"); } };"#;

const BOTH_HOOKS: &str = r#"export default {
    beforeRequest(ctx) {
        ctx.upstream.headers.set("x-request-id", ctx.request.requestId);
        ctx.state.started = 1;
    },
    afterResponse(ctx) {
        ctx.response.headers.set("x-served-by", "weir");
    },
};"#;

fn bundle(id: &str, source: &str) -> anyhow::Result<PluginBundle> {
    let linked = weir_crds::compile::modules::link("plugin.ts", source, |_| None)
        .map_err(|e| anyhow::anyhow!("{id}: {e:?}"))?;
    let (namespace, name) = id.split_once('/').context("id is namespace/name")?;
    Ok(PluginBundle {
        namespace: namespace.into(),
        name: name.into(),
        generation: None,
        code_hash: linked.code_hash(),
        code: linked.code,
        modules: linked.modules,
        config: serde_json::json!({}),
        secret_paths: Default::default(),
        config_schema: None,
        order: 0,
        scope: PluginScope::Attached,
        timeout_ms: 100,
        memory_limit_mib: 16,
        failure_policy: FailurePolicy::Closed,
    })
}

fn request() -> RequestInfo {
    RequestInfo {
        method: "GET".into(),
        url: "http://bench.local/items/1".into(),
        path: "/items/1".into(),
        headers: vec![
            ("host".into(), "bench.local".into()),
            ("user-agent".into(), "wrk".into()),
            ("accept".into(), "*/*".into()),
        ],
        route: "bench/route".into(),
        request_id: "0af7651916cd43dd8448eb211c80319c".into(),
        ..RequestInfo::default()
    }
}

/// User plus system CPU time of this process, from /proc (10 ms ticks: runs are long
/// enough for that to be well under 1%).
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("/proc/self/stat format")?
        .1
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

async fn one_request(runtime: &ShardPlugins, chain: &Arc<Chain>) -> anyhow::Result<()> {
    let (outcome, carry) = runtime.before_request(chain, request()).await;
    if !matches!(outcome, BeforeRequest::Continue(_)) {
        bail!("unexpected outcome {outcome:?}");
    }
    let response = ResponseInfo {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: None,
    };
    if let AfterResponse::Failed(failure) = runtime.after_response(chain, carry, response).await {
        bail!("{failure}");
    }
    Ok(())
}

/// Spreads `requests` over `in_flight` tasks, each made by `task(count)` to do `count` of
/// them; returns the CPU µs per request and the requests per second.
async fn timed<F, Fut>(requests: usize, in_flight: usize, task: F) -> anyhow::Result<(f64, f64)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    let cpu_before = cpu_time()?;
    let started = Instant::now();
    let per_task = requests / in_flight;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| tokio::task::spawn_local(task(per_task)))
        .collect();
    for task in tasks {
        task.await??;
    }
    let wall = started.elapsed();
    let cpu = cpu_time()? - cpu_before;
    let done = (per_task * in_flight) as f64;
    Ok((cpu.as_secs_f64() * 1e6 / done, done / wall.as_secs_f64()))
}

async fn measure(
    runtime: &ShardPlugins,
    chain: &Arc<Chain>,
    requests: usize,
) -> anyhow::Result<(f64, f64)> {
    // Warm up: isolates, JIT-less caches, allocator.
    for _ in 0..2_000 {
        one_request(runtime, chain).await?;
    }
    timed(requests, CONCURRENCY, |count| {
        let (runtime, chain) = (runtime.clone(), chain.clone());
        async move {
            for _ in 0..count {
                one_request(&runtime, &chain).await?;
            }
            anyhow::Ok(())
        }
    })
    .await
}

fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(400_000);
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&executor, async move {
        let runtime = PluginRuntime::start(&RuntimeConfig::default(), &mut Registry::default())?;
        let shard = runtime.attach();
        let bundles: BTreeMap<String, PluginBundle> = [
            ("bench/no-hooks", NO_HOOKS),
            ("bench/empty-hook", EMPTY_HOOK),
            ("bench/set-header", SET_HEADER),
            ("bench/first", BOTH_HOOKS),
            ("bench/second", BOTH_HOOKS),
        ]
        .into_iter()
        .map(|(id, source)| Ok((id.to_owned(), bundle(id, source)?)))
        .collect::<anyhow::Result<_>>()?;
        let loaded = runtime.load(&bundles).await;
        if !loaded.failures.is_empty() {
            bail!("{:?}", loaded.failures);
        }
        let call = |id: &str| PluginCall::new(id, &serde_json::json!({}));
        let scenarios = [
            ("no plugin", loaded.set.chain(&[])),
            (
                "one plugin without hooks (dispatch only)",
                loaded.set.chain(&[call("bench/no-hooks")]),
            ),
            (
                "one empty beforeRequest",
                loaded.set.chain(&[call("bench/empty-hook")]),
            ),
            (
                "one beforeRequest setting a header",
                loaded.set.chain(&[call("bench/set-header")]),
            ),
            (
                "two plugins, both hooks",
                loaded
                    .set
                    .chain(&[call("bench/first"), call("bench/second")]),
            ),
        ];
        println!("{requests} requests per scenario, {CONCURRENCY} in flight on one shard");
        println!("| scenario | CPU µs per request | requests per second |");
        println!("| --- | ---: | ---: |");
        let only = std::env::args().nth(2).unwrap_or_default();
        for (name, chain) in scenarios
            .iter()
            .filter(|(name, _)| name.contains(only.as_str()))
        {
            let (cpu_us, rate) = measure(&shard, chain, requests).await?;
            println!("| {name} | {cpu_us:.2} | {rate:.0} |");
        }
        Ok(())
    })
}

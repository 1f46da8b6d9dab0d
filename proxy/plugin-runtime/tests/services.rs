//! Host services against real servers: fetch (with SSRF refusals) against a loopback HTTP
//! server, and the Redis-backed cache against a real `redis-server`.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use redis_server::Redis;
use serde_json::json;
use weir_plugin_runtime::{CacheConfig, FetchConfig, RuntimeConfig};

/// A loopback HTTP server answering `/slow` after 500 ms and anything else at once.
async fn http_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::task::spawn_local(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        let body = format!("{} {}", request.method(), request.uri().path());
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("x-upstream", "yes")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// A runtime with one isolate thread whose fetch may reach 127.0.0.1.
fn loopback_runtime() -> Shard {
    runtime_with(RuntimeConfig {
        fetch: FetchConfig {
            allow_networks: vec!["127.0.0.1/32".into()],
            ..FetchConfig::default()
        },
        ..RuntimeConfig::default()
    })
    .0
}

const FETCHER: &str = r#"export default { async beforeRequest(ctx) {
    try {
        const response = await ctx.services.http.fetch(ctx.config.url, { method: "POST", body: "x", timeoutMs: 2000 });
        ctx.upstream.headers.set("x-fetch", `${response.status} ${response.headers["x-upstream"]} ${await response.text()}`);
    } catch (error) {
        ctx.upstream.headers.set("x-fetch", "error: " + error.message);
    }
} };"#;

async fn fetch_result(runtime: &Shard, url: &str) -> String {
    let loaded = load(runtime, vec![bundle("shop/fetch", FETCHER)]).await;
    let chain = chain(&loaded, &[("shop/fetch", json!({"url": url}))]);
    let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
    patch.headers.set["x-fetch"][0].clone()
}

#[test]
fn fetch_refuses_private_addresses_even_behind_names() {
    on_shard(async {
        let server = http_server().await;
        let runtime = runtime();
        for url in [
            format!("http://127.0.0.1:{}/", server.port()),
            format!("http://localhost:{}/", server.port()),
            format!("http://[::1]:{}/", server.port()),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://10.0.0.1/".to_owned(),
            "http://[::ffff:127.0.0.1]/".to_owned(),
        ] {
            let result = fetch_result(&runtime, &url).await;
            assert!(
                result.starts_with("error: fetch: refused"),
                "{url}: {result}"
            );
        }
        let result = fetch_result(&runtime, "file:///etc/passwd").await;
        assert!(
            result.starts_with("error: fetch: invalid request"),
            "{result}"
        );
        let result = fetch_result(&runtime, "ftp://example.com/").await;
        assert!(result.contains("only http and https"), "{result}");
    });
}

#[test]
fn allow_listed_networks_are_fetched_and_slow_ones_time_out() {
    on_shard(async {
        let server = http_server().await;
        let runtime = loopback_runtime();
        let result = fetch_result(
            &runtime,
            &format!("http://localhost:{}/hello", server.port()),
        )
        .await;
        assert_eq!(result, "200 yes POST /hello");

        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/slow",
                r#"export default { async beforeRequest(ctx) {
                try { await ctx.services.http.fetch(ctx.config.url, { timeoutMs: 50 }); }
                catch (error) { ctx.upstream.headers.set("x-fetch", error.message); }
            } };"#,
            )],
        )
        .await;
        let chain = chain(
            &loaded,
            &[(
                "shop/slow",
                json!({"url": format!("http://127.0.0.1:{}/slow", server.port())}),
            )],
        );
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(
            patch.headers.set["x-fetch"],
            ["fetch: no answer within 50 ms"]
        );
    });
}

#[test]
fn one_isolate_thread_serves_other_requests_while_a_hook_awaits_io() {
    on_shard(async {
        let server = http_server().await;
        let runtime = loopback_runtime();
        let mut fetcher = bundle("shop/fetch", FETCHER);
        fetcher.timeout_ms = 2_000;
        let loaded = load(&runtime, vec![fetcher]).await;
        let chain = chain(
            &loaded,
            &[(
                "shop/fetch",
                json!({"url": format!("http://127.0.0.1:{}/slow", server.port())}),
            )],
        );
        // 20 requests each awaiting a 500 ms upstream: served one at a time they would take
        // 10 s; interleaved on the one thread they take a little over 500 ms.
        let started = std::time::Instant::now();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let runtime = runtime.clone();
                let chain = chain.clone();
                tokio::task::spawn_local(async move {
                    runtime.before_request(&chain, request("/")).await.0
                })
            })
            .collect();
        for call in calls {
            let patch = expect_continue(call.await.unwrap());
            assert_eq!(patch.headers.set["x-fetch"], ["200 yes POST /slow"]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    });
}

/// The runtime config of a proxy replica whose plugin cache is the Redis on `port`, its
/// keys under `key_prefix`.
fn redis_cache(port: u16, key_prefix: &str) -> RuntimeConfig {
    RuntimeConfig {
        cache: CacheConfig {
            redis_url: Some(format!("redis://127.0.0.1:{port}/")),
            key_prefix: key_prefix.into(),
            ..CacheConfig::default()
        },
        ..RuntimeConfig::default()
    }
}

/// An entry read with `get` compares equal to what is stored: its keys keep their order
/// and its numbers their text, so read-modify-write with `compareAndSet` works on objects.
#[test]
fn a_read_entry_compares_equal_to_the_stored_one() {
    on_shard(async {
        let runtime = runtime();
        let plugin = bundle(
            "shop/rmw",
            r#"export default { async beforeRequest(ctx) {
                const cache = ctx.services.cache;
                await cache.set("bucket", { tokens: 1.5, at: 1700000000123, z: [3, 1] });
                const read = await cache.get("bucket");
                const swapped = await cache.compareAndSet("bucket", read, { ...read, tokens: 0.5 });
                ctx.upstream.headers.set("x-read", JSON.stringify(read));
                ctx.upstream.headers.set("x-swapped", String(swapped));
            } };"#,
        );
        let loaded = load(&runtime, vec![plugin]).await;
        let chain = chain(&loaded, &[("shop/rmw", json!({}))]);
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(
            patch.headers.set["x-read"],
            [r#"{"tokens":1.5,"at":1700000000123,"z":[3,1]}"#]
        );
        assert_eq!(patch.headers.set["x-swapped"], ["true"]);
    });
}

/// With Redis down, the first cache call finds out and the next ones fail at once (no
/// call waits the timeout again) until the retry interval has passed.
#[test]
fn after_a_redis_failure_calls_fail_at_once_until_the_retry_interval() {
    on_shard(async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let plugin = bundle(
            "shop/down",
            r#"export default { async beforeRequest(ctx) {
                try { await ctx.services.cache.get("k"); ctx.upstream.headers.set("x-error", "none"); }
                catch (e) { ctx.upstream.headers.set("x-error", String(e.message ?? e)); }
            } };"#,
        );
        for (retry_after_ms, retried) in [(60_000, false), (1, true)] {
            let mut config = redis_cache(port, "weir:");
            config.cache.retry_after_ms = retry_after_ms;
            let runtime = runtime_with(config).0;
            let loaded = load(&runtime, vec![plugin.clone()]).await;
            let chain = chain(&loaded, &[("shop/down", json!({}))]);
            let error = || async {
                let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
                patch.headers.set["x-error"][0].clone()
            };
            let first = error().await;
            assert!(first.contains("redis"), "{first}");
            assert!(
                !first.contains("unavailable ("),
                "the first call tries: {first}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let second = error().await;
            assert_eq!(
                !second.contains("unavailable ("),
                retried,
                "retry after {retry_after_ms} ms: {second}"
            );
        }
    });
}

/// Hooks of two runtimes (two proxy replicas) sharing one Redis run at once: a nonce is
/// fresh for exactly one of them, and compare-and-set increments lose no update.
#[test]
fn redis_cache_writes_are_atomic_across_runtimes() {
    on_shard(async {
        let redis = Redis::start().await;
        let config = redis_cache(redis.port, "weir:");
        let replicas = [runtime_with(config.clone()).0, runtime_with(config).0];
        let plugin = bundle(
            "shop/atomic",
            r#"export default { async beforeRequest(ctx) {
            const cache = ctx.services.cache;
            const fresh = await cache.add("nonce", ctx.request.requestId, { ttlSeconds: 60 });
            for (;;) {
                const current = await cache.get("count");
                const next = { n: (current?.n ?? 0) + 1 };
                if (await cache.compareAndSet("count", current ?? undefined, next)) break;
            }
            ctx.upstream.headers.set("x-fresh", String(fresh));
        } };"#,
        );
        let mut chains = Vec::new();
        for replica in &replicas {
            let loaded = load(replica, vec![plugin.clone()]).await;
            chains.push(chain(&loaded, &[("shop/atomic", json!({}))]));
        }
        let hooks = (0..12).map(|i| {
            let mut info = request("/");
            info.request_id = format!("req-{i}");
            replicas[i % 2].before_request(&chains[i % 2], info)
        });
        let outcomes = futures::future::join_all(hooks).await;
        let fresh: Vec<String> = outcomes
            .into_iter()
            .map(|(outcome, _)| expect_continue(outcome).headers.set["x-fresh"][0].clone())
            .collect();
        assert_eq!(
            fresh.iter().filter(|f| *f == "true").count(),
            1,
            "{fresh:?}"
        );

        let loaded = load(&replicas[0], vec![bundle(
            "shop/atomic",
            r#"export default { async beforeRequest(ctx) {
                ctx.upstream.headers.set("x-count", JSON.stringify(await ctx.services.cache.get("count")));
            } };"#,
        )])
        .await;
        let read = chain(&loaded, &[("shop/atomic", json!({}))]);
        let patch = expect_continue(replicas[0].before_request(&read, request("/")).await.0);
        assert_eq!(patch.headers.set["x-count"], [r#"{"n":12}"#]);
    });
}

#[test]
fn the_redis_cache_is_shared_between_runtimes() {
    on_shard(async {
        let mut redis = Redis::start().await;
        let config = redis_cache(redis.port, "weir:");
        // Two runtimes stand for two proxy replicas.
        let replicas = [runtime_with(config.clone()).0, runtime_with(config).0];
        let counter = bundle(
            "shop/limit",
            r#"export default { async beforeRequest(ctx) {
            const cache = ctx.services.cache;
            const hits = await cache.incr("window", { ttlSeconds: 60 });
            if (hits === 1) await cache.set("first", { at: ctx.request.requestId }, { ttlSeconds: 0.2 });
            const first = await cache.get("first");
            const removed = await cache.delete("nothing-here");
            ctx.upstream.headers.set("x-cache", JSON.stringify({ hits, first, removed }));
        } };"#,
        );
        let mut seen = Vec::new();
        for (i, replica) in replicas.iter().cycle().take(4).enumerate() {
            let loaded = load(replica, vec![counter.clone()]).await;
            let chain = chain(&loaded, &[("shop/limit", json!({}))]);
            let mut info = request("/");
            info.request_id = format!("req-{i}");
            let patch = expect_continue(replica.before_request(&chain, info).await.0);
            seen.push(
                serde_json::from_str::<serde_json::Value>(&patch.headers.set["x-cache"][0])
                    .unwrap(),
            );
        }
        for (i, value) in seen.iter().enumerate() {
            assert_eq!(value["hits"], i + 1, "{seen:?}");
            assert_eq!(value["first"], json!({"at": "req-0"}));
            assert_eq!(value["removed"], false);
        }

        // Keys carry the installation's prefix (`weir:` by default) and the plugin's id,
        // and expire.
        let mut direct = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg("weir:shop/limit:window")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert!((1..=60).contains(&ttl), "{ttl}");
        let unprefixed: i64 = redis::cmd("EXISTS")
            .arg("shop/limit:window")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(unprefixed, 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let first: Option<String> = redis::cmd("GET")
            .arg("weir:shop/limit:first")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(first, None, "expired");

        // Another installation sharing the Redis under its own prefix counts apart.
        let other = runtime_with(redis_cache(redis.port, "staging:")).0;
        let loaded = load(&other, vec![counter.clone()]).await;
        let staged_chain = chain(&loaded, &[("shop/limit", json!({}))]);
        let patch = expect_continue(other.before_request(&staged_chain, request("/")).await.0);
        let value: serde_json::Value =
            serde_json::from_str(&patch.headers.set["x-cache"][0]).unwrap();
        assert_eq!(value["hits"], 1, "{value}");
        let staged: Option<String> = redis::cmd("GET")
            .arg("staging:shop/limit:window")
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(staged.as_deref(), Some("1"));

        // A Redis outage rejects the hook's promise instead of hanging or crashing.
        redis.child.kill().await.unwrap();
        let loaded = load(&replicas[0], vec![bundle(
        "shop/down",
        r#"export default { async beforeRequest(ctx) {
            try { await ctx.services.cache.get("k"); } catch (e) { ctx.upstream.headers.set("x-error", e.message); }
        } };"#,
    )]).await;
        let chain = chain(&loaded, &[("shop/down", json!({}))]);
        let patch = expect_continue(replicas[0].before_request(&chain, request("/")).await.0);
        assert!(
            patch.headers.set["x-error"][0].starts_with("redis:"),
            "{patch:?}"
        );
    });
}

/// One hook call may have a bounded number of fetches in flight; the rest reject at once.
#[test]
fn fetches_in_flight_per_hook_are_bounded() {
    on_shard(async {
        let server = http_server().await;
        let runtime = loopback_runtime();
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/flood",
                r#"export default { async beforeRequest(ctx) {
                const fetches = [];
                for (let i = 0; i < 10; i++) { fetches.push(ctx.services.http.fetch(ctx.config.url)); }
                const settled = await Promise.allSettled(fetches);
                const refused = settled.filter((s) => s.status === "rejected");
                ctx.upstream.headers.set("x-answered", String(settled.length - refused.length));
                ctx.upstream.headers.set("x-refused", refused.map((s) => s.reason.message).join("|"));
            } };"#,
            )],
        )
        .await;
        let chain = chain(
            &loaded,
            &[(
                "shop/flood",
                json!({"url": format!("http://127.0.0.1:{}/slow", server.port())}),
            )],
        );
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(patch.headers.set["x-answered"], ["8"]);
        let refused = &patch.headers.set["x-refused"][0];
        assert_eq!(
            refused.matches("already has 8 fetches in flight").count(),
            2,
            "{refused}"
        );
    });
}

/// A fetch still waiting when its hook times out is cancelled: its connection closes then,
/// not when the fetch's own (longer) time limit runs out.
#[test]
fn a_hook_that_times_out_cancels_its_fetches() {
    on_shard(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (closed, closed_at) = tokio::sync::oneshot::channel::<()>();
        tokio::task::spawn_local(async move {
            use tokio::io::AsyncReadExt as _;
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 4096];
            // The request, then nothing until the client closes (a read of 0 bytes).
            while stream.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
            let _ = closed.send(());
        });
        let runtime = loopback_runtime();
        let mut hanging = bundle(
            "shop/hang",
            r#"export default { async beforeRequest(ctx) {
                await ctx.services.http.fetch(ctx.config.url, { timeoutMs: 10000 });
            } };"#,
        );
        hanging.timeout_ms = 200;
        let loaded = load(&runtime, vec![hanging]).await;
        let chain = chain(
            &loaded,
            &[(
                "shop/hang",
                json!({"url": format!("http://127.0.0.1:{port}/hang")}),
            )],
        );
        let outcome = runtime.before_request(&chain, request("/")).await.0;
        assert!(
            matches!(&outcome, weir_plugin_runtime::BeforeRequest::Failed(f) if f.kind == weir_plugin_runtime::FailureKind::Timeout),
            "{outcome:?}"
        );
        tokio::time::timeout(Duration::from_secs(8), closed_at)
            .await
            .expect("the fetch's connection closed before the fetch's own 10 s limit")
            .unwrap();
    });
}

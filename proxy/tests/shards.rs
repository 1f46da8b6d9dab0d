//! The shards of a real `weir-proxy` process: hooks run on the shard that accepted the
//! connection, connections reach every shard, an endless hook is cut off by the CPU
//! budget and its shard serves on, and a graceful shutdown drains every shard. The JSON
//! logs name the thread of every line (`weir-shard-N`), which is how the tests tell the
//! shards apart.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use serde_json::Value;
use support::process::ProxyProcess;
use support::{PATIENCE, Upstream};

/// `GET path` on a new connection to `proxy`; the whole answer.
fn get(proxy: &ProxyProcess, path: &str, request_id: &str) -> String {
    let mut stream = proxy.connect();
    request(&mut stream, path, request_id, true);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn request(stream: &mut std::net::TcpStream, path: &str, request_id: &str, close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: shards.example\r\nx-request-id: {request_id}\r\nconnection: {connection}\r\n\r\n"
    )
    .unwrap();
}

/// Reads one response with a `content-length` body off a keep-alive connection.
fn read_response(stream: &mut std::net::TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn thread_of(entry: &Value) -> String {
    entry["threadName"]
        .as_str()
        .unwrap_or_else(|| panic!("no threadName in {entry}"))
        .to_owned()
}

const LOGGING_PLUGIN: &str = r#"
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: hello}
spec:
  plugins: [{name: note}]
  rules: [{directResponse: {status: 200, body: hi}}]
---
apiVersion: weir.dev/v1alpha1
kind: Plugin
metadata: {name: note}
spec:
  source: {code: 'export default { beforeRequest(ctx) { ctx.log.info("hook ran"); } };'}
"#;

#[test]
fn hooks_run_on_the_shard_that_accepted_the_connection_and_every_shard_serves() {
    let proxy = ProxyProcess::start(LOGGING_PLUGIN, &["--workers", "2"]);
    let mut shards = BTreeSet::new();
    // The kernel spreads connections over the shards' sockets by their addresses: with
    // 32 connections, both shards get some (all on one: a 2^-31 chance).
    for i in 0..32 {
        let id = format!("r{i}");
        let answer = get(&proxy, "/", &id);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let entries = proxy.entries_of(&id, 2);
        let hook = entries
            .iter()
            .find(|e| e["message"] == "hook ran")
            .unwrap_or_else(|| panic!("no hook line for {id}: {entries:?}"));
        let access = entries
            .iter()
            .find(|e| e["target"] == "weir::access")
            .unwrap_or_else(|| panic!("no access line for {id}: {entries:?}"));
        assert_eq!(
            thread_of(hook),
            thread_of(access),
            "{id}: the hook ran where the request was served"
        );
        assert!(thread_of(access).starts_with("weir-shard-"), "{access}");
        shards.insert(thread_of(access));
    }
    assert_eq!(
        shards,
        BTreeSet::from(["weir-shard-0".to_owned(), "weir-shard-1".to_owned()])
    );
}

#[test]
fn an_endless_hook_is_cut_off_by_the_cpu_budget_and_its_shard_serves_on() {
    let manifests = r#"
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {name: spin}
spec:
  plugins: [{name: spinner}]
  rules: [{directResponse: {status: 200, body: ok}}]
---
apiVersion: weir.dev/v1alpha1
kind: Plugin
metadata: {name: spinner}
spec:
  timeoutMs: 10000
  source: {code: 'export default { beforeRequest(ctx) { if (ctx.request.path === "/spin") { for (;;) {} } } };'}
"#;
    let proxy = ProxyProcess::start(
        manifests,
        &["--workers", "1", "--plugin-cpu-budget", "50ms"],
    );
    // A connection of the one shard, open before the hook spins and used after.
    let mut waiting = proxy.connect();
    request(&mut waiting, "/before", "before", false);
    let answer = read_response(&mut waiting);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let started = std::time::Instant::now();
    let answer = get(&proxy, "/spin", "spin");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("plugin_failed"), "{answer}");
    // Interrupted by the CPU budget (50 ms), not by the hook's 10 s timeoutMs.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let failure = proxy
        .entries_of("spin", 2)
        .into_iter()
        .find(|e| e["message"] == "plugin failed")
        .expect("the failure is logged");
    assert!(
        failure["failure"]
            .as_str()
            .is_some_and(|f| f.contains("interrupted")),
        "{failure}"
    );

    request(&mut waiting, "/after", "after", false);
    assert!(read_response(&mut waiting).starts_with("HTTP/1.1 200"));
    assert!(get(&proxy, "/new", "new").starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_drains_every_shard() {
    let (upstream, gate) = Upstream::gated("slow").await;
    let manifests = format!(
        r#"
apiVersion: weir.dev/v1alpha1
kind: Route
metadata: {{name: slow}}
spec:
  rules: [{{backends: [{{url: '{}'}}]}}]
"#,
        upstream.url()
    );
    let proxy = ProxyProcess::start(&manifests, &["--workers", "2", "--drain-timeout", "60s"]);
    let port = proxy.port;
    // 32 requests in flight, on connections spread over both shards.
    let in_flight: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(PATIENCE * 3)).unwrap();
                request(&mut stream, "/", &format!("slow{i}"), true);
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    support::wait_for(|| upstream.requests().len() == 32).await;

    let logs = proxy.logs.clone();
    let stopping = std::thread::spawn(move || proxy.terminate());
    // The proxy stops accepting, waits for its in-flight requests: let them finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(32);
    let status = tokio::task::spawn_blocking(move || stopping.join().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    for answer in in_flight {
        let answer = answer.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow"),
            "{answer}"
        );
    }
    let served_by: BTreeMap<String, usize> = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "weir::access")
        .fold(BTreeMap::new(), |mut counts, e| {
            *counts.entry(thread_of(e)).or_default() += 1;
            counts
        });
    assert_eq!(served_by.values().sum::<usize>(), 32, "{served_by:?}");
    assert_eq!(
        served_by.len(),
        2,
        "both shards drained requests: {served_by:?}"
    );
}

#[tokio::test]
async fn without_reuse_port_one_shard_hands_connections_to_the_others() {
    let proxy = support::TestProxy::start(|config| {
        config.workers = 3;
        config.reuse_port = false;
    })
    .await;
    proxy
        .apply_yaml(&support::route(
            "r",
            "  rules: [{directResponse: {status: 200, body: served}}]",
        ))
        .await;
    // Round the three shards four times, each request on a connection of its own.
    for _ in 0..12 {
        let answer = support::get(&proxy.url("/"), "x").await;
        assert_eq!(answer.status, http::StatusCode::OK);
        assert_eq!(answer.text(), "served");
    }
    proxy.stop().await;
}

//! The operator against a real API server (`KUBECONFIG`): one `weir-proxy` in a network
//! namespace of its own, made by the e2e suite's harness (the API server refuses
//! loopback addresses in EndpointSlices),
//! the release `weir-operator` on this host; P Plugins with their ConfigMaps and the
//! backend Services are applied first, then N Routes at once. Reports the time from the
//! last Route applied until every Route is `Programmed=True` for its generation, the
//! status patches the operator sent per object, its peak RSS, and the patches one
//! unrelated Route change costs.
//!
//! Run as root, after `cargo build --release -p weir-operator -p weir-proxy`:
//! `cargo run --release -p weir-bench-operator --bin weir-bench-operator-cluster [ROUTES PLUGINS]`.
//! Without `KUBECONFIG` or root it says which is missing and exits 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use weir_bench_operator::generate;
use weir_e2e::netns::Network;
use weir_e2e::objects;
use weir_e2e::process::{Process, Spec};

/// Field manager of what the benchmark applies.
const MANAGER: &str = "weir-bench";

/// Namespaces the Routes and Plugins are spread over.
const NAMESPACES: usize = 10;

/// Applies in flight at once.
const APPLY_CONCURRENCY: usize = 32;

/// Longest wait for anything.
const DEADLINE: Duration = Duration::from_secs(600);

/// Peak resident memory (`VmHWM`) of `process`, MiB.
fn peak_rss_mib(process: &Process) -> Result<f64> {
    let pid = process
        .pid()
        .with_context(|| format!("{} is not running", process.name()))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("{} exited", process.name()))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM")?;
    Ok(kib / 1024.0)
}

/// The environment the chart gives the operator's container
/// (charts/weir/templates/operator-deployment.yaml), so the operator runs as deployed.
const OPERATOR_ENV: &[&str] = &["MALLOC_ARENA_MAX=2"];

/// A process of the run: a sibling binary of this one with `env` (`NAME=value`) added to
/// its environment, logging to `dir/name.log`.
fn start(
    dir: &Path,
    name: &str,
    env: &[&str],
    netns: Option<&str>,
    args: Vec<String>,
) -> Result<Process> {
    let binary = binary(name)?;
    // `env` runs the binary in the same process, so its pid (for VmHWM) is the binary's.
    let (program, args) = if env.is_empty() {
        (binary, args)
    } else {
        let mut with_env: Vec<String> = env.iter().map(|v| (*v).to_owned()).collect();
        with_env.push(binary.display().to_string());
        with_env.extend(args);
        (PathBuf::from("/usr/bin/env"), with_env)
    };
    Ok(Process::start(Spec {
        name: name.into(),
        program,
        args,
        netns: netns.map(str::to_owned),
        log_file: dir.join(format!("{name}.log")),
    }))
}

/// A sibling binary of this one (the same target directory and profile).
fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("target directory")?.join(name);
    ensure!(
        path.exists(),
        "{} is missing: cargo build --release -p weir-operator -p weir-proxy",
        path.display()
    );
    Ok(path)
}

/// Applies `objects` (server-side apply), `APPLY_CONCURRENCY` at once.
async fn apply_all(client: &Client, objects: &[Value]) -> Result<()> {
    futures::stream::iter(objects)
        .map(|object| async move {
            let api_version = object["apiVersion"].as_str().context("apiVersion")?;
            let kind = object["kind"].as_str().context("kind")?;
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .context("namespace")?;
            let name = object["metadata"]["name"].as_str().context("name")?;
            objects::api(client, namespace, api_version, kind)
                .patch(
                    name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(object),
                )
                .await
                .with_context(|| format!("applying {kind} {namespace}/{name}"))?;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Whether an object's status says `Programmed=True` for its current generation.
fn programmed(object: &DynamicObject) -> bool {
    let generation = object.metadata.generation;
    object.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Programmed"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64() == generation
        })
}

/// Watches `kind` in `namespaces` until `expected` objects are Programmed for their
/// generation; returns when that happened.
async fn until_programmed(
    client: &Client,
    namespaces: &[String],
    kind: &str,
    expected: usize,
) -> Result<Instant> {
    let streams = namespaces.iter().map(|ns| {
        let api = objects::api(client, ns, "weir.dev/v1alpha1", kind);
        watcher(api, watcher::Config::default()).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut states: HashMap<(String, String), bool> = HashMap::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let done = states.values().filter(|p| **p).count();
        if done >= expected {
            return Ok(Instant::now());
        }
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("{done}/{expected} {kind}s Programmed by the deadline"))?
            .context("watch ended")?;
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let key = (
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                );
                states.insert(key, programmed(&o));
            }
            Ok(watcher::Event::Delete(o)) => {
                states.remove(&(
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                ));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => bail!("watching {kind}s: {e}"),
        }
    }
}

/// One counter of the operator's metrics.
async fn metric(address: &str, name: &str) -> Result<f64> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{address}/metrics").parse()?)
        .await
        .context("operator metrics")?;
    let body = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Status patches the operator has written.
async fn status_writes(address: &str) -> Result<f64> {
    metric(
        address,
        "weir_operator_status_writes_total{outcome=\"written\"}",
    )
    .await
}

/// The status patches written, once the count stops moving: the operator counts a patch
/// when the API server answers it, a moment after a watch may see the object written.
async fn settled_status_writes(address: &str) -> Result<f64> {
    let mut last = status_writes(address).await?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = status_writes(address).await?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Deletes what the run created, with the e2e suite's own clean-up (objects first: an
/// API server without a controller manager never empties a deleted namespace).
async fn clean_up(client: &Client, namespaces: &[String]) {
    for ns in namespaces {
        objects::delete_namespace(client.clone(), ns).await;
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn until_ready(address: &str) -> Result<()> {
    let started = Instant::now();
    while metric(address, "weir_operator_leader").await.unwrap_or(0.0) < 1.0 {
        ensure!(started.elapsed() < DEADLINE, "the operator never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

struct Run {
    routes: usize,
    plugins: usize,
}

async fn run(client: &Client, spec: &Run, dir: &Path) -> Result<()> {
    let run_id = std::process::id();
    let prefix = format!("weir-bench-{run_id}-");
    let admin_namespace = format!("weir-bench-{run_id}-admin");
    let mut namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("{prefix}{i}")).collect();
    namespaces.push(admin_namespace.clone());
    for ns in &namespaces {
        create_namespace(client, ns).await?;
    }
    let result = measure(client, spec, dir, &prefix, &admin_namespace, &namespaces).await;
    clean_up(client, &namespaces).await;
    result
}

async fn measure(
    client: &Client,
    spec: &Run,
    dir: &Path,
    prefix: &str,
    admin_namespace: &str,
    namespaces: &[String],
) -> Result<()> {
    let route_namespaces = &namespaces[..NAMESPACES];
    let token_file = dir.join("token");
    std::fs::write(&token_file, "weir-bench-token-0123456789abcdef0123456789")?;
    // The e2e suite's test hosts: a bridge on a free /24 and the proxy's namespace on it.
    let mut network = Network::create()?;
    let host = network.add_host("proxy", 2)?;
    let proxy_address = host.address.to_string();
    let token = token_file.display().to_string();
    let proxy = start(
        dir,
        "weir-proxy",
        &[],
        Some(&host.netns),
        [
            "--listen",
            &format!("{proxy_address}:8080"),
            "--admin-listen",
            &format!("{proxy_address}:9901"),
            "--admin-allow-plaintext",
            "--admin-token-file",
            &token,
            "--workers",
            "1",
        ]
        .map(str::to_owned)
        .to_vec(),
    )?;
    apply_all(
        client,
        &[json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "weir-proxy-admin-bench", "namespace": admin_namespace,
                         "labels": {"kubernetes.io/service-name": "weir-proxy-admin"}},
            "addressType": "IPv4",
            "ports": [{"name": "admin", "port": 9901, "protocol": "TCP"}],
            "endpoints": [{"addresses": [proxy_address], "conditions": {"ready": true}}]
        })],
    )
    .await?;

    let metrics = format!("127.0.0.1:{}", free_port()?);
    let operator = start(
        dir,
        "weir-operator",
        OPERATOR_ENV,
        None,
        [
            "--namespaces",
            &route_namespaces.join(","),
            "--proxy-namespace",
            admin_namespace,
            "--proxy-admin-port-name",
            "admin",
            "--proxy-insecure-http",
            "--admin-token-file",
            &token,
            "--metrics-address",
            &metrics,
            "--lease-namespace",
            admin_namespace,
            "--log-format",
            "text",
        ]
        .map(str::to_owned)
        .to_vec(),
    )?;
    until_ready(&metrics).await?;

    let objects = generate(prefix, spec.routes, spec.plugins, NAMESPACES);
    let setup: Vec<Value> = [
        &objects.config_maps,
        &objects.plugins,
        &objects.services,
        &objects.endpoint_slices,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    apply_all(client, &setup).await?;
    until_programmed(client, route_namespaces, "Plugin", spec.plugins).await?;
    let writes_before = status_writes(&metrics).await?;

    println!(
        "applying {} Routes ({} Plugins, {} Services programmed before)",
        spec.routes,
        spec.plugins,
        objects.services.len()
    );
    let watching = {
        let client = client.clone();
        let namespaces = route_namespaces.to_vec();
        let expected = spec.routes;
        tokio::spawn(async move { until_programmed(&client, &namespaces, "Route", expected).await })
    };
    let started = Instant::now();
    apply_all(client, &objects.routes).await?;
    let applied = Instant::now();
    let done = watching.await??;
    let writes = settled_status_writes(&metrics).await? - writes_before;
    println!(
        "applied in {:.1} s; every Route Programmed {:.1} s after the last apply ({:.1} s after the first)",
        (applied - started).as_secs_f64(),
        done.saturating_duration_since(applied).as_secs_f64(),
        (done - started).as_secs_f64()
    );
    println!(
        "status patches: {writes} for {} Routes ({:.2} per Route)",
        spec.routes,
        writes / spec.routes as f64
    );
    println!("operator peak RSS: {:.1} MiB", peak_rss_mib(&operator)?);

    // One unrelated change: one Route's spec.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = status_writes(&metrics).await?;
    let mut changed = objects.routes[0].clone();
    changed["spec"]["rules"][2]["directResponse"]["body"] = json!("changed");
    let changed_at = Instant::now();
    apply_all(client, &[changed.clone()]).await?;
    let name = changed["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = changed["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let routes = objects::routes(client, namespace);
    loop {
        if programmed(&routes.get(name).await?) {
            break;
        }
        ensure!(
            changed_at.elapsed() < DEADLINE,
            "the changed Route never Programmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let programmed_after = changed_at.elapsed();
    // Room for any write the change might wrongly cause elsewhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "one Route changed: Programmed after {:.2} s, status patches sent: {}",
        programmed_after.as_secs_f64(),
        status_writes(&metrics).await? - before
    );
    println!(
        "operator peak RSS after: {:.1} MiB; proxy peak RSS: {:.1} MiB",
        peak_rss_mib(&operator)?,
        peak_rss_mib(&proxy)?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if let Some(missing) = weir_e2e::skip_reason() {
        println!("skipping the cluster benchmark: {missing}");
        return Ok(());
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().context("arguments are numbers: ROUTES PLUGINS"))
        .collect::<Result<_>>()?;
    let spec = Run {
        routes: args.first().copied().unwrap_or(1000),
        plugins: args.get(1).copied().unwrap_or(100),
    };
    let client = Client::try_default()
        .await
        .context("KUBECONFIG names a reachable API server")?;
    weir_e2e::install_crds(&client).await;
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&client, &spec, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

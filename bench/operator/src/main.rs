//! Builds the snapshot for 1,000 Routes and 100 Plugins (generated manifests, with their
//! ConfigMaps, Services and EndpointSlices) the way the operator does, and reports the
//! compile time and the process's peak memory (`VmHWM`). Run with
//! `cargo run --release -p weir-bench-operator [ROUTES PLUGINS NAMESPACES]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use weir_operator::build::Builder;
use weir_operator::world::World;

/// Rebuilds measured after the first build.
const REBUILDS: usize = 5;

fn plugin_source(i: usize) -> String {
    format!(
        r#"// Generated plugin {i}: checks an API key header and tags the request.
interface Config {{ header: string; keys: string[]; tag: string }}

function allowed(config: Config, key: string | undefined): boolean {{
  if (!key) return false;
  for (const k of config.keys) {{
    if (k === key) return true;
  }}
  return false;
}}

export default {{
  onLoad(ctx: any) {{
    ctx.log.info("plugin {i} loaded");
  }},
  beforeRequest(ctx: any) {{
    const config = ctx.config as Config;
    const key = ctx.request.headers[config.header];
    if (!allowed(config, key)) {{
      ctx.reject(401, "missing or unknown key");
      return;
    }}
    ctx.state["tag{i}"] = config.tag;
  }},
  afterResponse(ctx: any) {{
    ctx.response.headers["x-plugin-{i}"] = String(ctx.state["tag{i}"] ?? "");
  }},
}};
"#
    )
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> Result<Arc<T>> {
    Ok(Arc::new(
        serde_json::from_value(value).context("generated object")?,
    ))
}

fn generate(routes: usize, plugins: usize, namespaces: usize) -> Result<World> {
    let mut world = World::default();
    let plugins_per_ns = plugins.div_ceil(namespaces);
    for p in 0..plugins {
        let ns = format!("team-{}", p % namespaces);
        let name = format!("plugin-{p}");
        world.config_maps.push(object(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-src"), "namespace": ns, "resourceVersion": "1"},
            "data": {"index.ts": plugin_source(p)}
        }))?);
        world.plugins.push(object(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {
                "source": {"configMapRef": {"name": format!("{name}-src"), "key": "index.ts"}},
                "config": {"header": "x-api-key", "keys": ["a", "b", "c"], "tag": format!("t{p}")},
                "configSchema": {
                    "type": "object",
                    "required": ["header", "keys"],
                    "properties": {
                        "header": {"type": "string"},
                        "keys": {"type": "array", "items": {"type": "string"}},
                        "tag": {"type": "string"}
                    }
                },
                "scope": if p < namespaces { "Global" } else { "Attached" },
                "order": p as i32
            }
        }))?);
    }
    let services = routes / 5;
    for s in 0..services {
        let ns = format!("team-{}", s % namespaces);
        let name = format!("svc-{s}");
        world.services.push(object(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))?);
        world.endpoint_slices.push(object(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": (0..3).map(|e| json!({
                "addresses": [format!("10.{}.{}.{}", s / 250, s % 250, e + 1)],
                "conditions": {"ready": true}
            })).collect::<Vec<_>>()
        }))?);
    }
    for r in 0..routes {
        let ns_index = r % namespaces;
        let ns = format!("team-{ns_index}");
        // Services and Plugins of the Route's own namespace (index % namespaces).
        let per_ns = (services / namespaces).max(1);
        let service = ((r / namespaces) % per_ns) * namespaces + ns_index;
        let attached: Vec<Value> = (0..2)
            // The first Plugin of each namespace is global; Routes attach two others.
            .map(|k| {
                ((r / namespaces + k) % (plugins_per_ns - 1).max(1) + 1) * namespaces + ns_index
            })
            .filter(|p| *p < plugins)
            .collect::<std::collections::BTreeSet<usize>>()
            .into_iter()
            .map(|p| json!({"name": format!("plugin-{p}"), "config": {"tag": format!("r{r}")}}))
            .collect();
        world.routes.push(object(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": format!("route-{r}"), "namespace": ns, "generation": 1},
            "spec": {
                "hosts": [format!("app-{r}.example.com")],
                "plugins": attached,
                "rules": [
                    {
                        "matches": [{"path": {"type": "Prefix", "value": "/api"}, "methods": ["GET", "POST"]}],
                        "backends": [{"name": format!("svc-{service}"), "port": 80}],
                        "timeouts": {"request": "10s"},
                        "retries": {"attempts": 2, "retryOn": ["ConnectFailure"]}
                    },
                    {
                        "matches": [{"path": {"type": "Template", "value": "/users/{id}"}}],
                        "backends": [{"name": format!("svc-{service}"), "port": 80}]
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
                        "directResponse": {"status": 200, "body": "ok"}
                    }
                ]
            }
        }))?);
    }
    Ok(world)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .context("arguments are numbers: ROUTES PLUGINS NAMESPACES")
        })
        .collect::<Result<_>>()?;
    let routes = args.first().copied().unwrap_or(1000);
    let plugins = args.get(1).copied().unwrap_or(100);
    let namespaces = args.get(2).copied().unwrap_or(10);

    let started = Instant::now();
    let world = generate(routes, plugins, namespaces)?;
    let generated = started.elapsed();
    let rss_objects = status_kib("VmRSS:");

    let mut builder = Builder::default();
    let first = builder.build(&world);
    let problems: Vec<String> = first
        .reports
        .iter()
        .filter(|r| !r.diagnostics.is_empty())
        .map(|r| format!("{}: {:?}", r.object, r.diagnostics))
        .collect();
    anyhow::ensure!(
        problems.is_empty(),
        "generated objects do not compile cleanly: {}",
        problems.join("\n")
    );
    let snapshot = builder
        .current()
        .context("a build leaves its snapshot in the builder")?;
    // The push body, held while rebuilding as the operator holds it between pushes.
    let body = serde_json::to_vec(snapshot)?;
    let shape = format!(
        "snapshot {}: {} virtual hosts, {} rules, {} backends, {} plugins, {:.1} MiB as JSON",
        snapshot.version,
        snapshot.virtual_hosts.len(),
        snapshot.rules.len(),
        snapshot.backends.len(),
        snapshot.plugins.len(),
        body.len() as f64 / (1024.0 * 1024.0)
    );

    let mut rebuilds: Vec<Duration> = (0..REBUILDS)
        .map(|_| builder.build(&world).duration)
        .collect();
    rebuilds.sort();
    let median = rebuilds[REBUILDS / 2];

    println!(
        "objects: {routes} Routes, {plugins} Plugins, {namespaces} namespaces, {} Services with EndpointSlices, {} ConfigMaps",
        world.services.len(),
        world.config_maps.len()
    );
    println!("generated in {:.1} ms", millis(generated));
    println!("{shape}");
    println!("first build: {:.1} ms", millis(first.duration));
    println!(
        "rebuild: median {:.1} ms, min {:.1} ms, max {:.1} ms ({REBUILDS} runs)",
        millis(median),
        millis(rebuilds[0]),
        millis(rebuilds[REBUILDS - 1])
    );
    if let Some(kib) = rss_objects {
        println!(
            "RSS with the objects generated, before building: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    match status_kib("VmHWM:") {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: /proc/self/status unavailable"),
    }
    Ok(())
}

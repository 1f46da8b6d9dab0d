//! Builds the snapshot for 1,000 Routes and 100 Plugins (generated manifests, with their
//! ConfigMaps, Services and EndpointSlices) the way the operator does, and reports the
//! compile time and the process's peak memory (`VmHWM`). Run with
//! `cargo run --release -p weir-bench-operator [ROUTES PLUGINS NAMESPACES]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use weir_bench_operator::{Objects, generate};
use weir_operator::build::Builder;
use weir_operator::stored_route::StoredRoute;
use weir_operator::world::World;

/// Rebuilds measured after the first build.
const REBUILDS: usize = 5;

fn object<T: serde::de::DeserializeOwned>(value: &Value) -> Result<Arc<T>> {
    Ok(Arc::new(
        serde_json::from_value(value.clone()).context("generated object")?,
    ))
}

fn all<T: serde::de::DeserializeOwned>(values: &[Value]) -> Result<Vec<Arc<T>>> {
    values.iter().map(object).collect()
}

/// The world the operator's stores would hold for these objects.
fn world(objects: &Objects) -> Result<World> {
    let routes: Vec<Arc<weir_crds::Route>> = all(&objects.routes)?;
    Ok(World {
        routes: routes
            .into_iter()
            .map(|route| Arc::new(StoredRoute::from(Arc::unwrap_or_clone(route))))
            .collect(),
        plugins: all(&objects.plugins)?,
        config_maps: all(&objects.config_maps)?,
        services: all(&objects.services)?,
        endpoint_slices: all(&objects.endpoint_slices)?,
        ..World::default()
    })
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
    let world = world(&generate("team-", routes, plugins, namespaces))?;
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

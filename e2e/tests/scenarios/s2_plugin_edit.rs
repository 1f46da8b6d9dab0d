//! Scenario 2: a Plugin whose TypeScript is in a ConfigMap, attached to a Route: its effect
//! shows in traffic. Editing the ConfigMap makes the new behaviour live within 2 s, with
//! zero failed requests under continuous load during the change.

use std::time::{Duration, Instant};

use weir_e2e::Scenario;
use weir_e2e::http::{Load, get};
use weir_e2e::objects;
use weir_e2e::scenario::OperatorOptions;

use crate::common::{expect, header_plugin, plugin, plugin_programmed, programmed, sources};

const HOST: &str = "plugged.e2e.example";
const HEADER: &str = "x-e2e-plugin";

#[tokio::test]
async fn s2_a_plugin_edit_is_live_within_2s_without_failed_requests() {
    let Some(mut scenario) = Scenario::start("s2").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    let v1 = header_plugin(HEADER, "v1");
    objects::apply(
        &client,
        &ns,
        sources("plugin-sources", &[("stamp.ts", &v1)]),
    )
    .await;
    objects::apply(&client, &ns, plugin("stamp", "plugin-sources", "stamp.ts")).await;
    objects::apply(
        &client,
        &ns,
        serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": "web"},
            "spec": {"hosts": [HOST], "plugins": [{"name": "stamp"}],
                     "rules": [{"backends": [{"name": "web", "port": 80}]}]}
        }),
    )
    .await;
    let _operator = scenario.operator(&OperatorOptions::new("s2"));

    let plugins = objects::plugins(&client, &ns);
    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&routes, "web", timeout, programmed(1))
        .await;
    let (stamp, _) = scenario
        .wait_for(&plugins, "stamp", timeout, |p| {
            plugin_programmed(1, "")(p)?;
            expect(p, "Compiled", "True", "Compiled")
        })
        .await;
    assert_eq!(stamp.metadata.generation, Some(1));
    scenario
        .wait_until(
            "the plugin's v1 header",
            Duration::from_secs(10),
            || async { stamped(&proxy, "v1").await },
        )
        .await;

    // Continuous load across the edit: every answer is the backend's, stamped v1 or v2.
    let load = Load::start(proxy.traffic, HOST, "/", |r| {
        r.status == 200 && r.body == "backend a" && matches!(r.header(HEADER), "v1" | "v2")
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = header_plugin(HEADER, "v2");
    let edited = Instant::now();
    objects::apply(
        &client,
        &ns,
        sources("plugin-sources", &[("stamp.ts", &v2)]),
    )
    .await;
    scenario
        .wait_until("the plugin's v2 header", Duration::from_secs(2), || async {
            stamped(&proxy, "v2").await
        })
        .await;
    let live = edited.elapsed();
    assert!(live <= Duration::from_secs(2), "v2 was live after {live:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failures) = load.finish().await;
    println!(
        "s2: the edit was live after {live:?}; {sent} requests under load, {} failed",
        failures.len()
    );
    assert!(sent > 10, "the load sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );

    // A ConfigMap edit is not a Plugin edit: still generation 1, compiled and programmed.
    let (stamp, _) = scenario
        .wait_for(&plugins, "stamp", Duration::from_secs(10), |p| {
            plugin_programmed(1, "")(p)?;
            expect(p, "Compiled", "True", "Compiled")
        })
        .await;
    assert_eq!(stamp.metadata.generation, Some(1));
    scenario
        .wait_for(&routes, "web", Duration::from_secs(10), programmed(1))
        .await;
}

/// Whether a request to `HOST` is served by the backend with the plugin's header at
/// `version`.
async fn stamped(proxy: &weir_e2e::scenario::Proxy, version: &str) -> Result<(), String> {
    let response = get(proxy.traffic, HOST, "/")
        .await
        .map_err(|e| e.to_string())?;
    if response.status == 200 && response.body == "backend a" && response.header(HEADER) == version
    {
        Ok(())
    } else {
        Err(format!(
            "{} {} {HEADER}: {:?}",
            response.status,
            response.body,
            response.header(HEADER)
        ))
    }
}

//! Scenario 3: a Plugin whose new TypeScript has a syntax error: `Compiled=False` names
//! the line and column, the previous version keeps serving, and other Routes and Plugins
//! are unaffected.

use std::time::Duration;

use serde_json::json;
use weir_e2e::Scenario;
use weir_e2e::http::get;
use weir_e2e::objects::{self, message};
use weir_e2e::scenario::{OperatorOptions, Proxy};

use crate::common::{
    current, expect, header_plugin, plugin, plugin_programmed, programmed, sources,
};

/// The broken source: the call on line 3 lacks its closing parenthesis, so the parser
/// stops at the `;` in column 54.
const BROKEN: &str = "export default {\n  afterResponse(ctx) {\n    ctx.response.headers.set(\"x-e2e-plugin\", \"broken\";\n  },\n};\n";
const BROKEN_AT: &str = "3:54";

#[tokio::test]
async fn s3_a_syntax_error_keeps_the_previous_version_serving() {
    let Some(mut scenario) = Scenario::start("s3").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    let stamp_v1 = header_plugin("x-e2e-plugin", "v1");
    let other = header_plugin("x-e2e-other", "other");
    objects::apply(
        &client,
        &ns,
        sources(
            "plugin-sources",
            &[("stamp.ts", &stamp_v1), ("other.ts", &other)],
        ),
    )
    .await;
    objects::apply(&client, &ns, plugin("stamp", "plugin-sources", "stamp.ts")).await;
    objects::apply(&client, &ns, plugin("other", "plugin-sources", "other.ts")).await;
    for (name, host, plugin) in [
        ("web", "web.e2e.example", "stamp"),
        ("other", "other.e2e.example", "other"),
    ] {
        objects::apply(
            &client,
            &ns,
            json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": name},
                "spec": {"hosts": [host], "plugins": [{"name": plugin}],
                         "rules": [{"backends": [{"name": "web", "port": 80}]}]}
            }),
        )
        .await;
    }
    let _operator = scenario.operator(&OperatorOptions::new("s3"));

    let plugins = objects::plugins(&client, &ns);
    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    for name in ["web", "other"] {
        scenario
            .wait_for(&routes, name, timeout, programmed(1))
            .await;
    }
    for name in ["stamp", "other"] {
        scenario
            .wait_for(&plugins, name, timeout, |p| {
                plugin_programmed(1, "")(p)?;
                expect(p, "Compiled", "True", "Compiled")
            })
            .await;
    }
    let serving = || async {
        header_of(&proxy, "web.e2e.example", "x-e2e-plugin", "v1").await?;
        header_of(&proxy, "other.e2e.example", "x-e2e-other", "other").await
    };
    scenario
        .wait_until("both plugins serve", Duration::from_secs(10), serving)
        .await;

    // The broken edit.
    objects::apply(
        &client,
        &ns,
        sources(
            "plugin-sources",
            &[("stamp.ts", BROKEN), ("other.ts", &other)],
        ),
    )
    .await;
    let (stamp, _) = scenario
        .wait_for(&plugins, "stamp", Duration::from_secs(30), |p| {
            current(p)?;
            expect(p, "Compiled", "False", "SyntaxError")?;
            let said = message(p, "Compiled");
            if said.contains(BROKEN_AT) {
                Ok(())
            } else {
                Err(format!("Compiled says {said:?}, without {BROKEN_AT}"))
            }
        })
        .await;
    println!("s3: Compiled=False says {:?}", message(&stamp, "Compiled"));
    // The last good version stays in the snapshot, and says so.
    scenario
        .wait_for(
            &plugins,
            "stamp",
            Duration::from_secs(10),
            plugin_programmed(1, "the last good version "),
        )
        .await;

    // Traffic: the previous version keeps serving; the other Route and Plugin are as before.
    for _ in 0..20 {
        if let Err(e) = serving().await {
            scenario.fail(&format!("after the broken edit: {e}"));
        }
    }
    scenario
        .wait_for(&plugins, "other", Duration::from_secs(10), |p| {
            plugin_programmed(1, "")(p)?;
            expect(p, "Compiled", "True", "Compiled")
        })
        .await;
    for name in ["web", "other"] {
        scenario
            .wait_for(&routes, name, Duration::from_secs(10), programmed(1))
            .await;
    }
}

/// Whether a request for `host` is served by the backend with header `name: value`.
async fn header_of(proxy: &Proxy, host: &str, name: &str, value: &str) -> Result<(), String> {
    let response = get(proxy.traffic, host, "/")
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    if response.status == 200 && response.body == "backend a" && response.header(name) == value {
        Ok(())
    } else {
        Err(format!(
            "{host}: {} {} {name}: {:?}",
            response.status,
            response.body,
            response.header(name)
        ))
    }
}

//! Scenario 10: a Plugin takes a config value from a Secret (`secretRefs`). Before the
//! Secret exists the Plugin says `ResolvedRefs=False`/`SecretNotFound` and its Route is
//! not served; creating the Secret (an Opaque one, which the operator's watch must see)
//! programs both, and the value reaches the plugin; rotating the Secret changes it
//! without a restart. No status ever shows the value. A Secret that exists before anything
//! reads it (so the operator kept only its metadata) is read once a Plugin refers to it.

use std::time::Duration;

use serde_json::json;
use weir_e2e::Scenario;
use weir_e2e::http::get;
use weir_e2e::objects;
use weir_e2e::scenario::OperatorOptions;

use crate::common::{expect, plugin_programmed, programmed, sources};

const HOST: &str = "secret.e2e.example";
const HEADER: &str = "x-e2e-key-hash";

/// Sets the first 12 hex digits of the SHA-256 of `ctx.config.key` on the response, so
/// the test sees which value the plugin got without the value in any header.
const KEY_HASH_PLUGIN: &str = "export default {\n  afterResponse(ctx) {\n    ctx.response.headers.set(\"x-e2e-key-hash\", ctx.crypto.sha256(ctx.config.key, \"hex\").slice(0, 12));\n  },\n};\n";

fn secret(value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "signing"},
           "type": "Opaque", "stringData": {"key": value}})
}

fn short_hash(value: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))[..12].to_owned()
}

#[tokio::test]
async fn s10_plugin_config_from_a_secret_created_and_rotated_later() {
    let Some(mut scenario) = Scenario::start("s10").await else {
        return;
    };
    let ns = scenario.ns().to_owned();
    let (_backend, proxy) = scenario.proxy_in_front_of_web().await;
    let client = scenario.client.clone();
    objects::apply(
        &client,
        &ns,
        sources("plugin-sources", &[("hash.ts", KEY_HASH_PLUGIN)]),
    )
    .await;
    objects::apply(
        &client,
        &ns,
        json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "hasher"},
            "spec": {"source": {"configMapRef": {"name": "plugin-sources", "key": "hash.ts"}},
                     "secretRefs": [{"path": "/key", "secretName": "signing", "key": "key"}]}
        }),
    )
    .await;
    objects::apply(
        &client,
        &ns,
        json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": "web"},
            "spec": {"hosts": [HOST], "plugins": [{"name": "hasher"}],
                     "rules": [{"backends": [{"name": "web", "port": 80}]}]}
        }),
    )
    .await;
    let _operator = scenario.operator(&OperatorOptions::new("s10"));

    let plugins = objects::plugins(&client, &ns);
    let routes = objects::routes(&client, &ns);
    let timeout = Duration::from_secs(60);
    scenario
        .wait_for(&plugins, "hasher", timeout, |p| {
            expect(p, "ResolvedRefs", "False", "SecretNotFound")
        })
        .await;

    let first = "first-signing-key-0123456789abcdef";
    objects::apply(&client, &ns, secret(first)).await;
    let (hasher, _) = scenario
        .wait_for(&plugins, "hasher", timeout, plugin_programmed(1, ""))
        .await;
    scenario
        .wait_for(&routes, "web", timeout, programmed(1))
        .await;
    assert!(!hasher.data["status"].to_string().contains(first));
    let hashed = |value: &'static str| {
        let expected = short_hash(value);
        let traffic = proxy.traffic;
        move || {
            let expected = expected.clone();
            async move {
                let response = get(traffic, HOST, "/").await.map_err(|e| e.to_string())?;
                if response.status == 200 && response.header(HEADER) == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "{} {HEADER}: {:?}",
                        response.status,
                        response.header(HEADER)
                    ))
                }
            }
        }
    };
    scenario
        .wait_until(
            "the first key's hash",
            Duration::from_secs(10),
            hashed(first),
        )
        .await;

    // Rotation: the Secret's new value reaches the plugin; nothing restarts.
    let second = "second-signing-key-fedcba9876543210";
    objects::apply(&client, &ns, secret(second)).await;
    scenario
        .wait_until(
            "the rotated key's hash",
            Duration::from_secs(30),
            hashed(second),
        )
        .await;
    let (hasher, _) = scenario
        .wait_for(&plugins, "hasher", timeout, plugin_programmed(1, ""))
        .await;
    assert!(!hasher.data["status"].to_string().contains(second));

    // A Secret nothing reads yet is kept without its data; a Plugin applied later that
    // reads it makes the operator list Secrets again, and the Plugin is programmed.
    objects::apply(
        &client,
        &ns,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "earlier"},
               "type": "Opaque", "stringData": {"key": "a-key-that-was-there-first"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    objects::apply(
        &client,
        &ns,
        json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": "late-reader"},
            "spec": {"source": {"configMapRef": {"name": "plugin-sources", "key": "hash.ts"}},
                     "secretRefs": [{"path": "/key", "secretName": "earlier", "key": "key"}]}
        }),
    )
    .await;
    scenario
        .wait_for(&plugins, "late-reader", timeout, plugin_programmed(1, ""))
        .await;
}

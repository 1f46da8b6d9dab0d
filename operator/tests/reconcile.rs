//! The reconciler against a `tower_test` fake API server and fake proxies on loopback:
//! status patches carry the right conditions and `observedGeneration`, unchanged status
//! is not rewritten, ConfigMap edits re-trigger their Plugins, pushes reach every proxy
//! and a failing one is reported, a broken Plugin keeps its last good version, rejected
//! objects get Events, and versions rise above what proxies serve.

mod support;

use http::Method;
use serde_json::json;
use support::*;
use weir_operator::watch::{SecretReaders, config_map_matters, secret_matters};

#[tokio::test]
async fn status_carries_conditions_and_generation_and_is_written_once() {
    let proxy_a = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let proxy_b = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::new();
    h.objects(
        &[
            route_json("api", 3, "api.example.com", "hello"),
            // Invalid: the plugin it names does not exist.
            json!({
                "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": "broken", "namespace": "shop", "generation": 7, "uid": "uid-broken"},
                "spec": {"hosts": ["b.example.com"], "plugins": [{"name": "nope"}], "rules": [{"directResponse": {"status": 200}}]}
            }),
        ],
        &[plugin_json("auth", 2, "auth-src")],
        vec![config_map("auth-src", GOOD_PLUGIN)],
    );
    h.proxies(&[proxy_a.addr, proxy_b.addr]);

    let outcome = h.lead().await;
    assert_eq!(outcome.version, 1);
    assert_eq!(outcome.in_sync, (2, 2));
    // The version served goes into one Event on the admin Service, not onto each object.
    let applied = h
        .api
        .wait_for_event("SnapshotApplied", "snapshot 1 (")
        .await;
    assert_eq!(applied["type"], "Normal");
    assert_eq!(applied["regarding"]["kind"], "Service");
    assert_eq!(applied["regarding"]["name"], "weir-proxy-admin");
    assert!(
        applied["note"]
            .as_str()
            .unwrap()
            .ends_with("applied on 2/2 proxies"),
        "{applied}"
    );
    assert_eq!(proxy_a.versions(), [1]);
    assert_eq!(proxy_b.versions(), [1]);
    assert_eq!(
        proxy_a.tokens.lock().unwrap().last().unwrap(),
        "Bearer secret-token-of-at-least-32-characters"
    );

    let seen = h.api.take();
    let patches: Vec<_> = seen
        .iter()
        .filter(|s| s.method == Method::PATCH && s.path.ends_with("/status"))
        .collect();
    assert_eq!(patches.len(), 3, "{seen:#?}");
    for patch in &patches {
        assert!(
            patch.query.contains("fieldManager=weir-operator"),
            "{}",
            patch.query
        );
        assert!(patch.query.contains("force=true"), "{}", patch.query);
    }
    let body = |name: &str| {
        patches
            .iter()
            .find(|p| p.path.ends_with(&format!("/{name}/status")))
            .unwrap_or_else(|| panic!("no status patch for {name}"))
            .body
            .clone()
    };

    let api = body("api");
    assert_eq!(api["kind"], "Route");
    for type_ in ["Accepted", "ResolvedRefs", "Programmed"] {
        let c = condition(&api, type_);
        assert_eq!(c["status"], "True", "{c}");
        assert_eq!(c["observedGeneration"], 3);
    }
    assert_eq!(
        condition(&api, "Programmed")["message"],
        "applied on 2/2 proxies"
    );
    // The kstatus view: observedGeneration at the top, Ready, and no abnormal condition.
    assert_eq!(api["status"]["observedGeneration"], 3);
    assert_eq!(condition(&api, "Ready")["status"], "True");
    assert_eq!(api["status"]["conditions"].as_array().unwrap().len(), 4);

    let broken = body("broken");
    let refs = condition(&broken, "ResolvedRefs");
    assert_eq!(refs["status"], "False");
    assert_eq!(refs["reason"], "PluginNotFound");
    assert_eq!(refs["observedGeneration"], 7);
    assert_eq!(condition(&broken, "Programmed")["reason"], "NotProgrammed");
    assert_eq!(broken["status"]["observedGeneration"], 7);
    for type_ in ["Ready", "Stalled"] {
        assert_eq!(condition(&broken, type_)["reason"], "PluginNotFound");
    }
    assert_eq!(condition(&broken, "Ready")["status"], "False");
    assert_eq!(condition(&broken, "Stalled")["status"], "True");

    let auth = body("auth");
    assert_eq!(auth["kind"], "Plugin");
    assert_eq!(condition(&auth, "Compiled")["status"], "True");
    assert_eq!(condition(&auth, "Programmed")["status"], "True");
    assert_eq!(condition(&auth, "Programmed")["observedGeneration"], 2);

    // The rejected Route got a Warning Event naming the reason.
    let events: Vec<_> = seen
        .iter()
        .filter(|s| {
            s.method == Method::POST && s.path.ends_with("/events") && s.body["type"] == "Warning"
        })
        .collect();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].body["reason"], "PluginNotFound");
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["regarding"]["name"], "broken");
    assert!(
        events[0]
            .path
            .starts_with("/apis/events.k8s.io/v1/namespaces/shop/")
    );

    // Nothing changed: no push, no status write, even before the watch echoes the status.
    let again = h.reconcile().await;
    assert!(again.pushed.is_empty());
    assert_eq!(again.status.queued, 0);
    assert!(h.api.take().is_empty());
    assert_eq!(proxy_a.versions(), [1]);

    // Once the watch shows the written status, still nothing to write.
    let patches: Vec<(String, serde_json::Value)> = patches
        .iter()
        .map(|p| (p.path.clone(), p.body.clone()))
        .collect();
    h.echo_status(&patches);
    let third = h.reconcile().await;
    assert_eq!(third.status.queued, 0);
    assert_eq!(third.status.unchanged, 3);
    assert!(h.api.take().is_empty());

    // A new generation of one Route rewrites only its status, keeping transition times.
    let before = condition(&api, "Accepted")["lastTransitionTime"].clone();
    apply(&mut h.writers.routes[0], {
        let mut r = route(&route_json("api", 4, "api.example.com", "hello again"));
        r.status = support::route(&{
            let mut v = route_json("api", 3, "api.example.com", "hello");
            v["status"] = api["status"].clone();
            v
        })
        .status;
        r
    });
    let fourth = h.reconcile().await;
    assert_eq!(fourth.version, 2);
    assert_eq!(fourth.pushed.len(), 2);
    h.api
        .wait_for_event("SnapshotApplied", "snapshot 2 (")
        .await;
    // A snapshot that does not change an object sends no patch for it: only the Route
    // with a new generation is written, although every proxy moved to snapshot 2.
    let patches = h.api.take_status_patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let api_patch = patched_status(&patches, "routes", "api");
    let accepted = condition(api_patch, "Accepted");
    assert_eq!(accepted["observedGeneration"], 4);
    assert_eq!(accepted["lastTransitionTime"], before);
    assert_eq!(
        condition(api_patch, "Programmed")["message"],
        "applied on 2/2 proxies"
    );
}

/// A Secret in namespace `shop` holding `key`.
fn secret(name: &str, key: &str, value: &str) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        data: Some(
            [(
                key.to_owned(),
                k8s_openapi::ByteString(value.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn plugin_config_values_come_from_secrets_which_status_never_shows() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::new();
    let mut auth = plugin_json("auth", 1, "auth-src");
    auth["spec"]["secretRefs"] =
        json!([{"path": "/key", "secretName": "auth-keys", "key": "hs256"}]);
    auth["spec"]["configSchema"] =
        json!({"type": "object", "properties": {"key": {"type": "string", "minLength": 32}}});
    h.objects(&[], &[auth], vec![config_map("auth-src", GOOD_PLUGIN)]);
    h.proxies(&[proxy.addr]);
    h.lead().await;
    let patches = h.api.take_status_patches();
    let resolved = condition(&patches[0].1, "ResolvedRefs");
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "SecretNotFound");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("Secret shop/auth-keys not found"),
        "{resolved}"
    );
    h.echo_status(&patches);

    // Only a Secret some Plugin (or Route) reads counts as a change.
    let short = secret("auth-keys", "hs256", "too-short-secret-value");
    let readers = SecretReaders::of(&h.stores);
    assert!(secret_matters(&short, &readers));
    assert!(!secret_matters(
        &secret("unrelated", "hs256", "x"),
        &readers
    ));

    // A value the configSchema refuses is reported by its Secret, never shown.
    apply(&mut h.writers.secrets[0], short);
    h.reconcile().await;
    let patches = h.api.take_status_patches();
    assert_eq!(patches.len(), 1);
    let body = patches[0].1.to_string();
    assert!(!body.contains("too-short-secret-value"), "{body}");
    let accepted = condition(&patches[0].1, "Accepted");
    assert_eq!(accepted["status"], "False", "{body}");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("a value from Secret shop/auth-keys, key hs256 does not satisfy"),
        "{body}"
    );
    h.echo_status(&patches);

    apply(
        &mut h.writers.secrets[0],
        secret("auth-keys", "hs256", "a-signing-key-long-enough-for-hs256!"),
    );
    h.reconcile().await;
    let patches = h.api.take_status_patches();
    let body = &patches[0].1;
    assert_eq!(condition(body, "ResolvedRefs")["status"], "True", "{body}");
    assert_eq!(condition(body, "Compiled")["status"], "True", "{body}");
    assert!(!body.to_string().contains("a-signing-key"), "{body}");
}

#[tokio::test]
async fn config_map_edits_re_trigger_their_plugins_and_the_last_good_version_serves() {
    let proxy = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::new();
    h.objects(
        &[],
        &[plugin_json("auth", 1, "auth-src")],
        vec![
            config_map("auth-src", GOOD_PLUGIN),
            config_map("unrelated", "x"),
        ],
    );
    h.proxies(&[proxy.addr]);
    let first = h.lead().await;
    let patches = h.api.take_status_patches();
    assert_eq!(condition(&patches[0].1, "Compiled")["status"], "True");
    h.echo_status(&patches);

    // Only the ConfigMap a Plugin reads counts as a change.
    assert!(config_map_matters(
        &config_map("auth-src", BROKEN_PLUGIN),
        &h.stores.plugins
    ));
    assert!(!config_map_matters(
        &config_map("unrelated", "y"),
        &h.stores.plugins
    ));

    apply(
        &mut h.writers.config_maps[0],
        config_map("auth-src", BROKEN_PLUGIN),
    );
    let second = h.reconcile().await;
    let patches = h.api.take_status_patches();
    assert_eq!(patches.len(), 1);
    let (path, body) = &patches[0];
    assert!(path.ends_with("/plugins/auth/status"));
    let compiled = condition(body, "Compiled");
    assert_eq!(compiled["status"], "False");
    assert_eq!(compiled["reason"], "SyntaxError");
    let message = compiled["message"].as_str().unwrap();
    assert!(message.contains("2:"), "no line:col in {message}");
    assert!(message.contains("last good version"), "{message}");
    // The last good bundle stays in the snapshot, so the snapshot did not change.
    assert_eq!(second.version, first.version);
    assert!(second.pushed.is_empty());
    let programmed = condition(body, "Programmed");
    assert_eq!(programmed["status"], "True");
    assert!(
        programmed["message"]
            .as_str()
            .unwrap()
            .starts_with("the last good version applied on 1/1 proxies"),
        "{programmed}"
    );
    h.echo_status(&patches);

    // Fixing the source compiles again.
    apply(
        &mut h.writers.config_maps[0],
        config_map("auth-src", "export default { onLoad() {} };\n"),
    );
    let third = h.reconcile().await;
    assert_eq!(third.version, first.version + 1);
    assert_eq!(proxy.versions(), [first.version, third.version]);
    let patches = h.api.take_status_patches();
    assert_eq!(condition(&patches[0].1, "Compiled")["status"], "True");
}

#[tokio::test]
async fn a_failing_proxy_and_a_load_failure_are_reported() {
    let good = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let down = FakeProxy::start(Behaviour::Fail).await;
    let picky = FakeProxy::start(Behaviour::Apply(vec![(
        "Route".into(),
        "shop".into(),
        "api".into(),
        "certificate for api.example.com: key does not match".into(),
    )]))
    .await;
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "hi")],
        &[],
        Vec::new(),
    );
    h.proxies(&[good.addr, down.addr, picky.addr]);
    let outcome = h.lead().await;
    assert_eq!(outcome.pushed.len(), 3);
    assert_eq!(outcome.in_sync, (2, 3));
    assert!(h.reconciler.needs_retry());
    // Retried with backoff: the failing proxy saw every attempt.
    assert_eq!(good.versions(), [1]);
    let patches = h.api.take_status_patches();
    let programmed = condition(&patches[0].1, "Programmed");
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "LoadFailed");
    let message = programmed["message"].as_str().unwrap();
    assert!(message.starts_with("applied on 1/3 proxies"), "{message}");
    assert!(
        message.contains(&format!("{}: certificate for api.example.com", picky.addr)),
        "{message}"
    );
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains("weir_operator_proxies_in_sync 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_operator_push_duration_seconds_count{outcome=\"failed\"} 1"),
        "{metrics}"
    );

    // The failing proxy recovers; the retry pushes to it alone and status says so.
    *down.behaviour.lock().unwrap() = Behaviour::Apply(Vec::new());
    *picky.behaviour.lock().unwrap() = Behaviour::Apply(Vec::new());
    let retry = h.proxies_changed().await;
    assert_eq!(retry.pushed, [down.addr.to_string()]);
    assert_eq!(down.versions(), [1]);
    assert_eq!(good.versions(), [1]);
    // `picky` acknowledged version 1 with a failure: it is not pushed again, and still
    // reported, since what it serves is what it said.
    let patches = h.api.take_status_patches();
    let programmed = condition(&patches[0].1, "Programmed");
    assert_eq!(programmed["reason"], "LoadFailed");
    assert!(
        !programmed["message"]
            .as_str()
            .unwrap()
            .contains(&down.addr.to_string())
    );
}

#[tokio::test]
async fn a_new_proxy_gets_the_snapshot_at_once_and_only_it() {
    let first = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "hi")],
        &[],
        Vec::new(),
    );
    h.proxies(&[first.addr]);
    h.lead().await;
    h.api.take();
    let second = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    h.proxies(&[first.addr, second.addr]);
    let outcome = h.proxies_changed().await;
    assert_eq!(outcome.pushed, [second.addr.to_string()]);
    assert_eq!(second.versions(), [1]);
    assert_eq!(first.versions(), [1]);
    let patches = h.api.take_status_patches();
    assert_eq!(
        condition(&patches[0].1, "Programmed")["message"],
        "applied on 2/2 proxies"
    );
}

#[tokio::test]
async fn versions_start_above_the_proxies_and_renumber_on_conflict() {
    let old = FakeProxy::start(Behaviour::Apply(Vec::new())).await;
    let ahead = FakeProxy::start(Behaviour::Newer(41)).await;
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "hi")],
        &[],
        Vec::new(),
    );
    h.proxies(&[old.addr, ahead.addr]);
    // Read at start: the first snapshot is numbered above 41.
    let outcome = h.lead().await;
    assert_eq!(outcome.version, 42);
    assert_eq!(ahead.versions(), [42]);

    // A proxy that jumped ahead meanwhile (another operator) makes the next round renumber.
    *ahead.behaviour.lock().unwrap() = Behaviour::Newer(50);
    apply(
        &mut h.writers.routes[0],
        route(&route_json("api", 2, "api.example.com", "changed")),
    );
    let outcome = h.reconcile().await;
    assert_eq!(outcome.version, 51);
    assert_eq!(outcome.in_sync, (2, 2));
    assert_eq!(old.versions(), [42, 43, 51]);
    assert_eq!(ahead.versions(), [42, 51]);
}

#[tokio::test]
async fn no_proxy_means_pending() {
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "hi")],
        &[],
        Vec::new(),
    );
    h.proxies(&[]);
    let outcome = h.lead().await;
    assert_eq!(outcome.in_sync, (0, 0));
    let patches = h.api.take_status_patches();
    let programmed = condition(&patches[0].1, "Programmed");
    assert_eq!(programmed["reason"], "Pending");
    assert_eq!(programmed["message"], "no ready proxy endpoint");
    let reconciling = condition(&patches[0].1, "Reconciling");
    assert_eq!(
        (&reconciling["status"], &reconciling["reason"]),
        (&"True".into(), &"Pending".into())
    );
    assert_eq!(condition(&patches[0].1, "Ready")["status"], "False");
}

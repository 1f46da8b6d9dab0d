//! The compiler on Plugins: sources, TypeScript errors with positions, config schemas,
//! ordering, last good versions, and partial config across objects.

mod support;

use serde_json::json;
use support::*;
use weir_crds::compile::report::InSnapshot;
use weir_crds::condition::{ConditionType, Reason};
use weir_crds::plugin::{FailurePolicy, PluginScope};

#[test]
fn inline_typescript_is_bundled_with_defaults() {
    let c = compile_yaml(&plugin(
        "auth",
        &format!(
            "{}  config: {{header: x-user}}\n",
            inline_plugin(
                "export default {\n  beforeRequest(ctx: any): void { ctx.state.ok = true; },\n};"
            )
        ),
    ));
    let report = plugin_report(&c, "shop", "auth");
    assert_eq!(report.diagnostics, vec![]);
    assert_eq!(
        condition(report, ConditionType::Compiled),
        (true, Reason::Compiled)
    );
    let bundle = &c.snapshot.plugins["shop/auth"];
    assert!(
        bundle.code.contains("beforeRequest(ctx)"),
        "{}",
        bundle.code
    );
    assert!(!bundle.code.contains(": any"));
    assert!(bundle.code_hash.starts_with("sha256:"));
    assert_eq!(bundle.config, json!({"header": "x-user"}));
    assert_eq!((bundle.timeout_ms, bundle.memory_limit_mib), (100, 16));
    assert_eq!(
        (bundle.scope, bundle.failure_policy),
        (PluginScope::Attached, FailurePolicy::Closed)
    );
}

#[test]
fn configmap_sources_resolve_and_missing_ones_are_named() {
    let config_map = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: src, namespace: shop}\ndata:\n  plugin.ts: |\n    export default { onLoad() {} };\n  readme: x\n";
    let yaml = [
        config_map.to_owned(),
        plugin(
            "good",
            "  source: {configMapRef: {name: src, key: plugin.ts}}",
        ),
        plugin(
            "no-map",
            "  source: {configMapRef: {name: nothere, key: plugin.ts}}",
        ),
        plugin(
            "no-key",
            "  source: {configMapRef: {name: src, key: main.ts}}",
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    assert_eq!(plugin_report(&c, "shop", "good").diagnostics, vec![]);
    assert!(c.snapshot.plugins["shop/good"].code.contains("onLoad()"));

    let no_map = plugin_report(&c, "shop", "no-map");
    assert_eq!(
        diagnostic(
            no_map,
            "spec.source.configMapRef.name",
            Reason::ConfigMapNotFound
        ),
        "ConfigMap shop/nothere not found"
    );
    assert_eq!(
        condition(no_map, ConditionType::ResolvedRefs),
        (false, Reason::ConfigMapNotFound)
    );
    let no_key = plugin_report(&c, "shop", "no-key");
    assert_eq!(
        diagnostic(no_key, "spec.source.configMapRef.key", Reason::KeyNotFound),
        "ConfigMap shop/src has no key \"main.ts\" (keys: plugin.ts, readme)"
    );
    assert!(!c.snapshot.plugins.contains_key("shop/no-map"));
    assert!(!c.snapshot.plugins.contains_key("shop/no-key"));
}

#[test]
fn configmap_plugins_import_their_other_keys() {
    let config_map = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: src, namespace: shop}\ndata:\n  \
        auth.ts: |\n    import { verify } from \"./jwt\";\n    export default { beforeRequest(ctx: any) { verify(ctx); } };\n  \
        jwt.ts: |\n    export function verify(ctx: any): void { ctx.state.ok = true; }\n  \
        broken.ts: |\n    import { gone } from \"./gone\";\n    export default { beforeRequest() { gone(); } };\n";
    let yaml = [
        config_map.to_owned(),
        plugin("auth", "  source: {configMapRef: {name: src, key: auth.ts}}"),
        plugin("broken", "  source: {configMapRef: {name: src, key: broken.ts}}"),
        plugin(
            "inline",
            &inline_plugin("import { verify } from \"./jwt\";\nexport default { beforeRequest() { verify(); } };"),
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    assert_eq!(plugin_report(&c, "shop", "auth").diagnostics, vec![]);
    let bundle = &c.snapshot.plugins["shop/auth"];
    assert!(bundle.code.contains("from \"./jwt\""), "{}", bundle.code);
    assert_eq!(bundle.modules.keys().collect::<Vec<_>>(), ["jwt.ts"]);
    assert!(bundle.modules["jwt.ts"].contains("ctx.state.ok = true"));
    assert!(
        !bundle.modules["jwt.ts"].contains(": any"),
        "types stripped"
    );

    let message = diagnostic(
        plugin_report(&c, "shop", "broken"),
        "spec.source.configMapRef",
        Reason::ModuleNotFound,
    );
    assert!(
        message.starts_with("1:1: import of \"./gone\": the plugin has no file gone"),
        "{message}"
    );
    assert!(!c.snapshot.plugins.contains_key("shop/broken"));
    let message = diagnostic(
        plugin_report(&c, "shop", "inline"),
        "spec.source.code",
        Reason::ModuleNotFound,
    );
    assert!(
        message.contains("inline code has no other files"),
        "{message}"
    );
}

#[test]
fn typescript_errors_carry_their_position() {
    let yaml = [
        plugin(
            "syntax",
            &inline_plugin(
                "export default {\n  beforeRequest(ctx) {\n    if (ctx.user {\n  },\n};",
            ),
        ),
        plugin("no-default", &inline_plugin("export const hooks = {};")),
        plugin(
            "imports",
            &inline_plugin(
                "import { sign } from \"crypto\";\nexport default { beforeRequest() { sign(); } };",
            ),
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    let syntax = plugin_report(&c, "shop", "syntax");
    let message = diagnostic(syntax, "spec.source.code", Reason::SyntaxError);
    assert!(message.starts_with("3:18: "), "{message}");
    let compiled = desired_condition(syntax, ConditionType::Compiled);
    assert!(!compiled.status);
    assert!(
        compiled.message.starts_with("spec.source.code: 3:18: "),
        "{}",
        compiled.message
    );

    diagnostic(
        plugin_report(&c, "shop", "no-default"),
        "spec.source.code",
        Reason::MissingDefaultExport,
    );
    let message = diagnostic(
        plugin_report(&c, "shop", "imports"),
        "spec.source.code",
        Reason::ImportNotSupported,
    );
    assert!(
        message.starts_with("1:1: import of \"crypto\""),
        "{message}"
    );
    assert!(c.snapshot.plugins.is_empty(), "no broken code is kept");
}

#[test]
fn each_kind_of_invalid_plugin_field_is_named() {
    let code = inline_plugin(HELLO_PLUGIN);
    let cases: &[(&str, String, &str)] = &[
        (
            "both-sources",
            format!("{code}    configMapRef: {{name: a, key: b}}\n"),
            "spec.source",
        ),
        (
            "bad-schema",
            format!("{code}  configSchema: {{type: 12}}\n"),
            "spec.configSchema",
        ),
        (
            "config-vs-schema",
            format!(
                "{code}  config: {{limit: -1}}\n  configSchema: {{type: object, properties: {{limit: {{type: integer, minimum: 1}}}}}}\n"
            ),
            "spec.config.limit",
        ),
        (
            "slow",
            format!("{code}  timeoutMs: 60000\n"),
            "spec.timeoutMs",
        ),
        (
            "huge",
            format!("{code}  memoryLimitMiB: 0\n"),
            "spec.memoryLimitMiB",
        ),
        ("far", format!("{code}  order: 100000\n"), "spec.order"),
    ];
    let yaml: String = cases
        .iter()
        .map(|(name, spec, _)| plugin(name, spec))
        .collect();
    let c = compile_yaml(&yaml);
    for (name, _, field) in cases {
        let report = plugin_report(&c, "shop", name);
        diagnostic(report, field, Reason::Invalid);
        assert_eq!(
            condition(report, ConditionType::Accepted),
            (false, Reason::Invalid),
            "{name}"
        );
        assert!(
            !c.snapshot.plugins.contains_key(&format!("shop/{name}")),
            "{name}"
        );
    }
}

#[test]
fn plugin_chain_is_globals_by_order_then_attached_in_list_order() {
    let code = inline_plugin(HELLO_PLUGIN);
    let yaml = [
        plugin("log", &format!("{code}  scope: Global\n  order: 10\n")),
        plugin("cors-fix", &format!("{code}  scope: Global\n  order: 10\n")),
        plugin("request-id", &format!("{code}  scope: Global\n  order: -5\n")),
        plugin("jwt", &format!("{code}  config: {{audience: api, leeway: 5}}\n")),
        plugin("limit", &format!("{code}  config: {{rps: 10}}\n")),
        route(
            "api",
            "  plugins:
  - {name: limit, config: {rps: 100}}
  - {name: jwt, config: {audience: admin}}
  - {name: log, config: {verbose: true}}
  rules: [{directResponse: {status: 200}}]",
        ),
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: elsewhere, namespace: other}\nspec: {hosts: [other.example], rules: [{directResponse: {status: 200}}]}\n".to_owned(),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    assert_eq!(route_report(&c, "shop", "api").diagnostics, vec![]);
    let chain: Vec<(&str, serde_json::Value)> = c.snapshot.rules["shop/api/0"]
        .plugins
        .iter()
        .map(|p| {
            (
                p.plugin.as_str(),
                serde_json::from_str(p.config.get()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("shop/request-id", json!({})),
            ("shop/cors-fix", json!({})),
            ("shop/log", json!({"verbose": true})),
            ("shop/limit", json!({"rps": 100})),
            ("shop/jwt", json!({"audience": "admin", "leeway": 5})),
        ]
    );
    assert!(
        c.snapshot.rules["other/elsewhere/0"].plugins.is_empty(),
        "global plugins stay in their namespace"
    );
}

#[test]
fn route_config_overrides_are_checked_against_the_plugin_schema() {
    let yaml = [
        plugin(
            "limit",
            &format!(
                "{}  config: {{rps: 10}}\n  configSchema: {{type: object, properties: {{rps: {{type: integer, maximum: 1000}}}}}}\n",
                inline_plugin(HELLO_PLUGIN)
            ),
        ),
        route("greedy", "  plugins: [{name: limit, config: {rps: 5000}}]\n  rules: [{directResponse: {status: 200}}]"),
        route("fine", "  plugins: [{name: limit, config: {rps: 50}}]\n  rules: [{directResponse: {status: 200}}]"),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    let greedy = route_report(&c, "shop", "greedy");
    let message = diagnostic(greedy, "spec.plugins[0].config.rps", Reason::Invalid);
    assert!(message.contains("5000"), "{message}");
    assert_eq!(greedy.in_snapshot, InSnapshot::No);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(
            c.snapshot.rules["shop/fine/0"].plugins[0].config.get()
        )
        .unwrap(),
        json!({"rps": 50})
    );
}

#[test]
fn secret_refs_fill_configs_and_no_message_shows_their_values() {
    let secrets = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: keys, namespace: shop}\n\
        stringData: {hs256: plugin-signing-secret, tenant: route-tenant-secret}\n\
        data: {binary: /w==}\n";
    let schema = "  configSchema:\n    type: object\n    additionalProperties: false\n    properties:\n      \
        keys: {type: array, items: {type: object, properties: {kid: {type: string}, secret: {type: string, minLength: 8}}}}\n      \
        tenant: {type: string, maxLength: 5}\n";
    let yaml = [
        secrets.to_owned(),
        plugin(
            "jwt",
            &format!(
                "{}  config: {{keys: [{{kid: a}}]}}\n  secretRefs: [{{path: /keys/0/secret, secretName: keys, key: hs256}}]\n{schema}",
                inline_plugin(HELLO_PLUGIN)
            ),
        ),
        plugin(
            "missing",
            &format!(
                "{}  secretRefs:\n  - {{path: /a, secretName: nothere, key: k}}\n  - {{path: /b, secretName: keys, key: nokey}}\n  - {{path: /c, secretName: keys, key: binary}}\n",
                inline_plugin(HELLO_PLUGIN)
            ),
        ),
        route(
            "tenant",
            "  plugins: [{name: jwt, secretRefs: [{path: /tenant, secretName: keys, key: tenant}]}]\n  rules: [{directResponse: {status: 200}}]",
        ),
        route(
            "fine",
            "  plugins: [{name: jwt, config: {tenant: acme}}]\n  rules: [{directResponse: {status: 200}}]",
        ),
        route(
            "unresolved",
            "  plugins: [{name: jwt, secretRefs: [{path: /tenant, secretName: gone, key: x}]}]\n  rules: [{directResponse: {status: 200}}]",
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    assert_eq!(plugin_report(&c, "shop", "jwt").diagnostics, vec![]);
    let bundle = &c.snapshot.plugins["shop/jwt"];
    assert_eq!(
        bundle.config,
        json!({"keys": [{"kid": "a", "secret": "plugin-signing-secret"}]})
    );
    let fine: serde_json::Value =
        serde_json::from_str(c.snapshot.rules["shop/fine/0"].plugins[0].config.get()).unwrap();
    assert_eq!(fine["keys"][0]["secret"], "plugin-signing-secret");
    assert_eq!(fine["tenant"], "acme");

    let missing = plugin_report(&c, "shop", "missing");
    assert_eq!(
        diagnostic(
            missing,
            "spec.secretRefs[0].secretName",
            Reason::SecretNotFound
        ),
        "Secret shop/nothere not found"
    );
    diagnostic(missing, "spec.secretRefs[1].key", Reason::KeyNotFound);
    let binary = diagnostic(missing, "spec.secretRefs[2].key", Reason::Invalid);
    assert!(binary.contains("not UTF-8"), "{binary}");
    assert!(!c.snapshot.plugins.contains_key("shop/missing"));

    // The Route's own Secret value breaks the schema: named, never shown; nor is the
    // Plugin's, which the merged config holds too.
    let tenant = route_report(&c, "shop", "tenant");
    assert_eq!(tenant.in_snapshot, InSnapshot::No);
    let message = diagnostic(tenant, "spec.plugins[0].config.tenant", Reason::Invalid);
    assert!(
        message.contains("Secret shop/keys, key tenant") && message.contains("maxLength"),
        "{message}"
    );
    let everything = format!("{:?}", c.reports);
    for value in ["plugin-signing-secret", "route-tenant-secret"] {
        assert!(!everything.contains(value), "{value} shown in {everything}");
    }
    let unresolved = route_report(&c, "shop", "unresolved");
    assert_eq!(
        unresolved.in_snapshot,
        InSnapshot::No,
        "never served without its config"
    );
    diagnostic(
        unresolved,
        "spec.plugins[0].secretRefs[0].secretName",
        Reason::SecretNotFound,
    );
}

#[test]
fn a_route_never_serves_without_a_plugin_it_lists() {
    let yaml = [
        plugin("broken-auth", &inline_plugin("export default { beforeRequest( };")),
        route("guarded", "  plugins: [{name: broken-auth}]\n  rules: [{directResponse: {status: 200}}]"),
        route("typo", "  plugins: [{name: auht}]\n  rules: [{matches: [{path: {value: /t}}], directResponse: {status: 200}}]"),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    let guarded = route_report(&c, "shop", "guarded");
    let message = diagnostic(guarded, "spec.plugins[0].name", Reason::PluginNotReady);
    assert!(message.contains("shop/broken-auth"), "{message}");
    assert_eq!(guarded.in_snapshot, InSnapshot::No);
    assert_eq!(
        condition(guarded, ConditionType::ResolvedRefs),
        (false, Reason::PluginNotReady)
    );
    diagnostic(
        route_report(&c, "shop", "typo"),
        "spec.plugins[0].name",
        Reason::PluginNotFound,
    );
    assert!(c.snapshot.rules.is_empty());
}

#[test]
fn a_plugin_that_stops_compiling_keeps_its_last_good_version() {
    let good = [
        plugin(
            "auth",
            &format!("{}  config: {{v: 1}}\n", inline_plugin(HELLO_PLUGIN)),
        ),
        route(
            "api",
            "  plugins: [{name: auth}]\n  rules: [{directResponse: {status: 200}}]",
        ),
    ]
    .concat();
    let first = compile_yaml(&good);
    let served = first.snapshot.plugins["shop/auth"].clone();

    let broken = [
        plugin(
            "auth",
            &format!(
                "{}  config: {{v: 2}}\n",
                inline_plugin("export default { beforeRequest(ctx) { ctx. } };")
            ),
        ),
        route(
            "api",
            "  plugins: [{name: auth}]\n  rules: [{directResponse: {status: 200}}]",
        ),
    ]
    .concat();
    let m = manifests(&broken);
    let mut inputs = m.inputs();
    inputs.previous = Some(&first.snapshot);
    let second = weir_crds::compile(&inputs);

    assert_eq!(
        second.snapshot.plugins["shop/auth"], served,
        "the last good bundle, config and all"
    );
    let report = plugin_report(&second, "shop", "auth");
    assert_eq!(
        report.in_snapshot,
        InSnapshot::LastGood {
            generation: None,
            code_hash: served.code_hash.clone()
        }
    );
    let compiled = desired_condition(report, ConditionType::Compiled);
    assert!(!compiled.status);
    assert!(
        compiled.message.contains("the last good version"),
        "{}",
        compiled.message
    );
    assert_eq!(
        route_report(&second, "shop", "api").diagnostics,
        vec![],
        "its Routes keep working"
    );
    assert_eq!(
        second.snapshot.version, first.snapshot.version,
        "nothing changed for the proxies"
    );
}

#[test]
fn one_broken_route_and_one_broken_plugin_leave_the_rest_working() {
    let yaml = [
        plugin("good", &inline_plugin(HELLO_PLUGIN)),
        plugin("bad", &inline_plugin("export default { beforeRequest() { return 1 +; } };")),
        route("good-a", "  hosts: [a.example]\n  plugins: [{name: good}]\n  rules: [{directResponse: {status: 200}}]"),
        route("bad", "  hosts: [b.example]\n  rules: [{matches: [{path: {type: Regex, value: '(['}}], directResponse: {status: 200}}]"),
        route("good-c", "  hosts: [c.example]\n  rules: [{backends: [{url: 'http://127.0.0.1:8080'}]}]"),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    assert_eq!(c.snapshot.plugins.keys().collect::<Vec<_>>(), ["shop/good"]);
    let hosts: Vec<&str> = c
        .snapshot
        .virtual_hosts
        .iter()
        .map(|h| h.host.as_str())
        .collect();
    assert_eq!(hosts, ["a.example", "c.example"]);
    assert_eq!(route_report(&c, "shop", "bad").in_snapshot, InSnapshot::No);
    assert!(!condition(plugin_report(&c, "shop", "bad"), ConditionType::Compiled).0);
    assert_eq!(
        condition(plugin_report(&c, "shop", "good"), ConditionType::Compiled),
        (true, Reason::Compiled)
    );
}

#[test]
fn same_inputs_in_any_order_give_identical_bytes() {
    let documents = [
        plugin(
            "g",
            &format!(
                "{}  scope: Global\n  config: {{z: 1, a: 2}}\n",
                inline_plugin(HELLO_PLUGIN)
            ),
        ),
        plugin("p", &inline_plugin(HELLO_PLUGIN)),
        route(
            "one",
            "  hosts: [a.example, b.example]\n  plugins: [{name: p}]\n  rules: [{backends: [{url: 'http://10.0.0.1'}, {url: 'http://10.0.0.2'}]}]",
        ),
        route(
            "two",
            "  hosts: [b.example]\n  rules: [{matches: [{path: {value: /x}}], redirect: {host: c.example}}]",
        ),
        route(
            "three",
            "  rules: [{matches: [{path: {type: Template, value: '/u/{id}'}}], directResponse: {status: 200}}]",
        ),
    ];
    let forward = compile_yaml(&documents.concat());
    let mut reversed_docs = documents.clone();
    reversed_docs.reverse();
    let reversed = compile_yaml(&reversed_docs.concat());
    let bytes = |c: &weir_crds::Compilation| serde_json::to_vec(&c.snapshot).unwrap();
    assert_eq!(bytes(&forward), bytes(&reversed));
    assert_eq!(forward.reports, reversed.reports);
    assert!(forward.snapshot.hash_is_valid());
    assert_eq!(forward.snapshot.version, 1);
}

#[test]
fn version_moves_only_when_content_changes() {
    let first = compile_yaml(&route("r", "  rules: [{directResponse: {status: 200}}]"));
    let same = manifests(&route("r", "  rules: [{directResponse: {status: 200}}]"));
    let mut inputs = same.inputs();
    inputs.previous = Some(&first.snapshot);
    let again = weir_crds::compile(&inputs);
    assert_eq!(
        (again.snapshot.version, &again.snapshot.hash),
        (1, &first.snapshot.hash)
    );

    let changed = manifests(&route("r", "  rules: [{directResponse: {status: 201}}]"));
    let mut inputs = changed.inputs();
    inputs.previous = Some(&again.snapshot);
    let next = weir_crds::compile(&inputs);
    assert_eq!(next.snapshot.version, 2);
    assert_ne!(next.snapshot.hash, first.snapshot.hash);
}

#[test]
fn a_secret_whose_data_the_operator_did_not_keep_is_pending_not_missing() {
    let yaml = [
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\n  namespace: shop\n  annotations: {weir.dev/data-not-kept: 'true'}\n".to_owned(),
        plugin(
            "jwt",
            &format!(
                "{}  secretRefs: [{{path: /key, secretName: keys, key: hs256}}]\n",
                inline_plugin(HELLO_PLUGIN)
            ),
        ),
    ]
    .concat();
    let c = compile_yaml(&yaml);
    let report = plugin_report(&c, "shop", "jwt");
    let message = diagnostic(report, "spec.secretRefs[0].secretName", Reason::Pending);
    assert!(message.contains("is being read"), "{message}");
    assert_eq!(
        condition(report, ConditionType::ResolvedRefs),
        (false, Reason::Pending)
    );
    assert!(
        report.conditions().iter().all(|c| !c.warrants_event()),
        "a Secret being read again is no reason for a Warning Event"
    );
}

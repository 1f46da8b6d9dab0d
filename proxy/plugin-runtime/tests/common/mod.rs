//! Helpers shared by the runtime's integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use weir_crds::plugin::{FailurePolicy, PluginScope};
use weir_crds::snapshot::{PluginBundle, PluginCall};
use weir_plugin_runtime::{
    AfterResponse, BeforeRequest, Carry, Chain, Loaded, PluginRuntime, RequestInfo, ResponseInfo,
    RuntimeConfig, ShardPlugins,
};

/// A bundle from TypeScript source, transpiled as the compiler does.
pub fn bundle(id: &str, source: &str) -> PluginBundle {
    bundle_with_files(id, source, &[])
}

/// A bundle from an entry module that imports other files (name, TypeScript source),
/// linked as the compiler links a ConfigMap's keys.
pub fn bundle_with_files(id: &str, source: &str, files: &[(&str, &str)]) -> PluginBundle {
    let read = |name: &str| {
        files
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, text)| (*text).to_owned())
    };
    let linked = weir_crds::compile::modules::link("plugin.ts", source, read)
        .unwrap_or_else(|e| panic!("{id} does not transpile: {e:?}"));
    PluginBundle {
        code_hash: linked.code_hash(),
        modules: linked.modules,
        ..raw_bundle(id, &linked.code)
    }
}

/// A bundle whose code is used as given (to test code the compiler would refuse).
pub fn raw_bundle(id: &str, code: &str) -> PluginBundle {
    let (namespace, name) = id.split_once('/').unwrap();
    PluginBundle {
        namespace: namespace.into(),
        name: name.into(),
        generation: Some(1),
        code: code.into(),
        modules: Default::default(),
        code_hash: format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, code.as_bytes()))
        ),
        config: serde_json::json!({}),
        secret_paths: Default::default(),
        config_schema: None,
        order: 0,
        scope: PluginScope::Attached,
        // Generous, so a busy machine does not fail hooks; tests of budgets set their own.
        timeout_ms: 1_000,
        memory_limit_mib: 16,
        failure_policy: FailurePolicy::Closed,
    }
}

/// Runs a test on a shard: a current-thread runtime with a `LocalSet`, as each shard of
/// the proxy runs.
pub fn on_shard(test: impl std::future::Future<Output = ()>) {
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the shard's runtime starts");
    tokio::task::LocalSet::new().block_on(&executor, test);
}

/// The runtime, with the calling thread (inside [`on_shard`]) as its one shard.
#[derive(Clone)]
pub struct Shard {
    pub runtime: PluginRuntime,
    pub plugins: ShardPlugins,
}

impl Shard {
    pub async fn before_request(
        &self,
        chain: &Arc<Chain>,
        request: RequestInfo,
    ) -> (BeforeRequest, Carry) {
        self.plugins.before_request(chain, request).await
    }

    pub async fn after_response(
        &self,
        chain: &Arc<Chain>,
        carry: Carry,
        response: ResponseInfo,
    ) -> AfterResponse {
        self.plugins.after_response(chain, carry, response).await
    }
}

pub fn runtime_with(config: RuntimeConfig) -> (Shard, Registry) {
    let mut registry = Registry::default();
    let runtime = PluginRuntime::start(&config, &mut registry).expect("runtime starts");
    let plugins = runtime.attach();
    (Shard { runtime, plugins }, registry)
}

pub fn runtime() -> Shard {
    runtime_with(RuntimeConfig::default()).0
}

pub async fn load(shard: &Shard, bundles: Vec<PluginBundle>) -> Loaded {
    let map: BTreeMap<String, PluginBundle> = bundles
        .into_iter()
        .map(|b| (format!("{}/{}", b.namespace, b.name), b))
        .collect();
    shard.runtime.load(&map).await
}

pub fn chain(loaded: &Loaded, calls: &[(&str, serde_json::Value)]) -> Arc<Chain> {
    let calls: Vec<PluginCall> = calls
        .iter()
        .map(|(plugin, config)| PluginCall::new(*plugin, config))
        .collect();
    loaded.set.chain(&calls)
}

pub fn request(path: &str) -> RequestInfo {
    RequestInfo {
        method: "GET".into(),
        url: format!("https://shop.example{path}"),
        path: path.into(),
        query: String::new(),
        headers: vec![("host".into(), "shop.example".into())],
        route: "shop/api".into(),
        request_id: "req-1".into(),
        backends: vec![
            "service:shop/api:80".into(),
            "service:shop/api-canary:80".into(),
        ],
        ..RequestInfo::default()
    }
}

pub fn expect_continue(outcome: BeforeRequest) -> weir_plugin_runtime::RequestPatch {
    match outcome {
        BeforeRequest::Continue(patch) => patch,
        other => panic!("expected Continue, got {other:?}"),
    }
}

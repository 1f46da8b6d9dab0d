//! Test support: a fake Kubernetes API server behind a `tower_test` mock (status patches,
//! Events and Leases, recorded), fake proxies on loopback, and fixtures.

#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use weir_crds::{Plugin, Route};
use weir_operator::config::ProxyConfig;
use weir_operator::metrics::Metrics;
use weir_operator::push::Pusher;
use weir_operator::reconcile::{Outcome, Reconciler};
use weir_operator::status::{StatusLimits, StatusWriter};
use weir_operator::stored_route::StoredRoute;
use weir_operator::world::{Stores, Writers, stores_for};

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `future`, which must finish within [`PATIENCE`].
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("finished in time")
}

/// One request the fake API server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The `Accept` header (a metadata-only list or watch asks for
    /// `PartialObjectMetadataList`).
    pub accept: String,
    pub body: Value,
}

/// A fake API server: answers status patches with the object, creates Events, and keeps
/// Leases with optimistic concurrency on `resourceVersion`.
#[derive(Clone, Default)]
pub struct FakeApi {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Objects by API path (without `/status`), returned by status patches.
    pub objects: Arc<Mutex<HashMap<String, Value>>>,
    /// Leases by API path.
    pub leases: Arc<Mutex<HashMap<String, Value>>>,
    /// API discovery: the resource list served per group version path (e.g.
    /// `/apis/gateway.networking.k8s.io/v1`); others answer 404.
    pub discovery: Arc<Mutex<HashMap<String, Value>>>,
    /// Objects listed per collection path (e.g. `/api/v1/configmaps`).
    pub lists: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// Watch events waiting per collection path, served to the next watch request.
    pub watch_events: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// How many of the next status patches are refused with `429 Too Many Requests`.
    pub refuse_status: Arc<Mutex<u32>>,
    /// How long each status patch takes.
    pub status_delay: Arc<Mutex<Duration>>,
    /// While true, status patches wait (they are answered once it turns false).
    pub status_held: Arc<tokio::sync::watch::Sender<bool>>,
    /// Status patches being answered now, and the most at once.
    pub status_in_flight: Arc<Mutex<(usize, usize)>>,
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

impl FakeApi {
    /// A client talking to a fresh fake API server.
    pub fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Self::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let response = server.answer(request).await;
                    respond.send_response(response);
                });
            }
        });
        (Client::new(service, "default"), fake)
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let accept = request
            .headers()
            .get("accept")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            accept,
            body: body.clone(),
        });
        if method == Method::GET && path.starts_with("/apis/") && path.matches('/').count() == 3 {
            return match self.discovery.lock().unwrap().get(&path) {
                Some(resources) => ok(200, resources),
                None => status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            };
        }
        if method == Method::GET && !path.contains("/leases") {
            return self.list_or_watch(&path, &query).await;
        }
        if path.contains("/leases") {
            return self.lease(&method, &path, body);
        }
        if method == Method::PATCH
            && let Some(object_path) = path.strip_suffix("/status")
        {
            return self.patch_status(object_path, &body).await;
        }
        if method == Method::POST && path.ends_with("/events") {
            return ok(201, &body);
        }
        if method == Method::PATCH && path.contains("/events/") {
            return ok(200, &body);
        }
        status(
            404,
            "NotFound",
            &format!("the fake API server has no {method} {path}"),
        )
    }

    async fn patch_status(&self, object_path: &str, body: &Value) -> Response<Body> {
        {
            let mut refuse = self.refuse_status.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return status(
                    429,
                    "TooManyRequests",
                    "too many requests, please try again later",
                );
            }
        }
        {
            let mut in_flight = self.status_in_flight.lock().unwrap();
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        let delay = *self.status_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let _ = self.status_held.subscribe().wait_for(|held| !held).await;
        self.status_in_flight.lock().unwrap().0 -= 1;
        let mut objects = self.objects.lock().unwrap();
        let Some(object) = objects.get_mut(object_path) else {
            return status(404, "NotFound", "no such object");
        };
        // A patch carrying a resourceVersion applies only to the object at that version;
        // a write moves an object that has one to the next.
        let current = object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        if let Some(expected) = body["metadata"]["resourceVersion"].as_str()
            && current.as_deref() != Some(expected)
        {
            return status(409, "Conflict", "the object has been modified");
        }
        if let Some(version) = current {
            let next: u64 = version.parse::<u64>().unwrap() + 1;
            object["metadata"]["resourceVersion"] = json!(next.to_string());
        }
        object["status"] = body["status"].clone();
        ok(200, object)
    }

    async fn list_or_watch(&self, path: &str, query: &str) -> Response<Body> {
        if query.contains("watch=true") {
            let events = self
                .watch_events
                .lock()
                .unwrap()
                .get_mut(path)
                .map(std::mem::take)
                .unwrap_or_default();
            if events.is_empty() {
                // An empty watch ends at once and is reopened: pace it.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut body = Vec::new();
            for event in events {
                body.extend(serde_json::to_vec(&event).unwrap());
                body.push(b'\n');
            }
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
        }
        let items = self
            .lists
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default();
        ok(
            200,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        )
    }

    /// Serves the discovery of `group_version` (`group/version`) listing these kinds (and
    /// the status subresource of each).
    pub fn discover(&self, group_version: &str, kinds: &[(&str, &str)]) {
        let resources: Vec<Value> = kinds
            .iter()
            .flat_map(|(plural, kind)| {
                [
                    json!({"name": plural, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["get", "list", "watch"]}),
                    json!({"name": format!("{plural}/status"), "singularName": "", "namespaced": true, "kind": kind, "verbs": ["get", "patch"]}),
                ]
            })
            .collect();
        self.discovery.lock().unwrap().insert(
            format!("/apis/{group_version}"),
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        );
    }

    /// Queues a watch event (`ADDED`, `MODIFIED`, `DELETED`) on a collection path.
    pub fn watch_event(&self, path: &str, kind: &str, object: Value) {
        self.watch_events
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .push(json!({"type": kind, "object": object}));
    }

    fn lease(&self, method: &Method, path: &str, mut body: Value) -> Response<Body> {
        let mut leases = self.leases.lock().unwrap();
        match *method {
            Method::GET => match leases.get(path) {
                Some(lease) => ok(200, lease),
                None => status(404, "NotFound", "leases not found"),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                let path = format!("{path}/{name}");
                if leases.contains_key(&path) {
                    return status(409, "AlreadyExists", "lease exists");
                }
                body["metadata"]["resourceVersion"] = json!("1");
                leases.insert(path, body.clone());
                ok(201, &body)
            }
            Method::PUT => {
                let Some(current) = leases.get(path) else {
                    return status(404, "NotFound", "leases not found");
                };
                let version = current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                if body["metadata"]["resourceVersion"].as_str() != Some(&version) {
                    return status(409, "Conflict", "the object has been modified");
                }
                let next: u64 = version.parse::<u64>().unwrap() + 1;
                body["metadata"]["resourceVersion"] = json!(next.to_string());
                leases.insert(path.to_owned(), body.clone());
                ok(200, &body)
            }
            _ => status(405, "MethodNotAllowed", "no"),
        }
    }

    /// Registers an object so status patches can answer with it.
    pub fn know(&self, path: &str, object: &Value) {
        self.objects
            .lock()
            .unwrap()
            .insert(path.to_owned(), object.clone());
    }

    /// Waits for an Event with `reason` whose note contains `note` (Events may be
    /// published in the background), without emptying the record.
    pub async fn wait_for_event(&self, reason: &str, note: &str) -> Value {
        within(async {
            loop {
                let found = self
                    .seen
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|s| {
                        s.method == Method::POST
                            && s.path.ends_with("/events")
                            && s.body["reason"] == reason
                            && s.body["note"].as_str().is_some_and(|n| n.contains(note))
                    })
                    .map(|s| s.body.clone());
                if let Some(event) = found {
                    return event;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// The query string of the first request seen on `path`.
    pub fn first_query(&self, path: &str) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.query.clone())
            .unwrap_or_else(|| panic!("no request on {path}"))
    }

    /// The requests seen so far, emptying the record.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// The status patches of the paths `matching` says (path, body), emptying the record
    /// of requests until `count` were seen (writes run in the background).
    pub async fn wait_for_status_patches(
        &self,
        count: usize,
        matching: impl Fn(&str) -> bool,
    ) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        within(async {
            while seen.len() < count {
                seen.extend(
                    self.take_status_patches()
                        .into_iter()
                        .filter(|(path, _)| matching(path)),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        seen
    }

    /// The status patches seen so far (path, body), emptying the record of requests.
    pub fn take_status_patches(&self) -> Vec<(String, Value)> {
        self.take()
            .into_iter()
            .filter(|s| s.method == Method::PATCH && s.path.ends_with("/status"))
            .map(|s| (s.path, s.body))
            .collect()
    }
}

/// The status patched onto the weir object `plural/name` among `patches`.
pub fn patched_status<'a>(patches: &'a [(String, Value)], plural: &str, name: &str) -> &'a Value {
    let suffix = format!("/{plural}/{name}/status");
    &patches
        .iter()
        .find(|(path, _)| path.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no status patch for {plural}/{name}"))
        .1
}

/// API path of a weir object.
pub fn weir_path(plural: &str, namespace: &str, name: &str) -> String {
    format!("/apis/weir.dev/v1alpha1/namespaces/{namespace}/{plural}/{name}")
}

/// The condition of `type_` in a status patch body.
pub fn condition<'a>(body: &'a Value, type_: &str) -> &'a Value {
    body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {body}"))
}

/// What a fake proxy does with a push.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Applies it, reporting these (kind, namespace, name, message) load failures.
    Apply(Vec<(String, String, String, String)>),
    /// Answers 500 every time.
    Fail,
    /// Refuses it as stale: it serves `currentVersion` this high, until offered more.
    Newer(u64),
}

/// A fake proxy admin API on loopback recording the versions pushed to it.
#[derive(Clone)]
pub struct FakeProxy {
    pub addr: SocketAddr,
    pub pushes: Arc<Mutex<Vec<(u64, String)>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub tokens: Arc<Mutex<Vec<String>>>,
}

impl FakeProxy {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            pushes: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            tokens: Arc::default(),
        };
        let server = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let token = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        self.tokens.lock().unwrap().push(token);
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let encoding = request
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let reply = |status: StatusCode, body: Value| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            response
        };
        let behaviour = self.behaviour.lock().unwrap().clone();
        if method == Method::GET && path == "/v1/snapshot/version" {
            let version = match behaviour {
                Behaviour::Newer(v) => v,
                _ => self.pushes.lock().unwrap().last().map_or(0, |p| p.0),
            };
            return reply(
                StatusCode::OK,
                json!({"version": version, "hash": "sha256:x"}),
            );
        }
        // Pushes come gzip-compressed, as a real proxy decodes them.
        assert_eq!(encoding.as_deref(), Some("gzip"), "push body encoding");
        let snapshot = weir_crds::admin::decode_snapshot(&body, encoding.as_deref(), 64 << 20)
            .expect("a push body holds a snapshot");
        let (version, hash) = (snapshot.version, snapshot.hash);
        match behaviour {
            Behaviour::Fail => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": "disk on fire"}),
            ),
            Behaviour::Newer(current) if version <= current => reply(
                StatusCode::CONFLICT,
                json!({"error": "stale_version", "message": "old", "currentVersion": current}),
            ),
            Behaviour::Newer(_) | Behaviour::Apply(_) => {
                let failures: Vec<Value> = match behaviour {
                    Behaviour::Apply(failures) => failures
                        .into_iter()
                        .map(|(kind, namespace, name, message)| {
                            json!({"kind": kind, "namespace": namespace, "name": name, "message": message})
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                self.pushes.lock().unwrap().push((version, hash.clone()));
                reply(
                    StatusCode::OK,
                    json!({"version": version, "hash": hash, "failures": failures}),
                )
            }
        }
    }

    pub fn versions(&self) -> Vec<u64> {
        self.pushes.lock().unwrap().iter().map(|p| p.0).collect()
    }
}

/// Proxy settings for plain HTTP to loopback with token `secret`.
pub fn proxy_config() -> ProxyConfig {
    ProxyConfig {
        service: "weir-proxy-admin".into(),
        namespace: "weir".into(),
        port_name: Some("admin".into()),
        scheme: "http",
        token: "secret-token-of-at-least-32-characters".into(),
        token_file: None,
        ca_pem: None,
        server_name: None,
        push_timeout: Duration::from_secs(10),
        push_attempts: 2,
    }
}

/// The proxy admin Service's EndpointSlice listing these loopback addresses. All must
/// share one port (EndpointSlices have one port list): use [`slices_for`] otherwise.
pub fn proxy_slice(name: &str, addrs: &[SocketAddr]) -> EndpointSlice {
    let port = addrs.first().map_or(9901, |a| a.port());
    assert!(addrs.iter().all(|a| a.port() == port));
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "weir", "labels": {"kubernetes.io/service-name": "weir-proxy-admin"}},
        "addressType": "IPv4",
        "ports": [{"name": "admin", "port": port}],
        "endpoints": addrs.iter().map(|a| json!({"addresses": [a.ip().to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// One EndpointSlice per address (each proxy on its own port).
pub fn slices_for(addrs: &[SocketAddr]) -> Vec<EndpointSlice> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| proxy_slice(&format!("admin-{i}"), &[*a]))
        .collect()
}

/// Fills a store as a watcher's initial list does.
pub fn fill<K>(writer: &mut Writer<K>, objects: Vec<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Applies one object as a watch event does.
pub fn apply<K>(writer: &mut Writer<K>, object: K)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Apply(object));
}

/// A Route in namespace `shop` answering `body` on host `host`.
pub fn route_json(name: &str, generation: i64, host: &str, body: &str) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name, "namespace": "shop", "generation": generation, "uid": format!("uid-{name}")},
        "spec": {"hosts": [host], "rules": [{"directResponse": {"status": 200, "body": body}}]}
    })
}

/// A Plugin in namespace `shop` whose source is in ConfigMap `source`.
pub fn plugin_json(name: &str, generation: i64, source: &str) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": name, "namespace": "shop", "generation": generation, "uid": format!("uid-{name}")},
        "spec": {"source": {"configMapRef": {"name": source, "key": "index.ts"}}}
    })
}

/// A ConfigMap in namespace `shop` holding `index.ts`.
pub fn config_map(name: &str, code: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "data": {"index.ts": code}
    }))
    .unwrap()
}

/// A Route as the operator's store keeps it.
pub fn route(value: &Value) -> StoredRoute {
    serde_json::from_value::<Route>(value.clone())
        .unwrap()
        .into()
}

pub fn plugin(value: &Value) -> Plugin {
    serde_json::from_value(value.clone()).unwrap()
}

/// Plugin source that compiles.
pub const GOOD_PLUGIN: &str =
    "export default { beforeRequest(ctx: any) { ctx.request.headers; } };\n";

/// Plugin source with a syntax error on line 2.
pub const BROKEN_PLUGIN: &str = "export default {\n  beforeRequest(ctx: any) { ctx.( }\n};\n";

/// A reconciler over fresh stores (one namespace scope) with the fake API server.
pub struct Harness {
    pub reconciler: Reconciler,
    pub stores: Stores,
    pub writers: Writers,
    pub api: FakeApi,
    pub metrics: Metrics,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_limits(StatusLimits::default())
    }

    /// A harness whose status writer works within `limits`.
    pub fn with_limits(limits: StatusLimits) -> Self {
        Self::build(limits, weir_crds::Options::default())
    }

    /// A harness compiling with `options`.
    pub fn with_options(options: weir_crds::Options) -> Self {
        Self::build(StatusLimits::default(), options)
    }

    fn build(limits: StatusLimits, options: weir_crds::Options) -> Self {
        let (client, api) = FakeApi::start();
        let (stores, writers) = stores_for(1);
        let metrics = Metrics::new();
        let pusher = Pusher::new(&proxy_config()).unwrap();
        let status = StatusWriter::new(client, "test-replica", metrics.clone(), limits);
        let reconciler = Reconciler::new(
            stores.clone(),
            options,
            pusher,
            status,
            metrics.clone(),
            &proxy_config(),
        );
        Self {
            reconciler,
            stores,
            writers,
            api,
            metrics,
        }
    }

    /// The harness with a reconciler that publishes `publish` in Ingresses' status.
    pub fn publishing(mut self, publish: weir_operator::status::Publish) -> Self {
        self.reconciler = self.reconciler.publishing(publish);
        self
    }

    /// Takes over as leader, then waits for the status writes.
    pub async fn lead(&mut self) -> Outcome {
        let outcome = within(self.reconciler.lead()).await;
        within(self.reconciler.status().idle()).await;
        outcome
    }

    /// Reconciles, then waits for the status writes.
    pub async fn reconcile(&mut self) -> Outcome {
        let outcome = within(self.reconciler.reconcile()).await;
        within(self.reconciler.status().idle()).await;
        outcome
    }

    /// Pushes to new or lagging proxies, then waits for the status writes.
    pub async fn proxies_changed(&mut self) -> Outcome {
        let outcome = within(self.reconciler.proxies_changed()).await;
        within(self.reconciler.status().idle()).await;
        outcome
    }

    /// Puts Routes and Plugins in the stores and registers them with the fake API server.
    pub fn objects(&mut self, routes: &[Value], plugins: &[Value], config_maps: Vec<ConfigMap>) {
        for r in routes {
            self.api.know(
                &weir_path("routes", "shop", r["metadata"]["name"].as_str().unwrap()),
                r,
            );
        }
        for p in plugins {
            self.api.know(
                &weir_path("plugins", "shop", p["metadata"]["name"].as_str().unwrap()),
                p,
            );
        }
        fill(
            &mut self.writers.routes[0],
            routes.iter().map(route).collect(),
        );
        fill(
            &mut self.writers.plugins[0],
            plugins.iter().map(plugin).collect(),
        );
        fill(&mut self.writers.config_maps[0], config_maps);
        fill(&mut self.writers.services[0], Vec::new());
        fill(&mut self.writers.endpoint_slices[0], Vec::new());
        fill(&mut self.writers.secrets[0], Vec::new());
        fill(&mut self.writers.ingresses[0], Vec::new());
        fill(&mut self.writers.ingress_classes[0], Vec::new());
        fill(&mut self.writers.publish_service[0], Vec::new());
    }

    /// Lists these proxies as the admin Service's endpoints.
    pub fn proxies(&mut self, addrs: &[SocketAddr]) {
        fill(&mut self.writers.proxy_slices[0], slices_for(addrs));
    }

    /// Feeds the written status back into the stores, as the watch would.
    pub fn echo_status(&mut self, patches: &[(String, Value)]) {
        for (path, body) in patches {
            let object_path = path.strip_suffix("/status").unwrap();
            let object = self
                .api
                .objects
                .lock()
                .unwrap()
                .get(object_path)
                .cloned()
                .unwrap();
            let mut object = object.clone();
            object["status"] = body["status"].clone();
            if object["kind"] == "Route" {
                apply(&mut self.writers.routes[0], route(&object));
            } else {
                apply(&mut self.writers.plugins[0], plugin(&object));
            }
        }
    }
}

//! Plugins in the proxy, over real HTTP with loopback backends: hooks applied (upstream
//! headers, path, body, response status/headers/body, reject, direct answers, forward),
//! ordering, failure policies, load failures in the admin answer, hot reload under load,
//! and plugin metrics.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;
use weir_crds::snapshot::Snapshot;

/// A Plugin in namespace `test` with inline code and extra spec lines (indented by two).
/// Hooks get 5 s unless `extra` sets `timeoutMs`, so a busy machine does not fail them.
fn plugin(name: &str, extra: &str, code: &str) -> String {
    let indented: String = code.lines().map(|l| format!("      {l}\n")).collect();
    let budget = if extra.contains("timeoutMs") {
        ""
    } else {
        "  timeoutMs: 5000\n"
    };
    format!(
        "---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}, namespace: test}}\nspec:\n{budget}  source:\n    code: |\n{indented}{extra}\n"
    )
}

/// A route `name` on host `<name>.example` forwarding to `upstream`, running `plugins`.
fn plugin_route(name: &str, upstream: &Upstream, plugins: &[&str]) -> String {
    let list: Vec<String> = plugins.iter().map(|p| format!("{{name: {p}}}")).collect();
    route(
        name,
        &format!(
            "  hosts: [{name}.example]\n  plugins: [{}]\n  rules: [{{backends: [{{url: '{}'}}]}}]",
            list.join(", "),
            upstream.url()
        ),
    )
}

async fn request(method: Method, url: &str, host: &str, body: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("host", host)
        .header("x-secret", "from-the-client")
        .body(Full::from(body.to_owned()))
        .unwrap();
    send(&client(), request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_request_edits_reach_the_backend_and_bodies_stream_on() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|c| c.plugins.body_limit_bytes = 1024).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            plugin(
                "edit",
                "",
                r#"export default {
  async beforeRequest(ctx) {
    ctx.upstream.headers.set("x-user", "alice");
    ctx.upstream.headers.delete("x-secret");
    ctx.upstream.path = "/rewritten" + ctx.request.path;
    if (ctx.request.method === "POST") {
      try {
        const body = await ctx.request.json();
        ctx.upstream.headers.set("x-order", String(body.order));
      } catch (e) {
        ctx.upstream.headers.set("x-body", "too-large");
      }
    }
    ctx.response.headers.set("x-seen-by", "edit");
  },
};"#
            ),
            plugin_route("edit", &backend, &["edit"])
        ))
        .await;

    let answer = request(Method::GET, &proxy.url("/a?q=1"), "edit.example", "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers["x-seen-by"], "edit");
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.headers["x-user"], "alice");
    assert!(!seen.headers.contains_key("x-secret"));
    assert_eq!(seen.uri, "/rewritten/a?q=1", "the client's query is kept");

    // A small JSON body is readable by the plugin and still sent on whole.
    let answer = request(
        Method::POST,
        &proxy.url("/orders"),
        "edit.example",
        r#"{"order": 42}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.headers["x-order"], "42");
    assert_eq!(seen.body, r#"{"order": 42}"#);

    // A body over the limit stays in the proxy and streams on untouched.
    let large = "x".repeat(100_000);
    let answer = request(Method::POST, &proxy.url("/upload"), "edit.example", &large).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.headers["x-body"], "too-large");
    assert_eq!(seen.body.len(), large.len());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_edit_keeps_the_routes_rewrite_of_the_path() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            plugin(
                "strip-key",
                "",
                r#"export default {
  beforeRequest(ctx) {
    const query = new URLSearchParams(ctx.request.rawQuery);
    query.delete("api_key");
    ctx.upstream.query = query;
    try { ctx.upstream.query = "a b"; } catch (e) { ctx.upstream.headers.set("x-refused", e.name); }
  },
};"#
            ),
            route(
                "strip",
                &format!(
                    "  hosts: [strip.example]\n  plugins: [{{name: strip-key}}]\n  rules:\n  - matches: [{{path: {{value: /api}}}}]\n    rewrite: {{stripPrefix: true}}\n    backends: [{{url: '{}'}}]",
                    backend.url()
                ),
            )
        ))
        .await;

    let answer = request(
        Method::GET,
        &proxy.url("/api/orders?api_key=K&x=1"),
        "strip.example",
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    assert_eq!(
        seen.uri, "/orders?x=1",
        "the rewrite stays, the key is gone"
    );
    assert_eq!(seen.headers["x-refused"], "TypeError");

    request(
        Method::GET,
        &proxy.url("/api/orders?api_key=K"),
        "strip.example",
        "",
    )
    .await;
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.uri, "/orders", "an empty query sends none");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_replaces_the_body_sent_upstream_with_its_own_length() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|c| c.plugins.body_limit_bytes = 1024).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            plugin(
                "reshape",
                "",
                r#"export default {
  async beforeRequest(ctx) {
    if (ctx.request.method === "POST") {
      const order = await ctx.request.json();
      ctx.upstream.body = { order: order.id, by: "weir" };
    } else {
      ctx.upstream.body = new Uint8Array([0, 159, 146, 150]);
    }
  },
};"#
            ),
            plugin_route("reshape", &backend, &["reshape"])
        ))
        .await;

    let post = Request::builder()
        .method(Method::POST)
        .uri(proxy.url("/orders"))
        .header("host", "reshape.example")
        .header("content-type", "text/plain")
        .body(Full::from(r#"{"id": 7}"#))
        .unwrap();
    let answer = send(&client(), post).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.body, r#"{"order":7,"by":"weir"}"#);
    assert_eq!(seen.headers["content-length"], "23");
    assert_eq!(
        seen.headers["content-type"], "text/plain",
        "the client's content-type is the plugin's to change"
    );

    let answer = request(Method::PUT, &proxy.url("/blob"), "reshape.example", "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.body.as_ref(), [0, 159, 146, 150], "bytes, not text");
    assert_eq!(seen.headers["content-length"], "4");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_response_sets_status_headers_and_body() {
    let large = "y".repeat(200_000);
    let large_body = large.clone();
    let backend = Upstream::start(move |seen| {
        let large = large_body.clone();
        async move {
            if seen.uri == "/large" {
                text(StatusCode::OK, &large)
            } else {
                text(StatusCode::OK, "hello from upstream")
            }
        }
    })
    .await;
    let proxy = TestProxy::start(|c| c.plugins.body_limit_bytes = 1024).await;
    proxy
        .apply_yaml(&format!(
            "{}{}",
            plugin(
                "shout",
                "",
                r#"export default {
  async afterResponse(ctx) {
    let upstream;
    try {
      upstream = await ctx.response.text();
    } catch (e) {
      ctx.response.headers.set("x-body", "too-large");
      return;
    }
    ctx.response.status = 201;
    ctx.response.headers.set("x-upstream-status", "200");
    ctx.response.setBody(upstream.toUpperCase());
  },
};"#
            ),
            plugin_route("shout", &backend, &["shout"])
        ))
        .await;
    let answer = get(&proxy.url("/"), "shout.example").await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.headers["x-upstream-status"], "200");
    assert_eq!(answer.text(), "HELLO FROM UPSTREAM");
    assert_eq!(
        answer.headers["content-length"],
        "HELLO FROM UPSTREAM".len().to_string()
    );

    // A response body over the limit stays a stream and arrives whole.
    let answer = get(&proxy.url("/large"), "shout.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-body"], "too-large");
    assert_eq!(answer.body.len(), large.len());
    assert_eq!(answer.text(), large);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reject_and_answer_directly_without_the_backend() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(&format!(
            "{}{}{}{}",
            plugin(
                "guard",
                "",
                r#"export default {
  beforeRequest(ctx) {
    if (ctx.request.headers["authorization"] !== "Bearer ok") {
      return ctx.reject(401, { error: "unauthorized" }, { "www-authenticate": "Bearer" });
    }
  },
};"#
            ),
            plugin(
                "answer",
                "",
                r#"export default {
  beforeRequest(ctx) {
    ctx.response.status = 200;
    ctx.response.headers.set("content-type", "text/plain");
    ctx.response.setBody("answered by " + ctx.request.pathParams.id);
  },
};"#
            ),
            plugin_route("guard", &backend, &["guard"]),
            route(
                "answer",
                &format!(
                    "  hosts: [answer.example]\n  plugins: [{{name: answer}}]\n  rules: [{{matches: [{{path: {{type: Template, value: '/items/{{id}}'}}}}], backends: [{{url: '{}'}}]}}]",
                    backend.url()
                ),
            )
        ))
        .await;

    let answer = get(&proxy.url("/"), "guard.example").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["error"], "unauthorized");
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    let allowed = Request::get(proxy.url("/"))
        .header("host", "guard.example")
        .header("authorization", "Bearer ok")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client(), allowed).await.text(), "backend");
    assert_eq!(
        backend.requests().len(),
        1,
        "only the allowed request went up"
    );

    let answer = get(&proxy.url("/items/7"), "answer.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "answered by 7");
    assert_eq!(backend.requests().len(), 1, "answered without the backend");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_picks_another_backend_or_an_allow_listed_url_and_ignores_the_rest() {
    let blue = Upstream::named("blue").await;
    let green = Upstream::named("green").await;
    let canary = Upstream::named("canary").await;
    let allowed = format!("{}/canary/", canary.url());
    let proxy = TestProxy::start(|c| c.plugins.forward_allow_list = vec![allowed]).await;
    let code = format!(
        r#"export default {{
  beforeRequest(ctx) {{
    const to = ctx.request.headers["x-to"];
    if (to === "blue") ctx.forward("url:{blue}");
    if (to === "green") ctx.forward("url:{green}");
    if (to === "canary") ctx.forward("{canary}/canary/v2?from=plugin");
    if (to === "evil") ctx.forward("http://169.254.169.254/latest");
  }},
}};"#,
        blue = blue.url(),
        green = green.url(),
        canary = canary.url()
    );
    proxy
        .apply_yaml(&format!(
            "{}{}",
            plugin("steer", "", &code),
            route(
                "steer",
                &format!(
                    "  hosts: [steer.example]\n  plugins: [{{name: steer}}]\n  rules: [{{backends: [{{url: '{}'}}, {{url: '{}'}}]}}]",
                    blue.url(),
                    green.url()
                ),
            )
        ))
        .await;
    let to = |target: &'static str| {
        let url = proxy.url("/x");
        async move {
            let request = Request::get(url)
                .header("host", "steer.example")
                .header("x-to", target)
                .body(Full::default())
                .unwrap();
            send(&client(), request).await
        }
    };
    for _ in 0..5 {
        assert_eq!(to("blue").await.text(), "blue");
        assert_eq!(to("green").await.text(), "green");
    }
    let answer = to("canary").await;
    assert_eq!(answer.text(), "canary");
    assert_eq!(canary.requests()[0].uri, "/canary/v2?from=plugin");
    // Neither a backend of the route nor allow-listed: logged, ignored, the rule decides.
    let answer = to("evil").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        matches!(answer.text().as_str(), "blue" | "green"),
        "{}",
        answer.text()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_plugins_run_first_by_order_then_name_then_attached_ones() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|_| {}).await;
    let trail = |mark: &str| {
        format!(
            r#"export default {{
  beforeRequest(ctx) {{
    ctx.upstream.headers.append("x-trail", "{mark}");
    ctx.state.trail = (ctx.state.trail ?? "") + "{mark}";
  }},
  afterResponse(ctx) {{
    ctx.response.headers.append("x-after", "{mark}");
    ctx.response.headers.set("x-state", String(ctx.state.trail));
  }},
}};"#
        )
    };
    proxy
        .apply_yaml(&format!(
            "{}{}{}{}{}",
            plugin("zeta", "  scope: Global\n  order: 1", &trail("zeta")),
            plugin("beta", "  scope: Global\n  order: 2", &trail("beta")),
            plugin("alpha", "  scope: Global\n  order: 2", &trail("alpha")),
            plugin("attached", "", &trail("attached")),
            plugin_route("ordered", &backend, &["attached"])
        ))
        .await;
    let answer = get(&proxy.url("/"), "ordered.example").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let seen = backend.requests().pop().unwrap();
    let trail: Vec<_> = seen
        .headers
        .get_all("x-trail")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(trail.join(","), "zeta,alpha,beta,attached");
    let after: Vec<_> = answer
        .headers
        .get_all("x-after")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(after.join(","), "zeta,alpha,beta,attached", "same order");
    assert_eq!(answer.headers["x-state"], "zetaalphabetaattached");
    proxy.stop().await;
}

const THROWS: &str = r#"export default {
  beforeRequest(ctx) {
    throw new Error("secret-detail: key=hunter2");
  },
};"#;

const LOOPS: &str = r#"export default {
  beforeRequest(ctx) {
    while (true) {}
  },
};"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_answer_503_or_skip_and_the_proxy_keeps_serving() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|_| {}).await;
    // Budgets: long enough that a busy machine does not time out the good plugin, short
    // enough to keep the test quick.
    proxy
        .apply_yaml(&[
            plugin("throw-closed", "  failurePolicy: Closed", THROWS),
            plugin("throw-open", "  failurePolicy: Open", THROWS),
            plugin("loop-closed", "  failurePolicy: Closed\n  timeoutMs: 50", LOOPS),
            plugin("loop-open", "  failurePolicy: Open\n  timeoutMs: 50", LOOPS),
            plugin(
                "good",
                "  timeoutMs: 5000",
                r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-good", "1"); } };"#,
            ),
            plugin_route("throw-closed", &backend, &["throw-closed"]),
            plugin_route("throw-open", &backend, &["throw-open", "good"]),
            plugin_route("loop-closed", &backend, &["loop-closed"]),
            plugin_route("loop-open", &backend, &["loop-open", "good"]),
            plugin_route("plain", &backend, &[]),
        ]
        .concat())
        .await;
    for _ in 0..3 {
        for host in ["throw-closed.example", "loop-closed.example"] {
            let answer = get(&proxy.url("/"), host).await;
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
            let body = answer.json();
            let plugin = format!("test/{}", host.trim_end_matches(".example"));
            assert_eq!(body["error"], "plugin_failed", "{body}");
            assert_eq!(body["plugin"], plugin.as_str(), "{body}");
            assert!(
                body["message"].as_str().unwrap().contains(&plugin),
                "{body}"
            );
            assert!(!answer.text().contains("secret"), "no detail: {body}");
            assert!(!answer.text().contains("hunter2"), "no detail: {body}");
            assert!(!answer.text().contains("at "), "no stack: {body}");
        }
        for host in ["throw-open.example", "loop-open.example"] {
            let answer = get(&proxy.url("/"), host).await;
            assert_eq!(answer.status, StatusCode::OK, "{host}: {}", answer.text());
            assert_eq!(answer.text(), "backend");
            let seen = backend.requests().pop().unwrap();
            assert_eq!(seen.headers["x-good"], "1", "later plugins still run");
        }
    }
    // Other requests are unaffected, while and after plugins fail.
    let url = proxy.url("/");
    let (looping, plain) =
        tokio::join!(get(&url, "loop-closed.example"), get(&url, "plain.example"));
    assert_eq!(looping.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(plain.text(), "backend");
    assert_eq!(
        get(&proxy.url("/"), "throw-open.example").await.text(),
        "backend"
    );
    proxy.stop().await;
}

const TOKEN: &str = "plugin-token-of-at-least-32-characters";

async fn push(proxy: &TestProxy, yaml: &str, version: u64) -> serde_json::Value {
    push_snapshot(proxy, compile_yaml(yaml, version)).await
}

async fn push_snapshot(proxy: &TestProxy, snapshot: Snapshot) -> serde_json::Value {
    let request = Request::put(proxy.admin_url("/v1/snapshot"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::from(serde_json::to_vec(&snapshot).unwrap()))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_fail_to_load_are_reported_and_the_rest_is_applied() {
    let backend = Upstream::named("backend").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let proxy = TestProxy::start(|c| c.admin_token_file = Some(token_file)).await;
    let versioned = |version: &str| {
        format!(
            r#"export default {{
  onLoad(ctx) {{ {} }},
  beforeRequest(ctx) {{ ctx.response.headers.set("x-version", "{version}"); }},
}};"#,
            if version == "broken" {
                r#"throw new Error("no config");"#
            } else {
                ""
            }
        )
    };
    let yaml = |flaky: &str| {
        [
            plugin("flaky", "  failurePolicy: Closed", &versioned(flaky)),
            plugin(
                "never",
                "  failurePolicy: Closed",
                r#"throw new Error("broken at load"); export default {};"#,
            ),
            plugin(
                "never-open",
                "  failurePolicy: Open",
                r#"throw new Error("broken at load"); export default {};"#,
            ),
            plugin("fine", "", &versioned("fine")),
            plugin_route("flaky", &backend, &["flaky"]),
            plugin_route("never", &backend, &["never"]),
            plugin_route("never-open", &backend, &["never-open"]),
            plugin_route("fine", &backend, &["fine"]),
        ]
        .concat()
    };

    // The compiler refuses syntax errors; a snapshot from elsewhere may still carry one.
    let mut snapshot = compile_yaml(&yaml("1"), 1);
    let mut garbled = snapshot.plugins["test/fine"].clone();
    garbled.name = "garbled".into();
    garbled.code = "export default {".into();
    garbled.code_hash = "sha256:garbled".into();
    snapshot.plugins.insert("test/garbled".into(), garbled);
    snapshot.hash = snapshot.content_hash();
    let answer = push_snapshot(&proxy, snapshot).await;
    let failures = answer["failures"].as_array().unwrap().clone();
    let named: Vec<_> = failures
        .iter()
        .map(|f| format!("{} {}/{}", f["kind"], f["namespace"], f["name"]).replace('"', ""))
        .collect();
    assert_eq!(
        named,
        [
            "Plugin test/garbled",
            "Plugin test/never",
            "Plugin test/never-open"
        ],
        "{answer}"
    );
    assert!(
        failures[0]["message"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{answer}"
    );
    assert!(
        failures[1]["message"]
            .as_str()
            .unwrap()
            .contains("broken at load"),
        "{answer}"
    );
    assert_eq!(
        get(&proxy.url("/"), "fine.example").await.headers["x-version"],
        "fine"
    );
    assert_eq!(
        get(&proxy.url("/"), "flaky.example").await.headers["x-version"],
        "1"
    );
    // No loaded version: the plugin's failure policy decides.
    let never = get(&proxy.url("/"), "never.example").await;
    assert_eq!(never.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(never.json()["plugin"], "test/never");
    assert_eq!(
        get(&proxy.url("/"), "never-open.example").await.text(),
        "backend"
    );

    // A new version whose onLoad throws: reported, and the previous version keeps serving.
    let answer = push(&proxy, &yaml("broken"), 2).await;
    let flaky = answer["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "flaky")
        .cloned()
        .unwrap_or_else(|| panic!("flaky is reported: {answer}"));
    let message = flaky["message"].as_str().unwrap();
    assert!(message.contains("no config"), "{message}");
    assert!(
        message.contains("previous version keeps serving"),
        "{message}"
    );
    assert_eq!(
        get(&proxy.url("/"), "flaky.example").await.headers["x-version"],
        "1"
    );

    let answer = push(&proxy, &yaml("3"), 3).await;
    assert_eq!(answer["failures"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(
        get(&proxy.url("/"), "flaky.example").await.headers["x-version"],
        "3"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_plugin_versions_under_continuous_load_fail_no_request() {
    let backend = Upstream::named("backend").await;
    let proxy = Arc::new(TestProxy::start(|_| {}).await);
    let yaml = |version: u32| {
        format!(
            "{}{}",
            plugin(
                "versioned",
                "  timeoutMs: 5000",
                &format!(
                    r#"export default {{
  beforeRequest(ctx) {{ ctx.upstream.headers.set("x-version", "{version}"); }},
  afterResponse(ctx) {{ ctx.response.headers.set("x-version", "{version}"); }},
}};"#
                ),
            ),
            plugin_route("live", &backend, &["versioned"])
        )
    };
    proxy.apply_yaml(&yaml(0)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (proxy, stop, done) = (proxy.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let c = client();
                let mut failures = Vec::new();
                let mut versions = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let request = Request::get(proxy.url("/"))
                        .header("host", "live.example")
                        .body(Full::default())
                        .unwrap();
                    let answer = send(&c, request).await;
                    match answer.headers.get("x-version") {
                        Some(version) if answer.status == StatusCode::OK => {
                            versions.insert(version.to_str().unwrap().parse::<u32>().unwrap());
                        }
                        _ => failures.push(format!("{} {}", answer.status, answer.text())),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (failures, versions)
            })
        })
        .collect();
    const VERSIONS: u32 = 30;
    for version in 1..=VERSIONS {
        let before = done.load(Ordering::Relaxed);
        proxy.apply_yaml(&yaml(version)).await;
        // Let a few requests through on each version.
        wait_for(|| done.load(Ordering::Relaxed) >= before + 3).await;
    }
    let before = done.load(Ordering::Relaxed);
    wait_for(|| done.load(Ordering::Relaxed) >= before + 10).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    for client in clients {
        let (failed, seen) = client.await.unwrap();
        failures.extend(failed);
        versions.extend(seen);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures
    );
    assert!(versions.contains(&VERSIONS), "{versions:?}");
    assert!(
        versions.len() > VERSIONS as usize / 2,
        "responses switched: {versions:?}"
    );
    let seen = backend.requests().pop().unwrap();
    assert_eq!(seen.headers["x-version"], VERSIONS.to_string().as_str());
    let answer = get(&proxy.url("/"), "live.example").await;
    assert_eq!(answer.headers["x-version"], VERSIONS.to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_metrics_appear_on_the_admin_listener() {
    let backend = Upstream::named("backend").await;
    let proxy = TestProxy::start(|_| {}).await;
    proxy
        .apply_yaml(
            &[
                plugin(
                    "timed",
                    "  timeoutMs: 5000",
                    r#"export default {
  beforeRequest(ctx) { ctx.upstream.headers.set("x-a", "1"); },
  afterResponse(ctx) {},
};"#,
                ),
                plugin("thrower", "  failurePolicy: Open", THROWS),
                plugin("looper", "  failurePolicy: Open\n  timeoutMs: 50", LOOPS),
                plugin(
                    "rejecter",
                    "",
                    "export default { beforeRequest(ctx) { ctx.reject(403); } };",
                ),
                plugin_route("timed", &backend, &["timed"]),
                plugin_route("thrower", &backend, &["thrower"]),
                plugin_route("looper", &backend, &["looper"]),
                plugin_route("rejecter", &backend, &["rejecter"]),
            ]
            .concat(),
        )
        .await;
    for host in [
        "timed.example",
        "thrower.example",
        "looper.example",
        "rejecter.example",
    ] {
        let answer = get(&proxy.url("/"), host).await;
        let expected = if host == "rejecter.example" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(answer.status, expected, "{host}: {}", answer.text());
    }
    let metrics = get(&proxy.admin_url("/metrics"), "admin").await.text();
    for expected in [
        r#"weir_plugin_hook_duration_seconds_count{plugin="test/timed",hook="beforeRequest"} 1"#,
        r#"weir_plugin_hook_duration_seconds_count{plugin="test/timed",hook="afterResponse"} 1"#,
        r#"weir_plugin_errors_total{plugin="test/thrower",kind="exception"} 1"#,
        r#"weir_plugin_errors_total{plugin="test/looper",kind="timeout"} 1"#,
        r#"weir_plugin_errors_total{plugin="test/rejecter",kind="rejected"} 1"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
    proxy.stop().await;
}

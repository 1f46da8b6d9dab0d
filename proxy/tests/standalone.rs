//! Standalone mode: manifests from a directory, reloaded on change; a broken file keeps
//! its last good version serving while the others move on.

mod support;

use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use support::*;

fn write(dir: &Path, file: &str, yaml: &str) {
    // Write then rename, as editors and `kubectl` do, so the watcher never sees half a file.
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, yaml).unwrap();
    std::fs::rename(&temporary, dir.join(file)).unwrap();
}

fn fixed(host: &str, body: &str) -> String {
    route(
        host.split('.').next().unwrap(),
        &format!("  hosts: [{host}]\n  rules: [{{directResponse: {{status: 200, body: {body}}}}}]"),
    )
}

/// Waits until `host` answers `expected`.
async fn eventually(proxy: &TestProxy, host: &str, expected: &str) {
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            let answer = get(&proxy.url("/"), host).await;
            if answer.status == StatusCode::OK && answer.text() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "{host} never answered {expected:?}");
}

#[tokio::test]
async fn files_are_served_and_reloaded_on_change() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &fixed("a.example", "one"));
    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;
    assert!(
        proxy.gateway.is_ready(),
        "ready once the directory compiled"
    );
    assert_eq!(get(&proxy.url("/"), "a.example").await.text(), "one");

    write(dir.path(), "a.yaml", &fixed("a.example", "two"));
    eventually(&proxy, "a.example", "two").await;

    write(dir.path(), "b.yml", &fixed("b.example", "bee"));
    eventually(&proxy, "b.example", "bee").await;

    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    tokio::time::timeout(PATIENCE, async {
        while get(&proxy.url("/"), "b.example").await.status != StatusCode::NOT_FOUND {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a deleted file's routes go away");
    proxy.stop().await;
}

#[tokio::test]
async fn a_broken_file_keeps_its_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &fixed("a.example", "good"));
    write(dir.path(), "b.yaml", &fixed("b.example", "bee"));
    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;

    // Not YAML at all.
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nspec: [unclosed\n",
    );
    // An unknown field (a typo) in another file, and an invalid regular expression.
    write(
        dir.path(),
        "b.yaml",
        &route("b", "  hosts: [b.example]\n  rulez: []"),
    );
    write(
        dir.path(),
        "c.yaml",
        &route(
            "c",
            "  hosts: [c.example]\n  rules: [{matches: [{path: {type: Regex, value: '(['}}], directResponse: {status: 200}}]",
        ),
    );
    // A good change elsewhere must still go through.
    write(dir.path(), "d.yaml", &fixed("d.example", "dee"));
    eventually(&proxy, "d.example", "dee").await;
    assert_eq!(
        get(&proxy.url("/"), "a.example").await.text(),
        "good",
        "last good version of a.yaml"
    );
    assert_eq!(
        get(&proxy.url("/"), "b.example").await.text(),
        "bee",
        "last good version of b.yaml"
    );
    assert_eq!(
        get(&proxy.url("/"), "c.example").await.status,
        StatusCode::NOT_FOUND,
        "c.yaml never had a good version"
    );

    write(dir.path(), "a.yaml", &fixed("a.example", "fixed"));
    eventually(&proxy, "a.example", "fixed").await;
    proxy.stop().await;
}

/// alice's token of `examples/standalone/api.yaml` (and the README's walkthrough).
const EXAMPLE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImRlbW8iLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImlzcyI6IndlaXItZGVtbyIsImF1ZCI6IndlaXItZGVtbyIsInBsYW4iOiJmcmVlIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3NjcyMjU2MDB9.72-sG-8CYur1H1BVboccpI3eI5nDRHADZSMn6IWOrQ4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_directory_runs_its_plugins() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone");
    let proxy = TestProxy::start(|c| c.config_dir = Some(dir)).await;
    let answer = get(&proxy.url("/healthz"), "localhost").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers["x-powered-by"], "weir (standalone)");

    // The walkthrough of api.yaml: jwt-auth, rate-limit and request-log from plugins/.
    let client = client();
    let api = |token: Option<&str>, path: &str| {
        let mut request = http::Request::builder()
            .uri(proxy.url(path))
            .header("host", "api.localhost");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        send(
            &client,
            request.body(http_body_util::Full::default()).unwrap(),
        )
    };
    assert_eq!(api(None, "/status").await.status, StatusCode::OK);
    let refused = api(None, "/orders").await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    assert_eq!(refused.headers["www-authenticate"], r#"Bearer realm="api""#);
    let forged = format!("{}x", &EXAMPLE_TOKEN[..EXAMPLE_TOKEN.len() - 1]);
    assert_eq!(
        api(Some(&forged), "/orders").await.status,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..5 {
        let answer = api(Some(EXAMPLE_TOKEN), "/orders").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.text(), r#"{"orders":[]}"#);
        assert_eq!(answer.headers["ratelimit-policy"], r#""default";q=5;w=60"#);
    }
    let limited = api(Some(EXAMPLE_TOKEN), "/orders").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text()
    );
    assert!(limited.headers.contains_key("retry-after"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_from_config_maps_and_inline_code_reload_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let config_map = |greeting: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sources, namespace: test}}\ndata:\n  greet.ts: |\n    export default {{ afterResponse(ctx) {{ ctx.response.headers.set(\"x-greeting\", \"{greeting}\"); }} }};\n"
        )
    };
    write(dir.path(), "sources.yaml", &config_map("hello"));
    write(
        dir.path(),
        "plugins.yaml",
        "apiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {name: greet, namespace: test}\nspec:\n  source: {configMapRef: {name: sources, key: greet.ts}}\n---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {name: inline, namespace: test}\nspec:\n  source:\n    code: |\n      export default { beforeRequest(ctx) { ctx.response.headers.set(\"x-inline\", \"yes\"); } };\n",
    );
    write(
        dir.path(),
        "route.yaml",
        &route(
            "greeted",
            "  hosts: [greeted.example]\n  plugins: [{name: greet}, {name: inline}]\n  rules: [{directResponse: {status: 200, body: hi}}]",
        ),
    );
    let proxy = TestProxy::start(|c| c.config_dir = Some(dir.path().to_owned())).await;
    let answer = get(&proxy.url("/"), "greeted.example").await;
    assert_eq!(answer.text(), "hi");
    assert_eq!(answer.headers["x-greeting"], "hello");
    assert_eq!(answer.headers["x-inline"], "yes");

    write(dir.path(), "sources.yaml", &config_map("bonjour"));
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            let answer = get(&proxy.url("/"), "greeted.example").await;
            if answer
                .headers
                .get("x-greeting")
                .is_some_and(|v| v == "bonjour")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "the new plugin version is served");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_answered_before_the_configuration_is_loaded() {
    // A plugin whose onLoad takes half a second holds the first load open while a client
    // is already connecting: its request waits in the backlog and is answered by the
    // loaded configuration, never with 503 "not ready".
    let dir = tempfile::tempdir().unwrap();
    let slow = "apiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {name: slow, namespace: test}\nspec:\n  source:\n    code: |\n      export default { onLoad() { const end = Date.now() + 500; while (Date.now() < end) {} } };\n";
    write(dir.path(), "slow.yaml", slow);
    write(
        dir.path(),
        "a.yaml",
        &route(
            "a",
            "  hosts: [a.example]\n  plugins: [{name: slow}]\n  rules: [{directResponse: {status: 200, body: loaded}}]",
        ),
    );
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config_dir = dir.path().to_owned();
    let starting = tokio::spawn(TestProxy::start(move |c| {
        c.config_dir = Some(config_dir);
        c.listen = listen;
    }));
    let url = format!("http://{listen}/");
    let (connected_while_starting, answer) = tokio::time::timeout(PATIENCE, async {
        loop {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                let connected_while_starting = !starting.is_finished();
                return (connected_while_starting, get(&url, "a.example").await);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the listener comes up");
    assert!(
        connected_while_starting,
        "the client connected only after the proxy had started: nothing was shown"
    );
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.text(), "loaded");
    starting.await.unwrap().stop().await;
}

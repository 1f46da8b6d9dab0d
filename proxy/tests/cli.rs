//! The `weir-proxy` binary: bad configuration exits 64 with a message naming the problem.

use std::process::Command;

fn weir_proxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir-proxy"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn bad_configuration_exits_64() {
    let cases: &[(&[&str], &str)] = &[
        (&["--config", "/nonexistent/weir"], "not a directory"),
        (&["--workers", "0"], "--workers"),
        (
            &[
                "--admin-listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--admin-token-file",
                "/nonexistent/token",
            ],
            "--admin-token-file /nonexistent/token",
        ),
        (
            &[
                "--admin-listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--plugin-forward-allow",
                "canary.example.com",
            ],
            "is not an http(s) URL prefix",
        ),
        (
            &[
                "--admin-listen",
                "127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--plugin-fetch-deny",
                "pods",
            ],
            "fetch.denyNetworks",
        ),
        (
            &["--admin-listen", "0.0.0.0:0", "--listen", "127.0.0.1:0"],
            "not a loopback address and has no TLS",
        ),
        (
            &["--otlp-endpoint", "grpc://collector:4317"],
            "only http://",
        ),
    ];
    for (args, expected) in cases {
        let output = weir_proxy(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stderr.contains(expected) || stdout.contains(expected),
            "{args:?}: {stderr}{stdout}"
        );
    }
    let output = weir_proxy(&["--listen", "not-an-address"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
    assert_eq!(weir_proxy(&["--help"]).status.code(), Some(0));
}

#[test]
fn each_request_writes_one_json_access_log_line() {
    use std::io::{BufRead, BufReader, Read, Write};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("route.yaml"),
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: hello, namespace: demo}\nspec:\n  plugins: [{name: who}]\n  rules: [{directResponse: {status: 200, body: hi}}]\n---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {name: who, namespace: demo}\nspec:\n  timeoutMs: 5000\n  source: {code: 'export default { beforeRequest(ctx) { ctx.user = { sub: \"alice\" }; if (ctx.request.path === \"/denied\") ctx.reject(403, \"no\"); } };'}\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_weir-proxy"))
        .args(["--config", dir.path().to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proxy.stdout.take().unwrap()).lines();
    // The proxy logs that it listens once it is ready.
    lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("weir-proxy listening"))
        .expect("a startup line");
    let get = |path: &str, id: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nhost: demo.example\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let answer = get("/any", "trace-me");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = get("/denied", "rejected");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let mut entries = lines
        .map(Result::unwrap)
        .filter(|line| line.contains("\"weir::access\""))
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        });
    let entry = entries.next().expect("an access log line");
    let rejected = entries
        .next()
        .expect("an access log line for the rejected request");
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_eq!(entry["request_id"], "trace-me");
    assert_eq!(entry["route"], "demo/hello");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes_sent"], 2);
    assert_eq!(entry["complete"], true);
    assert_eq!(entry["path"], "/any");
    assert_eq!(
        entry["user"], r#"{"sub":"alice"}"#,
        "ctx.user from the plugin"
    );
    assert!(entry["duration_ms"].as_f64().is_some(), "{entry}");
    assert_eq!(rejected["request_id"], "rejected");
    assert_eq!(rejected["status"], 403);
    assert_eq!(
        rejected["user"], r#"{"sub":"alice"}"#,
        "ctx.user of a request the plugin answered itself"
    );
}

#[test]
fn plugin_test_runs_suites_with_the_real_engine() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/header-rewrite");
    let output = weir_proxy(&["plugin", "test", example]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // One line per test, and a count that agrees with them.
    let passed = stdout.lines().filter(|l| l.starts_with("ok   ")).count();
    assert!(passed > 0, "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("{passed} passed, 0 failed")),
        "{stdout}"
    );

    // One passing and one deliberately failing suite.
    let dir = tempfile::tempdir().unwrap();
    let plugin =
        "export default { beforeRequest(ctx) { ctx.upstream.headers.set(\"x-a\", \"1\"); } };\n";
    std::fs::write(dir.path().join("good.ts"), plugin).unwrap();
    std::fs::write(dir.path().join("bad.ts"), plugin).unwrap();
    std::fs::write(
        dir.path().join("good.test.ts"),
        "export default { tests: { async \"sets x-a\"(t) { const r = await t.beforeRequest({}); t.equal(r.patch?.headers.set[\"x-a\"], [\"1\"]); } } };\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.test.ts"),
        "export default { tests: { async \"expects x-b\"(t) { const r = await t.beforeRequest({}); t.equal(r.patch?.headers.set[\"x-b\"], [\"1\"], \"x-b\"); } } };\n",
    )
    .unwrap();
    let output = weir_proxy(&["plugin", "test", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("good.test.ts › sets x-a"), "{stdout}");
    assert!(
        stdout.contains("FAIL")
            && stdout.contains("bad.test.ts › expects x-b: AssertionError: x-b"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 passed, 1 failed"),
        "{stdout}"
    );

    let output = weir_proxy(&["plugin", "test", "/nonexistent/plugins"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/plugins"));
}

#[test]
fn check_reports_every_problem_of_a_directory() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/standalone");
    let output = weir_proxy(&["check", example]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("no problems"), "{stdout}");

    // An Ingress annotation weir does not map is a warning, not a problem.
    let ingresses = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ingress");
    let output = weir_proxy(&["check", ingresses]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("warning: ")
            && lines[0].contains("ingresses.yaml: Ingress shop/storefront: metadata.annotations[nginx.ingress.kubernetes.io/proxy-buffering]: not implemented by weir"),
        "{stdout}"
    );
    assert!(lines[1].ends_with("no problems"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("team")).unwrap();
    std::fs::write(
        dir.path().join("team/routes.yaml"),
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: api, namespace: shop}\n\
         spec:\n  rules:\n    - matches: [{path: {type: Prefix, value: /a/../b}}]\n      \
         directResponse: {status: 200}\n---\n\
         apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: typo}\nspec: {rules: [{directResponse: {status: 200}}], rulez: []}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("z-dup.yml"),
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: api, namespace: shop}\n\
         spec: {rules: [{directResponse: {status: 204}}]}\n",
    )
    .unwrap();
    let output = weir_proxy(&["check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("team/routes.yaml: document 2") && l.contains("rulez")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("z-dup.yml: Route shop/api: also defined in")
                && l.ends_with("team/routes.yaml; that definition is used")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l
            .contains("team/routes.yaml: Route shop/api: spec.rules[0].matches[0].path.value")
            && l.contains("normal form")),
        "{stdout}"
    );

    // As a cluster's operator checks: URL backends refused, Services in the cluster.
    let cluster = tempfile::tempdir().unwrap();
    std::fs::write(
        cluster.path().join("routes.yaml"),
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: api, namespace: shop}\n\
         spec:\n  rules:\n    - backends: [{name: users, port: 80}]\n    \
         - matches: [{path: {value: /old}}]\n      backends: [{url: 'http://10.0.0.1'}]\n",
    )
    .unwrap();
    let dir = cluster.path().to_str().unwrap();
    let problems = |args: &[&str]| -> Vec<String> {
        let output = weir_proxy(&[&["check", dir][..], args].concat());
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let lines: Vec<String> = stdout
            .lines()
            .filter(|l| !l.ends_with("no problems"))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            output.status.code(),
            Some(i32::from(!lines.is_empty())),
            "{stdout}"
        );
        lines
    };
    let standalone = problems(&[]);
    assert_eq!(standalone.len(), 1, "{standalone:?}");
    assert!(
        standalone[0].contains("Service shop/users not found"),
        "{standalone:?}"
    );
    let in_cluster = problems(&["--allow-url-backends=false", "--refs-in-cluster"]);
    assert_eq!(in_cluster.len(), 1, "{in_cluster:?}");
    assert!(
        in_cluster[0].contains("spec.rules[1].backends[0].url")
            && in_cluster[0].contains("disabled"),
        "{in_cluster:?}"
    );
    assert!(problems(&["--refs-in-cluster"]).is_empty());

    let output = weir_proxy(&["check", "/nonexistent/weir"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/weir"));
}

#[test]
fn check_reports_gateway_api_objects() {
    let dir = tempfile::tempdir().unwrap();
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  parentRefs: [{name: public}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n";
    std::fs::write(dir.path().join("route.yaml"), route).unwrap();
    let output = weir_proxy(&["check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: HTTPRoute shop/web: names no Gateway weir serves"),
        "{stdout}"
    );
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: weir}\nspec: {controllerName: weir.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: shop}\nspec:\n  gatewayClassName: weir\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
    let output = weir_proxy(&["check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("route.yaml: HTTPRoute shop/web: spec.rules[0].backendRefs[0].name: Service shop/web with port 80 not found"),
        "{stdout}"
    );
    // Checked all the same: a typo is a problem.
    std::fs::write(
        dir.path().join("route.yaml"),
        route.replace("backendRefs", "backendRef"),
    )
    .unwrap();
    let output = weir_proxy(&["check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("spec.rules[0].backendRef"), "{stdout}");
}

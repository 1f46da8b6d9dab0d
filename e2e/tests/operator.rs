//! The `weir-operator` binary against a real API server, with a local `weir-proxy`: it
//! pushes the snapshot to the proxy listed in the admin Service's EndpointSlice, the
//! proxy serves the Route, and the Route's status says `Programmed=True` with the
//! generation it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use weir_e2e::{
    FIELD_MANAGER, KillOnDrop, TestNamespace, client_or_skip, install_crds, workspace_binary,
};

fn start_proxy(token_file: &std::path::Path) -> (KillOnDrop, SocketAddr, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(workspace_binary("weir-proxy"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--admin-token-file")
            .arg(token_file)
            .args(["--log-format", "json", "--no-access-log", "--workers", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("weir-proxy starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("weir-proxy listening") {
                let log: serde_json::Value = serde_json::from_str(&line).expect("JSON log");
                let address = |field: &str| -> SocketAddr {
                    log[field]
                        .as_str()
                        .expect("address")
                        .parse()
                        .expect("socket address")
                };
                let _ = tx.send((address("traffic"), address("admin")));
            }
        }
    });
    let (traffic, admin) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("weir-proxy logs its addresses");
    (child, traffic, admin)
}

fn get(traffic: SocketAddr, host: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(traffic) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[tokio::test]
async fn the_operator_programs_a_local_proxy_and_writes_status() {
    let Some(client) =
        client_or_skip("the_operator_programs_a_local_proxy_and_writes_status").await
    else {
        return;
    };
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "operator").await;
    let dir = std::env::temp_dir().join(format!("weir-e2e-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "e2e-token-of-at-least-32-characters\n").expect("token file");
    let (_proxy, traffic, admin) = start_proxy(&token_file);

    // The admin Service's endpoints: the local proxy.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace.name);
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "weir-proxy-admin-local", "labels": {"kubernetes.io/service-name": "weir-proxy-admin"}},
        "addressType": "IPv4",
        "ports": [{"name": "admin", "port": admin.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [admin.ip().to_string()], "conditions": {"ready": true}}]
    }))
    .expect("slice");
    slices
        .patch(
            "weir-proxy-admin-local",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&slice),
        )
        .await
        .expect("EndpointSlice applied");

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("weir.dev", "v1alpha1", "Route"));
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace.name, &resource);
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": "hello"},
        "spec": {"hosts": ["hello.e2e.example"], "rules": [{"directResponse": {"status": 200, "body": "hello from e2e"}}]}
    }))
    .expect("route");
    routes
        .patch(
            "hello",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&route),
        )
        .await
        .expect("Route applied");

    let _operator = KillOnDrop(
        Command::new(workspace_binary("weir-operator"))
            .args(["--namespaces", &namespace.name])
            .args(["--proxy-service", "weir-proxy-admin"])
            .args(["--proxy-namespace", &namespace.name])
            .args(["--proxy-admin-port-name", "admin"])
            .arg("--proxy-insecure-http")
            .arg("--admin-token-file")
            .arg(&token_file)
            .args(["--metrics-address", "127.0.0.1:0"])
            .args(["--lease-namespace", &namespace.name])
            .args(["--log-format", "text", "--debounce", "100ms"])
            .spawn()
            .expect("weir-operator starts"),
    );

    let mut programmed = None;
    for _ in 0..300 {
        let current = routes.get("hello").await.expect("Route readable");
        let condition = current.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Programmed" && c["status"] == "True")
            .cloned();
        if condition.is_some() {
            programmed = condition;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let programmed = programmed.expect("the Route becomes Programmed=True within a minute");
    assert_eq!(programmed["observedGeneration"], 1);
    assert!(
        programmed["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("applied on 1/1 proxies"),
        "{programmed}"
    );
    assert!(get(traffic, "hello.e2e.example").ends_with("hello from e2e"));

    namespace.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
}

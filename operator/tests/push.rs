//! Pushes to real `weir-proxy` processes on loopback: the snapshot is applied (the
//! proxies serve the Route), acknowledged versions and plugin load failures reach status, a
//! wrong token and a stopped proxy are reported, and a proxy that appears gets the
//! snapshot at once. The binary comes from the same target directory as this test
//! (`cargo build --workspace --bins` builds it first, as `scripts/test` does).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;
use weir_operator::push::{PushBody, Pusher};

fn weir_proxy_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/push-<hash> -> target/<profile>/weir-proxy
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .join(format!("weir-proxy{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p weir-proxy` (scripts/test builds every binary)",
        path.display()
    );
    path
}

/// A `weir-proxy` process on loopback, killed on drop.
struct RealProxy {
    child: Child,
    traffic: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RealProxy {
    fn start(token: &str) -> Self {
        Self::start_with(token, None)
    }

    /// Starts a proxy whose admin listener is HTTPS with this PEM certificate and key.
    fn start_with(token: &str, tls: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let mut command = Command::new(weir_proxy_binary());
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            command
                .arg("--admin-tls-cert")
                .arg(cert_file)
                .arg("--admin-tls-key")
                .arg(key_file);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--admin-token-file")
            .arg(&token_file)
            .args(["--log-format", "json", "--no-access-log", "--workers", "1"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weir-proxy starts");
        // The proxy logs the addresses it bound (port 0 picks free ports).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("weir-proxy listening") {
                    // Fields are flattened into the JSON line.
                    let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let address = |field: &str| log[field].as_str()?.parse::<SocketAddr>().ok();
                    let _ = tx.send(address("traffic").zip(address("admin")));
                    sent = true;
                }
            }
        });
        let addresses = rx.recv_timeout(PATIENCE);
        let Ok(Some((traffic, admin))) = addresses else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("weir-proxy did not log its addresses: {addresses:?}");
        };
        Self {
            child,
            traffic,
            admin,
            _dir: dir,
        }
    }

    /// `GET /` with `host`: status line and body.
    fn get(&self, host: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(self.traffic).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE * 2, future)
        .await
        .expect("in time")
}

#[tokio::test]
async fn snapshots_reach_real_proxies_and_their_acks_reach_status() {
    let a = RealProxy::start("secret-token-of-at-least-32-characters");
    let b = RealProxy::start("secret-token-of-at-least-32-characters");
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "hello from weir")],
        &[],
        Vec::new(),
    );
    h.proxies(&[a.admin, b.admin]);

    let outcome = h.lead().await;
    assert_eq!(outcome.version, 1);
    for proxy in [&a, &b] {
        let state = h.reconciler.fleet().get(&proxy.admin.to_string()).unwrap();
        assert_eq!(state.version, Some(1), "{state:?}");
    }
    let (status, body) = a.get("api.example.com");
    assert_eq!(status, 200);
    assert_eq!(body, "hello from weir");

    let patches = h.api.take_status_patches();
    let route_status = patched_status(&patches, "routes", "api");
    assert_eq!(
        condition(route_status, "Programmed")["message"],
        "applied on 2/2 proxies"
    );
    h.echo_status(&patches);

    // A proxy stops: the next snapshot is reported as lagging there.
    drop(b);
    apply(
        &mut h.writers.routes[0],
        route(&route_json("api", 2, "api.example.com", "second")),
    );
    let outcome = h.reconcile().await;
    assert_eq!(outcome.version, 2);
    assert_eq!(outcome.in_sync, (1, 2));
    assert_eq!(a.get("api.example.com").1, "second");
    let patches = h.api.take_status_patches();
    let route_status = patched_status(&patches, "routes", "api");
    let programmed = condition(route_status, "Programmed");
    assert_eq!(programmed["reason"], "Pending");
    let message = programmed["message"].as_str().unwrap();
    assert!(
        message.starts_with("applied on 1/2 proxies; lagging behind snapshot 2:"),
        "{message}"
    );
    assert!(message.contains("at snapshot 1"), "{message}");
    h.echo_status(&patches);

    // A new proxy appears in place of the stopped one: it gets the snapshot at once.
    let c = RealProxy::start("secret-token-of-at-least-32-characters");
    h.proxies(&[a.admin, c.admin]);
    let outcome = h.proxies_changed().await;
    assert_eq!(outcome.pushed, [c.admin.to_string()]);
    assert_eq!(outcome.in_sync, (2, 2));
    assert_eq!(c.get("api.example.com"), (200, "second".to_owned()));
    let patches = h.api.take_status_patches();
    let route_status = patched_status(&patches, "routes", "api");
    assert_eq!(
        condition(route_status, "Programmed")["message"],
        "applied on 2/2 proxies"
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_versions_are_read_from_real_proxies() {
    let proxy = RealProxy::start("the-right-token-of-at-least-32-characters");
    let mut config = proxy_config();
    config.token = "the-wrong-token-of-at-least-32-characters".into();
    let pusher = Pusher::new(&config).unwrap();
    let error = pusher
        .push(
            &proxy.admin.to_string(),
            &PushBody::new(&weir_crds::Snapshot::empty()),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("refused with 401"), "{error}");

    config.token = "the-right-token-of-at-least-32-characters".into();
    let pusher = Pusher::new(&config).unwrap();
    let served = pusher.version(&proxy.admin.to_string()).await.unwrap();
    assert_eq!(served.version, 0);

    // The Secret was rotated and the proxy has the new token: the refused operator reads
    // its token file again and carries on with the token it finds there.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "the-right-token-of-at-least-32-characters\n").unwrap();
    config.token = "the-old-token-of-at-least-32-characters".into();
    config.token_file = Some(token_file);
    let pusher = Pusher::new(&config).unwrap();
    let served = pusher.version(&proxy.admin.to_string()).await.unwrap();
    assert_eq!(served.version, 0);

    // Nothing listens there: a transport error, after the configured attempts.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.push_timeout = Duration::from_secs(5);
    let pusher = Pusher::new(&config).unwrap();
    let error = pusher.version(&closed.to_string()).await.unwrap_err();
    assert!(error.to_string().contains("onnect"), "{error}");
}

#[tokio::test]
async fn pushes_over_https_check_the_proxy_certificate_against_the_ca_file() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let proxy = RealProxy::start_with(
        "secret-token-of-at-least-32-characters",
        Some((&cert, &key)),
    );
    let snapshot = PushBody::new(&weir_crds::Snapshot::empty());
    let mut snapshot_v1: weir_crds::Snapshot = weir_crds::Snapshot::empty();
    snapshot_v1.version = 1;
    let snapshot_v1 = PushBody::new(&snapshot_v1);

    // Trusting the proxy's certificate: the push is applied.
    let mut config = proxy_config();
    config.scheme = "https";
    config.ca_pem = Some(cert.clone().into_bytes());
    let pusher = Pusher::new(&config).unwrap();
    let applied = within(pusher.push(&proxy.admin.to_string(), &snapshot_v1))
        .await
        .unwrap();
    assert_eq!(applied.version, 1);

    // Trusting another CA: the handshake fails and nothing is sent.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    config.ca_pem = Some(other.cert.pem().into_bytes());
    let pusher = Pusher::new(&config).unwrap();
    let error = within(pusher.push(&proxy.admin.to_string(), &snapshot))
        .await
        .unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // A CA file without a certificate is refused up front.
    config.ca_pem = Some(b"not a certificate".to_vec());
    assert!(Pusher::new(&config).is_err());
}

#[tokio::test]
async fn pushes_over_https_can_check_one_server_name_instead_of_the_address() {
    // One certificate for every proxy, naming the admin Service, as the Helm chart issues.
    let name = "weir-proxy-admin.weir.svc";
    let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let proxy = RealProxy::start_with(
        "secret-token-of-at-least-32-characters",
        Some((&cert, &key)),
    );
    let mut snapshot = weir_crds::Snapshot::empty();
    snapshot.version = 1;
    let snapshot = PushBody::new(&snapshot);
    let mut config = proxy_config();
    config.scheme = "https";
    config.ca_pem = Some(cert.into_bytes());

    // Checked against the address it connects to, the certificate does not match.
    let by_address = Pusher::new(&config).unwrap();
    let error = within(by_address.push(&proxy.admin.to_string(), &snapshot))
        .await
        .unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // Checked against the name the certificate carries, the push is applied.
    config.server_name = Some(rustls_pki_types::ServerName::try_from(name).unwrap());
    let by_name = Pusher::new(&config).unwrap();
    let applied = within(by_name.push(&proxy.admin.to_string(), &snapshot))
        .await
        .unwrap();
    assert_eq!(applied.version, 1);

    // Another name is refused.
    config.server_name =
        Some(rustls_pki_types::ServerName::try_from("weir-proxy-admin.other.svc").unwrap());
    let wrong = Pusher::new(&config).unwrap();
    assert!(
        within(wrong.push(&proxy.admin.to_string(), &snapshot))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_plugin_a_real_proxy_cannot_load_is_reported_on_its_status() {
    let proxy = RealProxy::start("secret-token-of-at-least-32-characters");
    let mut h = Harness::new();
    h.objects(
        &[route_json("api", 1, "api.example.com", "still served")],
        &[plugin_json("boom", 1, "boom-source")],
        vec![config_map(
            "boom-source",
            "throw new Error('boom at load');\nexport default {};\n",
        )],
    );
    h.proxies(&[proxy.admin]);

    let outcome = h.lead().await;
    assert_eq!(outcome.in_sync, (1, 1));
    // Partial config: the Route is served although the Plugin did not load.
    assert_eq!(
        proxy.get("api.example.com"),
        (200, "still served".to_owned())
    );
    let patches = h.api.take_status_patches();
    let plugin_status = patched_status(&patches, "plugins", "boom");
    assert_eq!(condition(plugin_status, "Compiled")["status"], "True");
    let programmed = condition(plugin_status, "Programmed");
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "LoadFailed");
    let message = programmed["message"].as_str().unwrap();
    assert!(
        message.contains(&proxy.admin.to_string()) && message.contains("boom at load"),
        "{message}"
    );
    let route_status = patched_status(&patches, "routes", "api");
    assert_eq!(condition(route_status, "Programmed")["status"], "True");
}

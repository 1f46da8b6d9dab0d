//! One scenario's world: a test namespace, a network with the proxies in network
//! namespaces and the backends on the host side of its bridge, the admin token, and the
//! operators it started (whose last log lines every failure message shows). Scenarios run
//! one at a time (a process-wide lock): they start processes and measure how fast changes
//! reach traffic, which concurrent scenarios on a small machine would distort.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject};

use crate::netns::Network;
use crate::objects::{self, Endpoint, TestNamespace};
use crate::process::{Logs, Process, Spec};
use crate::wait;

/// The admin Service the operator finds the proxies by.
pub const ADMIN_SERVICE: &str = "weir-proxy-admin";
/// The proxies' admin port (and the name of its EndpointSlice port).
pub const ADMIN_PORT: u16 = 9901;
/// The proxies' plain-text traffic port.
pub const TRAFFIC_PORT: u16 = 8080;
/// The proxies' TLS traffic port.
pub const TLS_PORT: u16 = 8443;
/// The port every backend listens on (the Services' target port).
pub const BACKEND_PORT: u16 = 8080;
/// Operator log lines a failure message shows.
const LOG_LINES: usize = 40;
/// The push token shared by the operators and the proxies.
const TOKEN: &str = "weir-e2e-token-0123456789abcdef0123456789abcdef";

/// Set (to anything), the logs of every process are kept after a scenario that passed too;
/// a failed scenario always keeps them.
pub const KEEP_LOGS_ENV: &str = "WEIR_E2E_KEEP_LOGS";
/// Scenarios run one at a time.
static SUITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Leftovers of crashed runs are removed, and the interrupt handler installed, once per
/// run.
static CLEAN: Once = Once::new();

/// A proxy running in a network namespace of its own.
pub struct Proxy {
    /// The process.
    pub process: Process,
    /// Its plain-text traffic address.
    pub traffic: SocketAddr,
    /// Its TLS traffic address.
    pub tls: SocketAddr,
    /// Its admin address (as the operator names it in status messages).
    pub admin: SocketAddr,
}

/// A backend HTTP server: answers every request with `200`, body `backend <name>` and
/// header `x-backend: <name>`.
pub struct Backend {
    /// The process.
    pub process: Process,
    /// Its address (port [`BACKEND_PORT`]).
    pub address: Ipv4Addr,
}

/// How to start an operator.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Its identity in the Lease.
    pub identity: String,
    /// Namespaces it watches; the scenario's namespace when empty.
    pub namespaces: Vec<String>,
    /// `--lease-duration`.
    pub lease_duration: Duration,
    /// More flags.
    pub extra_args: Vec<String>,
}

impl OperatorOptions {
    /// An operator called `identity`, watching the scenario's namespace, with a 15 s Lease.
    pub fn new(identity: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            namespaces: Vec::new(),
            lease_duration: Duration::from_secs(15),
            extra_args: Vec::new(),
        }
    }
}

/// The world of one scenario; dropping it tears the world down.
pub struct Scenario {
    /// The API server's client.
    pub client: Client,
    /// The scenario's namespace: Routes, Services, the admin Service and the Lease.
    pub namespace: TestNamespace,
    /// More namespaces ([`Scenario::add_namespace`]).
    extra_namespaces: Vec<TestNamespace>,
    /// The proxies' and backends' network.
    network: Network,
    proxies: usize,
    backends: u8,
    dir: PathBuf,
    token_file: PathBuf,
    operator_logs: Mutex<Vec<(String, Logs)>>,
    /// Held until the world is torn down; the last field, so it is dropped last.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Scenario {
    /// Sets up the world for `test`, or says in one line why it cannot run here and
    /// returns `None`.
    pub async fn start(test: &str) -> Option<Self> {
        if let Some(reason) = crate::skip_reason() {
            eprintln!("skipping e2e test {test}: {reason}");
            return None;
        }
        let turn = SUITE.lock().await;
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG names a reachable API server");
        let mut first = false;
        CLEAN.call_once(|| first = true);
        if first {
            crate::netns::clean_leftovers().expect("removing what a crashed run left");
            objects::delete_runs(&client, |run| !crate::netns::alive(run)).await;
            clean_up_when_interrupted();
        }
        objects::install_crds(&client).await;
        let namespace = TestNamespace::create(&client, test).await;
        let network = Network::create().expect("a network for the test hosts");
        let dir = std::env::temp_dir().join(format!("weir-e2e-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the scenario's directory");
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("the token file");
        Some(Self {
            client,
            namespace,
            extra_namespaces: Vec::new(),
            network,
            proxies: 0,
            backends: 0,
            dir,
            token_file,
            operator_logs: Mutex::new(Vec::new()),
            _turn: turn,
        })
    }

    /// The scenario's namespace's name.
    pub fn ns(&self) -> &str {
        &self.namespace.name
    }

    /// Creates another namespace (deleted with the scenario) and returns its name.
    pub async fn add_namespace(&mut self, suffix: &str) -> String {
        let namespace = TestNamespace::create(&self.client, suffix).await;
        let name = namespace.name.clone();
        self.extra_namespaces.push(namespace);
        name
    }

    /// Starts a proxy in a network namespace of its own and waits for its admin port.
    pub async fn proxy(&mut self, name: &str) -> Proxy {
        let last = 10 + u8::try_from(self.proxies).expect("few proxies");
        self.proxies += 1;
        let host = self
            .network
            .add_host(&format!("proxy-{name}"), last)
            .expect("the proxy's network namespace");
        let ip = host.address;
        let admin = SocketAddr::from((ip, ADMIN_PORT));
        let spec = Spec {
            name: format!("weir-proxy {name}"),
            program: crate::workspace_binary("weir-proxy"),
            args: [
                "--listen",
                &format!("0.0.0.0:{TRAFFIC_PORT}"),
                "--tls-listen",
                &format!("0.0.0.0:{TLS_PORT}"),
                "--admin-listen",
                &admin.to_string(),
                "--admin-allow-plaintext",
                "--admin-token-file",
                &self.token_file.to_string_lossy(),
                "--workers",
                "1",
                "--drain-timeout",
                "1s",
                "--log-format",
                "text",
                "--no-access-log",
            ]
            .map(str::to_owned)
            .to_vec(),
            netns: Some(host.netns.clone()),
            log_file: self.dir.join(format!("proxy-{name}.log")),
        };
        let proxy = Proxy {
            process: Process::start(spec),
            traffic: SocketAddr::from((ip, TRAFFIC_PORT)),
            tls: SocketAddr::from((ip, TLS_PORT)),
            admin,
        };
        self.wait_listening(&proxy.process, admin).await;
        proxy
    }

    /// Starts a proxy that was stopped, at the same address, and waits for its admin port.
    pub async fn restart_proxy(&self, proxy: &mut Proxy) {
        proxy.process.restart();
        self.wait_listening(&proxy.process, proxy.admin).await;
    }

    /// Publishes `proxies` as the ready endpoints of the admin Service.
    pub async fn publish_proxies(&self, proxies: &[&Proxy]) {
        let mut service = objects::service(ADMIN_SERVICE);
        service["spec"]["ports"] =
            serde_json::json!([{"name": "admin", "port": ADMIN_PORT, "protocol": "TCP"}]);
        objects::apply(&self.client, self.ns(), service).await;
        let endpoints: Vec<Endpoint> = proxies
            .iter()
            .map(|p| Endpoint {
                address: ip_of(p.admin),
                ready: true,
            })
            .collect();
        objects::apply(
            &self.client,
            self.ns(),
            objects::endpoint_slice(ADMIN_SERVICE, "admin", ADMIN_PORT, &endpoints),
        )
        .await;
    }

    /// Starts a backend named `name` on an address of its own on the host side of the
    /// bridge (`.20` and up) and waits until it answers.
    ///
    /// Backends run on the host, not in a namespace of their own: traffic from a proxy to
    /// a backend then enters the host (INPUT) instead of being bridged between two
    /// namespaces, which a host with `br_netfilter` and a FORWARD policy of DROP (any
    /// Docker host, so kind and k3d machines) would drop.
    pub async fn backend(&mut self, name: &str) -> Backend {
        let address = self
            .network
            .add_local_address(20 + self.backends)
            .expect("a backend address");
        self.backends += 1;
        let spec = Spec {
            name: format!("backend {name}"),
            program: crate::workspace_binary("weir-e2e-backend"),
            args: vec![
                SocketAddr::from((address, BACKEND_PORT)).to_string(),
                name.to_owned(),
            ],
            netns: None,
            log_file: self.dir.join(format!("backend-{name}.log")),
        };
        let backend = Backend {
            process: Process::start(spec),
            address,
        };
        self.wait_listening(&backend.process, SocketAddr::from((address, BACKEND_PORT)))
            .await;
        backend
    }

    /// Applies Service `name` (port 80) with an EndpointSlice listing `endpoints` on the
    /// backends' port.
    pub async fn backend_service(&self, namespace: &str, name: &str, endpoints: &[Endpoint]) {
        objects::apply(&self.client, namespace, objects::service(name)).await;
        self.backend_endpoints(namespace, name, endpoints).await;
    }

    /// What most scenarios start with: backend `a`, proxy `a` published as the admin
    /// Service's endpoint, and Service `web` in the scenario's namespace with the backend
    /// as its one ready endpoint.
    pub async fn proxy_in_front_of_web(&mut self) -> (Backend, Proxy) {
        let backend = self.backend("a").await;
        let proxy = self.proxy("a").await;
        self.publish_proxies(&[&proxy]).await;
        let ns = self.ns().to_owned();
        self.backend_service(
            &ns,
            "web",
            &[Endpoint {
                address: backend.address,
                ready: true,
            }],
        )
        .await;
        (backend, proxy)
    }

    /// Replaces the endpoints of Service `name`.
    pub async fn backend_endpoints(&self, namespace: &str, name: &str, endpoints: &[Endpoint]) {
        objects::apply(
            &self.client,
            namespace,
            objects::endpoint_slice(name, "http", BACKEND_PORT, endpoints),
        )
        .await;
    }

    /// Starts an operator on the host, pushing to the proxies of the admin Service over
    /// plain HTTP, with its Lease in the scenario's namespace.
    pub fn operator(&self, options: &OperatorOptions) -> Process {
        let namespaces = if options.namespaces.is_empty() {
            self.ns().to_owned()
        } else {
            options.namespaces.join(",")
        };
        let spec = Spec {
            name: format!("weir-operator {}", options.identity),
            program: crate::workspace_binary("weir-operator"),
            args: vec![
                "--namespaces".into(),
                namespaces,
                "--proxy-service".into(),
                ADMIN_SERVICE.into(),
                "--proxy-namespace".into(),
                self.ns().to_owned(),
                "--proxy-admin-port-name".into(),
                "admin".into(),
                "--proxy-insecure-http".into(),
                "--admin-token-file".into(),
                self.token_file.to_string_lossy().into_owned(),
                "--metrics-address".into(),
                "127.0.0.1:0".into(),
                "--lease-namespace".into(),
                self.ns().to_owned(),
                "--lease-duration".into(),
                format!("{}ms", options.lease_duration.as_millis()),
                "--identity".into(),
                options.identity.clone(),
                "--log-format".into(),
                "text".into(),
            ]
            .into_iter()
            .chain(options.extra_args.iter().cloned())
            .collect(),
            netns: None,
            log_file: self.dir.join(format!("operator-{}.log", options.identity)),
        };
        let process = Process::start(spec);
        self.operator_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((process.name().to_owned(), process.logs().clone()));
        process
    }

    /// The last log lines of every operator started, for failure messages.
    pub fn operator_log(&self) -> String {
        let operators = self
            .operator_logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        for (name, logs) in operators.iter() {
            text.push_str(&format!("--- last lines of {name}:\n"));
            for line in logs.last(LOG_LINES) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }

    /// Panics with `message`, the operators' last log lines and where all logs are.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n{}--- every process's log is in {}",
            self.operator_log(),
            self.dir.display()
        )
    }

    /// Waits until `object` (read through `api`) satisfies `check`, which says what is
    /// missing. On timeout, fails with the object's whole status and the operators' last
    /// log lines. Returns the object and the time it took.
    pub async fn wait_for(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        timeout: Duration,
        check: impl Fn(&DynamicObject) -> Result<(), String>,
    ) -> (DynamicObject, Duration) {
        let last = std::cell::RefCell::new(None);
        let result = wait::until(name, timeout, wait::POLL, || {
            let api = api.clone();
            let found = async move { api.get_opt(name).await };
            let (check, last) = (&check, &last);
            async move {
                let object = found
                    .await
                    .map_err(|e| format!("reading it: {e}"))?
                    .ok_or_else(|| "it does not exist".to_owned())?;
                let verdict = check(&object);
                *last.borrow_mut() = Some(object.clone());
                verdict.map(|()| object)
            }
        })
        .await;
        match result {
            Ok(found) => found,
            Err(timeout) => {
                let status = last.into_inner().map_or_else(
                    || "none".to_owned(),
                    |o| {
                        format!(
                            "generation {:?}, status {}",
                            o.metadata.generation,
                            serde_json::to_string_pretty(&o.data["status"]).unwrap_or_default()
                        )
                    },
                );
                self.fail(&format!(
                    "{} {timeout}\n--- its status: {status}",
                    api.resource_url()
                ))
            }
        }
    }

    /// Waits until `probe` (traffic, a Lease, a list of Routes) says yes; on timeout,
    /// fails with what it saw last and the operators' last log lines. Returns the time it
    /// took.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, probe: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        self.wait_until_every(what, timeout, wait::POLL, probe)
            .await
    }

    /// [`Scenario::wait_until`] with `poll` between two probes: for probes that cost the
    /// API server (and this process) enough to slow down what they measure, such as
    /// listing a thousand Routes.
    pub async fn wait_until_every<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        poll: Duration,
        probe: F,
    ) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        match wait::until(what, timeout, poll, probe).await {
            Ok(((), took)) => took,
            Err(timeout) => self.fail(&timeout.to_string()),
        }
    }

    async fn wait_listening(&self, process: &Process, address: SocketAddr) {
        let result = wait::until(
            &format!("{} listening on {address}", process.name()),
            Duration::from_secs(30),
            wait::POLL,
            || async move {
                tokio::net::TcpStream::connect(address)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        if let Err(timeout) = result {
            panic!(
                "{timeout}\n--- its last lines:\n{}",
                process.logs().last(LOG_LINES).join("\n")
            );
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_LOGS_ENV).is_some() {
            eprintln!(
                "the logs of every process are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// On SIGINT or SIGTERM (Ctrl-C, a CI timeout), which would end the test process without
/// running its guards, removes this run's processes, network namespaces, links and
/// Kubernetes namespaces, then exits.
fn clean_up_when_interrupted() {
    crate::on_own_runtime(|| async {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        eprintln!(
            "weir-e2e: interrupted; removing this run's processes, network namespaces and namespaces"
        );
        if let Err(e) = crate::netns::clean_this_run() {
            eprintln!("weir-e2e: {e}");
        }
        if let Ok(client) = Client::try_default().await {
            // The tests go on running meanwhile and may still create objects: delete
            // until a pass finds none.
            let own = std::process::id();
            for _ in 0..5 {
                if objects::delete_runs(&client, |run| run == own).await == 0 {
                    break;
                }
            }
        }
        std::process::exit(130);
    });
}

fn ip_of(address: SocketAddr) -> Ipv4Addr {
    match address.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(ip) => panic!("the test network is IPv4, not {ip}"),
    }
}

//! A real `weir-proxy` process, for what only a process shows: its threads, its memory,
//! its signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::PATIENCE;

/// A `weir-proxy` process in standalone mode, its JSON log lines collected as they come.
pub struct ProxyProcess {
    pub child: Child,
    pub port: u16,
    pub logs: Arc<Mutex<Vec<Value>>>,
    _config: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts it with `manifests` as its configuration directory and extra `args`.
    pub fn start(manifests: &str, args: &[&str]) -> Self {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("config.yaml"), manifests).unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir-proxy"))
            .args(["--config", config.path().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (started, is_started) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["message"] == "weir-proxy listening" {
                    let _ = started.send(());
                }
                collected.lock().unwrap().push(entry);
            }
        });
        is_started
            .recv_timeout(PATIENCE)
            .expect("the proxy logs that it listens");
        Self {
            child,
            port,
            logs,
            _config: config,
        }
    }

    /// A new connection to its listener.
    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    /// The log entries with this `request_id`, waiting (up to the patience) for `count`.
    pub fn entries_of(&self, request_id: &str, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let found: Vec<Value> = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e["request_id"] == request_id)
                .cloned()
                .collect();
            if found.len() >= count || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ProxyProcess {
    /// Its resident memory in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

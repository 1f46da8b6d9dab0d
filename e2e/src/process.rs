//! The operator, the proxies and the backends as child processes, optionally inside a
//! network namespace (`ip netns exec`, which execs the program: the child's pid is the
//! program's). Each keeps its last log lines for failure messages and writes all of them
//! to a file; each is killed when dropped, so a failing test leaves nothing running.
//!
//! Every child carries [`RUN_ENV`] set to the test process's pid: a later run kills the
//! children of a run that died without dropping them, and an interrupted run its own
//! ([`kill_runs`]).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable naming the test process that started a child.
pub const RUN_ENV: &str = "WEIR_E2E_RUN";

/// Log lines kept in memory per process.
const KEPT_LINES: usize = 400;

/// The last log lines of a process (stdout and stderr interleaved), shared with the
/// threads that read them.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<VecDeque<String>>>);

impl Logs {
    fn push(&self, line: String) {
        let mut lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines.
    pub fn last(&self, n: usize) -> Vec<String> {
        let lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// How to start a process; kept so it can be started again.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Name in failure messages and of the log file.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The network namespace to run it in; the host's when `None`.
    pub netns: Option<String>,
    /// File every log line is appended to.
    pub log_file: PathBuf,
}

/// A running (or stopped) child process.
pub struct Process {
    spec: Spec,
    child: Option<Child>,
    logs: Logs,
}

impl Process {
    /// Starts `spec`.
    pub fn start(spec: Spec) -> Self {
        let mut process = Self {
            spec,
            child: None,
            logs: Logs::default(),
        };
        process.restart();
        process
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its log lines.
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again (after [`Process::stop`] or [`Process::kill`]), with the same
    /// arguments; its log lines go on in the same [`Logs`].
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "{} is already running",
            self.spec.name
        );
        let mut command = match &self.spec.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", netns])
                    .arg(&self.spec.program);
                command
            }
            None => Command::new(&self.spec.program),
        };
        command
            .args(&self.spec.args)
            .env(RUN_ENV, std::process::id().to_string())
            // Log lines end up in failure messages, which escapes would garble.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.spec.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log_file)
            .map(|f| Arc::new(Mutex::new(f)))
            .ok();
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let logs = self.logs.clone();
            let file = file.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(file) = &file {
                        let mut file = file
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let _ = writeln!(file, "{line}");
                    }
                    logs.push(line);
                }
            });
        }
        self.child = Some(child);
    }

    /// Stops it with SIGTERM (graceful: the operator releases its Lease, the proxy
    /// drains) and waits for it to exit, killing it after `grace`. Whether it exited
    /// within `grace`.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills it with SIGKILL (a crash: nothing is released) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it is still running (it has not exited on its own).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Kills the children of the runs `of` selects (by the test process's pid in their
/// [`RUN_ENV`]), never the test process itself.
pub fn kill_runs(of: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let marker = format!("{RUN_ENV}=");
    let own = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let run = environ
            .split(|&b| b == 0)
            .filter_map(|var| std::str::from_utf8(var).ok())
            .find_map(|var| var.strip_prefix(&marker))
            .and_then(|run| run.parse::<u32>().ok());
        if pid != own
            && let Some(run) = run
            && of(run)
            && let Ok(pid) = i32::try_from(pid)
        {
            kill(pid);
        }
    }
}

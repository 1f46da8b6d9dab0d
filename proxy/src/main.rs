//! `weir-proxy`: parses flags, sets up logging and the runtime, and runs the proxy until
//! SIGTERM or Ctrl-C. Exits 64 on bad flags or configuration. `weir-proxy plugin test DIR`
//! runs plugin test suites instead, exiting 1 when one fails; `weir-proxy check DIR`
//! compiles a directory of manifests and reports every problem, exiting 1 if any.

use std::process::ExitCode;

use clap::Parser as _;
use prometheus_client::registry::Registry;
use weir_proxy::cli::{Cli, Command, PluginCommand};
use weir_proxy::telemetry::Telemetry;
use weir_proxy::{Proxy, StartError};

/// Exit code for unusable configuration (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

// glibc's allocator is a measurable share of a proxy's CPU time; mimalloc is not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match &cli.command {
        Some(Command::Plugin(PluginCommand::Test { dir })) => return plugin_test(dir),
        Some(Command::Check {
            dir,
            allow_url_backends,
            refs_in_cluster,
        }) => {
            let options = weir_proxy::standalone::CheckOptions {
                allow_url_backends: *allow_url_backends,
                refs_in_cluster: *refs_in_cluster,
            };
            return check(dir, &options);
        }
        None => {}
    }
    let config = match cli.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("weir-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let roots = match cli.upstream_roots() {
        Ok(roots) => roots,
        Err(e) => {
            eprintln!("weir-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // The control thread: admin listener, file watcher, snapshot loading. Traffic is
    // served by the shards, each on a thread of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match Telemetry::init(cli.log_format, config.otlp_endpoint.as_deref()) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("weir-proxy: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        let proxy = match Proxy::start(config, Registry::default(), roots).await {
            Ok(proxy) => proxy,
            Err(e) => {
                tracing::error!("{e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(EXIT_BAD_CONFIG),
                    StartError::Bind(_) => ExitCode::FAILURE,
                };
            }
        };
        let addresses = proxy.addresses();
        tracing::info!(traffic = %addresses.traffic, tls = ?addresses.tls, admin = %addresses.admin, metrics = ?addresses.metrics, shards = proxy.gateway().config.workers, "weir-proxy listening");
        proxy.run(shutdown_signal()).await;
        // Flushing blocks until the exporter sent the last spans, which it does on this
        // runtime: flush from a blocking thread while this one keeps the runtime going.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// `weir-proxy plugin test DIR`.
fn plugin_test(dir: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if runtime.block_on(weir_proxy::plugins::test_command::run(dir)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `weir-proxy check DIR`.
fn check(dir: &std::path::Path, options: &weir_proxy::standalone::CheckOptions) -> ExitCode {
    match weir_proxy::standalone::check(dir, options) {
        Ok(checked) => {
            for warning in &checked.warnings {
                println!("warning: {warning}");
            }
            if checked.problems.is_empty() {
                println!("{}: no problems", dir.display());
                return ExitCode::SUCCESS;
            }
            for problem in &checked.problems {
                println!("{problem}");
            }
            eprintln!("weir-proxy check: {} problem(s)", checked.problems.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weir-proxy check: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

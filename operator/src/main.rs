//! `weir-operator`: parses flags, sets up logging and the runtime, connects to the API
//! server (in-cluster, or from `KUBECONFIG`) and runs the operator until SIGTERM or
//! Ctrl-C. Exits 64 on bad flags or configuration.
//!
//! The operator allocates through the system allocator, unlike the proxy: with builds on
//! a thread of their own, glibc's (two arenas, as the chart sets `MALLOC_ARENA_MAX`) held
//! less resident memory at 10,000 Routes than mimalloc (docs/performance.md, issue 16).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use weir_operator::config::{Cli, LogFormat};

/// Exit code for unusable configuration (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

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
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // kube and hyper-rustls both use rustls: pick ring once for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes client configuration (in-cluster or KUBECONFIG)");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        let config = match cli.to_config(client.default_namespace()) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        match run(client, config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(client: kube::Client, config: weir_operator::config::Config) -> anyhow::Result<()> {
    weir_operator::app::run(client, config, shutdown_signal())
        .await
        .context("running the operator")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

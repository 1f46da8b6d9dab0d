//! weir's operator as a library: it watches Routes, Plugins, Ingresses, Gateway API
//! objects and the objects they refer to, compiles them into one snapshot with
//! `weir-crds`, pushes the snapshot to every proxy's admin API and writes status
//! conditions and Events. Every decision (what is valid, which conditions, which
//! messages) is a pure function in `weir-crds`; this crate is the I/O around it. The
//! `weir-operator` binary only parses flags and calls [`app::run`].

pub mod app;
pub mod build;
pub mod config;
pub mod discovery;
pub mod leader;
pub mod metrics;
pub mod push;
pub mod reconcile;
pub mod status;
pub mod stored_route;
pub mod watch;
pub mod world;

/// Resolves once `shutdown` says stop (or its sender is gone), holding no borrow across
/// awaits so the futures waiting on it stay `Send`.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

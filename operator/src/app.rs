//! The whole operator wired together: watchers, leader election, the reconciler and the
//! metrics server, until shutdown.

use std::future::Future;

use kube::Client;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::leader::Elector;
use crate::metrics::{self, Metrics};
use crate::push::{ClientError, Pusher};
use crate::reconcile::{Reconciler, run as reconcile_loop};
use crate::status::StatusWriter;
use crate::world::stores_for;

/// Why the operator could not start.
#[derive(Debug, Error)]
pub enum RunError {
    /// The metrics address cannot be bound.
    #[error("binding the metrics address {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The push client cannot be made.
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// Runs the operator with `client` until `shutdown` resolves, then stops watching,
/// releases the Lease and returns.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let metrics = Metrics::new();
    let listener = metrics::bind(config.metrics_address)
        .await
        .map_err(|source| RunError::Bind {
            address: config.metrics_address,
            source,
        })?;
    tracing::info!(address = %listener.local_addr().unwrap_or(config.metrics_address), "metrics listening");
    let pusher = Pusher::new(&config.proxies)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let scopes = config.namespaces.scopes().len();
    let (stores, writers) = stores_for(scopes);
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let watchers = crate::watch::spawn(
        &client,
        &config,
        &stores,
        writers,
        changes_tx,
        metrics.clone(),
    );

    let (leading_tx, leading_rx) = watch::channel(false);
    let elector = Elector::new(client.clone(), &config.lease);
    let identity = elector.identity().to_owned();
    let election = tokio::spawn(elector.run(leading_tx, stop_rx.clone(), metrics.clone()));

    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(metrics::serve(listener, metrics.clone(), async move {
            crate::stopped(&mut stop).await;
        }))
    };

    let status = StatusWriter::new(client.clone(), &identity, metrics.clone(), config.status);
    let reconciler = Reconciler::new(
        stores,
        config.compile.clone(),
        pusher,
        status,
        metrics.clone(),
        &config.proxies,
    )
    .publishing(config.publish.clone());
    let reconciling = tokio::spawn(reconcile_loop(
        reconciler,
        changes_rx,
        leading_rx,
        stop_rx,
        config.debounce,
    ));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = reconciling.await;
    let _ = election.await;
    for watcher in watchers {
        watcher.abort();
    }
    let _ = server.await;
    Ok(())
}

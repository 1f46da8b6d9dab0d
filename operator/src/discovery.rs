//! Whether the API server serves the Gateway API. Its CRDs are installed separately
//! (upstream's, by the cluster's owner), maybe after the operator started, maybe never:
//! the operator asks API discovery at an interval and starts its Gateway API watches once
//! every kind it reads is served, and stops them if the kinds go away.

use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use weir_crds::gateway::GROUP;

use crate::metrics::Metrics;

/// The Gateway API kinds weir reads, with the version it reads each at.
pub const GATEWAY_API_KINDS: [(&str, &str); 4] = [
    ("v1", "GatewayClass"),
    ("v1", "Gateway"),
    ("v1", "HTTPRoute"),
    ("v1beta1", "ReferenceGrant"),
];

/// First pause before asking again after discovery failed.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What is known of the Gateway API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayApi {
    /// Not asked yet, or every question so far failed.
    Unknown,
    /// Some kind weir reads is not served (the CRDs are not installed).
    Absent,
    /// Every kind weir reads is served.
    Present,
}

/// Asks the API server whether it serves every kind of [`GATEWAY_API_KINDS`].
pub async fn gateway_api(client: &Client) -> Result<GatewayApi, kube::Error> {
    let mut versions: Vec<&str> = GATEWAY_API_KINDS.iter().map(|(v, _)| *v).collect();
    versions.dedup();
    for version in versions {
        let resources = match client
            .list_api_group_resources(&format!("{GROUP}/{version}"))
            .await
        {
            Ok(list) => list.resources,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(GatewayApi::Absent);
            }
            Err(e) => return Err(e),
        };
        let served = GATEWAY_API_KINDS
            .iter()
            .filter(|(v, _)| *v == version)
            .all(|(_, kind)| {
                // Subresources (`gateways/status`) share the kind: the resource itself
                // has no slash in its name.
                resources
                    .iter()
                    .any(|r| r.kind == *kind && !r.name.contains('/'))
            });
        if !served {
            return Ok(GatewayApi::Absent);
        }
    }
    Ok(GatewayApi::Present)
}

/// Asks every `interval` (after a failure: after 1 s, doubling up to `interval`) whether
/// the Gateway API is served and publishes the answer on `known`, logging each change.
/// Runs until `known` has no receiver left.
pub async fn watch_gateway_api(
    client: Client,
    interval: Duration,
    known: watch::Sender<GatewayApi>,
    metrics: Metrics,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let pause = match gateway_api(&client).await {
            Ok(now) => {
                retry = FIRST_RETRY;
                let before = known.send_replace(now);
                match (before, now) {
                    (GatewayApi::Present, GatewayApi::Present)
                    | (GatewayApi::Absent, GatewayApi::Absent) => {}
                    (_, GatewayApi::Present) => tracing::info!(
                        "the API server serves the Gateway API: watching GatewayClasses, \
                         Gateways, HTTPRoutes, ReferenceGrants and Namespaces"
                    ),
                    (GatewayApi::Present, _) => tracing::info!(
                        "the API server no longer serves the Gateway API: stopped watching it"
                    ),
                    (_, _) => tracing::info!(
                        every = %humantime::format_duration(interval),
                        "the API server does not serve the Gateway API (GatewayClass, Gateway, \
                         HTTPRoute v1 and ReferenceGrant v1beta1): asking again at an interval"
                    ),
                }
                interval
            }
            Err(e) => {
                metrics.error("discovery");
                tracing::warn!(error = %e, "asking whether the Gateway API is served failed; retrying");
                let pause = retry;
                retry = (retry * 2).min(interval);
                pause
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = known.closed() => return,
        }
    }
}

//! Leader election on a `coordination.k8s.io/v1` Lease. The holder renews it every third
//! of its duration; a standby takes it once it has gone unrenewed for the whole duration.
//! Writes use the Lease's `resourceVersion`, so two replicas cannot both take it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LeaseConfig;
use crate::metrics::Metrics;

/// Competes for one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl Elector {
    /// An elector for the Lease of `config`.
    pub fn new(client: Client, config: &LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            name: config.name.clone(),
            identity: config.identity.clone(),
            duration: config.duration,
        }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease; whether this replica holds it afterwards.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let spec = if holder == Some(self.identity.as_str()) {
            self.spec(now, spec.acquire_time, spec.lease_transitions.unwrap_or(0))
        } else {
            let held_for = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            ));
            let expired = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .is_none_or(|renewed| renewed.0 + held_for < now);
            if holder.is_some() && !expired {
                return Ok(false);
            }
            self.spec(now, None, spec.lease_transitions.unwrap_or(0) + 1)
        };
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, so a standby need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Competes for the Lease until `shutdown` flips, publishing whether this replica
    /// leads on `leading`. A leader that cannot renew for the Lease's duration steps down.
    /// Releases the Lease on shutdown when holding it.
    pub async fn run(
        self,
        leading: watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
        metrics: Metrics,
    ) {
        let period = self.duration / 3;
        let mut renewed: Option<Instant> = None;
        loop {
            let holds = match self.try_lead().await {
                Ok(true) => {
                    renewed = Some(Instant::now());
                    true
                }
                Ok(false) => {
                    renewed = None;
                    false
                }
                Err(e) => {
                    metrics.error("lease");
                    tracing::warn!(error = %e, "renewing the lease failed");
                    // Keep leading only while the Lease cannot have expired.
                    renewed.is_some_and(|at| at.elapsed() < self.duration - period)
                }
            };
            if *leading.borrow() != holds {
                tracing::info!(identity = %self.identity, leading = holds, "leadership changed");
                metrics.leader(holds);
                let _ = leading.send(holds);
            }
            tokio::select! {
                () = crate::stopped(&mut shutdown) => break,
                () = tokio::time::sleep(period) => {}
            }
        }
        if *leading.borrow() {
            let _ = leading.send(false);
            metrics.leader(false);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "releasing the lease failed");
            }
        }
    }
}

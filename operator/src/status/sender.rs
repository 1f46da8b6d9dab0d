//! The task that sends status writes: takes them from the book oldest first, at most
//! [`StatusLimits::concurrency`] in flight and [`StatusLimits::per_second`] started per
//! second, publishes the Warning Events a write brings, and pauses every write with
//! exponential backoff when the API server refuses one (a `429` from priority and
//! fairness, a `5xx`, a broken connection): the queue keeps coalescing meanwhile.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use governor::{Quota, RateLimiter};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;
use weir_crds::compile::report::ObjectKind;
use weir_crds::{Plugin, Route};

use super::book::{Sent, Write};
use super::{FIELD_MANAGER, Shared, StatusLimits, truncate_note};
use crate::metrics::Metrics;

/// First pause after a refused write.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Longest pause.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Sends writes until aborted.
pub(super) async fn run(
    shared: Arc<Shared>,
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    limits: StatusLimits,
) {
    let concurrency = limits.concurrency.max(1);
    let burst = u32::try_from(concurrency)
        .ok()
        .and_then(std::num::NonZeroU32::new)
        .unwrap_or(std::num::NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(limits.per_second).allow_burst(burst));
    let mut sending = FuturesUnordered::new();
    let mut backoff = FIRST_BACKOFF;
    let mut paused_until: Option<Instant> = None;
    loop {
        if paused_until.is_none() {
            while sending.len() < concurrency {
                let Some(write) = shared.book().next() else {
                    break;
                };
                let (client, recorder, limiter) = (client.clone(), recorder.clone(), &limiter);
                sending.push(async move {
                    limiter.until_ready().await;
                    let sent = send(&client, &recorder, &write).await;
                    (write, sent)
                });
            }
        }
        metrics.status_queue(*shared.outstanding.borrow());
        tokio::select! {
            Some((write, sent)) = sending.next(), if !sending.is_empty() => {
                match sent {
                    Sent::Written | Sent::Gone => backoff = FIRST_BACKOFF,
                    Sent::Failed => {
                        paused_until = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                metrics.status_write(sent);
                let mut book = shared.book();
                book.done(write, sent);
                shared.count(&book);
            }
            () = shared.queued.notified() => {}
            () = async {
                match paused_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => paused_until = None,
        }
    }
}

/// Applies one write, then publishes its Events.
async fn send(client: &Client, recorder: &Recorder, write: &Write) -> Sent {
    match patch(client, write).await {
        Ok(()) => {
            for failure in &write.events {
                let event = Event {
                    type_: EventType::Warning,
                    reason: failure.reason.as_str().to_owned(),
                    note: Some(truncate_note(&format!(
                        "{}: {}",
                        failure.kind, failure.message
                    ))),
                    action: failure.kind.as_str().to_owned(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &write.reference).await {
                    tracing::warn!(object = %write.object, error = %e, "publishing an event failed");
                }
            }
            Sent::Written
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Sent::Gone,
        Err(e) => {
            tracing::warn!(object = %write.object, error = %e, "writing status failed; backing off");
            Sent::Failed
        }
    }
}

async fn patch(client: &Client, write: &Write) -> Result<(), kube::Error> {
    let (object, generation) = (&write.object, write.generation);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let body = |kind: &str| {
        json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": kind,
            "status": {"observedGeneration": generation, "conditions": write.conditions},
        })
    };
    match object.kind {
        ObjectKind::Route => {
            Api::<Route>::namespaced(client.clone(), &object.namespace)
                .patch_status(&object.name, &params, &Patch::Apply(body("Route")))
                .await?;
        }
        ObjectKind::Plugin => {
            Api::<Plugin>::namespaced(client.clone(), &object.namespace)
                .patch_status(&object.name, &params, &Patch::Apply(body("Plugin")))
                .await?;
        }
        // An Ingress's status has no conditions: only the write's Events are published.
        // Gateway API statuses are not written yet.
        ObjectKind::Ingress
        | ObjectKind::GatewayClass
        | ObjectKind::Gateway
        | ObjectKind::HTTPRoute => {}
    }
    Ok(())
}

//! The task that sends status writes: takes them from the book oldest first, at most
//! [`StatusLimits::concurrency`] in flight and [`StatusLimits::per_second`] started per
//! second, publishes the Warning Events a write brings, and pauses every write with
//! exponential backoff when the API server refuses one (a `429` from priority and
//! fairness, a `5xx`, a broken connection): the queue keeps coalescing meanwhile. A
//! `409 Conflict` (an HTTPRoute changed since its status was built) is no refusal: the
//! status is decided again from the object as it is now.

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
use weir_crds::gateway::{Gateway, GatewayClass, HTTPRoute};
use weir_crds::{Plugin, Route};

use super::book::{Body, Sent, Write};
use super::gateway_api::GatewayApiStatus;
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
                    Sent::Written | Sent::Gone | Sent::Conflict => backoff = FIRST_BACKOFF,
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
                    reason: failure.reason.clone(),
                    note: Some(truncate_note(&format!(
                        "{}: {}",
                        failure.condition, failure.message
                    ))),
                    action: failure.condition.clone(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &write.reference).await {
                    tracing::warn!(object = %write.object, error = %e, "publishing an event failed");
                }
            }
            Sent::Written
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Sent::Gone,
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::info!(object = %write.object, "the object changed since its status was decided; deciding again");
            Sent::Conflict
        }
        Err(e) => {
            tracing::warn!(object = %write.object, error = %e, "writing status failed; backing off");
            Sent::Failed
        }
    }
}

async fn patch(client: &Client, write: &Write) -> Result<(), kube::Error> {
    let object = &write.object;
    match &write.body {
        Body::Conditions {
            generation,
            conditions,
        } => {
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let body = |kind: &str| {
                json!({
                    "apiVersion": "weir.dev/v1alpha1",
                    "kind": kind,
                    "status": {"observedGeneration": generation, "conditions": conditions},
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
                // An Ingress's status has no conditions: only the write's Events are
                // published. Gateway API objects' writes carry their whole status.
                ObjectKind::Ingress
                | ObjectKind::GatewayClass
                | ObjectKind::Gateway
                | ObjectKind::HTTPRoute => {}
            }
        }
        Body::GatewayApi { status, read_at } => {
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            let patch = Patch::Merge(status.patch(read_at.as_deref()));
            match status {
                GatewayApiStatus::GatewayClass(_) => {
                    Api::<GatewayClass>::all(client.clone())
                        .patch_status(&object.name, &params, &patch)
                        .await?;
                }
                GatewayApiStatus::Gateway(_) => {
                    Api::<Gateway>::namespaced(client.clone(), &object.namespace)
                        .patch_status(&object.name, &params, &patch)
                        .await?;
                }
                GatewayApiStatus::HTTPRoute(_) => {
                    Api::<HTTPRoute>::namespaced(client.clone(), &object.namespace)
                        .patch_status(&object.name, &params, &patch)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

//! Writing status: the conditions the compiler and the proxies' acks add up to, applied
//! by server-side apply (field manager [`FIELD_MANAGER`]) on each Route and Plugin, only
//! when they changed; and a Kubernetes Event when an object is rejected or fails to load.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use weir_crds::admin::{ProxyAck, programmed};
use weir_crds::compile::ObjectRef;
use weir_crds::compile::report::{ObjectKind, ObjectReport};
use weir_crds::condition::{
    Conditions, DesiredCondition, merge_conditions, same_conditions, summary,
};
use weir_crds::{Plugin, Route};

use crate::metrics::Metrics;
use crate::world::World;

/// Field manager of the operator's status writes.
pub const FIELD_MANAGER: &str = "weir-operator";

/// What one round of status writes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Objects whose status was patched.
    pub patched: usize,
    /// Objects whose status was already right.
    pub unchanged: usize,
    /// Patches that failed (to be retried).
    pub failed: usize,
}

/// The object a report is about, as found in the stores.
enum Found {
    Route(Arc<Route>),
    Plugin(Arc<Plugin>),
}

impl Found {
    /// The written status: its conditions and top-level `observedGeneration`.
    fn status(&self) -> (&[Condition], Option<i64>) {
        match self {
            Self::Route(r) => r
                .status
                .as_ref()
                .map_or((&[], None), |s| (&s.conditions, s.observed_generation)),
            Self::Plugin(p) => p
                .status
                .as_ref()
                .map_or((&[], None), |s| (&s.conditions, s.observed_generation)),
        }
    }

    fn uid(&self) -> Option<String> {
        match self {
            Self::Route(r) => r.uid(),
            Self::Plugin(p) => p.uid(),
        }
    }

    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        match self {
            Self::Route(r) => r.object_ref(&()),
            Self::Plugin(p) => p.object_ref(&()),
        }
    }
}

fn find(world: &World, object: &ObjectRef) -> Option<Found> {
    let is = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name.as_deref() == Some(&object.name)
            && meta.namespace.as_deref() == Some(&object.namespace)
    };
    match object.kind {
        ObjectKind::Route => world
            .routes
            .iter()
            .find(|r| is(&r.metadata))
            .cloned()
            .map(Found::Route),
        ObjectKind::Plugin => world
            .plugins
            .iter()
            .find(|p| is(&p.metadata))
            .cloned()
            .map(Found::Plugin),
    }
}

/// Every condition an object should have: the compiler's, `Programmed`, and their
/// kstatus summary.
pub fn desired_conditions(
    report: &ObjectReport,
    version: u64,
    acks: &[ProxyAck],
) -> Vec<DesiredCondition> {
    let mut desired = report.conditions();
    desired.push(programmed(report, version, acks));
    desired.extend(summary(&desired));
    desired
}

/// Now, to the second, as the API server stores condition times.
fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

/// What was last written to an object: its uid (a recreated object starts over), the
/// generation it described and the conditions.
struct WrittenStatus {
    uid: Option<String>,
    generation: Option<i64>,
    conditions: Conditions,
}

/// Writes status, remembering what it wrote so a store that has not caught up yet does
/// not cause the same write twice.
pub struct StatusWriter {
    client: Client,
    recorder: Recorder,
    written: HashMap<ObjectRef, WrittenStatus>,
    metrics: Metrics,
}

impl StatusWriter {
    /// A writer using `client`; Events name `instance` as the reporting instance.
    pub fn new(client: Client, instance: &str, metrics: Metrics) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(instance.into()),
            },
        );
        Self {
            client,
            recorder,
            written: HashMap::new(),
            metrics,
        }
    }

    /// Forgets what was written (when leadership is regained, another replica may have
    /// written since).
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Brings the status of every reported object up to date.
    pub async fn write(
        &mut self,
        world: &World,
        reports: &[ObjectReport],
        version: u64,
        acks: &[ProxyAck],
    ) -> Written {
        let mut result = Written::default();
        let now = now();
        for report in reports {
            let Some(found) = find(world, &report.object) else {
                continue;
            };
            let uid = found.uid();
            let (base, base_generation) = match self.written.get(&report.object) {
                Some(written) if written.uid == uid => {
                    (written.conditions.as_slice(), written.generation)
                }
                _ => found.status(),
            };
            let desired = desired_conditions(report, version, acks);
            let merged = merge_conditions(base, &desired, report.generation, &now);
            if same_conditions(&merged, base) && base_generation == report.generation {
                result.unchanged += 1;
                continue;
            }
            let rejections: Vec<&DesiredCondition> = desired
                .iter()
                .filter(|d| d.warrants_event() && !base.iter().any(|c| same_failure(c, d)))
                .collect();
            match self.patch(&report.object, report.generation, &merged).await {
                Ok(()) => {
                    result.patched += 1;
                    for rejection in rejections {
                        self.event(&found, rejection).await;
                    }
                    self.written.insert(
                        report.object.clone(),
                        WrittenStatus {
                            uid,
                            generation: report.generation,
                            conditions: merged,
                        },
                    );
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => {
                    result.failed += 1;
                    self.metrics.error("status");
                    tracing::warn!(object = %report.object, error = %e, "writing status failed");
                }
            }
        }
        let live: std::collections::HashSet<&ObjectRef> =
            reports.iter().map(|r| &r.object).collect();
        self.written.retain(|object, _| live.contains(object));
        result
    }

    async fn patch(
        &self,
        object: &ObjectRef,
        generation: Option<i64>,
        conditions: &Conditions,
    ) -> Result<(), kube::Error> {
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
                Api::<Route>::namespaced(self.client.clone(), &object.namespace)
                    .patch_status(&object.name, &params, &Patch::Apply(body("Route")))
                    .await?;
            }
            ObjectKind::Plugin => {
                Api::<Plugin>::namespaced(self.client.clone(), &object.namespace)
                    .patch_status(&object.name, &params, &Patch::Apply(body("Plugin")))
                    .await?;
            }
        }
        Ok(())
    }

    async fn event(&self, found: &Found, condition: &DesiredCondition) {
        let event = Event {
            type_: EventType::Warning,
            reason: condition.reason.as_str().to_owned(),
            note: Some(truncate_note(&format!(
                "{}: {}",
                condition.kind, condition.message
            ))),
            action: condition.kind.as_str().to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &found.reference()).await {
            self.metrics.error("event");
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}

/// Whether `current` already says `desired` failed, for the same reason.
fn same_failure(current: &Condition, desired: &DesiredCondition) -> bool {
    current.type_ == desired.kind.as_str()
        && current.status == "False"
        && current.reason == desired.reason.as_str()
}

/// Event notes are limited to 1 KiB.
fn truncate_note(note: &str) -> String {
    const MAX: usize = 1000;
    if note.len() <= MAX {
        return note.to_owned();
    }
    let mut end = MAX - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

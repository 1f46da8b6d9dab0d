//! The status book: the status each object should have, what this replica wrote, and the
//! writes waiting. Writes are coalesced per object: a newer status replaces a queued one
//! (only the latest is written), and one decided while a write of the same object is in
//! flight waits for it, so writes of one object never overlap or arrive out of order.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use weir_crds::compile::ObjectRef;
use weir_crds::condition::{
    ConditionType, Conditions, DesiredCondition, merge_conditions, same_conditions,
};

use super::gateway_api::GatewayApiStatus;

/// What a write puts in an object's status.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// `status.conditions` and `status.observedGeneration` of a Route or Plugin, applied
    /// by server-side apply; an Ingress's status has no conditions, so its write only
    /// publishes the Events.
    Conditions {
        /// The generation the status describes (`observedGeneration`).
        generation: Option<i64>,
        /// The whole condition list to apply.
        conditions: Conditions,
    },
    /// A Gateway API object's status, by merge patch.
    GatewayApi {
        /// The status.
        status: GatewayApiStatus,
        /// `metadata.resourceVersion` of the object it was built from.
        read_at: Option<String>,
    },
}

impl Body {
    /// The `(type, reason)` of each failing condition.
    fn failed(&self) -> Failed {
        match self {
            Self::Conditions { conditions, .. } => failed(conditions.iter()),
            Self::GatewayApi { status, .. } => failed(status.conditions()),
        }
    }
}

/// The status decided last for an object: queued, being written or written.
struct Intent {
    uid: Option<String>,
    body: Body,
}

/// The `(type, reason)` of each failing condition of a status: all that Events are
/// decided on, kept instead of whole statuses for every object written.
type Failed = Vec<(String, String)>;

/// Whether `condition` says something is wrong: `False`, but for `Conflicted` (a Gateway
/// listener's), which is `True` when it is.
pub fn is_failing(condition: &Condition) -> bool {
    let failing = if condition.type_ == ConditionType::Conflicted.as_str() {
        "True"
    } else {
        "False"
    };
    condition.status == failing
}

fn failed<'a>(conditions: impl Iterator<Item = &'a Condition>) -> Failed {
    conditions
        .filter(|c| is_failing(c))
        .map(|c| (c.type_.clone(), c.reason.clone()))
        .collect()
}

/// A failing condition that deserves a Warning Event when it is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The condition type.
    pub condition: String,
    /// Its reason: the Event's.
    pub reason: String,
    /// Its message.
    pub message: String,
}

impl From<&DesiredCondition> for Failure {
    fn from(condition: &DesiredCondition) -> Self {
        Self {
            condition: condition.kind.as_str().to_owned(),
            reason: condition.reason.as_str().to_owned(),
            message: condition.message.clone(),
        }
    }
}

impl From<&Condition> for Failure {
    fn from(condition: &Condition) -> Self {
        Self {
            condition: condition.type_.clone(),
            reason: condition.reason.clone(),
            message: condition.message.clone(),
        }
    }
}

/// A write waiting: what is not in the object's [`Intent`].
struct Queued {
    /// Where Events about the object point.
    reference: ObjectReference,
    /// Failed conditions that warrant a Warning Event when they are new.
    failures: Vec<Failure>,
    /// What the store showed failed when decided: what new failures are measured
    /// against when this replica has written nothing for the object.
    stored: Failed,
}

/// One status write.
#[derive(Clone, Debug)]
pub struct Write {
    /// The object.
    pub object: ObjectRef,
    /// What to write.
    pub body: Body,
    /// Where Events about the object point.
    pub reference: ObjectReference,
    /// The failures new since the status this replica last wrote.
    pub events: Vec<Failure>,
    /// Kept to queue the write again if it fails.
    failures: Vec<Failure>,
    stored: Failed,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Applied.
    Written,
    /// The object is gone.
    Gone,
    /// The object changed since the status was built from it (`409 Conflict`): it is
    /// decided again from the object as it is now.
    Conflict,
    /// Failed; to be tried again.
    Failed,
}

/// What an object's status should be, what was written, and the writes waiting.
#[derive(Default)]
pub struct Book {
    latest: HashMap<ObjectRef, Intent>,
    written: HashMap<ObjectRef, (Option<String>, Failed)>,
    queued: HashMap<ObjectRef, Queued>,
    order: VecDeque<ObjectRef>,
    in_flight: HashMap<ObjectRef, (Option<String>, Failed)>,
}

/// What the store shows of an object now.
pub struct Stored<'a> {
    /// `metadata.uid`.
    pub uid: Option<&'a str>,
    /// `status.conditions`.
    pub conditions: &'a [Condition],
    /// `status.observedGeneration`.
    pub generation: Option<i64>,
}

/// What the store shows of a Gateway API object now.
pub struct StoredStatus<'a> {
    /// `metadata.uid`.
    pub uid: Option<&'a str>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<&'a str>,
    /// Its status.
    pub status: GatewayApiStatus,
}

impl Book {
    /// Decides the status of `object` from `desired`: queues a write, replacing a queued
    /// one, unless the status decided last (or, for an object this replica has not
    /// written, the stored one) already says the same. Returns whether it queued.
    pub fn decide(
        &mut self,
        object: &ObjectRef,
        stored: Stored<'_>,
        generation: Option<i64>,
        desired: &[DesiredCondition],
        reference: impl FnOnce() -> ObjectReference,
        now: &Time,
    ) -> bool {
        self.forget_observed(object, &stored);
        let (base, base_generation) = match self.latest.get(object) {
            Some(Intent {
                uid,
                body:
                    Body::Conditions {
                        generation: decided,
                        conditions,
                    },
            }) if uid.as_deref() == stored.uid => (conditions.as_slice(), *decided),
            _ => (stored.conditions, stored.generation),
        };
        let merged = merge_conditions(base, desired, generation, now);
        if same_conditions(&merged, base) && base_generation == generation {
            return false;
        }
        let failures: Vec<Failure> = desired
            .iter()
            .filter(|d| d.warrants_event())
            .map(Failure::from)
            .collect();
        let stored_failed = failed(stored.conditions.iter());
        let intent = Intent {
            uid: stored.uid.map(str::to_owned),
            body: Body::Conditions {
                generation,
                conditions: merged,
            },
        };
        self.queue(object, intent, failures, stored_failed, reference);
        true
    }

    /// Decides the status of a Gateway API `object`, `built` from what the store shows:
    /// queues a write, replacing a queued one, unless the status decided last (while the
    /// store still shows the object it was built from) or else the stored one already
    /// says the same. Returns whether it queued.
    pub fn decide_status(
        &mut self,
        object: &ObjectRef,
        stored: StoredStatus<'_>,
        built: GatewayApiStatus,
        reference: impl FnOnce() -> ObjectReference,
    ) -> bool {
        let decided = self
            .latest
            .get(object)
            .and_then(|intent| match &intent.body {
                Body::GatewayApi { status, read_at }
                    if intent.uid.as_deref() == stored.uid
                        && read_at.as_deref() == stored.resource_version =>
                {
                    Some(status)
                }
                _ => None,
            });
        if let Some(decided) = decided {
            if built.same_as(decided) {
                return false;
            }
        } else if built.same_as(&stored.status) {
            // The store shows it: nothing waits to be written, and the store is the base.
            if self.queued.remove(object).is_some() {
                self.order.retain(|o| o != object);
            }
            if !self.in_flight.contains_key(object) {
                self.latest.remove(object);
            }
            return false;
        }
        let failures = built.failures();
        let stored_failed = failed(stored.status.conditions());
        let intent = Intent {
            uid: stored.uid.map(str::to_owned),
            body: Body::GatewayApi {
                status: built,
                read_at: stored.resource_version.map(str::to_owned),
            },
        };
        self.queue(object, intent, failures, stored_failed, reference);
        true
    }

    /// Makes `intent` the status decided for `object` and queues its write (replacing a
    /// queued one, which keeps its place).
    fn queue(
        &mut self,
        object: &ObjectRef,
        intent: Intent,
        failures: Vec<Failure>,
        stored: Failed,
        reference: impl FnOnce() -> ObjectReference,
    ) {
        let queued = Queued {
            reference: reference(),
            stored: if failures.is_empty() {
                Failed::new()
            } else {
                stored
            },
            failures,
        };
        self.latest.insert(object.clone(), intent);
        if self.queued.insert(object.clone(), queued).is_none() {
            self.order.push_back(object.clone());
        }
    }

    /// Forgets the status decided for `object` once the store shows it written and no
    /// write of it waits: the store is the base from then on, and the book holds
    /// conditions only for objects whose writes are not yet seen (at 10,000 Routes the
    /// conditions of every object would be megabytes held twice).
    fn forget_observed(&mut self, object: &ObjectRef, stored: &Stored<'_>) {
        let observed = self.latest.get(object).is_some_and(|intent| {
            intent.uid.as_deref() == stored.uid
                && matches!(
                    &intent.body,
                    Body::Conditions { generation, conditions }
                        if *generation == stored.generation
                            && same_conditions(conditions, stored.conditions)
                )
        });
        if observed && !self.queued.contains_key(object) && !self.in_flight.contains_key(object) {
            self.latest.remove(object);
        }
    }

    /// Forgets every object not in `live` (deleted), with its queued write.
    pub fn retain(&mut self, live: &HashSet<&ObjectRef>) {
        self.latest.retain(|object, _| live.contains(object));
        self.written.retain(|object, _| live.contains(object));
        self.queued.retain(|object, _| live.contains(object));
        self.order.retain(|object| live.contains(object));
    }

    /// Forgets everything decided and written (leadership changed hands: another replica
    /// may have written since, or this one must stop writing). Writes in flight finish.
    pub fn forget(&mut self) {
        self.latest.clear();
        self.written.clear();
        self.queued.clear();
        self.order.clear();
    }

    /// The next write to send: the oldest queued one whose object has no write in flight.
    /// Its `events` are the failures new since what this replica last wrote.
    pub fn next(&mut self) -> Option<Write> {
        let position = self
            .order
            .iter()
            .position(|object| !self.in_flight.contains_key(object))?;
        let object = self.order.remove(position)?;
        let queued = self.queued.remove(&object)?;
        let intent = self.latest.get(&object)?;
        let base = match self.written.get(&object) {
            Some((uid, failed)) if *uid == intent.uid => failed.as_slice(),
            _ => queued.stored.as_slice(),
        };
        let events = queued
            .failures
            .iter()
            .filter(|f| !base.iter().any(|b| b.0 == f.condition && b.1 == f.reason))
            .cloned()
            .collect();
        self.in_flight
            .insert(object.clone(), (intent.uid.clone(), intent.body.failed()));
        Some(Write {
            object,
            body: intent.body.clone(),
            reference: queued.reference,
            events,
            failures: queued.failures,
            stored: queued.stored,
        })
    }

    /// Records how `write` ended. A failed write is queued again at the back, unless a
    /// newer status was queued meanwhile; after a conflict the status is decided again
    /// from the object as the store shows it next.
    pub fn done(&mut self, write: Write, sent: Sent) {
        let object = &write.object;
        let Some(in_flight) = self.in_flight.remove(object) else {
            return;
        };
        match sent {
            Sent::Written => {
                self.written.insert(object.clone(), in_flight);
            }
            Sent::Gone => {
                self.written.remove(object);
            }
            Sent::Conflict => {
                if !self.queued.contains_key(object) {
                    self.latest.remove(object);
                }
            }
            Sent::Failed => {
                if self.latest.contains_key(object) && !self.queued.contains_key(object) {
                    self.order.push_back(object.clone());
                    self.queued.insert(
                        object.clone(),
                        Queued {
                            reference: write.reference,
                            failures: write.failures,
                            stored: write.stored,
                        },
                    );
                }
            }
        }
    }

    /// Writes queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.queued.len() + self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use weir_crds::compile::report::ObjectKind;
    use weir_crds::condition::{ConditionType, Reason};

    fn object(name: &str) -> ObjectRef {
        ObjectRef::namespaced(ObjectKind::Route, &format!("shop/{name}"))
    }

    fn stored() -> Stored<'static> {
        Stored {
            uid: Some("uid"),
            conditions: &[],
            generation: None,
        }
    }

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).unwrap())
    }

    fn programmed(ok: bool, message: &str) -> Vec<DesiredCondition> {
        vec![if ok {
            DesiredCondition::ok(ConditionType::Programmed, Reason::Programmed, message)
        } else {
            DesiredCondition::failed(ConditionType::Programmed, Reason::LoadFailed, message)
        }]
    }

    fn conditions(write: &Write) -> &[Condition] {
        match &write.body {
            Body::Conditions { conditions, .. } => conditions,
            Body::GatewayApi { .. } => panic!("a Route's write"),
        }
    }

    fn decide(book: &mut Book, name: &str, desired: &[DesiredCondition]) -> bool {
        book.decide(
            &object(name),
            stored(),
            Some(1),
            desired,
            ObjectReference::default,
            &at(1),
        )
    }

    #[test]
    fn a_newer_status_replaces_the_queued_one() {
        let mut book = Book::default();
        assert!(decide(&mut book, "a", &programmed(false, "applied on 0/1")));
        assert!(decide(&mut book, "b", &programmed(true, "applied on 1/1")));
        assert!(decide(&mut book, "a", &programmed(true, "applied on 1/1")));
        // Deciding the same again queues nothing.
        assert!(!decide(&mut book, "a", &programmed(true, "applied on 1/1")));
        assert_eq!(book.outstanding(), 2);
        let first = book.next().unwrap();
        assert_eq!(first.object, object("a"));
        assert_eq!(conditions(&first)[0].message, "applied on 1/1");
        assert_eq!(book.next().unwrap().object, object("b"));
        assert!(book.next().is_none());
    }

    #[test]
    fn writes_of_one_object_never_overlap_and_a_failure_is_retried() {
        let mut book = Book::default();
        decide(&mut book, "a", &programmed(false, "one"));
        let first = book.next().unwrap();
        decide(&mut book, "a", &programmed(false, "two"));
        assert!(book.next().is_none(), "a is in flight");
        book.done(first, Sent::Failed);
        // The newer status supersedes the failed one.
        let second = book.next().unwrap();
        assert_eq!(conditions(&second)[0].message, "two");
        book.done(second, Sent::Failed);
        let retried = book.next().unwrap();
        assert_eq!(conditions(&retried)[0].message, "two");
        book.done(retried, Sent::Written);
        assert_eq!(book.outstanding(), 0);
    }

    #[test]
    fn an_event_only_for_a_failure_not_written_before() {
        let mut book = Book::default();
        decide(&mut book, "a", &programmed(false, "one"));
        let write = book.next().unwrap();
        assert_eq!(write.events.len(), 1);
        book.done(write, Sent::Written);
        // Same reason, new message: written, no new Event.
        decide(&mut book, "a", &programmed(false, "two"));
        let write = book.next().unwrap();
        assert!(write.events.is_empty());
        book.done(write, Sent::Written);
        // A burst fixed and broken again before anything was written: no Event either.
        decide(&mut book, "a", &programmed(true, "fixed"));
        decide(&mut book, "a", &programmed(false, "three"));
        let write = book.next().unwrap();
        assert!(write.events.is_empty());
    }

    #[test]
    fn once_the_store_shows_a_written_status_it_is_the_base() {
        let mut book = Book::default();
        decide(&mut book, "a", &programmed(true, "applied on 1/1"));
        let write = book.next().unwrap();
        let written = conditions(&write).to_vec();
        book.done(write, Sent::Written);
        let shows = |conditions| Stored {
            uid: Some("uid"),
            conditions,
            generation: Some(1),
        };
        let same = |book: &mut Book, stored| {
            let desired = programmed(true, "applied on 1/1");
            book.decide(
                &object("a"),
                stored,
                Some(1),
                &desired,
                ObjectReference::default,
                &at(2),
            )
        };
        // Before the store shows the write, the book's decision is the base: nothing to do.
        assert!(!same(&mut book, stored()));
        // The store shows it: still nothing to do.
        assert!(!same(&mut book, shows(&written)));
        // Someone else changed the status since: the store is the base now, and the
        // operator's conditions are written again.
        let mut changed = written.clone();
        changed[0].message = "edited by hand".into();
        assert!(same(&mut book, shows(&changed)));
        assert_eq!(conditions(&book.next().unwrap()), written);
    }

    #[test]
    fn deleted_objects_are_forgotten() {
        let mut book = Book::default();
        decide(&mut book, "a", &programmed(true, "one"));
        decide(&mut book, "b", &programmed(true, "one"));
        let a = object("a");
        book.retain(&HashSet::from([&a]));
        assert_eq!(book.outstanding(), 1);
        assert_eq!(book.next().unwrap().object, a);
    }

    /// A GatewayClass status with `Accepted` of `status` and `reason`, turned at `second`.
    fn class_status(status: &str, reason: &str, second: i64) -> GatewayApiStatus {
        GatewayApiStatus::GatewayClass(weir_crds::gateway::GatewayClassStatus {
            conditions: vec![Condition {
                type_: "Accepted".into(),
                status: status.into(),
                reason: reason.into(),
                message: reason.into(),
                observed_generation: Some(1),
                last_transition_time: at(second),
            }],
        })
    }

    fn decide_class(
        book: &mut Book,
        version: &str,
        shows: GatewayApiStatus,
        built: GatewayApiStatus,
    ) -> bool {
        let object = ObjectRef::namespaced(ObjectKind::GatewayClass, "weir");
        let stored = StoredStatus {
            uid: Some("uid"),
            resource_version: Some(version),
            status: shows,
        };
        book.decide_status(&object, stored, built, ObjectReference::default)
    }

    #[test]
    fn a_gateway_api_status_is_decided_against_the_object_it_was_built_from() {
        let mut book = Book::default();
        let refused = || class_status("False", "InvalidParameters", 1);
        let accepted = |second| class_status("True", "Accepted", second);
        // The store shows it already (another time of turning is no difference).
        assert!(!decide_class(&mut book, "1", accepted(1), accepted(2)));
        assert!(decide_class(&mut book, "1", accepted(1), refused()));
        let write = book.next().unwrap();
        assert_eq!(write.events.len(), 1, "a new failure: one Event");
        assert_eq!(write.events[0].reason, "InvalidParameters");
        let Body::GatewayApi { read_at, .. } = &write.body else {
            panic!("a GatewayClass's write");
        };
        assert_eq!(read_at.as_deref(), Some("1"));
        book.done(write, Sent::Written);
        // The store has not caught up with the write: nothing to do.
        assert!(!decide_class(&mut book, "1", accepted(1), refused()));
        // It shows the write: nothing to do, and nothing kept.
        assert!(!decide_class(&mut book, "2", refused(), refused()));
        assert!(book.latest.is_empty());
        // A write refused as the object changed meanwhile is decided again from the
        // object as the store shows it next, not retried as it was.
        assert!(decide_class(&mut book, "2", refused(), accepted(3)));
        let write = book.next().unwrap();
        book.done(write, Sent::Conflict);
        assert_eq!(book.outstanding(), 0);
        assert!(decide_class(&mut book, "3", refused(), accepted(3)));
        let Body::GatewayApi { read_at, .. } = &book.next().unwrap().body else {
            panic!("a GatewayClass's write");
        };
        assert_eq!(read_at.as_deref(), Some("3"));
    }
}

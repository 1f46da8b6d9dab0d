//! The status book: the status each object should have, what this replica wrote, and the
//! writes waiting. Writes are coalesced per object: a newer status replaces a queued one
//! (only the latest is written), and one decided while a write of the same object is in
//! flight waits for it, so writes of one object never overlap or arrive out of order.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use weir_crds::compile::ObjectRef;
use weir_crds::condition::{Conditions, DesiredCondition, merge_conditions, same_conditions};

/// The status decided last for an object: queued, being written or written.
struct Intent {
    uid: Option<String>,
    generation: Option<i64>,
    conditions: Conditions,
}

/// The `(type, reason)` of each `False` condition of a status: all that Events are
/// decided on, kept instead of whole statuses for every object written.
type Failed = Vec<(String, String)>;

fn failed(conditions: &[Condition]) -> Failed {
    conditions
        .iter()
        .filter(|c| c.status == "False")
        .map(|c| (c.type_.clone(), c.reason.clone()))
        .collect()
}

/// A write waiting: what is not in the object's [`Intent`].
struct Queued {
    /// Where Events about the object point.
    reference: ObjectReference,
    /// Failed conditions that warrant a Warning Event when they are new.
    failures: Vec<DesiredCondition>,
    /// What the store showed failed when decided: what new failures are measured
    /// against when this replica has written nothing for the object.
    stored: Failed,
}

/// One status write.
#[derive(Clone, Debug)]
pub struct Write {
    /// The object.
    pub object: ObjectRef,
    /// The generation the status describes (`observedGeneration`).
    pub generation: Option<i64>,
    /// The whole condition list to apply.
    pub conditions: Conditions,
    /// Where Events about the object point.
    pub reference: ObjectReference,
    /// The failures new since the status this replica last wrote.
    pub events: Vec<DesiredCondition>,
    /// Kept to queue the write again if it fails.
    failures: Vec<DesiredCondition>,
    stored: Failed,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Applied.
    Written,
    /// The object is gone.
    Gone,
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
            Some(intent) if intent.uid.as_deref() == stored.uid => {
                (intent.conditions.as_slice(), intent.generation)
            }
            _ => (stored.conditions, stored.generation),
        };
        let merged = merge_conditions(base, desired, generation, now);
        if same_conditions(&merged, base) && base_generation == generation {
            return false;
        }
        let failures: Vec<DesiredCondition> = desired
            .iter()
            .filter(|d| d.warrants_event())
            .cloned()
            .collect();
        let queued = Queued {
            reference: reference(),
            stored: if failures.is_empty() {
                Failed::new()
            } else {
                failed(stored.conditions)
            },
            failures,
        };
        self.latest.insert(
            object.clone(),
            Intent {
                uid: stored.uid.map(str::to_owned),
                generation,
                conditions: merged,
            },
        );
        if self.queued.insert(object.clone(), queued).is_none() {
            self.order.push_back(object.clone());
        }
        true
    }

    /// Forgets the status decided for `object` once the store shows it written and no
    /// write of it waits: the store is the base from then on, and the book holds
    /// conditions only for objects whose writes are not yet seen (at 10,000 Routes the
    /// conditions of every object would be megabytes held twice).
    fn forget_observed(&mut self, object: &ObjectRef, stored: &Stored<'_>) {
        let observed = self.latest.get(object).is_some_and(|intent| {
            intent.uid.as_deref() == stored.uid
                && intent.generation == stored.generation
                && same_conditions(&intent.conditions, stored.conditions)
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
            .filter(|d| !base.iter().any(|f| same_failure(f, d)))
            .cloned()
            .collect();
        self.in_flight.insert(
            object.clone(),
            (intent.uid.clone(), failed(&intent.conditions)),
        );
        Some(Write {
            object,
            generation: intent.generation,
            conditions: intent.conditions.clone(),
            reference: queued.reference,
            events,
            failures: queued.failures,
            stored: queued.stored,
        })
    }

    /// Records how `write` ended. A failed write is queued again at the back, unless a
    /// newer status was queued meanwhile.
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

/// Whether `failed` (a `False` condition's type and reason) is what `desired` says.
fn same_failure(failed: &(String, String), desired: &DesiredCondition) -> bool {
    failed.0 == desired.kind.as_str() && failed.1 == desired.reason.as_str()
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
        assert_eq!(first.conditions[0].message, "applied on 1/1");
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
        assert_eq!(second.conditions[0].message, "two");
        book.done(second, Sent::Failed);
        let retried = book.next().unwrap();
        assert_eq!(retried.conditions[0].message, "two");
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
        let written = write.conditions.clone();
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
        assert_eq!(book.next().unwrap().conditions, written);
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
}

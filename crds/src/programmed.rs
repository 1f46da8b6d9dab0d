//! `Programmed`: whether every proxy serves an object as it is now.
//!
//! An object is served as it is now from some snapshot on: the first one holding its
//! current generation, its conditions and what it put in the snapshot (its rules and
//! their host entries, the certificates named for it, a Plugin's bundle). That version is
//! the object's *since* version, kept by [`ServedSince`] across builds. A proxy serving
//! that version or a later one serves the object, so a snapshot that leaves an object as
//! it was changes nothing in its status: status writes follow the object's own changes,
//! not the number of snapshots built. Backend endpoints are not part of what a Route
//! puts in the snapshot: they churn, and the Route's generation is served either way.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::Snapshot;
use crate::admin::ProxyAck;
use crate::compile::report::{InSnapshot, ObjectKind, ObjectRef, ObjectReport};
use crate::condition::{ConditionType, DesiredCondition, Reason};

/// Longest list of proxies named in one message; the rest are counted.
const MAX_PROXIES_NAMED: usize = 3;

/// The `Programmed` condition of the object `report` is about, served as it is now from
/// snapshot `since` on, for what each proxy acknowledged.
pub fn programmed(report: &ObjectReport, since: u64, proxies: &[ProxyAck]) -> DesiredCondition {
    let kind = ConditionType::Programmed;
    if report.in_snapshot == InSnapshot::No {
        return DesiredCondition::failed(
            kind,
            Reason::NotProgrammed,
            "left out of the snapshot: see the other conditions",
        );
    }
    if proxies.is_empty() {
        return DesiredCondition::failed(kind, Reason::Pending, "no ready proxy endpoint");
    }
    let what = match (&report.in_snapshot, report.object.kind) {
        (InSnapshot::LastGood { .. }, _) => "the last good version ",
        (InSnapshot::Partly, ObjectKind::Route) => "the rules not in conflict ",
        _ => "",
    };
    let total = proxies.len();
    let mut failed = Vec::new();
    let mut lagging = Vec::new();
    for ack in proxies {
        if ack.version.is_some_and(|served| served >= since) {
            if let Some(failure) = ack.failures.iter().find(|f| f.is_about(&report.object)) {
                failed.push(format!("{}: {}", ack.proxy, failure.message));
            }
        } else {
            let at = ack
                .version
                .map_or_else(|| "no snapshot".to_owned(), |v| format!("snapshot {v}"));
            let why = ack
                .error
                .as_deref()
                .map_or_else(String::new, |e| format!(": {e}"));
            lagging.push(format!("{} at {at}{why}", ack.proxy));
        }
    }
    let applied = total - lagging.len() - failed.len();
    let mut message = format!("{what}applied on {applied}/{total} proxies");
    if !failed.is_empty() {
        message.push_str(&format!("; failed to load on {}", name_some(&failed, "; ")));
    }
    if !lagging.is_empty() {
        message.push_str(&format!(
            "; lagging behind snapshot {since}: {}",
            name_some(&lagging, "; ")
        ));
    }
    if !failed.is_empty() {
        DesiredCondition::failed(kind, Reason::LoadFailed, message)
    } else if !lagging.is_empty() {
        DesiredCondition::failed(kind, Reason::Pending, message)
    } else {
        DesiredCondition::ok(kind, Reason::Programmed, message)
    }
}

fn name_some(items: &[String], separator: &str) -> String {
    let mut text = items
        .iter()
        .take(MAX_PROXIES_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(separator);
    if items.len() > MAX_PROXIES_NAMED {
        text.push_str(&format!(
            "{separator}and {} more",
            items.len() - MAX_PROXIES_NAMED
        ));
    }
    text
}

/// What one object looked like, and since which snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Served {
    digest: u64,
    since: u64,
}

/// Since which snapshot each object is served as it is now, kept across builds.
#[derive(Clone, Debug, Default)]
pub struct ServedSince {
    objects: HashMap<ObjectRef, Served>,
}

impl ServedSince {
    /// Records a new snapshot and the reports of the compilation that made it: an object
    /// whose report or content differs from the last snapshot recorded is served as it is
    /// now from `snapshot.version` on; the others keep their version. Objects no longer
    /// reported are forgotten.
    pub fn record(&mut self, snapshot: &Snapshot, reports: &[ObjectReport]) {
        let mut contents = content_hashers(snapshot);
        let mut objects = HashMap::with_capacity(reports.len());
        for report in reports {
            let mut hasher = contents.remove(&report.object).unwrap_or_default();
            hash_json(&mut hasher, report);
            let digest = hasher.finish();
            let since = match self.objects.get(&report.object) {
                Some(served) if served.digest == digest => served.since,
                _ => snapshot.version,
            };
            objects.insert(report.object.clone(), Served { digest, since });
        }
        self.objects = objects;
    }

    /// The snapshot numbered `from` was renumbered `to`: objects served since it are now
    /// served since `to`.
    pub fn renumbered(&mut self, from: u64, to: u64) {
        for served in self.objects.values_mut() {
            if served.since == from {
                served.since = to;
            }
        }
    }

    /// Since which snapshot `object` is served as it is now, if it was recorded.
    pub fn get(&self, object: &ObjectRef) -> Option<u64> {
        self.objects.get(object).map(|served| served.since)
    }
}

/// Hashes `value` as its JSON text: snapshot parts hold JSON configs, which have no
/// `Hash`. Plain data always serializes.
fn hash_json(hasher: &mut DefaultHasher, value: &impl serde::Serialize) {
    serde_json::to_vec(value).unwrap_or_default().hash(hasher);
}

/// A hasher per object, fed with what the object put in `snapshot`, in snapshot order.
fn content_hashers(snapshot: &Snapshot) -> HashMap<ObjectRef, DefaultHasher> {
    let mut hashers: HashMap<ObjectRef, DefaultHasher> = HashMap::new();
    for (id, rule) in &snapshot.rules {
        let hasher = hashers
            .entry(ObjectRef::namespaced(ObjectKind::Route, &rule.route))
            .or_default();
        id.hash(hasher);
        hash_json(hasher, rule);
    }
    for host in &snapshot.virtual_hosts {
        for entry in &host.entries {
            let Some(rule) = snapshot.rules.get(&entry.rule) else {
                continue;
            };
            let hasher = hashers
                .entry(ObjectRef::namespaced(ObjectKind::Route, &rule.route))
                .or_default();
            host.host.hash(hasher);
            hash_json(hasher, entry);
        }
    }
    for certificate in &snapshot.certificates {
        for route in &certificate.routes {
            let hasher = hashers
                .entry(ObjectRef::namespaced(ObjectKind::Route, route))
                .or_default();
            certificate.secret.hash(hasher);
            certificate.chain_pem.hash(hasher);
        }
    }
    for bundle in snapshot.plugins.values() {
        let hasher = hashers
            .entry(ObjectRef {
                kind: ObjectKind::Plugin,
                namespace: bundle.namespace.clone(),
                name: bundle.name.clone(),
            })
            .or_default();
        hash_json(hasher, bundle);
    }
    hashers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::LoadFailure;

    fn report(kind: ObjectKind, in_snapshot: InSnapshot) -> ObjectReport {
        let mut report = ObjectReport::new(kind, "shop", "api", Some(2));
        report.in_snapshot = in_snapshot;
        report
    }

    fn ack(proxy: &str, version: Option<u64>) -> ProxyAck {
        ProxyAck {
            proxy: proxy.into(),
            version,
            failures: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn applied_everywhere_at_or_after_the_since_version() {
        let route = report(ObjectKind::Route, InSnapshot::Whole);
        let c = programmed(
            &route,
            40,
            &[ack("a", Some(42)), ack("b", Some(40)), ack("c", Some(41))],
        );
        assert!(c.status);
        assert_eq!(c.reason, Reason::Programmed);
        assert_eq!(c.message, "applied on 3/3 proxies");
    }

    #[test]
    fn lagging_and_failing_proxies_are_named() {
        let mut failing = ack("b", Some(42));
        failing.failures.push(LoadFailure {
            kind: "Plugin".into(),
            namespace: "shop".into(),
            name: "api".into(),
            message: "onLoad threw".into(),
        });
        let mut down = ack("c", Some(41));
        down.error = Some("connection refused".into());
        let plugin = report(ObjectKind::Plugin, InSnapshot::Whole);
        let c = programmed(
            &plugin,
            42,
            &[ack("a", Some(42)), failing.clone(), down.clone()],
        );
        assert!(!c.status);
        assert_eq!(c.reason, Reason::LoadFailed);
        assert_eq!(
            c.message,
            "applied on 1/3 proxies; failed to load on b: onLoad threw; lagging behind snapshot 42: c at snapshot 41: connection refused"
        );
        let c = programmed(&plugin, 42, &[ack("a", Some(42)), down.clone()]);
        assert_eq!(c.reason, Reason::Pending);
        assert_eq!(
            c.message,
            "applied on 1/2 proxies; lagging behind snapshot 42: c at snapshot 41: connection refused"
        );
        // The proxy at 41 serves an object unchanged since 41, whatever its last push did.
        assert!(programmed(&plugin, 41, &[ack("a", Some(42)), down]).status);
        // A failure on another object is not this one's.
        let other = report(ObjectKind::Route, InSnapshot::Whole);
        assert!(programmed(&other, 42, &[failing]).status);
        // Nor is a failure a proxy reported for an older version of this one.
        let mut old_failure = ack("b", Some(41));
        old_failure
            .failures
            .push(LoadFailure::route("shop/api", "certificate expired".into()));
        let c = programmed(&other, 42, &[old_failure]);
        assert_eq!(c.reason, Reason::Pending);
    }

    #[test]
    fn left_out_last_good_and_no_proxies() {
        let c = programmed(
            &report(ObjectKind::Route, InSnapshot::No),
            7,
            &[ack("a", Some(7))],
        );
        assert_eq!((c.status, c.reason), (false, Reason::NotProgrammed));
        let last_good = InSnapshot::LastGood {
            generation: Some(1),
            code_hash: "sha256:x".into(),
        };
        let c = programmed(
            &report(ObjectKind::Plugin, last_good),
            7,
            &[ack("a", Some(7))],
        );
        assert!(c.status);
        assert_eq!(c.message, "the last good version applied on 1/1 proxies");
        let c = programmed(&report(ObjectKind::Route, InSnapshot::Whole), 7, &[]);
        assert_eq!((c.status, c.reason), (false, Reason::Pending));
        assert_eq!(c.message, "no ready proxy endpoint");
    }

    fn compiled(routes: &[(&str, &str)], version: u64) -> (Snapshot, Vec<ObjectReport>) {
        let routes: Vec<crate::Route> = routes
            .iter()
            .map(|(name, body)| {
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
                    "metadata": {"name": name, "namespace": "shop", "generation": 1},
                    "spec": {"hosts": [format!("{name}.example.com")],
                             "rules": [{"directResponse": {"status": 200, "body": body}}]}
                }))
                .unwrap()
            })
            .collect();
        let inputs = crate::Inputs {
            routes: routes
                .iter()
                .map(|r| r as &dyn crate::compile::RouteSource)
                .collect(),
            ..crate::Inputs::default()
        };
        let mut compilation = crate::compile(&inputs);
        compilation.snapshot.version = version;
        (compilation.snapshot, compilation.reports)
    }

    fn route_ref(name: &str) -> ObjectRef {
        ObjectRef::namespaced(ObjectKind::Route, &format!("shop/{name}"))
    }

    #[test]
    fn an_object_keeps_its_version_until_it_changes() {
        let mut served = ServedSince::default();
        let (snapshot, reports) = compiled(&[("a", "one"), ("b", "two")], 5);
        served.record(&snapshot, &reports);
        assert_eq!(served.get(&route_ref("a")), Some(5));
        assert_eq!(served.get(&route_ref("b")), Some(5));

        // Another Route changes: this one keeps version 5.
        let (snapshot, reports) = compiled(&[("a", "one"), ("b", "changed")], 6);
        served.record(&snapshot, &reports);
        assert_eq!(served.get(&route_ref("a")), Some(5));
        assert_eq!(served.get(&route_ref("b")), Some(6));

        // A new Route arrives in a snapshot that is then renumbered.
        let (snapshot, reports) = compiled(&[("a", "one"), ("b", "changed"), ("c", "new")], 7);
        served.record(&snapshot, &reports);
        served.renumbered(7, 12);
        assert_eq!(served.get(&route_ref("c")), Some(12));
        assert_eq!(served.get(&route_ref("b")), Some(6));

        // A deleted Route is forgotten.
        let (snapshot, reports) = compiled(&[("a", "one")], 13);
        served.record(&snapshot, &reports);
        assert_eq!(served.get(&route_ref("b")), None);
        assert_eq!(served.get(&route_ref("a")), Some(5));
    }
}

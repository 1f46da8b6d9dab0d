//! The proxy admin API as the operator sees it (docs/admin-api.md): the JSON a proxy
//! answers to a snapshot push, and the pure rule turning what every proxy acknowledged
//! into an object's `Programmed` condition.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

use crate::compile::endpoint_is_ready;
use crate::compile::report::{InSnapshot, ObjectKind, ObjectRef, ObjectReport};
use crate::condition::{ConditionType, DesiredCondition, Reason};

/// Path of the snapshot push (`PUT`).
pub const SNAPSHOT_PATH: &str = "/v1/snapshot";

/// Path of the version a proxy serves (`GET`).
pub const VERSION_PATH: &str = "/v1/snapshot/version";

/// Fewest characters the push token may have: it guards snapshots, which carry TLS
/// private keys (`openssl rand -hex 32` makes 64). Proxies and the operator refuse
/// shorter ones at start.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The push token in the text of a token file, white space around it trimmed; `Err`
/// carries how many characters it has when that is fewer than [`MIN_TOKEN_CHARS`]. The
/// one rule proxies and the operator both hold a token to.
pub fn token_in(text: &str) -> Result<&str, usize> {
    let token = text.trim();
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        Err(chars)
    } else {
        Ok(token)
    }
}

/// One object a proxy could not load and left out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// `Route` or `Plugin`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// What failed.
    pub message: String,
}

impl LoadFailure {
    /// A failure on an object of `kind`.
    pub fn new(kind: ObjectKind, namespace: &str, name: &str, message: String) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            message,
        }
    }

    /// A failure on the Route whose snapshot id is `route` (`namespace/name`).
    pub fn route(route: &str, message: String) -> Self {
        let (namespace, name) = route.split_once('/').unwrap_or(("", route));
        Self::new(ObjectKind::Route, namespace, name, message)
    }

    /// Whether the failure is about `object`.
    pub fn is_about(&self, object: &ObjectRef) -> bool {
        self.kind == object.kind.to_string()
            && self.namespace == object.namespace
            && self.name == object.name
    }
}

/// The answer to an applied push: the version served, its hash, and what failed to load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Version now served.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// Objects left out.
    #[serde(default)]
    pub failures: Vec<LoadFailure>,
}

/// The answer to `GET /v1/snapshot/version`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServedVersion {
    /// Version served (`0` before the first push).
    pub version: u64,
    /// Its hash.
    pub hash: String,
}

/// An error answer: `{"error": code, "message": …}`, with `currentVersion` on a
/// `stale_version` conflict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdminError {
    /// Snake-case error code, e.g. `stale_version`.
    pub error: String,
    /// For humans.
    #[serde(default)]
    pub message: String,
    /// The proxy's version, on `stale_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// Where one proxy stands with respect to the snapshot being rolled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAck {
    /// How the proxy is named in messages (its admin address).
    pub proxy: String,
    /// The version it acknowledged last, if any.
    pub version: Option<u64>,
    /// What it failed to load of that version.
    pub failures: Vec<LoadFailure>,
    /// Why the last push to it failed, if it did.
    pub error: Option<String>,
}

/// The ready admin endpoints (`host:port`) listed by a Service's EndpointSlices, sorted
/// and without duplicates. The port is the one named `port_name`, or the slice's first.
/// Endpoints whose `ready` condition is false are left out (unset counts as ready), and so
/// are terminating ones: the admin Service publishes not-ready addresses (a proxy becomes
/// ready only once it has a snapshot), which keeps a terminating pod `ready` too.
pub fn admin_endpoints(slices: &[&EndpointSlice], port_name: Option<&str>) -> Vec<String> {
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = match port_name {
            Some(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
            None => ports.first(),
        };
        let Some(port) = port.and_then(|p| p.port) else {
            continue;
        };
        let ipv6 = slice.address_type == "IPv6";
        for endpoint in &slice.endpoints {
            let terminating = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            if !endpoint_is_ready(endpoint) || terminating {
                continue;
            }
            for address in &endpoint.addresses {
                endpoints.insert(if ipv6 {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                });
            }
        }
    }
    endpoints.into_iter().collect()
}

/// Longest list of proxies named in one message; the rest are counted.
const MAX_PROXIES_NAMED: usize = 3;

/// The `Programmed` condition of the object `report` is about, for snapshot `version`
/// and what each proxy acknowledged.
pub fn programmed(report: &ObjectReport, version: u64, proxies: &[ProxyAck]) -> DesiredCondition {
    let kind = ConditionType::Programmed;
    if report.in_snapshot == InSnapshot::No {
        return DesiredCondition::failed(
            kind,
            Reason::NotProgrammed,
            format!("left out of snapshot {version}: see the other conditions"),
        );
    }
    if proxies.is_empty() {
        return DesiredCondition::failed(
            kind,
            Reason::Pending,
            format!("no ready proxy endpoint to apply snapshot {version}"),
        );
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
        if ack.version == Some(version) {
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
    let mut message = format!("{what}applied on {applied}/{total} proxies (snapshot {version})");
    if !failed.is_empty() {
        message.push_str(&format!("; failed to load on {}", name_some(&failed, "; ")));
    }
    if !lagging.is_empty() {
        message.push_str(&format!("; lagging: {}", name_some(&lagging, "; ")));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn applied_everywhere() {
        let c = programmed(
            &report(ObjectKind::Route, InSnapshot::Whole),
            42,
            &[ack("a", Some(42)), ack("b", Some(42)), ack("c", Some(42))],
        );
        assert!(c.status);
        assert_eq!(c.reason, Reason::Programmed);
        assert_eq!(c.message, "applied on 3/3 proxies (snapshot 42)");
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
            "applied on 1/3 proxies (snapshot 42); failed to load on b: onLoad threw; lagging: c at snapshot 41: connection refused"
        );
        let c = programmed(&plugin, 42, &[ack("a", Some(42)), down]);
        assert_eq!(c.reason, Reason::Pending);
        assert_eq!(
            c.message,
            "applied on 1/2 proxies (snapshot 42); lagging: c at snapshot 41: connection refused"
        );
        // A failure on another object is not this one's.
        let other = report(ObjectKind::Route, InSnapshot::Whole);
        assert!(programmed(&other, 42, &[failing]).status);
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
        assert_eq!(
            c.message,
            "the last good version applied on 1/1 proxies (snapshot 7)"
        );
        let c = programmed(&report(ObjectKind::Route, InSnapshot::Whole), 7, &[]);
        assert_eq!((c.status, c.reason), (false, Reason::Pending));
    }

    #[test]
    fn ready_endpoints_of_the_named_port() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "admin-abc", "namespace": "weir"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9901}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true, "terminating": true}}
            ]
        }))
        .unwrap();
        assert_eq!(
            admin_endpoints(&[&slice, &slice], Some("admin")),
            ["10.0.0.1:9901", "10.0.0.2:9901"]
        );
        assert_eq!(
            admin_endpoints(&[&slice], None),
            ["10.0.0.1:8080", "10.0.0.2:8080"]
        );
        assert!(admin_endpoints(&[&slice], Some("metrics")).is_empty());
        let mut v6 = slice.clone();
        v6.address_type = "IPv6".into();
        v6.endpoints.truncate(1);
        v6.endpoints[0].addresses = vec!["fd00::1".into()];
        assert_eq!(admin_endpoints(&[&v6], Some("admin")), ["[fd00::1]:9901"]);
    }

    #[test]
    fn wire_format_matches_the_admin_api() {
        let applied: Applied = serde_json::from_str(
            r#"{"version":42,"hash":"sha256:a","failures":[{"kind":"Route","namespace":"shop","name":"api","message":"bad"}]}"#,
        )
        .unwrap();
        assert_eq!(applied.version, 42);
        assert_eq!(applied.failures[0].name, "api");
        let error: AdminError = serde_json::from_str(
            r#"{"error":"stale_version","message":"old","currentVersion":57}"#,
        )
        .unwrap();
        assert_eq!(error.current_version, Some(57));
    }
}

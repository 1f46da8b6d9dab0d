//! The status of weir's Gateway API objects as the operator writes it: built by the pure
//! builders of `weir-crds` (`compile::gateway_api::status`) from what the store shows,
//! compared with what the object shows (conditions by type, status, reason, message and
//! `observedGeneration`, not by transition time), and written as a merge patch of the
//! status subresource. An HTTPRoute's `status.parents` is a list every controller of its
//! parents writes: the patch carries the `resourceVersion` it was built from, so a write
//! racing another controller's is refused (`409 Conflict`) instead of dropping its entry.

use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};
use weir_crds::admin::ProxyAck;
use weir_crds::compile::GATEWAY_CONTROLLER;
use weir_crds::compile::gateway_api::GatewayApiFacts;
use weir_crds::compile::gateway_api::status::{
    gateway_class_status, gateway_status, http_route_status,
};
use weir_crds::compile::report::ObjectReport;
use weir_crds::condition::{ConditionType, Reason};
use weir_crds::gateway::{
    AddressType, Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, GatewayStatusAddress,
    HTTPRoute, HTTPRouteStatus, ListenerStatus, ParentReference, RouteGroupKind, RouteParentStatus,
};
use weir_crds::programmed::programmed;

use super::book::Failure;

/// The status weir writes on one of its Gateway API objects.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayApiStatus {
    /// A GatewayClass's: `conditions`.
    GatewayClass(GatewayClassStatus),
    /// A Gateway's: `conditions`, `listeners` and `addresses`.
    Gateway(GatewayStatus),
    /// An HTTPRoute's `parents`, other controllers' entries included as read.
    HTTPRoute(HTTPRouteStatus),
}

/// What a Gateway API object's status is built from besides its report: the compiler's
/// facts, where the proxies are reached, and what the proxies acknowledged.
pub struct Inputs<'a> {
    /// Listeners per Gateway, weir's parents per HTTPRoute.
    pub facts: &'a GatewayApiFacts,
    /// The Gateways' `status.addresses`.
    pub addresses: &'a [GatewayStatusAddress],
    /// What each proxy acknowledged.
    pub acks: &'a [ProxyAck],
}

/// One of weir's Gateway API objects, as the store holds it.
#[derive(Clone, Copy)]
pub(super) enum Stored<'a> {
    /// A GatewayClass.
    GatewayClass(&'a GatewayClass),
    /// A Gateway.
    Gateway(&'a Gateway),
    /// An HTTPRoute.
    HTTPRoute(&'a HTTPRoute),
}

impl Stored<'_> {
    /// Its status as weir writes it, built from the status it shows: `programmed_since`
    /// is the snapshot a Gateway is served as it is now from.
    pub(super) fn build(
        self,
        report: &ObjectReport,
        programmed_since: u64,
        inputs: &Inputs<'_>,
        now: &Time,
    ) -> GatewayApiStatus {
        let object = &report.object;
        match self {
            Self::GatewayClass(class) => GatewayApiStatus::GatewayClass(gateway_class_status(
                report,
                class.status.as_ref(),
                now,
            )),
            Self::Gateway(gateway) => {
                let listeners = inputs.facts.listeners.get(object);
                let programmed = programmed(report, programmed_since, inputs.acks);
                GatewayApiStatus::Gateway(gateway_status(
                    report,
                    listeners.map_or(&[][..], Vec::as_slice),
                    &programmed,
                    inputs.addresses.to_vec(),
                    gateway.status.as_ref(),
                    now,
                ))
            }
            Self::HTTPRoute(route) => GatewayApiStatus::HTTPRoute(http_route_status(
                report,
                inputs.facts,
                route.status.as_ref(),
                now,
            )),
        }
    }

    /// The status it shows, in the shape [`Self::build`] gives.
    pub(super) fn shown(self) -> GatewayApiStatus {
        match self {
            Self::GatewayClass(class) => {
                GatewayApiStatus::GatewayClass(class.status.clone().unwrap_or_default())
            }
            Self::Gateway(gateway) => {
                GatewayApiStatus::Gateway(gateway.status.clone().unwrap_or_default())
            }
            Self::HTTPRoute(route) => {
                GatewayApiStatus::HTTPRoute(route.status.clone().unwrap_or_default())
            }
        }
    }
}

impl GatewayApiStatus {
    /// Every condition weir writes in it: a Gateway's and its listeners', the entries of
    /// an HTTPRoute's `parents` that are weir's.
    pub fn conditions(&self) -> Box<dyn Iterator<Item = &Condition> + '_> {
        match self {
            Self::GatewayClass(status) => Box::new(status.conditions.iter()),
            Self::Gateway(status) => Box::new(
                status
                    .conditions
                    .iter()
                    .chain(status.listeners.iter().flat_map(|l| &l.conditions)),
            ),
            Self::HTTPRoute(status) => Box::new(
                status
                    .parents
                    .iter()
                    .filter(|p| p.controller_name == GATEWAY_CONTROLLER)
                    .flat_map(|p| &p.conditions),
            ),
        }
    }

    /// Whether `self` and `other` say the same: conditions compared by type, status,
    /// reason, message and `observedGeneration` (not by when they last turned), lists
    /// whatever their order, and values the API server defaults as their defaults.
    pub fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::GatewayClass(a), Self::GatewayClass(b)) => {
                same_conditions(&a.conditions, &b.conditions)
            }
            (Self::Gateway(a), Self::Gateway(b)) => {
                same_conditions(&a.conditions, &b.conditions)
                    && same_addresses(&a.addresses, &b.addresses)
                    && same_set(&a.listeners, &b.listeners, same_listener)
            }
            (Self::HTTPRoute(a), Self::HTTPRoute(b)) => {
                same_set(&a.parents, &b.parents, same_parent_status)
            }
            _ => false,
        }
    }

    /// The merge patch writing it: the whole of what weir owns, an HTTPRoute's `parents`
    /// with the precondition that the object is still at `resource_version`.
    pub fn patch(&self, resource_version: Option<&str>) -> Value {
        match self {
            Self::GatewayClass(status) => json!({"status": {"conditions": status.conditions}}),
            Self::Gateway(status) => json!({"status": {
                "conditions": status.conditions,
                "listeners": status.listeners,
                // `null` removes addresses a Gateway showed before.
                "addresses": if status.addresses.is_empty() {
                    Value::Null
                } else {
                    json!(status.addresses)
                },
            }}),
            Self::HTTPRoute(status) => {
                let mut patch = json!({"status": {"parents": status.parents}});
                if let Some(version) = resource_version {
                    patch["metadata"] = json!({"resourceVersion": version});
                }
                patch
            }
        }
    }

    /// The failing conditions that deserve a Warning Event when new, one per condition
    /// type and reason: rejections and load failures, not `Programmed=False` while proxies
    /// catch up or because the object (or listener) is not accepted.
    pub(super) fn failures(&self) -> Vec<Failure> {
        let mut failures: Vec<Failure> = Vec::new();
        for condition in self.conditions().filter(|c| warrants_event(c)) {
            let failure = Failure::from(condition);
            if !failures
                .iter()
                .any(|f| f.condition == failure.condition && f.reason == failure.reason)
            {
                failures.push(failure);
            }
        }
        failures
    }
}

/// Whether a condition of a Gateway API status deserves a Warning Event: it fails, and
/// for `Programmed`, because a proxy failed to load the object.
fn warrants_event(condition: &Condition) -> bool {
    super::book::is_failing(condition)
        && (condition.type_ != ConditionType::Programmed.as_str()
            || condition.reason == Reason::LoadFailed.as_str())
}

/// Whether every item of `a` has one of `b` that `same` says is the same, and as many.
fn same_set<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| same(x, y)))
}

fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    same_set(a, b, |x, y| untimed(x) == untimed(y))
}

/// A condition but when it last turned.
fn untimed(c: &Condition) -> (&str, &str, &str, &str, Option<i64>) {
    (
        &c.type_,
        &c.status,
        &c.reason,
        &c.message,
        c.observed_generation,
    )
}

fn same_addresses(a: &[GatewayStatusAddress], b: &[GatewayStatusAddress]) -> bool {
    same_set(a, b, |x, y| {
        x.kind_or_default() == y.kind_or_default() && x.value == y.value
    })
}

fn same_listener(a: &ListenerStatus, b: &ListenerStatus) -> bool {
    a.name == b.name
        && a.attached_routes == b.attached_routes
        && same_set(&a.supported_kinds, &b.supported_kinds, same_kind)
        && same_conditions(&a.conditions, &b.conditions)
}

fn same_kind(a: &RouteGroupKind, b: &RouteGroupKind) -> bool {
    a.group_or_default() == b.group_or_default() && a.kind == b.kind
}

fn same_parent_status(a: &RouteParentStatus, b: &RouteParentStatus) -> bool {
    a.controller_name == b.controller_name
        && same_parent(&a.parent_ref, &b.parent_ref)
        && same_conditions(&a.conditions, &b.conditions)
}

fn same_parent(a: &ParentReference, b: &ParentReference) -> bool {
    parent_key(a) == parent_key(b)
}

/// What identifies a parent reference, the defaults the API server fills in spelled out.
fn parent_key(
    parent: &ParentReference,
) -> (&str, &str, Option<&str>, &str, Option<&str>, Option<u16>) {
    (
        parent.group_or_default(),
        parent.kind_or_default(),
        parent.namespace.as_deref(),
        &parent.name,
        parent.section_name.as_deref(),
        parent.port,
    )
}

/// The Gateways' `status.addresses` for the load balancer entries Ingresses publish: an
/// IP as `IPAddress`, a name as `Hostname`.
pub fn gateway_addresses(entries: &[IngressLoadBalancerIngress]) -> Vec<GatewayStatusAddress> {
    entries
        .iter()
        .filter_map(|entry| {
            let (kind, value) = match (&entry.ip, &entry.hostname) {
                (Some(ip), _) => (AddressType::IPAddress, ip),
                (None, Some(name)) => (AddressType::Hostname, name),
                (None, None) => return None,
            };
            Some(GatewayStatusAddress {
                kind: Some(kind),
                value: value.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(value: Value) -> GatewayApiStatus {
        GatewayApiStatus::Gateway(serde_json::from_value(value).unwrap())
    }

    fn condition(type_: &str, status: &str, reason: &str, time: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": reason,
               "observedGeneration": 3, "lastTransitionTime": time})
    }

    #[test]
    fn statuses_compare_without_times_and_with_the_api_servers_defaults() {
        let written = gateway(json!({
            "addresses": [{"type": "IPAddress", "value": "203.0.113.7"}],
            "conditions": [condition("Accepted", "True", "Accepted", "2024-01-01T00:00:00Z")],
            "listeners": [{"name": "http", "attachedRoutes": 1,
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "conditions": [condition("Conflicted", "False", "NoConflicts", "2024-01-01T00:00:00Z")]}]
        }));
        // As the API server may show it: other times, defaults spelled out or left out.
        let shown = gateway(json!({
            "addresses": [{"value": "203.0.113.7"}],
            "conditions": [condition("Accepted", "True", "Accepted", "2025-06-01T00:00:00Z")],
            "listeners": [{"name": "http", "attachedRoutes": 1,
                "supportedKinds": [{"kind": "HTTPRoute"}],
                "conditions": [condition("Conflicted", "False", "NoConflicts", "2025-06-01T00:00:00Z")]}]
        }));
        assert!(written.same_as(&shown));
        let more_routes = gateway(json!({
            "addresses": [{"value": "203.0.113.7"}],
            "conditions": [condition("Accepted", "True", "Accepted", "2024-01-01T00:00:00Z")],
            "listeners": [{"name": "http", "attachedRoutes": 2,
                "supportedKinds": [{"kind": "HTTPRoute"}],
                "conditions": [condition("Conflicted", "False", "NoConflicts", "2024-01-01T00:00:00Z")]}]
        }));
        assert!(!written.same_as(&more_routes));
        assert_eq!(
            written.patch(None)["status"]["addresses"],
            json!([{"type": "IPAddress", "value": "203.0.113.7"}])
        );
        let no_address = gateway(json!({"conditions": []}));
        assert_eq!(
            no_address.patch(None)["status"]["addresses"],
            Value::Null,
            "addresses shown before are removed"
        );
    }

    #[test]
    fn failures_are_rejections_and_load_failures_once_per_reason() {
        let status = gateway(json!({
            "conditions": [
                condition("Accepted", "True", "ListenersNotValid", "2024-01-01T00:00:00Z"),
                condition("Programmed", "False", "Pending", "2024-01-01T00:00:00Z"),
            ],
            "listeners": [
                {"name": "a", "attachedRoutes": 0, "supportedKinds": [], "conditions": [
                    condition("Accepted", "False", "PortUnavailable", "2024-01-01T00:00:00Z"),
                    condition("Conflicted", "True", "HostnameConflict", "2024-01-01T00:00:00Z"),
                    condition("Programmed", "False", "Invalid", "2024-01-01T00:00:00Z")]},
                {"name": "b", "attachedRoutes": 0, "supportedKinds": [], "conditions": [
                    condition("Accepted", "False", "PortUnavailable", "2024-01-01T00:00:00Z"),
                    condition("Conflicted", "False", "NoConflicts", "2024-01-01T00:00:00Z"),
                    condition("Programmed", "False", "LoadFailed", "2024-01-01T00:00:00Z")]}
            ]
        }));
        let failures = status.failures();
        let failures: Vec<(&str, &str)> = failures
            .iter()
            .map(|f| (f.condition.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(
            failures,
            [
                ("Accepted", "PortUnavailable"),
                ("Conflicted", "HostnameConflict"),
                ("Programmed", "LoadFailed"),
            ]
        );
    }

    #[test]
    fn addresses_are_ips_or_host_names() {
        let entries = [
            IngressLoadBalancerIngress {
                ip: Some("203.0.113.7".into()),
                ..IngressLoadBalancerIngress::default()
            },
            IngressLoadBalancerIngress {
                hostname: Some("lb.example.com".into()),
                ..IngressLoadBalancerIngress::default()
            },
        ];
        let addresses: Vec<(String, String)> = gateway_addresses(&entries)
            .iter()
            .map(|a| (a.kind_or_default().as_str().to_owned(), a.value.clone()))
            .collect();
        assert_eq!(
            addresses,
            [
                ("IPAddress".to_owned(), "203.0.113.7".to_owned()),
                ("Hostname".to_owned(), "lb.example.com".to_owned()),
            ]
        );
    }
}

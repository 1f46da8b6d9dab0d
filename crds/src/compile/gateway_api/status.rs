//! The status of Gateway API objects, as the Gateway API defines it, from the compiler's
//! reports: a GatewayClass's `Accepted`; a Gateway's `Accepted` and `Programmed` and, per
//! listener, `Accepted`, `Conflicted`, `ResolvedRefs` and `Programmed` with
//! `attachedRoutes`; an HTTPRoute's `parents[]`, one entry per weir Gateway it names,
//! with `Accepted` and `ResolvedRefs`. Pure: the operator writes what these return.
//!
//! weir writes every condition of its own GatewayClasses and Gateways, and only its own
//! entries (`controllerName` weir's) of an HTTPRoute's `parents`, keeping the others'.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{GATEWAY_CONTROLLER, GatewayApiFacts, ListenerFacts};
use crate::compile::report::{Diagnostic, InSnapshot, ObjectReport, condition_of};
use crate::condition::{ConditionType, DesiredCondition, Reason, replace_conditions};
use crate::gateway::{
    GatewayClassStatus, GatewayStatus, GatewayStatusAddress, HTTPRouteStatus, ListenerStatus,
    RouteParentStatus,
};

/// A GatewayClass's status: `Accepted`.
pub fn gateway_class_status(
    report: &ObjectReport,
    current: Option<&GatewayClassStatus>,
    now: &Time,
) -> GatewayClassStatus {
    let accepted = condition(report.diagnostics.iter(), ConditionType::Accepted);
    GatewayClassStatus {
        conditions: replace_conditions(
            current.map_or(&[][..], |c| &c.conditions),
            &[accepted],
            report.generation,
            now,
        ),
    }
}

/// A Gateway's status: its conditions, one entry per listener, and `addresses` (where
/// the proxies are reached). `programmed` is whether every proxy serves the Gateway as it
/// is now ([`crate::programmed::programmed`]).
pub fn gateway_status(
    report: &ObjectReport,
    listeners: &[ListenerFacts],
    programmed: &DesiredCondition,
    addresses: Vec<GatewayStatusAddress>,
    current: Option<&GatewayStatus>,
    now: &Time,
) -> GatewayStatus {
    let gateway_level = report
        .diagnostics
        .iter()
        .filter(|d| !d.field.starts_with("spec.listeners["));
    let mut accepted = condition(gateway_level, ConditionType::Accepted);
    let invalid: Vec<&str> = listeners
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            report
                .diagnostics_under(&format!("spec.listeners[{i}]"))
                .any(|d| d.condition != ConditionType::Programmed)
        })
        .map(|(_, l)| l.name.as_str())
        .collect();
    if accepted.status && !invalid.is_empty() {
        accepted = DesiredCondition::ok(
            ConditionType::Accepted,
            Reason::ListenersNotValid,
            format!("listeners not valid: {}", invalid.join(", ")),
        );
    }
    let gateway_programmed = if accepted.status {
        programmed.clone()
    } else {
        DesiredCondition::failed(
            ConditionType::Programmed,
            Reason::Invalid,
            "the Gateway is not accepted",
        )
    };
    let previous_listeners = current.map_or(&[][..], |c| &c.listeners);
    let listener_statuses = listeners
        .iter()
        .enumerate()
        .map(|(i, facts)| {
            let field = format!("spec.listeners[{i}]");
            let own = || report.diagnostics_under(&field);
            let mut desired = vec![
                condition(own(), ConditionType::Accepted),
                condition(own(), ConditionType::Conflicted),
                condition(own(), ConditionType::ResolvedRefs),
            ];
            desired.push(if !facts.served {
                DesiredCondition::failed(
                    ConditionType::Programmed,
                    Reason::Invalid,
                    "the listener is not valid",
                )
            } else {
                gateway_programmed.clone()
            });
            let previous = previous_listeners.iter().find(|l| l.name == facts.name);
            ListenerStatus {
                name: facts.name.clone(),
                supported_kinds: facts.supported_kinds.clone(),
                attached_routes: facts.attached_routes,
                conditions: replace_conditions(
                    previous.map_or(&[][..], |l| &l.conditions),
                    &desired,
                    report.generation,
                    now,
                ),
            }
        })
        .collect();
    GatewayStatus {
        addresses,
        conditions: replace_conditions(
            current.map_or(&[][..], |c| &c.conditions),
            &[accepted, gateway_programmed],
            report.generation,
            now,
        ),
        listeners: listener_statuses,
    }
}

/// An HTTPRoute's status: one entry per parent of this gateway's class, and every other
/// entry as it is (other controllers', and those another weir installation writes for
/// Gateways of its own class). An entry of this gateway's for a Gateway the route no
/// longer names is taken out.
pub fn http_route_status(
    report: &ObjectReport,
    facts: &GatewayApiFacts,
    current: Option<&HTTPRouteStatus>,
    now: &Time,
) -> HTTPRouteStatus {
    let parents = facts
        .parents
        .get(&report.object)
        .map_or(&[][..], Vec::as_slice);
    let previous = current.map_or(&[][..], |c| &c.parents);
    let namespace = report.object.namespace.as_str();
    let mut statuses: Vec<RouteParentStatus> = previous
        .iter()
        .filter(|p| {
            p.controller_name != GATEWAY_CONTROLLER
                || facts.gateway_of(&p.parent_ref, namespace).is_none()
        })
        .cloned()
        .collect();
    // The route's own problems, with the Gateway API's reason for an invalid value.
    let route_wide: Vec<Diagnostic> = report
        .diagnostics
        .iter()
        .filter(|d| !d.field.starts_with("spec.parentRefs["))
        .map(|d| Diagnostic {
            reason: if d.reason == Reason::Invalid {
                Reason::UnsupportedValue
            } else {
                d.reason
            },
            ..d.clone()
        })
        .collect();
    for parent in parents {
        let field = format!("spec.parentRefs[{}]", parent.index);
        let own: Vec<&Diagnostic> = report
            .diagnostics
            .iter()
            .filter(|d| d.field == field && d.condition == ConditionType::Accepted)
            .collect();
        let accepted = if !own.is_empty() {
            condition_of(ConditionType::Accepted, &own, None)
        } else {
            route_accepted(&route_wide, &report.in_snapshot)
        };
        let resolved = condition(route_wide.iter(), ConditionType::ResolvedRefs);
        let mut desired = vec![accepted, resolved];
        desired.extend(partially_invalid(&route_wide, &report.in_snapshot));
        let previous_conditions = previous
            .iter()
            .find(|p| p.controller_name == GATEWAY_CONTROLLER && p.parent_ref == parent.parent_ref)
            .map_or(&[][..], |p| &p.conditions);
        statuses.push(RouteParentStatus {
            parent_ref: parent.parent_ref.clone(),
            controller_name: GATEWAY_CONTROLLER.to_owned(),
            conditions: replace_conditions(previous_conditions, &desired, report.generation, now),
        });
    }
    HTTPRouteStatus { parents: statuses }
}

/// `Accepted` of an attached route: `False` when none of it is served because of its own
/// problems; else `True`, naming what of it is not served (rules weir cannot serve,
/// matches older objects serve).
fn route_accepted(route_wide: &[Diagnostic], in_snapshot: &InSnapshot) -> DesiredCondition {
    let accepted: Vec<&Diagnostic> = route_wide
        .iter()
        .filter(|d| d.condition == ConditionType::Accepted)
        .collect();
    let problems: Vec<&Diagnostic> = accepted
        .iter()
        .copied()
        .filter(|d| !d.reason.is_note())
        .collect();
    if problems.is_empty() || *in_snapshot == InSnapshot::No {
        return condition_of(ConditionType::Accepted, &accepted, None);
    }
    let not_served = condition_of(ConditionType::Accepted, &problems, None).message;
    DesiredCondition::ok(
        ConditionType::Accepted,
        Reason::Accepted,
        format!("accepted; not served: {not_served}"),
    )
}

/// `PartiallyInvalid=True` when rules weir cannot serve (a filter or match it does not
/// implement, an invalid value) are left out and the rest is served; absent otherwise.
fn partially_invalid(
    route_wide: &[Diagnostic],
    in_snapshot: &InSnapshot,
) -> Option<DesiredCondition> {
    let dropped: Vec<&Diagnostic> = route_wide
        .iter()
        .filter(|d| d.condition == ConditionType::Accepted && d.reason == Reason::UnsupportedValue)
        .collect();
    if dropped.is_empty() || *in_snapshot == InSnapshot::No {
        return None;
    }
    Some(condition_of(
        ConditionType::PartiallyInvalid,
        &dropped,
        None,
    ))
}

fn condition<'d>(
    diagnostics: impl Iterator<Item = &'d Diagnostic>,
    kind: ConditionType,
) -> DesiredCondition {
    let failures: Vec<&Diagnostic> = diagnostics.filter(|d| d.condition == kind).collect();
    condition_of(kind, &failures, None)
}

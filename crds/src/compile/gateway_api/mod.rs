//! Gateway API objects as weir serves them: the GatewayClasses whose `controllerName` is
//! weir's, their Gateways, and the HTTPRoutes attached to those Gateways' listeners.
//!
//! Each HTTPRoute rule becomes one weir Route per Gateway and listener protocol it
//! attaches to (named `httproute:NAME:GATEWAY-NAMESPACE/GATEWAY:RULE:http|https`, which
//! no Route can be named), served with the hostnames the route and the listeners share,
//! over plain HTTP or TLS as the listeners are, with the certificates of the HTTPS
//! listeners. These Routes are compiled with every other in one host space; their
//! hosts are claimed for the Gateway's namespace, whose listeners let the route in. What
//! the compiler finds is reported on the HTTPRoute, per parent, and on the Gateway, per
//! listener ([`status`]).

mod attach;
mod grants;
mod listeners;
mod rules;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;

use super::report::{ObjectKind, ObjectRef, ObjectReport};
use super::translated::{SourceFields, Translated, Translation};
use super::{Context, Inputs, by_name, tls};
use crate::condition::ConditionType;
use crate::gateway::{GATEWAY_KIND, GROUP, HTTPRoute, ParentReference, RouteGroupKind};
use crate::route::RouteSpec;
use attach::{ListenerHosts, Parent, RouteOrigin};
pub use listeners::ListenerPorts;
use listeners::ListenerProtocol;
pub(crate) use rules::RuleFields;

/// The `controllerName` of the GatewayClasses weir serves.
pub const GATEWAY_CONTROLLER: &str = "weir.dev/gateway-controller";

/// What Gateway API status needs besides an object's report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayApiFacts {
    /// Per served Gateway, its listeners in `spec.listeners` order.
    pub listeners: BTreeMap<ObjectRef, Vec<ListenerFacts>>,
    /// Per HTTPRoute naming a Gateway of this gateway's class (or whose status still
    /// holds an entry of one), its `parentRefs` that name such a Gateway.
    pub parents: BTreeMap<ObjectRef, Vec<ParentFacts>>,
    /// Every Gateway of this gateway's class, served or refused: status entries that name
    /// one are this gateway's to write. (Another weir installation, of another class,
    /// writes the same `controllerName` for its own Gateways.)
    pub gateways: BTreeSet<ObjectRef>,
}

impl GatewayApiFacts {
    /// The Gateway of this gateway's class a parent reference of a route in
    /// `route_namespace` names, if it names one.
    pub fn gateway_of(
        &self,
        parent: &ParentReference,
        route_namespace: &str,
    ) -> Option<&ObjectRef> {
        if parent.group_or_default() != GROUP || parent.kind_or_default() != GATEWAY_KIND {
            return None;
        }
        self.gateways.get(&ObjectRef {
            kind: ObjectKind::Gateway,
            namespace: parent.namespace_or(route_namespace).to_owned(),
            name: parent.name.clone(),
        })
    }
}

/// A listener's status facts.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerFacts {
    /// The listener's name.
    pub name: String,
    /// The route kinds it admits that weir serves.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached to it (admitted by `allowedRoutes`).
    pub attached_routes: i32,
    /// Whether routes attached to it are served: it is accepted, in no conflict, and has
    /// a usable certificate when HTTPS.
    pub served: bool,
}

/// One of an HTTPRoute's `parentRefs` that names a weir Gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentFacts {
    /// Its index in `spec.parentRefs`.
    pub index: usize,
    /// The reference, as written (status echoes it).
    pub parent_ref: ParentReference,
}

/// Translates the Gateway API inputs: Routes for the HTTPRoutes attached to weir's
/// Gateways, a report per weir GatewayClass, Gateway and attached HTTPRoute, and the
/// facts their status needs.
pub(crate) fn translate(inputs: &Inputs<'_>, ctx: &Context<'_>) -> (Translation, GatewayApiFacts) {
    let mut translation = Translation::default();
    let mut facts = GatewayApiFacts::default();
    let options = &ctx.options;
    let accepted =
        listeners::accepted_classes(&inputs.gateway_classes, options, &mut translation.reports);
    let gateways: Vec<_> = by_name(&inputs.gateways).into_values().collect();
    let mut served = listeners::served_gateways(
        &gateways,
        &inputs.gateway_classes,
        &accepted,
        &inputs.reference_grants,
        &ctx.index,
        options,
        &mut translation.reports,
    );
    facts.gateways = translation
        .reports
        .keys()
        .filter(|key| key.kind == ObjectKind::Gateway)
        .cloned()
        .collect();
    for http_route in by_name(&inputs.http_routes).into_values() {
        translate_route(
            http_route,
            &mut served,
            &inputs.namespaces,
            inputs,
            ctx,
            &mut translation,
            &mut facts,
        );
    }
    for gateway in served {
        let listeners = gateway.listeners.iter().map(|l| l.facts()).collect();
        facts.listeners.insert(gateway.key, listeners);
    }
    (translation, facts)
}

fn translate_route(
    http_route: &HTTPRoute,
    gateways: &mut [listeners::ServedGateway],
    namespaces: &[&Namespace],
    inputs: &Inputs<'_>,
    ctx: &Context<'_>,
    translation: &mut Translation,
    facts: &mut GatewayApiFacts,
) {
    let namespace = super::namespace_of(&http_route.metadata);
    let name = super::name_of(&http_route.metadata);
    let mut report = ObjectReport::new(
        ObjectKind::HTTPRoute,
        namespace,
        name,
        http_route.metadata.generation,
    );
    let hostnames: Vec<String> = http_route
        .spec
        .hostnames
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let origin = RouteOrigin {
        namespace,
        hostnames: &hostnames,
    };
    let mut ours = Vec::new();
    let mut attachments = Vec::new();
    for (index, parent_ref) in http_route.spec.parent_refs.iter().enumerate() {
        match attach::attach(parent_ref, &origin, gateways, namespaces) {
            Parent::NotOurs => continue,
            Parent::Refused { reason, message } => report.push(
                format!("spec.parentRefs[{index}]"),
                ConditionType::Accepted,
                reason,
                message,
            ),
            Parent::Attached(attachment) => attachments.push(attachment),
        }
        ours.push(ParentFacts {
            index,
            parent_ref: parent_ref.clone(),
        });
    }
    if ours.is_empty() {
        // A route that named one of these Gateways before: its entries are taken out.
        let stale = http_route.status.iter().flat_map(|s| &s.parents).any(|p| {
            p.controller_name == GATEWAY_CONTROLLER
                && facts.gateway_of(&p.parent_ref, namespace).is_some()
        });
        if stale {
            facts.parents.insert(report.object.clone(), Vec::new());
            translation.reports.insert(report.object.clone(), report);
        }
        return;
    }
    let key = report.object.clone();
    facts.parents.insert(key.clone(), ours);
    if !attachments.is_empty() {
        let rules: Vec<_> = http_route
            .spec
            .rules_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                rules::translate(
                    rule,
                    i,
                    namespace,
                    &inputs.reference_grants,
                    ctx,
                    &mut report,
                )
            })
            .collect();
        // Per Gateway (the same Gateway twice, by listener or port, is one) and protocol:
        // a route on an HTTP listener is not served over TLS, nor one on an HTTPS
        // listener over plain HTTP.
        let mut by_gateway: BTreeMap<(usize, bool), Vec<ListenerHosts>> = BTreeMap::new();
        for attachment in attachments {
            let gateway = &gateways[attachment.gateway];
            for (listener, hosts) in attachment.listeners {
                let tls = gateway.listeners[listener].protocol == Some(ListenerProtocol::Https);
                by_gateway
                    .entry((attachment.gateway, tls))
                    .or_default()
                    .push((listener, hosts));
            }
        }
        for ((gateway, tls), listeners) in by_gateway {
            let gateway = &gateways[gateway];
            let mut hosts: Vec<String> = listeners
                .iter()
                .flat_map(|(_, hosts)| hosts.iter().cloned())
                .collect();
            hosts.sort();
            hosts.dedup();
            let certificates = listener_certificates(gateway, &listeners);
            if hosts == ["*"] {
                hosts.clear();
            }
            for rule in &rules {
                let spec = RouteSpec {
                    hosts: hosts.clone(),
                    rules: vec![rule.rule.clone()],
                    plugins: rule.plugins.clone(),
                    ..RouteSpec::default()
                };
                let route_name = format!(
                    "httproute:{name}:{}/{}:{:04}:{}",
                    gateway.key.namespace,
                    gateway.key.name,
                    rule.fields.rule,
                    if tls { "https" } else { "http" }
                );
                translation.routes.push(Translated {
                    route: super::translated::route_of(
                        &http_route.metadata,
                        namespace,
                        &route_name,
                        spec,
                    ),
                    source: key.clone(),
                    fields: SourceFields::HttpRoute(rule.fields.clone()),
                    tenant: gateway.key.namespace.clone(),
                    certificates: certificates.clone(),
                    tls: Some(tls),
                });
            }
        }
    }
    translation.reports.insert(key, report);
}

/// The certificates of the HTTPS listeners a route attaches to, for the hostnames it is
/// served with on each that they cover (problems with them are the listener's, reported
/// on the Gateway).
fn listener_certificates(
    gateway: &listeners::ServedGateway,
    attached: &[ListenerHosts],
) -> Vec<crate::snapshot::Certificate> {
    attached
        .iter()
        .filter_map(|(listener, hosts)| {
            let certificate = gateway.listeners[*listener].certificate.as_ref()?;
            tls::covering(certificate, hosts)
        })
        .collect()
}

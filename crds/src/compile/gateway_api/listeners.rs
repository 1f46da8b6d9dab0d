//! GatewayClasses and Gateways: which are weir's, and which of their listeners can serve
//! routes. Everything found is reported on the class or the Gateway, a listener's
//! problems under its field (`spec.listeners[i]`).

use std::collections::{BTreeMap, BTreeSet};

use super::grants::{self, Referent, Referrer};
use super::{GATEWAY_CONTROLLER, ListenerFacts};
use crate::compile::report::{InSnapshot, ObjectKind, ObjectRef, ObjectReport};
use crate::compile::{Index, Options, name_of, namespace_of, tls};
use crate::condition::{ConditionType, Reason};
use crate::gateway::{
    CORE_GROUP, GATEWAY_KIND, GROUP, Gateway, GatewayClass, HTTP_ROUTE_KIND, Listener,
    ProtocolType, RouteGroupKind, RouteNamespaces, SECRET_KIND, TLSModeType,
};
use crate::snapshot::Certificate;

/// The protocols weir serves on a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    Http,
    Https,
}

/// A Gateway weir serves.
pub(crate) struct ServedGateway {
    pub key: ObjectRef,
    pub listeners: Vec<ServedListener>,
}

/// One listener of a served Gateway.
pub(crate) struct ServedListener {
    /// Its position in `spec.listeners`.
    pub index: usize,
    pub name: String,
    /// Lower-case hostname; `None` admits every host.
    pub hostname: Option<String>,
    pub port: u16,
    /// `None`: a protocol weir does not serve (reported).
    pub protocol: Option<ListenerProtocol>,
    /// Whether HTTPRoutes may attach (by `allowedRoutes.kinds`).
    pub admits_http_routes: bool,
    /// Namespaces routes may come from.
    pub namespaces: RouteNamespaces,
    /// The certificate of an HTTPS listener, checked usable, for its hostname (every
    /// host when it has none).
    pub certificate: Option<Certificate>,
    /// Whether routes attached to it are served: accepted, not conflicted, and with a
    /// usable certificate when HTTPS.
    pub usable: bool,
    /// Routes attached, for `attachedRoutes`.
    pub attached_routes: i32,
}

impl ServedListener {
    pub(crate) fn field(&self) -> String {
        format!("spec.listeners[{}]", self.index)
    }

    /// The facts its status needs besides conditions.
    pub(crate) fn facts(&self) -> ListenerFacts {
        ListenerFacts {
            name: self.name.clone(),
            supported_kinds: if self.admits_http_routes && self.protocol.is_some() {
                vec![RouteGroupKind {
                    group: Some(GROUP.to_owned()),
                    kind: HTTP_ROUTE_KIND.to_owned(),
                }]
            } else {
                Vec::new()
            },
            attached_routes: self.attached_routes,
            served: self.usable,
        }
    }
}

/// The listener ports weir's proxies serve Gateway listeners on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerPorts {
    /// The port plain HTTP listeners must name (the proxy Service's HTTP port).
    pub http: u16,
    /// The port HTTPS listeners must name (the proxy Service's HTTPS port).
    pub https: u16,
}

/// The GatewayClasses weir serves and accepts: `controllerName` is weir's and, when the
/// gateway has a class, named as it is. Each is reported on.
pub(crate) fn accepted_classes(
    classes: &[&GatewayClass],
    options: &Options,
    reports: &mut BTreeMap<ObjectRef, ObjectReport>,
) -> BTreeSet<String> {
    let mut accepted = BTreeSet::new();
    for class in classes {
        let name = name_of(&class.metadata);
        let ours = class.spec.controller_name == GATEWAY_CONTROLLER
            && options.class.as_ref().is_none_or(|own| own.name == name);
        if !ours {
            continue;
        }
        let mut report = ObjectReport::new(
            ObjectKind::GatewayClass,
            "",
            name,
            class.metadata.generation,
        );
        if class.spec.parameters_ref.is_some() {
            report.push(
                "spec.parametersRef",
                ConditionType::Accepted,
                Reason::InvalidParameters,
                "weir's GatewayClasses take no parameters; remove parametersRef",
            );
        } else {
            report.in_snapshot = InSnapshot::Whole;
            accepted.insert(name.to_owned());
        }
        reports.insert(report.object.clone(), report);
    }
    accepted
}

/// The Gateways of weir's classes, their listeners checked; each Gateway of a weir class
/// is reported on, the refused ones included.
pub(crate) fn served_gateways(
    gateways: &[&Gateway],
    classes: &[&GatewayClass],
    accepted: &BTreeSet<String>,
    grants: &[&crate::gateway::ReferenceGrant],
    index: &Index<'_>,
    options: &Options,
    reports: &mut BTreeMap<ObjectRef, ObjectReport>,
) -> Vec<ServedGateway> {
    let mut served = Vec::new();
    for gateway in gateways {
        let class = &gateway.spec.gateway_class_name;
        let weirs_class = classes.iter().any(|c| {
            name_of(&c.metadata) == class
                && c.spec.controller_name == GATEWAY_CONTROLLER
                && options.class.as_ref().is_none_or(|own| &own.name == class)
        });
        if !weirs_class {
            continue;
        }
        let namespace = namespace_of(&gateway.metadata);
        let name = name_of(&gateway.metadata);
        let mut report = ObjectReport::new(
            ObjectKind::Gateway,
            namespace,
            name,
            gateway.metadata.generation,
        );
        let key = report.object.clone();
        if !accepted.contains(class) {
            report.push(
                "spec.gatewayClassName",
                ConditionType::Accepted,
                Reason::Invalid,
                format!("GatewayClass {class} is not accepted (see its status)"),
            );
            reports.insert(key, report);
            continue;
        }
        if !gateway.spec.addresses.is_empty() {
            report.push(
                "spec.addresses",
                ConditionType::Accepted,
                Reason::UnsupportedAddress,
                "weir's proxies are reached at the addresses of their Service; remove spec.addresses",
            );
            reports.insert(key, report);
            continue;
        }
        let mut listeners: Vec<ServedListener> = gateway
            .spec
            .listeners
            .iter()
            .enumerate()
            .map(|(i, listener)| {
                check_listener(i, listener, namespace, grants, index, options, &mut report)
            })
            .collect();
        mark_conflicts(&mut listeners, &mut report);
        for listener in &mut listeners {
            let field = listener.field();
            listener.usable = listener.protocol.is_some()
                && !report.diagnostics_under(&field).any(|d| {
                    matches!(
                        d.condition,
                        ConditionType::Accepted | ConditionType::Conflicted
                    )
                })
                && (listener.protocol != Some(ListenerProtocol::Https)
                    || listener.certificate.is_some());
        }
        if !listeners.iter().any(|l| l.usable) {
            report.push(
                "spec.listeners",
                ConditionType::Accepted,
                Reason::ListenersNotValid,
                "no listener can serve routes",
            );
        }
        reports.insert(key.clone(), report);
        served.push(ServedGateway { key, listeners });
    }
    served
}

fn check_listener(
    index_in_spec: usize,
    listener: &Listener,
    namespace: &str,
    grants: &[&crate::gateway::ReferenceGrant],
    index: &Index<'_>,
    options: &Options,
    report: &mut ObjectReport,
) -> ServedListener {
    let field = format!("spec.listeners[{index_in_spec}]");
    let protocol = match &listener.protocol {
        ProtocolType::Http => Some(ListenerProtocol::Http),
        ProtocolType::Https => Some(ListenerProtocol::Https),
        other => {
            report.push(
                format!("{field}.protocol"),
                ConditionType::Accepted,
                Reason::UnsupportedProtocol,
                format!(
                    "{} is not served; weir serves HTTP and HTTPS",
                    other.as_str()
                ),
            );
            None
        }
    };
    if let (Some(ports), Some(protocol)) = (options.listener_ports, protocol) {
        let (expected, name) = match protocol {
            ListenerProtocol::Http => (ports.http, "HTTP"),
            ListenerProtocol::Https => (ports.https, "HTTPS"),
        };
        if listener.port != expected {
            report.push(
                format!("{field}.port"),
                ConditionType::Accepted,
                Reason::PortUnavailable,
                format!(
                    "weir's proxies serve {name} listeners on port {expected} (their Service's \
                     port); {} is not served",
                    listener.port
                ),
            );
        }
    }
    let allowed = listener.allowed_routes_or_default();
    let kinds_field = format!("{field}.allowedRoutes.kinds");
    let mut admits_http_routes = allowed.kinds.is_empty();
    for (k, kind) in allowed.kinds.iter().enumerate() {
        if kind.group_or_default() == GROUP && kind.kind == HTTP_ROUTE_KIND {
            admits_http_routes = true;
        } else {
            report.push(
                format!("{kinds_field}[{k}]"),
                ConditionType::ResolvedRefs,
                Reason::InvalidRouteKinds,
                format!(
                    "{}/{} is not a route kind weir serves; it serves HTTPRoute",
                    kind.group_or_default(),
                    kind.kind
                ),
            );
        }
    }
    let hostname = listener.hostname.as_ref().map(|h| h.to_ascii_lowercase());
    let certificate = match protocol {
        Some(ListenerProtocol::Https) => certificate(
            listener, &field, namespace, &hostname, grants, index, report,
        ),
        _ => None,
    };
    ServedListener {
        index: index_in_spec,
        name: listener.name.clone(),
        hostname,
        port: listener.port,
        protocol,
        admits_http_routes,
        namespaces: allowed.namespaces_or_default().clone(),
        certificate,
        usable: false,
        attached_routes: 0,
    }
}

/// The first usable certificate of an HTTPS listener; what is wrong with the others is
/// reported as `ResolvedRefs=False`.
fn certificate(
    listener: &Listener,
    field: &str,
    namespace: &str,
    hostname: &Option<String>,
    grants: &[&crate::gateway::ReferenceGrant],
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> Option<Certificate> {
    let tls_field = format!("{field}.tls");
    let Some(tls_config) = &listener.tls else {
        report.push(
            tls_field,
            ConditionType::ResolvedRefs,
            Reason::InvalidCertificateRef,
            "an HTTPS listener needs tls.certificateRefs",
        );
        return None;
    };
    if tls_config.mode_or_default() == TLSModeType::Passthrough {
        report.push(
            format!("{tls_field}.mode"),
            ConditionType::Accepted,
            Reason::UnsupportedValue,
            "an HTTPS listener terminates TLS; Passthrough is not served",
        );
        return None;
    }
    let hosts = vec![hostname.clone().unwrap_or_else(|| "*".to_owned())];
    let mut found = None;
    for (r, reference) in tls_config.certificate_refs.iter().enumerate() {
        let ref_field = format!("{tls_field}.certificateRefs[{r}]");
        if reference.group_or_default() != CORE_GROUP || reference.kind_or_default() != SECRET_KIND
        {
            report.push(
                ref_field,
                ConditionType::ResolvedRefs,
                Reason::InvalidCertificateRef,
                format!(
                    "{}/{} is not a Secret",
                    reference.group_or_default(),
                    reference.kind_or_default()
                ),
            );
            continue;
        }
        let secret_namespace = reference.namespace_or(namespace);
        let referrer = Referrer {
            group: GROUP,
            kind: GATEWAY_KIND,
            namespace,
        };
        let referent = Referent {
            group: CORE_GROUP,
            kind: SECRET_KIND,
            namespace: secret_namespace,
            name: &reference.name,
        };
        if !grants::permits(grants, &referrer, &referent) {
            report.push(
                ref_field,
                ConditionType::ResolvedRefs,
                Reason::RefNotPermitted,
                grants::refusal(&referrer, &referent),
            );
            continue;
        }
        let mut checked = ObjectReport::new(ObjectKind::Gateway, namespace, "", None);
        let certificate = tls::certificate(
            &reference.name,
            secret_namespace,
            &hosts,
            &ref_field,
            index,
            &mut checked,
        );
        for diagnostic in checked.diagnostics {
            let reason = if diagnostic.reason == Reason::Pending {
                Reason::Pending
            } else {
                Reason::InvalidCertificateRef
            };
            report.push(
                diagnostic.field,
                ConditionType::ResolvedRefs,
                reason,
                diagnostic.message,
            );
        }
        if found.is_none() {
            found = certificate;
        }
    }
    if tls_config.certificate_refs.is_empty() {
        report.push(
            format!("{tls_field}.certificateRefs"),
            ConditionType::ResolvedRefs,
            Reason::InvalidCertificateRef,
            "an HTTPS listener needs a certificate",
        );
    }
    found
}

/// Listeners of one Gateway on the same port conflict when their protocols differ, or
/// when they share the protocol and the hostname.
fn mark_conflicts(listeners: &mut [ServedListener], report: &mut ObjectReport) {
    let mut by_port: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, listener) in listeners.iter().enumerate() {
        if listener.protocol.is_some() {
            by_port.entry(listener.port).or_default().push(i);
        }
    }
    for (port, group) in by_port {
        let protocols: BTreeSet<_> = group
            .iter()
            .map(|&i| listeners[i].protocol == Some(ListenerProtocol::Https))
            .collect();
        for &i in &group {
            let listener = &listeners[i];
            if protocols.len() > 1 {
                report.push(
                    listener.field(),
                    ConditionType::Conflicted,
                    Reason::ProtocolConflict,
                    format!("another listener on port {port} has another protocol"),
                );
                continue;
            }
            let same_host = group
                .iter()
                .filter(|&&j| listeners[j].hostname == listener.hostname)
                .count();
            if same_host > 1 {
                report.push(
                    listener.field(),
                    ConditionType::Conflicted,
                    Reason::HostnameConflict,
                    format!(
                        "another listener on port {port} has the same hostname ({})",
                        listener.hostname.as_deref().unwrap_or("none: every host")
                    ),
                );
            }
        }
    }
}

//! Which listeners an HTTPRoute attaches to through one of its `parentRefs`, and the
//! hostnames it is served with there: its own intersected with each listener's.

use k8s_openapi::api::core::v1::Namespace;

use super::listeners::{ServedGateway, ServedListener};
use crate::compile::name_of;
use kube::core::SelectorExt;

use crate::condition::Reason;
use crate::gateway::{FromNamespaces, GATEWAY_KIND, GROUP, ParentReference};

/// A listener (its index in the Gateway's listeners) that serves a route, and the
/// hostnames it serves it with.
pub(crate) type ListenerHosts = (usize, Vec<String>);

/// The listeners a parent reference attaches a route to.
pub(crate) struct Attachment {
    /// Index of the Gateway among the served ones.
    pub gateway: usize,
    /// The listeners that serve the route.
    pub listeners: Vec<ListenerHosts>,
}

/// What one parent reference comes to.
pub(crate) enum Parent {
    /// Not a Gateway weir serves: another controller's to report on.
    NotOurs,
    /// weir's Gateway, which does not take the route here; why is a condition on it.
    Refused { reason: Reason, message: String },
    /// Attached.
    Attached(Attachment),
}

/// What an HTTPRoute is, as listeners admit routes.
pub(crate) struct RouteOrigin<'a> {
    pub namespace: &'a str,
    /// Its hostnames, lower-case.
    pub hostnames: &'a [String],
}

/// Resolves one parent reference of a route, counting the route on every listener that
/// admits it (`attachedRoutes`).
pub(crate) fn attach(
    parent: &ParentReference,
    route: &RouteOrigin<'_>,
    gateways: &mut [ServedGateway],
    namespaces: &[&Namespace],
) -> Parent {
    if parent.group_or_default() != GROUP || parent.kind_or_default() != GATEWAY_KIND {
        return Parent::NotOurs;
    }
    let namespace = parent.namespace_or(route.namespace);
    let Some(position) = gateways
        .iter()
        .position(|g| g.key.namespace == namespace && g.key.name == parent.name)
    else {
        return Parent::NotOurs;
    };
    let gateway = &mut gateways[position];
    let selected: Vec<usize> = gateway
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == l.port))
        .map(|(i, _)| i)
        .collect();
    let refused = |reason, message: String| Parent::Refused { reason, message };
    if selected.is_empty() {
        return refused(
            Reason::NoMatchingParent,
            format!(
                "Gateway {namespace}/{} has no listener{}{}",
                parent.name,
                parent
                    .section_name
                    .as_ref()
                    .map_or(String::new(), |s| format!(" named {s}")),
                parent
                    .port
                    .map_or(String::new(), |p| format!(" on port {p}")),
            ),
        );
    }
    let admitting: Vec<usize> = selected
        .into_iter()
        .filter(|&i| {
            let listener = &gateway.listeners[i];
            listener.protocol.is_some()
                && listener.admits_http_routes
                && admits_namespace(listener, namespace, route.namespace, namespaces)
        })
        .collect();
    if admitting.is_empty() {
        return refused(
            Reason::NotAllowedByListeners,
            format!(
                "no listener of Gateway {namespace}/{} selected by this reference admits \
                 HTTPRoutes from namespace {}",
                parent.name, route.namespace
            ),
        );
    }
    let mut attached = Vec::new();
    for i in admitting {
        let listener = &mut gateway.listeners[i];
        listener.attached_routes += 1;
        if !listener.usable {
            continue;
        }
        let hosts = intersect(listener.hostname.as_deref(), route.hostnames);
        if !hosts.is_empty() {
            attached.push((i, hosts));
        }
    }
    if attached.is_empty() {
        let any_usable = gateway.listeners.iter().any(|l| l.usable);
        return if any_usable {
            refused(
                Reason::NoMatchingListenerHostname,
                format!(
                    "no hostname of the route ({}) matches a hostname of the listeners of Gateway \
                     {namespace}/{} it attaches to",
                    route.hostnames.join(", "),
                    parent.name
                ),
            )
        } else {
            refused(
                Reason::NotAllowedByListeners,
                format!(
                    "the listeners of Gateway {namespace}/{} that admit the route are not valid \
                     (see the Gateway's status)",
                    parent.name
                ),
            )
        };
    }
    Parent::Attached(Attachment {
        gateway: position,
        listeners: attached,
    })
}

fn admits_namespace(
    listener: &ServedListener,
    gateway_namespace: &str,
    route_namespace: &str,
    namespaces: &[&Namespace],
) -> bool {
    match listener.namespaces.from_or_default() {
        FromNamespaces::All => true,
        FromNamespaces::Same => gateway_namespace == route_namespace,
        FromNamespaces::Selector => {
            let Some(selector) = listener.namespaces.selector.clone() else {
                return false;
            };
            let Ok(selector) = kube::core::Selector::try_from(selector) else {
                return false;
            };
            namespaces
                .iter()
                .find(|ns| name_of(&ns.metadata) == route_namespace)
                .is_some_and(|ns| {
                    selector.matches(ns.metadata.labels.as_ref().unwrap_or(&Default::default()))
                })
        }
    }
}

/// Hostnames a route is served with on a listener: the route's own intersected with the
/// listener's (`None` admits every host). A route with no hostnames takes the listener's;
/// with neither, every host (`*`).
pub(crate) fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = match (listener, route.is_empty()) {
        (None, true) => vec!["*".to_owned()],
        (None, false) => route.to_vec(),
        (Some(listener), true) => vec![listener.to_owned()],
        (Some(listener), false) => route
            .iter()
            .filter_map(|host| intersect_one(listener, host))
            .collect(),
    };
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The narrower of two hostnames when one covers the other (`*.example.com` covers
/// `a.example.com` and `*.a.example.com`, any number of labels below it).
fn intersect_one(listener: &str, route: &str) -> Option<String> {
    if listener == route {
        return Some(route.to_owned());
    }
    if covers(listener, route) {
        return Some(route.to_owned());
    }
    if covers(route, listener) {
        return Some(listener.to_owned());
    }
    None
}

/// Whether wildcard `pattern` covers `host` (itself a host or a narrower wildcard).
fn covers(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let base = host.strip_prefix('*').unwrap_or(host);
    base.len() > suffix.len() && base.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn hostnames_intersect_as_the_gateway_api_says() {
        assert_eq!(intersect(None, &[]), hosts(&["*"]));
        assert_eq!(
            intersect(Some("a.example.com"), &[]),
            hosts(&["a.example.com"])
        );
        assert_eq!(
            intersect(None, &hosts(&["a.example.com"])),
            hosts(&["a.example.com"])
        );
        assert_eq!(
            intersect(
                Some("*.example.com"),
                &hosts(&[
                    "a.example.com",
                    "b.c.example.com",
                    "example.com",
                    "other.org"
                ])
            ),
            hosts(&["a.example.com", "b.c.example.com"])
        );
        assert_eq!(
            intersect(Some("a.example.com"), &hosts(&["*.example.com"])),
            hosts(&["a.example.com"])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &hosts(&["*.a.example.com"])),
            hosts(&["*.a.example.com"])
        );
        assert_eq!(
            intersect(Some("*.a.example.com"), &hosts(&["*.example.com"])),
            hosts(&["*.a.example.com"])
        );
        assert!(intersect(Some("a.example.com"), &hosts(&["b.example.com"])).is_empty());
        assert!(intersect(Some("*.example.com"), &hosts(&["example.com"])).is_empty());
    }
}

//! Backends: a Route's `backends[]` resolved to upstreams with endpoints, from Services
//! and EndpointSlices of the Route's namespace, or from an explicit URL.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use url::{Host, Url};

use super::Index;
use super::report::ObjectReport;
use crate::condition::{ConditionType, Reason};
use crate::path;
use crate::route::{BackendRef, ServiceProtocol};
use crate::snapshot::{Backend, BackendProtocol, Endpoint};

/// Label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `appProtocol` values that select HTTP/2 without TLS and HTTPS.
const H2C_APP_PROTOCOLS: &[&str] = &["kubernetes.io/h2c", "h2c"];
const HTTPS_APP_PROTOCOLS: &[&str] = &["https"];

/// Resolves one backend reference. `None` means the reference itself is invalid (already
/// reported); a missing Service gives a backend without endpoints, so its share of
/// requests fails with 503 while the other backends keep serving.
pub(crate) fn resolve(
    backend: &BackendRef,
    namespace: &str,
    field: &str,
    index: &Index<'_>,
    allow_urls: bool,
    report: &mut ObjectReport,
) -> Option<(String, Backend)> {
    if let Some(why) = &backend.unresolved {
        let namespace = backend.namespace.as_deref().unwrap_or(namespace);
        let name = backend.name.as_deref().unwrap_or_default();
        let id = format!(
            "unresolved:{namespace}/{name}:{}",
            backend.port.unwrap_or(0)
        );
        let unusable = Backend {
            protocol: BackendProtocol::Http,
            endpoints: Vec::new(),
            server_name: None,
            base_path: None,
            unresolved: Some(why.clone()),
        };
        return Some((id, unusable));
    }
    match (&backend.url, &backend.name, backend.port) {
        (Some(_), None, None) if backend.protocol.is_some() => {
            report.invalid(
                format!("{field}.protocol"),
                "a URL backend's scheme says its protocol; protocol applies to Services",
            );
            None
        }
        (Some(url), None, None) => {
            let resolved = from_url(url, &format!("{field}.url"), report)?;
            if !allow_urls {
                report.push(
                    format!("{field}.url"),
                    ConditionType::ResolvedRefs,
                    Reason::RefNotPermitted,
                    "URL backends are disabled here; refer to a Service by name and port",
                );
                return Some((
                    resolved.0,
                    Backend {
                        endpoints: Vec::new(),
                        ..resolved.1
                    },
                ));
            }
            Some(resolved)
        }
        (None, Some(name), Some(port)) => Some(from_service(
            backend.namespace.as_deref().unwrap_or(namespace),
            name,
            port,
            backend.protocol,
            field,
            index,
            report,
        )),
        _ => {
            report.invalid(field, "set either url, or name and port");
            None
        }
    }
}

fn from_url(raw: &str, field: &str, report: &mut ObjectReport) -> Option<(String, Backend)> {
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(e) => {
            report.invalid(field, format!("{raw:?} is not a URL: {e}"));
            return None;
        }
    };
    let protocol = match url.scheme() {
        "http" => BackendProtocol::Http,
        "https" => BackendProtocol::Https,
        "h2c" => BackendProtocol::H2c,
        other => {
            report.invalid(field, format!("scheme {other:?} is not http, https or h2c"));
            return None;
        }
    };
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        _ => {
            report.invalid(field, format!("{raw:?} has no host"));
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        report.invalid(
            field,
            "credentials in a backend URL are not allowed; use a plugin to add them",
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        report.invalid(field, "a backend URL cannot have a query or fragment");
        return None;
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let base_path = match url.path() {
        "" | "/" => None,
        p if path::is_normalized(p) => Some(p.trim_end_matches('/').to_owned()),
        p => {
            report.invalid(field, format!("the URL path {p:?} is not in normal form"));
            return None;
        }
    };
    let display_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let id = format!(
        "url:{}://{display_host}:{port}{}",
        url.scheme(),
        base_path.as_deref().unwrap_or("")
    );
    let server_name = (protocol == BackendProtocol::Https).then(|| host.clone());
    let backend = Backend {
        protocol,
        endpoints: vec![Endpoint { host, port }],
        server_name,
        base_path,
        unresolved: None,
    };
    Some((id, backend))
}

fn from_service(
    namespace: &str,
    name: &str,
    port: u16,
    protocol: Option<ServiceProtocol>,
    field: &str,
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> (String, Backend) {
    // A protocol chosen by the reference is part of the upstream's identity.
    let id = match protocol {
        None => format!("service:{namespace}/{name}:{port}"),
        Some(protocol) => format!(
            "service:{namespace}/{name}:{port}:{}",
            match protocol {
                ServiceProtocol::Http => "http",
                ServiceProtocol::Https => "https",
                ServiceProtocol::H2c => "h2c",
            }
        ),
    };
    let mut backend = Backend {
        protocol: BackendProtocol::Http,
        endpoints: Vec::new(),
        server_name: None,
        base_path: None,
        unresolved: None,
    };
    let (service, service_port) = match service_port(index, namespace, name, port) {
        Ok(found) => found,
        Err(missing) => {
            let fields = (format!("{field}.name"), format!("{field}.port"));
            missing.report(namespace, name, port, fields, "", report);
            return (id, backend);
        }
    };
    let spec = service.spec.as_ref();
    let app_protocol = service_port.app_protocol.as_deref().unwrap_or_default();
    backend.protocol = match protocol {
        Some(ServiceProtocol::Http) => BackendProtocol::Http,
        Some(ServiceProtocol::Https) => BackendProtocol::Https,
        Some(ServiceProtocol::H2c) => BackendProtocol::H2c,
        None if H2C_APP_PROTOCOLS.contains(&app_protocol) => BackendProtocol::H2c,
        None if HTTPS_APP_PROTOCOLS.contains(&app_protocol) => BackendProtocol::Https,
        None => BackendProtocol::Http,
    };
    if backend.protocol == BackendProtocol::Https {
        backend.server_name = Some(format!("{name}.{namespace}.svc"));
    }

    if let Some(external) = spec
        .filter(|s| s.type_.as_deref() == Some("ExternalName"))
        .and_then(|s| s.external_name.as_deref())
    {
        backend.endpoints.push(Endpoint {
            host: external.to_ascii_lowercase(),
            port,
        });
        if backend.protocol == BackendProtocol::Https {
            backend.server_name = Some(external.to_ascii_lowercase());
        }
        return (id, backend);
    }

    let port_name = service_port.name.as_deref().unwrap_or_default();
    let mut endpoints = BTreeSet::new();
    for slice in index
        .endpoint_slices
        .get(&(namespace, name))
        .into_iter()
        .flatten()
    {
        let Some(target_port) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or_default() == port_name)
                .then_some(p.port)
                .flatten()
        }) else {
            continue;
        };
        let Ok(target_port) = u16::try_from(target_port) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let ready = endpoint_is_ready(endpoint);
            // Every address of an endpoint is the same pod; the first is the one to use.
            if let (true, Some(address)) = (ready, endpoint.addresses.first()) {
                endpoints.insert(Endpoint {
                    host: address.clone(),
                    port: target_port,
                });
            }
        }
    }
    backend.endpoints = endpoints.into_iter().collect();
    (id, backend)
}

/// Why the Service port a backend reference names cannot be used.
pub(crate) enum MissingBackend {
    /// There is no such Service.
    Service,
    /// The Service has no such port; these are the ports it has.
    Port(Vec<i32>),
}

impl MissingBackend {
    /// Reports it (`BackendNotFound`) on the reference's name or port field, the message
    /// followed by `consequence`.
    pub(crate) fn report(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        (name_field, port_field): (String, String),
        consequence: &str,
        report: &mut ObjectReport,
    ) {
        let (field, message) = match self {
            Self::Service => (name_field, format!("Service {namespace}/{name} not found")),
            Self::Port(known) => {
                let known: Vec<String> = known.iter().map(i32::to_string).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                (
                    port_field,
                    format!("Service {namespace}/{name} has no port {port} (ports: {known})"),
                )
            }
        };
        report.push(
            field,
            ConditionType::ResolvedRefs,
            Reason::BackendNotFound,
            format!("{message}{consequence}"),
        );
    }
}

/// The Service `namespace/name` and its port `port` (its `port`, not the target port).
pub(crate) fn service_port<'a>(
    index: &Index<'a>,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(&'a Service, &'a ServicePort), MissingBackend> {
    let service: &'a Service = index
        .services
        .get(&(namespace, name))
        .copied()
        .ok_or(MissingBackend::Service)?;
    let ports: &'a [ServicePort] = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    ports
        .iter()
        .find(|p| i32::from(port) == p.port)
        .map(|found| (service, found))
        .ok_or_else(|| MissingBackend::Port(ports.iter().map(|p| p.port).collect()))
}

/// The Service an EndpointSlice belongs to.
pub(crate) fn slice_service_name(
    slice: &k8s_openapi::api::discovery::v1::EndpointSlice,
) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// Whether an EndpointSlice endpoint takes traffic: its `ready` condition, where unset
/// counts as ready (as kube-proxy reads it).
pub(crate) fn endpoint_is_ready(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

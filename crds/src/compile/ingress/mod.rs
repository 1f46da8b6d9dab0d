//! Kubernetes `Ingress` objects as weir serves them. Each Ingress weir's class serves
//! becomes one Route per host it names (its paths as rules, its annotations as Route
//! fields), compiled with the Routes in one host space: a host and path claimed by an
//! Ingress and a Route is a conflict like any other, the older object keeping it. What
//! the compiler finds is reported on the Ingress, with the Ingress's own field paths.
//!
//! A canary Ingress (`nginx.ingress.kubernetes.io/canary`) adds its backend to the rules
//! of the Ingress serving the same host and path in its namespace, by weight, header or
//! cookie.

mod annotations;
mod fields;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Index;
use super::report::{InSnapshot, ObjectKind, ObjectRef, ObjectReport};
use super::translated::{SourceFields, Translated, Translation};
use crate::Options;
use crate::condition::{ConditionType, Reason};
use crate::route::{
    BackendRef, HeaderEntry, HeaderModifier, HttpsRedirect, PathMatch, PathMatchType,
    PluginAttachment, Redirect, RedirectScheme, RedirectStatus, RegexRewrite, Rewrite, RouteMatch,
    RouteRule, RouteSpec, RouteTls, ServiceProtocol, ValueMatch, ValueMatchType,
};
use annotations::{Canary, Settings};
pub use annotations::{NGINX_PREFIX, PLUGINS_ANNOTATION};
pub(crate) use fields::FieldMap;

/// The `spec.controller` of the IngressClasses weir serves.
pub const INGRESS_CONTROLLER: &str = "weir.dev/ingress-controller";

/// The IngressClass annotation that makes a class the cluster's default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The class annotation Ingresses carried before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether weir serves Ingresses of no class: weir's IngressClass is the cluster's
/// default. Serves every Ingress in standalone mode (no class).
pub(crate) fn serves(ingress: &Ingress, classes: &[&IngressClass], options: &Options) -> bool {
    let Some(own) = &options.class else {
        return true;
    };
    let own_class = classes.iter().find(|class| {
        class.metadata.name.as_deref() == Some(own.name.as_str())
            && class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(INGRESS_CONTROLLER)
    });
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    let legacy = annotation(&ingress.metadata, LEGACY_CLASS_ANNOTATION);
    match (named, legacy) {
        (Some(name), _) => name == own.name && own_class.is_some(),
        (None, Some(name)) => name == own.name,
        (None, None) => own_class.is_some_and(|class| {
            annotation(&class.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true")
        }),
    }
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Translates the Ingresses weir serves (`ingresses` already filtered by class).
pub(crate) fn translate(ingresses: &[&Ingress], index: &Index<'_>) -> Translation {
    let mut translation = Translation::default();
    let mut mains = Vec::new();
    let mut canaries = Vec::new();
    for ingress in ingresses {
        let key = key_of(ingress);
        let mut report = ObjectReport::new(
            ObjectKind::Ingress,
            &key.namespace,
            &key.name,
            ingress.metadata.generation,
        );
        let empty = BTreeMap::new();
        let settings = annotations::read(
            ingress.metadata.annotations.as_ref().unwrap_or(&empty),
            &mut report,
        );
        if settings.canary.is_some() {
            canaries.push((*ingress, settings));
        } else {
            mains.push((*ingress, settings));
        }
        translation.reports.insert(key, report);
    }
    let mut canary_paths = canary_paths(&canaries, index, &mut translation.reports);
    for (ingress, settings) in &mains {
        let key = key_of(ingress);
        let Some(report) = translation.reports.get_mut(&key) else {
            continue;
        };
        if report.is_invalid() {
            continue;
        }
        let routes = Builder {
            ingress,
            namespace: &key.namespace,
            name: &key.name,
            settings,
            index,
            report,
            canaries: &mut canary_paths,
        }
        .build();
        translation.routes.extend(routes);
    }
    // Per canary Ingress: its paths that split their main Ingress, and those that do not.
    let mut found: BTreeMap<ObjectRef, (usize, usize)> = BTreeMap::new();
    for path in &canary_paths {
        let counts = found.entry(path.key.clone()).or_default();
        if path.used && path.backend.is_some() {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    for unused in canary_paths.into_iter().filter(|c| !c.used) {
        if let Some(report) = translation.reports.get_mut(&unused.key) {
            report.push(
                unused.field.clone(),
                ConditionType::Accepted,
                Reason::NoMainIngress,
                format!(
                    "a canary needs an Ingress without the canary annotation serving host {} \
                     path {} in namespace {}; there is none, so this path is not served",
                    if unused.host.is_empty() {
                        "(any)"
                    } else {
                        &unused.host
                    },
                    unused.path,
                    unused.key.namespace
                ),
            );
        }
    }
    for (ingress, _) in &canaries {
        let key = key_of(ingress);
        if let Some(report) = translation.reports.get_mut(&key) {
            report.in_snapshot = match found.get(&key).copied().unwrap_or_default() {
                _ if report.is_invalid() => InSnapshot::No,
                (0, _) => InSnapshot::No,
                (_, 0) => InSnapshot::Whole,
                _ => InSnapshot::Partly,
            };
        }
    }
    translation
}

/// An Ingress, as reports are keyed.
fn key_of(ingress: &Ingress) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Ingress,
        namespace: super::namespace_of(&ingress.metadata).to_owned(),
        name: super::name_of(&ingress.metadata).to_owned(),
    }
}

/// One path of a canary Ingress, waiting for the Ingress it splits.
struct CanaryPath {
    key: ObjectRef,
    host: String,
    path: String,
    path_type: String,
    field: String,
    /// Its backend; `None` when it is missing (reported on the canary).
    backend: Option<BackendRef>,
    canary: Canary,
    used: bool,
}

/// The paths of the canary Ingresses, their backends checked (and reported on the canary)
/// now: a canary whose Service is missing takes no share of its main Ingress's requests.
fn canary_paths(
    canaries: &[(&Ingress, Settings)],
    index: &Index<'_>,
    reports: &mut BTreeMap<ObjectRef, ObjectReport>,
) -> Vec<CanaryPath> {
    let mut paths = Vec::new();
    for (ingress, settings) in canaries {
        let key = key_of(ingress);
        let Some(report) = reports.get_mut(&key) else {
            continue;
        };
        let Some(canary) = &settings.canary else {
            continue;
        };
        if report.is_invalid() {
            continue;
        }
        for (field, host, path) in ingress_paths(ingress) {
            let backend_field = format!("{field}.backend");
            let Some(target) = service_target(&path.backend, &backend_field, report) else {
                continue;
            };
            let backend = resolve_target(
                &target,
                settings.backend_protocol,
                &key.namespace,
                &backend_field,
                index,
                report,
            )
            .filter(|backend| {
                service_port_found(backend, &key.namespace, &backend_field, index, report)
            });
            paths.push(CanaryPath {
                key: key.clone(),
                host: host.to_ascii_lowercase(),
                path: path.path.clone().unwrap_or_else(|| "/".to_owned()),
                path_type: path.path_type.clone(),
                field,
                backend,
                canary: canary.clone(),
                used: false,
            });
        }
    }
    paths
}

/// Every path of an Ingress with its field and host (empty: any host).
fn ingress_paths(ingress: &Ingress) -> Vec<(String, &str, &HTTPIngressPath)> {
    let mut paths = Vec::new();
    let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_deref());
    for (r, rule) in rules.unwrap_or_default().iter().enumerate() {
        let host = rule.host.as_deref().unwrap_or_default();
        for (p, path) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            paths.push((format!("spec.rules[{r}].http.paths[{p}]"), host, path));
        }
    }
    paths
}

/// The Service an Ingress backend names, its port a number or a name.
#[derive(Clone)]
struct ServiceTarget {
    name: String,
    port: PortRef,
}

#[derive(Clone)]
enum PortRef {
    Number(u16),
    Name(String),
}

fn service_target(
    backend: &IngressBackend,
    field: &str,
    report: &mut ObjectReport,
) -> Option<ServiceTarget> {
    let Some(service) = &backend.service else {
        report.invalid(
            format!("{field}.resource"),
            "resource backends are not supported; name a Service",
        );
        return None;
    };
    let port = service.port.as_ref();
    let port = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.clone()),
    ) {
        (Some(number), _) => match u16::try_from(number) {
            Ok(port) if port > 0 => PortRef::Number(port),
            _ => {
                report.invalid(
                    format!("{field}.service.port.number"),
                    format!("{number} is not a port"),
                );
                return None;
            }
        },
        (None, Some(name)) => PortRef::Name(name),
        (None, None) => {
            report.invalid(
                format!("{field}.service.port"),
                "set the Service port's number or name",
            );
            return None;
        }
    };
    Some(ServiceTarget {
        name: service.name.clone(),
        port,
    })
}

/// The backend reference of a Service target, a port name looked up in the Service;
/// `None` (reported) when the Service or the named port is missing.
fn resolve_target(
    target: &ServiceTarget,
    protocol: Option<ServiceProtocol>,
    namespace: &str,
    field: &str,
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> Option<BackendRef> {
    let port = match &target.port {
        PortRef::Number(port) => *port,
        PortRef::Name(port_name) => {
            let Some(service) = index.services.get(&(namespace, target.name.as_str())) else {
                report.push(
                    format!("{field}.service.name"),
                    ConditionType::ResolvedRefs,
                    Reason::BackendNotFound,
                    format!("Service {namespace}/{} not found", target.name),
                );
                return None;
            };
            let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref());
            let found = ports
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref() == Some(port_name.as_str()))
                .and_then(|p| u16::try_from(p.port).ok());
            let Some(port) = found else {
                report.push(
                    format!("{field}.service.port.name"),
                    ConditionType::ResolvedRefs,
                    Reason::BackendNotFound,
                    format!(
                        "Service {namespace}/{} has no port named {port_name:?}",
                        target.name
                    ),
                );
                return None;
            };
            port
        }
    };
    Some(BackendRef {
        name: Some(target.name.clone()),
        port: Some(port),
        protocol,
        ..BackendRef::default()
    })
}

/// Whether the Service and port `backend` names exist (reported when not): checked for a
/// canary's backend before it takes requests.
fn service_port_found(
    backend: &BackendRef,
    namespace: &str,
    field: &str,
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> bool {
    let name = backend.name.as_deref().unwrap_or_default();
    let port = backend.port.unwrap_or_default();
    match super::backends::service_port(index, namespace, name, port) {
        Ok(_) => true,
        Err(missing) => {
            let fields = (
                format!("{field}.service.name"),
                format!("{field}.service.port"),
            );
            missing.report(
                namespace,
                name,
                port,
                fields,
                "; the canary takes no requests",
                report,
            );
            false
        }
    }
}

/// Builds the Routes of one (non-canary) Ingress.
struct Builder<'b, 'a> {
    ingress: &'b Ingress,
    namespace: &'b str,
    name: &'b str,
    settings: &'b Settings,
    index: &'b Index<'a>,
    report: &'b mut ObjectReport,
    canaries: &'b mut Vec<CanaryPath>,
}

/// The rules of one host, on their way to a Route.
#[derive(Default)]
struct HostRules {
    /// The Ingress field of the host (`spec.rules[i].host`), for host diagnostics.
    host_field: String,
    rules: Vec<RouteRule>,
    fields: Vec<String>,
}

impl Builder<'_, '_> {
    fn build(mut self) -> Vec<Translated> {
        let spec = self.ingress.spec.clone().unwrap_or_default();
        // Hosts in the order the Ingress names them; "" is any host.
        let mut hosts: Vec<(String, HostRules)> = Vec::new();
        let host_entry =
            |hosts: &mut Vec<(String, HostRules)>, host: &str, field: String| match hosts
                .iter()
                .position(|(h, _)| h == host)
            {
                Some(position) => position,
                None => {
                    hosts.push((
                        host.to_owned(),
                        HostRules {
                            host_field: field,
                            ..HostRules::default()
                        },
                    ));
                    hosts.len() - 1
                }
            };
        for (r, rule) in spec.rules.iter().flatten().enumerate() {
            let host = rule
                .host
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !host.is_empty() && !crate::route::is_host_name(&host) {
                self.report.invalid(
                    format!("spec.rules[{r}].host"),
                    format!("{host:?} is not a host name (DNS labels, optionally behind *.)"),
                );
                continue;
            }
            let at = host_entry(&mut hosts, &host, format!("spec.rules[{r}].host"));
            if let Some(root) = &self.settings.app_root
                && hosts[at].1.rules.is_empty()
            {
                hosts[at].1.rules.push(app_root_rule(root));
                hosts[at]
                    .1
                    .fields
                    .push(annotations::field(&format!("{NGINX_PREFIX}app-root")));
            }
            for (p, path) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
                let field = format!("spec.rules[{r}].http.paths[{p}]");
                let (rules, fields) = self.path_rules(&host, path, &field);
                hosts[at].1.rules.extend(rules);
                hosts[at].1.fields.extend(fields);
            }
        }
        if let Some(backend) = &spec.default_backend {
            let field = "spec.defaultBackend".to_owned();
            let path = HTTPIngressPath {
                backend: backend.clone(),
                path: Some("/".to_owned()),
                path_type: "Prefix".to_owned(),
            };
            let at = host_entry(&mut hosts, "", field.clone());
            let (rules, fields) = self.path_rules("", &path, &field);
            hosts[at].1.rules.extend(rules);
            hosts[at].1.fields.extend(fields);
        }
        for alias in &self.settings.aliases {
            if !crate::route::is_host_name(alias) {
                self.report.invalid(
                    annotations::field(&format!("{NGINX_PREFIX}server-alias")),
                    format!("{alias:?} is not a host name (DNS labels, optionally behind *.)"),
                );
            }
        }
        if self.report.is_invalid() {
            return Vec::new();
        }
        let tls = spec.tls.as_deref().unwrap_or_default();
        let named: Vec<String> = hosts.iter().map(|(host, _)| host.clone()).collect();
        let mut routes: Vec<Translated> = hosts
            .into_iter()
            .filter(|(_, rules)| !rules.rules.is_empty())
            .map(|(host, rules)| self.route(host, rules, tls))
            .collect();
        if self.settings.www_redirect {
            for host in named
                .iter()
                .filter(|h| !h.is_empty() && !h.starts_with("*."))
            {
                let other = match host.strip_prefix("www.") {
                    Some(bare) => bare.to_owned(),
                    None => format!("www.{host}"),
                };
                if !named.contains(&other) {
                    routes.push(self.www_redirect_route(other, host, tls));
                }
            }
        }
        routes
    }

    /// The Route of `from-to-www-redirect`: `from` (the host with or without `www.`)
    /// redirects every request to `to`, keeping the scheme, path and query.
    fn www_redirect_route(
        &self,
        from: String,
        to: &str,
        tls: &[k8s_openapi::api::networking::v1::IngressTLS],
    ) -> Translated {
        let annotation = annotations::field(&format!("{NGINX_PREFIX}from-to-www-redirect"));
        let secret = tls.iter().enumerate().find_map(|(i, entry)| {
            let covered = entry
                .hosts
                .iter()
                .flatten()
                .any(|h| h.eq_ignore_ascii_case(&from) || covers(h, &from));
            covered
                .then(|| {
                    entry
                        .secret_name
                        .clone()
                        .map(|secret_name| (i, secret_name))
                })
                .flatten()
        });
        let spec = RouteSpec {
            hosts: vec![from.clone()],
            rules: vec![RouteRule {
                redirect: Some(Redirect {
                    host: Some(to.to_owned()),
                    status_code: Some(RedirectStatus::PermanentRedirect),
                    ..Redirect::default()
                }),
                ..RouteRule::default()
            }],
            tls: secret.as_ref().map(|(_, secret_name)| RouteTls {
                secret_name: secret_name.clone(),
            }),
            class_name: None,
            cors: None,
            plugins: Vec::new(),
            allowed_namespaces: Vec::new(),
            https_redirect: None,
            source_ranges: None,
            client_limits: None,
        };
        self.translated(
            &from,
            spec,
            FieldMap {
                host: annotation.clone(),
                tls: secret.map(|(i, _)| format!("spec.tls[{i}].secretName")),
                rules: vec![annotation],
            },
        )
    }

    /// The Route of `host` (`*` for any) this Ingress becomes, named `ingress:NAME:HOST`,
    /// as old as the Ingress and of its generation.
    fn translated(&self, host: &str, spec: RouteSpec, fields: FieldMap) -> Translated {
        Translated {
            route: super::translated::route_of(
                &self.ingress.metadata,
                self.namespace,
                &format!("ingress:{}:{host}", self.name),
                spec,
            ),
            source: key_of(self.ingress),
            fields: SourceFields::Ingress(fields),
            tenant: self.namespace.to_owned(),
            certificates: Vec::new(),
            tls: None,
        }
    }

    /// The Route of one host.
    fn route(
        &self,
        host: String,
        rules: HostRules,
        tls: &[k8s_openapi::api::networking::v1::IngressTLS],
    ) -> Translated {
        let settings = self.settings;
        let tls_entry = tls.iter().enumerate().find(|(_, entry)| {
            entry
                .hosts
                .iter()
                .flatten()
                .any(|h| h.eq_ignore_ascii_case(&host) || covers(h, &host))
        });
        let route_tls = tls_entry.and_then(|(i, entry)| {
            entry
                .secret_name
                .clone()
                .map(|secret_name| (i, RouteTls { secret_name }))
        });
        // Redirected to HTTPS only where this Ingress gives the host a certificate: weir
        // has no default certificate to serve the redirected requests with.
        let redirect = settings.force_ssl_redirect
            || (route_tls.is_some() && settings.ssl_redirect != Some(false));
        let fields = FieldMap {
            host: rules.host_field,
            tls: route_tls
                .as_ref()
                .map(|(i, _)| format!("spec.tls[{i}].secretName")),
            rules: rules.fields,
        };
        let route_host = if host.is_empty() {
            "*".to_owned()
        } else {
            host.clone()
        };
        let spec = RouteSpec {
            class_name: None,
            // `server-alias` names more hosts for the Ingress's hosts (not for any host).
            hosts: if host.is_empty() {
                Vec::new()
            } else {
                std::iter::once(host)
                    .chain(settings.aliases.iter().cloned())
                    .collect()
            },
            rules: rules.rules,
            tls: route_tls.map(|(_, tls)| tls),
            cors: settings.cors.clone(),
            plugins: settings
                .plugins
                .iter()
                .map(|name| PluginAttachment {
                    name: name.clone(),
                    config: None,
                    secret_refs: Vec::new(),
                })
                .collect(),
            allowed_namespaces: Vec::new(),
            https_redirect: redirect.then_some(HttpsRedirect {
                status_code: Some(RedirectStatus::PermanentRedirect),
                port: None,
            }),
            source_ranges: settings.source_ranges.clone(),
            client_limits: settings.client_limits.clone(),
        };
        self.translated(&route_host, spec, fields)
    }

    /// The rules of one path: the path itself, and those of a canary splitting it.
    fn path_rules(
        &mut self,
        host: &str,
        path: &HTTPIngressPath,
        field: &str,
    ) -> (Vec<RouteRule>, Vec<String>) {
        let settings = self.settings;
        let value = path.path.clone().unwrap_or_else(|| "/".to_owned());
        let Some(matched) = self.path_match(&value, &path.path_type, field) else {
            return (Vec::new(), Vec::new());
        };
        let plain = RouteMatch {
            path: Some(matched.clone()),
            ..RouteMatch::default()
        };
        if let Some(redirect) = &settings.redirect {
            let url = &redirect.url;
            let rule = RouteRule {
                matches: vec![plain],
                redirect: Some(Redirect {
                    scheme: Some(if url.scheme() == "https" {
                        RedirectScheme::Https
                    } else {
                        RedirectScheme::Http
                    }),
                    host: url.host_str().map(str::to_ascii_lowercase),
                    port: url.port(),
                    path: Some(url.path().to_owned()),
                    replace_prefix: None,
                    status_code: Some(redirect.status),
                }),
                ..RouteRule::default()
            };
            return (
                vec![rule],
                vec![annotations::field(&format!(
                    "{NGINX_PREFIX}{}",
                    redirect.annotation
                ))],
            );
        }
        let backend_field = format!("{field}.backend");
        let main = service_target(&path.backend, &backend_field, self.report).and_then(|target| {
            resolve_target(
                &target,
                settings.backend_protocol,
                self.namespace,
                &backend_field,
                self.index,
                self.report,
            )
        });
        let Some(main) = main else {
            return (Vec::new(), Vec::new());
        };
        let canary = self.canaries.iter_mut().find(|c| {
            !c.used
                && c.key.namespace == self.namespace
                && c.host == host
                && c.path == value
                && c.path_type == path.path_type
        });
        let canary = match canary {
            Some(canary) => {
                canary.used = true;
                canary
                    .backend
                    .clone()
                    .map(|backend| (backend, canary.canary.clone()))
            }
            None => None,
        };
        let forward = |backends: Vec<BackendRef>, matches: Vec<RouteMatch>| {
            self.forward_rule(backends, matches, &value)
        };
        let Some((canary_backend, canary)) = canary else {
            return (
                vec![forward(vec![main], vec![plain])],
                vec![field.to_owned()],
            );
        };
        let mut rules = Vec::new();
        let with = |condition: ValueMatch| RouteMatch {
            headers: vec![condition],
            ..plain.clone()
        };
        // Header first, then cookie, then weight: a request with both a header and a
        // cookie goes where the header says (rules of one Route keep their order).
        if let Some(header) = &canary.header {
            let (kind, value) = match (&canary.header_value, &canary.header_pattern) {
                (Some(value), _) => (ValueMatchType::Exact, value.clone()),
                (None, Some(pattern)) => (ValueMatchType::Regex, pattern.clone()),
                (None, None) => (ValueMatchType::Exact, "always".to_owned()),
            };
            rules.push(forward(
                vec![canary_backend.clone()],
                vec![with(ValueMatch {
                    name: header.clone(),
                    kind,
                    value: Some(value),
                })],
            ));
            rules.push(forward(
                vec![main.clone()],
                vec![with(ValueMatch {
                    name: header.clone(),
                    kind: ValueMatchType::Exact,
                    value: Some("never".to_owned()),
                })],
            ));
        }
        if let Some(cookie) = &canary.cookie {
            for (value, backend) in [("always", &canary_backend), ("never", &main)] {
                rules.push(forward(
                    vec![backend.clone()],
                    vec![with(ValueMatch {
                        name: "cookie".to_owned(),
                        kind: ValueMatchType::Regex,
                        value: Some(format!(
                            r"(?:.*;\s*)?{}={value}(?:\s*;.*)?",
                            regex::escape(cookie)
                        )),
                    })],
                ));
            }
        }
        let weighted = if canary.weight == 0 {
            vec![main]
        } else {
            vec![
                BackendRef {
                    weight: Some(canary.weight_total - canary.weight),
                    ..main
                },
                BackendRef {
                    weight: Some(canary.weight),
                    ..canary_backend
                },
            ]
        };
        rules.push(forward(weighted, vec![plain]));
        let fields = vec![field.to_owned(); rules.len()];
        (rules, fields)
    }

    /// A rule proxying to `backends` with the Ingress's rewrite, timeouts and body limit.
    fn forward_rule(
        &self,
        backends: Vec<BackendRef>,
        matches: Vec<RouteMatch>,
        path: &str,
    ) -> RouteRule {
        let settings = self.settings;
        let regex = settings.rewrite_target.as_ref().map(|target| RegexRewrite {
            pattern: format!("(?i)^(?:{path})"),
            substitution: braced_groups(target),
        });
        let rewrite = (regex.is_some() || settings.upstream_vhost.is_some()).then(|| Rewrite {
            regex,
            host: settings.upstream_vhost.clone(),
            ..Rewrite::default()
        });
        RouteRule {
            matches,
            backends: Some(backends),
            rewrite,
            timeouts: settings.timeouts.clone(),
            retries: settings.retries.clone(),
            load_balancer: settings.load_balancer,
            max_request_body_bytes: settings.max_body_bytes,
            request_headers: settings
                .forwarded_prefix
                .as_ref()
                .map(|prefix| HeaderModifier {
                    set: vec![HeaderEntry {
                        name: "x-forwarded-prefix".to_owned(),
                        value: prefix.clone(),
                    }],
                    ..HeaderModifier::default()
                }),
            ..RouteRule::default()
        }
    }

    /// The match of an Ingress path: `Exact`, `Prefix` (segment-wise, a trailing slash
    /// ignored) and `ImplementationSpecific` (as `Prefix`); with regular expression paths,
    /// a case-insensitive expression matched from the start, as ingress-nginx does.
    fn path_match(&mut self, value: &str, path_type: &str, field: &str) -> Option<PathMatch> {
        if !value.starts_with('/') {
            self.report.invalid(
                format!("{field}.path"),
                format!("{value:?} is not an absolute path"),
            );
            return None;
        }
        if path_type == "Exact" {
            return Some(PathMatch {
                kind: PathMatchType::Exact,
                value: value.to_owned(),
            });
        }
        if !matches!(path_type, "Prefix" | "ImplementationSpecific") {
            self.report.invalid(
                format!("{field}.pathType"),
                format!("{path_type:?} is not Exact, Prefix or ImplementationSpecific"),
            );
            return None;
        }
        if self.settings.regex_paths {
            return Some(PathMatch {
                kind: PathMatchType::Regex,
                value: format!("(?i)(?:{value}).*"),
            });
        }
        let trimmed = match value.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        Some(PathMatch {
            kind: PathMatchType::Prefix,
            value: trimmed.to_owned(),
        })
    }
}

/// The rule answering `/` with a redirect to the application root.
fn app_root_rule(root: &str) -> RouteRule {
    RouteRule {
        matches: vec![RouteMatch {
            path: Some(PathMatch {
                kind: PathMatchType::Exact,
                value: "/".to_owned(),
            }),
            ..RouteMatch::default()
        }],
        redirect: Some(Redirect {
            path: Some(root.to_owned()),
            status_code: Some(RedirectStatus::Found),
            ..Redirect::default()
        }),
        ..RouteRule::default()
    }
}

/// nginx's `$1abc` is group 1 then `abc`; the `regex` crate would read a group named
/// `1abc`. Every `$n` becomes `${n}`.
fn braced_groups(target: &str) -> String {
    let mut out = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(&digit) = chars.peek().filter(|d| d.is_ascii_digit()) {
                out.push(digit);
                chars.next();
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a TLS host (`*.example.com`) covers `host` (one label below it).
fn covers(pattern: &str, host: &str) -> bool {
    let Some(base) = pattern.strip_prefix("*.") else {
        return false;
    };
    host.split_once('.')
        .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_groups_are_braced() {
        assert_eq!(braced_groups("/$2"), "/${2}");
        assert_eq!(braced_groups("/v1/$1abc/$12"), "/v1/${1}abc/${12}");
        assert_eq!(braced_groups("/${name}/$"), "/${name}/$");
    }

    #[test]
    fn tls_wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("a.example.com", "a.example.com"));
    }
}

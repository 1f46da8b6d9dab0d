//! One HTTPRoute rule as a weir Route rule: its matches, its filters (header changes,
//! redirect, rewrite, weir Plugins by `ExtensionRef`) and its backends, references
//! checked (a Service in another namespace needs a ReferenceGrant). A rule that cannot
//! forward anywhere answers 500, as the Gateway API asks, rather than letting its
//! requests fall through to another rule.

use std::collections::BTreeMap;

use super::grants::{self, Referent, Referrer};
use crate::compile::report::ObjectReport;
use crate::compile::{Context, PluginState, backends};
use crate::condition::{ConditionType, Reason};
use crate::gateway::{
    CORE_GROUP, GROUP, HTTP_ROUTE_KIND, HTTPBackendRef, HTTPHeaderFilter, HTTPMethod,
    HTTPPathModifier, HTTPPathModifierType, HTTPRequestMirrorFilter, HTTPRequestRedirectFilter,
    HTTPRouteFilterType, HTTPRouteMatch, HTTPRouteRule, HTTPURLRewriteFilter, HeaderMatchType,
    LocalObjectReference, PathMatchType as GatewayPathMatchType, QueryParamMatchType,
    RedirectScheme as GatewayRedirectScheme, SERVICE_KIND,
};
use crate::route::{
    BackendRef, DirectResponse, HeaderEntry, HeaderModifier, HttpMethod, MirrorFraction, PathMatch,
    PathMatchType, PluginAttachment, Redirect, RedirectScheme, RedirectStatus, RequestMirror,
    Rewrite, RouteMatch, RouteRule, Timeouts, ValueMatch, ValueMatchType,
};

/// The API group and kind of a weir Plugin, as an `ExtensionRef` filter names it.
const PLUGIN_GROUP: &str = "weir.dev";
const PLUGIN_KIND: &str = "Plugin";

/// A translated rule, the plugins its `ExtensionRef` filters name, and the way back to
/// its fields.
pub(crate) struct TranslatedRule {
    pub rule: RouteRule,
    pub plugins: Vec<PluginAttachment>,
    pub fields: RuleFields,
}

/// The HTTPRoute's field paths for those of the Route one of its rules became.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleFields {
    /// The rule's index in `spec.rules`.
    pub rule: usize,
    /// The `backendRefs` index of each Route backend.
    pub backends: Vec<usize>,
    /// The `filters` index of each Route plugin.
    pub plugins: Vec<usize>,
    /// The `filters` index of each Route mirror.
    pub mirrors: Vec<usize>,
    /// The `filters` index of the filter each Route rule field came from
    /// (`requestHeaders`, `responseHeaders`, `redirect`, `rewrite`).
    pub filters: BTreeMap<&'static str, usize>,
}

impl RuleFields {
    /// The HTTPRoute field for a field of the Route.
    pub(crate) fn http_route_field(&self, field: &str) -> String {
        let rule = format!("spec.rules[{}]", self.rule);
        if field.starts_with("spec.hosts") {
            return "spec.hostnames".to_owned();
        }
        if let Some(rest) = field.strip_prefix("spec.plugins[")
            && let Some(filter) = index_of(rest).and_then(|i| self.plugins.get(i))
        {
            return format!("{rule}.filters[{filter}]");
        }
        let Some(rest) = field.strip_prefix("spec.rules[0]") else {
            return "spec".to_owned();
        };
        if let Some(backend) = rest.strip_prefix(".backends[") {
            let sub = backend.split_once(']').map_or("", |(_, sub)| sub);
            if let Some(index) = index_of(backend).and_then(|i| self.backends.get(i)) {
                let sub = if matches!(sub, ".name" | ".port") {
                    sub
                } else {
                    ""
                };
                return format!("{rule}.backendRefs[{index}]{sub}");
            }
            return format!("{rule}.backendRefs");
        }
        if let Some(mirror) = rest.strip_prefix(".mirrors[")
            && let Some(filter) = index_of(mirror).and_then(|i| self.mirrors.get(i))
        {
            return format!("{rule}.filters[{filter}]");
        }
        if let Some(matched) = rest.strip_prefix(".matches[")
            && let Some(index) = index_of(matched)
        {
            return format!("{rule}.matches[{index}]");
        }
        for (name, filter) in &self.filters {
            if rest.starts_with(&format!(".{name}")) {
                return format!("{rule}.filters[{filter}]");
            }
        }
        if rest.starts_with(".timeouts") {
            return format!("{rule}.timeouts");
        }
        rule
    }
}

/// The number before the first `]`.
fn index_of(rest: &str) -> Option<usize> {
    rest.split_once(']')?.0.parse().ok()
}

/// Translates rule `index` of an HTTPRoute in `namespace`; `None` when it must be left
/// out (a filter or match weir does not implement; reported).
pub(crate) fn translate(
    rule: &HTTPRouteRule,
    index: usize,
    namespace: &str,
    grants: &[&crate::gateway::ReferenceGrant],
    ctx: &Context<'_>,
    report: &mut ObjectReport,
) -> Option<TranslatedRule> {
    let field = format!("spec.rules[{index}]");
    let mut fields = RuleFields {
        rule: index,
        ..RuleFields::default()
    };
    let mut translated = RouteRule::default();
    let mut supported = true;
    for (m, matched) in rule.matches_or_default().iter().enumerate() {
        match route_match(matched, &format!("{field}.matches[{m}]"), report) {
            Some(route_match) => translated.matches.push(route_match),
            None => supported = false,
        }
    }

    let mut plugins = Vec::new();
    // A filter that cannot run: requests it would have handled get 500.
    let mut broken_filter = None;
    for (f, filter) in rule.filters.iter().enumerate() {
        let filter_field = format!("{field}.filters[{f}]");
        match &filter.kind {
            HTTPRouteFilterType::RequestHeaderModifier => {
                translated.request_headers =
                    filter.request_header_modifier.as_ref().map(header_modifier);
                fields.filters.insert("requestHeaders", f);
            }
            HTTPRouteFilterType::ResponseHeaderModifier => {
                translated.response_headers = filter
                    .response_header_modifier
                    .as_ref()
                    .map(header_modifier);
                fields.filters.insert("responseHeaders", f);
            }
            HTTPRouteFilterType::RequestRedirect => {
                let Some(redirect) = &filter.request_redirect else {
                    continue;
                };
                match request_redirect(redirect, &filter_field, report) {
                    Some(redirect) => translated.redirect = Some(redirect),
                    None => supported = false,
                }
                fields.filters.insert("redirect", f);
            }
            HTTPRouteFilterType::URLRewrite => {
                let Some(rewrite) = &filter.url_rewrite else {
                    continue;
                };
                translated.rewrite = Some(url_rewrite(rewrite));
                fields.filters.insert("rewrite", f);
            }
            HTTPRouteFilterType::RequestMirror => {
                let Some(mirror) = &filter.request_mirror else {
                    continue;
                };
                let backend = service_ref(
                    &ServiceReference::of_mirror(mirror),
                    namespace,
                    &format!("{filter_field}.requestMirror.backendRef"),
                    grants,
                    ctx,
                    report,
                );
                translated.mirrors.push(RequestMirror {
                    backend: BackendRef {
                        weight: None,
                        ..backend
                    },
                    percent: mirror.percent.map(u32::from),
                    fraction: mirror.fraction.as_ref().map(|f| MirrorFraction {
                        numerator: f.numerator,
                        denominator: Some(f.denominator_or_default()),
                    }),
                });
                fields.mirrors.push(f);
            }
            HTTPRouteFilterType::ExtensionRef => {
                let Some(reference) = &filter.extension_ref else {
                    continue;
                };
                match plugin(reference, namespace, &filter_field, ctx, report) {
                    Some(attachment) => {
                        fields.plugins.push(f);
                        plugins.push(attachment);
                    }
                    None => broken_filter = Some(filter_field),
                }
            }
            other => {
                let field = format!("{filter_field}.type");
                unsupported(report, field, "filter", other.as_str());
                supported = false;
            }
        }
    }
    if !supported {
        return None;
    }

    if translated.redirect.is_none() {
        let mut backend_refs = Vec::new();
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            let backend_field = format!("{field}.backendRefs[{b}]");
            if !backend.filters.is_empty() {
                report.push(
                    format!("{backend_field}.filters"),
                    ConditionType::Accepted,
                    Reason::UnsupportedValue,
                    "filters on a backendRef are not supported; put them on the rule",
                );
                return None;
            }
            fields.backends.push(b);
            backend_refs.push(service_ref(
                &ServiceReference::of_backend(backend),
                namespace,
                &backend_field,
                grants,
                ctx,
                report,
            ));
        }
        let forwards = backend_refs.iter().any(|b| b.weight != Some(0));
        match (broken_filter, forwards) {
            (None, true) => {
                translated.backends = Some(backend_refs);
                translated.timeouts = timeouts(rule);
            }
            (broken, _) => {
                fields.backends.clear();
                plugins.clear();
                fields.plugins.clear();
                translated.mirrors.clear();
                fields.mirrors.clear();
                translated.request_headers = None;
                translated.rewrite = None;
                translated.direct_response = Some(server_error(if broken.is_some() {
                    "a filter of the rule cannot run"
                } else {
                    "the rule has no backend"
                }));
            }
        }
    } else if broken_filter.is_some() {
        plugins.clear();
        fields.plugins.clear();
        translated.mirrors.clear();
        fields.mirrors.clear();
        translated.redirect = None;
        translated.direct_response = Some(server_error("a filter of the rule cannot run"));
    }
    Some(TranslatedRule {
        rule: translated,
        plugins,
        fields,
    })
}

/// The answer to a request a rule cannot serve: 500 with weir's JSON error body.
fn server_error(message: &str) -> DirectResponse {
    DirectResponse {
        status: 500,
        headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        body: Some(
            serde_json::json!({ "error": "route_not_servable", "message": message }).to_string(),
        ),
    }
}

fn route_match(
    matched: &HTTPRouteMatch,
    field: &str,
    report: &mut ObjectReport,
) -> Option<RouteMatch> {
    let path = matched.path_or_default();
    let kind = match path.kind_or_default() {
        GatewayPathMatchType::Exact => PathMatchType::Exact,
        GatewayPathMatchType::PathPrefix => PathMatchType::Prefix,
        GatewayPathMatchType::RegularExpression => PathMatchType::Regex,
        GatewayPathMatchType::Other(other) => {
            unsupported(
                report,
                format!("{field}.path.type"),
                "path match type",
                other,
            );
            return None;
        }
    };
    let mut headers = Vec::new();
    for (h, header) in matched.headers.iter().enumerate() {
        let kind = match header.kind_or_default() {
            HeaderMatchType::Exact => ValueMatchType::Exact,
            HeaderMatchType::RegularExpression => ValueMatchType::Regex,
            HeaderMatchType::Other(other) => {
                let field = format!("{field}.headers[{h}].type");
                unsupported(report, field, "header match type", other);
                return None;
            }
        };
        headers.push(ValueMatch {
            name: header.name.clone(),
            kind,
            value: Some(header.value.clone()),
        });
    }
    let mut query = Vec::new();
    for (q, param) in matched.query_params.iter().enumerate() {
        let kind = match param.kind_or_default() {
            QueryParamMatchType::Exact => ValueMatchType::Exact,
            QueryParamMatchType::RegularExpression => ValueMatchType::Regex,
            QueryParamMatchType::Other(other) => {
                let field = format!("{field}.queryParams[{q}].type");
                unsupported(report, field, "query parameter match type", other);
                return None;
            }
        };
        query.push(ValueMatch {
            name: param.name.clone(),
            kind,
            value: Some(param.value.clone()),
        });
    }
    let methods = match &matched.method {
        None => Vec::new(),
        Some(method) => vec![match method {
            HTTPMethod::Get => HttpMethod::Get,
            HTTPMethod::Head => HttpMethod::Head,
            HTTPMethod::Post => HttpMethod::Post,
            HTTPMethod::Put => HttpMethod::Put,
            HTTPMethod::Delete => HttpMethod::Delete,
            HTTPMethod::Connect => HttpMethod::Connect,
            HTTPMethod::Options => HttpMethod::Options,
            HTTPMethod::Trace => HttpMethod::Trace,
            HTTPMethod::Patch => HttpMethod::Patch,
            HTTPMethod::Other(other) => {
                unsupported(report, format!("{field}.method"), "method", other);
                return None;
            }
        }],
    };
    Some(RouteMatch {
        path: Some(PathMatch {
            kind,
            value: path.value_or_default().to_owned(),
        }),
        methods,
        headers,
        query,
    })
}

fn unsupported(report: &mut ObjectReport, field: String, what: &str, value: &str) {
    report.push(
        field,
        ConditionType::Accepted,
        Reason::UnsupportedValue,
        format!("{what} {value:?} is not supported; the rule is not served"),
    );
}

fn header_modifier(filter: &HTTPHeaderFilter) -> HeaderModifier {
    let entries = |headers: &[crate::gateway::HTTPHeader]| {
        headers
            .iter()
            .map(|h| HeaderEntry {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
    HeaderModifier {
        set: entries(&filter.set),
        add: entries(&filter.add),
        remove: filter.remove.clone(),
    }
}

fn request_redirect(
    filter: &HTTPRequestRedirectFilter,
    field: &str,
    report: &mut ObjectReport,
) -> Option<Redirect> {
    let scheme = match &filter.scheme {
        None => None,
        Some(GatewayRedirectScheme::Http) => Some(RedirectScheme::Http),
        Some(GatewayRedirectScheme::Https) => Some(RedirectScheme::Https),
        Some(GatewayRedirectScheme::Other(other)) => {
            unsupported(
                report,
                format!("{field}.requestRedirect.scheme"),
                "scheme",
                other,
            );
            return None;
        }
    };
    let status_code = match RedirectStatus::try_from(filter.status_code_or_default()) {
        Ok(status) => status,
        Err(why) => {
            report.push(
                format!("{field}.requestRedirect.statusCode"),
                ConditionType::Accepted,
                Reason::UnsupportedValue,
                why,
            );
            return None;
        }
    };
    let (path, replace_prefix) = path_modifier(filter.path.as_ref());
    Some(Redirect {
        scheme,
        host: filter.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
        port: filter.port,
        path,
        replace_prefix,
        status_code: Some(status_code),
    })
}

fn url_rewrite(filter: &HTTPURLRewriteFilter) -> Rewrite {
    let (replace_path, replace_prefix) = path_modifier(filter.path.as_ref());
    Rewrite {
        host: filter.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
        replace_path,
        replace_prefix,
        ..Rewrite::default()
    }
}

/// The full path, or the prefix, a path modifier puts in place of the request's.
fn path_modifier(modifier: Option<&HTTPPathModifier>) -> (Option<String>, Option<String>) {
    match modifier {
        Some(m) if m.kind == HTTPPathModifierType::ReplaceFullPath => {
            (m.replace_full_path.clone(), None)
        }
        Some(m) if m.kind == HTTPPathModifierType::ReplacePrefixMatch => {
            (None, m.replace_prefix_match.clone())
        }
        _ => (None, None),
    }
}

/// The weir Plugin an `ExtensionRef` names, when it can run; `None` (reported) when it
/// cannot.
fn plugin(
    reference: &LocalObjectReference,
    namespace: &str,
    field: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
) -> Option<PluginAttachment> {
    if reference.group != PLUGIN_GROUP || reference.kind != PLUGIN_KIND {
        report.push(
            format!("{field}.extensionRef"),
            ConditionType::ResolvedRefs,
            Reason::InvalidKind,
            format!(
                "{}/{} is not a filter weir runs; name a {PLUGIN_GROUP} {PLUGIN_KIND}; \
                 requests of the rule get 500",
                reference.group, reference.kind
            ),
        );
        return None;
    }
    let name = &reference.name;
    let (reason, why) = match ctx.plugins.get(namespace, name) {
        Some(PluginState::Usable { .. }) => {
            return Some(PluginAttachment {
                name: name.clone(),
                config: None,
                secret_refs: Vec::new(),
            });
        }
        Some(PluginState::Unusable) => (Reason::PluginNotReady, "has no version that can run"),
        None => (Reason::PluginNotFound, "not found"),
    };
    report.push(
        format!("{field}.extensionRef.name"),
        ConditionType::ResolvedRefs,
        reason,
        format!("Plugin {namespace}/{name} {why}; requests of the rule get 500"),
    );
    None
}

/// A reference to a Service, as a `backendRef` and a `RequestMirror` filter write one.
struct ServiceReference<'r> {
    group: &'r str,
    kind: &'r str,
    name: &'r str,
    namespace: Option<&'r str>,
    port: Option<u16>,
    weight: u32,
}

impl<'r> ServiceReference<'r> {
    fn of_backend(backend: &'r HTTPBackendRef) -> Self {
        Self {
            group: backend.group_or_default(),
            kind: backend.kind_or_default(),
            name: &backend.name,
            namespace: backend.namespace.as_deref(),
            port: backend.port,
            weight: backend.weight_or_default(),
        }
    }

    fn of_mirror(mirror: &'r HTTPRequestMirrorFilter) -> Self {
        let reference = &mirror.backend_ref;
        Self {
            group: reference.group_or_default(),
            kind: reference.kind_or_default(),
            name: &reference.name,
            namespace: reference.namespace.as_deref(),
            port: reference.port,
            weight: 1,
        }
    }
}

/// A Service reference as a weir backend. One that does not name a Service that exists
/// and may be used is reported, and becomes an unresolved backend: its share of the
/// requests is answered 500, as the Gateway API asks (a mirror is not sent).
fn service_ref(
    reference: &ServiceReference<'_>,
    namespace: &str,
    field: &str,
    grants: &[&crate::gateway::ReferenceGrant],
    ctx: &Context<'_>,
    report: &mut ObjectReport,
) -> BackendRef {
    let service_namespace = reference.namespace.unwrap_or(namespace);
    let unresolved = check_service_ref(reference, namespace, grants, ctx)
        .err()
        .map(|(sub_field, reason, message)| {
            report.push(
                format!("{field}{sub_field}"),
                ConditionType::ResolvedRefs,
                reason,
                message.clone(),
            );
            message
        });
    BackendRef {
        name: Some(reference.name.to_owned()),
        port: reference.port,
        weight: Some(reference.weight),
        namespace: (service_namespace != namespace).then(|| service_namespace.to_owned()),
        unresolved,
        ..BackendRef::default()
    }
}

/// Whether a reference names a Service weir may send to; if not, the sub-field at fault,
/// the reason and the message.
fn check_service_ref(
    reference: &ServiceReference<'_>,
    namespace: &str,
    grants: &[&crate::gateway::ReferenceGrant],
    ctx: &Context<'_>,
) -> Result<(), (&'static str, Reason, String)> {
    if reference.group != CORE_GROUP || reference.kind != SERVICE_KIND {
        return Err((
            "",
            Reason::InvalidKind,
            format!(
                "{}/{} is not a backend weir serves; name a Service",
                reference.group, reference.kind
            ),
        ));
    }
    let service_namespace = reference.namespace.unwrap_or(namespace);
    let referrer = Referrer {
        group: GROUP,
        kind: HTTP_ROUTE_KIND,
        namespace,
    };
    let referent = Referent {
        group: CORE_GROUP,
        kind: SERVICE_KIND,
        namespace: service_namespace,
        name: reference.name,
    };
    if !grants::permits(grants, &referrer, &referent) {
        return Err((
            ".namespace",
            Reason::RefNotPermitted,
            grants::refusal(&referrer, &referent),
        ));
    }
    let Some(port) = reference.port else {
        return Err((
            ".port",
            Reason::BackendNotFound,
            "a Service backend needs a port".to_owned(),
        ));
    };
    if backends::service_port(&ctx.index, service_namespace, reference.name, port).is_err() {
        return Err((
            ".name",
            Reason::BackendNotFound,
            format!(
                "Service {service_namespace}/{} with port {port} not found",
                reference.name
            ),
        ));
    }
    Ok(())
}

/// The rule's timeouts: `request` bounds the whole request; `backendRequest`, each try
/// upstream, is the bound when `request` is unset (weir's request timeout covers one
/// try's response).
fn timeouts(rule: &HTTPRouteRule) -> Option<Timeouts> {
    let timeouts = rule.timeouts.as_ref()?;
    let request = timeouts
        .request
        .clone()
        .or_else(|| timeouts.backend_request.clone())?;
    Some(Timeouts {
        request: Some(request),
        ..Timeouts::default()
    })
}

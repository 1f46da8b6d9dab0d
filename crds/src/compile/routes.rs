//! One Route checked and lowered to snapshot rules and match entries. Conflicts between
//! Routes and the order of entries are decided later, in `precedence`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use regex::RegexBuilder;
use serde_json::Value;

use super::plugins::route_config;
use super::report::ObjectReport;
use super::schema_check::check_route_spec;
use super::secret_refs::{self, FromSecrets};
use super::{Context, PluginState, backends, tls};
use crate::condition::{ConditionType, Reason};
use crate::path::{self, Template};
use crate::route::{
    BackendRef, ClientLimits, CorsPolicy, DirectResponse, HeaderModifier, HttpMethod,
    PathMatchType, Redirect, RegexRewrite, RequestMirror, Rewrite, RouteMatch, RouteRule,
    SourceRanges, ValueMatch, ValueMatchType,
};
use crate::snapshot::{
    Action, Backend, Certificate, ClientLimits as SnapshotClientLimits, Cors,
    DEFAULT_TUNNEL_IDLE_MS, Forward, HeaderChanges, HttpsRedirectAction, MatchEntry, Mirror,
    NEVER_UPGRADED, Outliers, PathPattern, PathRewrite, PluginCall, RedirectAction,
    RegexSubstitution, Respond, Retries, Rule, SourceRanges as SnapshotRanges, TimeoutsMs,
    ValueCondition, WeightedBackend, default_upgrades, upgrade_protocol,
};
use crate::{Route, plugin::PluginScope, route::RetryOn};

/// Regular expressions are compiled with this size limit, so no Route can make the
/// proxy build a huge automaton.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
const DEFAULT_BACKOFF_BASE_MS: u64 = 25;
const DEFAULT_BACKOFF_MAX_MS: u64 = 250;
const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
const DEFAULT_BASE_EJECTION_MS: u64 = 30_000;
const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
const DEFAULT_CORS_METHODS: [HttpMethod; 3] = [HttpMethod::Get, HttpMethod::Head, HttpMethod::Post];

/// A Route after checking, before conflicts with other Routes are settled.
pub(crate) struct LoweredRoute {
    pub namespace: String,
    pub name: String,
    /// The object it came from, as messages name it (`Route shop/api`, `Ingress shop/web`).
    pub origin: String,
    /// Host patterns; `*` when the Route names none.
    pub hosts: Vec<String>,
    /// Rules by id.
    pub rules: Vec<(String, Box<Rule>)>,
    /// Match entries, to be placed under every host.
    pub entries: Vec<LoweredEntry>,
    /// Backends the rules use, by id.
    pub backends: Vec<(String, Backend)>,
    /// The namespace whose claim its hosts are (see [`super::ownership`]): its own, or
    /// for a Route an HTTPRoute became, its Gateway's.
    pub tenant: String,
    /// TLS certificates for the hosts.
    pub certificates: Vec<Certificate>,
    /// Namespaces whose Routes may serve the hosts this Route's namespace owns.
    pub allowed_namespaces: Vec<String>,
}

/// A match entry and where it came from in the Route.
pub(crate) struct LoweredEntry {
    pub entry: MatchEntry,
    pub rule: usize,
    pub index: usize,
    /// Whether the rule has no matches (the entry is the implicit match-all).
    pub implicit: bool,
}

impl LoweredEntry {
    /// The match's field path, for diagnostics (made when one is written: a string per
    /// entry, held through the build, is a megabyte at 10,000 Routes).
    pub fn field(&self) -> String {
        if self.implicit {
            format!("spec.rules[{}].matches", self.rule)
        } else {
            format!("spec.rules[{}].matches[{}]", self.rule, self.index)
        }
    }
}

/// Checks a Route and lowers it; `None` when it must be left out (the reasons are in
/// `report`). A Route translated from another kind (`origin` names it) is not checked
/// against the Route schema: its own kind's rules apply, checked by the translation.
pub(crate) fn lower(
    route: &Route,
    namespace: &str,
    name: &str,
    origin: Option<String>,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
) -> Option<LoweredRoute> {
    let spec = &route.spec;
    if origin.is_none() {
        check_route_spec(&serde_json::to_value(spec).unwrap_or_default(), report);
    }

    let mut hosts: Vec<String> = spec.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        hosts.push("*".to_owned());
    }

    let plugins: Option<Arc<[PluginCall]>> =
        plugin_calls(route, namespace, ctx, report).map(Arc::from);
    let cors = spec.cors.as_ref().map(|c| Arc::new(lower_cors(c, report)));
    let https_redirect = spec.https_redirect.as_ref().map(|r| HttpsRedirectAction {
        status: r.status_code.map_or(308, u16::from),
        port: r.port.filter(|&port| port != 443),
    });
    let source_ranges = spec
        .source_ranges
        .as_ref()
        .map(|ranges| Arc::new(lower_source_ranges(ranges, report)));
    let client_limits = spec.client_limits.as_ref().map(|limits| {
        Arc::new(lower_client_limits(
            limits,
            format!("{namespace}/{name}"),
            report,
        ))
    });
    let certificate = spec.tls.as_ref().and_then(|t| {
        tls::certificate(
            &t.secret_name,
            namespace,
            &hosts,
            "spec.tls.secretName",
            &ctx.index,
            report,
        )
    });

    let mut lowered = LoweredRoute {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        origin: origin.unwrap_or_else(|| format!("Route {namespace}/{name}")),
        hosts,
        rules: Vec::new(),
        entries: Vec::new(),
        backends: Vec::new(),
        tenant: namespace.to_owned(),
        certificates: certificate.into_iter().collect(),
        allowed_namespaces: spec.allowed_namespaces.clone(),
    };
    for (rule_index, rule) in spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{rule_index}]");
        let id = format!("{namespace}/{name}/{rule_index}");
        let matches = lower_matches(rule, &field, report);
        let Some(action) = lower_action(
            rule,
            &matches,
            namespace,
            &field,
            ctx,
            report,
            &mut lowered.backends,
        ) else {
            continue;
        };
        let implicit = rule.matches.is_empty();
        for (index, entry) in matches.into_iter().enumerate() {
            lowered.entries.push(LoweredEntry {
                entry: MatchEntry {
                    rule: id.clone(),
                    ..entry
                },
                rule: rule_index,
                index,
                implicit,
            });
        }
        lowered.rules.push((
            id,
            Box::new(Rule {
                route: format!("{namespace}/{name}"),
                index: u32::try_from(rule_index).unwrap_or(u32::MAX),
                action,
                cors: cors.clone(),
                plugins: plugins.clone().unwrap_or_default(),
                https_redirect,
                source_ranges: source_ranges.clone(),
                client_limits: client_limits.clone(),
                response_headers: rule.response_headers.as_ref().map(|modifier| {
                    Box::new(lower_header_changes(
                        modifier,
                        &format!("{field}.responseHeaders"),
                        report,
                    ))
                }),
            }),
        ));
    }

    // A plugin not found or not ready, or a Secret of a plugin override missing.
    let unresolved_plugin = plugins.is_none();
    if report.is_invalid() || unresolved_plugin {
        // A Route must never serve without a plugin it asks for (it may be its auth).
        return None;
    }
    Some(lowered)
}

/// The plugin chain: the namespace's global plugins by order and name, then the Route's
/// own in the order listed. `None` when a listed plugin cannot be used.
fn plugin_calls(
    route: &Route,
    namespace: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
) -> Option<Vec<PluginCall>> {
    let attachments = &route.spec.plugins;
    let mut seen = BTreeMap::new();
    for (i, attachment) in attachments.iter().enumerate() {
        if let Some(first) = seen.insert(attachment.name.as_str(), i) {
            report.invalid(
                format!("spec.plugins[{i}].name"),
                format!(
                    "plugin {:?} is already listed at spec.plugins[{first}]",
                    attachment.name
                ),
            );
        }
    }
    let override_for = |name: &str| attachments.iter().position(|a| a.name == name);
    let mut complete = true;
    // Each attachment's override with its Secrets' values (copied only when it has some).
    let overrides: Vec<Option<(Cow<'_, Value>, FromSecrets)>> = attachments
        .iter()
        .enumerate()
        .map(|(i, attachment)| {
            if attachment.secret_refs.is_empty() {
                return attachment
                    .config
                    .as_ref()
                    .map(|config| (Cow::Borrowed(config), FromSecrets::new()));
            }
            let mut config = attachment
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default()));
            let field = format!("spec.plugins[{i}].secretRefs");
            let refs = &attachment.secret_refs;
            match secret_refs::resolve(&mut config, refs, namespace, &ctx.index, &field, report) {
                Some(filled) => Some((Cow::Owned(config), filled)),
                None => {
                    complete = false;
                    None
                }
            }
        })
        .collect();
    let override_of = |i: usize| overrides[i].as_ref().map(|(c, f)| (c.as_ref(), f));

    let mut calls = Vec::new();
    for (name, state) in ctx.plugins.globals(namespace) {
        let PluginState::Usable { bundle, schema } = state else {
            continue;
        };
        let (field, overrides) = match override_for(name) {
            Some(i) => (format!("spec.plugins[{i}].config"), override_of(i)),
            None => (String::new(), None),
        };
        let config = route_config(bundle, schema.as_ref(), overrides, &field, report);
        calls.push(PluginCall::new(format!("{namespace}/{name}"), &config));
    }
    for (i, attachment) in attachments.iter().enumerate() {
        let field = format!("spec.plugins[{i}]");
        match ctx.plugins.get(namespace, &attachment.name) {
            None => {
                let message = match ctx.plugins.other_class(namespace, &attachment.name) {
                    Some(class) => format!(
                        "Plugin {namespace}/{} belongs to gateway class {class:?}, not this Route's",
                        attachment.name
                    ),
                    None => format!("Plugin {namespace}/{} not found", attachment.name),
                };
                report.push(
                    format!("{field}.name"),
                    ConditionType::ResolvedRefs,
                    Reason::PluginNotFound,
                    message,
                );
                complete = false;
            }
            Some(PluginState::Unusable) => {
                report.push(
                    format!("{field}.name"),
                    ConditionType::ResolvedRefs,
                    Reason::PluginNotReady,
                    format!(
                        "Plugin {namespace}/{} has no version that compiled; see its status",
                        attachment.name
                    ),
                );
                complete = false;
            }
            Some(PluginState::Usable { bundle, .. }) if bundle.scope == PluginScope::Global => {}
            Some(PluginState::Usable { bundle, schema }) => {
                let config = route_config(
                    bundle,
                    schema.as_ref(),
                    override_of(i),
                    &format!("{field}.config"),
                    report,
                );
                calls.push(PluginCall::new(
                    format!("{namespace}/{}", attachment.name),
                    &config,
                ));
            }
        }
    }
    complete.then_some(calls)
}

fn lower_matches(rule: &RouteRule, field: &str, report: &mut ObjectReport) -> Vec<MatchEntry> {
    if rule.matches.is_empty() {
        return vec![lower_match(
            &RouteMatch::default(),
            &format!("{field}.matches"),
            report,
        )];
    }
    rule.matches
        .iter()
        .enumerate()
        .map(|(i, m)| lower_match(m, &format!("{field}.matches[{i}]"), report))
        .collect()
}

fn lower_match(m: &RouteMatch, field: &str, report: &mut ObjectReport) -> MatchEntry {
    let path = match &m.path {
        None => PathPattern::Prefix("/".to_owned()),
        Some(p) => {
            let value_field = format!("{field}.path.value");
            let value = p.value.clone();
            match p.kind {
                PathMatchType::Exact | PathMatchType::Prefix => match path::normalize(&value) {
                    Ok(normal) if normal == value => {}
                    Ok(normal) => report.invalid(
                        value_field,
                        format!("{value:?} is not in normal form; write {normal:?}"),
                    ),
                    Err(e) => report.invalid(value_field, format!("{value:?}: {e}")),
                },
                PathMatchType::Template => {
                    if let Err(e) = Template::parse(&value) {
                        report.invalid(value_field, format!("{value:?}: {e}"));
                    }
                }
                PathMatchType::Regex => check_regex(&value, &value_field, report),
            }
            match p.kind {
                PathMatchType::Exact => PathPattern::Exact(value),
                PathMatchType::Prefix => PathPattern::Prefix(value),
                PathMatchType::Template => PathPattern::Template(value),
                PathMatchType::Regex => PathPattern::Regex(value),
            }
        }
    };
    let mut methods: Vec<String> = m.methods.iter().map(|m| m.as_str().to_owned()).collect();
    methods.sort();
    methods.dedup();
    MatchEntry {
        rule: String::new(),
        path,
        methods,
        headers: lower_values(&m.headers, &format!("{field}.headers"), true, report),
        query: lower_values(&m.query, &format!("{field}.query"), false, report),
        tls: None,
    }
}

fn lower_values(
    values: &[ValueMatch],
    field: &str,
    lowercase_names: bool,
    report: &mut ObjectReport,
) -> Vec<ValueCondition> {
    let mut conditions: Vec<ValueCondition> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let field = format!("{field}[{i}]");
            match (v.kind, &v.value) {
                (ValueMatchType::Present, _) => {}
                (_, None) => report.invalid(
                    format!("{field}.value"),
                    "value is required unless type is Present",
                ),
                (ValueMatchType::Regex, Some(regex)) => {
                    check_regex(regex, &format!("{field}.value"), report)
                }
                (ValueMatchType::Exact, Some(_)) => {}
            }
            ValueCondition {
                name: if lowercase_names {
                    v.name.to_ascii_lowercase()
                } else {
                    v.name.clone()
                },
                kind: v.kind,
                value: if v.kind == ValueMatchType::Present {
                    None
                } else {
                    v.value.clone()
                },
            }
        })
        .collect();
    conditions.sort();
    conditions
}

fn check_regex(regex: &str, field: &str, report: &mut ObjectReport) {
    if let Err(e) = RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        report.invalid(field, format!("invalid regular expression: {e}"));
    }
}

#[allow(clippy::too_many_arguments)]
fn lower_action(
    rule: &RouteRule,
    matches: &[MatchEntry],
    namespace: &str,
    field: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
    backends: &mut Vec<(String, Backend)>,
) -> Option<Action> {
    let forward_only = rule.rewrite.is_some()
        || rule.timeouts.is_some()
        || rule.retries.is_some()
        || rule.load_balancer.is_some()
        || rule.max_concurrent_requests.is_some()
        || rule.outlier_detection.is_some()
        || rule.upgrades.is_some()
        || rule.max_request_body_bytes.is_some()
        || rule.request_headers.is_some();
    match (&rule.backends, &rule.redirect, &rule.direct_response) {
        (Some(refs), None, None) => {
            lower_forward(rule, refs, matches, namespace, field, ctx, report, backends)
                .map(|forward| Action::Forward(Box::new(forward)))
        }
        (None, Some(_), None) | (None, None, Some(_)) if !rule.mirrors.is_empty() => {
            report.invalid(
                format!("{field}.mirrors"),
                "mirrors apply only to rules with backends: a redirect or a fixed response sends nothing upstream to copy",
            );
            None
        }
        (None, Some(_), None) | (None, None, Some(_)) if forward_only => {
            report.invalid(
                field,
                "rewrite, timeouts, retries, loadBalancer, maxConcurrentRequests, outlierDetection, upgrades, maxRequestBodyBytes and requestHeaders apply only to rules with backends",
            );
            None
        }
        (None, Some(redirect), None) => {
            lower_redirect(redirect, matches, &format!("{field}.redirect"), report)
                .map(|redirect| Action::Redirect(Box::new(redirect)))
        }
        (None, None, Some(direct)) => Some(Action::Respond(Box::new(lower_direct(
            direct,
            &format!("{field}.directResponse"),
            report,
        )))),
        _ => {
            report.invalid(
                field,
                "set exactly one of backends, redirect and directResponse",
            );
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn lower_forward(
    rule: &RouteRule,
    refs: &[BackendRef],
    matches: &[MatchEntry],
    namespace: &str,
    field: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
    backends: &mut Vec<(String, Backend)>,
) -> Option<Forward> {
    let mut weighted = Vec::new();
    for (i, backend_ref) in refs.iter().enumerate() {
        let backend_field = format!("{field}.backends[{i}]");
        let Some(id) = use_backend(
            backend_ref,
            namespace,
            &backend_field,
            ctx,
            report,
            backends,
        ) else {
            continue;
        };
        let weight = backend_ref.weight.unwrap_or(1);
        if weight > 0 {
            weighted.push(WeightedBackend {
                backend: id,
                weight,
            });
        }
    }
    if weighted.is_empty() && !refs.is_empty() && !report.is_invalid() {
        report.invalid(
            format!("{field}.backends"),
            "at least one backend needs a positive weight",
        );
    }

    let (path_rewrite, host_rewrite) = match &rule.rewrite {
        Some(rewrite) => lower_rewrite(rewrite, matches, &format!("{field}.rewrite"), report),
        None => (None, None),
    };
    let timeouts = rule.timeouts.clone().unwrap_or_default();
    let timeouts_field = format!("{field}.timeouts");
    let timeouts = TimeoutsMs {
        request_ms: duration_ms(
            timeouts.request.as_deref(),
            DEFAULT_REQUEST_TIMEOUT_MS,
            &format!("{timeouts_field}.request"),
            report,
        ),
        idle_ms: duration_ms(
            timeouts.idle.as_deref(),
            DEFAULT_IDLE_TIMEOUT_MS,
            &format!("{timeouts_field}.idle"),
            report,
        ),
        connect_ms: duration_ms(
            timeouts.connect.as_deref(),
            DEFAULT_CONNECT_TIMEOUT_MS,
            &format!("{timeouts_field}.connect"),
            report,
        ),
        tunnel_idle_ms: duration_ms(
            timeouts.tunnel_idle.as_deref(),
            DEFAULT_TUNNEL_IDLE_MS,
            &format!("{timeouts_field}.tunnelIdle"),
            report,
        ),
    };
    let upgrades = match &rule.upgrades {
        Some(protocols) => lower_upgrades(protocols, &format!("{field}.upgrades"), report),
        None => default_upgrades(),
    };
    let retries = lower_retries(rule, &format!("{field}.retries"), report);
    let outlier_detection = rule.outlier_detection.as_ref().map(|o| Outliers {
        consecutive_failures: o
            .consecutive_failures
            .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES),
        base_ejection_ms: duration_ms(
            o.base_ejection_time.as_deref(),
            DEFAULT_BASE_EJECTION_MS,
            &format!("{field}.outlierDetection.baseEjectionTime"),
            report,
        ),
        max_ejection_percent: o
            .max_ejection_percent
            .unwrap_or(DEFAULT_MAX_EJECTION_PERCENT),
    });
    Some(Forward {
        backends: weighted,
        path_rewrite: path_rewrite.map(Box::new),
        host_rewrite,
        timeouts,
        retries,
        load_balancer: rule.load_balancer.unwrap_or_default(),
        max_concurrent_requests: rule.max_concurrent_requests,
        outlier_detection,
        upgrades,
        max_body_bytes: rule.max_request_body_bytes,
        request_headers: rule.request_headers.as_ref().map(|modifier| {
            Box::new(lower_header_changes(
                modifier,
                &format!("{field}.requestHeaders"),
                report,
            ))
        }),
        mirrors: rule
            .mirrors
            .iter()
            .enumerate()
            .filter_map(|(i, mirror)| {
                let field = format!("{field}.mirrors[{i}]");
                lower_mirror(mirror, namespace, &field, ctx, report, backends)
            })
            .collect(),
    })
}

/// Resolves a backend reference (see [`backends::resolve`]) and adds the backend to
/// those the Route uses; its id, or `None` when the reference is invalid (reported).
fn use_backend(
    backend_ref: &BackendRef,
    namespace: &str,
    field: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
    backends: &mut Vec<(String, Backend)>,
) -> Option<String> {
    let (id, backend) = backends::resolve(
        backend_ref,
        namespace,
        field,
        &ctx.index,
        ctx.options.allow_url_backends,
        report,
    )?;
    if !backends.iter().any(|(known, _)| *known == id) {
        backends.push((id.clone(), backend));
    }
    Some(id)
}

/// A mirror with its share as a fraction: `percent` out of 100, the `fraction` itself
/// (denominator 100 when unset), or every request.
fn lower_mirror(
    mirror: &RequestMirror,
    namespace: &str,
    field: &str,
    ctx: &Context<'_>,
    report: &mut ObjectReport,
    backends: &mut Vec<(String, Backend)>,
) -> Option<Mirror> {
    if mirror.backend.weight.is_some() {
        report.invalid(
            format!("{field}.backend.weight"),
            "a mirror's share of requests is its percent or fraction; weight applies to backends",
        );
    }
    let (numerator, denominator) = match (mirror.percent, mirror.fraction) {
        (None, None) => (100, 100),
        (Some(percent), None) => {
            if percent > 100 {
                report.invalid(format!("{field}.percent"), "a percent is 0 to 100");
            }
            (percent, 100)
        }
        (None, Some(fraction)) => {
            let denominator = fraction.denominator.unwrap_or(100);
            if denominator == 0 {
                report.invalid(
                    format!("{field}.fraction.denominator"),
                    "the denominator must be at least 1",
                );
            } else if fraction.numerator > denominator {
                report.invalid(
                    format!("{field}.fraction"),
                    "the numerator cannot be greater than the denominator",
                );
            }
            (fraction.numerator, denominator)
        }
        (Some(_), Some(_)) => {
            report.invalid(field, "set at most one of percent and fraction");
            return None;
        }
    };
    let backend_field = format!("{field}.backend");
    let backend = use_backend(
        &mirror.backend,
        namespace,
        &backend_field,
        ctx,
        report,
        backends,
    )?;
    Some(Mirror {
        backend,
        numerator,
        denominator,
    })
}

/// Headers a rule may not change: the message's framing, the connection's, and the host
/// routing was decided on.
const UNCHANGEABLE_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Header changes with lower-case names, each name once across set, add and remove.
fn lower_header_changes(
    modifier: &HeaderModifier,
    field: &str,
    report: &mut ObjectReport,
) -> HeaderChanges {
    let mut changes = HeaderChanges::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut check_name = |name: &str, at: String, report: &mut ObjectReport| -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if !is_token(name) {
            report.invalid(at, format!("{name:?} is not a header name"));
            return None;
        }
        if UNCHANGEABLE_HEADERS.contains(&lower.as_str()) {
            report.invalid(
                at,
                format!("{lower} cannot be changed: it frames the message or the connection, or routed it"),
            );
            return None;
        }
        if !seen.insert(lower.clone()) {
            report.invalid(
                at,
                format!("{lower} is named twice; name each header once across set, add and remove"),
            );
            return None;
        }
        Some(lower)
    };
    for (list, entries) in [("set", &modifier.set), ("add", &modifier.add)] {
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{field}.{list}[{i}]");
            if !check_header_value(&entry.value, format!("{at}.value"), report) {
                continue;
            }
            if let Some(name) = check_name(&entry.name, format!("{at}.name"), report) {
                let target = if list == "set" {
                    &mut changes.set
                } else {
                    &mut changes.add
                };
                target.insert(name, entry.value.clone());
            }
        }
    }
    for (i, name) in modifier.remove.iter().enumerate() {
        if let Some(name) = check_name(name, format!("{field}.remove[{i}]"), report) {
            changes.remove.push(name);
        }
    }
    changes.remove.sort();
    changes
}

/// Address ranges in canonical form (`10.1.2.3/8` is `10.0.0.0/8`, an address is a
/// range of one), sorted.
fn lower_source_ranges(ranges: &SourceRanges, report: &mut ObjectReport) -> SnapshotRanges {
    let mut lower = |list: &[String], field: &str| {
        let mut lowered: Vec<String> = list
            .iter()
            .enumerate()
            .filter_map(|(i, range)| match parse_range(range) {
                Some(net) => Some(net.to_string()),
                None => {
                    report.invalid(
                        format!("spec.sourceRanges.{field}[{i}]"),
                        format!("{range:?} is not an address range like 10.0.0.0/8 or 2001:db8::/32, or an address"),
                    );
                    None
                }
            })
            .collect();
        lowered.sort();
        lowered.dedup();
        lowered
    };
    SnapshotRanges {
        allow: lower(&ranges.allow, "allow"),
        deny: lower(&ranges.deny, "deny"),
    }
}

/// A CIDR or a single address, as a network in canonical form.
pub(crate) fn parse_range(range: &str) -> Option<ipnet::IpNet> {
    let range = range.trim();
    range
        .parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| range.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

/// Per-client limits, counted together by every rule of `scope`.
fn lower_client_limits(
    limits: &ClientLimits,
    scope: String,
    report: &mut ObjectReport,
) -> SnapshotClientLimits {
    if limits.requests_per_second.is_none() && limits.concurrent_requests.is_none() {
        report.invalid(
            "spec.clientLimits",
            "set requestsPerSecond, concurrentRequests or both",
        );
    }
    if limits.burst.is_some() && limits.requests_per_second.is_none() {
        report.invalid(
            "spec.clientLimits.burst",
            "burst applies only with requestsPerSecond",
        );
    }
    SnapshotClientLimits {
        scope,
        requests_per_second: limits.requests_per_second,
        burst: limits.burst.unwrap_or_else(|| {
            limits
                .requests_per_second
                .map_or(0, |rate| rate.saturating_mul(5))
        }),
        concurrent_requests: limits.concurrent_requests,
    }
}

/// The protocols a rule allows upgrades to, as the proxy compares them: lower case,
/// without a version (`websocket/13` allows `websocket`). `h2c` is refused: an h2c upgrade
/// would let a client speak HTTP/2 to the backend past routing and plugins.
fn lower_upgrades(protocols: &[String], field: &str, report: &mut ObjectReport) -> Vec<String> {
    let mut lowered = Vec::new();
    for (i, protocol) in protocols.iter().enumerate() {
        let name = upgrade_protocol(protocol);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            report.invalid(
                format!("{field}[{i}]"),
                format!(
                    "{protocol:?} is not a protocol name as `Upgrade` carries it (e.g. websocket)"
                ),
            );
        } else if name == NEVER_UPGRADED {
            report.invalid(
                format!("{field}[{i}]"),
                "h2c upgrades are never allowed: HTTP/2 clients are served directly (h2c with prior knowledge, or TLS with ALPN)",
            );
        } else if !lowered.contains(&name) {
            lowered.push(name);
        }
    }
    lowered
}

/// A byte of an HTTP token (RFC 9110 §5.6.2).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Without a `retries` block, a request that could not reach any endpoint is tried once
/// more elsewhere: it never reached an upstream, so this is safe for every method.
fn lower_retries(rule: &RouteRule, field: &str, report: &mut ObjectReport) -> Option<Retries> {
    let Some(policy) = &rule.retries else {
        return Some(Retries {
            attempts: 1,
            retry_on: vec![RetryOn::ConnectFailure],
            statuses: Vec::new(),
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
        });
    };
    let attempts = policy.attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS);
    if attempts == 0 {
        return None;
    }
    let mut on = policy
        .retry_on
        .clone()
        .unwrap_or_else(|| vec![RetryOn::ConnectFailure]);
    on.sort();
    on.dedup();
    let mut statuses = policy.statuses.clone();
    statuses.sort_unstable();
    statuses.dedup();
    let backoff = policy.backoff.clone().unwrap_or_default();
    let base = duration_ms(
        backoff.base.as_deref(),
        DEFAULT_BACKOFF_BASE_MS,
        &format!("{field}.backoff.base"),
        report,
    );
    let max = duration_ms(
        backoff.max.as_deref(),
        DEFAULT_BACKOFF_MAX_MS.max(base),
        &format!("{field}.backoff.max"),
        report,
    );
    if max < base {
        report.invalid(
            format!("{field}.backoff.max"),
            "max must not be shorter than base",
        );
    }
    Some(Retries {
        attempts,
        retry_on: on,
        statuses,
        backoff_base_ms: base,
        backoff_max_ms: max,
        budget_percent: policy
            .budget_percent
            .unwrap_or(DEFAULT_RETRY_BUDGET_PERCENT),
    })
}

/// Milliseconds of a duration string, or `default` when unset.
fn duration_ms(value: Option<&str>, default: u64, field: &str, report: &mut ObjectReport) -> u64 {
    let Some(value) = value else { return default };
    match kube::core::Duration::from_str(value) {
        Ok(d) if d.is_negative() => {
            report.invalid(field, format!("{value:?} is negative"));
            default
        }
        Ok(d) => u64::try_from(std::time::Duration::from(d).as_millis()).unwrap_or(u64::MAX),
        Err(e) => {
            report.invalid(
                field,
                format!("{value:?} is not a duration like 250ms, 10s or 1m30s: {e}"),
            );
            default
        }
    }
}

/// Prefix replacement needs to know which prefix matched, so every match of the rule
/// must be a `Prefix` or `Exact` one.
fn check_prefix_rewritable(matches: &[MatchEntry], field: &str, report: &mut ObjectReport) {
    if matches
        .iter()
        .any(|m| !matches!(m.path, PathPattern::Prefix(_) | PathPattern::Exact(_)))
    {
        report.invalid(
            field,
            "prefix replacement needs every match of the rule to be a Prefix or Exact path match",
        );
    }
}

fn check_absolute_normal(value: &str, field: &str, report: &mut ObjectReport) {
    if !path::is_normalized(value) {
        report.invalid(
            field,
            format!("{value:?} must be an absolute path in normal form"),
        );
    }
}

fn lower_rewrite(
    rewrite: &Rewrite,
    matches: &[MatchEntry],
    field: &str,
    report: &mut ObjectReport,
) -> (Option<PathRewrite>, Option<String>) {
    let strip = rewrite.strip_prefix.unwrap_or(false);
    let path_rewrite = match (
        strip,
        &rewrite.replace_prefix,
        &rewrite.replace_path,
        &rewrite.regex,
    ) {
        (false, None, None, None) => None,
        (false, None, None, Some(regex)) => {
            check_regex_rewrite(regex, &format!("{field}.regex"), report);
            Some(PathRewrite::Regex(RegexSubstitution {
                pattern: regex.pattern.clone(),
                substitution: regex.substitution.clone(),
            }))
        }
        (true, None, None, None) => {
            check_prefix_rewritable(matches, &format!("{field}.stripPrefix"), report);
            Some(PathRewrite::ReplacePrefix("/".to_owned()))
        }
        (false, Some(prefix), None, None) => {
            check_prefix_rewritable(matches, &format!("{field}.replacePrefix"), report);
            check_absolute_normal(prefix, &format!("{field}.replacePrefix"), report);
            Some(PathRewrite::ReplacePrefix(prefix.clone()))
        }
        (false, None, Some(full), None) => {
            check_absolute_normal(full, &format!("{field}.replacePath"), report);
            Some(PathRewrite::ReplaceFull(full.clone()))
        }
        _ => {
            report.invalid(
                field,
                "set at most one of stripPrefix, replacePrefix, replacePath and regex",
            );
            None
        }
    };
    (
        path_rewrite,
        rewrite.host.as_ref().map(|h| h.to_ascii_lowercase()),
    )
}

/// The pattern compiles, the substitution names only groups the pattern has and starts
/// with `/`.
fn check_regex_rewrite(rewrite: &RegexRewrite, field: &str, report: &mut ObjectReport) {
    let pattern = match RegexBuilder::new(&rewrite.pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(pattern) => pattern,
        Err(e) => {
            report.invalid(
                format!("{field}.pattern"),
                format!("invalid regular expression: {e}"),
            );
            return;
        }
    };
    let substitution_field = format!("{field}.substitution");
    if !rewrite.substitution.starts_with('/') {
        report.invalid(&substitution_field, "the new path must start with /");
    }
    for group in substitution_groups(&rewrite.substitution) {
        let known = match group.parse::<usize>() {
            Ok(index) => index < pattern.captures_len(),
            Err(_) => pattern.capture_names().flatten().any(|name| name == group),
        };
        if !known {
            report.invalid(
                &substitution_field,
                format!("${group} names no group of the pattern"),
            );
        }
    }
}

/// The groups a substitution refers to (`$1`, `${name}`), as `regex` reads them:
/// `$$` is a dollar sign, and a bare name is as long as it can be.
fn substitution_groups(substitution: &str) -> Vec<&str> {
    let mut groups = Vec::new();
    let mut rest = substitution;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            groups.push(&braced[..end]);
            rest = &braced[end..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                groups.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    groups
}

fn lower_redirect(
    redirect: &Redirect,
    matches: &[MatchEntry],
    field: &str,
    report: &mut ObjectReport,
) -> Option<RedirectAction> {
    let path = match (&redirect.path, &redirect.replace_prefix) {
        (None, None) => None,
        (Some(full), None) => {
            check_absolute_normal(full, &format!("{field}.path"), report);
            Some(PathRewrite::ReplaceFull(full.clone()))
        }
        (None, Some(prefix)) => {
            check_prefix_rewritable(matches, &format!("{field}.replacePrefix"), report);
            check_absolute_normal(prefix, &format!("{field}.replacePrefix"), report);
            Some(PathRewrite::ReplacePrefix(prefix.clone()))
        }
        (Some(_), Some(_)) => {
            report.invalid(field, "set at most one of path and replacePrefix");
            return None;
        }
    };
    Some(RedirectAction {
        scheme: redirect.scheme.map(|s| match s {
            crate::route::RedirectScheme::Http => "http".to_owned(),
            crate::route::RedirectScheme::Https => "https".to_owned(),
        }),
        host: redirect.host.as_ref().map(|h| h.to_ascii_lowercase()),
        port: redirect.port,
        path,
        status: redirect.status_code.map_or(302, u16::from),
    })
}

/// Whether `value` may be a header value (no control characters but tab); reported on
/// `field` when not.
fn check_header_value(value: &str, field: String, report: &mut ObjectReport) -> bool {
    let valid = !value.chars().any(|c| c.is_control() && c != '\t');
    if !valid {
        report.invalid(field, "header values cannot contain control characters");
    }
    valid
}

fn lower_direct(direct: &DirectResponse, field: &str, report: &mut ObjectReport) -> Respond {
    let mut headers = BTreeMap::new();
    for (name, value) in &direct.headers {
        if !is_token(name) {
            report.invalid(
                format!("{field}.headers.{name}"),
                format!("{name:?} is not a valid header name"),
            );
        }
        check_header_value(value, format!("{field}.headers.{name}"), report);
        headers.insert(name.to_ascii_lowercase(), value.clone());
    }
    let body = direct.body.clone().unwrap_or_default();
    if !body.is_empty() {
        headers
            .entry("content-type".to_owned())
            .or_insert_with(|| "text/plain; charset=utf-8".to_owned());
    }
    Respond {
        status: direct.status,
        headers: headers.into_iter().collect(),
        body,
    }
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn lower_cors(cors: &CorsPolicy, report: &mut ObjectReport) -> Cors {
    const FIELD: &str = "spec.cors";
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        if origin != "*" && !is_origin_pattern(origin) {
            report.invalid(
                format!("{FIELD}.allowOrigins[{i}]"),
                format!("{origin:?} is not *, an origin like https://app.example.com, or https://*.example.com"),
            );
        }
    }
    let allow_credentials = cors.allow_credentials.unwrap_or(false);
    if allow_credentials && cors.allow_origins.iter().any(|o| o == "*") {
        report.invalid(
            format!("{FIELD}.allowCredentials"),
            "credentials cannot be allowed for the * origin",
        );
    }
    for (i, header) in cors.allow_headers.iter().enumerate() {
        if header != "*" && !is_token(header) {
            report.invalid(
                format!("{FIELD}.allowHeaders[{i}]"),
                format!("{header:?} is not a header name or *"),
            );
        }
    }
    let methods = if cors.allow_methods.is_empty() {
        &DEFAULT_CORS_METHODS[..]
    } else {
        &cors.allow_methods[..]
    };
    Cors {
        allow_origins: cors
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        allow_methods: methods.iter().map(|m| m.as_str().to_owned()).collect(),
        allow_headers: cors
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        expose_headers: cors
            .expose_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        allow_credentials,
        max_age_seconds: cors
            .max_age
            .as_deref()
            .map(|age| duration_ms(Some(age), 0, &format!("{FIELD}.maxAge"), report) / 1000),
    }
}

/// `scheme://host[:port]`, where host may start with one `*.` label.
fn is_origin_pattern(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "http" | "https") || authority.is_empty() {
        return false;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return false;
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_groups_are_read_as_regex_reads_them() {
        assert_eq!(
            substitution_groups("/$1/${name}x/$$2/$id-$"),
            ["1", "name", "id"]
        );
    }

    #[test]
    fn ranges_are_canonical() {
        assert_eq!(parse_range("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_range("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_range("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_range("10.0.0.0/33").is_none());
        assert!(parse_range("example.com").is_none());
    }

    #[test]
    fn origin_patterns() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.com",
        ] {
            assert!(is_origin_pattern(ok), "{ok}");
        }
        for bad in [
            "app.example.com",
            "ftp://x.com",
            "https://",
            "https://a..b",
            "https://x.com:99999",
            "https://x.com/path",
        ] {
            assert!(!is_origin_pattern(bad), "{bad}");
        }
    }
}

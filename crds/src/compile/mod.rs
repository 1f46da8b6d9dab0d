//! The compiler: Routes, Plugins and the objects they refer to in, one [`Snapshot`] and a
//! report per object out. Pure and deterministic: the same inputs, in any order, give a
//! byte-identical snapshot.
//!
//! Partial config is the rule: an invalid object is reported and left out, and everything
//! else is compiled as if it were not there. A Plugin whose new spec fails keeps the
//! bundle it had in the previous snapshot.

mod backends;
pub(crate) use backends::endpoint_is_ready;
pub mod gateway_api;
pub mod ingress;
pub mod modules;
mod ownership;
mod plugins;
mod precedence;
pub mod report;
mod routes;
mod schema_check;
mod secret_refs;
pub use secret_refs::DATA_NOT_KEPT;
mod tls;
mod translated;
pub mod typescript;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use jsonschema::Validator;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::plugin::PluginScope;
use crate::snapshot::{Action, PluginBundle, SNAPSHOT_FORMAT, Snapshot};
use crate::{Plugin, Route};
pub use gateway_api::GATEWAY_CONTROLLER;
use report::{InSnapshot, ObjectKind, ObjectReport};

pub use report::{Diagnostic, ObjectRef};

/// Namespace of objects that name none (manifest files read in standalone mode).
pub const DEFAULT_NAMESPACE: &str = "default";

/// A Route as the compiler reads it: what it sorts and selects Routes by at once, the
/// whole Route only when it lowers it. So a caller may keep Routes in a compact form and
/// expand one at a time, and a build never holds every Route expanded at once (the
/// operator's stores do this: `weir_operator::stored_route`).
pub trait RouteSource: std::fmt::Debug + Sync {
    /// Its metadata: name, namespace, generation, creation time.
    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// Its `spec.className`.
    fn class_name(&self) -> Option<&str>;

    /// The whole Route, or why it cannot be read back from its compact form.
    fn route(&self) -> Result<Cow<'_, Route>, String>;
}

impl RouteSource for Route {
    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }

    fn class_name(&self) -> Option<&str> {
        self.spec.class_name.as_deref()
    }

    fn route(&self) -> Result<Cow<'_, Route>, String> {
        Ok(Cow::Borrowed(self))
    }
}

/// Everything the compiler reads.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    /// Routes.
    pub routes: Vec<&'a dyn RouteSource>,
    /// Plugins.
    pub plugins: Vec<&'a Plugin>,
    /// ConfigMaps holding plugin sources (others are ignored).
    pub config_maps: Vec<&'a ConfigMap>,
    /// Services that Routes use as backends (others are ignored).
    pub services: Vec<&'a Service>,
    /// EndpointSlices of those Services.
    pub endpoint_slices: Vec<&'a EndpointSlice>,
    /// Secrets with TLS certificates.
    pub secrets: Vec<&'a Secret>,
    /// Kubernetes Ingresses (those of other classes are ignored).
    pub ingresses: Vec<&'a Ingress>,
    /// IngressClasses: which one is weir's, and whether it is the default.
    pub ingress_classes: Vec<&'a IngressClass>,
    /// Gateway API GatewayClasses: those whose `controllerName` is weir's are served.
    pub gateway_classes: Vec<&'a crate::gateway::GatewayClass>,
    /// Gateway API Gateways (those of other classes are ignored).
    pub gateways: Vec<&'a crate::gateway::Gateway>,
    /// Gateway API HTTPRoutes (those attached to no weir Gateway are ignored).
    pub http_routes: Vec<&'a crate::gateway::HTTPRoute>,
    /// ReferenceGrants, for references across namespaces.
    pub reference_grants: Vec<&'a crate::gateway::ReferenceGrant>,
    /// Namespaces, for listeners that admit routes by namespace labels.
    pub namespaces: Vec<&'a Namespace>,
    /// The snapshot before this one: its version, and the last good bundle of each plugin.
    pub previous: Option<&'a Snapshot>,
    /// Switches.
    pub options: Options,
}

/// Compiler switches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Whether Routes may send traffic to explicit URLs. In a shared cluster, turning this
    /// off keeps every Route's traffic inside its namespace's Services.
    pub allow_url_backends: bool,
    /// The gateway class compiled for; `None` compiles every object whatever its
    /// `spec.className` (standalone mode).
    pub class: Option<GatewayClass>,
    /// Namespaces whose Routes may claim every host (`hosts: []`) or a wildcard broader
    /// than one label below a registrable domain (`*.com`, `*.co.uk`); `None` trusts
    /// every namespace (standalone mode: one tenant).
    pub trusted_namespaces: Option<BTreeSet<String>>,
    /// The ports Gateway listeners must name, those the proxies are reached on for
    /// HTTP and HTTPS; `None` takes any port (standalone mode: the proxy's own
    /// listeners).
    pub listener_ports: Option<gateway_api::ListenerPorts>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_url_backends: true,
            class: None,
            trusted_namespaces: None,
            listener_ports: None,
        }
    }
}

/// The class of objects one gateway serves, so that several gateways (a public and an
/// internal one, say) share a cluster: each compiles and reports on its own objects only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayClass {
    /// The class name objects carry in `spec.className`.
    pub name: String,
    /// Whether this gateway also serves objects that name no class.
    pub default: bool,
}

impl Options {
    /// Whether an object of `class` is this gateway's: compiled, and reported on.
    pub fn serves(&self, class: Option<&str>) -> bool {
        match (&self.class, class) {
            (None, _) => true,
            (Some(own), Some(class)) => own.name == class,
            (Some(own), None) => own.default,
        }
    }

    /// Whether this gateway's Routes may run a Plugin of `class`: its own, or one that
    /// names no class (shared by every gateway).
    fn may_use_plugin(&self, class: Option<&str>) -> bool {
        class.is_none() || self.serves(class)
    }
}

/// What the compiler produced.
#[derive(Clone, Debug)]
pub struct Compilation {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// One report per Route, Plugin, served Ingress and weir's Gateway API objects,
    /// sorted by kind, namespace and name.
    pub reports: Vec<ObjectReport>,
    /// What Gateway API status needs besides the reports.
    pub gateway_api: gateway_api::GatewayApiFacts,
}

impl Compilation {
    /// The report on one object.
    pub fn report(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<&ObjectReport> {
        self.reports.iter().find(|r| {
            r.object.kind == kind && r.object.namespace == namespace && r.object.name == name
        })
    }
}

/// Lookups of the non-weir inputs by namespace and name.
pub(crate) struct Index<'a> {
    config_maps: BTreeMap<(&'a str, &'a str), &'a ConfigMap>,
    services: BTreeMap<(&'a str, &'a str), &'a Service>,
    /// By namespace and Service name.
    endpoint_slices: BTreeMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    secrets: BTreeMap<(&'a str, &'a str), &'a Secret>,
}

/// The namespace of an object; objects without one (standalone files) are in `default`.
pub(crate) fn namespace_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &str {
    meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

pub(crate) fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn by_name<'a, K: kube::Resource>(objects: &[&'a K]) -> BTreeMap<(&'a str, &'a str), &'a K> {
    by_name_with(objects, |object| object.meta())
}

/// `objects` by namespace and name (the first of each), `meta` giving their metadata.
fn by_name_with<'a, K: ?Sized>(
    objects: &[&'a K],
    meta: impl Fn(&'a K) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<(&'a str, &'a str), &'a K> {
    let mut map = BTreeMap::new();
    for object in objects {
        let meta = meta(object);
        map.entry((namespace_of(meta), name_of(meta)))
            .or_insert(*object);
    }
    map
}

impl<'a> Index<'a> {
    fn new(inputs: &Inputs<'a>) -> Self {
        let mut endpoint_slices: BTreeMap<_, Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in &inputs.endpoint_slices {
            if let Some(service) = backends::slice_service_name(slice) {
                endpoint_slices
                    .entry((namespace_of(&slice.metadata), service))
                    .or_default()
                    .push(*slice);
            }
        }
        Self {
            config_maps: by_name(&inputs.config_maps),
            services: by_name(&inputs.services),
            endpoint_slices,
            secrets: by_name(&inputs.secrets),
        }
    }
}

/// A Plugin as Routes see it.
pub(crate) enum PluginState {
    /// A bundle runs (the current spec's or the last good one), with its config schema.
    Usable {
        bundle: Box<PluginBundle>,
        schema: Option<Validator>,
    },
    /// The Plugin exists but nothing of it can run.
    Unusable,
}

/// Plugins by namespace and name.
#[derive(Default)]
pub(crate) struct PluginTable {
    by_name: BTreeMap<(String, String), PluginState>,
    /// Plugins of another gateway class, with that class: not usable here.
    other_class: BTreeMap<(String, String), String>,
}

impl PluginTable {
    fn get(&self, namespace: &str, name: &str) -> Option<&PluginState> {
        self.by_name.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// The class of a Plugin that exists but belongs to another gateway.
    fn other_class(&self, namespace: &str, name: &str) -> Option<&str> {
        self.other_class
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(String::as_str)
    }

    /// The usable global plugins of a namespace, by order, then name.
    fn globals(&self, namespace: &str) -> Vec<(&str, &PluginState)> {
        let mut globals: Vec<(i32, &str, &PluginState)> = self
            .by_name
            .iter()
            .filter_map(|((ns, name), state)| match state {
                PluginState::Usable { bundle, .. }
                    if ns == namespace && bundle.scope == PluginScope::Global =>
                {
                    Some((bundle.order, name.as_str(), state))
                }
                _ => None,
            })
            .collect();
        globals.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        globals
            .into_iter()
            .map(|(_, name, state)| (name, state))
            .collect()
    }
}

/// What lowering a Route needs to look at.
pub(crate) struct Context<'a> {
    index: Index<'a>,
    plugins: PluginTable,
    options: Options,
}

/// A Route to compile: one of the inputs, or one another object became.
struct Source<'r> {
    namespace: &'r str,
    name: &'r str,
    meta: &'r k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    input: SourceInput<'r>,
}

/// Where a [`Source`]'s Route comes from.
#[derive(Clone, Copy)]
enum SourceInput<'r> {
    /// A Route of the inputs, read whole when it is lowered.
    Listed(&'r dyn RouteSource),
    /// A Route an Ingress or HTTPRoute became.
    Translated(&'r translated::Translated),
}

impl<'r> Source<'r> {
    fn translated(&self) -> Option<&'r translated::Translated> {
        match self.input {
            SourceInput::Listed(_) => None,
            SourceInput::Translated(translated) => Some(translated),
        }
    }

    /// The whole Route, or why it cannot be read.
    fn route(&self) -> Result<Cow<'r, Route>, String> {
        match self.input {
            SourceInput::Listed(route) => route.route(),
            SourceInput::Translated(translated) => Ok(Cow::Borrowed(&translated.route)),
        }
    }
}

/// Compiles the inputs into a snapshot and a report per Route, Plugin and served Ingress.
pub fn compile(inputs: &Inputs<'_>) -> Compilation {
    let index = Index::new(inputs);
    let mut reports = Vec::new();

    let options = &inputs.options;
    let mut plugin_table = PluginTable::default();
    for ((namespace, name), plugin) in by_name(&inputs.plugins) {
        let class = plugin.spec.class_name.as_deref();
        if !options.may_use_plugin(class) {
            plugin_table.other_class.insert(
                (namespace.to_owned(), name.to_owned()),
                class.unwrap_or_default().to_owned(),
            );
            continue;
        }
        let mut report = ObjectReport::new(
            ObjectKind::Plugin,
            namespace,
            name,
            plugin.metadata.generation,
        );
        let state = match plugins::compile(plugin, namespace, name, &index, &mut report) {
            Some(bundle) => {
                report.in_snapshot = InSnapshot::Whole;
                PluginState::Usable {
                    schema: plugins::bundle_schema(&bundle),
                    bundle: Box::new(bundle),
                }
            }
            None => match inputs
                .previous
                .and_then(|p| p.plugins.get(&format!("{namespace}/{name}")))
            {
                Some(last_good) => {
                    report.in_snapshot = InSnapshot::LastGood {
                        generation: last_good.generation,
                        code_hash: last_good.code_hash.clone(),
                    };
                    PluginState::Usable {
                        schema: plugins::bundle_schema(last_good),
                        bundle: Box::new(last_good.clone()),
                    }
                }
                None => PluginState::Unusable,
            },
        };
        plugin_table
            .by_name
            .insert((namespace.to_owned(), name.to_owned()), state);
        // A shared (class-less) Plugin is reported on by the default gateway only.
        if options.serves(class) {
            reports.push(report);
        }
    }

    let ctx = Context {
        index,
        plugins: plugin_table,
        options: inputs.options.clone(),
    };

    // Ingresses weir's class serves, and HTTPRoutes attached to its Gateways, as Routes.
    let served_ingresses: Vec<&Ingress> = by_name(&inputs.ingresses)
        .into_values()
        .filter(|ingress| ingress::serves(ingress, &inputs.ingress_classes, &ctx.options))
        .collect();
    let mut translation = ingress::translate(&served_ingresses, &ctx.index);
    let (gateway_translation, gateway_api) = gateway_api::translate(inputs, &ctx);
    translation.routes.extend(gateway_translation.routes);
    translation.reports.extend(gateway_translation.reports);

    // Oldest first: an older object wins conflicts. Objects read from files have no
    // creation time and come after, by namespace and name.
    let mut routes: Vec<Source<'_>> = by_name_with(&inputs.routes, |route| route.metadata())
        .into_iter()
        .filter(|(_, route)| ctx.options.serves(route.class_name()))
        .map(|((namespace, name), route)| Source {
            namespace,
            name,
            meta: route.metadata(),
            input: SourceInput::Listed(route),
        })
        .chain(translation.routes.iter().map(|translated| Source {
            namespace: namespace_of(&translated.route.metadata),
            name: name_of(&translated.route.metadata),
            meta: &translated.route.metadata,
            input: SourceInput::Translated(translated),
        }))
        .collect();
    routes.sort_by_key(|source| {
        let created = source.meta.creation_timestamp.as_ref().map(|t| t.0);
        (created.is_none(), created, source.namespace, source.name)
    });
    let mut route_reports = Vec::with_capacity(routes.len());
    let mut lowered = Vec::with_capacity(routes.len());
    // Backends by id, the first Route's copy of each: taken from each Route as it is
    // lowered, so the Routes using one Service do not each hold a copy until the end.
    let mut backends = BTreeMap::new();
    for source in &routes {
        let (namespace, name) = (source.namespace, source.name);
        let translated = source.translated();
        let kind = translated.map_or(ObjectKind::Route, |t| t.source.kind);
        let report_name = translated.map_or(name, |t| t.source.name.as_str());
        let mut report = ObjectReport::new(kind, namespace, report_name, source.meta.generation);
        let origin = translated.map(|t| t.source.to_string());
        // Read whole here and dropped once lowered: one expanded Route at a time.
        let lowered_route = match source.route() {
            Ok(route) => routes::lower(&route, namespace, name, origin, &ctx, &mut report),
            Err(error) => {
                report.invalid("spec", format!("the stored Route cannot be read: {error}"));
                None
            }
        };
        if let Some(mut route) = lowered_route {
            if let Some(translated) = translated {
                route.tenant.clone_from(&translated.tenant);
                route
                    .certificates
                    .extend(translated.certificates.iter().cloned());
                for lowered in &mut route.entries {
                    lowered.entry.tls = translated.tls;
                }
            }
            // Taken, not drained: a drained vector keeps its buffer until the end.
            for (id, backend) in std::mem::take(&mut route.backends) {
                backends.entry(id).or_insert(backend);
            }
            // Every Route's rules are held until the snapshot is assembled, its entries
            // until they are placed under their hosts.
            route.rules.shrink_to_fit();
            route.entries.shrink_to_fit();
            lowered.push(route);
            route_reports.push((report, true));
        } else {
            route_reports.push((report, false));
        }
    }
    let mut lowered_reports: Vec<&mut ObjectReport> = route_reports
        .iter_mut()
        .filter(|(_, kept)| *kept)
        .map(|(r, _)| r)
        .collect();
    let hosts_claimed: Vec<usize> = lowered.iter().map(|r| r.hosts.len()).collect();
    ownership::enforce(
        &mut lowered,
        &mut lowered_reports,
        ctx.options.trusted_namespaces.as_ref(),
    );
    let virtual_hosts = precedence::virtual_hosts(&mut lowered, &mut lowered_reports);
    // What is left of the entries (a Route's that lost a conflict) goes too.
    for route in &mut lowered {
        route.entries = Vec::new();
    }
    for ((route, claimed), report) in lowered.iter().zip(hosts_claimed).zip(&mut lowered_reports) {
        // Hosts it may not serve are left out: the rest of it is in.
        if route.hosts.len() < claimed && report.in_snapshot == InSnapshot::Whole {
            report.in_snapshot = InSnapshot::Partly;
        }
    }
    let certificates = precedence::certificates(&lowered, &mut lowered_reports);
    let mut translated_parts: BTreeMap<ObjectRef, Vec<InSnapshot>> = BTreeMap::new();
    for (source, (mut report, _)) in routes.iter().zip(route_reports) {
        let Some(translated) = source.translated() else {
            reports.push(report);
            continue;
        };
        let Some(source_report) = translation.reports.get_mut(&translated.source) else {
            continue;
        };
        for mut diagnostic in report.diagnostics.drain(..) {
            diagnostic.field = translated.fields.source_field(&diagnostic.field);
            if !source_report.diagnostics.contains(&diagnostic) {
                source_report.diagnostics.push(diagnostic);
            }
        }
        translated_parts
            .entry(translated.source.clone())
            .or_default()
            .push(report.in_snapshot);
    }
    for (key, parts) in translated_parts {
        if let Some(report) = translation.reports.get_mut(&key) {
            report.in_snapshot = if parts.iter().all(|p| *p == InSnapshot::Whole) {
                InSnapshot::Whole
            } else if parts.iter().all(|p| *p == InSnapshot::No) {
                InSnapshot::No
            } else {
                InSnapshot::Partly
            };
        }
    }
    // A Gateway is in the snapshot when one of its listeners can serve.
    for (key, listeners) in &gateway_api.listeners {
        if let Some(report) = translation.reports.get_mut(key)
            && listeners.iter().any(|l| l.served)
        {
            report.in_snapshot = InSnapshot::Whole;
        }
    }
    reports.extend(translation.reports.into_values());

    let used_rules: BTreeSet<&str> = virtual_hosts
        .iter()
        .flat_map(|h| &h.entries)
        .map(|e| e.rule.as_str())
        .collect();
    let mut rules = Vec::with_capacity(used_rules.len());
    for route in lowered {
        for (id, rule) in route.rules {
            if used_rules.contains(id.as_str()) {
                rules.push((id, rule));
            }
        }
    }
    // Built at once from the whole list, the map's nodes are full; inserted one at a
    // time they would be about half empty (the snapshot's largest map).
    let rules: BTreeMap<String, Box<crate::snapshot::Rule>> = rules.into_iter().collect();
    let used_backends: BTreeSet<&str> = rules
        .values()
        .filter_map(|rule| match &rule.action {
            Action::Forward(forward) => {
                let backends = forward.backends.iter().map(|b| b.backend.as_str());
                Some(backends.chain(forward.mirrors.iter().map(|m| m.backend.as_str())))
            }
            _ => None,
        })
        .flatten()
        .collect();
    backends.retain(|id, _| used_backends.contains(id.as_str()));

    let plugins = ctx
        .plugins
        .by_name
        .into_iter()
        .filter_map(|((namespace, name), state)| match state {
            PluginState::Usable { bundle, .. } => Some((format!("{namespace}/{name}"), *bundle)),
            PluginState::Unusable => None,
        })
        .collect();

    let mut snapshot = Snapshot {
        format: SNAPSHOT_FORMAT,
        version: 0,
        hash: String::new(),
        virtual_hosts,
        rules,
        backends,
        plugins,
        certificates,
    };
    snapshot.hash = snapshot.content_hash();
    snapshot.version = match inputs.previous {
        Some(previous) if previous.hash == snapshot.hash => previous.version,
        Some(previous) => previous.version + 1,
        None => 1,
    };
    reports.sort_by(|a, b| a.object.cmp(&b.object));
    Compilation {
        snapshot,
        reports,
        gateway_api,
    }
}

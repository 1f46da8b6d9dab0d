//! Manifests: the multi-document YAML that `kubectl apply` takes, parsed into the objects
//! the compiler reads. Standalone mode reads its directory with this, so a file means the
//! same on a laptop as in a cluster.
//!
//! Like `kubectl apply` with strict field validation, an unknown field in a Route, a
//! Plugin, an Ingress or a Gateway API object is an error, not silently dropped: a typo
//! must not turn off a rule.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::compile::{Inputs, Options, RouteSource};
use crate::gateway::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::{Plugin, Route};

/// An object weir reads.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// A `weir.dev/v1alpha1` Route.
    Route(Route),
    /// A `weir.dev/v1alpha1` Plugin.
    Plugin(Plugin),
    /// A `v1` ConfigMap.
    ConfigMap(ConfigMap),
    /// A `v1` Secret.
    Secret(Secret),
    /// A `v1` Service.
    Service(Service),
    /// A `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A `networking.k8s.io/v1` Ingress.
    Ingress(Ingress),
    /// A `networking.k8s.io/v1` IngressClass.
    IngressClass(IngressClass),
    /// A `gateway.networking.k8s.io/v1` GatewayClass.
    GatewayClass(GatewayClass),
    /// A `gateway.networking.k8s.io/v1` Gateway.
    Gateway(Gateway),
    /// A `gateway.networking.k8s.io/v1` HTTPRoute.
    HTTPRoute(HTTPRoute),
    /// A `gateway.networking.k8s.io/v1beta1` ReferenceGrant.
    ReferenceGrant(ReferenceGrant),
    /// A `v1` Namespace: its labels, for Gateway listeners that admit routes by them.
    Namespace(Namespace),
}

/// A document that could not be read, with where and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("document {document}{object}: {field}{message}")]
pub struct ManifestError {
    /// 1-based index of the document in its file.
    pub document: usize,
    /// ` (Kind namespace/name)` when known, else empty.
    pub object: String,
    /// `field: ` when known, else empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What one document holds.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Document {
    /// An object weir reads.
    Object(Object),
    /// An object of a kind weir does not read (a Deployment, say), or an empty document.
    Ignored {
        /// `apiVersion/kind`, empty for an empty document.
        kind: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct HeaderMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Parses every document of a YAML text. A YAML syntax error ends the text: what
/// follows it cannot be split into documents reliably.
pub fn parse(text: &str) -> Vec<Result<Document, ManifestError>> {
    let mut documents = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match serde_yaml_ng::Value::deserialize(document) {
            Ok(value) => documents.push(parse_document(i + 1, value)),
            Err(e) => {
                documents.push(Err(ManifestError {
                    document: i + 1,
                    object: String::new(),
                    field: String::new(),
                    message: format!("not valid YAML: {e}"),
                }));
                break;
            }
        }
    }
    documents
}

fn parse_document(document: usize, value: serde_yaml_ng::Value) -> Result<Document, ManifestError> {
    let error = |object: String, field: String, message: String| ManifestError {
        document,
        object,
        field,
        message,
    };
    if value.is_null() {
        return Ok(Document::Ignored {
            kind: String::new(),
        });
    }
    let header: Header = serde_yaml_ng::from_value(value.clone()).map_err(|e| {
        error(
            String::new(),
            String::new(),
            format!("not a Kubernetes object: {e}"),
        )
    })?;
    let object = format!(
        " ({} {}/{})",
        header.kind,
        header
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(crate::compile::DEFAULT_NAMESPACE),
        header.metadata.name
    );
    if header.metadata.name.is_empty() && !header.kind.is_empty() {
        return Err(error(
            object,
            "metadata.name: ".into(),
            "is required".into(),
        ));
    }
    let parsed = match (header.api_version.as_str(), header.kind.as_str()) {
        ("weir.dev/v1alpha1", "Route") => typed_object(value, true).map(Object::Route),
        ("weir.dev/v1alpha1", "Plugin") => typed_object(value, true).map(Object::Plugin),
        ("v1", "ConfigMap") => typed_object(value, false).map(Object::ConfigMap),
        ("v1", "Secret") => typed_object(value, false).map(Object::Secret),
        ("v1", "Service") => typed_object(value, false).map(Object::Service),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            typed_object(value, false).map(Object::EndpointSlice)
        }
        ("networking.k8s.io/v1", "Ingress") => typed_object(value, true).map(Object::Ingress),
        ("networking.k8s.io/v1", "IngressClass") => {
            typed_object(value, false).map(Object::IngressClass)
        }
        ("gateway.networking.k8s.io/v1", "GatewayClass") => {
            typed_object(value, true).map(Object::GatewayClass)
        }
        ("gateway.networking.k8s.io/v1", "Gateway") => {
            typed_object(value, true).map(Object::Gateway)
        }
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
            typed_object(value, true).map(Object::HTTPRoute)
        }
        ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant") => {
            typed_object(value, true).map(Object::ReferenceGrant)
        }
        ("v1", "Namespace") => typed_object(value, false).map(Object::Namespace),
        (api_version, kind) => {
            return Ok(Document::Ignored {
                kind: format!("{api_version}/{kind}"),
            });
        }
    };
    parsed
        .map(Document::Object)
        .map_err(|(field, message)| error(object, field, message))
}

/// Deserializes `value` as `T`, naming the field that fails; with `strict`, a field `T`
/// does not know is an error too.
fn typed_object<T: DeserializeOwned>(
    value: serde_yaml_ng::Value,
    strict: bool,
) -> Result<T, (String, String)> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(tracked, |path| unknown.push(field_path(&path.to_string())))
    };
    // The derived root types read `apiVersion` and `kind` without keeping them.
    unknown.retain(|field| field != "apiVersion" && field != "kind");
    match result {
        Err(e) => Err((format!("{}: ", track.path()), e.to_string())),
        Ok(_) if strict && !unknown.is_empty() => {
            Err((format!("{}: ", unknown[0]), "unknown field".to_owned()))
        }
        Ok(object) => Ok(object),
    }
}

/// `spec.rules.0.x` as `spec.rules[0].x`, and `spec.tls.?.x` as `spec.tls.x`: the `?` is
/// how `serde_ignored` writes going into an `Option`, which a manifest does not show.
fn field_path(dotted: &str) -> String {
    let mut out = String::with_capacity(dotted.len());
    for segment in dotted.split('.').filter(|segment| *segment != "?") {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// The objects of a set of manifests, ready to compile.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Routes.
    pub routes: Vec<Route>,
    /// Plugins.
    pub plugins: Vec<Plugin>,
    /// ConfigMaps.
    pub config_maps: Vec<ConfigMap>,
    /// Secrets.
    pub secrets: Vec<Secret>,
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Ingresses.
    pub ingresses: Vec<Ingress>,
    /// IngressClasses.
    pub ingress_classes: Vec<IngressClass>,
    /// GatewayClasses.
    pub gateway_classes: Vec<GatewayClass>,
    /// Gateways.
    pub gateways: Vec<Gateway>,
    /// HTTPRoutes.
    pub http_routes: Vec<HTTPRoute>,
    /// ReferenceGrants.
    pub reference_grants: Vec<ReferenceGrant>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
}

impl Manifests {
    /// Adds an object.
    pub fn add(&mut self, object: Object) {
        match object {
            Object::Route(o) => self.routes.push(o),
            Object::Plugin(o) => self.plugins.push(o),
            Object::ConfigMap(o) => self.config_maps.push(o),
            Object::Secret(o) => self.secrets.push(o),
            Object::Service(o) => self.services.push(o),
            Object::EndpointSlice(o) => self.endpoint_slices.push(o),
            Object::Ingress(o) => self.ingresses.push(o),
            Object::IngressClass(o) => self.ingress_classes.push(o),
            Object::GatewayClass(o) => self.gateway_classes.push(o),
            Object::Gateway(o) => self.gateways.push(o),
            Object::HTTPRoute(o) => self.http_routes.push(o),
            Object::ReferenceGrant(o) => self.reference_grants.push(o),
            Object::Namespace(o) => self.namespaces.push(o),
        }
    }

    /// Compiler inputs borrowing these objects.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            routes: self.routes.iter().map(|r| r as &dyn RouteSource).collect(),
            plugins: self.plugins.iter().collect(),
            config_maps: self.config_maps.iter().collect(),
            services: self.services.iter().collect(),
            endpoint_slices: self.endpoint_slices.iter().collect(),
            secrets: self.secrets.iter().collect(),
            ingresses: self.ingresses.iter().collect(),
            ingress_classes: self.ingress_classes.iter().collect(),
            gateway_classes: self.gateway_classes.iter().collect(),
            gateways: self.gateways.iter().collect(),
            http_routes: self.http_routes.iter().collect(),
            reference_grants: self.reference_grants.iter().collect(),
            namespaces: self.namespaces.iter().collect(),
            previous: None,
            options: Options::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Vec<Result<Document, ManifestError>> {
        parse(text)
    }

    #[test]
    fn reads_every_document_and_kind() {
        let docs = objects(
            "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  rules: [{directResponse: {status: 200}}]\n\
             ---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: x}\ndata: {a: b}\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n\
             ---\n",
        );
        assert_eq!(docs.len(), 4);
        assert!(
            matches!(&docs[0], Ok(Document::Object(Object::Route(r))) if r.spec.rules.len() == 1)
        );
        assert!(matches!(
            &docs[1],
            Ok(Document::Object(Object::ConfigMap(_)))
        ));
        assert!(matches!(&docs[2], Ok(Document::Ignored { kind }) if kind == "apps/v1/Deployment"));
        assert!(matches!(&docs[3], Ok(Document::Ignored { kind }) if kind.is_empty()));
    }

    #[test]
    fn a_bad_field_is_named_with_its_object() {
        let docs = objects(
            "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: r, namespace: shop}\nspec:\n  rules:\n  - matches: [{path: {type: Glob, value: /x}}]\n",
        );
        let error = docs[0].as_ref().unwrap_err();
        assert_eq!(error.document, 1);
        assert_eq!(error.object, " (Route shop/r)");
        assert_eq!(error.field, "spec.rules[0].matches[0].path.type: ");
        assert!(error.message.contains("Glob"), "{error}");
    }

    #[test]
    fn unknown_fields_of_weir_kinds_are_errors() {
        let docs = objects(
            "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  rules: [{backend: [{url: 'http://x'}]}]\n",
        );
        let error = docs[0].as_ref().unwrap_err();
        assert_eq!(error.field, "spec.rules[0].backend: ", "{error}");
        assert_eq!(error.message, "unknown field");

        let docs = objects(
            "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: r}\nspec:\n  tls: {secretName: s, secret: t}\n  rules: [{directResponse: {status: 200}}]\n",
        );
        let error = docs[0].as_ref().unwrap_err();
        assert_eq!(error.field, "spec.tls.secret: ", "{error}");
    }

    #[test]
    fn broken_yaml_and_missing_names_are_errors() {
        let docs = objects("a: [1, 2\n---\napiVersion: v1\n");
        assert_eq!(docs.len(), 1);
        assert!(
            docs[0]
                .as_ref()
                .unwrap_err()
                .message
                .starts_with("not valid YAML")
        );
        let docs = objects("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n");
        assert_eq!(docs[0].as_ref().unwrap_err().field, "metadata.name: ");
    }
}

//! Routes that other kinds become. An Ingress and a Gateway API HTTPRoute are each
//! translated into weir Routes (which no user can name, their names holding a `:`),
//! compiled with the real ones in one host space; what the compiler finds about them is
//! told to the object they came from, with that object's own field paths.

use std::collections::BTreeMap;

use super::gateway_api::RuleFields;
use super::ingress::FieldMap;
use super::report::{ObjectRef, ObjectReport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Route;
use crate::route::RouteSpec;
use crate::snapshot::Certificate;

/// A Route another object became.
pub(crate) struct Translated {
    /// The Route.
    pub route: Route,
    /// The object it came from.
    pub source: ObjectRef,
    /// The way back from the Route's field paths to the source's.
    pub fields: SourceFields,
    /// The namespace whose claim its hosts are: the source's own, or for an HTTPRoute,
    /// its Gateway's (the Gateway's listeners let the route in).
    pub tenant: String,
    /// Certificates for its hosts given outside the Route (by Gateway listeners).
    pub certificates: Vec<Certificate>,
    /// Whether it serves only requests over TLS (`true`) or plain HTTP (`false`), as the
    /// Gateway listeners it came through do; `None`: both.
    pub tls: Option<bool>,
}

/// The source's field paths for a translated Route's, by kind of source.
pub(crate) enum SourceFields {
    /// An Ingress's.
    Ingress(FieldMap),
    /// One rule of an HTTPRoute's.
    HttpRoute(RuleFields),
}

impl SourceFields {
    /// The source's field for a field of the translated Route.
    pub(crate) fn source_field(&self, field: &str) -> String {
        match self {
            Self::Ingress(map) => map.ingress_field(field),
            Self::HttpRoute(map) => map.http_route_field(field),
        }
    }
}

/// Translated Routes, and one report per source object (what was found while
/// translating; the compiler adds what it finds in the Routes).
#[derive(Default)]
pub(crate) struct Translation {
    /// The Routes, in the order of their sources.
    pub routes: Vec<Translated>,
    /// One report per source object.
    pub reports: BTreeMap<ObjectRef, ObjectReport>,
}

/// The Route named `name` in `namespace` that an object (its metadata `source`) becomes:
/// as old as the object, so conflicts see its age, and of its generation.
pub(crate) fn route_of(source: &ObjectMeta, namespace: &str, name: &str, spec: RouteSpec) -> Route {
    let mut route = Route::new(name, spec);
    route.metadata.namespace = Some(namespace.to_owned());
    route.metadata.creation_timestamp = source.creation_timestamp.clone();
    route.metadata.generation = source.generation;
    route
}

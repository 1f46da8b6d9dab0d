//! Routes as the operator's store keeps them between builds: the metadata, the few fields
//! read without the spec (the gateway class, the Secrets read), the status the status
//! decisions compare with, and the spec as its JSON text.
//!
//! A `Route` deserialized into its Rust types takes about six times the memory of its
//! JSON (each rule is a struct of optional sub-structs, each plugin config override a
//! `serde_json` map), and the stores hold every Route of the cluster all the time. The
//! compiler reads a stored Route through [`RouteSource`]: it expands one Route at a time
//! while lowering it and drops it after, so a build never holds every Route expanded
//! either (docs/performance.md, "Against a real API server").

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::api::ObjectMeta;
use weir_crds::compile::RouteSource;
use weir_crds::{Route, RouteSpec, RouteStatus};

/// A Route as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRoute {
    /// Its metadata (the watch has trimmed it as every store's).
    pub metadata: ObjectMeta,
    /// `spec.className`.
    class_name: Option<String>,
    /// The Secrets of its namespace it reads: its certificate's, and those of its plugin
    /// overrides' `secretRefs`.
    secrets_read: Vec<String>,
    /// `spec` as JSON text, or why it could not be written as JSON.
    spec: Result<Box<str>, String>,
    /// Its status.
    pub status: Option<RouteStatus>,
}

impl From<Route> for StoredRoute {
    fn from(route: Route) -> Self {
        Self {
            class_name: route.spec.class_name.clone(),
            secrets_read: route.secret_names().map(str::to_owned).collect(),
            spec: serde_json::to_string(&route.spec)
                .map(String::into_boxed_str)
                .map_err(|e| e.to_string()),
            metadata: route.metadata,
            status: route.status,
        }
    }
}

impl StoredRoute {
    /// The name of each Secret of its namespace it reads, as [`Route::secret_names`].
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secrets_read.iter().map(String::as_str)
    }
}

impl RouteSource for StoredRoute {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn class_name(&self) -> Option<&str> {
        self.class_name.as_deref()
    }

    fn route(&self) -> Result<Cow<'_, Route>, String> {
        let json = self.spec.as_deref().map_err(Clone::clone)?;
        let spec: RouteSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Ok(Cow::Owned(Route {
            metadata: self.metadata.clone(),
            spec,
            status: None,
        }))
    }
}

impl Resource for StoredRoute {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Route::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Route::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Route::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Route::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::condition::Conditions;

    fn route() -> Route {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": "api", "namespace": "shop", "generation": 3, "uid": "u-1"},
            "spec": {
                "className": "public",
                "hosts": ["api.example.com"],
                "tls": {"secretName": "api-cert"},
                "plugins": [{"name": "auth", "config": {"tag": "a"},
                             "secretRefs": [{"path": "/key", "secretName": "auth-key", "key": "k"}]}],
                "rules": [{"backends": [{"name": "api", "port": 80}]}]
            },
            "status": {"observedGeneration": 3, "conditions": [{
                "type": "Accepted", "status": "True", "reason": "Accepted", "message": "accepted",
                "lastTransitionTime": "2026-12-06T10:00:00Z"
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_stored_route_reads_back_as_the_route_without_its_status() {
        let original = route();
        let stored = StoredRoute::from(original.clone());
        assert_eq!(stored.class_name(), Some("public"));
        assert_eq!(stored.metadata().generation, Some(3));
        let read = stored.route().unwrap().into_owned();
        assert_eq!(read.spec, original.spec);
        assert_eq!(read.metadata, original.metadata);
        assert_eq!(read.status, None);
        let conditions: &Conditions = &stored.status.as_ref().unwrap().conditions;
        assert_eq!(conditions[0].reason, "Accepted");
    }

    #[test]
    fn a_stored_route_names_the_secrets_it_reads() {
        let stored = StoredRoute::from(route());
        let read: Vec<_> = stored.secret_names().collect();
        assert_eq!(read, ["api-cert", "auth-key"]);
        assert_eq!(StoredRoute::kind(&()), "Route");
        assert_eq!(StoredRoute::group(&()), "weir.dev");
    }
}

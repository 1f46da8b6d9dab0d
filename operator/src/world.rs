//! The operator's view of the cluster: one reflector store per kind and watched
//! namespace, read together as a [`World`] when a snapshot is built.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store, store::Writer};
use weir_crds::gateway::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use weir_crds::{Inputs, Plugin, RouteSource, Snapshot};

use crate::stored_route::StoredRoute;

/// Readers of every store the operator keeps.
#[derive(Clone, Default)]
pub struct Stores {
    /// Routes, per watched namespace.
    pub routes: Vec<Store<StoredRoute>>,
    /// Plugins.
    pub plugins: Vec<Store<Plugin>>,
    /// ConfigMaps (plugin sources).
    pub config_maps: Vec<Store<ConfigMap>>,
    /// Services (backends).
    pub services: Vec<Store<Service>>,
    /// EndpointSlices (backends).
    pub endpoint_slices: Vec<Store<EndpointSlice>>,
    /// TLS Secrets.
    pub secrets: Vec<Store<Secret>>,
    /// Ingresses, per watched namespace.
    pub ingresses: Vec<Store<Ingress>>,
    /// IngressClasses (cluster-wide: one store).
    pub ingress_classes: Vec<Store<IngressClass>>,
    /// EndpointSlices of the proxy admin Service.
    pub proxy_slices: Vec<Store<EndpointSlice>>,
    /// The Service whose addresses Ingresses publish (`--publish-service`).
    pub publish_service: Vec<Store<Service>>,
    /// Gateway API GatewayClasses (cluster-wide: one store).
    pub gateway_classes: Vec<Store<GatewayClass>>,
    /// Gateway API Gateways, per watched namespace.
    pub gateways: Vec<Store<Gateway>>,
    /// Gateway API HTTPRoutes, per watched namespace.
    pub http_routes: Vec<Store<HTTPRoute>>,
    /// Gateway API ReferenceGrants, per watched namespace.
    pub reference_grants: Vec<Store<ReferenceGrant>>,
    /// Namespaces, their names and labels only (cluster-wide: one store).
    pub namespaces: Vec<Store<Namespace>>,
}

/// Writers of every store, fed by the watchers (or, in tests, by hand).
pub struct Writers {
    /// Routes, per watched namespace.
    pub routes: Vec<Writer<StoredRoute>>,
    /// Plugins.
    pub plugins: Vec<Writer<Plugin>>,
    /// ConfigMaps.
    pub config_maps: Vec<Writer<ConfigMap>>,
    /// Services.
    pub services: Vec<Writer<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Writer<EndpointSlice>>,
    /// TLS Secrets.
    pub secrets: Vec<Writer<Secret>>,
    /// Ingresses, per watched namespace.
    pub ingresses: Vec<Writer<Ingress>>,
    /// IngressClasses.
    pub ingress_classes: Vec<Writer<IngressClass>>,
    /// EndpointSlices of the proxy admin Service.
    pub proxy_slices: Vec<Writer<EndpointSlice>>,
    /// The Service whose addresses Ingresses publish.
    pub publish_service: Vec<Writer<Service>>,
    /// Gateway API GatewayClasses.
    pub gateway_classes: Vec<Writer<GatewayClass>>,
    /// Gateway API Gateways, per watched namespace.
    pub gateways: Vec<Writer<Gateway>>,
    /// Gateway API HTTPRoutes, per watched namespace.
    pub http_routes: Vec<Writer<HTTPRoute>>,
    /// Gateway API ReferenceGrants, per watched namespace.
    pub reference_grants: Vec<Writer<ReferenceGrant>>,
    /// Namespaces.
    pub namespaces: Vec<Writer<Namespace>>,
}

fn stores<K>(count: usize) -> (Vec<Store<K>>, Vec<Writer<K>>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    (0..count).map(|_| reflector::store()).unzip()
}

/// Empty stores: `scopes` per namespaced kind (one per watched namespace), and one per
/// cluster-scoped kind (IngressClasses, GatewayClasses, Namespaces), for the proxy admin
/// Service's EndpointSlices and for the published Service.
pub fn stores_for(scopes: usize) -> (Stores, Writers) {
    let (routes, w_routes) = stores(scopes);
    let (plugins, w_plugins) = stores(scopes);
    let (config_maps, w_config_maps) = stores(scopes);
    let (services, w_services) = stores(scopes);
    let (endpoint_slices, w_endpoint_slices) = stores(scopes);
    let (secrets, w_secrets) = stores(scopes);
    let (ingresses, w_ingresses) = stores(scopes);
    let (ingress_classes, w_ingress_classes) = stores(1);
    let (proxy_slices, w_proxy_slices) = stores(1);
    let (publish_service, w_publish_service) = stores(1);
    let (gateway_classes, w_gateway_classes) = stores(1);
    let (gateways, w_gateways) = stores(scopes);
    let (http_routes, w_http_routes) = stores(scopes);
    let (reference_grants, w_reference_grants) = stores(scopes);
    let (namespaces, w_namespaces) = stores(1);
    (
        Stores {
            routes,
            plugins,
            config_maps,
            services,
            endpoint_slices,
            secrets,
            ingresses,
            ingress_classes,
            proxy_slices,
            publish_service,
            gateway_classes,
            gateways,
            http_routes,
            reference_grants,
            namespaces,
        },
        Writers {
            routes: w_routes,
            plugins: w_plugins,
            config_maps: w_config_maps,
            services: w_services,
            endpoint_slices: w_endpoint_slices,
            secrets: w_secrets,
            ingresses: w_ingresses,
            ingress_classes: w_ingress_classes,
            proxy_slices: w_proxy_slices,
            publish_service: w_publish_service,
            gateway_classes: w_gateway_classes,
            gateways: w_gateways,
            http_routes: w_http_routes,
            reference_grants: w_reference_grants,
            namespaces: w_namespaces,
        },
    )
}

fn all<K>(stores: &[Store<K>]) -> Vec<Arc<K>>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    stores.iter().flat_map(|s| s.state()).collect()
}

/// Every object the compiler reads, at one moment.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Routes, as the stores keep them.
    pub routes: Vec<Arc<StoredRoute>>,
    /// Plugins.
    pub plugins: Vec<Arc<Plugin>>,
    /// ConfigMaps.
    pub config_maps: Vec<Arc<ConfigMap>>,
    /// Services.
    pub services: Vec<Arc<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// Secrets.
    pub secrets: Vec<Arc<Secret>>,
    /// Ingresses.
    pub ingresses: Vec<Arc<Ingress>>,
    /// IngressClasses.
    pub ingress_classes: Vec<Arc<IngressClass>>,
    /// GatewayClasses.
    pub gateway_classes: Vec<Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: Vec<Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: Vec<Arc<HTTPRoute>>,
    /// ReferenceGrants.
    pub reference_grants: Vec<Arc<ReferenceGrant>>,
    /// Namespaces (names and labels).
    pub namespaces: Vec<Arc<Namespace>>,
}

impl Stores {
    /// What the stores hold now.
    pub fn world(&self) -> World {
        World {
            routes: self.routes(),
            plugins: self.plugins(),
            config_maps: all(&self.config_maps),
            services: all(&self.services),
            endpoint_slices: all(&self.endpoint_slices),
            secrets: all(&self.secrets),
            ingresses: self.ingresses(),
            ingress_classes: all(&self.ingress_classes),
            gateway_classes: self.gateway_classes(),
            gateways: self.gateways(),
            http_routes: self.http_routes(),
            reference_grants: all(&self.reference_grants),
            namespaces: all(&self.namespaces),
        }
    }

    /// The GatewayClasses now.
    pub fn gateway_classes(&self) -> Vec<Arc<GatewayClass>> {
        all(&self.gateway_classes)
    }

    /// The Gateways now.
    pub fn gateways(&self) -> Vec<Arc<Gateway>> {
        all(&self.gateways)
    }

    /// The HTTPRoutes now.
    pub fn http_routes(&self) -> Vec<Arc<HTTPRoute>> {
        all(&self.http_routes)
    }

    /// The Ingresses now.
    pub fn ingresses(&self) -> Vec<Arc<Ingress>> {
        all(&self.ingresses)
    }

    /// The published Service now, if it exists (and `--publish-service` names one).
    pub fn publish_service(&self) -> Option<Arc<Service>> {
        all(&self.publish_service).into_iter().next()
    }

    /// The Routes now.
    pub fn routes(&self) -> Vec<Arc<StoredRoute>> {
        all(&self.routes)
    }

    /// The Plugins now.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        all(&self.plugins)
    }

    /// The proxy admin Service's EndpointSlices now.
    pub fn proxy_slices(&self) -> Vec<Arc<EndpointSlice>> {
        all(&self.proxy_slices)
    }

    /// Waits until every store has seen its first complete list.
    pub async fn wait_until_ready(&self) {
        let mut waits = Vec::new();
        macro_rules! wait {
            ($($field:ident),*) => {$(
                for store in &self.$field {
                    let store = store.clone();
                    waits.push(Box::pin(async move { store.wait_until_ready().await.is_ok() })
                        as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>);
                }
            )*};
        }
        wait!(
            routes,
            plugins,
            config_maps,
            services,
            endpoint_slices,
            secrets,
            ingresses,
            ingress_classes,
            proxy_slices,
            publish_service,
            gateway_classes,
            gateways,
            http_routes,
            reference_grants,
            namespaces
        );
        futures::future::join_all(waits).await;
    }
}

impl World {
    /// Compiler inputs borrowing this world, with the previous snapshot and `options`.
    pub fn inputs<'a>(
        &'a self,
        previous: Option<&'a Snapshot>,
        options: &weir_crds::Options,
    ) -> Inputs<'a> {
        Inputs {
            routes: self
                .routes
                .iter()
                .map(|r| &**r as &dyn RouteSource)
                .collect(),
            plugins: self.plugins.iter().map(|p| &**p).collect(),
            config_maps: self.config_maps.iter().map(|c| &**c).collect(),
            services: self.services.iter().map(|s| &**s).collect(),
            endpoint_slices: self.endpoint_slices.iter().map(|e| &**e).collect(),
            secrets: self.secrets.iter().map(|s| &**s).collect(),
            ingresses: self.ingresses.iter().map(|i| &**i).collect(),
            ingress_classes: self.ingress_classes.iter().map(|c| &**c).collect(),
            gateway_classes: self.gateway_classes.iter().map(|c| &**c).collect(),
            gateways: self.gateways.iter().map(|g| &**g).collect(),
            http_routes: self.http_routes.iter().map(|r| &**r).collect(),
            reference_grants: self.reference_grants.iter().map(|g| &**g).collect(),
            namespaces: self.namespaces.iter().map(|n| &**n).collect(),
            previous,
            options: options.clone(),
        }
    }
}

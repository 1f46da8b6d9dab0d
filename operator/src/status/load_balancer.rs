//! `status.loadBalancer` of the Ingresses weir serves: the addresses clients reach the
//! proxies at, from `--publish-address` or the Service `--publish-service` names. Written
//! (a merge patch of the status) only when an Ingress shows other addresses than it
//! should, once per change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Semaphore;
use weir_crds::compile::ObjectRef;
use weir_crds::compile::report::{ObjectKind, ObjectReport};

use crate::metrics::Metrics;

/// What served Ingresses publish in `status.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Publish {
    /// Nothing: their status is left alone.
    #[default]
    Nothing,
    /// These addresses (IPs or host names).
    Addresses(Vec<String>),
    /// The addresses of this Service.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// The load balancer entries for `publish`, reading the published Service when there is
/// one; `None` when nothing is to be written (nothing published, or the Service not seen
/// yet).
pub fn published(
    publish: &Publish,
    service: Option<&Service>,
) -> Option<Vec<IngressLoadBalancerIngress>> {
    let addresses: Vec<String> = match publish {
        Publish::Nothing => return None,
        Publish::Addresses(addresses) => addresses.clone(),
        Publish::Service { .. } => {
            let service = service?;
            let spec = service.spec.as_ref();
            let balanced = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            if spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") {
                // A load balancer's entries, as its provider reports them (maybe none yet).
                return Some(
                    balanced
                        .into_iter()
                        .flatten()
                        .map(|entry| IngressLoadBalancerIngress {
                            ip: entry.ip.clone(),
                            hostname: entry.hostname.clone(),
                            ports: None,
                        })
                        .collect(),
                );
            }
            let external_name = spec.and_then(|s| s.external_name.clone());
            let external_ips = spec
                .and_then(|s| s.external_ips.clone())
                .unwrap_or_default();
            let cluster_ips = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
            if let Some(name) = external_name {
                vec![name]
            } else if !external_ips.is_empty() {
                external_ips
            } else {
                cluster_ips.into_iter().filter(|ip| ip != "None").collect()
            }
        }
    };
    Some(
        addresses
            .into_iter()
            .map(|address| match address.parse::<IpAddr>() {
                Ok(_) => IngressLoadBalancerIngress {
                    ip: Some(address),
                    ..IngressLoadBalancerIngress::default()
                },
                Err(_) => IngressLoadBalancerIngress {
                    hostname: Some(address),
                    ..IngressLoadBalancerIngress::default()
                },
            })
            .collect(),
    )
}

/// Writes `status.loadBalancer`, at most `concurrency` writes at once, remembering what
/// it sent so a write is not repeated while the watch has not shown it yet.
#[derive(Clone)]
pub struct LoadBalancerWriter {
    client: Client,
    metrics: Metrics,
    sent: Arc<Mutex<HashMap<ObjectRef, Vec<IngressLoadBalancerIngress>>>>,
    permits: Arc<Semaphore>,
}

impl LoadBalancerWriter {
    /// A writer using `client`, `concurrency` writes at once at most.
    pub fn new(client: Client, metrics: Metrics, concurrency: usize) -> Self {
        Self {
            client,
            metrics,
            sent: Arc::default(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Forgets what was sent (leadership changed hands).
    pub fn forget(&self) {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Writes `desired` into every reported Ingress of `ingresses` that shows other
    /// addresses; returns how many writes started.
    pub fn update(
        &self,
        ingresses: &[Arc<Ingress>],
        reports: &[ObjectReport],
        desired: &[IngressLoadBalancerIngress],
    ) -> usize {
        let mut started = 0;
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        for ingress in ingresses {
            let object = ObjectRef {
                kind: ObjectKind::Ingress,
                namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
                name: ingress.metadata.name.clone().unwrap_or_default(),
            };
            if !reports.iter().any(|r| r.object == object) {
                continue;
            }
            let shown = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            if shown == desired {
                sent.remove(&object);
                continue;
            }
            if sent.get(&object).is_some_and(|s| s == desired) {
                continue;
            }
            sent.insert(object.clone(), desired.to_vec());
            started += 1;
            let writer = self.clone();
            let desired = desired.to_vec();
            tokio::spawn(async move {
                let Ok(_permit) = writer.permits.acquire().await else {
                    return;
                };
                let api = Api::<Ingress>::namespaced(writer.client.clone(), &object.namespace);
                let patch = json!({"status": {"loadBalancer": {"ingress": desired}}});
                let params = PatchParams {
                    field_manager: Some(super::FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                };
                if let Err(e) = api
                    .patch_status(&object.name, &params, &Patch::Merge(&patch))
                    .await
                {
                    writer.metrics.error("ingress_status");
                    tracing::warn!(object = %object, error = %e, "writing status.loadBalancer failed");
                    writer
                        .sent
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&object);
                }
            });
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn entries(list: &[IngressLoadBalancerIngress]) -> Vec<(Option<&str>, Option<&str>)> {
        list.iter()
            .map(|e| (e.ip.as_deref(), e.hostname.as_deref()))
            .collect()
    }

    #[test]
    fn addresses_come_from_the_flag_or_the_service() {
        let fixed = Publish::Addresses(vec!["203.0.113.7".into(), "lb.example.com".into()]);
        assert_eq!(
            entries(&published(&fixed, None).unwrap()),
            [(Some("203.0.113.7"), None), (None, Some("lb.example.com"))]
        );
        let named = Publish::Service {
            namespace: "weir".into(),
            name: "proxy".into(),
        };
        assert_eq!(published(&named, None), None, "not seen yet: not written");
        assert_eq!(published(&Publish::Nothing, None), None);
        let balanced = service(json!({
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}, {"hostname": "a.elb.example"}]}}
        }));
        assert_eq!(
            entries(&published(&named, Some(&balanced)).unwrap()),
            [(Some("198.51.100.4"), None), (None, Some("a.elb.example"))]
        );
        let external = service(
            json!({"spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.9"], "externalIPs": ["192.0.2.10"]}}),
        );
        assert_eq!(
            entries(&published(&named, Some(&external)).unwrap()),
            [(Some("192.0.2.10"), None)]
        );
        let internal =
            service(json!({"spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.9", "fd00::9"]}}));
        assert_eq!(
            entries(&published(&named, Some(&internal)).unwrap()),
            [(Some("10.96.0.9"), None), (Some("fd00::9"), None)]
        );
    }
}

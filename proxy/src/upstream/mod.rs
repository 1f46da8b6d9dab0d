//! Upstreams: a snapshot's backends with live endpoint state, load balancing, passive
//! health, retries, and the pooled clients that reach them.

pub mod balancer;
pub mod client;
pub mod endpoint;
pub mod http1;
pub mod retry;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};

use http::Uri;
use http::uri::{PathAndQuery, Scheme};
use weir_crds::route::LoadBalancer;
use weir_crds::snapshot::{Backend, BackendProtocol, Endpoint};

use endpoint::EndpointState;

/// State that lives on across snapshots while some snapshot still uses it: endpoint
/// health and load, per-rule limits. A reload hands the same state to the new snapshot.
pub struct Persisted<K, V> {
    map: Mutex<HashMap<K, Weak<V>>>,
}

impl<K: Eq + Hash, V> Default for Persisted<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V> Persisted<K, V> {
    /// The state for `key`, made by `make` if no snapshot holds one.
    pub fn get_or_insert(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let fresh = Arc::new(make());
        map.insert(key, Arc::downgrade(&fresh));
        fresh
    }

    /// Forgets state no snapshot holds any more.
    pub fn prune(&self) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|_, state| state.strong_count() > 0);
    }
}

/// A backend of the current snapshot.
pub struct LoadedBackend {
    /// Its id in the snapshot.
    pub id: String,
    /// How to speak to it.
    pub protocol: BackendProtocol,
    /// Its endpoints, with live state.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// TLS server name for HTTPS.
    pub server_name: Option<String>,
    /// Prefix of every upstream path.
    pub base_path: Option<String>,
    /// Why the backend cannot be used (its reference is invalid): requests it gets are
    /// answered 500.
    pub unresolved: Option<String>,
    cursor: AtomicUsize,
}

impl LoadedBackend {
    /// Loads a snapshot backend, reusing live endpoint state from `states`.
    pub fn load(
        id: &str,
        backend: &Backend,
        states: &Persisted<(String, Endpoint), EndpointState>,
    ) -> Self {
        let endpoints = backend
            .endpoints
            .iter()
            .map(|e| {
                states.get_or_insert((id.to_owned(), e.clone()), || EndpointState::new(e.clone()))
            })
            .collect();
        Self {
            id: id.to_owned(),
            protocol: backend.protocol,
            endpoints,
            server_name: backend.server_name.clone(),
            base_path: backend.base_path.clone(),
            unresolved: backend.unresolved.clone(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks an endpoint for a try, avoiding those already `tried`.
    pub fn pick(&self, policy: LoadBalancer, tried: &[usize], now: u64) -> Option<usize> {
        balancer::pick(&self.endpoints, policy, &self.cursor, tried, now)
    }

    /// How many endpoints are ejected at `now`.
    pub fn ejected(&self, now: u64) -> usize {
        self.endpoints.iter().filter(|e| e.is_ejected(now)).count()
    }

    /// The absolute URI of `path_and_query` (already behind the base path, see
    /// [`LoadedBackend::upstream_path`]) at endpoint `index`.
    pub fn uri(&self, index: usize, path_and_query: &PathAndQuery) -> Option<Uri> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if self.protocol == BackendProtocol::Https {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        parts.authority = Some(self.endpoints[index].authority.clone()?);
        parts.path_and_query = Some(path_and_query.clone());
        Uri::from_parts(parts).ok()
    }

    /// The path and query sent upstream for `path_and_query`: behind the base path of a
    /// URL backend.
    pub fn upstream_path(
        &self,
        path_and_query: &str,
    ) -> Result<PathAndQuery, http::uri::InvalidUri> {
        match &self.base_path {
            Some(base) => PathAndQuery::try_from(format!("{base}{path_and_query}")),
            None => PathAndQuery::try_from(path_and_query),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_while_a_snapshot_holds_it() {
        let persisted: Persisted<&str, u32> = Persisted::default();
        let first = persisted.get_or_insert("a", || 1);
        let again = persisted.get_or_insert("a", || 2);
        assert!(Arc::ptr_eq(&first, &again));
        drop((first, again));
        persisted.prune();
        assert_eq!(*persisted.get_or_insert("a", || 3), 3);
    }

    #[test]
    fn uris_name_the_endpoint_and_base_path() {
        let states = Persisted::default();
        let backend = Backend {
            protocol: BackendProtocol::Http,
            endpoints: vec![
                Endpoint {
                    host: "::1".into(),
                    port: 8080,
                },
                Endpoint {
                    host: "10.0.0.1".into(),
                    port: 80,
                },
            ],
            server_name: None,
            base_path: Some("/base".into()),
            unresolved: None,
        };
        let loaded = LoadedBackend::load("b", &backend, &states);
        let path = loaded.upstream_path("/x?y=1").unwrap();
        assert_eq!(
            loaded.uri(0, &path).unwrap().to_string(),
            "http://[::1]:8080/base/x?y=1"
        );
        let root = loaded.upstream_path("/").unwrap();
        assert_eq!(
            loaded.uri(1, &root).unwrap().to_string(),
            "http://10.0.0.1:80/base/"
        );
    }
}

//! Load balancing over a backend's endpoints: round robin, or the less busy of two random
//! endpoints (power of two choices). Ejected endpoints are skipped, unless every endpoint
//! is ejected: then trying one beats failing every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::RngExt;
use weir_crds::route::LoadBalancer;

use super::endpoint::EndpointState;

/// Picks an endpoint index, avoiding those in `tried` (earlier attempts of the same
/// request) while others remain.
pub fn pick(
    endpoints: &[Arc<EndpointState>],
    policy: LoadBalancer,
    cursor: &AtomicUsize,
    tried: &[usize],
    now: u64,
) -> Option<usize> {
    let untried = |i: &usize| !tried.contains(i);
    let mut candidates: Vec<usize> = (0..endpoints.len())
        .filter(untried)
        .filter(|&i| !endpoints[i].is_ejected(now))
        .collect();
    if candidates.is_empty() {
        candidates = (0..endpoints.len()).filter(untried).collect();
    }
    if candidates.is_empty() {
        // Every endpoint was tried: a retry may go to one again.
        candidates = (0..endpoints.len())
            .filter(|&i| !endpoints[i].is_ejected(now))
            .collect();
    }
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => Some(match policy {
            LoadBalancer::RoundRobin => candidates[cursor.fetch_add(1, Ordering::Relaxed) % n],
            LoadBalancer::LeastRequest => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..n)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                if endpoints[b].in_flight() < endpoints[a].in_flight() {
                    b
                } else {
                    a
                }
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use weir_crds::snapshot::{Endpoint, Outliers};

    use super::*;

    fn endpoints(n: u16) -> Vec<Arc<EndpointState>> {
        (0..n)
            .map(|i| {
                Arc::new(EndpointState::new(Endpoint {
                    host: format!("10.0.0.{i}"),
                    port: 80,
                }))
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_turns() {
        let e = endpoints(3);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(&e, LoadBalancer::RoundRobin, &cursor, &[], 0).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let e = endpoints(2);
        let _busy: Vec<_> = (0..5).map(|_| e[0].start_request()).collect();
        let cursor = AtomicUsize::new(0);
        for _ in 0..20 {
            assert_eq!(
                pick(&e, LoadBalancer::LeastRequest, &cursor, &[], 0),
                Some(1)
            );
        }
    }

    #[test]
    fn ejected_and_tried_endpoints_are_avoided_while_others_remain() {
        let e = endpoints(3);
        let policy = Outliers {
            consecutive_failures: 1,
            base_ejection_ms: 1000,
            max_ejection_percent: 100,
        };
        assert!(e[0].record_failure(Some(&policy), 0, 0, 3));
        let cursor = AtomicUsize::new(0);
        for _ in 0..10 {
            assert_eq!(
                pick(&e, LoadBalancer::RoundRobin, &cursor, &[1], 10),
                Some(2)
            );
        }
        assert_eq!(
            pick(&e, LoadBalancer::RoundRobin, &cursor, &[1, 2], 10),
            Some(0),
            "ejected beats nothing"
        );
        assert_eq!(pick(&[], LoadBalancer::RoundRobin, &cursor, &[], 10), None);
    }
}

//! One upstream endpoint's live state: requests in flight (for least-request balancing)
//! and passive health (consecutive failures, ejection). It outlives snapshots, so a reload
//! does not forget which endpoints are failing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use weir_crds::snapshot::{Endpoint, Outliers};

/// Longest a single ejection lasts, however often the endpoint was ejected before.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Milliseconds since the first call: a clock that fits in an atomic (and follows tokio's
/// paused time in tests).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The live state of one endpoint.
#[derive(Debug)]
pub struct EndpointState {
    /// Where it is.
    pub address: Endpoint,
    /// `host:port` as a URI authority (IPv6 in brackets), made once.
    pub authority: Option<http::uri::Authority>,
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// While ejected: when the ejection ends. Otherwise when the ejection multiplier last
    /// changed.
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
}

impl EndpointState {
    /// A healthy endpoint with nothing in flight.
    pub fn new(address: Endpoint) -> Self {
        let host = if address.host.contains(':') {
            format!("[{}]", address.host)
        } else {
            address.host.clone()
        };
        Self {
            authority: format!("{host}:{}", address.port).parse().ok(),
            address,
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start_request(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Whether the endpoint is ejected at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejections.load(Ordering::Relaxed) > 0
            && self.ejected_until_ms.load(Ordering::Relaxed) > now
    }

    /// Records a success: the failure streak ends, and an endpoint that has stayed healthy
    /// for a base ejection time earns back one step of its ejection multiplier.
    pub fn record_success(&self, policy: Option<&Outliers>, now: u64) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let Some(policy) = policy else { return };
        let since = self.ejected_until_ms.load(Ordering::Relaxed);
        if self.ejections.load(Ordering::Relaxed) > 0
            && now >= since.saturating_add(policy.base_ejection_ms)
        {
            self.ejections.fetch_sub(1, Ordering::Relaxed);
            self.ejected_until_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns whether it ejected the endpoint. `ejected_peers` is how
    /// many endpoints of the backend are ejected now, `peers` how many it has.
    pub fn record_failure(
        &self,
        policy: Option<&Outliers>,
        now: u64,
        ejected_peers: usize,
        peers: usize,
    ) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(policy) = policy else { return false };
        if failures < policy.consecutive_failures || self.is_ejected(now) {
            return false;
        }
        let allowed = peers * policy.max_ejection_percent as usize / 100;
        if ejected_peers >= allowed {
            return false;
        }
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration =
            Duration::from_millis(policy.base_ejection_ms.saturating_mul(u64::from(ejections)))
                .min(MAX_EJECTION);
        self.ejected_until_ms.store(
            now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            Ordering::Relaxed,
        );
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }
}

/// A request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn policy() -> Outliers {
        Outliers {
            consecutive_failures: 3,
            base_ejection_ms: 1000,
            max_ejection_percent: 50,
        }
    }

    fn endpoint() -> EndpointState {
        EndpointState::new(Endpoint {
            host: "10.0.0.1".into(),
            port: 80,
        })
    }

    #[test]
    fn consecutive_failures_eject_for_a_growing_time() {
        let e = endpoint();
        let p = policy();
        assert!(!e.record_failure(Some(&p), 0, 0, 4));
        assert!(!e.record_failure(Some(&p), 0, 0, 4));
        assert!(e.record_failure(Some(&p), 0, 0, 4));
        assert!(e.is_ejected(999));
        assert!(!e.is_ejected(1000));
        for _ in 0..3 {
            e.record_failure(Some(&p), 1000, 0, 4);
        }
        assert!(
            e.is_ejected(2999),
            "the second ejection lasts twice as long"
        );
        assert!(!e.is_ejected(3000));
    }

    #[test]
    fn a_success_ends_the_streak() {
        let e = endpoint();
        let p = policy();
        e.record_failure(Some(&p), 0, 0, 4);
        e.record_failure(Some(&p), 0, 0, 4);
        e.record_success(Some(&p), 0);
        assert!(!e.record_failure(Some(&p), 0, 0, 4));
    }

    #[test]
    fn ejection_stops_at_the_max_percent() {
        let e = endpoint();
        let p = policy();
        for _ in 0..5 {
            assert!(
                !e.record_failure(Some(&p), 0, 2, 4),
                "2 of 4 already out is 50%"
            );
        }
        assert!(!e.is_ejected(0));
    }

    #[test]
    fn without_a_policy_nothing_is_ejected() {
        let e = endpoint();
        for _ in 0..10 {
            assert!(!e.record_failure(None, 0, 0, 1));
        }
    }

    #[test]
    fn in_flight_is_counted_by_guards() {
        let e = Arc::new(endpoint());
        let a = e.start_request();
        let b = e.start_request();
        assert_eq!(e.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(e.in_flight(), 0);
    }
}

//! Retries: which failures may be retried for which requests, the budget that keeps
//! retries from multiplying load on a struggling upstream, and the wait between tries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Method;
use rand::RngExt;
use weir_crds::route::RetryOn;
use weir_crds::snapshot::Retries;

/// However small the budget, this many retries may be in flight at once.
const MIN_RETRIES_IN_FLIGHT: u32 = 3;

/// How a try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be opened: the request never reached the upstream.
    Connect,
    /// The connection broke before response headers.
    Reset,
    /// The try ran out of time.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// Whether `failure` of a `method` request may be tried again under `policy`.
pub fn is_retryable(policy: &Retries, method: &Method, failure: Failure) -> bool {
    let wanted = |kind| policy.retry_on.contains(&kind);
    match failure {
        // Nothing reached the upstream, so any method is safe to send again.
        Failure::Connect => wanted(RetryOn::ConnectFailure),
        Failure::Reset => wanted(RetryOn::Reset) && is_idempotent(method),
        Failure::Timeout => wanted(RetryOn::Timeout) && is_idempotent(method),
        Failure::Status(status) => policy.statuses.contains(&status) && is_idempotent(method),
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Requests and retries in flight for one rule.
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudget {
    /// Counts a request in flight until the guard drops.
    pub fn start_request(&self) -> BudgetGuard<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        BudgetGuard {
            counter: &self.requests,
        }
    }

    /// Takes a retry from the budget, if `percent` of the requests in flight allows one.
    pub fn try_retry(&self, percent: u32) -> Option<BudgetGuard<'_>> {
        let requests = self.requests.load(Ordering::Relaxed);
        let allowed = (requests.saturating_mul(percent) / 100).max(MIN_RETRIES_IN_FLIGHT);
        let taken = self.retries.fetch_add(1, Ordering::Relaxed);
        if taken >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(BudgetGuard {
            counter: &self.retries,
        })
    }
}

/// A request or retry counted in a budget.
#[derive(Debug)]
pub struct BudgetGuard<'a> {
    counter: &'a AtomicU32,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The wait before retry number `retry` (1-based): exponential from the base, capped,
/// with jitter so retries of many requests do not arrive together.
pub fn backoff(policy: &Retries, retry: u32) -> Duration {
    let exponential = policy
        .backoff_base_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(20));
    let capped = exponential.min(policy.backoff_max_ms);
    let jittered = rand::rng().random_range(capped / 2..=capped);
    Duration::from_millis(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Retries {
        Retries {
            attempts: 2,
            retry_on: vec![RetryOn::ConnectFailure, RetryOn::Reset],
            statuses: vec![503],
            backoff_base_ms: 100,
            backoff_max_ms: 300,
            budget_percent: 20,
        }
    }

    #[test]
    fn connect_failures_retry_any_method_others_only_idempotent_ones() {
        let p = policy();
        assert!(is_retryable(&p, &Method::POST, Failure::Connect));
        assert!(!is_retryable(&p, &Method::POST, Failure::Reset));
        assert!(is_retryable(&p, &Method::GET, Failure::Reset));
        assert!(is_retryable(&p, &Method::PUT, Failure::Status(503)));
        assert!(!is_retryable(&p, &Method::GET, Failure::Status(500)));
        assert!(
            !is_retryable(&p, &Method::GET, Failure::Timeout),
            "not in retryOn"
        );
    }

    #[test]
    fn the_budget_caps_retries_in_flight() {
        let budget = RetryBudget::default();
        let _requests: Vec<_> = (0..20).map(|_| budget.start_request()).collect();
        // 20% of 20 is 4.
        let taken: Vec<_> = (0..4)
            .map(|_| budget.try_retry(20).expect("within budget"))
            .collect();
        assert!(budget.try_retry(20).is_none());
        drop(taken);
        assert!(budget.try_retry(20).is_some());
    }

    #[test]
    fn a_small_budget_still_allows_a_few_retries() {
        let budget = RetryBudget::default();
        let _one = budget.start_request();
        let taken: Vec<_> = (0..3)
            .map(|_| budget.try_retry(20).expect("minimum"))
            .collect();
        assert!(budget.try_retry(20).is_none());
        drop(taken);
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let p = policy();
        for _ in 0..50 {
            let first = backoff(&p, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(&p, 3).as_millis();
            assert!((150..=300).contains(&third), "{third}");
        }
    }
}

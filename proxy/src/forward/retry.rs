//! Step 4: whether a failed try is tried again (attempts left, a retryable failure, a body
//! that can be sent again, room in the retry budget), and the backoff before it.

use tokio::time::Instant;

use super::prepare::RequestBody;
use crate::loaded::LoadedForward;
use crate::upstream::retry::{self, Failure};

/// A retry guard when the failure may be retried.
pub(super) fn may_retry<'f>(
    forward: &'f LoadedForward,
    method: &http::Method,
    failure: Failure,
    tries: usize,
    body: &RequestBody,
) -> Option<retry::BudgetGuard<'f>> {
    let policy = forward.policy.retries.as_ref()?;
    if !may_follow(forward, tries)
        || !retry::is_retryable(policy, method, failure)
        || !body.replayable()
    {
        return None;
    }
    forward.budget.try_retry(policy.budget_percent)
}

/// Whether the route's retry policy allows another try after `tries` tries.
pub(super) fn may_follow(forward: &LoadedForward, tries: usize) -> bool {
    forward.policy.retries.as_ref().is_some_and(|policy| {
        let retries_done = u32::try_from(tries.saturating_sub(1)).unwrap_or(u32::MAX);
        retries_done < policy.attempts
    })
}

/// Waits the policy's backoff after `tries` tries, never past `deadline`.
pub(super) async fn backoff(forward: &LoadedForward, tries: usize, deadline: Instant) {
    let Some(policy) = &forward.policy.retries else {
        return;
    };
    let wait = retry::backoff(policy, u32::try_from(tries).unwrap_or(u32::MAX));
    tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
}

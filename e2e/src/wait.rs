//! Waiting for something to become true, with a deadline. The probe says what it saw
//! each time, so a timeout reports the last observation instead of only "timed out".

use std::future::Future;
use std::time::{Duration, Instant};

/// Time between two probes, unless told otherwise: short, since scenarios time how fast
/// changes show.
pub const POLL: Duration = Duration::from_millis(50);

/// A wait that ran out of time.
#[derive(Debug, thiserror::Error)]
#[error("{what}: not within {timeout:?}; last seen: {last}")]
pub struct Timeout {
    /// What was waited for.
    pub what: String,
    /// The deadline.
    pub timeout: Duration,
    /// What the last probe saw.
    pub last: String,
}

/// Calls `probe` every `poll` until it returns `Ok` or `timeout` has passed; `Err`
/// carries what the probe saw. Returns the value and the time it took.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: F,
) -> Result<(T, Duration), Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return Ok((value, start.elapsed())),
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            return Err(Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

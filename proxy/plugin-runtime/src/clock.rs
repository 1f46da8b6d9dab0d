//! The time plugins see: the system's, or in plugin tests (`weir-proxy plugin test`) a
//! clock the test sets, followed by the isolates' `Date` and the in-memory cache's
//! expiries, so time-dependent plugins (token expiry, rate-limit windows) test
//! deterministically.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the time comes from.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// The system's: production.
    #[default]
    System,
    /// Milliseconds since the Unix epoch, standing still until set.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock standing at the system's time now.
    pub(crate) fn manual() -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(system_ms())))
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_ms(),
            Clock::Manual(ms) => ms.load(Ordering::Relaxed),
        }
    }

    /// Sets a manual clock (the system's cannot be set).
    pub(crate) fn set_ms(&self, now: i64) {
        if let Clock::Manual(ms) = self {
            ms.store(now, Ordering::Relaxed);
        }
    }
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

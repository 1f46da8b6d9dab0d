//! Limits per client address (a Route's `clientLimits`): a sustained rate with a burst
//! (GCRA, by `governor`), and requests in flight. One [`ClientLimiter`] serves every rule
//! of a Route and every shard, and outlives snapshots while its settings stay the same.
//!
//! Memory stays bounded: an address leaves the in-flight table when its last request
//! ends, and the rate table drops addresses whose allowance is full again once it grows
//! past [`PRUNE_ABOVE`]; it never holds more than [`MAX_ADDRESSES`]. While it is full of
//! addresses still limited, a new address is served without being counted: refusing it
//! would turn the table into a way of locking out every new client, and a client that
//! can change its address at will gets past per-address limits anyway.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};
use weir_crds::snapshot::ClientLimits;

use crate::error::{ClientLimit, ProxyError};

/// Size of the rate table above which addresses back to a full allowance are dropped.
pub const PRUNE_ABOVE: usize = 4096;

/// Most addresses the rate table of one limiter holds.
pub const MAX_ADDRESSES: usize = 65_536;

/// Shortest time between two prunings of the rate table, so a table full of limited
/// addresses is not scanned on every request.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a client refused for too many requests in flight is asked to wait.
const CONCURRENCY_RETRY_AFTER_SECS: u64 = 1;

/// The limits of one Route's clients, and their state.
pub struct ClientLimiter {
    rate: Option<Rate>,
    concurrency: Option<Concurrency>,
}

struct Rate {
    limiter: RateLimiter<IpAddr, AddressTable, DefaultClock>,
    pruned_at: Mutex<Instant>,
}

struct Concurrency {
    limit: u32,
    in_flight: Mutex<HashMap<IpAddr, u32>>,
}

impl ClientLimiter {
    /// A limiter with `limits`, and no client seen yet; fails on a limit of zero.
    pub fn new(limits: &ClientLimits) -> Result<Self, String> {
        let rate = limits
            .requests_per_second
            .map(|rate| {
                let rate = NonZeroU32::new(rate).ok_or("requestsPerSecond must be positive")?;
                // `burst` requests above the rate: a client may send `burst + 1` at once.
                let burst = NonZeroU32::new(limits.burst.saturating_add(1)).unwrap_or(rate);
                Ok::<_, String>(Rate {
                    limiter: RateLimiter::new(
                        Quota::per_second(rate).allow_burst(burst),
                        AddressTable::default(),
                        DefaultClock::default(),
                    ),
                    pruned_at: Mutex::new(Instant::now()),
                })
            })
            .transpose()?;
        let concurrency = limits
            .concurrent_requests
            .map(|limit| {
                if limit == 0 {
                    return Err("concurrentRequests must be positive".to_owned());
                }
                Ok(Concurrency {
                    limit,
                    in_flight: Mutex::new(HashMap::new()),
                })
            })
            .transpose()?;
        Ok(Self { rate, concurrency })
    }

    /// Counts a request of `client`: the permit it holds while in flight (when requests
    /// in flight are limited), or the 429 it is answered with.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Option<ClientPermit>, ProxyError> {
        // In flight first: a request refused for that does not use up the rate.
        let permit = match &self.concurrency {
            Some(concurrency) => {
                let mut in_flight = lock(&concurrency.in_flight);
                let count = in_flight.entry(client).or_insert(0);
                if *count >= concurrency.limit {
                    return Err(ProxyError::ClientLimited {
                        limit: ClientLimit::Concurrency,
                        retry_after_secs: CONCURRENCY_RETRY_AFTER_SECS,
                    });
                }
                *count += 1;
                Some(ClientPermit {
                    limiter: self.clone(),
                    client,
                })
            }
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.prune();
            if let Err(not_until) = rate.limiter.check_key(&client) {
                let wait = not_until.wait_time_from(rate.limiter.clock().now());
                return Err(ProxyError::ClientLimited {
                    limit: ClientLimit::Rate,
                    retry_after_secs: whole_seconds(wait),
                });
            }
        }
        Ok(permit)
    }

    /// Addresses in the rate and in-flight tables.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (
            self.rate.as_ref().map_or(0, |rate| rate.limiter.len()),
            self.concurrency
                .as_ref()
                .map_or(0, |c| lock(&c.in_flight).len()),
        )
    }
}

impl Rate {
    /// Drops addresses back to a full allowance when the table has grown past
    /// [`PRUNE_ABOVE`], at most once per [`PRUNE_INTERVAL`].
    fn prune(&self) {
        if self.limiter.len() <= PRUNE_ABOVE {
            return;
        }
        {
            let mut pruned_at = lock(&self.pruned_at);
            if pruned_at.elapsed() < PRUNE_INTERVAL {
                return;
            }
            *pruned_at = Instant::now();
        }
        self.limiter.retain_recent();
    }
}

/// A request counted in flight for its client, until dropped.
pub struct ClientPermit {
    limiter: Arc<ClientLimiter>,
    client: IpAddr,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let Some(concurrency) = &self.limiter.concurrency else {
            return;
        };
        let mut in_flight = lock(&concurrency.in_flight);
        if let Entry::Occupied(mut entry) = in_flight.entry(self.client) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least one.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The rate state of each address (GCRA's theoretical arrival time), holding at most
/// [`MAX_ADDRESSES`]: `governor`'s own tables grow without bound.
#[derive(Default)]
struct AddressTable {
    states: Mutex<HashMap<IpAddr, Nanos>>,
}

impl StateStore for AddressTable {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut states = lock(&self.states);
        let previous = states.get(key).copied();
        let (outcome, state) = f(previous)?;
        if previous.is_some() || states.len() < MAX_ADDRESSES {
            states.insert(*key, state);
        }
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for AddressTable {
    fn retain_recent(&self, drop_below: Nanos) {
        lock(&self.states).retain(|_, state| *state > drop_below);
    }

    fn len(&self) -> usize {
        lock(&self.states).len()
    }

    fn is_empty(&self) -> bool {
        lock(&self.states).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: Option<u32>, burst: u32, concurrent: Option<u32>) -> Arc<ClientLimiter> {
        Arc::new(
            ClientLimiter::new(&ClientLimits {
                scope: "test/r".into(),
                requests_per_second: rate,
                burst,
                concurrent_requests: concurrent,
            })
            .unwrap(),
        )
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_burst_then_refusals_with_a_wait() {
        // One a second: whatever the machine's speed, no allowance comes back in this test.
        let limiter = limits(Some(1), 2, None);
        for _ in 0..3 {
            assert!(limiter.admit(ip(1)).is_ok());
        }
        match limiter.admit(ip(1)) {
            Err(ProxyError::ClientLimited {
                limit: ClientLimit::Rate,
                retry_after_secs,
            }) => assert_eq!(retry_after_secs, 1),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a fourth request at once is over the burst"),
        }
        // Another address has its own allowance.
        assert!(limiter.admit(ip(2)).is_ok());
    }

    #[test]
    fn in_flight_requests_are_counted_until_their_permits_drop() {
        let limiter = limits(None, 0, Some(2));
        let first = limiter.admit(ip(1)).unwrap();
        let _second = limiter.admit(ip(1)).unwrap();
        assert!(matches!(
            limiter.admit(ip(1)),
            Err(ProxyError::ClientLimited {
                limit: ClientLimit::Concurrency,
                ..
            })
        ));
        assert!(limiter.admit(ip(2)).is_ok());
        drop(first);
        assert!(limiter.admit(ip(1)).is_ok());
        drop(_second);
        // Every permit is gone: so are the addresses.
        assert_eq!(limiter.tracked(), (0, 0));
    }

    #[test]
    fn a_refusal_for_concurrency_keeps_the_rate() {
        let limiter = limits(Some(1), 0, Some(1));
        let held = limiter.admit(ip(1)).unwrap();
        assert!(limiter.admit(ip(1)).is_err());
        drop(held);
        // The refused request took nothing from the allowance: it is still spent by the
        // first one only, so the next is refused for the rate.
        assert!(matches!(
            limiter.admit(ip(1)),
            Err(ProxyError::ClientLimited {
                limit: ClientLimit::Rate,
                ..
            })
        ));
    }

    #[test]
    fn the_rate_table_is_bounded_and_pruned() {
        // A fast rate: every address is back to a full allowance almost at once.
        let limiter = limits(Some(1_000_000), 0, None);
        for n in 0..(PRUNE_ABOVE as u32 + 10) {
            let _ = limiter.admit(ip(n));
        }
        // Pruning waits for its interval after the limiter was made.
        std::thread::sleep(PRUNE_INTERVAL);
        let _ = limiter.admit(ip(u32::MAX));
        assert!(limiter.tracked().0 <= 1, "{:?}", limiter.tracked());

        let slow = limits(Some(1), 1_000, None);
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            assert!(slow.admit(ip(n)).is_ok());
        }
        assert_eq!(slow.tracked().0, MAX_ADDRESSES);
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}

//! `ctx.services.cache`: a key-value store with per-entry TTL and atomic counters, shared by
//! every isolate of the process, in memory or in Redis (so proxy replicas share it).
//! Values are JSON text; keys are prefixed with the plugin's id, so plugins cannot read
//! each other's entries, and in Redis also with `cache.keyPrefix`, so several weir
//! installations can share one Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::config::CacheConfig;

/// A cache operation that failed; the plugin's promise rejects with this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// `incr` on an entry that does not hold an integer.
    #[error("cache entry {0:?} does not hold an integer")]
    NotACounter(String),
    /// Redis failed or was too slow.
    #[error("redis: {0}")]
    Redis(String),
}

/// The cache, in memory or in Redis.
pub(crate) enum Cache {
    Memory(MemoryCache),
    // One per process: its size does not matter.
    Redis(Box<RedisCache>),
}

/// The in-process cache. Entries expire by the system's time (moka evicts them); under a
/// manual clock (plugin tests) they carry a deadline of that clock instead.
pub(crate) struct MemoryCache {
    entries: moka::sync::Cache<String, Entry>,
    clock: Clock,
}

/// An in-memory entry: JSON text and how its expiry is set.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    value: String,
    /// Expiry by the system's time (moka's); `None` under a manual clock.
    ttl: Option<Duration>,
    /// Counters keep the expiry they were created with.
    keep_ttl: bool,
    /// Under a manual clock: when the entry expires, in its milliseconds.
    deadline_ms: Option<i64>,
}

impl MemoryCache {
    /// An entry holding `value` that expires after `ttl`.
    fn entry(&self, value: String, ttl: Option<Duration>) -> Entry {
        match &self.clock {
            Clock::System => Entry {
                value,
                ttl,
                keep_ttl: false,
                deadline_ms: None,
            },
            Clock::Manual(_) => Entry {
                value,
                ttl: None,
                keep_ttl: false,
                deadline_ms: ttl.map(|ttl| {
                    self.clock
                        .now_ms()
                        .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                }),
            },
        }
    }

    /// Whether an entry moka still holds has not expired by the clock.
    fn live(&self, entry: &Entry) -> bool {
        entry
            .deadline_ms
            .is_none_or(|deadline| self.clock.now_ms() < deadline)
    }

    /// The live value under `key`.
    fn get(&self, key: &str) -> Option<String> {
        self.entries
            .get(key)
            .filter(|entry| self.live(entry))
            .map(|entry| entry.value)
    }

    /// Forgets every entry (between plugin tests).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _now: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _now: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        if entry.keep_ttl { remaining } else { entry.ttl }
    }
}

/// Redis, connected on first use so a proxy starts while Redis is down.
pub(crate) struct RedisCache {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
    /// How long calls fail at once after a failure.
    retry_after: Duration,
    /// Put before every key (`cache.keyPrefix`).
    key_prefix: String,
    /// After a failure: until when calls fail at once, and why (a breaker, so an outage
    /// does not cost every call the whole timeout).
    unavailable: std::sync::Mutex<Option<(Instant, String)>>,
}

/// Compare-and-set: replaces the value when it is `ARGV[2]` (`ARGV[1]` = `1`) or when
/// there is none (`ARGV[1]` = `0`), with the expiry `ARGV[4]` ms (0: none).
const COMPARE_AND_SET_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
local absent = ARGV[1] == '0'
if (absent and current) or (not absent and current ~= ARGV[2]) then
  return 0
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1";

/// INCRBY that sets the expiry only when the counter has none, so a fixed window keeps the
/// expiry of its first hit.
const INCR_SCRIPT: &str = r"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return value";

impl Cache {
    /// The cache the config asks for, its in-memory expiries by `clock`; a malformed Redis
    /// URL is an error at start.
    pub(crate) fn new(config: &CacheConfig, clock: Clock) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(match &config.redis_url {
            Some(url) => Cache::Redis(Box::new(RedisCache {
                client: redis::Client::open(url.as_str())?,
                connection: OnceCell::new(),
                timeout: Duration::from_millis(config.timeout_ms),
                retry_after: Duration::from_millis(config.retry_after_ms),
                key_prefix: config.key_prefix.clone(),
                unavailable: std::sync::Mutex::new(None),
            })),
            None => Cache::Memory(MemoryCache {
                entries: moka::sync::Cache::builder()
                    .max_capacity(config.max_entries)
                    .expire_after(PerEntryTtl)
                    .build(),
                clock,
            }),
        }))
    }

    /// The JSON text stored under `key`, if any.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Cache::Memory(cache) => Ok(cache.get(key)),
            Cache::Redis(redis) => redis.run(redis::cmd("GET").arg(redis.key(key))).await,
        }
    }

    /// Stores JSON text under `key`, replacing any entry and its expiry.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        match self {
            Cache::Memory(cache) => {
                cache
                    .entries
                    .insert(key.to_owned(), cache.entry(value, ttl));
                Ok(())
            }
            Cache::Redis(redis) => {
                let mut command = redis::cmd("SET");
                command.arg(redis.key(key)).arg(value);
                if let Some(ttl) = ttl {
                    command.arg("PX").arg(ttl.as_millis().max(1) as u64);
                }
                redis.run::<()>(&command).await
            }
        }
    }

    /// Stores JSON text under `key` only when there is no entry (set-if-absent, atomic
    /// across isolates and, with Redis, across proxies); whether it stored.
    pub(crate) async fn add(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        self.compare_and_set(key, None, value, ttl).await
    }

    /// Replaces the entry under `key` with `value` only when it holds `expected` (JSON text;
    /// `None`: when there is no entry), atomically; whether it replaced. The new entry
    /// expires after `ttl`.
    pub(crate) async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        match self {
            Cache::Memory(cache) => {
                let mut replaced = false;
                cache
                    .entries
                    .entry(key.to_owned())
                    .and_compute_with(|existing| {
                        let current = existing
                            .as_ref()
                            .map(|entry| entry.value())
                            .filter(|entry| cache.live(entry))
                            .map(|entry| entry.value.as_str());
                        if current != expected {
                            return Op::Nop;
                        }
                        replaced = true;
                        Op::Put(cache.entry(value, ttl))
                    });
                Ok(replaced)
            }
            Cache::Redis(redis) => {
                let ttl_ms = ttl.map_or(0, |ttl| ttl.as_millis().max(1) as u64);
                let mut command = redis::cmd("EVAL");
                command
                    .arg(COMPARE_AND_SET_SCRIPT)
                    .arg(1)
                    .arg(redis.key(key))
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or_default())
                    .arg(value)
                    .arg(ttl_ms);
                Ok(redis.run::<i64>(&command).await? == 1)
            }
        }
    }

    /// Removes `key`; whether it was there.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        match self {
            Cache::Memory(cache) => Ok(cache
                .entries
                .remove(key)
                .is_some_and(|entry| cache.live(&entry))),
            Cache::Redis(redis) => Ok(redis
                .run::<i64>(redis::cmd("DEL").arg(redis.key(key)))
                .await?
                > 0),
        }
    }

    /// Adds `by` to the integer under `key` (missing counts as 0) and returns the sum; a
    /// new counter expires after `ttl`, and later increments keep that expiry.
    pub(crate) async fn incr(
        &self,
        key: &str,
        by: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        match self {
            Cache::Memory(cache) => {
                let mut outcome = Ok(0);
                cache
                    .entries
                    .entry(key.to_owned())
                    .and_compute_with(|existing| {
                        let existing = existing
                            .as_ref()
                            .map(|entry| entry.value())
                            .filter(|entry| cache.live(entry));
                        let current = existing.map_or(Ok(0), |entry| entry.value.parse::<i64>());
                        match current {
                            Ok(current) => {
                                let sum = current.saturating_add(by);
                                outcome = Ok(sum);
                                Op::Put(match existing {
                                    // A counter keeps the expiry of its first increment.
                                    Some(entry) => Entry {
                                        value: sum.to_string(),
                                        keep_ttl: true,
                                        ..entry.clone()
                                    },
                                    None => cache.entry(sum.to_string(), ttl),
                                })
                            }
                            Err(_) => {
                                outcome = Err(CacheError::NotACounter(key.to_owned()));
                                Op::Nop
                            }
                        }
                    });
                outcome
            }
            Cache::Redis(redis) => {
                let ttl_ms = ttl.map_or(0, |ttl| ttl.as_millis().max(1) as u64);
                let mut command = redis::cmd("EVAL");
                command
                    .arg(INCR_SCRIPT)
                    .arg(1)
                    .arg(redis.key(key))
                    .arg(by)
                    .arg(ttl_ms);
                redis.run(&command).await
            }
        }
    }
}

impl RedisCache {
    /// The Redis key of `key`.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, CacheError> {
        if let Some((until, why)) = self.lock().as_ref()
            && Instant::now() < *until
        {
            return Err(CacheError::Redis(format!(
                "unavailable ({why}); tried again {} ms after that failure",
                self.retry_after.as_millis()
            )));
        }
        let attempt = async {
            let connection = self
                .connection
                .get_or_try_init(|| self.client.get_connection_manager())
                .await?;
            command.query_async::<T>(&mut connection.clone()).await
        };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    redis::ErrorKind::Server(_) | redis::ErrorKind::UnexpectedReturnType
                ) =>
            {
                // Redis answered (a script error, a wrong type): it is up.
                return Err(CacheError::Redis(e.to_string()));
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let mut unavailable = self.lock();
        match outcome {
            Ok(value) => {
                *unavailable = None;
                Ok(value)
            }
            Err(why) => {
                let until = Instant::now() + self.retry_after;
                *unavailable = Some((until, why.clone()));
                Err(CacheError::Redis(why))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.unavailable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Arc<Cache> {
        Cache::new(&CacheConfig::default(), Clock::System).unwrap()
    }

    #[tokio::test]
    async fn values_are_stored_replaced_and_deleted() {
        let cache = memory();
        assert_eq!(cache.get("k").await.unwrap(), None);
        cache.set("k", "\"v\"".into(), None).await.unwrap();
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("\"v\""));
        assert!(cache.delete("k").await.unwrap());
        assert!(!cache.delete("k").await.unwrap());
    }

    #[tokio::test]
    async fn counters_add_up_and_refuse_non_integers() {
        let cache = memory();
        assert_eq!(cache.incr("c", 1, None).await.unwrap(), 1);
        assert_eq!(cache.incr("c", 5, None).await.unwrap(), 6);
        cache.set("s", "\"text\"".into(), None).await.unwrap();
        assert!(matches!(
            cache.incr("s", 1, None).await,
            Err(CacheError::NotACounter(_))
        ));
        assert_eq!(cache.get("c").await.unwrap().as_deref(), Some("6"));
    }

    #[tokio::test]
    async fn set_if_absent_and_compare_and_set_are_conditional() {
        let cache = memory();
        assert!(cache.add("nonce", "1".into(), None).await.unwrap());
        assert!(!cache.add("nonce", "2".into(), None).await.unwrap());
        assert_eq!(cache.get("nonce").await.unwrap().as_deref(), Some("1"));
        assert!(
            !cache
                .compare_and_set("nonce", Some("7"), "8".into(), None)
                .await
                .unwrap()
        );
        assert!(
            cache
                .compare_and_set("nonce", Some("1"), "2".into(), None)
                .await
                .unwrap()
        );
        assert_eq!(cache.get("nonce").await.unwrap().as_deref(), Some("2"));
        assert!(
            !cache
                .compare_and_set("other", Some("1"), "2".into(), None)
                .await
                .unwrap()
        );
        assert!(
            cache
                .compare_and_set("other", None, "3".into(), None)
                .await
                .unwrap()
        );
        assert_eq!(cache.get("other").await.unwrap().as_deref(), Some("3"));
    }

    #[test]
    fn counters_keep_the_expiry_of_their_first_increment() {
        let expiry = PerEntryTtl;
        let counter = Entry {
            value: "2".into(),
            ttl: Some(Duration::from_secs(60)),
            keep_ttl: true,
            deadline_ms: None,
        };
        let remaining = Some(Duration::from_secs(5));
        assert_eq!(
            expiry.expire_after_update(&"c".into(), &counter, Instant::now(), remaining),
            remaining
        );
        let value = Entry {
            keep_ttl: false,
            ..counter
        };
        assert_eq!(
            expiry.expire_after_update(&"c".into(), &value, Instant::now(), remaining),
            Some(Duration::from_secs(60))
        );
    }

    #[tokio::test]
    async fn under_a_manual_clock_entries_expire_by_that_clock() {
        let clock = Clock::manual();
        let start = clock.now_ms();
        let cache = Cache::new(&CacheConfig::default(), clock.clone()).unwrap();
        let ttl = Some(Duration::from_secs(10));
        cache.set("k", "1".into(), ttl).await.unwrap();
        assert_eq!(cache.incr("c", 1, ttl).await.unwrap(), 1);
        clock.set_ms(start + 9_999);
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("1"));
        assert_eq!(cache.incr("c", 1, ttl).await.unwrap(), 2, "same window");
        assert!(!cache.add("k", "2".into(), ttl).await.unwrap());
        clock.set_ms(start + 10_000);
        assert_eq!(cache.get("k").await.unwrap(), None);
        assert_eq!(
            cache.incr("c", 1, ttl).await.unwrap(),
            1,
            "the window of the first increment ended: a new counter"
        );
        assert!(
            cache.add("k", "2".into(), ttl).await.unwrap(),
            "expired counts as absent"
        );
        clock.set_ms(start + 19_999);
        assert_eq!(
            cache.incr("c", 1, ttl).await.unwrap(),
            2,
            "still the new window"
        );
        clock.set_ms(start + 20_000);
        assert!(
            !cache.delete("k").await.unwrap(),
            "an expired entry was not there"
        );
    }
}

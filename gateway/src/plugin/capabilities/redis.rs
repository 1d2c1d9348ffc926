//! The Redis backend of `rate-limit`, `cache` and `kv`: what several gateway
//! processes share. Redis is the distributed engine; every operation is one
//! round trip (a Lua script where it must be atomic), bounded by a timeout,
//! over a few multiplexed connections that reconnect by themselves.
//!
//! Failures are counted and logged at most once per [`LOG_EVERY`]; what a
//! failure means for a request is up to the caller (see `failure`).

use plugin_shared::rate_limit::{
    Decision, Policy, Quota, QuotaDecision, QuotaPeriod, quota_decision,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Shortest time between two log lines about Redis failures.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Keys scanned per round of a prefix purge.
const SCAN_COUNT: usize = 500;

/// GCRA on a stored theoretical arrival time (microseconds, Redis's clock),
/// the same arithmetic as the local backend (governor).
/// KEYS[1]: the counter. ARGV: emission interval (us), burst.
/// Returns {allowed, remaining, retry_after_us}.
const GCRA: &str = r"
local t = tonumber(ARGV[1])
local tau = t * (tonumber(ARGV[2]) - 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tau
if now < earliest then
  return {0, 0, earliest - now}
end
local nxt = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor(math.min(now + tau + t - nxt, tau + t) / t), 0}
";

/// A fixed-window count that only counts allowed requests.
/// KEYS[1]: the window's counter. ARGV: limit, expiry (Unix ms).
/// Returns the count before this request.
const QUOTA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
end
return n - 1
";

/// What a Redis operation failed with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

/// Which kind of state a key holds, so kinds never collide.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `kv` entries.
    Kv,
    /// `cache` entries.
    Cache,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Kv => "kv",
            Kind::Cache => "cache",
        }
    }
}

/// Connections to one Redis server and the scripts run there.
pub struct RedisStore {
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    timeout: Duration,
    prefix: String,
    gcra: Script,
    quota: Script,
    log: crate::limit::LogEvery,
}

impl RedisStore {
    /// Prepares `connections` connections to `url`; they connect on first use
    /// and reconnect by themselves, so a Redis that is down at start is not
    /// an error.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        timeout: Duration,
        connections: usize,
        prefix: String,
    ) -> Result<Self, String> {
        if !url.starts_with("redis://") {
            return Err(format!(
                "redis.url `{url}` must start with redis:// (for example \"redis://127.0.0.1:6379/0\")"
            ));
        }
        let mut info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| format!("redis.url `{url}` is invalid: {e}"))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = Client::open(info).map_err(|e| format!("redis.url `{url}`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connections = (0..connections.max(1))
            .map(|_| client.get_connection_manager_lazy(config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("redis: {e}"))?;
        Ok(Self {
            connections,
            next: AtomicUsize::new(0),
            timeout,
            prefix,
            gcra: Script::new(GCRA),
            quota: Script::new(QUOTA),
            log: crate::limit::LogEvery::new(LOG_EVERY),
        })
    }

    /// A connection for the calling thread. Each worker thread has its own
    /// (when there are as many connections as workers, the default), so the
    /// task driving a connection runs on the thread whose requests use it:
    /// no cross-thread wake-up per Redis call. Other threads take turns.
    fn connection(&self) -> ConnectionManager {
        let n = self.connections.len();
        let i = match crate::worker::current() {
            Some(worker) => worker % n,
            None => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        self.connections[i].clone()
    }

    /// Runs `op` under the timeout, counting and logging a failure.
    async fn run<T, F>(&self, what: &str, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let error = match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        crate::metrics::metrics().redis_failures.inc();
        if let Some(suppressed) = self.log.ready() {
            tracing::warn!(
                operation = what,
                %error,
                suppressed,
                "redis unavailable (logged at most every 10 s; `suppressed` failures since the last line)"
            );
        }
        Err(StoreError(error))
    }

    fn key(&self, kind: &str, namespace: &str, key: &str) -> String {
        format!("{}{kind}:{namespace}:{key}", self.prefix)
    }

    /// Checks and counts one request against `policy` (GCRA on Redis's clock).
    pub async fn check(
        &self,
        namespace: &str,
        key: &str,
        policy: Policy,
    ) -> Result<Decision, StoreError> {
        let interval_us = (policy.period.as_micros() / u128::from(policy.limit.max(1))).max(1);
        let key = self.key(
            "rl",
            namespace,
            &format!(
                "{}/{}/{}:{key}",
                policy.limit,
                policy.period.as_millis(),
                policy.burst
            ),
        );
        let mut conn = self.connection();
        let mut invocation = self.gcra.key(key);
        invocation.arg(u64::try_from(interval_us).unwrap_or(u64::MAX));
        invocation.arg(policy.burst);
        let (allowed, remaining, retry_us): (u8, u32, u64) = self
            .run("rate-limit check", invocation.invoke_async(&mut conn))
            .await?;
        let interval = Duration::from_micros(u64::try_from(interval_us).unwrap_or(u64::MAX));
        let burst = policy.burst;
        Ok(if allowed == 1 {
            Decision {
                allowed: true,
                limit: burst,
                remaining,
                retry_after: Duration::ZERO,
                reset: interval * burst.saturating_sub(remaining),
            }
        } else {
            let retry_after = Duration::from_micros(retry_us);
            Decision {
                allowed: false,
                limit: burst,
                remaining: 0,
                retry_after,
                reset: retry_after + interval * burst.saturating_sub(1),
            }
        })
    }

    /// Counts one request against `quota` in the calendar window holding
    /// `now_ms` (this gateway's clock).
    pub async fn count(
        &self,
        namespace: &str,
        key: &str,
        quota: Quota,
        now_ms: u64,
    ) -> Result<QuotaDecision, StoreError> {
        let (start, end) = plugin_shared::rate_limit::window(quota.period, now_ms);
        let period = match quota.period {
            QuotaPeriod::Day => "d",
            QuotaPeriod::Week => "w",
            QuotaPeriod::Month => "m",
        };
        let key = self.key(
            "quota",
            namespace,
            &format!("{}/{period}/{start}:{key}", quota.limit),
        );
        let mut conn = self.connection();
        let mut invocation = self.quota.key(key);
        // Kept an hour past its window so gateways with slow clocks agree.
        invocation.arg(quota.limit).arg(end + 3_600_000);
        let counted: u64 = self
            .run("quota count", invocation.invoke_async(&mut conn))
            .await?;
        Ok(quota_decision(quota, counted, now_ms))
    }

    /// The value under `key`.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(kind.tag(), namespace, key);
        let mut conn = self.connection();
        self.run("get", redis::cmd("GET").arg(key).query_async(&mut conn))
            .await
    }

    /// Stores `value` under `key` for `ttl` (at least a millisecond).
    pub async fn set(
        &self,
        kind: Kind,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(kind.tag(), namespace, key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.connection();
        self.run(
            "set",
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn),
        )
        .await
    }

    /// Removes `key`.
    pub async fn delete(&self, kind: Kind, namespace: &str, key: &str) -> Result<(), StoreError> {
        let key = self.key(kind.tag(), namespace, key);
        let mut conn = self.connection();
        self.run(
            "delete",
            redis::cmd("UNLINK").arg(key).query_async(&mut conn),
        )
        .await
    }

    /// Removes the keys of `namespace` (every namespace when `None`) that
    /// start with `text` (`Match::Prefix`) or are `text` (`Match::Exact`);
    /// returns how many went.
    pub async fn purge(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        text: &str,
        how: Match,
    ) -> Result<u64, StoreError> {
        let key = match namespace {
            Some(namespace) => glob_escape(&self.key(kind.tag(), namespace, text)),
            None => format!(
                "{}:*:{}",
                glob_escape(&format!("{}{}", self.prefix, kind.tag())),
                glob_escape(text)
            ),
        };
        let pattern = match how {
            Match::Prefix => format!("{key}*"),
            Match::Exact => key,
        };
        let mut conn = self.connection();
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run(
                    "purge scan",
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .run(
                        "purge",
                        redis::cmd("UNLINK").arg(keys).query_async(&mut conn),
                    )
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// How [`RedisStore::purge`] matches keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The key itself.
    Exact,
    /// Every key starting with the text.
    Prefix,
}

/// `text` with Redis glob characters escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(
            glob_escape("GET a/b?x=[1]*\\"),
            "GET a/b\\?x=\\[1\\]\\*\\\\"
        );
    }

    #[test]
    fn urls_are_checked() {
        let make = |url: &str| {
            RedisStore::new(url, None, None, Duration::from_millis(10), 1, "g:".into()).map(|_| ())
        };
        assert!(make("http://localhost").is_err());
        assert!(make("redis://").is_err());
    }
}

//! `gateway:plugin/rate-limit`: GCRA rate limits and calendar quotas on
//! counters the host keeps, shared by every instance of a plugin.
//!
//! [`LimitBackend`] is where the counters live: [`LocalLimits`], one governor
//! (GCRA) limiter per (plugin, policy, key) in a bounded moka cache, so that a
//! client rotating keys cannot grow memory without bound (idle and least used
//! keys are evicted first); or [`RedisLimits`], one Lua script per check on
//! Redis's clock. A Redis backend is always wrapped in `failure::OnFailure`,
//! the entry's `store_failure`.
//!
//! The host functions run on a [`RateLimitView`]: the entry's backend and
//! namespace and the instance's `IoWaits`.

use governor::clock::{Clock, DefaultClock};
pub use plugin_shared::rate_limit::native::validate;
use plugin_shared::rate_limit::native::{self, Limiter};
pub use plugin_shared::rate_limit::{Decision, Policy, Quota, QuotaDecision};
use plugin_shared::rate_limit::{check_key, quota_decision, window};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backend::{BoxFuture, Scope, StoreView, ready};
use super::redis::RedisStore;
use crate::metrics::{Label, Metrics, metrics};
use crate::plugin::bindings::gateway::plugin::rate_limit::{
    self, Decision as WitDecision, QuotaDecision as WitQuota,
};
use crate::plugin::bindings::gateway::plugin::types;
use plugin_shared::limits::millis;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use wasmtime::component::HasData;

/// Most keys tracked at once, over all plugins.
const MAX_KEYS: u64 = 100_000;
/// How long an idle key is kept: a key idle for a day has a full bucket again.
const MAX_IDLE: Duration = Duration::from_secs(86_400);

/// Longest calendar window (a month) plus slack.
const MAX_WINDOW: Duration = Duration::from_secs(32 * 86_400);

/// Quota counts by (namespace, quota, window start, key).
type QuotaCounts = moka::sync::Cache<(Arc<str>, Quota, u64, String), Arc<AtomicU64>>;

/// Limiters by (namespace, policy, key), and quota counts.
pub struct LocalLimits<C: Clock + Clone + Send + Sync + 'static = DefaultClock> {
    clock: C,
    limiters: moka::sync::Cache<(Arc<str>, Policy, String), Arc<Limiter<C>>>,
    quotas: QuotaCounts,
}

impl LocalLimits<DefaultClock> {
    /// Limits on the real clock.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default(), MAX_KEYS)
    }
}

impl Default for LocalLimits<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> LocalLimits<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Limits on `clock`, tracking at most `max_keys` keys.
    pub fn with_clock(clock: C, max_keys: u64) -> Self {
        let limiters = moka::sync::Cache::builder()
            .max_capacity(max_keys)
            // Forgetting a key idle that long changes no decision.
            .time_to_idle(MAX_IDLE)
            .build();
        let quotas = moka::sync::Cache::builder()
            .max_capacity(max_keys)
            .time_to_live(MAX_WINDOW)
            .build();
        LocalLimits {
            clock,
            limiters,
            quotas,
        }
    }

    /// Counts one request against `quota` for `key` in the calendar window
    /// holding `now_ms` (Unix milliseconds); refused requests are not counted.
    pub fn count(
        &self,
        namespace: &Arc<str>,
        key: &str,
        quota: Quota,
        now_ms: u64,
    ) -> Result<QuotaDecision, String> {
        check_key(key)?;
        let (start, _) = window(quota.period, now_ms);
        let counter = self
            .quotas
            .get_with((namespace.clone(), quota, start, key.to_string()), || {
                Arc::new(AtomicU64::new(0))
            });
        let counted = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < quota.limit).then_some(n + 1)
            })
            .unwrap_or_else(|n| n);
        Ok(quota_decision(quota, counted, now_ms))
    }

    /// Checks `key` under `policy` in `namespace`, counting the request when
    /// it is allowed.
    pub fn check(
        &self,
        namespace: &Arc<str>,
        key: &str,
        policy: Policy,
    ) -> Result<Decision, String> {
        let quota = validate(key, policy)?;
        let limiter = self
            .limiters
            .get_with((namespace.clone(), policy, key.to_string()), || {
                Arc::new(native::limiter(quota, self.clock.clone()))
            });
        Ok(native::decide(&limiter, &self.clock, quota))
    }
}

/// Why a counter gave no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The key or policy is one the host cannot honour; the plugin gets why.
    Refused(String),
    /// The store did not answer (what happens then is `failure::OnFailure`'s).
    Unavailable,
}

impl From<String> for Fault {
    fn from(why: String) -> Self {
        Fault::Refused(why)
    }
}

impl Fault {
    /// What the plugin is told.
    fn into_message(self) -> String {
        match self {
            Fault::Refused(why) => why,
            Fault::Unavailable => "the shared store did not answer".to_string(),
        }
    }
}

/// A check's decision, or why there is none.
pub type Decided = Result<Decision, Fault>;
/// What a backend's check returns.
pub type Checked<'a> = BoxFuture<'a, Decided>;
/// What a backend's quota count returns.
pub type Counted<'a> = BoxFuture<'a, Result<QuotaDecision, Fault>>;

/// Where one entry's rate-limit counters live.
pub trait LimitBackend: Send + Sync {
    /// Checks `key` under `policy` in `at`'s namespace, counting the request
    /// when it is allowed.
    fn check<'a>(&'a self, at: Scope<'a>, key: &'a str, policy: Policy) -> Checked<'a>;

    /// Counts one request against `quota` for `key` in the calendar window
    /// holding `now_ms`; refused requests are not counted.
    fn count<'a>(&'a self, at: Scope<'a>, key: &'a str, quota: Quota, now: u64) -> Counted<'a>;

    /// The decision of [`LimitBackend::check`] at once, when the backend
    /// waits on nothing (the local counters): a check on the hot path then
    /// costs no boxed future. `None` for a backend that must be awaited.
    fn check_now(&self, at: Scope<'_>, key: &str, policy: Policy) -> Option<Decided> {
        let _ = (at, key, policy);
        None
    }
}

impl LimitBackend for LocalLimits {
    fn check_now(&self, at: Scope<'_>, key: &str, policy: Policy) -> Option<Decided> {
        Some(LocalLimits::check(self, at.namespace, key, policy).map_err(Fault::from))
    }

    fn check<'a>(&'a self, at: Scope<'a>, key: &'a str, policy: Policy) -> Checked<'a> {
        ready(LocalLimits::check(self, at.namespace, key, policy).map_err(Fault::from))
    }

    fn count<'a>(&'a self, at: Scope<'a>, key: &'a str, quota: Quota, now: u64) -> Counted<'a> {
        ready(LocalLimits::count(self, at.namespace, key, quota, now).map_err(Fault::from))
    }
}

/// The counters of the entries with `store = "redis"`.
pub struct RedisLimits(pub Arc<RedisStore>);

impl LimitBackend for RedisLimits {
    fn check<'a>(&'a self, at: Scope<'a>, key: &'a str, policy: Policy) -> Checked<'a> {
        Box::pin(async move {
            validate(key, policy)?;
            let answer = at.io.around(self.0.check(at.namespace, key, policy));
            answer.await.map_err(|_| Fault::Unavailable)
        })
    }

    fn count<'a>(&'a self, at: Scope<'a>, key: &'a str, quota: Quota, now: u64) -> Counted<'a> {
        Box::pin(async move {
            check_key(key)?;
            let answer = at.io.around(self.0.count(at.namespace, key, quota, now));
            answer.await.map_err(|_| Fault::Unavailable)
        })
    }
}

/// The plugin's answer for `decided`, counted in `outcomes` as allowed or
/// refused; when there is no decision, why, in the plugin's words.
fn answer<D, W: From<D>>(
    outcomes: &Family<Label, Counter>,
    decided: Result<D, Fault>,
    allowed: fn(&D) -> bool,
) -> Result<W, String> {
    let decision = decided.map_err(Fault::into_message)?;
    let outcome = if allowed(&decision) {
        "allowed"
    } else {
        "refused"
    };
    Metrics::count(outcomes, outcome);
    Ok(W::from(decision))
}

impl From<Decision> for rate_limit::Decision {
    fn from(decision: Decision) -> Self {
        let Decision {
            allowed,
            limit,
            remaining,
            retry_after,
            reset,
        } = decision;
        let (retry_after_ms, reset_ms) = (millis(retry_after), millis(reset));
        rate_limit::Decision {
            allowed,
            limit,
            remaining,
            retry_after_ms,
            reset_ms,
        }
    }
}

impl From<QuotaDecision> for rate_limit::QuotaDecision {
    fn from(counted: QuotaDecision) -> Self {
        let reset_ms = millis(counted.reset);
        let QuotaDecision {
            allowed,
            limit,
            remaining,
            ..
        } = counted;
        rate_limit::QuotaDecision {
            allowed,
            limit,
            remaining,
            reset_ms,
        }
    }
}

/// What the `rate-limit` host functions serve from, borrowed for one call.
pub type RateLimitView<'a> = StoreView<'a, dyn LimitBackend>;

/// The `rate-limit` interface's data in the linker: a [`RateLimitView`].
pub struct HasRateLimit;

impl HasData for HasRateLimit {
    type Data<'a> = RateLimitView<'a>;
}

impl rate_limit::Host for RateLimitView<'_> {
    async fn check(&mut self, key: String, rate: types::Rate) -> Result<WitDecision, String> {
        let policy = Policy {
            limit: rate.limit,
            period: Duration::from_millis(rate.period_ms),
            burst: rate.burst,
        };
        let (limits, at) = (self.backend, self.at);
        let decided = match limits.check_now(at, &key, policy) {
            Some(decided) => decided,
            None => limits.check(at, &key, policy).await,
        };
        answer(&metrics().rate_limit_checks, decided, |d| d.allowed)
    }

    async fn count(&mut self, key: String, quota: types::Quota) -> Result<WitQuota, String> {
        let period = match quota.period {
            types::QuotaPeriod::Day => crate::config::QuotaPeriod::Day,
            types::QuotaPeriod::Week => crate::config::QuotaPeriod::Week,
            types::QuotaPeriod::Month => crate::config::QuotaPeriod::Month,
        };
        let quota = Quota {
            limit: quota.limit,
            period,
        };
        let now_ms = millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let counted = self.backend.count(self.at, &key, quota, now_ms).await;
        answer(&metrics().quota_counts, counted, |d| d.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits() -> (LocalLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (LocalLimits::with_clock(clock.clone(), 1000), clock)
    }

    fn policy(limit: u32, period_ms: u64, burst: u32) -> Policy {
        Policy {
            limit,
            period: Duration::from_millis(period_ms),
            burst,
        }
    }

    #[test]
    fn exactly_the_burst_passes_then_one_per_interval() {
        let (limits, clock) = limits();
        let ns: Arc<str> = Arc::from("p");
        let p = policy(10, 1000, 5);
        for expected_remaining in (0..5).rev() {
            let d = limits.check(&ns, "k", p).unwrap_or_else(|e| panic!("{e}"));
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining), (5, expected_remaining));
        }
        let refused = limits.check(&ns, "k", p).unwrap_or_else(|e| panic!("{e}"));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        // One interval later exactly one more passes.
        clock.advance(Duration::from_millis(99));
        assert!(!limits.check(&ns, "k", p).is_ok_and(|d| d.allowed));
        clock.advance(Duration::from_millis(1));
        assert!(limits.check(&ns, "k", p).is_ok_and(|d| d.allowed));
        assert!(!limits.check(&ns, "k", p).is_ok_and(|d| d.allowed));
        // After a full period the whole burst is back.
        clock.advance(Duration::from_secs(1));
        let passed = (0..10)
            .filter(|_| limits.check(&ns, "k", p).is_ok_and(|d| d.allowed))
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn keys_namespaces_and_policies_are_separate() {
        let (limits, _) = limits();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let p = policy(1, 60_000, 1);
        assert!(limits.check(&a, "k", p).is_ok_and(|d| d.allowed));
        assert!(!limits.check(&a, "k", p).is_ok_and(|d| d.allowed));
        assert!(limits.check(&a, "other", p).is_ok_and(|d| d.allowed));
        assert!(limits.check(&b, "k", p).is_ok_and(|d| d.allowed));
        assert!(
            limits
                .check(&a, "k", policy(2, 60_000, 2))
                .is_ok_and(|d| d.allowed)
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let (limits, _) = limits();
        let ns: Arc<str> = Arc::from("p");
        assert!(limits.check(&ns, "k", policy(0, 1000, 1)).is_err());
        assert!(limits.check(&ns, "k", policy(1, 0, 1)).is_err());
        assert!(limits.check(&ns, "k", policy(1, 1000, 0)).is_err());
        assert!(limits.check(&ns, "k", policy(1, 86_400_001, 1)).is_err());
        assert!(
            limits
                .check(&ns, &"k".repeat(513), policy(1, 1000, 1))
                .is_err()
        );
    }

    #[test]
    fn quotas_count_per_calendar_window() {
        use plugin_shared::rate_limit::QuotaPeriod;
        let (limits, _) = limits();
        let ns: Arc<str> = Arc::from("p");
        let quota = Quota {
            limit: 2,
            period: QuotaPeriod::Day,
        };
        // 2026-11-25 23:59:59.000 UTC, then a second later (the next day).
        let late = 1_795_651_199_000;
        let check = |key: &str, now: u64| {
            limits
                .count(&ns, key, quota, now)
                .map(|d| (d.allowed, d.remaining, d.reset.as_millis()))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(check("k", late), (true, 1, 1000));
        assert_eq!(check("k", late), (true, 0, 1000));
        assert_eq!(check("k", late), (false, 0, 1000));
        assert_eq!(check("other", late), (true, 1, 1000));
        assert_eq!(check("k", late + 1000), (true, 1, 86_400_000));
    }

    #[test]
    fn rotating_keys_stay_bounded() {
        let limits = LocalLimits::with_clock(FakeRelativeClock::default(), 100);
        let ns: Arc<str> = Arc::from("p");
        for i in 0..10_000 {
            let _ = limits.check(&ns, &format!("k{i}"), policy(1, 1000, 1));
        }
        limits.limiters.run_pending_tasks();
        assert!(limits.limiters.entry_count() <= 100);
    }
}

//! Rate limits on counters the gateway keeps (GCRA), shared by every instance
//! of the plugin. Needs the `rate-limit` grant.
//!
//! Natively the counters live in this thread and run on the real clock, with
//! the same algorithm and answers as the gateway.

use std::time::Duration;

/// `limit` requests per `period`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Requests per period.
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// Requests allowed at once (at least 1; usually `limit`).
    pub burst: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// The burst capacity.
    pub limit: u32,
    /// Requests that could pass now after this one.
    pub remaining: u32,
    /// When refused: time until one request would pass.
    pub retry_after: Duration,
    /// Time until the full burst is available again.
    pub reset: Duration,
}

/// Checks `key` against `policy` and, when allowed, counts the request.
pub fn check(key: &str, policy: Policy) -> Result<Decision, String> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::gateway::plugin::rate_limit as wit;
        let policy = wit::Policy {
            limit: policy.limit,
            period_ms: u64::try_from(policy.period.as_millis()).unwrap_or(u64::MAX),
            burst: policy.burst,
        };
        wit::check(key, policy).map(|d| Decision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            retry_after: Duration::from_millis(d.retry_after_ms),
            reset: Duration::from_millis(d.reset_ms),
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    native::check(key, policy)
}

/// The GCRA arithmetic, on governor, shared with the gateway's host side so a
/// plugin's native tests and the gateway decide alike. Not part of the API.
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub mod native {
    use super::{Decision, Policy};
    use governor::clock::{Clock, DefaultClock};
    use governor::middleware::StateInformationMiddleware;
    use governor::state::{InMemoryState, NotKeyed};
    use governor::{Quota, RateLimiter};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::num::NonZeroU32;
    use std::rc::Rc;
    use std::time::Duration;

    /// A limiter for one key under one policy.
    pub type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

    /// The governor quota for `policy`, checked.
    pub fn quota(policy: Policy) -> Result<Quota, String> {
        let limit =
            NonZeroU32::new(policy.limit).ok_or("a rate limit needs a limit of at least 1")?;
        let burst =
            NonZeroU32::new(policy.burst).ok_or("a rate limit needs a burst of at least 1")?;
        if policy.period.is_zero() || policy.period > Duration::from_secs(86_400) {
            return Err("a rate limit's period must be between 1 ms and a day".into());
        }
        Quota::with_period(policy.period / limit.get())
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| "the rate is too high to measure (under 1 ns per request)".into())
    }

    /// Checks one request against `limiter` (made from `quota` on `clock`).
    pub fn decide<C: Clock>(limiter: &Limiter<C>, clock: &C, quota: Quota) -> Decision {
        let burst = quota.burst_size().get();
        let interval = quota.replenish_interval();
        match limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: burst,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset: interval * (burst - remaining),
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(clock.now());
                Decision {
                    allowed: false,
                    limit: burst,
                    remaining: 0,
                    retry_after,
                    reset: retry_after + interval * (burst - 1),
                }
            }
        }
    }

    /// This thread's limiters by policy and key.
    type Limiters = HashMap<(Policy, String), Rc<Limiter<DefaultClock>>>;

    thread_local! {
        static LIMITERS: RefCell<Limiters> = RefCell::new(HashMap::new());
    }

    pub(super) fn check(key: &str, policy: Policy) -> Result<Decision, String> {
        let quota = quota(policy)?;
        let clock = DefaultClock::default();
        let limiter = LIMITERS.with_borrow_mut(|all| {
            all.entry((policy, key.to_string()))
                .or_insert_with(|| {
                    Rc::new(RateLimiter::direct_with_clock(quota, clock.clone()).with_middleware())
                })
                .clone()
        });
        Ok(decide(&limiter, &clock, quota))
    }
}

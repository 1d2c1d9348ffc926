//! Rate limits on counters the gateway keeps (GCRA), shared by every instance
//! of the plugin. Needs the `rate-limit` grant.
//!
//! Natively the counters live in this thread and run on the real clock, with
//! the same algorithm, checks and answers as the gateway (`plugin-shared`): a
//! key over 512 bytes or a policy the host cannot honour is refused with the
//! host's message, and a policy's period is cut to whole milliseconds first,
//! as it is on its way to the gateway.

pub use plugin_shared::rate_limit::{Decision, Policy, Quota, QuotaDecision, QuotaPeriod};
#[cfg(target_arch = "wasm32")]
use std::time::Duration;

/// Counts one request against `quota` for `key` when it is allowed; a refused
/// request is not counted.
pub fn count(key: &str, quota: Quota) -> Result<QuotaDecision, String> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::gateway::plugin::rate_limit as wit;
        use crate::bindings::gateway::plugin::types::QuotaPeriod as Wit;
        let period = match quota.period {
            QuotaPeriod::Day => Wit::Day,
            QuotaPeriod::Week => Wit::Week,
            QuotaPeriod::Month => Wit::Month,
        };
        let quota = crate::bindings::gateway::plugin::types::Quota {
            limit: quota.limit,
            period,
        };
        wit::count(key, quota).map(|d| QuotaDecision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset: Duration::from_millis(d.reset_ms),
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    native::count(key, quota)
}

/// Checks `key` against `policy` and, when allowed, counts the request.
pub fn check(key: &str, policy: Policy) -> Result<Decision, String> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::gateway::plugin::rate_limit as wit;
        let policy = crate::bindings::gateway::plugin::types::Rate {
            limit: policy.limit,
            period_ms: plugin_shared::limits::millis(policy.period),
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

/// This thread's counters, deciding with the gateway's own code.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{Decision, Policy, Quota, QuotaDecision};
    use plugin_shared::rate_limit::native::{DefaultClock, Limiter, decide, limiter, validate};
    use plugin_shared::rate_limit::{as_sent, check_key, quota_decision, window};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    /// This thread's quota counts by key, quota and window start.
    type Counts = HashMap<(String, Quota, u64), u64>;

    thread_local! {
        static COUNTS: RefCell<Counts> = RefCell::new(HashMap::new());
    }

    pub(super) fn count(key: &str, quota: Quota) -> Result<QuotaDecision, String> {
        check_key(key)?;
        let now = crate::clock::now_millis();
        let (start, _) = window(quota.period, now);
        COUNTS.with_borrow_mut(|all| {
            let counted = all.entry((key.to_string(), quota, start)).or_insert(0);
            let decision = quota_decision(quota, *counted, now);
            if decision.allowed {
                *counted += 1;
            }
            Ok(decision)
        })
    }

    /// This thread's limiters by policy and key.
    type Limiters = HashMap<(Policy, String), Rc<Limiter<DefaultClock>>>;

    thread_local! {
        static LIMITERS: RefCell<Limiters> = RefCell::new(HashMap::new());
    }

    pub(super) fn check(key: &str, policy: Policy) -> Result<Decision, String> {
        // What the gateway receives: the period in whole milliseconds.
        let policy = as_sent(policy);
        let quota = validate(key, policy)?;
        let clock = DefaultClock::default();
        let limiter = LIMITERS.with_borrow_mut(|all| {
            all.entry((policy, key.to_string()))
                .or_insert_with(|| Rc::new(limiter(quota, clock.clone())))
                .clone()
        });
        Ok(decide(&limiter, &clock, quota))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_allowed_requests_only() {
        let quota = Quota {
            limit: 3,
            period: QuotaPeriod::Day,
        };
        let results: Vec<(bool, u64)> = (0..5)
            .map(|_| count("quota-test", quota).map(|d| (d.allowed, d.remaining)))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(
            results,
            [(true, 2), (true, 1), (true, 0), (false, 0), (false, 0)]
        );
    }
}

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

/// A calendar period of a quota, in UTC; weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    /// A calendar day.
    Day,
    /// Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

/// At most `limit` requests per calendar `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
}

/// The outcome of one quota count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests per period.
    pub limit: u64,
    /// Requests left in this period after this one.
    pub remaining: u64,
    /// Time until the period ends and the count starts again.
    pub reset: Duration,
}

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
    use super::{Decision, Policy, Quota, QuotaDecision, QuotaPeriod};
    use governor::clock::{Clock, DefaultClock};
    use governor::middleware::StateInformationMiddleware;
    use governor::state::{InMemoryState, NotKeyed};
    use governor::{Quota as Gcra, RateLimiter};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::num::NonZeroU32;
    use std::rc::Rc;
    use std::time::Duration;

    /// A limiter for one key under one policy.
    pub type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

    /// The governor quota for `policy`, checked.
    pub fn quota(policy: Policy) -> Result<Gcra, String> {
        let limit =
            NonZeroU32::new(policy.limit).ok_or("a rate limit needs a limit of at least 1")?;
        let burst =
            NonZeroU32::new(policy.burst).ok_or("a rate limit needs a burst of at least 1")?;
        if policy.period.is_zero() || policy.period > Duration::from_secs(86_400) {
            return Err("a rate limit's period must be between 1 ms and a day".into());
        }
        Gcra::with_period(policy.period / limit.get())
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| "the rate is too high to measure (under 1 ns per request)".into())
    }

    /// Checks one request against `limiter` (made from `quota` on `clock`).
    pub fn decide<C: Clock>(limiter: &Limiter<C>, clock: &C, quota: Gcra) -> Decision {
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

    /// The calendar period containing `now_ms` (milliseconds since the Unix
    /// epoch, UTC) as `(start_ms, end_ms)`.
    pub fn window(period: QuotaPeriod, now_ms: u64) -> (u64, u64) {
        const DAY: u64 = 86_400_000;
        let day = now_ms / DAY;
        match period {
            QuotaPeriod::Day => (day * DAY, (day + 1) * DAY),
            QuotaPeriod::Week => {
                // 1970-01-01 was a Thursday: Monday is three days later.
                let week = (day + 3) / 7 * 7;
                (week.saturating_sub(3) * DAY, (week + 4) * DAY)
            }
            QuotaPeriod::Month => {
                let (year, month) = year_month(day);
                let start = days_from_civil(year, month);
                let end = if month == 12 {
                    days_from_civil(year + 1, 1)
                } else {
                    days_from_civil(year, month + 1)
                };
                (start * DAY, end * DAY)
            }
        }
    }

    /// The (year, month) of a day counted from 1970-01-01 (the civil calendar
    /// algorithm of Howard Hinnant's `chrono`-compatible date library).
    fn year_month(days: u64) -> (u64, u64) {
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        (year, month)
    }

    /// Days from 1970-01-01 to the first of `month` in `year`.
    fn days_from_civil(year: u64, month: u64) -> u64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y / 400;
        let yoe = y - era * 400;
        let mp = if month > 2 { month - 3 } else { month + 9 };
        let doy = (153 * mp + 2) / 5;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Counts against `quota` in the window containing `now_ms`, given the
    /// count so far in that window.
    pub fn quota_decision(quota: Quota, counted: u64, now_ms: u64) -> QuotaDecision {
        let (_, end) = window(quota.period, now_ms);
        let allowed = counted < quota.limit;
        let used = if allowed { counted + 1 } else { counted };
        QuotaDecision {
            allowed,
            limit: quota.limit,
            remaining: quota.limit.saturating_sub(used),
            reset: Duration::from_millis(end.saturating_sub(now_ms)),
        }
    }

    /// This thread's quota counts by key, quota and window start.
    type Counts = HashMap<(String, Quota, u64), u64>;

    thread_local! {
        static COUNTS: RefCell<Counts> = RefCell::new(HashMap::new());
    }

    pub(super) fn count(key: &str, quota: Quota) -> Result<QuotaDecision, String> {
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

#[cfg(test)]
mod tests {
    use super::native::window;
    use super::*;

    const DAY: u64 = 86_400_000;

    #[test]
    fn calendar_windows_are_utc_days_monday_weeks_and_months() {
        // 2026-11-25 19:00 UTC, a Wednesday.
        let now = 1_795_633_200_000;
        let today = 1_795_564_800_000;
        assert_eq!(window(QuotaPeriod::Day, now), (today, today + DAY));
        assert_eq!(
            window(QuotaPeriod::Week, now),
            (today - 2 * DAY, today + 5 * DAY)
        );
        // November 2026 starts on 1_793_491_200 and December on 1_796_083_200.
        assert_eq!(
            window(QuotaPeriod::Month, now),
            (1_793_491_200_000, 1_796_083_200_000)
        );
        // Leap February and the year's end.
        let feb_29_2028 = 1_835_395_200_000;
        assert_eq!(
            window(QuotaPeriod::Month, feb_29_2028),
            (1_832_976_000_000, 1_835_481_600_000)
        );
        let dec_31_2026 = 1_798_675_200_000;
        assert_eq!(window(QuotaPeriod::Month, dec_31_2026).1, 1_798_761_600_000);
        // The epoch itself (a Thursday) is in the week of Monday 1969-12-29,
        // which cannot be represented: the window starts at 0.
        assert_eq!(window(QuotaPeriod::Week, 0).1, 4 * DAY);
    }

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

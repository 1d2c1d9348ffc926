//! Rate limits: the policy and quota types both sides name, and the
//! arithmetic that decides them. The gateway's local and Redis backends and
//! the SDK's native counters all decide with this code, so a plugin's native
//! tests and the gateway give the same answers.
//!
//! The calendar arithmetic builds everywhere; the GCRA limiter (governor, on
//! a real or fake clock) exists on native targets only.

use crate::limits::RATE_LIMIT_MAX_KEY;
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

/// Checks that `key` fits the host's cap, with the host's message.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() > RATE_LIMIT_MAX_KEY {
        return Err(format!(
            "rate-limit keys are at most {RATE_LIMIT_MAX_KEY} bytes"
        ));
    }
    Ok(())
}

/// `policy` as the host receives it: its period in whole milliseconds (cut,
/// as [`crate::limits::millis`] does), so native code decides on the same
/// period the gateway would.
pub fn as_sent(policy: Policy) -> Policy {
    Policy {
        period: Duration::from_millis(crate::limits::millis(policy.period)),
        ..policy
    }
}

/// The GCRA limiter on governor, for the gateway's local counters and the
/// SDK's native ones.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
    use super::{Decision, Policy, check_key};
    use crate::limits::RATE_LIMIT_MAX_PERIOD;
    use governor::clock::Clock;
    use governor::middleware::StateInformationMiddleware;
    use governor::state::{InMemoryState, NotKeyed};
    use governor::{Quota as Gcra, RateLimiter};
    use std::num::NonZeroU32;
    use std::time::Duration;

    /// The real clock, for limiters outside tests.
    pub use governor::clock::DefaultClock;

    /// A limiter for one key under one policy.
    pub type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

    /// The governor quota for `policy`, checked.
    pub fn quota(policy: Policy) -> Result<Gcra, String> {
        let limit =
            NonZeroU32::new(policy.limit).ok_or("a rate limit needs a limit of at least 1")?;
        let burst =
            NonZeroU32::new(policy.burst).ok_or("a rate limit needs a burst of at least 1")?;
        if policy.period.is_zero() || policy.period > RATE_LIMIT_MAX_PERIOD {
            return Err("a rate limit's period must be between 1 ms and a day".into());
        }
        Gcra::with_period(policy.period / limit.get())
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| "the rate is too high to measure (under 1 ns per request)".into())
    }

    /// Checks that `key` and `policy` can be honoured, on any backend: the
    /// policy first, then the key.
    pub fn validate(key: &str, policy: Policy) -> Result<Gcra, String> {
        let quota = quota(policy)?;
        check_key(key)?;
        Ok(quota)
    }

    /// A fresh limiter for `quota` on `clock`.
    pub fn limiter<C: Clock>(quota: Gcra, clock: C) -> Limiter<C> {
        RateLimiter::direct_with_clock(quota, clock).with_middleware()
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
}

#[cfg(test)]
mod tests {
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
    fn sub_millisecond_periods_are_sent_cut() {
        let policy = Policy {
            limit: 1,
            period: Duration::from_micros(1_500),
            burst: 1,
        };
        assert_eq!(as_sent(policy).period, Duration::from_millis(1));
        let tiny = Policy {
            period: Duration::from_micros(999),
            ..policy
        };
        assert_eq!(as_sent(tiny).period, Duration::ZERO);
    }
}

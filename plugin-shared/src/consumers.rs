//! The usage-plan type: the gateway builds it from `[usage_plans.NAME]` and
//! plugins get it from the `consumers` interface, one type on both sides.

use crate::rate_limit::{Policy, Quota};

/// A usage plan (`[usage_plans.NAME]`): a steady rate and a calendar quota,
/// enforced by the rate-limit plugin for the consumers on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePlan {
    /// The plan's name.
    pub name: String,
    /// The steady rate with its burst.
    pub rate: Option<Policy>,
    /// Requests per calendar period.
    pub quota: Option<Quota>,
}

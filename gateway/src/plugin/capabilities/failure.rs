//! The store-failure policy: what a rate-limit check or quota count does when
//! its shared store cannot answer (the entry's `store_failure`). It never
//! fails the request: the check is admitted (`open`), refused for a second
//! (`closed`), or counted in this process instead (`local`), and each such
//! outcome is counted in the metrics. [`OnFailure`] wraps the Redis backend
//! with it; nothing else decides what a failure means.
//!
//! `kv` and `cache` have no policy to choose: a failed read is a miss and a
//! failed write tells the plugin the store is unavailable.

use super::backend::BoxFuture;
use super::rate_limit::{Decision, Fault, LimitBackend, LocalLimits, Policy, Quota, QuotaDecision};
use crate::config::StoreFailure;
use crate::metrics::{Metrics, metrics};
use crate::plugin::watchdog::IoWaits;
use std::sync::Arc;
use std::time::Duration;

/// What a fail-closed check tells the client to wait.
const FAIL_CLOSED_RETRY: Duration = Duration::from_secs(1);

/// A counter backend whose failures `policy` turns into decisions.
pub struct OnFailure<B> {
    store: B,
    policy: StoreFailure,
    /// Where `StoreFailure::Local` counts.
    local: Arc<LocalLimits>,
}

impl<B: LimitBackend> OnFailure<B> {
    /// `store`, failing as `policy` says (`local` for `StoreFailure::Local`).
    pub fn new(store: B, policy: StoreFailure, local: Arc<LocalLimits>) -> Self {
        OnFailure {
            store,
            policy,
            local,
        }
    }

    /// The label a failure is counted under.
    fn outcome(&self) -> &'static str {
        match self.policy {
            StoreFailure::Open => "failed_open",
            StoreFailure::Closed => "failed_closed",
            StoreFailure::Local => "failed_local",
        }
    }
}

impl<B: LimitBackend> LimitBackend for OnFailure<B> {
    fn check<'a>(
        &'a self,
        io: &'a IoWaits,
        namespace: &'a Arc<str>,
        key: &'a str,
        policy: Policy,
    ) -> BoxFuture<'a, Result<Decision, Fault>> {
        Box::pin(async move {
            let answer = self.store.check(io, namespace, key, policy).await;
            if !matches!(answer, Err(Fault::Unavailable)) {
                return answer;
            }
            Metrics::count(&metrics().rate_limit_checks, self.outcome());
            match self.policy {
                StoreFailure::Open => Ok(Decision {
                    allowed: true,
                    limit: policy.burst,
                    remaining: policy.burst.saturating_sub(1),
                    retry_after: Duration::ZERO,
                    reset: Duration::ZERO,
                }),
                StoreFailure::Closed => Ok(Decision {
                    allowed: false,
                    limit: policy.burst,
                    remaining: 0,
                    retry_after: FAIL_CLOSED_RETRY,
                    reset: FAIL_CLOSED_RETRY,
                }),
                StoreFailure::Local => self
                    .local
                    .check(namespace, key, policy)
                    .map_err(Fault::from),
            }
        })
    }

    fn count<'a>(
        &'a self,
        io: &'a IoWaits,
        namespace: &'a Arc<str>,
        key: &'a str,
        quota: Quota,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<QuotaDecision, Fault>> {
        Box::pin(async move {
            let answer = self.store.count(io, namespace, key, quota, now_ms).await;
            if !matches!(answer, Err(Fault::Unavailable)) {
                return answer;
            }
            Metrics::count(&metrics().quota_counts, self.outcome());
            match self.policy {
                StoreFailure::Open => Ok(QuotaDecision {
                    allowed: true,
                    limit: quota.limit,
                    remaining: quota.limit.saturating_sub(1),
                    reset: Duration::ZERO,
                }),
                StoreFailure::Closed => Ok(QuotaDecision {
                    allowed: false,
                    limit: quota.limit,
                    remaining: 0,
                    reset: FAIL_CLOSED_RETRY,
                }),
                StoreFailure::Local => (self.local)
                    .count(namespace, key, quota, now_ms)
                    .map_err(Fault::from),
            }
        })
    }
}

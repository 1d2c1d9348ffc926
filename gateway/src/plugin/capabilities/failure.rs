//! The store-failure policy: what a rate-limit check or quota count does when
//! its shared store cannot answer (the entry's `store_failure`). It never
//! fails the request: the check is admitted (`open`), refused for a second
//! (`closed`), or counted in this process instead (`local`), and each such
//! outcome is counted in the metrics. [`OnFailure`] wraps the Redis backend
//! with it; nothing else decides what a failure means.
//!
//! `kv` and `cache` have no policy to choose: a failed read is a miss and a
//! failed write tells the plugin the store is unavailable.

use super::backend::Scope;
use super::rate_limit::{
    Checked, Counted, Decision, Fault, LimitBackend, LocalLimits, Policy, Quota, QuotaDecision,
};
use crate::config::StoreFailure;
use crate::metrics::{Label, Metrics, metrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

    /// `answer` when the store gave one; when it did not answer, what the
    /// policy makes of that, counted in `outcomes`: the answer `fallback`
    /// gives for admitting (`open`) or refusing for [`FAIL_CLOSED_RETRY`]
    /// (`closed`), or a count on `local`.
    fn decide<T>(
        &self,
        answer: Result<T, Fault>,
        outcomes: &Family<Label, Counter>,
        fallback: impl FnOnce(bool, Duration) -> T,
        local: impl FnOnce(&LocalLimits) -> Result<T, String>,
    ) -> Result<T, Fault> {
        if !matches!(answer, Err(Fault::Unavailable)) {
            return answer;
        }
        let outcome = match self.policy {
            StoreFailure::Open => "failed_open",
            StoreFailure::Closed => "failed_closed",
            StoreFailure::Local => "failed_local",
        };
        Metrics::count(outcomes, outcome);
        match self.policy {
            StoreFailure::Open => Ok(fallback(true, Duration::ZERO)),
            StoreFailure::Closed => Ok(fallback(false, FAIL_CLOSED_RETRY)),
            StoreFailure::Local => local(&self.local).map_err(Fault::from),
        }
    }
}

impl<B: LimitBackend> LimitBackend for OnFailure<B> {
    fn check<'a>(&'a self, at: Scope<'a>, key: &'a str, policy: Policy) -> Checked<'a> {
        let burst = policy.burst;
        let fallback = move |allowed, wait| Decision {
            allowed,
            limit: burst,
            remaining: if allowed { burst.saturating_sub(1) } else { 0 },
            retry_after: wait,
            reset: wait,
        };
        Box::pin(async move {
            let answer = self.store.check(at, key, policy).await;
            let local = |local: &LocalLimits| local.check(at.namespace, key, policy);
            self.decide(answer, &metrics().rate_limit_checks, fallback, local)
        })
    }

    fn count<'a>(&'a self, at: Scope<'a>, key: &'a str, quota: Quota, now: u64) -> Counted<'a> {
        Box::pin(async move {
            let answer = self.store.count(at, key, quota, now).await;
            let local = |local: &LocalLimits| local.count(at.namespace, key, quota, now);
            let fallback = |allowed, reset| QuotaDecision {
                allowed,
                limit: quota.limit,
                remaining: if allowed {
                    quota.limit.saturating_sub(1)
                } else {
                    0
                },
                reset,
            };
            self.decide(answer, &metrics().quota_counts, fallback, local)
        })
    }
}

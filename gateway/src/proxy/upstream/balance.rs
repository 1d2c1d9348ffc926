//! Target choice and balancing: the targets with what their health checks
//! learned, and the weighted round robin that picks one per attempt among
//! those in rotation and not tried yet.

use super::Upstream;
use super::settings::TargetSpec;
use http::uri::{Authority, Scheme, Uri};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// One target and what passive and active health checking know of it.
pub(super) struct Target {
    /// Its share of the requests, relative to the others' (0: none).
    pub weight: u64,
    /// `http` or `https`.
    pub scheme: Scheme,
    pub authority: Authority,
    /// The authority as a `Host` header value.
    pub host: http::HeaderValue,
    /// `scheme://authority/`, where connections to it are opened.
    pub origin: Uri,
    /// Connections that failed in a row.
    pub failures: AtomicU32,
    /// Milliseconds after `Upstream::born` until which the target is skipped.
    pub out_until: AtomicU64,
    /// Failed its active health checks (and has not passed enough since).
    pub checks_failing: AtomicBool,
}

impl Target {
    /// The target `spec` describes, in rotation.
    pub fn new(spec: &TargetSpec) -> Self {
        Target {
            weight: u64::from(spec.weight),
            scheme: spec.scheme.clone(),
            authority: spec.authority.clone(),
            host: spec.host.clone(),
            origin: spec.origin.clone(),
            failures: AtomicU32::new(0),
            out_until: AtomicU64::new(0),
            checks_failing: AtomicBool::new(false),
        }
    }

    pub fn in_rotation(&self, now: u64) -> bool {
        !self.checks_failing.load(Ordering::Relaxed)
            && self.out_until.load(Ordering::Relaxed) <= now
    }
}

impl Upstream {
    /// The next target to try, weighted round robin over those in rotation
    /// and not `tried` already. When every untried one is out, weighted round
    /// robin over those. Targets of weight 0 are never picked.
    pub(super) fn pick(&self, tried: &[usize]) -> usize {
        let count = self.targets.len();
        if count == 1 {
            // No shared counter to bump (and bounce between cores).
            return 0;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        let now = self.now();
        let untried = |i: &usize| !tried.contains(i);
        let usable = |i: &usize| untried(i) && self.targets[*i].in_rotation(now);
        // Summing first spreads a missing target's share over all the others
        // by their weights, not onto its neighbour. Each cycle of the sum's
        // length gives every candidate exactly its weight's share (and one
        // of weight 0 none).
        let pick_among = |keep: &dyn Fn(&usize) -> bool| {
            let total: u64 = (0..count)
                .filter(|i| keep(i))
                .map(|i| self.targets[i].weight)
                .sum();
            if total == 0 {
                return None;
            }
            let mut left = turn % total;
            (0..count).filter(|i| keep(i)).find(|i| {
                let weight = self.targets[*i].weight;
                if left < weight {
                    return true;
                }
                left -= weight;
                false
            })
        };
        pick_among(&usable)
            .or_else(|| pick_among(&untried))
            .or_else(|| pick_among(&|_| true))
            .unwrap_or(0)
    }
}

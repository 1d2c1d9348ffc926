//! Passive and active health of an upstream's targets.
//!
//! Passive: a target whose connections fail `max_fails` times in a row is
//! skipped for `fail_timeout`, then tried again (one more failure takes it
//! out again; an answer puts it back for good). Active
//! (`[upstreams.NAME.health_check]`): every `interval`, a `GET` of `path` to
//! each target on a connection of its own; `unhealthy` failed checks in a row
//! take a target out, `healthy` passed ones put it back. A reload that
//! rebuilds the upstream carries both verdicts over ([`Upstream::inherit_health`]).

use super::send::error_chain;
use super::settings::HealthCheck;
use super::{Rounds, Upstream};
use crate::body::{self, Body};
use crate::proxy::connect::TimedConnector;
use http::uri::Uri;
use http::{Request, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The client health checks use: a connection per check, not from the pools.
type CheckClient = Client<TimedConnector, Body>;

impl Upstream {
    /// Takes over what `previous`, this upstream as it was before a reload
    /// changed its settings, learned of the targets both have: connections
    /// failed in a row, time left out of rotation, outlier detection's
    /// counts, and (when this one checks health too) failing health checks. A target taken out stays out
    /// instead of getting traffic again because an unrelated setting changed.
    pub fn inherit_health(&self, previous: &Upstream) {
        let checks = self.settings.health_check.is_some() && self.targets.len() > 1;
        let now = Instant::now();
        for target in &self.targets {
            let Some(old) = previous
                .targets
                .iter()
                .find(|old| old.scheme == target.scheme && old.authority == target.authority)
            else {
                continue;
            };
            target
                .failures
                .store(old.failures.load(Ordering::Relaxed), Ordering::Relaxed);
            let until =
                previous.born + Duration::from_millis(old.out_until.load(Ordering::Relaxed));
            // Passive checks and outlier detection both off now: so is
            // their verdict.
            let passive = self.settings.max_fails != 0 || self.settings.outlier_detection.is_some();
            if passive && until > now {
                let until = until.duration_since(self.born).as_millis();
                target
                    .out_until
                    .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            self.inherit_outlier(target, old, previous.born);
            if checks {
                target.checks_failing.store(
                    old.checks_failing.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// A connection to target `index` could not be opened (or broke before
    /// the answer): takes the target out when that makes `max_fails` in a row.
    pub(super) fn failed(&self, index: usize) {
        self.outlier_saw(index, true);
        let target = &self.targets[index];
        let failures = target.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.settings.max_fails;
        if max == 0 || failures < max || self.targets.len() == 1 {
            return;
        }
        let timeout = self.settings.fail_timeout;
        let now = self.now();
        // The later of this and an ejection by outlier detection holds.
        if target
            .out_until
            .fetch_max(now + timeout.as_millis() as u64, Ordering::Relaxed)
            <= now
        {
            self.ejections.inc();
            tracing::warn!(
                upstream = %self.name,
                target = %target.authority,
                failures,
                "target taken out of rotation for {timeout:?} after failed connections"
            );
        }
    }

    /// Target `index` answered with `status`: it is in rotation, and its
    /// failure count starts over; with outlier detection, a 5xx answer counts
    /// against it instead.
    pub(super) fn answered(&self, index: usize, status: http::StatusCode) {
        let error = status.is_server_error() && self.settings.outlier_detection.is_some();
        self.outlier_saw(index, error);
        if error {
            return;
        }
        let target = &self.targets[index];
        // Read first: most answers find nothing to reset, and a load keeps the
        // line shared between cores.
        if target.failures.load(Ordering::Relaxed) != 0 {
            target.failures.store(0, Ordering::Relaxed);
        }
        // An answer ends a `max_fails` ejection, not one by outlier
        // detection: a request sent before it may still come back well.
        let out_until = target.out_until.load(Ordering::Relaxed);
        if out_until != 0 && target.ejected_until.load(Ordering::Relaxed) <= self.now() {
            target.out_until.store(0, Ordering::Relaxed);
        }
    }

    /// Target `index` gave no answer in time: an error for outlier detection.
    pub(super) fn erred(&self, index: usize) {
        self.outlier_saw(index, true);
    }

    /// Starts the health checks in the current runtime, when the config asks
    /// for them and there is more than one target (a lone target is always
    /// tried). The task ends once the upstream is gone.
    pub(super) fn start_health_checks(self: &Arc<Self>) {
        let Some(check) = self.settings.health_check.clone() else {
            return;
        };
        if self.targets.len() < 2 {
            return;
        }
        let mut rounds = Rounds::new(self, check.interval);
        let client: CheckClient = client_builder(self.http2, check.timeout)
            .pool_max_idle_per_host(0)
            .build(self.connector.clone());
        tokio::spawn(async move {
            // Passed (positive) or failed (negative) checks in a row, per target.
            let mut streaks: Vec<i64> = Vec::new();
            while let Some(upstream) = rounds.next().await {
                let outcomes = upstream.check_round(&client, &check).await;
                let Some(upstream) = rounds.upstream() else {
                    return;
                };
                streaks.resize(upstream.targets.len(), 0);
                for (index, passed) in outcomes {
                    let streak = &mut streaks[index];
                    *streak = next_streak(*streak, passed);
                    upstream.checked(index, *streak, &check);
                }
            }
        });
    }

    /// One round of checks, all targets at once (a dead one's timeout delays
    /// no other): whether each passed. Each check holds the upstream only
    /// until it ends; the round's own handle is dropped at once.
    async fn check_round(
        self: Arc<Self>,
        client: &CheckClient,
        check: &HealthCheck,
    ) -> Vec<(usize, bool)> {
        let mut round = tokio::task::JoinSet::new();
        for index in 0..self.targets.len() {
            let (upstream, client, check) = (self.clone(), client.clone(), check.clone());
            round.spawn(async move { (index, upstream.check(&client, index, &check).await) });
        }
        drop(self);
        round.join_all().await
    }

    /// One health check of target `index`: whether it answered 2xx or 3xx in time.
    async fn check(&self, client: &CheckClient, index: usize, check: &HealthCheck) -> bool {
        let target = &self.targets[index];
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(check.path.clone())
            .build();
        let Ok(uri) = uri else {
            return false;
        };
        let mut request = Request::new(body::empty());
        *request.uri_mut() = uri;
        if self.http2 {
            *request.version_mut() = Version::HTTP_2;
        } else {
            request
                .headers_mut()
                .insert(http::header::HOST, target.host.clone());
        }
        let headers = request.headers_mut();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("gateway-health-check"),
        );
        let answer = tokio::time::timeout(check.timeout, client.request(request)).await;
        let passed = matches!(&answer, Ok(Ok(response)) if response.status().is_success() || response.status().is_redirection());
        if !passed {
            let why = match answer {
                Ok(Ok(response)) => format!("status {}", response.status().as_u16()),
                Ok(Err(err)) => error_chain(&err),
                Err(_) => format!("no answer within {:?}", check.timeout),
            };
            tracing::debug!(upstream = %self.name, target = %target.authority, why, "health check failed");
        }
        passed
    }

    /// Applies a check's outcome: `streak` passed (positive) or failed
    /// (negative) checks in a row.
    fn checked(&self, index: usize, streak: i64, check: &HealthCheck) {
        let target = &self.targets[index];
        let failing = target.checks_failing.load(Ordering::Relaxed);
        if !failing && -streak >= i64::from(check.unhealthy) {
            target.checks_failing.store(true, Ordering::Relaxed);
            self.ejections.inc();
            tracing::warn!(
                upstream = %self.name,
                target = %target.authority,
                "target taken out of rotation: it failed {} health checks in a row",
                -streak
            );
        } else if failing && streak >= i64::from(check.healthy) {
            target.checks_failing.store(false, Ordering::Relaxed);
            tracing::info!(
                upstream = %self.name,
                target = %target.authority,
                "target back in rotation: it passed {streak} health checks in a row"
            );
        }
    }
}

/// The streak after a check: passed (positive) or failed (negative) in a row.
fn next_streak(streak: i64, passed: bool) -> i64 {
    match (passed, streak) {
        (true, s) if s > 0 => s + 1,
        (true, _) => 1,
        (false, s) if s < 0 => s - 1,
        (false, _) => -1,
    }
}

/// A client for the upstream's protocol: HTTP/1.1, or HTTP/2 only (prior
/// knowledge over cleartext) whose connections are pinged every `keepalive`
/// and closed when a ping is not answered within as long. Requests share an
/// HTTP/2 connection, so one that died silently (a peer gone, a NAT entry
/// expired) must be found out by the gateway, not by the requests' timeouts.
fn client_builder(http2: bool, keepalive: Duration) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    if http2 {
        builder
            .http2_only(true)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(keepalive)
            .http2_keep_alive_timeout(keepalive)
            .http2_keep_alive_while_idle(true);
    }
    builder
}

//! The host side of `gateway:plugin/http-client`, `kv`, `rate-limit` and
//! `cache`. The last three serve from this process or from Redis, as the
//! entry's `store` says.
//!
//! Time a call spends waiting on the network does not count against its CPU
//! deadline (see `watchdog`), so a plugin is not killed for waiting on a slow
//! server; the request timeout bounds that wait instead.

use super::bindings::gateway::plugin::types::{self, QuotaPeriod, StoreError};
use super::bindings::gateway::plugin::{cache, http_client, kv, rate_limit};
use super::cache::{Entry as CachedEntry, Miss};
use super::host::{HostState, Store};
use super::outbound::{KV_MAX_TTL, OutboundError, check_url};
use super::ratelimit::{Decision, Policy, Quota, QuotaDecision, validate};
use super::redis::{Kind, Match};
use super::wire::{decode_headers, encode_headers};
use crate::config::StoreFailure;
use crate::metrics::{Metrics, metrics};
use bytes::Bytes;
use http_body_util::Full;
use plugin_shared::limits::millis;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn to_wit(error: OutboundError) -> http_client::Error {
    match error {
        OutboundError::NotAllowed(host) => http_client::Error::NotAllowed(host),
        OutboundError::InvalidRequest(why) => http_client::Error::InvalidRequest(why),
        OutboundError::Connect(why) => http_client::Error::Connect(why),
        OutboundError::Timeout => http_client::Error::Timeout,
        OutboundError::TooLarge => http_client::Error::TooLarge,
        OutboundError::Protocol(why) => http_client::Error::Protocol(why),
    }
}

/// What a fail-closed check tells the client to wait.
const FAIL_CLOSED_RETRY: Duration = Duration::from_secs(1);

impl HostState {
    fn log_outbound(&self, url: &str, result: &Result<u16, OutboundError>, started: Instant) {
        let plugin = &*self.plugin;
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(status) => tracing::debug!(plugin, url, status, elapsed_ms, "outbound request"),
            Err(error) => {
                tracing::info!(plugin, url, ?error, elapsed_ms, "outbound request failed")
            }
        }
    }
}

impl http_client::Host for HostState {
    async fn send(
        &mut self,
        mut request: http_client::OutgoingRequest,
    ) -> Result<http_client::IncomingResponse, http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&request.url, &self.env.allowed_hosts).map_err(to_wit)?;
        let headers = decode_headers(std::mem::take(&mut request.headers))
            .map_err(|e| http_client::Error::InvalidRequest(format!("bad headers: {e}")))?;
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| http_client::Error::InvalidRequest("bad method".into()))?;
        let mut outgoing = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(request.body.unwrap_or_default())))
            .map_err(|e| http_client::Error::InvalidRequest(e.to_string()))?;
        *outgoing.headers_mut() = headers;
        outgoing.headers_mut().remove(http::header::HOST);
        let timeout = request
            .timeout_ms
            .map_or(super::outbound::MAX_TIMEOUT, |ms| {
                Duration::from_millis(u64::from(ms))
            });
        let services = self.env.services.clone();
        let result = self
            .io
            .around(services.send(outgoing, timeout, self.env.max_body))
            .await;
        self.log_outbound(
            &request.url,
            &result.as_ref().map(|a| a.status).map_err(Clone::clone),
            started,
        );
        let answer = result.map_err(to_wit)?;
        Ok(http_client::IncomingResponse {
            status: answer.status,
            headers: encode_headers(&answer.headers),
            body: answer.body.to_vec(),
        })
    }

    async fn fetch_shared(
        &mut self,
        url: String,
        max_age_ms: u64,
    ) -> Result<(Vec<u8>, u64), http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&url, &self.env.allowed_hosts).map_err(to_wit)?;
        let services = self.env.services.clone();
        let namespace = self.env.namespace.clone();
        let result = self
            .io
            .around(services.fetch_shared(
                &namespace,
                uri,
                Duration::from_millis(max_age_ms),
                self.env.max_body,
            ))
            .await;
        self.log_outbound(
            &url,
            &result.as_ref().map(|_| 200).map_err(Clone::clone),
            started,
        );
        let (body, age) = result.map_err(to_wit)?;
        Ok((
            body.to_vec(),
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        match self.env.store.clone() {
            Store::Local => self.env.services.kv_get(&self.env.namespace, key),
            Store::Redis { redis, .. } => {
                let found = self
                    .io
                    .around(redis.get(Kind::Kv, &self.env.namespace, &key))
                    .await;
                found.ok().flatten()
            }
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), StoreError> {
        // The same check as the SDK's native kv.
        if let Some(refused) = plugin_shared::store::kv_refusal(&key, value.len(), ttl_ms) {
            return Err(super::cache::store_error(refused));
        }
        let ttl = Duration::from_millis(ttl_ms);
        match self.env.store.clone() {
            Store::Local => {
                self.env
                    .services
                    .kv_set(&self.env.namespace, key, value, ttl);
                Ok(())
            }
            Store::Redis { redis, .. } => {
                let stored = self
                    .io
                    .around(redis.set(
                        Kind::Kv,
                        &self.env.namespace,
                        &key,
                        &value,
                        ttl.min(KV_MAX_TTL),
                    ))
                    .await;
                stored.map_err(|e| unavailable(&e))
            }
        }
    }

    async fn delete(&mut self, key: String) {
        match self.env.store.clone() {
            Store::Local => self.env.services.kv_delete(&self.env.namespace, key),
            Store::Redis { redis, .. } => {
                let _ = self
                    .io
                    .around(redis.delete(Kind::Kv, &self.env.namespace, &key))
                    .await;
            }
        }
    }
}

impl rate_limit::Host for HostState {
    async fn check(
        &mut self,
        key: String,
        policy: types::Rate,
    ) -> Result<rate_limit::Decision, String> {
        let policy = Policy {
            limit: policy.limit,
            period: Duration::from_millis(policy.period_ms),
            burst: policy.burst,
        };
        let limits = &self.env.services.limits;
        let checks = &metrics().rate_limit_checks;
        let decision = match self.env.store.clone() {
            Store::Local => limits.check(&self.env.namespace, &key, policy)?,
            Store::Redis { redis, on_failure } => {
                validate(&key, policy)?;
                let answer = self
                    .io
                    .around(redis.check(&self.env.namespace, &key, policy))
                    .await;
                if answer.is_err() {
                    Metrics::count(checks, failure_outcome(on_failure));
                }
                match (answer, on_failure) {
                    (Ok(decision), _) => decision,
                    (Err(_), StoreFailure::Open) => Decision {
                        allowed: true,
                        limit: policy.burst,
                        remaining: policy.burst.saturating_sub(1),
                        retry_after: Duration::ZERO,
                        reset: Duration::ZERO,
                    },
                    (Err(_), StoreFailure::Closed) => Decision {
                        allowed: false,
                        limit: policy.burst,
                        remaining: 0,
                        retry_after: FAIL_CLOSED_RETRY,
                        reset: FAIL_CLOSED_RETRY,
                    },
                    (Err(_), StoreFailure::Local) => {
                        self.env
                            .services
                            .limits
                            .check(&self.env.namespace, &key, policy)?
                    }
                }
            }
        };
        Metrics::count(checks, allowed_outcome(decision.allowed));
        Ok(rate_limit::Decision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            retry_after_ms: millis(decision.retry_after),
            reset_ms: millis(decision.reset),
        })
    }

    async fn count(
        &mut self,
        key: String,
        quota: types::Quota,
    ) -> Result<rate_limit::QuotaDecision, String> {
        let quota = Quota {
            limit: quota.limit,
            period: match quota.period {
                QuotaPeriod::Day => crate::config::QuotaPeriod::Day,
                QuotaPeriod::Week => crate::config::QuotaPeriod::Week,
                QuotaPeriod::Month => crate::config::QuotaPeriod::Month,
            },
        };
        let now_ms = millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let limits = &self.env.services.limits;
        let counts = &metrics().quota_counts;
        let decision = match self.env.store.clone() {
            Store::Local => limits.count(&self.env.namespace, &key, quota, now_ms)?,
            Store::Redis { redis, on_failure } => {
                plugin_shared::rate_limit::check_key(&key)?;
                let answer = self
                    .io
                    .around(redis.count(&self.env.namespace, &key, quota, now_ms))
                    .await;
                if answer.is_err() {
                    Metrics::count(counts, failure_outcome(on_failure));
                }
                match (answer, on_failure) {
                    (Ok(decision), _) => decision,
                    (Err(_), StoreFailure::Open) => QuotaDecision {
                        allowed: true,
                        limit: quota.limit,
                        remaining: quota.limit.saturating_sub(1),
                        reset: Duration::ZERO,
                    },
                    (Err(_), StoreFailure::Closed) => QuotaDecision {
                        allowed: false,
                        limit: quota.limit,
                        remaining: 0,
                        reset: FAIL_CLOSED_RETRY,
                    },
                    (Err(_), StoreFailure::Local) => {
                        self.env
                            .services
                            .limits
                            .count(&self.env.namespace, &key, quota, now_ms)?
                    }
                }
            }
        };
        Metrics::count(counts, allowed_outcome(decision.allowed));
        Ok(rate_limit::QuotaDecision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_ms: millis(decision.reset),
        })
    }
}

/// A store's failure as a plugin learns it: that the store is unreachable,
/// not the Redis client's words (addresses, internals), which go to the log.
fn unavailable(error: &dyn std::fmt::Display) -> StoreError {
    tracing::warn!(%error, "a plugin's store write failed");
    StoreError::Unavailable("the shared store did not answer".to_string())
}

fn allowed_outcome(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "refused" }
}

fn failure_outcome(on_failure: StoreFailure) -> &'static str {
    match on_failure {
        StoreFailure::Open => "failed_open",
        StoreFailure::Closed => "failed_closed",
        StoreFailure::Local => "failed_local",
    }
}

impl HostState {
    /// The cached entry under `key`, from the entry's store.
    async fn cached(&mut self, key: &str) -> Option<cache::Entry> {
        let entry = match self.env.store.clone() {
            Store::Local => self
                .env
                .services
                .response_cache()
                .get(&self.env.namespace, key)?,
            Store::Redis { redis, .. } => {
                let found = self
                    .io
                    .around(redis.get(Kind::Cache, &self.env.namespace, key))
                    .await;
                Arc::new(CachedEntry::decode(&found.ok().flatten()?)?)
            }
        };
        Some(cache::Entry {
            status: entry.status,
            headers: entry.headers.to_vec(),
            body: entry.body.to_vec(),
            stored_at_ms: entry.stored_at_ms,
            vary: entry.vary.clone(),
        })
    }
}

impl cache::Host for HostState {
    async fn lookup(&mut self, key: String, wait_ms: u32) -> Option<cache::Entry> {
        let lookups = &metrics().cache_lookups;
        if let Some(found) = self.cached(&key).await {
            Metrics::count(lookups, "hit");
            return Some(found);
        }
        let wait =
            Duration::from_millis(u64::from(wait_ms)).min(plugin_shared::limits::CACHE_MAX_WAIT);
        if wait.is_zero() {
            Metrics::count(lookups, "miss");
            return None;
        }
        let services = self.env.services.clone();
        match services
            .response_cache()
            .miss(&self.env.namespace, &key, wait)
        {
            Miss::Fill(fill) => {
                self.context.start_fill(&self.env.namespace, &key, fill);
                Metrics::count(lookups, "miss");
                None
            }
            Miss::Wait(done, until) => {
                self.io.around(super::cache::wait(done, until)).await;
                let found = self.cached(&key).await;
                Metrics::count(
                    lookups,
                    if found.is_some() {
                        "collapsed_hit"
                    } else {
                        "miss"
                    },
                );
                found
            }
        }
    }

    async fn put(
        &mut self,
        key: String,
        entry: cache::Entry,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let services = self.env.services.clone();
        let local = services.response_cache();
        let entry = CachedEntry {
            status: entry.status,
            headers: entry.headers.into(),
            body: entry.body.into(),
            stored_at_ms: entry.stored_at_ms,
            vary: entry.vary,
        };
        let ttl = Duration::from_millis(ttl_ms).min(super::cache::MAX_TTL);
        let stored = match super::cache::refusal(&key, &entry, local.max_entry(), ttl) {
            Some(refused) => Err(refused),
            None => match self.env.store.clone() {
                Store::Local => {
                    local.put(&self.env.namespace, &key, entry, ttl);
                    Ok(())
                }
                Store::Redis { redis, .. } => {
                    let encoded = entry.encode();
                    let set = redis.set(Kind::Cache, &self.env.namespace, &key, &encoded, ttl);
                    let done = self.io.around(set).await;
                    done.map_err(|e| unavailable(&e))
                }
            },
        };
        if let Some(fill) = self.context.take_fill(&self.env.namespace, &key) {
            local.end_fill(&self.env.namespace, &key, fill);
        }
        if stored.is_ok() {
            metrics().cache_stores.inc();
        }
        stored
    }

    fn release(&mut self, key: String) {
        if let Some(fill) = self.context.take_fill(&self.env.namespace, &key) {
            self.env
                .services
                .response_cache()
                .end_fill(&self.env.namespace, &key, fill);
        }
    }

    async fn purge(&mut self, key: String) {
        match self.env.store.clone() {
            Store::Local => self
                .env
                .services
                .response_cache()
                .purge(&self.env.namespace, &key),
            Store::Redis { redis, .. } => {
                let namespace = self.env.namespace.clone();
                self.io
                    .around(async {
                        let _ = redis.delete(Kind::Cache, &namespace, &key).await;
                        let _ = redis
                            .purge(
                                Kind::Cache,
                                Some(&namespace),
                                &format!("{key}\n"),
                                Match::Prefix,
                            )
                            .await;
                    })
                    .await;
            }
        }
    }
}

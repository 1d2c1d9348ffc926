//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! One registry for the process. Counters are bumped where things happen;
//! gauges that describe state (cache size) are read when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::{LazyLock, Mutex};

/// One label.
type Label = [(&'static str, &'static str); 1];

/// The process's metrics.
pub struct Metrics {
    /// Rate-limit checks by outcome: `allowed`, `refused`, or on a Redis
    /// failure `failed_open`, `failed_closed`, `failed_local`.
    pub rate_limit_checks: Family<Label, Counter>,
    /// Quota counts by outcome, as rate-limit checks.
    pub quota_counts: Family<Label, Counter>,
    /// Cache lookups by result: `hit`, `miss`, `collapsed_hit` (served from
    /// another request's fill).
    pub cache_lookups: Family<Label, Counter>,
    /// Responses stored in the cache.
    pub cache_stores: Counter,
    /// Redis operations that failed or timed out.
    pub redis_failures: Counter,
    /// Config reloads by outcome: `ok`, `rejected`.
    pub reloads: Family<Label, Counter>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    registry: Mutex<Registry>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let metrics = Metrics {
            rate_limit_checks: Family::default(),
            quota_counts: Family::default(),
            cache_lookups: Family::default(),
            cache_stores: Counter::default(),
            redis_failures: Counter::default(),
            reloads: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            registry: Mutex::new(Registry::with_prefix("gateway")),
        };
        {
            let mut registry = metrics.registry.lock().unwrap_or_else(|p| p.into_inner());
            registry.register(
                "rate_limit_checks",
                "Rate-limit checks by outcome",
                metrics.rate_limit_checks.clone(),
            );
            registry.register(
                "quota_counts",
                "Usage-plan quota counts by outcome",
                metrics.quota_counts.clone(),
            );
            registry.register(
                "cache_lookups",
                "Response cache lookups by result",
                metrics.cache_lookups.clone(),
            );
            registry.register(
                "cache_stores",
                "Responses stored in the cache",
                metrics.cache_stores.clone(),
            );
            registry.register(
                "redis_failures",
                "Redis operations that failed or timed out",
                metrics.redis_failures.clone(),
            );
            registry.register(
                "reloads",
                "Config reloads by outcome",
                metrics.reloads.clone(),
            );
            registry.register(
                "cache_entries",
                "Responses held in this process's cache",
                metrics.cache_entries.clone(),
            );
            registry.register(
                "cache_bytes",
                "Bytes held in this process's cache",
                metrics.cache_bytes.clone(),
            );
        }
        metrics
    }

    /// Counts one event of `family` with `outcome`.
    pub fn count(family: &Family<Label, Counter>, outcome: &'static str) {
        family.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// The text exposition, with the cache gauges read now.
    pub fn render(&self, cache_usage: (u64, u64)) -> String {
        self.cache_entries
            .set(i64::try_from(cache_usage.0).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(cache_usage.1).unwrap_or(i64::MAX));
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_up_in_the_exposition() {
        let metrics = Metrics::new();
        Metrics::count(&metrics.rate_limit_checks, "refused");
        Metrics::count(&metrics.rate_limit_checks, "refused");
        metrics.redis_failures.inc();
        let text = metrics.render((3, 300));
        assert!(
            text.contains("gateway_rate_limit_checks_total{outcome=\"refused\"} 2"),
            "{text}"
        );
        assert!(text.contains("gateway_redis_failures_total 1"), "{text}");
        assert!(text.contains("gateway_cache_bytes 300"), "{text}");
    }
}

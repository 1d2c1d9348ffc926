//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! One registry for the process. Counters are bumped where things happen;
//! gauges that describe state (cache size) are read when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{LazyLock, Mutex};

/// One label.
pub type Label = [(&'static str, &'static str); 1];
/// Labels with values known at run time.
type Labels<const N: usize> = [(&'static str, String); N];
/// A family of latency histograms.
pub type Latencies<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Request and upstream latency buckets, in seconds: 100 us to about 26 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Plugin call latency buckets, in seconds: 2 us to about 0.5 s.
fn plugin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_002, 2.0, 19))
}

/// The process's metrics.
pub struct Metrics {
    /// Requests by route, method and status.
    pub requests: Family<Labels<3>, Counter>,
    /// Request latency by route, from the head arriving to the response head
    /// leaving.
    pub request_duration: Latencies<1>,
    /// Upstream latency by upstream, to the response head.
    pub upstream_duration: Latencies<1>,
    /// Targets taken out of rotation after failed connections, by upstream.
    pub upstream_ejections: Family<Labels<1>, Counter>,
    /// Requests answered 503 because their upstream had `max_requests` in flight.
    pub upstream_busy: Family<Labels<1>, Counter>,
    /// Retries made by routes' retry policies, by upstream.
    pub upstream_retries: Family<Labels<1>, Counter>,
    /// Retries a retry budget refused, by upstream.
    pub upstream_retries_refused: Family<Labels<1>, Counter>,
    /// Mirrored copies by route and outcome: `sent`, `skipped` (over
    /// `max_in_flight`, or a body too large), `failed`.
    pub mirrored: Family<Labels<2>, Counter>,
    /// Plugin call latency by plugin (its reference) and phase.
    pub plugin_duration: Latencies<2>,
    /// Failed plugin calls by plugin and kind: `trap`, `deadline`,
    /// `memory_limit`, `instantiate`.
    pub plugin_failures: Family<Labels<2>, Counter>,
    /// Events plugins counted (`log.count`), by plugin name and event.
    pub plugin_events: Family<Labels<2>, Counter>,
    /// Idle warm instances by route and plugin, read when scraped.
    pub pool_idle: Family<Labels<2>, Gauge>,
    /// Instances dropped after a successful call instead of kept warm, by
    /// route, plugin and reason (`max_idle_memory`: their memory grew past it).
    pub pool_discards: Family<Labels<3>, Counter>,
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
    /// Basic-auth password checks by outcome: `remembered` (a credential
    /// verified lately, no hash computed), `valid`, `invalid` (each of
    /// these two computed a hash), `busy` (refused unchecked).
    pub password_checks: Family<Label, Counter>,
    /// Redis operations that failed or timed out.
    pub redis_failures: Counter,
    /// Config reloads by outcome: `ok`, `rejected`.
    pub reloads: Family<Label, Counter>,
    /// Upgraded (WebSocket) connections open now.
    pub tunnels: Gauge,
    /// Client connections open now.
    pub connections: Gauge,
    /// Client connections closed at once, by the limit reached:
    /// `max_connections` or `max_connections_per_ip`.
    pub connections_refused: Family<Label, Counter>,
    /// Kept-alive client connections closed while idle to make room for new
    /// ones (past `close_idle_above` of `max_connections`).
    pub connections_idle_closed: Counter,
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
    /// Every metric, registered in three groups.
    fn new() -> Self {
        let metrics = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            upstream_duration: Family::new_with_constructor(request_histogram),
            upstream_ejections: Family::default(),
            upstream_busy: Family::default(),
            upstream_retries: Family::default(),
            upstream_retries_refused: Family::default(),
            mirrored: Family::default(),
            plugin_duration: Family::new_with_constructor(plugin_histogram),
            plugin_failures: Family::default(),
            plugin_events: Family::default(),
            pool_idle: Family::default(),
            pool_discards: Family::default(),
            rate_limit_checks: Family::default(),
            quota_counts: Family::default(),
            cache_lookups: Family::default(),
            cache_stores: Counter::default(),
            password_checks: Family::default(),
            redis_failures: Counter::default(),
            reloads: Family::default(),
            tunnels: Gauge::default(),
            connections: Gauge::default(),
            connections_refused: Family::default(),
            connections_idle_closed: Counter::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            registry: Mutex::new(Registry::with_prefix("gateway")),
        };
        {
            let mut registry = metrics.registry.lock().unwrap_or_else(|p| p.into_inner());
            metrics.register_requests(&mut registry);
            metrics.register_stores(&mut registry);
            metrics.register_connections(&mut registry);
        }
        metrics
    }

    /// Requests, upstreams and plugin calls.
    fn register_requests(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests by route, method and status",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by route",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Upstream latency to the response head, by upstream",
            self.upstream_duration.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Targets taken out of rotation after failed connections, by upstream",
            self.upstream_ejections.clone(),
        );
        registry.register(
            "upstream_busy",
            "Requests answered 503 because their upstream had max_requests in flight",
            self.upstream_busy.clone(),
        );
        registry.register(
            "upstream_retries",
            "Retries made by routes' retry policies, by upstream",
            self.upstream_retries.clone(),
        );
        registry.register(
            "upstream_retries_refused",
            "Retries a retry budget refused, by upstream",
            self.upstream_retries_refused.clone(),
        );
        registry.register(
            "mirror_requests",
            "Mirrored copies of requests by route and outcome (sent, skipped, failed)",
            self.mirrored.clone(),
        );
        registry.register(
            "plugin_duration_seconds",
            "Plugin call latency by plugin and phase",
            self.plugin_duration.clone(),
        );
        registry.register(
            "plugin_failures",
            "Failed plugin calls by plugin and kind",
            self.plugin_failures.clone(),
        );
        registry.register(
            "plugin_events",
            "Events plugins counted, by plugin and event",
            self.plugin_events.clone(),
        );
        registry.register(
            "plugin_idle_instances",
            "Idle warm instances by route and plugin",
            self.pool_idle.clone(),
        );
        registry.register(
            "plugin_instances_discarded",
            "Instances dropped after a successful call instead of kept warm, by route, plugin and reason",
            self.pool_discards.clone(),
        );
    }

    /// Rate limits, quotas, the response cache, Redis and reloads.
    fn register_stores(&self, registry: &mut Registry) {
        registry.register(
            "rate_limit_checks",
            "Rate-limit checks by outcome",
            self.rate_limit_checks.clone(),
        );
        registry.register(
            "quota_counts",
            "Usage-plan quota counts by outcome",
            self.quota_counts.clone(),
        );
        registry.register(
            "cache_lookups",
            "Response cache lookups by result",
            self.cache_lookups.clone(),
        );
        registry.register(
            "cache_stores",
            "Responses stored in the cache",
            self.cache_stores.clone(),
        );
        registry.register(
            "redis_failures",
            "Redis operations that failed or timed out",
            self.redis_failures.clone(),
        );
        registry.register("reloads", "Config reloads by outcome", self.reloads.clone());
        registry.register(
            "password_checks",
            "Basic-auth password checks by outcome",
            self.password_checks.clone(),
        );
    }

    /// Client connections, WebSocket tunnels and the cache's size.
    fn register_connections(&self, registry: &mut Registry) {
        registry.register(
            "websocket_connections",
            "Upgraded (WebSocket) connections open now",
            self.tunnels.clone(),
        );
        registry.register(
            "connections",
            "Client connections open now",
            self.connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed on arrival, by the limit reached (max_connections, max_connections_per_ip)",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Kept-alive client connections closed while idle to make room for new ones (past close_idle_above of max_connections)",
            self.connections_idle_closed.clone(),
        );
        registry.register(
            "cache_entries",
            "Responses held in this process's cache",
            self.cache_entries.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes held in this process's cache",
            self.cache_bytes.clone(),
        );
    }

    /// Counts one event of `family` with `outcome`.
    pub fn count(family: &Family<Label, Counter>, outcome: &'static str) {
        family.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// The text exposition, with the cache gauges read now and the instance
    /// pools given as (route, plugin, idle instances).
    pub fn render(&self, cache_usage: (u64, u64), pools: &[(String, String, usize)]) -> String {
        self.pool_idle.clear();
        for (route, plugin, idle) in pools {
            self.pool_idle
                .get_or_create(&[("route", route.clone()), ("plugin", plugin.clone())])
                .set(i64::try_from(*idle).unwrap_or(i64::MAX));
        }
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

/// The request counters of one route, by method and status, each resolved from
/// [`Metrics::requests`] once per worker thread instead of on every request
/// (which hashes three labels, allocates them and takes the family's lock).
pub struct RequestCounters {
    route: String,
    known: crate::worker::PerWorker<Vec<KnownCounter>>,
}

/// A counter a worker resolved: method label, status, counter.
type KnownCounter = (&'static str, u16, Counter);

/// Combinations a worker remembers per route; rarer ones take the slow path.
const REMEMBERED_COUNTERS: usize = 64;

impl RequestCounters {
    /// Counters for `route` (`-` for requests that matched none).
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_string(),
            known: crate::worker::PerWorker::new(),
        }
    }

    /// Counts one request.
    pub fn inc(&self, method: &http::Method, status: u16) {
        let method = method_label(method);
        let mut known = self.known.mine();
        if let Some((_, _, counter)) = known.iter().find(|(m, s, _)| *m == method && *s == status) {
            counter.inc();
            return;
        }
        let counter = metrics()
            .requests
            .get_or_create(&[
                ("route", self.route.clone()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ])
            .clone();
        counter.inc();
        if known.len() < REMEMBERED_COUNTERS {
            known.push((method, status, counter));
        }
    }
}

/// The method as a label: the standard ones by name, any other as `OTHER`, so
/// clients inventing methods cannot grow the metrics without bound.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
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
        metrics
            .pool_discards
            .get_or_create(&[
                ("route", "r".into()),
                ("plugin", "p".into()),
                ("reason", "max_idle_memory".into()),
            ])
            .inc();
        let text = metrics.render((3, 300), &[("r".into(), "p".into(), 2)]);
        assert!(
            text.contains("gateway_rate_limit_checks_total{outcome=\"refused\"} 2"),
            "{text}"
        );
        assert!(text.contains("gateway_redis_failures_total 1"), "{text}");
        assert!(text.contains("gateway_cache_bytes 300"), "{text}");
        assert!(
            text.contains("gateway_plugin_idle_instances{route=\"r\",plugin=\"p\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gateway_plugin_instances_discarded_total{route=\"r\",plugin=\"p\",reason=\"max_idle_memory\"} 1"),
            "{text}"
        );
    }
}

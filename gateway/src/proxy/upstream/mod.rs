//! One named upstream: the `Upstream` type, how it is built from its config
//! and kept across reloads, and what the rest of the gateway calls on it
//! (`send`, `start_tasks`, `state`).
//!
//! Its parts, each in a file of its own:
//! - `balance`: the targets and the weighted round robin over those in rotation;
//! - `health`: passive (failed connections) and active (health checks) health;
//! - `outlier`: outlier detection, ejecting targets whose answers are errors;
//! - `send`: one request, its attempts and retries, over HTTP/1.1 or HTTP/2;
//! - `retry`: a route's retry policy, the retry budget, replayable requests;
//! - `settings`: what it is built from, checked by the config beforehand;
//! - how connections are opened (TLS settings, connect timeout) is
//!   `proxy::connect`, shared with `proxy::h2pool`.

mod balance;
mod health;
mod outlier;
pub mod retry;
mod send;
pub mod settings;

use super::connect::{self, TimedConnector};
use super::h2pool::H2Pool;
use crate::body::{self, Body};
use crate::error::RequestError;
use balance::Target;
use http::uri::PathAndQuery;
use http::{Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use settings::UpstreamSettings;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A named upstream service.
pub struct Upstream {
    /// The name routes refer to it by.
    pub name: String,
    targets: Vec<Target>,
    next: AtomicUsize,
    /// With consistent hashing: the ring.
    ring: Option<balance::Ring>,
    /// One pool per worker thread, so a pooled connection is always driven by
    /// the thread that uses it.
    clients: Vec<send::Http1Client>,
    /// Speaks HTTP/2 to the targets.
    http2: bool,
    /// With HTTP/2, the connections (the `clients` are then unused).
    h2: Option<H2Pool>,
    /// Requests in flight (until their response body ends), with `max_requests`.
    in_flight: Option<(Arc<AtomicUsize>, usize)>,
    busy: Counter,
    /// For health checks: a connection per check, not from the pools.
    connector: TimedConnector,
    timeout: Duration,
    settings: UpstreamSettings,
    /// When it was built: the origin of the targets' ejection times.
    born: Instant,
    /// Latency to the response head, in the metrics.
    pub latency: Histogram,
    ejections: Counter,
    /// Requests and retries in flight, for retry budgets.
    budget: retry::Budget,
    /// Held while outlier detection decides and makes an ejection.
    ejecting: std::sync::Mutex<()>,
    /// Retries made, and retries the budget refused.
    retried: Counter,
    retries_refused: Counter,
}

/// How one request is sent, beyond the request itself: what its route asks.
#[derive(Clone, Copy, Default)]
pub struct Sending<'a> {
    /// `Host` set to the target's (not with `preserve_host`).
    pub set_host: bool,
    /// The route's retry policy.
    pub retry: Option<&'a retry::RetryPolicy>,
    /// The client's address, for hashing on it.
    pub client: Option<std::net::IpAddr>,
}

impl Upstream {
    /// Whether `settings` would build this same upstream, so a reload can
    /// keep it and its connection pools.
    pub fn unchanged(&self, settings: &UpstreamSettings) -> bool {
        self.settings == *settings
    }

    /// Builds the upstream and its (lazily connecting) pool. Fails only when
    /// the TLS library cannot be set up.
    pub fn new(name: &str, settings: &UpstreamSettings) -> Result<Self, String> {
        let connector = connect::connector(settings)?;
        let http2 = settings.http2;
        let targets: Vec<Target> = settings.targets.iter().map(Target::new).collect();
        let h2 = http2.then(|| {
            H2Pool::new(
                connector.clone(),
                settings.http2_keepalive,
                settings.http2_max_streams,
                settings.idle_timeout,
                targets.len(),
            )
        });
        let label = [("upstream", name.to_string())];
        let metrics = crate::metrics::metrics();
        let ring = matches!(settings.balance, settings::Balance::Hash(_))
            .then(|| balance::Ring::new(&targets));
        Ok(Self {
            name: name.to_string(),
            ring,
            targets,
            next: AtomicUsize::new(0),
            clients: send::http1_clients(settings, &connector),
            http2,
            h2,
            in_flight: settings
                .max_requests
                .map(|max| (Arc::new(AtomicUsize::new(0)), max)),
            busy: metrics.upstream_busy.get_or_create(&label).clone(),
            connector,
            timeout: settings.timeout,
            settings: settings.clone(),
            born: Instant::now(),
            latency: metrics.upstream_duration.get_or_create(&label).clone(),
            ejections: metrics.upstream_ejections.get_or_create(&label).clone(),
            budget: retry::Budget::default(),
            ejecting: std::sync::Mutex::new(()),
            retried: metrics.upstream_retries.get_or_create(&label).clone(),
            retries_refused: metrics
                .upstream_retries_refused
                .get_or_create(&label)
                .clone(),
        })
    }

    /// Starts the upstream's tasks in the current runtime: the sweep of idle
    /// HTTP/2 connections, and the health checks (when the config asks for
    /// them and there is more than one target: a lone target is always
    /// tried). The tasks end once the upstream is gone (a reload replaced it).
    pub fn start_tasks(self: &Arc<Self>) {
        self.start_h2_sweep();
        self.start_health_checks();
    }

    /// Sweeps the idle HTTP/2 connections now and then, with HTTP/2.
    fn start_h2_sweep(self: &Arc<Self>) {
        let Some(pool) = &self.h2 else {
            return;
        };
        let mut rounds = Rounds::new(self, pool.sweep_every());
        tokio::spawn(async move {
            while let Some(upstream) = rounds.next().await {
                if let Some(pool) = &upstream.h2 {
                    pool.sweep();
                }
            }
        });
    }

    /// Whether the targets are spoken to in HTTP/2.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// What the admin API shows: each target's weight and whether it is in
    /// rotation (and if not, why and for how long), the requests in flight
    /// with `max_requests`.
    pub fn state(&self) -> serde_json::Value {
        let now = self.now();
        let targets: Vec<serde_json::Value> = self
            .targets
            .iter()
            .map(|target| target_state(target, now))
            .collect();
        serde_json::json!({
            "name": self.name,
            "protocol": if self.http2 { "http2" } else { "http1" },
            // Since this upstream (and its pools) was built: a reload that
            // changes its settings builds it anew, one that does not keeps it.
            "built_ms_ago": self.now(),
            "max_requests": self.in_flight.as_ref().map(|(_, max)| max),
            "requests_in_flight": self.in_flight.as_ref().map(|(count, _)| count.load(Ordering::Relaxed)),
            "targets": targets,
        })
    }

    /// Milliseconds since the upstream was built.
    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Sends `request` (whose URI carries only path and query) to the next
    /// target and waits for the response head within the upstream's timeout;
    /// on a failed connection, fails over to another target, and retries
    /// as `how.retry` says.
    pub async fn send(
        &self,
        request: Request<Body>,
        path_and_query: PathAndQuery,
        how: Sending<'_>,
    ) -> Result<Response<Body>, RequestError> {
        let Some(place) = self.take_place() else {
            self.busy.inc();
            return Err(RequestError::UpstreamBusy {
                upstream: self.name.clone(),
            });
        };
        let response = self.send_within(request, path_and_query, how).await?;
        Ok(match place {
            Some(place) => response.map(|body| body::guarded(body, place)),
            None => response,
        })
    }
}

/// The rounds of a periodic task of an upstream's (health checks, sweeps):
/// one every period, the first a period from now, for as long as the
/// upstream lives (a reload that replaces it ends them).
pub(super) struct Rounds {
    upstream: std::sync::Weak<Upstream>,
    ticks: tokio::time::Interval,
}

impl Rounds {
    fn new(upstream: &Arc<Upstream>, every: Duration) -> Self {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            upstream: Arc::downgrade(upstream),
            ticks,
        }
    }

    /// Waits for the next round: the upstream, or `None` once it is gone.
    async fn next(&mut self) -> Option<Arc<Upstream>> {
        self.ticks.tick().await;
        self.upstream.upgrade()
    }

    /// The upstream, if it is still there (after a round's wait).
    fn upstream(&self) -> Option<Arc<Upstream>> {
        self.upstream.upgrade()
    }
}

/// One target in the admin API's `state`, `now` ms after the upstream was built.
fn target_state(target: &Target, now: u64) -> serde_json::Value {
    let out_for = target.out_until.load(Ordering::Relaxed).saturating_sub(now);
    let failing_checks = target.checks_failing.load(Ordering::Relaxed);
    let state = match (failing_checks, out_for) {
        (true, _) => "failing health checks",
        (false, 0) if target.weight == 0 => "drained",
        (false, 0) => "in rotation",
        (false, _) => "ejected",
    };
    serde_json::json!({
        "target": format!("{}://{}", target.scheme, target.authority),
        "weight": target.weight,
        "state": state,
        "failed_connections_in_a_row": target.failures.load(Ordering::Relaxed),
        "ejected_for_ms": out_for,
    })
}

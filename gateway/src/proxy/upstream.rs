//! One named upstream: its targets, chosen round robin among those in
//! rotation, and its connection pool.
//!
//! Passive health checking: a target whose connections fail `max_fails` times
//! in a row is skipped for `fail_timeout`, then tried again (one more failure
//! takes it out again; an answer puts it back for good). When every target is
//! out, they are all tried anyway: a chance beats a certain 502. A request
//! without a body whose connection cannot be opened is retried on another
//! target, up to `retries` times: nothing reached the upstream, so this is
//! safe for any method.

use crate::body::{self, Body};
use crate::config::{Source, UpstreamConfig, UpstreamProtocol};
use crate::error::RequestError;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use toml::Spanned;

/// The most `retries` an upstream may ask for.
pub const MAX_RETRIES: u32 = 10;

/// A named upstream service.
pub struct Upstream {
    /// The name routes refer to it by.
    pub name: String,
    targets: Vec<Target>,
    next: AtomicUsize,
    /// One pool per worker thread, so a pooled connection is always driven by
    /// the thread that uses it.
    clients: Vec<Client<TimedConnector, Body>>,
    /// Speaks HTTP/2 to the targets.
    http2: bool,
    /// With HTTP/2, the connections (the `clients` are then unused).
    h2: Option<super::h2pool::H2Pool>,
    /// Requests in flight (until their response body ends), with `max_requests`.
    in_flight: Option<(Arc<AtomicUsize>, usize)>,
    busy: prometheus_client::metrics::counter::Counter,
    /// For health checks: a connection per check, not from the pools.
    connector: TimedConnector,
    timeout: Duration,
    config: UpstreamConfig,
    /// The `ca_file` as it was read, to tell whether a reload changed it.
    ca_pem: Option<Vec<u8>>,
    /// When it was built: the origin of the targets' ejection times.
    born: Instant,
    /// Latency to the response head, in the metrics.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    ejections: prometheus_client::metrics::counter::Counter,
}

/// The largest weight a target may have.
pub const MAX_WEIGHT: u32 = 1000;

/// One target and what passive health checking knows of it.
struct Target {
    /// Its share of the requests, relative to the others' (0: none).
    weight: u64,
    /// `http` or `https`.
    scheme: Scheme,
    authority: Authority,
    /// The authority as a `Host` header value.
    host: http::HeaderValue,
    /// `scheme://authority/`, where connections to it are opened.
    origin: Uri,
    /// Connections that failed in a row.
    failures: AtomicU32,
    /// Milliseconds after `Upstream::born` until which the target is skipped.
    out_until: AtomicU64,
    /// Failed its active health checks (and has not passed enough since).
    checks_failing: AtomicBool,
}

impl Target {
    fn in_rotation(&self, now: u64) -> bool {
        !self.checks_failing.load(Ordering::Relaxed)
            && self.out_until.load(Ordering::Relaxed) <= now
    }
}

impl Upstream {
    /// Whether `config` (read from `source`) would build this same upstream,
    /// so a reload can keep it and its connection pools.
    pub fn unchanged(&self, config: &UpstreamConfig, source: &Source) -> bool {
        self.config == *config
            && match &config.ca_file {
                None => self.ca_pem.is_none(),
                Some(file) => {
                    std::fs::read(source.base_dir().join(file.get_ref())).ok() == self.ca_pem
                }
            }
    }

    /// Builds the upstream and its (lazily connecting) pool.
    pub fn new(
        name: &str,
        config: &Spanned<UpstreamConfig>,
        source: &Source,
    ) -> Result<Self, crate::config::ConfigError> {
        let settings = config.get_ref();
        if settings.targets.is_empty() {
            return Err(source.error(
                config.span(),
                format!("upstream `{name}` has no targets: add targets = [\"host:port\"]"),
            ));
        }
        let weights = match &settings.weights {
            None => vec![1; settings.targets.len()],
            Some(weights) => {
                let at =
                    |msg: String| source.error(weights.span(), format!("upstream `{name}`: {msg}"));
                let list = weights.get_ref();
                if list.len() != settings.targets.len() {
                    return Err(at(format!(
                        "weights has {} entries for {} targets: give one weight per target, in the same order",
                        list.len(),
                        settings.targets.len()
                    )));
                }
                if list.iter().any(|w| *w > MAX_WEIGHT) {
                    return Err(at(format!("a weight is at most {MAX_WEIGHT}")));
                }
                if list.iter().all(|w| *w == 0) {
                    return Err(at(
                        "every weight is 0: at least one target must get requests".to_string(),
                    ));
                }
                list.clone()
            }
        };
        let targets = settings
            .targets
            .iter()
            .zip(weights)
            .map(|(target, weight)| {
                let (scheme, authority) = parse_target(target.get_ref())
                    .map_err(|msg| source.error(target.span(), msg))?;
                let host = http::HeaderValue::from_str(authority.as_str())
                    .map_err(|_| source.error(target.span(), "invalid target"))?;
                let origin = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|_| source.error(target.span(), "invalid target"))?;
                Ok(Target {
                    weight: u64::from(weight),
                    scheme,
                    authority,
                    host,
                    origin,
                    failures: AtomicU32::new(0),
                    out_until: AtomicU64::new(0),
                    checks_failing: AtomicBool::new(false),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if *settings.retries.get_ref() > MAX_RETRIES {
            return Err(source.error(
                settings.retries.span(),
                format!(
                    "upstream `{name}`: retries is at most {MAX_RETRIES} (it counts other targets tried after a failed connection)"
                ),
            ));
        }
        if let Some(check) = &settings.health_check {
            validate_check(check.get_ref()).map_err(|(span, msg)| {
                source.error(span, format!("upstream `{name}`: health_check: {msg}"))
            })?;
        }
        if settings.max_fails > 0 && settings.fail_timeout.get_ref().0.is_zero() {
            return Err(source.error(
                settings.fail_timeout.span(),
                format!("upstream `{name}`: fail_timeout must be more than zero (or set max_fails = 0 to never take a target out)"),
            ));
        }

        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.connect_timeout.0));
        http.set_nodelay(true);
        // The TLS layer checks the scheme.
        http.enforce_http(false);
        let ca_pem = match &settings.ca_file {
            None => None,
            Some(file) => Some(
                std::fs::read(source.base_dir().join(file.get_ref())).map_err(|err| {
                    source.error(
                        file.span(),
                        format!(
                            "upstream `{name}`: cannot read ca_file `{}`: {err}",
                            file.get_ref()
                        ),
                    )
                })?,
            ),
        };
        let tls = tls_settings(settings, ca_pem.as_deref())
            .map_err(|(span, msg)| source.error(span, format!("upstream `{name}`: {msg}")))?;
        let http2 = *settings.protocol.get_ref() == UpstreamProtocol::Http2;
        let keepalive = match (&settings.http2_keepalive, http2) {
            (None, _) => DEFAULT_HTTP2_KEEPALIVE,
            (Some(every), false) => {
                return Err(source.error(
                    every.span(),
                    format!("upstream `{name}`: http2_keepalive needs protocol = \"http2\""),
                ));
            }
            (Some(every), true) if every.get_ref().0.is_zero() => {
                return Err(source.error(
                    every.span(),
                    format!("upstream `{name}`: http2_keepalive must be more than zero"),
                ));
            }
            (Some(every), true) => every.get_ref().0,
        };
        let max_streams = match (&settings.http2_max_streams, http2) {
            (None, _) => DEFAULT_HTTP2_MAX_STREAMS,
            (Some(max), false) => {
                return Err(source.error(
                    max.span(),
                    format!("upstream `{name}`: http2_max_streams needs protocol = \"http2\""),
                ));
            }
            (Some(max), true) if !(1..=MAX_HTTP2_STREAMS).contains(max.get_ref()) => {
                return Err(source.error(
                    max.span(),
                    format!(
                        "upstream `{name}`: http2_max_streams must be between 1 and {MAX_HTTP2_STREAMS}"
                    ),
                ));
            }
            (Some(max), true) => *max.get_ref(),
        };
        let server_name = match &settings.tls_server_name {
            Some(server_name) => Some(
                ServerName::try_from(server_name.get_ref().clone()).map_err(|_| {
                    source.error(
                        server_name.span(),
                        format!(
                            "upstream `{name}`: tls_server_name `{}` is not a DNS name or IP address",
                            server_name.get_ref()
                        ),
                    )
                })?,
            ),
            None => None,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(ServerNames(server_name.map(FixedServerNameResolver::new)));
        // ALPN offers exactly the version spoken: `h2` or nothing (HTTP/1.1).
        let connect = if http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let connector = TimedConnector {
            inner: Arc::new(connect),
            timeout: settings.connect_timeout.0,
        };
        let h2 = http2.then(|| {
            super::h2pool::H2Pool::new(
                connector.clone(),
                keepalive,
                max_streams,
                settings.idle_timeout.0,
                targets.len(),
            )
        });
        // HTTP/2 requests go through `h2`.
        let pools = if http2 { 0 } else { crate::worker::count() };
        let clients = (0..pools)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(settings.idle_timeout.0)
                    .pool_max_idle_per_host(settings.max_idle_connections)
                    .build(connector.for_worker())
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            targets,
            next: AtomicUsize::new(0),
            clients,
            http2,
            h2,
            in_flight: match &settings.max_requests {
                Some(max) if *max.get_ref() == 0 => {
                    return Err(source.error(
                        max.span(),
                        format!("upstream `{name}`: max_requests must be at least 1 (leave it out for no limit)"),
                    ));
                }
                Some(max) => Some((Arc::new(AtomicUsize::new(0)), *max.get_ref())),
                None => None,
            },
            busy: crate::metrics::metrics()
                .upstream_busy
                .get_or_create(&[("upstream", name.to_string())])
                .clone(),
            connector: connector.clone(),
            timeout: settings.timeout.0,
            config: settings.clone(),
            ca_pem,
            born: Instant::now(),
            latency: crate::metrics::metrics()
                .upstream_duration
                .get_or_create(&[("upstream", name.to_string())])
                .clone(),
            ejections: crate::metrics::metrics()
                .upstream_ejections
                .get_or_create(&[("upstream", name.to_string())])
                .clone(),
        })
    }

    /// Takes over what `previous`, this upstream as it was before a reload
    /// changed its settings, learned of the targets both have: connections
    /// failed in a row, time left out of rotation, and (when this one checks
    /// health too) failing health checks. A target taken out stays out
    /// instead of getting traffic again because an unrelated setting changed.
    pub fn inherit_health(&self, previous: &Upstream) {
        let checks = self.config.health_check.is_some() && self.targets.len() > 1;
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
            // max_fails = 0 now: passive checks are off, and so is their verdict.
            if self.config.max_fails != 0 && until > now {
                let until = until.duration_since(self.born).as_millis();
                target
                    .out_until
                    .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
            }
            if checks {
                target.checks_failing.store(
                    old.checks_failing.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Starts the upstream's tasks in the current runtime: the sweep of idle
    /// HTTP/2 connections, and the health checks (when the config asks for
    /// them and there is more than one target: a lone target is always
    /// tried). The tasks end once the upstream is gone (a reload replaced it).
    pub fn start_tasks(self: &Arc<Self>) {
        if let Some(pool) = &self.h2 {
            let weak = Arc::downgrade(self);
            let every = pool.sweep_every();
            tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(upstream) = weak.upgrade() else {
                        return;
                    };
                    if let Some(pool) = &upstream.h2 {
                        pool.sweep();
                    }
                }
            });
        }
        self.start_health_checks();
    }

    fn start_health_checks(self: &Arc<Self>) {
        let Some(check) = self
            .config
            .health_check
            .as_ref()
            .map(|c| c.get_ref().clone())
        else {
            return;
        };
        if self.targets.len() < 2 {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = check.interval.get_ref().0;
        let client: Client<TimedConnector, Body> =
            client_builder(self.http2, check.timeout.get_ref().0)
                .pool_max_idle_per_host(0)
                .build(self.connector.clone());
        tokio::spawn(async move {
            // Passed (positive) or failed (negative) checks in a row, per target.
            let mut streaks: Vec<i64> = Vec::new();
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                // All targets at once: a dead one's timeout delays no other.
                let mut round = tokio::task::JoinSet::new();
                for index in 0..upstream.targets.len() {
                    let (upstream, client, check) =
                        (upstream.clone(), client.clone(), check.clone());
                    round.spawn(
                        async move { (index, upstream.check(&client, index, &check).await) },
                    );
                }
                drop(upstream);
                let outcomes = round.join_all().await;
                let Some(upstream) = weak.upgrade() else {
                    return;
                };
                streaks.resize(upstream.targets.len(), 0);
                for (index, passed) in outcomes {
                    let streak = &mut streaks[index];
                    *streak = match (passed, *streak) {
                        (true, s) if s > 0 => s + 1,
                        (true, _) => 1,
                        (false, s) if s < 0 => s - 1,
                        (false, _) => -1,
                    };
                    upstream.checked(index, *streak, &check);
                }
            }
        });
    }

    /// One health check of target `index`: whether it answered 2xx or 3xx in time.
    async fn check(
        &self,
        client: &Client<TimedConnector, Body>,
        index: usize,
        check: &crate::config::HealthCheckConfig,
    ) -> bool {
        let target = &self.targets[index];
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(check.path.get_ref().as_str())
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
        let answer = tokio::time::timeout(check.timeout.get_ref().0, client.request(request)).await;
        let passed = matches!(&answer, Ok(Ok(response)) if response.status().is_success() || response.status().is_redirection());
        if !passed {
            let why = match answer {
                Ok(Ok(response)) => format!("status {}", response.status().as_u16()),
                Ok(Err(err)) => error_chain(&err),
                Err(_) => format!("no answer within {:?}", check.timeout.get_ref().0),
            };
            tracing::debug!(upstream = %self.name, target = %target.authority, why, "health check failed");
        }
        passed
    }

    /// Applies a check's outcome: `streak` passed (positive) or failed
    /// (negative) checks in a row.
    fn checked(&self, index: usize, streak: i64, check: &crate::config::HealthCheckConfig) {
        let target = &self.targets[index];
        let failing = target.checks_failing.load(Ordering::Relaxed);
        if !failing && -streak >= i64::from(*check.unhealthy.get_ref()) {
            target.checks_failing.store(true, Ordering::Relaxed);
            self.ejections.inc();
            tracing::warn!(
                upstream = %self.name,
                target = %target.authority,
                "target taken out of rotation: it failed {} health checks in a row",
                -streak
            );
        } else if failing && streak >= i64::from(*check.healthy.get_ref()) {
            target.checks_failing.store(false, Ordering::Relaxed);
            tracing::info!(
                upstream = %self.name,
                target = %target.authority,
                "target back in rotation: it passed {streak} health checks in a row"
            );
        }
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
            .map(|target| {
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
            })
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

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// The next target to try, weighted round robin over those in rotation
    /// and not `tried` already. When every untried one is out, weighted round
    /// robin over those. Targets of weight 0 are never picked.
    fn pick(&self, tried: &[usize]) -> usize {
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

    /// A connection to target `index` could not be opened (or broke before
    /// the answer): takes the target out when that makes `max_fails` in a row.
    fn failed(&self, index: usize) {
        let target = &self.targets[index];
        let failures = target.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.config.max_fails;
        if max == 0 || failures < max || self.targets.len() == 1 {
            return;
        }
        let timeout = self.config.fail_timeout.get_ref().0;
        let now = self.now();
        if target
            .out_until
            .swap(now + timeout.as_millis() as u64, Ordering::Relaxed)
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

    /// Target `index` answered: it is in rotation, and its failure count
    /// starts over.
    fn answered(&self, index: usize) {
        let target = &self.targets[index];
        // Read first: most answers find nothing to reset, and a load keeps the
        // line shared between cores.
        if target.failures.load(Ordering::Relaxed) != 0 {
            target.failures.store(0, Ordering::Relaxed);
        }
        if target.out_until.load(Ordering::Relaxed) != 0 {
            target.out_until.store(0, Ordering::Relaxed);
        }
    }

    /// Sends `request` (whose URI carries only path and query) to the next
    /// target and waits for the response head within the upstream's timeout;
    /// on a failed connection, retries a request without a body on another
    /// target.
    pub async fn send(
        &self,
        request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
    ) -> Result<Response<Body>, RequestError> {
        let Some(place) = self.take_place() else {
            self.busy.inc();
            return Err(RequestError::UpstreamBusy {
                upstream: self.name.clone(),
            });
        };
        let response = self.send_within(request, path_and_query, set_host).await?;
        Ok(match place {
            Some(place) => response.map(|body| body::guarded(body, place)),
            None => response,
        })
    }

    /// A place among the requests in flight: `Some(None)` without
    /// `max_requests`, `None` when they are all taken.
    fn take_place(&self) -> Option<Option<InFlight>> {
        let Some((count, max)) = &self.in_flight else {
            return Some(None);
        };
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < *max).then_some(n + 1)
            })
            .ok()
            .map(|_| Some(InFlight(count.clone())))
    }

    async fn send_within(
        &self,
        request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
    ) -> Result<Response<Body>, RequestError> {
        // Each retry goes to a target not tried yet.
        let others = self.targets.len() - 1;
        let mut retries = match others {
            0 => 0,
            _ if request.body().is_end_stream() => {
                (*self.config.retries.get_ref() as usize).min(others)
            }
            _ => 0,
        };
        // What a retry resends: the head (the body is known to be empty).
        let head = (retries > 0).then(|| (request.method().clone(), request.headers().clone()));
        let mut request = request;
        let mut tried = Vec::new();
        let mut index = self.pick(&tried);
        loop {
            match self
                .send_to(index, request, path_and_query.clone(), set_host)
                .await
            {
                Ok(response) => {
                    self.answered(index);
                    return Ok(response);
                }
                Err(Failure::Connection {
                    error,
                    sent,
                    counts,
                }) => {
                    if counts {
                        self.failed(index);
                    }
                    let Some((method, headers)) = head.as_ref().filter(|_| !sent && retries > 0)
                    else {
                        return Err(error);
                    };
                    retries -= 1;
                    tracing::debug!(
                        upstream = %self.name,
                        target = %self.targets[index].authority,
                        %error,
                        "retrying on another target"
                    );
                    request = Request::new(body::empty());
                    *request.method_mut() = method.clone();
                    *request.headers_mut() = headers.clone();
                    tried.push(index);
                    index = self.pick(&tried);
                }
                Err(Failure::Other(error)) => return Err(error),
            }
        }
    }

    /// One attempt on target `index`.
    async fn send_to(
        &self,
        index: usize,
        mut request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
    ) -> Result<Response<Body>, Failure> {
        let target = &self.targets[index];
        if self.http2 {
            // The target's authority goes in `:authority`, from the URI below.
            request.headers_mut().remove(http::header::HOST);
        } else if set_host {
            request
                .headers_mut()
                .insert(http::header::HOST, target.host.clone());
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(path_and_query);
        *request.uri_mut() = Uri::from_parts(uri)
            .map_err(|e| Failure::Other(RequestError::BadRequest(e.to_string())))?;
        *request.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };

        let timed_out = || {
            Failure::Other(RequestError::UpstreamTimeout {
                upstream: self.name.clone(),
            })
        };
        // The timeout runs from the request's last byte: how long an upload
        // takes is the client's to pace (within body_read_timeout).
        let (request, sent) = if request.body().is_end_stream() {
            (request, None)
        } else {
            let (parts, body) = request.into_parts();
            let (body, sent) = body::notify_end(body);
            (Request::from_parts(parts, body), Some(sent))
        };
        if let Some(pool) = &self.h2 {
            // Boxed: the HTTP/2 send is a large future (6.8 KB), and inline
            // it would grow every request's state, HTTP/1.1 ones included,
            // which is copied as the futures nest (the handler's was 12 KB).
            return match within(
                self.timeout,
                sent,
                Box::pin(pool.send(index, &target.origin, request)),
            )
            .await
            {
                None => Err(timed_out()),
                Some(Ok(response)) => Ok(response),
                Some(Err(super::h2pool::SendError::Connect { error, shared })) => {
                    Err(match self.classify(&*error, false) {
                        // Another request counted this failure already.
                        Failure::Connection { error, sent, .. } if shared => Failure::Connection {
                            error,
                            sent,
                            counts: false,
                        },
                        other => other,
                    })
                }
                Some(Err(super::h2pool::SendError::Send(err))) => {
                    Err(self.classify(&err, !refused_stream(&err)))
                }
                Some(Err(super::h2pool::SendError::Unsent(err))) => Err(self.classify(&err, false)),
            };
        }
        let client = &self.clients[crate::worker::index() % self.clients.len()];
        match within(self.timeout, sent, client.request(request)).await {
            None => Err(timed_out()),
            Some(Err(err)) => {
                let sent = !err.is_connect();
                Err(self.classify(&err, sent))
            }
            Some(Ok(response)) => Ok(response.map(body::boxed)),
        }
    }

    /// What a failed attempt means: `err` happened after the connection was
    /// open (`sent`: the request may have reached the target) or before.
    fn classify(&self, err: &(dyn std::error::Error + 'static), sent: bool) -> Failure {
        // The client's body failing (over the limit, cut short, malformed)
        // surfaces here, deep in the error chain. It is not the target's fault.
        // The body's own errors sit below hyper's "user body" error: look at
        // the whole chain for them first.
        let chain = || std::iter::successors(Some(err), |cause| cause.source());
        for cause in chain() {
            if cause
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Failure::Other(RequestError::BodyTooLarge { limit: 0 });
            }
            if let Some(timed_out) = cause.downcast_ref::<crate::body::ReadTimedOut>() {
                return Failure::Other(RequestError::BodyTimeout {
                    timeout: timed_out.0,
                });
            }
        }
        if chain().any(|cause| {
            cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
        }) {
            return Failure::Other(RequestError::BadRequest(format!(
                "the request body could not be read: {}",
                error_chain(err)
            )));
        }
        let reason = if sent {
            error_chain(err)
        } else {
            format!("connect: {}", error_chain(err))
        };
        Failure::Connection {
            error: RequestError::UpstreamUnavailable {
                upstream: self.name.clone(),
                reason,
            },
            sent,
            counts: true,
        }
    }
}

/// The name `https://` targets' certificates are checked against: the
/// configured `tls_server_name`, or else the target's host.
struct ServerNames(Option<FixedServerNameResolver>);

impl hyper_rustls::ResolveServerName for ServerNames {
    fn resolve(
        &self,
        uri: &Uri,
    ) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(fixed) => fixed.resolve(uri),
            None => hyper_rustls::DefaultServerNameResolver::default().resolve(uri),
        }
    }
}

/// How often HTTP/2 connections to targets are pinged by default.
const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection carries at once by default: at or under
/// what servers allow (nginx 128, hyper 200, gRPC's unlimited).
const DEFAULT_HTTP2_MAX_STREAMS: usize = 100;
/// The most `http2_max_streams` may say (HTTP/2 stream ids allow 2^30 client streams).
const MAX_HTTP2_STREAMS: usize = 1 << 20;

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

/// The connector with one deadline over the TCP connect and the TLS
/// handshake: a target that accepts connections but stalls the handshake is
/// a failed connection after `connect_timeout`, like one that does not answer.
///
/// hyper-util's pooled client clones its connector for every request, even
/// one an idle pooled connection serves, which is nearly all of them: the
/// TLS connector (three reference counts, shared by every worker) is behind
/// one `Arc` of the worker's own ([`TimedConnector::for_worker`]), and cloned
/// only to open a connection.
#[derive(Clone)]
pub(super) struct TimedConnector {
    inner: Arc<HttpsConnector<HttpConnector>>,
    timeout: Duration,
}

impl TimedConnector {
    /// A copy whose reference count only the calling worker's pool touches.
    fn for_worker(&self) -> Self {
        Self {
            inner: Arc::new(HttpsConnector::clone(&self.inner)),
            timeout: self.timeout,
        }
    }
}

type Connecting = <HttpsConnector<HttpConnector> as tower_service::Service<Uri>>::Response;

impl tower_service::Service<Uri> for TimedConnector {
    type Response = Connecting;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Connecting, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The copy that connects is made ready in `call`.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut inner = HttpsConnector::clone(&self.inner);
        let timeout = self.timeout;
        Box::pin(async move {
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let connecting = inner.call(uri);
            tokio::time::timeout(timeout, connecting)
                .await
                .unwrap_or_else(|_| Err(format!("no connection within {timeout:?}").into()))
        })
    }
}

/// A request in flight to an upstream with `max_requests`, until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why one attempt failed.
enum Failure {
    /// The connection failed: before the request went out (`sent` false,
    /// safe to retry) or after.
    /// `counts`: against the target's passive health.
    Connection {
        error: RequestError,
        sent: bool,
        counts: bool,
    },
    /// Anything else: a timeout waiting for the answer, a bad request.
    Other(RequestError),
}

/// `sending`'s output, unless `timeout` passes first; the clock starts when
/// `sent` fires (the request body's end), or at once without one. `None`:
/// timed out.
async fn within<F: Future>(
    timeout: Duration,
    sent: Option<tokio::sync::oneshot::Receiver<()>>,
    sending: F,
) -> Option<F::Output> {
    match sent {
        None => tokio::time::timeout(timeout, sending).await.ok(),
        Some(sent) => {
            let clock = async {
                // Dropped unsent (the body failed): the request fails anyway.
                let _ = sent.await;
                tokio::time::sleep(timeout).await;
            };
            tokio::select! {
                output = sending => Some(output),
                () = clock => None,
            }
        }
    }
}

/// Whether the target refused the stream (`REFUSED_STREAM`): HTTP/2
/// guarantees it did nothing with the request (RFC 9113, section 8.7), so
/// another target may have it.
fn refused_stream(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = cause.source();
    }
    false
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks `[upstreams.NAME.health_check]`: where a value is wrong, and why.
fn validate_check(
    check: &crate::config::HealthCheckConfig,
) -> Result<(), (std::ops::Range<usize>, String)> {
    let path = check.path.get_ref();
    if !path.starts_with('/') || PathAndQuery::try_from(path.as_str()).is_err() {
        return Err((
            check.path.span(),
            format!("path `{path}` must be a path starting with `/`, such as \"/healthz\""),
        ));
    }
    for (value, what) in [(&check.interval, "interval"), (&check.timeout, "timeout")] {
        if value.get_ref().0.is_zero() {
            return Err((value.span(), format!("{what} must be more than zero")));
        }
    }
    for (value, what) in [(&check.healthy, "healthy"), (&check.unhealthy, "unhealthy")] {
        if *value.get_ref() == 0 {
            return Err((
                value.span(),
                format!("{what} must be at least 1 (checks in a row)"),
            ));
        }
    }
    Ok(())
}

/// `host:port`, `http://host:port` or `https://host[:port]`.
fn parse_target(target: &str) -> Result<(Scheme, Authority), String> {
    let (scheme, bare) = match target.split_once("://") {
        None => (Scheme::HTTP, target),
        Some(("http", rest)) => (Scheme::HTTP, rest),
        Some(("https", rest)) => (Scheme::HTTPS, rest),
        Some((other, _)) => {
            return Err(format!(
                "invalid target `{target}`: the scheme `{other}` is not supported; use http:// or https://"
            ));
        }
    };
    let authority: Authority = bare.trim_end_matches('/').parse().map_err(|_| {
        format!("invalid target `{target}`: expected host:port, for example \"127.0.0.1:9000\" or \"https://api.example.com\"")
    })?;
    if authority.port_u16().is_none() && scheme == Scheme::HTTP {
        return Err(format!(
            "invalid target `{target}`: a port is required, for example \"{}:80\"",
            authority.host()
        ));
    }
    Ok((scheme, authority))
}

/// The TLS client settings for `https://` targets: the CAs in `ca_pem`, or
/// the built-in Mozilla roots; HTTP/1.1.
fn tls_settings(
    settings: &UpstreamConfig,
    ca_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, (std::ops::Range<usize>, String)> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| (0..0, format!("TLS setup failed: {err}")))?;
    let Some(pem) = ca_pem else {
        use hyper_rustls::ConfigBuilderExt;
        return Ok(builder.with_webpki_roots().with_no_client_auth());
    };
    let span = settings.ca_file.as_ref().map_or(0..0, Spanned::span);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|err| (span.clone(), format!("ca_file is not valid PEM: {err}")))?;
        roots.add(cert).map_err(|err| {
            (
                span.clone(),
                format!("ca_file holds an unusable certificate: {err}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err((span, "ca_file holds no certificate".to_string()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_stream_counts_as_not_sent() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(refused_stream(&refused));
        let reset = h2::Error::from(h2::Reason::CANCEL);
        assert!(!refused_stream(&reset));
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            format!("{}", h2::Error::from(h2::Reason::REFUSED_STREAM)).into();
        // Text that merely says so is not the error itself.
        assert!(!refused_stream(&*wrapped));
    }
}

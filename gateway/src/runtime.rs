//! The `Runtime`: an immutable snapshot of everything one config produced
//! (routes, router, pipelines with warm instances, upstream pools). Requests load
//! the current snapshot once and finish on it; a new config builds a new one.

use crate::builtin;
use crate::config::{
    ByteSize, Config, ConfigError, DEFAULT_MAX_IDLE_MEMORY, PluginDefaults, PluginEntryConfig,
    RedisConfig, RouteConfig, Source, StoreFailure, StoreKind,
};
use crate::identity::{Consumers, resolve_secret};
use crate::metrics::metrics;
use crate::pipeline::{Entry, Pipeline};
use crate::plugin::{
    Capability, CompiledPlugin, ConfigEnv, EntryLimits, HostPattern, InstancePool, PluginEngine,
    RedisStore, Store,
};
use crate::proxy::{TrustedProxies, Upstream};
use crate::router::{RouteSpec, Router, RouterError};
use http::Method;
use std::collections::HashMap;
use std::sync::Arc;
use toml::Spanned;

/// One route, ready to serve.
pub struct Route {
    /// Its unique name.
    pub name: String,
    /// Where it proxies, if anywhere: the first of `upstreams`.
    pub upstream: Option<Arc<Upstream>>,
    /// Every upstream it lists, which a request hook may choose among.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Its plugins.
    pub pipeline: Pipeline,
    /// Removed from the front of the path before proxying.
    pub strip_prefix: Option<String>,
    /// Send the client's `Host` upstream.
    pub preserve_host: bool,
    /// When WebSocket upgrades pass: the idle timeout of an upgraded connection.
    pub websocket: Option<std::time::Duration>,
    /// Request latency, in the metrics.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Requests by method and status, in the metrics.
    pub requests: crate::metrics::RequestCounters,
}

/// Which successful requests the access log records (errors always are).
pub struct AccessLogSampling {
    every: u64,
    seen: std::sync::atomic::AtomicU64,
}

impl AccessLogSampling {
    /// Records a `rate` (0 to 1) of requests: every `1/rate`-th one.
    pub fn new(rate: f64) -> Self {
        let every = if rate <= 0.0 {
            0
        } else {
            (1.0 / rate.min(1.0)).round() as u64
        };
        Self {
            every,
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether to record this request.
    pub fn sampled(&self) -> bool {
        match self.every {
            0 => false,
            1 => true,
            every => self
                .seen
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(every),
        }
    }
}

/// Request-path settings from `[server]`.
pub struct Limits {
    /// Which successful requests the access log records.
    pub access_log: AccessLogSampling,
    /// Largest request body.
    pub max_request_body: u64,
    /// Longest wait for a request body's next bytes.
    pub body_read_timeout: std::time::Duration,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Upgraded connections open at once.
    pub max_websocket_connections: usize,
    /// Client connections open at once.
    pub max_connections: usize,
    /// Open client connections from which each new one closes the
    /// keep-alive connection idle the longest (`close_idle_above` of
    /// `max_connections`).
    pub close_idle_from: usize,
    /// Client connections open at once from one address (IPv6: one /64).
    pub max_connections_per_ip: Option<usize>,
    /// At shutdown: serving on while `/readyz` says 503, then the longest
    /// wait for in-flight requests.
    pub shutdown: Shutdown,
}

/// `[server] shutdown_delay` and `drain_timeout`, read when the signal comes
/// (so a reload changes them).
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Accepting and serving on after the signal, for load balancers to stop
    /// sending.
    pub delay: std::time::Duration,
    /// Then, how long in-flight requests may take.
    pub drain_timeout: std::time::Duration,
}

/// Everything one config produced.
pub struct Runtime {
    /// The routing table.
    pub router: Router,
    /// Routes by id.
    pub routes: Vec<Route>,
    /// Request limits.
    pub limits: Limits,
    /// The config's `[redis]`, if any.
    pub redis: Option<Arc<RedisStore>>,
    /// Upstreams by name.
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// The listener's TLS settings (certificate, client verification), with
    /// `[server.tls]`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Requests that matched no route, in the metrics.
    pub unrouted: crate::metrics::RequestCounters,
}

impl Runtime {
    /// Validates `config` as a whole and builds it: compiles (or reuses) every
    /// plugin, initialises its instances, creates upstream pools. Any error is
    /// located in `source`.
    pub async fn build(
        source: &Source,
        config: &Config,
        engine: &PluginEngine,
        previous: Option<&Runtime>,
    ) -> Result<Self, ConfigError> {
        let limits = Limits::from_config(source, config)?;
        let upstreams = build_upstreams(source, config, previous)?;
        let env = ConfigEnv {
            consumers: Arc::new(Consumers::build(source, config)?),
            services: engine.services().clone(),
            redis: match &config.redis {
                Some(redis) => Some(Arc::new(redis_store(source, redis)?)),
                None => None,
            },
        };
        let (capacity, max_entry) = (config.cache.capacity.0, config.cache.max_entry.as_usize());
        if !engine.services().size_response_cache(capacity, max_entry) {
            tracing::warn!(
                "cache.capacity and cache.max_entry changes take effect at the next restart"
            );
        }
        let (routes, router) = build_routes(source, config, &upstreams, engine, &env).await?;
        Ok(Self {
            router,
            routes,
            limits,
            redis: env.redis.clone(),
            upstreams,
            unrouted: crate::metrics::RequestCounters::new("-"),
            tls: match &config.server.tls {
                Some(tls) => Some(crate::tls::load(source, tls)?),
                None => None,
            },
        })
    }
}

impl Limits {
    /// `[server]`'s request-path settings, checked.
    fn from_config(source: &Source, config: &Config) -> Result<Self, ConfigError> {
        let server = &config.server;
        check_server(source, config)?;
        let trusted: Vec<&str> = server
            .trusted_proxies
            .iter()
            .map(|t| t.get_ref().as_str())
            .collect();
        let trusted_proxies = TrustedProxies::parse(&trusted).map_err(|msg| {
            let span = server
                .trusted_proxies
                .iter()
                .find(|t| msg.contains(&format!("`{}`", t.get_ref())))
                .map_or(0..0, |t| t.span());
            source.error(span, msg)
        })?;
        let max_connections = *server.max_connections.get_ref();
        Ok(Limits {
            access_log: AccessLogSampling::new(*server.access_log_sample.get_ref()),
            max_request_body: server.max_request_body.0,
            body_read_timeout: server.body_read_timeout.get_ref().0,
            trusted_proxies,
            max_websocket_connections: server.max_websocket_connections,
            max_connections,
            close_idle_from: close_idle_from(max_connections, *server.close_idle_above.get_ref()),
            max_connections_per_ip: server
                .max_connections_per_ip
                .as_ref()
                .map(|max| *max.get_ref()),
            shutdown: Shutdown {
                delay: server.shutdown_delay.get_ref().0,
                drain_timeout: server.drain_timeout.get_ref().0,
            },
        })
    }
}

/// The ranges of `[server]`'s numbers, each error at its key.
fn check_server(source: &Source, config: &Config) -> Result<(), ConfigError> {
    let server = &config.server;
    let out_of_range =
        |span: std::ops::Range<usize>, message: &str| Err(source.error(span, message));
    if !(0.0..=1.0).contains(server.access_log_sample.get_ref()) {
        return out_of_range(
            server.access_log_sample.span(),
            "server.access_log_sample must be between 0 and 1",
        );
    }
    if let Some(workers) = &server.workers
        && !(1..=1024).contains(workers.get_ref())
    {
        return out_of_range(workers.span(), "server.workers must be between 1 and 1024");
    }
    if *server.max_connections.get_ref() == 0 {
        return out_of_range(
            server.max_connections.span(),
            "server.max_connections must be at least 1",
        );
    }
    if server.body_read_timeout.get_ref().0 < std::time::Duration::from_secs(1) {
        return out_of_range(
            server.body_read_timeout.span(),
            "server.body_read_timeout must be at least 1s",
        );
    }
    if server.drain_timeout.get_ref().0 > std::time::Duration::from_secs(3600) {
        return out_of_range(
            server.drain_timeout.span(),
            "server.drain_timeout must be at most 1h",
        );
    }
    if server.shutdown_delay.get_ref().0 > std::time::Duration::from_secs(600) {
        return out_of_range(
            server.shutdown_delay.span(),
            "server.shutdown_delay must be at most 10m",
        );
    }
    let share = *server.close_idle_above.get_ref();
    if !(share > 0.0 && share <= 1.0) {
        return out_of_range(
            server.close_idle_above.span(),
            "server.close_idle_above must be above 0 and at most 1 (a share of max_connections)",
        );
    }
    if let Some(per_ip) = &server.max_connections_per_ip
        && *per_ip.get_ref() == 0
    {
        return out_of_range(
            per_ip.span(),
            "server.max_connections_per_ip must be at least 1 (leave it out for no limit)",
        );
    }
    Ok(())
}

/// The config's upstreams by name. An unchanged upstream keeps its
/// connection pools across reloads; a changed one keeps its targets' health.
fn build_upstreams(
    source: &Source,
    config: &Config,
    previous: Option<&Runtime>,
) -> Result<HashMap<String, Arc<Upstream>>, ConfigError> {
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let before = previous.and_then(|p| p.upstreams.get(name));
        let upstream = match before.filter(|kept| kept.unchanged(upstream.get_ref(), source)) {
            Some(kept) => kept.clone(),
            None => {
                let built = Arc::new(Upstream::new(name, upstream, source)?);
                if let Some(before) = before {
                    built.inherit_health(before);
                }
                built.start_tasks();
                built
            }
        };
        upstreams.insert(name.clone(), upstream);
    }
    Ok(upstreams)
}

/// Every route, built in config order, and the router over them.
async fn build_routes(
    source: &Source,
    config: &Config,
    upstreams: &HashMap<String, Arc<Upstream>>,
    engine: &PluginEngine,
    env: &ConfigEnv,
) -> Result<(Vec<Route>, Router), ConfigError> {
    let mut routes = Vec::with_capacity(config.routes.len());
    let mut specs = Vec::with_capacity(config.routes.len());
    let mut names: Vec<String> = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let (route, spec) =
            build_route(source, config, route, upstreams, &names, engine, env).await?;
        names.push(route.name.clone());
        specs.push(spec);
        routes.push(route);
    }
    let router = Router::build(&specs, &names).map_err(|(id, err)| {
        let route = config.routes[id].get_ref();
        let span = match err {
            RouterError::Host(_) => route.hosts.as_ref().map_or(route.path.span(), |h| h.span()),
            _ => route.path.span(),
        };
        source.error(span, format!("route `{}`: {err}", names[id]))
    })?;
    Ok((routes, router))
}

/// The open connections from which new ones close idle ones: `share` of
/// `max`, rounded down, at least 1.
fn close_idle_from(max: usize, share: f64) -> usize {
    let from = (max as f64 * share).floor() as usize;
    from.clamp(1, max)
}

async fn build_route(
    source: &Source,
    config: &Config,
    spanned: &Spanned<crate::config::RouteConfig>,
    upstreams: &HashMap<String, Arc<Upstream>>,
    earlier: &[String],
    engine: &PluginEngine,
    env: &ConfigEnv,
) -> Result<(Route, RouteSpec), ConfigError> {
    let route = spanned.get_ref();
    let name = route.name.get_ref().clone();
    if name.is_empty() {
        return Err(source.error(route.name.span(), "a route name cannot be empty"));
    }
    if earlier.contains(&name) {
        return Err(source.error(
            route.name.span(),
            format!("duplicate route name `{name}`: route names must be unique"),
        ));
    }
    let path = route.path.get_ref();
    if !path.starts_with('/') {
        return Err(source.error(
            route.path.span(),
            format!("route `{name}`: path `{path}` must start with `/`"),
        ));
    }
    let methods = match &route.methods {
        None => None,
        Some(methods) => Some(route_methods(source, &name, methods)?),
    };
    let listed = route_upstreams(source, config, route, &name, upstreams)?;
    let upstream = listed.first().cloned();
    if upstream.is_none() && route.plugins.is_empty() {
        return Err(source.error(
            spanned.span(),
            format!("route `{name}` has neither an upstream nor plugins: add upstream = \"NAME\" or a plugin that answers"),
        ));
    }
    let strip_prefix = match &route.strip_prefix {
        None => None,
        Some(prefix) => Some(route_strip_prefix(source, &name, prefix)?),
    };
    let websocket = websocket_setting(source, &name, route, upstream.is_some())?;
    check_http2_upstreams(source, &name, route, &listed)?;

    let mut entries = Vec::with_capacity(route.plugins.len());
    for entry in &route.plugins {
        entries.push(build_entry(source, config, &name, entry, engine, env).await?);
    }

    let name_for_metrics = name.clone();
    let spec = RouteSpec {
        path: path.clone(),
        methods,
        hosts: route.hosts.as_ref().map(|h| h.get_ref().clone()),
    };
    Ok((
        Route {
            name,
            upstream,
            pipeline: Pipeline::new(entries)
                .choosing_among(listed.iter().map(|u| u.name.clone()).collect()),
            upstreams: listed,
            strip_prefix,
            preserve_host: route.preserve_host.as_ref().is_some_and(|p| *p.get_ref()),
            websocket,
            latency: metrics()
                .request_duration
                .get_or_create(&[("route", name_for_metrics.clone())])
                .clone(),
            requests: crate::metrics::RequestCounters::new(&name_for_metrics),
        },
        spec,
    ))
}

/// A route's `methods`, parsed: not empty, each a method, never CONNECT.
fn route_methods(
    source: &Source,
    name: &str,
    methods: &Spanned<Vec<String>>,
) -> Result<Vec<Method>, ConfigError> {
    if methods.get_ref().is_empty() {
        return Err(source.error(
            methods.span(),
            format!("route `{name}`: methods cannot be empty; leave it out to accept every method"),
        ));
    }
    let parsed = methods
        .get_ref()
        .iter()
        .map(|m| {
            let upper = m.to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| {
                source.error(
                    methods.span(),
                    format!("route `{name}`: invalid method `{m}`"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.contains(&Method::CONNECT) {
        return Err(source.error(
            methods.span(),
            format!("route `{name}`: CONNECT cannot be routed: the gateway does not open tunnels, and answers CONNECT with 405"),
        ));
    }
    Ok(parsed)
}

/// A route's `strip_prefix` without its trailing `/`; it must start with `/`.
fn route_strip_prefix(
    source: &Source,
    name: &str,
    prefix: &Spanned<String>,
) -> Result<String, ConfigError> {
    let text = prefix.get_ref().trim_end_matches('/');
    if !text.starts_with('/') {
        return Err(source.error(
            prefix.span(),
            format!(
                "route `{name}`: strip_prefix `{}` must start with `/`",
                prefix.get_ref()
            ),
        ));
    }
    Ok(text.to_string())
}

/// What a route may not ask of an HTTP/2 upstream. HTTP/2 names the host in
/// `:authority`, which is the target's: a different `Host` beside it makes
/// the request malformed (RFC 9113, section 8.3.1). And WebSocket over
/// HTTP/2 is another handshake (RFC 8441) than the one this gateway relays.
fn check_http2_upstreams(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    listed: &[Arc<Upstream>],
) -> Result<(), ConfigError> {
    for upstream in listed.iter().filter(|u| u.http2()) {
        if let Some(on) = route.preserve_host.as_ref().filter(|p| *p.get_ref()) {
            return Err(source.error(
                on.span(),
                format!(
                    "route `{name}`: preserve_host cannot be used with upstream `{}`, which speaks HTTP/2 (its requests carry the target's authority)",
                    upstream.name
                ),
            ));
        }
        if let Some(on) = route.websocket.as_ref().filter(|w| *w.get_ref()) {
            return Err(source.error(
                on.span(),
                format!(
                    "route `{name}`: websocket = true needs an HTTP/1.1 upstream; `{}` speaks HTTP/2",
                    upstream.name
                ),
            ));
        }
    }
    Ok(())
}

/// The upstreams a route lists (`upstream = "a"` or `upstreams = ["a",
/// "b"]`), resolved by name, in order.
fn route_upstreams(
    source: &Source,
    config: &Config,
    route: &RouteConfig,
    name: &str,
    upstreams: &HashMap<String, Arc<Upstream>>,
) -> Result<Vec<Arc<Upstream>>, ConfigError> {
    let names: Vec<Spanned<String>> = match (&route.upstream, &route.upstreams) {
        (Some(_), Some(list)) => {
            return Err(source.error(
                list.span(),
                format!("route `{name}`: give either `upstream` or `upstreams`, not both"),
            ));
        }
        (Some(one), None) => vec![one.clone()],
        (None, Some(list)) if list.get_ref().is_empty() => {
            return Err(source.error(
                list.span(),
                format!("route `{name}`: `upstreams` is empty; name at least one upstream or leave it out"),
            ));
        }
        (None, Some(list)) => list
            .get_ref()
            .iter()
            .map(|n| Spanned::new(list.span(), n.clone()))
            .collect(),
        (None, None) => Vec::new(),
    };
    let mut listed: Vec<Arc<Upstream>> = Vec::with_capacity(names.len());
    for wanted in &names {
        let found = upstreams.get(wanted.get_ref()).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
            source.error(
                wanted.span(),
                format!(
                    "route `{name}`: unknown upstream `{}`; defined upstreams: {}",
                    wanted.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?;
        if listed.iter().any(|u| u.name == found.name) {
            return Err(source.error(
                wanted.span(),
                format!("route `{name}`: upstream `{}` is listed twice", found.name),
            ));
        }
        listed.push(found);
    }
    Ok(listed)
}

/// The idle timeout of the route's upgraded connections, when it lets
/// WebSocket upgrades through.
fn websocket_setting(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    has_upstream: bool,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let enabled = route.websocket.as_ref().filter(|on| *on.get_ref());
    match (enabled, &route.websocket_idle_timeout) {
        (None, None) => Ok(None),
        (None, Some(timeout)) => Err(source.error(
            timeout.span(),
            format!("route `{name}`: websocket_idle_timeout needs websocket = true"),
        )),
        (Some(on), _) if !has_upstream => Err(source.error(
            on.span(),
            format!("route `{name}`: websocket = true needs an upstream to pass the connection to"),
        )),
        (Some(_), Some(timeout)) if timeout.get_ref().0.is_zero() => Err(source.error(
            timeout.span(),
            format!("route `{name}`: websocket_idle_timeout must be more than zero"),
        )),
        (Some(_), timeout) => {
            Ok(Some(timeout.as_ref().map_or(
                crate::config::DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
                |t| t.get_ref().0,
            )))
        }
    }
}

async fn build_entry(
    source: &Source,
    config: &Config,
    route: &str,
    spanned: &Spanned<PluginEntryConfig>,
    engine: &PluginEngine,
    env: &ConfigEnv,
) -> Result<Entry, ConfigError> {
    let entry = spanned.get_ref();
    let reference = entry.plugin.get_ref();
    let at_plugin =
        |msg: String| source.error(entry.plugin.span(), format!("route `{route}`: {msg}"));

    let is_path = reference.ends_with(".wasm");
    let compiled = if is_path {
        let path = source.base_dir().join(reference);
        let bytes = std::fs::read(&path)
            .map_err(|e| at_plugin(format!("cannot read plugin `{}`: {e}", path.display())))?;
        engine.compile(&bytes)
    } else {
        let bytes = builtin::find(reference).ok_or_else(|| {
            at_plugin(format!(
                "unknown plugin `{reference}`: built-in plugins are {}; a component path must end in .wasm",
                builtin::names().join(", ")
            ))
        })?;
        engine.compile_static(bytes)
    }
    .map_err(|e| at_plugin(format!("plugin `{reference}`: {e}")))?;
    check_grants(source, route, entry, &compiled, is_path)?;

    let defaults = &config.plugin_defaults;
    let memory_limit = entry
        .memory_limit
        .unwrap_or(defaults.memory_limit)
        .as_usize();
    let idle = idle_memory(source, route, entry, defaults, memory_limit)?;
    let limits = EntryLimits {
        deadline: entry.deadline.unwrap_or(defaults.deadline).0,
        memory: memory_limit,
        pool_size: entry.pool_size.unwrap_or(defaults.pool_size),
    };
    let config_json = plugin_config(source, route, entry)?;
    let mut allowed_hosts = Vec::with_capacity(entry.allowed_hosts.len());
    for host in &entry.allowed_hosts {
        allowed_hosts.push(
            HostPattern::parse(host.get_ref())
                .map_err(|e| source.error(host.span(), format!("route `{route}`: {e}")))?,
        );
    }
    let max_body = entry.max_body.unwrap_or(defaults.max_body).as_usize();
    let store = entry_store(source, route, entry, env.redis.as_ref())?;
    let env = env.entry(
        Arc::from(reference.as_str()),
        allowed_hosts.into(),
        max_body,
        &store,
    );
    let mut pool = InstancePool::new(engine.engine(), compiled.pre, config_json, limits, env)
        .await
        .map_err(|e| {
            let span = entry
                .config
                .as_ref()
                .map_or(entry.plugin.span(), |c| c.span());
            source.error(
                span,
                format!("route `{route}`: plugin `{reference}` rejected its config: {e}"),
            )
        })?;
    idle.apply(source, route, entry, &mut pool)?;
    tracing::debug!(route, plugin = pool.name(), hash = %compiled.hash, "plugin entry ready");
    Ok(Entry::new(
        reference.clone(),
        pool,
        entry.on_error,
        max_body,
        compiled.hash.to_string(),
    ))
}

/// An entry's `max_idle_memory` as the file set it (with where), or none for
/// the default, which depends on the plugin's memory after `init`.
struct IdleMemory<'a> {
    setting: Option<(&'a Spanned<ByteSize>, &'static str)>,
    memory_limit: usize,
}

/// The entry's `max_idle_memory`, else `[plugin_defaults]`'s, else the
/// default (see [`default_idle_memory`]). One set above `memory_limit` is an
/// error where it was written.
fn idle_memory<'a>(
    source: &Source,
    route: &str,
    entry: &'a PluginEntryConfig,
    defaults: &'a PluginDefaults,
    memory_limit: usize,
) -> Result<IdleMemory<'a>, ConfigError> {
    let setting = match (&entry.max_idle_memory, &defaults.max_idle_memory) {
        (Some(own), _) => Some((own, "")),
        (None, Some(default)) => Some((default, ", from [plugin_defaults]")),
        (None, None) => None,
    };
    if let Some((value, origin)) = setting {
        let bytes = value.get_ref().as_usize();
        if bytes > memory_limit {
            return Err(source.error(
                value.span(),
                format!(
                    "route `{route}`: max_idle_memory ({}{origin}) is above the entry's memory_limit ({}); set it at most to memory_limit (equal to it, instances are never dropped for their memory)",
                    show_size(bytes),
                    show_size(memory_limit)
                ),
            ));
        }
    }
    Ok(IdleMemory {
        setting,
        memory_limit,
    })
}

/// `max_idle_memory` when the file does not set it: 16MiB, or 4 times what
/// the plugin holds right after `init` when that is more, capped at
/// `memory_limit`. Never below `initial` (an instance cannot hold more than
/// `memory_limit`), so an instance at its size after `init` is never dropped.
fn default_idle_memory(initial: usize, memory_limit: usize) -> usize {
    DEFAULT_MAX_IDLE_MEMORY
        .as_usize()
        .max(initial.saturating_mul(4))
        .min(memory_limit)
}

impl IdleMemory<'_> {
    /// Has `pool` drop instances grown past the limit, counted by the
    /// metric; refuses a limit the file set below what the plugin holds
    /// after `init` (every call would then drop its instance).
    fn apply(
        &self,
        source: &Source,
        route: &str,
        entry: &PluginEntryConfig,
        pool: &mut InstancePool,
    ) -> Result<(), ConfigError> {
        let initial = pool.initial_memory();
        let bytes = match self.setting {
            Some(setting) => written_idle_memory(source, route, entry, setting, initial)?,
            None => default_idle_memory(initial, self.memory_limit),
        };
        let discards = metrics()
            .pool_discards
            .get_or_create(&[
                ("route", route.to_string()),
                ("plugin", entry.plugin.get_ref().clone()),
                ("reason", "max_idle_memory".to_string()),
            ])
            .clone();
        pool.drop_oversized(bytes, discards);
        Ok(())
    }
}

/// A `max_idle_memory` the file set, in bytes; an error where it was
/// written when it is below `initial`, the plugin's memory after `init`.
fn written_idle_memory(
    source: &Source,
    route: &str,
    entry: &PluginEntryConfig,
    (value, origin): (&Spanned<ByteSize>, &'static str),
    initial: usize,
) -> Result<usize, ConfigError> {
    let bytes = value.get_ref().as_usize();
    if initial <= bytes {
        return Ok(bytes);
    }
    Err(source.error(
        value.span(),
        format!(
            "route `{route}`: plugin `{}` holds {} of linear memory right after init, more than max_idle_memory ({}{origin}), so every call would drop its instance; set max_idle_memory above what the plugin needs, at most memory_limit, or leave it out (the default is 4 times the memory after init, at least 16MiB, at most memory_limit)",
            entry.plugin.get_ref(),
            show_size(initial),
            show_size(bytes)
        ),
    ))
}

/// A byte count for a message: `16MiB`, `1.1MiB`, `4096 bytes`.
fn show_size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else if bytes >= MIB {
        format!("{:.1}MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// Connections to `[redis]` (made lazily: a Redis that is down at load is not
/// a config error).
fn redis_store(source: &Source, redis: &Spanned<RedisConfig>) -> Result<RedisStore, ConfigError> {
    let config = redis.get_ref();
    let password = match &config.password {
        Some(secret) => Some(
            resolve_secret(source, secret)
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "is not UTF-8".to_string()))
                .map_err(|e| source.error(secret.span(), format!("redis.password: {e}")))?,
        ),
        None => None,
    };
    if let Some(connections) = &config.connections
        && !(1..=64).contains(connections.get_ref())
    {
        return Err(source.error(
            connections.span(),
            "redis.connections must be between 1 and 64",
        ));
    }
    RedisStore::new(
        config.url.get_ref(),
        config.username.as_deref(),
        password.as_deref(),
        config.timeout.0,
        config
            .connections
            .as_ref()
            .map_or(crate::worker::count(), |c| *c.get_ref()),
        config.key_prefix.clone(),
    )
    .map_err(|e| source.error(config.url.span(), e))
}

/// Where an entry's shared state lives.
fn entry_store(
    source: &Source,
    route: &str,
    entry: &PluginEntryConfig,
    redis: Option<&Arc<RedisStore>>,
) -> Result<Store, ConfigError> {
    match (entry.store.get_ref(), redis) {
        (StoreKind::Local, _) => match &entry.store_failure {
            Some(failure) => Err(source.error(
                failure.span(),
                format!("route `{route}`: store_failure only applies with store = \"redis\""),
            )),
            None => Ok(Store::Local),
        },
        (StoreKind::Redis, Some(redis)) => Ok(Store::Redis {
            redis: redis.clone(),
            on_failure: entry
                .store_failure
                .as_ref()
                .map_or(StoreFailure::default(), |f| *f.get_ref()),
        }),
        (StoreKind::Redis, None) => Err(source.error(
            entry.store.span(),
            format!(
                "route `{route}`: store = \"redis\" needs a [redis] section with the server's url"
            ),
        )),
    }
}

/// Refuses a plugin that imports a host interface its entry does not grant.
/// Built-ins are granted what they are known to need; a `.wasm` file gets only
/// its entry's `grants`.
fn check_grants(
    source: &Source,
    route: &str,
    entry: &PluginEntryConfig,
    compiled: &CompiledPlugin,
    is_path: bool,
) -> Result<(), ConfigError> {
    let reference = entry.plugin.get_ref();
    let mut granted: Vec<Capability> = if is_path {
        Vec::new()
    } else {
        builtin::grants(reference).to_vec()
    };
    for grant in &entry.grants {
        let capability = Capability::from_name(grant.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
            source.error(
                grant.span(),
                format!(
                    "route `{route}`: unknown grant `{}`: grantable capabilities are {}",
                    grant.get_ref(),
                    known.join(", ")
                ),
            )
        })?;
        granted.push(capability);
    }
    match compiled
        .capabilities
        .iter()
        .find(|needed| !granted.contains(needed))
    {
        None => Ok(()),
        Some(missing) => Err(source.error(
            entry.plugin.span(),
            format!(
                "route `{route}`: plugin `{reference}` imports gateway:plugin/{name} but its entry does not grant it; add grants = [\"{name}\"] to the entry if you trust the plugin with it",
                name = missing.name()
            ),
        )),
    }
}

/// The entry's `config` table as JSON, with the `config_files` and `config_env`
/// values filled in.
fn plugin_config(
    source: &Source,
    route: &str,
    entry: &PluginEntryConfig,
) -> Result<String, ConfigError> {
    let mut table = entry
        .config
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_default();
    let mut fill = |key: &String, spanned: &Spanned<String>, value: Result<String, String>| {
        let at = |msg: String| source.error(spanned.span(), format!("route `{route}`: {msg}"));
        if table.contains_key(key) {
            return Err(at(format!(
                "config key `{key}` is set both in config and here; keep one"
            )));
        }
        table.insert(key.clone(), toml::Value::String(value.map_err(at)?));
        Ok(())
    };
    for (key, file) in &entry.config_files {
        let path = source.base_dir().join(file.get_ref());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read `{}` for config key `{key}`: {e}",
                path.display()
            )
        });
        fill(key, file, text)?;
    }
    for (key, var) in &entry.config_env {
        let value = std::env::var(var.get_ref()).map_err(|_| {
            format!(
                "environment variable `{}` (for config key `{key}`) is not set",
                var.get_ref()
            )
        });
        fill(key, var, value)?;
    }
    serde_json::to_string(&table).map_err(|e| {
        source.error(
            entry
                .config
                .as_ref()
                .map_or(entry.plugin.span(), |c| c.span()),
            format!("route `{route}`: plugin config cannot be passed on: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::default_idle_memory;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_default_max_idle_memory_is_16mib_for_a_small_plugin() {
        assert_eq!(default_idle_memory(MIB, 64 * MIB), 16 * MIB);
        assert_eq!(default_idle_memory(4 * MIB, 64 * MIB), 16 * MIB);
    }

    #[test]
    fn the_default_max_idle_memory_is_4_times_a_large_init() {
        assert_eq!(default_idle_memory(5 * MIB, 64 * MIB), 20 * MIB);
        assert_eq!(default_idle_memory(13 * MIB, 256 * MIB), 52 * MIB);
    }

    #[test]
    fn the_default_max_idle_memory_is_capped_at_memory_limit_and_never_below_init() {
        assert_eq!(default_idle_memory(MIB, 8 * MIB), 8 * MIB);
        assert_eq!(default_idle_memory(40 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(default_idle_memory(64 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(default_idle_memory(usize::MAX / 2, usize::MAX), usize::MAX);
        for initial in (0..=64).map(|m| m * MIB) {
            assert!(default_idle_memory(initial, 64 * MIB) >= initial);
        }
    }
}

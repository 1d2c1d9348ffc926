//! The `Runtime`: an immutable snapshot of everything one config produced
//! (routes, router, pipelines with warm instances, upstream pools). Requests load
//! the current snapshot once and finish on it; a new config builds a new one.

use crate::builtin;
use crate::config::problems::{Problems, in_config_terms, suggestion};
use crate::config::{
    ByteSize, Config, ConfigError, DEFAULT_MAX_IDLE_MEMORY, PluginDefaults, PluginEntryConfig,
    RedisConfig, RouteConfig, RouteSettings, ServerSettings, Source, StoreFailure, StoreKind,
    resolve_secret, route_listeners, route_settings, upstream_settings,
};
use crate::identity::Consumers;
use crate::metrics::metrics;
use crate::pipeline::{Entry, Level, Pipeline};
use crate::plugin::{
    Capability, CompiledPlugin, ConfigEnv, EntryLimits, HostPattern, InstancePool, Needs,
    PluginEngine, RedisStore, Store,
};
use crate::proxy::mirror::Mirror;
use crate::proxy::{TrustedProxies, Upstream};
use crate::router::{RouteSpec, Router, RouterError};
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
    /// The running sums of its upstreams' weights, when it splits requests
    /// by weight (the last is the total).
    pub split: Option<Vec<u64>>,
    /// Its plugins: the inherited `[[plugins]]` entries (each possibly
    /// replaced by one of its own), then its own.
    pub pipeline: Pipeline,
    /// The inherited entries it switches off, by name.
    pub switched_off: Vec<String>,
    /// Removed from the front of the path before proxying.
    pub strip_prefix: Option<String>,
    /// Send the client's `Host` upstream.
    pub preserve_host: bool,
    /// When WebSocket upgrades pass: the idle timeout of an upgraded connection.
    pub websocket: Option<std::time::Duration>,
    /// Its retry policy.
    pub retry: Option<crate::proxy::upstream::retry::RetryPolicy>,
    /// Where copies of its requests go.
    pub mirror: Option<Mirror>,
    /// How its responses are compressed for the client, when they are.
    pub compression: Option<crate::compress::Compression>,
    /// Request latency, in the metrics.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Requests by method and status, in the metrics.
    pub requests: crate::metrics::RequestCounters,
}

impl Route {
    /// Where a request goes before any request hook chooses: an upstream
    /// picked by weight when the route splits requests, else its first.
    pub fn first_upstream(&self) -> Option<&Arc<Upstream>> {
        let Some(sums) = &self.split else {
            return self.upstream.as_ref();
        };
        let total = sums.last().copied().unwrap_or(0);
        let drawn = fastrand::u64(0..total.max(1));
        let index = sums.partition_point(|sum| *sum <= drawn);
        self.upstreams.get(index).or(self.upstream.as_ref())
    }
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
    /// `[server]` and `[admin]`, checked.
    pub server: ServerSettings,
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
    /// The TLS settings of the `[[listeners]]` that have `tls`, by name.
    pub listener_tls: HashMap<String, Arc<rustls::ServerConfig>>,
    /// Requests that matched no route, in the metrics.
    pub unrouted: crate::metrics::RequestCounters,
}

/// What a config builds besides its upstreams and routes.
struct Shared {
    server: ServerSettings,
    env: ConfigEnv,
    tls: Option<Arc<rustls::ServerConfig>>,
    listener_tls: HashMap<String, Arc<rustls::ServerConfig>>,
}

impl Runtime {
    /// Validates `config` as a whole and builds it: compiles (or reuses) every
    /// plugin, initialises its instances, creates upstream pools. Every error
    /// found is reported, each located in `source`.
    pub async fn build(
        source: &Source,
        config: &Config,
        engine: &PluginEngine,
        previous: Option<&Runtime>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Problems::new(source);
        crate::apis::check_reserved_names(&mut problems, config);
        let upstreams = build_upstreams(&mut problems, config, previous);
        let shared = build_shared(&mut problems, config, engine);
        // Routes are checked even when something they use failed, so one
        // run reports their mistakes too: against no consumers (plugins
        // read them per request, not at init) and no Redis (entries that
        // keep state there are skipped, the `[redis]` error being reported).
        let env = shared.as_ref().map_or_else(
            || ConfigEnv {
                consumers: Arc::new(Consumers::default()),
                services: engine.services().clone(),
                redis: None,
            },
            |shared| shared.env.clone(),
        );
        let inherited = build_inherited(&mut problems, config, engine, &env).await;
        let building = Building {
            config,
            upstreams: &upstreams,
            engine,
            env: &env,
            inherited: &inherited,
        };
        let routes = build_routes(&mut problems, &building).await;
        let (shared, (routes, router)) = problems.finish_some(shared.zip(routes))?;
        let (capacity, max_entry) = (config.cache.capacity.0, config.cache.max_entry.as_usize());
        if !engine.services().size_response_cache(capacity, max_entry) {
            tracing::warn!(
                "cache.capacity and cache.max_entry changes take effect at the next restart"
            );
        }
        Ok(Self {
            limits: Limits::new(&shared.server),
            server: shared.server,
            router,
            routes,
            redis: shared.env.redis,
            upstreams,
            unrouted: crate::metrics::RequestCounters::new("-"),
            tls: shared.tls,
            listener_tls: shared.listener_tls,
        })
    }
}

/// The server settings, consumers, Redis and TLS of `config`, every error
/// recorded; `None` when any failed.
fn build_shared(
    problems: &mut Problems<'_>,
    config: &Config,
    engine: &PluginEngine,
) -> Option<Shared> {
    let source = problems.source();
    let server = problems.keep(ServerSettings::check(
        source,
        &config.server,
        &config.listeners,
        config.admin.as_ref(),
    ));
    let consumers = problems.keep(Consumers::build(source, config));
    let redis = match &config.redis {
        Some(redis) => problems
            .keep(redis_store(source, redis))
            .map(|r| Some(Arc::new(r))),
        None => Some(None),
    };
    let tls = match &config.server.tls {
        Some(tls) => problems
            .keep(crate::tls::load(source, tls, "server.tls"))
            .map(Some),
        None => Some(None),
    };
    let listener_tls = listener_tls(problems, config);
    Some(Shared {
        server: server?,
        env: ConfigEnv {
            consumers: Arc::new(consumers?),
            services: engine.services().clone(),
            redis: redis?,
        },
        tls: tls?,
        listener_tls: listener_tls?,
    })
}

/// The TLS settings of every `[[listeners]]` entry with `tls`, by name,
/// every error recorded; `None` when any failed.
fn listener_tls(
    problems: &mut Problems<'_>,
    config: &Config,
) -> Option<HashMap<String, Arc<rustls::ServerConfig>>> {
    let source = problems.source();
    let mut built = Some(HashMap::new());
    for listener in &config.listeners {
        let listener = listener.get_ref();
        let Some(tls) = &listener.tls else {
            continue;
        };
        let name = listener.name.get_ref();
        let label = format!("listener `{name}` tls");
        match problems.keep(crate::tls::load(source, tls, &label)) {
            Some(tls) => {
                if let Some(built) = built.as_mut() {
                    built.insert(name.clone(), tls);
                }
            }
            None => built = None,
        }
    }
    built
}

impl Limits {
    /// The request-path part of `[server]`.
    fn new(server: &ServerSettings) -> Self {
        Limits {
            access_log: AccessLogSampling::new(server.access_log_sample),
            max_request_body: server.max_request_body,
            body_read_timeout: server.body_read_timeout,
            trusted_proxies: server.trusted_proxies.clone(),
            max_websocket_connections: server.max_websocket_connections,
            max_connections: server.max_connections,
            close_idle_from: close_idle_from(server.max_connections, server.close_idle_above),
            max_connections_per_ip: server.max_connections_per_ip,
            shutdown: Shutdown {
                delay: server.shutdown_delay,
                drain_timeout: server.drain_timeout,
            },
        }
    }
}

/// The config's upstreams that build, by name, each error recorded. An
/// unchanged upstream keeps its connection pools across reloads; a changed
/// one keeps its targets' health.
fn build_upstreams(
    problems: &mut Problems<'_>,
    config: &Config,
    previous: Option<&Runtime>,
) -> HashMap<String, Arc<Upstream>> {
    let source = problems.source();
    let mut upstreams = HashMap::new();
    for (name, upstream) in &config.upstreams {
        let Some(settings) = problems.keep(upstream_settings(source, name, upstream)) else {
            continue;
        };
        let before = previous.and_then(|p| p.upstreams.get(name));
        if let Some(kept) = before.filter(|kept| kept.unchanged(&settings)) {
            upstreams.insert(name.clone(), kept.clone());
            continue;
        }
        let built = match Upstream::new(name, &settings) {
            Ok(built) => built,
            Err(message) => {
                problems.at(upstream.span(), format!("upstream `{name}`: {message}"));
                continue;
            }
        };
        let built = Arc::new(built);
        if let Some(before) = before {
            built.inherit_health(before);
        }
        built.start_tasks();
        upstreams.insert(name.clone(), built);
    }
    upstreams
}

/// What every route of a config is built against.
#[derive(Clone, Copy)]
struct Building<'a> {
    config: &'a Config,
    upstreams: &'a HashMap<String, Arc<Upstream>>,
    engine: &'a PluginEngine,
    env: &'a ConfigEnv,
    /// The `[[plugins]]` entries, in order.
    inherited: &'a [Inherited],
}

/// Where an entry is declared: how its errors name the place, and the
/// `route` label of its metrics (`*` for an inherited entry, which serves
/// every route that keeps it).
struct EntryAt<'a> {
    scope: &'a str,
    route: &'a str,
}

/// The `route` label of an inherited entry's metrics.
pub const INHERITED_ROUTE_LABEL: &str = "*";

/// A `[[plugins]]` (or an API's) entry as routes inherit it.
#[derive(Clone)]
struct Inherited {
    /// What a route replaces or switches it off by.
    name: String,
    /// The plugin it runs (a replacement must run the same one).
    plugin: String,
    /// The entry, shared by every route that keeps it; `None` when it is
    /// off (`enabled = false`) or did not build (its error recorded).
    entry: Option<Arc<Entry>>,
}

/// The `[[plugins]]` entries, each built once, every error recorded.
async fn build_inherited(
    problems: &mut Problems<'_>,
    config: &Config,
    engine: &PluginEngine,
    env: &ConfigEnv,
) -> Vec<Inherited> {
    let source = problems.source();
    let mut inherited: Vec<Inherited> = Vec::with_capacity(config.plugins.len());
    for spanned in &config.plugins {
        let entry = spanned.get_ref();
        let name = entry.name().to_string();
        if inherited.iter().any(|i| i.name == name) {
            let at = entry.name.as_ref().unwrap_or(&entry.plugin);
            problems.at(
                at.span(),
                format!("[[plugins]]: two entries are named `{name}`: give one a `name` of its own, so routes can tell them apart"),
            );
            continue;
        }
        let at = EntryAt {
            scope: "[[plugins]]",
            route: INHERITED_ROUTE_LABEL,
        };
        // Built even when off, so its mistakes are found before a route
        // turns it on.
        let built = build_entry(source, config, &at, spanned, engine, env).await;
        let built = problems
            .keep(built)
            .map(|built| Arc::new(built.at(Level::Global, &name)));
        inherited.push(Inherited {
            plugin: entry.plugin.get_ref().clone(),
            entry: built.filter(|_| entry.is_enabled()),
            name,
        });
    }
    inherited
}

/// Every route (the hand-written ones in config order, then each API's
/// operations) and the router over them; `None` when any route or API is
/// wrong (each error recorded).
async fn build_routes(
    problems: &mut Problems<'_>,
    building: &Building<'_>,
) -> Option<(Vec<Route>, Router)> {
    let source = problems.source();
    let config = building.config;
    let apis = crate::apis::expand(problems, config);
    let mut levels: Vec<Vec<Inherited>> = Vec::with_capacity(apis.len());
    for api in &apis {
        levels.push(api_inherited(problems, building, api).await);
    }
    let own = config.routes.iter().map(|r| (r, building.inherited));
    let of_apis = apis
        .iter()
        .zip(&levels)
        .flat_map(|(api, inherited)| api.routes.iter().map(move |r| (r, inherited.as_slice())));
    let all: Vec<(&Spanned<RouteConfig>, &[Inherited])> = own.chain(of_apis).collect();
    let names: Vec<String> = all
        .iter()
        .map(|(r, _)| r.get_ref().name.get_ref().clone())
        .collect();
    let mut routes = Vec::with_capacity(all.len());
    let mut specs = Vec::with_capacity(all.len());
    for (id, (route, inherited)) in all.iter().enumerate() {
        let building = Building {
            inherited,
            ..*building
        };
        let built = build_route(source, &building, route, &names[..id]).await;
        if let Some((route, spec)) = problems.keep(built) {
            specs.push(spec);
            routes.push(route);
        }
    }
    if routes.len() < all.len() || apis.len() < config.apis.len() {
        return None;
    }
    let router = Router::build(&specs, &names).map_err(|(id, err)| {
        let route = all[id].0.get_ref();
        let span = match err {
            RouterError::Host(_) => route.hosts.as_ref().map_or(route.path.span(), |h| h.span()),
            _ => route.path.span(),
        };
        source.error(span, format!("route `{}`: {err}", names[id]))
    });
    Some((routes, problems.keep(router)?))
}

/// What the routes of `api` inherit: the `[[plugins]]` entries, each
/// replaced or switched off by the API's entry of its name, then the API's
/// other entries (each built once, shared by the API's routes).
async fn api_inherited(
    problems: &mut Problems<'_>,
    building: &Building<'_>,
    api: &crate::apis::Api<'_>,
) -> Vec<Inherited> {
    let source = problems.source();
    let scope = format!("api `{}`", api.name);
    let at = EntryAt {
        scope: &scope,
        route: INHERITED_ROUTE_LABEL,
    };
    let mut inherited: Vec<Inherited> = building.inherited.to_vec();
    let mut taken = vec![false; inherited.len()];
    for spanned in api.plugins.iter().chain(&api.validation) {
        let entry = spanned.get_ref();
        let Some(slot) = inherited_slot(problems, &scope, building.inherited, &taken, entry) else {
            continue;
        };
        if slot.is_none() && inherited.iter().any(|i| i.name == entry.name()) {
            let span = entry.name.as_ref().unwrap_or(&entry.plugin).span();
            problems.at(
                span,
                format!(
                    "{scope}: two entries are named `{}`: give one a `name` of its own",
                    entry.name()
                ),
            );
            continue;
        }
        let (config, engine, env) = (building.config, building.engine, building.env);
        let built = build_entry(source, config, &at, spanned, engine, env).await;
        let built = problems
            .keep(built)
            .map(|b| Arc::new(b.at(Level::Api, entry.name())))
            .filter(|_| entry.is_enabled());
        match slot {
            Some(index) => {
                taken[index] = true;
                inherited[index].entry = built;
            }
            None => inherited.push(Inherited {
                name: entry.name().to_string(),
                plugin: entry.plugin.get_ref().clone(),
                entry: built,
            }),
        }
    }
    inherited
}

/// The open connections from which new ones close idle ones: `share` of
/// `max`, rounded down, at least 1.
fn close_idle_from(max: usize, share: f64) -> usize {
    let from = (max as f64 * share).floor() as usize;
    from.clamp(1, max)
}

/// A plugin's own config error with serde's wording (from "unknown
/// field" or "invalid type" on) in the config's terms.
fn plugin_terms(message: &str) -> String {
    let serde_part = [
        "unknown field `",
        "unknown variant `",
        "invalid type: ",
        "missing field `",
    ]
    .iter()
    .filter_map(|start| message.find(start))
    .min();
    match serde_part {
        Some(at) => format!("{}{}", &message[..at], in_config_terms(&message[at..])),
        None => message.to_string(),
    }
}

/// A route's pipeline entries: the inherited ones in their order, each
/// replaced by the route's entry of the same name (which keeps its place)
/// or switched off by one with `enabled = false`, then the route's other
/// entries in its order. Also the names it switched off.
async fn route_entries(
    problems: &mut Problems<'_>,
    building: &Building<'_>,
    route: &RouteConfig,
) -> (Vec<Arc<Entry>>, Vec<String>) {
    let source = problems.source();
    let name = route.name.get_ref();
    let scope = format!("route `{name}`");
    let at = EntryAt {
        scope: &scope,
        route: name,
    };
    let inherited = building.inherited;
    let mut slots: Vec<Option<Arc<Entry>>> = inherited.iter().map(|i| i.entry.clone()).collect();
    let mut taken = vec![false; inherited.len()];
    let (mut own, mut switched_off) = (Vec::new(), Vec::new());
    for spanned in &route.plugins {
        let entry = spanned.get_ref();
        let Some(slot) = inherited_slot(problems, &scope, inherited, &taken, entry) else {
            continue;
        };
        let built = match entry.is_enabled() {
            false => None,
            true => {
                let (config, engine, env) = (building.config, building.engine, building.env);
                let built = build_entry(source, config, &at, spanned, engine, env).await;
                let level = match slot {
                    Some(_) => Level::Replacement,
                    None => Level::Route,
                };
                problems
                    .keep(built)
                    .map(|b| Arc::new(b.at(level, entry.name())))
            }
        };
        match slot {
            Some(index) => {
                taken[index] = true;
                // The gateway's own switches (an API's validation entry its
                // operation is not in) are not the route's to show.
                let own_switch = inherited[index].name.starts_with("openapi-");
                if !entry.is_enabled() && inherited[index].entry.is_some() && !own_switch {
                    switched_off.push(inherited[index].name.clone());
                }
                slots[index] = built;
            }
            None => own.extend(built),
        }
    }
    // An API operation's key check (or, on a public one, the removal of
    // forged consumer headers) runs before the inherited entries.
    let (first, own): (Vec<_>, Vec<_>) = own
        .into_iter()
        .partition(|e: &Arc<Entry>| crate::apis::runs_first(&e.name));
    let entries = first
        .into_iter()
        .chain(slots.into_iter().flatten())
        .chain(own)
        .collect();
    (entries, switched_off)
}

/// Which inherited entry a route entry replaces or switches off (`Some(None)`
/// for none: it is the route's own), or `None` when that is an error
/// (recorded): a second replacement of one entry, a replacement running
/// another plugin, `enabled = false` naming nothing inherited.
fn inherited_slot(
    problems: &mut Problems<'_>,
    scope: &str,
    inherited: &[Inherited],
    taken: &[bool],
    entry: &PluginEntryConfig,
) -> Option<Option<usize>> {
    let slot = inherited.iter().position(|i| i.name == entry.name());
    let at = entry.name.as_ref().unwrap_or(&entry.plugin).span();
    let fault = match slot {
        Some(index) if taken[index] => Some(format!(
            "{scope}: two entries name the inherited entry `{}`; keep one",
            inherited[index].name
        )),
        Some(index) if entry.is_enabled() && inherited[index].plugin != *entry.plugin.get_ref() => {
            Some(format!(
                "{scope}: this entry would replace the inherited entry `{}`, which runs `{}`, with `{}`; a replacement runs the same plugin: give this entry another `name`, and add an entry `{}` with enabled = false if the inherited one must not run",
                inherited[index].name,
                inherited[index].plugin,
                entry.plugin.get_ref(),
                inherited[index].name
            ))
        }
        None if !entry.is_enabled() => {
            let known: Vec<&str> = inherited.iter().map(|i| i.name.as_str()).collect();
            Some(format!(
                "{scope}: `enabled = false` switches off an inherited entry, and no [[plugins]] entry is named `{}`{} (to leave out one of the route's own entries, delete it)",
                entry.name(),
                suggestion(entry.name(), "the [[plugins]] entries are", &known)
            ))
        }
        _ => None,
    };
    match fault {
        Some(fault) => {
            problems.at(at, fault);
            None
        }
        None => Some(slot),
    }
}

/// The names of the config's listeners, `default` first.
fn listener_names(config: &Config) -> Vec<&str> {
    let named = config
        .listeners
        .iter()
        .map(|l| l.get_ref().name.get_ref().as_str());
    std::iter::once(crate::config::DEFAULT_LISTENER)
        .chain(named)
        .collect()
}

/// One route and its router entry, or every error in it.
async fn build_route(
    source: &Source,
    building: &Building<'_>,
    spanned: &Spanned<RouteConfig>,
    earlier: &[String],
) -> Result<(Route, RouteSpec), ConfigError> {
    let (config, upstreams) = (building.config, building.upstreams);
    let route = spanned.get_ref();
    let mut problems = Problems::new(source);
    let settings = problems.keep(route_settings(source, route, &config.upstreams, earlier));
    let name = route.name.get_ref();
    let known = listener_names(config);
    let listeners = route.listeners.as_ref();
    let listeners = problems.keep(route_listeners(source, name, listeners, &known));
    let compression = problems.keep(crate::config::route_compression(
        source,
        config.server.compression.as_ref(),
        route.compression.as_ref(),
        name,
    ));
    let (entries, switched_off) = route_entries(&mut problems, building, route).await;
    let pipeline = Pipeline::new(entries, config.server.max_request_body.0);
    if problems.is_empty() && !answers_or_proxies(route, &pipeline) {
        problems.at(
            spanned.span(),
            format!("route `{name}` has no upstream, and no plugin of its pipeline can answer a request (none has a request hook): add upstream = \"NAME\" or a plugin that answers, such as `respond`"),
        );
    }
    let (settings, (listeners, compression)) =
        problems.finish_some(settings.zip(listeners.zip(compression)))?;
    let (listed, mirror) = route_upstreams(upstreams, &settings)?;
    let spec = RouteSpec {
        path: settings.path,
        methods: settings.methods,
        hosts: settings.hosts,
        conditions: settings.conditions,
        listeners: listeners.map(Arc::from),
    };
    let route = Route {
        upstream: listed.first().cloned(),
        split: settings.weights.as_deref().map(running_sums),
        pipeline: pipeline.choosing_among(settings.upstreams),
        upstreams: listed,
        switched_off,
        strip_prefix: settings.strip_prefix,
        preserve_host: settings.preserve_host,
        websocket: settings.websocket,
        retry: settings.retry,
        mirror,
        compression,
        latency: metrics()
            .request_duration
            .get_or_create(&[("route", settings.name.clone())])
            .clone(),
        requests: crate::metrics::RequestCounters::new(&settings.name),
        name: settings.name,
    };
    Ok((route, spec))
}

/// Whether `route` proxies, or one of its own entries (not an inherited one,
/// such as an API key check) has a request hook that can answer.
fn answers_or_proxies(route: &RouteConfig, pipeline: &Pipeline) -> bool {
    let proxies = route.upstream.is_some() || route.upstreams.is_some();
    proxies
        || pipeline.entries().iter().any(|e| {
            matches!(e.level, Level::Route | Level::Replacement) && e.takes(Needs::REQUEST_HOOK)
        })
}

/// The built upstreams a route lists, and its mirror. An upstream that did
/// not build has its error reported already.
fn route_upstreams(
    upstreams: &HashMap<String, Arc<Upstream>>,
    settings: &RouteSettings,
) -> Result<(Vec<Arc<Upstream>>, Option<Mirror>), ConfigError> {
    let built = |name: &String| {
        upstreams
            .get(name)
            .cloned()
            .ok_or_else(ConfigError::reported)
    };
    let listed = settings
        .upstreams
        .iter()
        .map(built)
        .collect::<Result<_, _>>()?;
    let mirror = match &settings.mirror {
        None => None,
        Some(mirror) => Some(Mirror::new(
            mirror,
            built(&mirror.upstream)?,
            &settings.name,
        )),
    };
    Ok((listed, mirror))
}

/// The running sums of `weights` (the last is their total).
fn running_sums(weights: &[u32]) -> Vec<u64> {
    weights
        .iter()
        .scan(0u64, |sum, w| {
            *sum += u64::from(*w);
            Some(*sum)
        })
        .collect()
}

async fn build_entry(
    source: &Source,
    config: &Config,
    at: &EntryAt<'_>,
    spanned: &Spanned<PluginEntryConfig>,
    engine: &PluginEngine,
    env: &ConfigEnv,
) -> Result<Entry, ConfigError> {
    let route = at.scope;
    let entry = spanned.get_ref();
    let reference = entry.plugin.get_ref();
    let at_plugin = |msg: String| source.error(entry.plugin.span(), format!("{route}: {msg}"));

    let is_path = reference.ends_with(".wasm");
    let compiled = compile_entry(source, reference, is_path, engine).map_err(at_plugin)?;
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
                .map_err(|e| source.error(host.span(), format!("{route}: {e}")))?,
        );
    }
    let max_body = entry.max_body.unwrap_or(defaults.max_body).as_usize();
    let store = match (entry.store.get_ref(), &env.redis, &config.redis) {
        // `[redis]` is there but failed: its error is reported already.
        (StoreKind::Redis, None, Some(_)) => return Err(ConfigError::reported()),
        (_, redis, _) => entry_store(source, route, entry, redis.as_ref())?,
    };
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
                format!(
                    "{route}: plugin `{reference}` rejected its config: {}",
                    plugin_terms(&e.to_string())
                ),
            )
        })?;
    idle.apply(source, at, entry, &mut pool)?;
    tracing::debug!(scope = route, plugin = pool.name(), hash = %compiled.hash, "plugin entry ready");
    Ok(Entry::new(
        reference.clone(),
        pool,
        entry.on_error,
        max_body,
        compiled.hash.to_string(),
    ))
}

/// The component `reference` names: a `.wasm` file (relative to the config)
/// or a built-in, compiled or taken from the engine's cache.
fn compile_entry(
    source: &Source,
    reference: &str,
    is_path: bool,
    engine: &PluginEngine,
) -> Result<CompiledPlugin, String> {
    let compiled = if is_path {
        let path = source.base_dir().join(reference);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read plugin `{}`: {e}", path.display()))?;
        engine.compile(&bytes)
    } else {
        let bytes = builtin::find(reference).ok_or_else(|| {
            let known = builtin::names();
            let hint = match crate::config::problems::closest(reference, known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            format!(
                "unknown plugin `{reference}`: {hint}built-in plugins are {}; a component path must end in .wasm",
                known.join(", ")
            )
        })?;
        engine.compile_static(bytes)
    };
    compiled.map_err(|e| format!("plugin `{reference}`: {e}"))
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
                    "{route}: max_idle_memory ({}{origin}) is above the entry's memory_limit ({}); set it at most to memory_limit (equal to it, instances are never dropped for their memory)",
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
        at: &EntryAt<'_>,
        entry: &PluginEntryConfig,
        pool: &mut InstancePool,
    ) -> Result<(), ConfigError> {
        let initial = pool.initial_memory();
        let bytes = match self.setting {
            Some(setting) => written_idle_memory(source, at.scope, entry, setting, initial)?,
            None => default_idle_memory(initial, self.memory_limit),
        };
        let discards = metrics()
            .pool_discards
            .get_or_create(&[
                ("route", at.route.to_string()),
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
            "{route}: plugin `{}` holds {} of linear memory right after init, more than max_idle_memory ({}{origin}), so every call would drop its instance; set max_idle_memory above what the plugin needs, at most memory_limit, or leave it out (the default is 4 times the memory after init, at least 16MiB, at most memory_limit)",
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
                format!("{route}: store_failure only applies with store = \"redis\""),
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
            format!("{route}: store = \"redis\" needs a [redis] section with the server's url"),
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
                    "{route}: unknown grant `{}`{}",
                    grant.get_ref(),
                    suggestion(grant.get_ref(), "grantable capabilities", &known)
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
                "{route}: plugin `{reference}` imports gateway:plugin/{name} but its entry does not grant it; add grants = [\"{name}\"] to the entry if you trust the plugin with it",
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
        let at = |msg: String| source.error(spanned.span(), format!("{route}: {msg}"));
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
            format!("{route}: plugin config cannot be passed on: {e}"),
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

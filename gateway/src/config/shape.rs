//! The shape of a config file: what serde reads each table into, defaults
//! included, before any check that needs more than one key.

use super::identity::{ConsumerConfig, IdentityConfig, UsagePlanConfig};
use super::listener::ListenerConfig;
use super::server::ServerConfig;
use super::store::{AdminConfig, CacheConfig, RedisConfig, StoreFailure, StoreKind};
use super::units::{ByteSize, Duration};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing listener and its limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[listeners]]`: client-facing listeners beside `[server]`'s.
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerConfig>>,
    /// Defaults for every pipeline entry's sandbox.
    #[serde(default)]
    pub plugin_defaults: PluginDefaults,
    /// Named upstream services.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamConfig>>,
    /// Routes, matched most-specific first regardless of order.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
    /// `[[plugins]]`: entries every route runs before its own, unless the
    /// route replaces or switches one off by name.
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginEntryConfig>>,
    /// `[apis.NAME]`: APIs defined by OpenAPI documents, one route per
    /// operation.
    #[serde(default)]
    pub apis: BTreeMap<String, Spanned<ApiConfig>>,
    /// Settings shared by consumers.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The callers of the API and their credentials.
    #[serde(default)]
    pub consumers: Vec<Spanned<ConsumerConfig>>,
    /// Usage plans consumers belong to.
    #[serde(default)]
    pub usage_plans: BTreeMap<String, Spanned<UsagePlanConfig>>,
    /// The Redis server shared state can live on.
    #[serde(default)]
    pub redis: Option<Spanned<RedisConfig>>,
    /// The in-process response cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The admin listener; off unless given.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// `[plugin_defaults]`: the sandbox every pipeline entry gets unless it says otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDefaults {
    /// Time one hook call may take before it is interrupted, its waits on
    /// the network through host functions not counted.
    #[serde(default = "default_deadline")]
    pub deadline: Duration,
    /// Largest linear memory one instance may grow to.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    /// Largest body handed to a plugin that reads bodies.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Warm instances kept per pipeline entry.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Linear memory above which an instance is dropped after its call
    /// instead of kept warm; when absent, four times the memory after `init`,
    /// at least [`DEFAULT_MAX_IDLE_MEMORY`] and at most `memory_limit`.
    #[serde(default)]
    pub max_idle_memory: Option<Spanned<ByteSize>>,
}

/// The least `max_idle_memory` is when neither the entry nor
/// `[plugin_defaults]` sets it (four times the memory after `init` when
/// that is more, capped at `memory_limit`).
pub const DEFAULT_MAX_IDLE_MEMORY: ByteSize = ByteSize(16 * 1024 * 1024);

impl PluginEntryConfig {
    /// The name inherited entries are replaced and switched off by.
    pub fn name(&self) -> &str {
        self.name.as_ref().unwrap_or(&self.plugin).get_ref()
    }

    /// Whether the entry is on (`enabled` absent or true).
    pub fn is_enabled(&self) -> bool {
        self.enabled.as_ref().is_none_or(|on| *on.get_ref())
    }
}

impl Default for PluginDefaults {
    fn default() -> Self {
        Self {
            deadline: default_deadline(),
            memory_limit: default_memory_limit(),
            max_body: default_max_body(),
            pool_size: default_pool_size(),
            max_idle_memory: None,
        }
    }
}

fn default_deadline() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}
fn default_memory_limit() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_max_body() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_pool_size() -> usize {
    16
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` targets, used round robin.
    pub targets: Vec<Spanned<String>>,
    /// One weight per target (default: all 1): a target gets its weight's
    /// share of the requests; 0 gives it none.
    #[serde(default)]
    pub weights: Option<Spanned<Vec<u32>>>,
    /// Time allowed to open a connection to a target.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed from sending the request to receiving the response head.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Idle connections kept per target.
    #[serde(default = "default_max_idle")]
    pub max_idle_connections: usize,
    /// Failed connections to a target in a row that take it out of rotation
    /// for `fail_timeout` (0: never).
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// How long a target that failed `max_fails` times is skipped.
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: Spanned<Duration>,
    /// Other targets tried when a connection cannot be opened, for requests
    /// without a body (nothing has reached the upstream, so any method is safe).
    #[serde(default = "default_retries")]
    pub retries: Spanned<u32>,
    /// PEM file of the certificate authorities `https://` targets must chain
    /// to, instead of the built-in Mozilla roots (relative to the config file).
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// The name `https://` targets' certificates are checked against (and sent
    /// as SNI), when it is not the target's host (targets given as addresses).
    #[serde(default)]
    pub tls_server_name: Option<Spanned<String>>,
    /// PEM file of the certificate chain presented to `https://` targets
    /// that ask for a client certificate (mutual TLS), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<Spanned<String>>,
    /// PEM file of the private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<Spanned<String>>,
    /// Active health checks: a `GET` to each target every `interval`.
    #[serde(default)]
    pub health_check: Option<Spanned<HealthCheckConfig>>,
    /// The HTTP version spoken to the targets.
    #[serde(default = "http1")]
    pub protocol: Spanned<UpstreamProtocol>,
    /// With HTTP/2: how often a connection is pinged; one whose ping is not
    /// answered within as long is closed (default 30 s).
    #[serde(default)]
    pub http2_keepalive: Option<Spanned<Duration>>,
    /// With HTTP/2: requests one connection carries at once before another
    /// is opened (default 100).
    #[serde(default)]
    pub http2_max_streams: Option<Spanned<usize>>,
    /// Requests in flight to the upstream at once, from this process; over
    /// it, 503 at once. None: no limit.
    #[serde(default)]
    pub max_requests: Option<Spanned<usize>>,
    /// Ejecting targets whose answers are errors.
    #[serde(default)]
    pub outlier_detection: Option<Spanned<OutlierDetectionConfig>>,
    /// How a target is chosen per request.
    #[serde(default = "round_robin")]
    pub balance: Spanned<BalanceKind>,
    /// With `balance = "hash"`: what is hashed (`header:NAME`,
    /// `cookie:NAME` or `ip`).
    #[serde(default)]
    pub hash_on: Option<Spanned<String>>,
}

/// How an upstream chooses a target per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// The less busy of two targets drawn by weight (power of two choices).
    LeastRequest,
    /// Consistent hashing on `hash_on`.
    Hash,
}

/// `[upstreams.NAME.outlier_detection]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetectionConfig {
    /// Errors in a row (5xx answers, failed connections, timeouts) that
    /// eject a target.
    #[serde(default = "default_consecutive_errors")]
    pub consecutive_errors: Spanned<u32>,
    /// A first ejection's length; the n-th in a row lasts n times it.
    #[serde(default = "default_base_ejection_time")]
    pub base_ejection_time: Spanned<Duration>,
    /// The longest an ejection lasts.
    #[serde(default = "default_max_ejection_time")]
    pub max_ejection_time: Spanned<Duration>,
    /// The most targets out of rotation at once, in percent (one may
    /// always be).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: Spanned<u32>,
}

fn round_robin() -> Spanned<BalanceKind> {
    Spanned::new(0..0, BalanceKind::RoundRobin)
}
fn default_consecutive_errors() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn default_base_ejection_time() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(30)))
}
fn default_max_ejection_time() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(300)))
}
fn default_max_ejection_percent() -> Spanned<u32> {
    Spanned::new(0..0, 50)
}

/// `[routes.retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries after the first.
    #[serde(default = "default_policy_retries")]
    pub retries: Spanned<u32>,
    /// Answers retried, by status.
    #[serde(default = "default_retry_statuses")]
    pub on_status: Spanned<Vec<u16>>,
    /// Retry a try that got no response head in time.
    #[serde(default = "default_true")]
    pub on_timeout: bool,
    /// Time each try may take to its response head (default: the
    /// upstream's `timeout`).
    #[serde(default)]
    pub per_try_timeout: Option<Spanned<Duration>>,
    /// The first backoff's ceiling, doubled at each retry.
    #[serde(default = "default_backoff")]
    pub backoff: Spanned<Duration>,
    /// The largest backoff.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Spanned<Duration>,
    /// Retry every method, not only the idempotent ones.
    #[serde(default)]
    pub any_method: bool,
    /// Retries in flight to an upstream: at most this share of its requests
    /// in flight...
    #[serde(default = "default_retry_budget")]
    pub budget: Spanned<f64>,
    /// ...or this many, whichever is more.
    #[serde(default = "default_min_retries_in_flight")]
    pub min_retries_in_flight: Spanned<usize>,
}

/// `[routes.mirror]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The upstream the copies go to.
    pub upstream: Spanned<String>,
    /// The share of requests copied (above 0, at most 1).
    #[serde(default = "default_mirror_share")]
    pub share: Spanned<f64>,
    /// Copies in flight at once for the route; over it a copy is skipped.
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: Spanned<usize>,
}

fn default_mirror_share() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}
fn default_mirror_in_flight() -> Spanned<usize> {
    Spanned::new(0..0, 100)
}

fn default_policy_retries() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}
fn default_retry_statuses() -> Spanned<Vec<u16>> {
    Spanned::new(0..0, vec![502, 503, 504])
}
fn default_true() -> bool {
    true
}
fn default_backoff() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_millis(25)))
}
fn default_max_backoff() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_millis(250)))
}
fn default_retry_budget() -> Spanned<f64> {
    Spanned::new(0..0, 0.2)
}
fn default_min_retries_in_flight() -> Spanned<usize> {
    Spanned::new(0..0, 3)
}

/// The HTTP version an upstream's targets speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, a pool of keep-alive connections per target.
    #[default]
    #[serde(rename = "http1")]
    Http1,
    /// HTTP/2 only: with prior knowledge over `http://` (h2c), negotiated by
    /// ALPN over `https://`; requests are multiplexed on one connection per
    /// target and worker. What gRPC services need.
    #[serde(rename = "http2")]
    Http2,
}

/// `[upstreams.NAME.health_check]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path asked of every target (`/healthz`).
    pub path: Spanned<String>,
    /// Time between two checks of a target.
    #[serde(default = "default_check_interval")]
    pub interval: Spanned<Duration>,
    /// Time a check may take, connection included.
    #[serde(default = "default_check_timeout")]
    pub timeout: Spanned<Duration>,
    /// Passed checks in a row that bring a target back.
    #[serde(default = "default_check_threshold")]
    pub healthy: Spanned<u32>,
    /// Failed checks in a row that take a target out.
    #[serde(default = "default_check_threshold")]
    pub unhealthy: Spanned<u32>,
}

fn default_check_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(10)))
}
fn default_check_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(2)))
}
fn default_check_threshold() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}

fn default_connect_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}
fn default_upstream_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}
fn default_idle_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(90))
}
fn default_max_idle() -> usize {
    256
}
fn default_max_fails() -> u32 {
    3
}
fn default_fail_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(10)))
}
fn default_retries() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// `[apis.NAME]`: an API defined by an OpenAPI document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The document (YAML or JSON, OpenAPI 3.0 or 3.1), relative to the
    /// config file.
    pub openapi: Spanned<String>,
    /// A prefix before every path of the document (`/v1`).
    #[serde(default)]
    pub base_path: Option<Spanned<String>>,
    /// Hosts its routes answer; all when absent.
    #[serde(default)]
    pub hosts: Option<Spanned<Vec<String>>>,
    /// Where its operations go unless one names another
    /// (`x-gateway-upstream`).
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
    /// Validate requests against the document (default on).
    #[serde(default)]
    pub validate: Option<Spanned<bool>>,
    /// Check responses against the document, reporting mismatches only
    /// (default off).
    #[serde(default)]
    pub validate_responses: Option<Spanned<bool>>,
    /// The entry that checks the document's `http` `bearer` scheme (a
    /// `jwt` entry with its settings), for the operations that require it.
    #[serde(default)]
    pub bearer: Option<Spanned<PluginEntryConfig>>,
    /// Entries every route of the API runs, after the `[[plugins]]` ones
    /// (which they may replace or switch off by name).
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginEntryConfig>>,
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in logs and shown to plugins.
    pub name: Spanned<String>,
    /// Path template: `/users/{id}`, `/static/{*rest}`.
    pub path: Spanned<String>,
    /// Methods this route answers; all when absent.
    #[serde(default)]
    pub methods: Option<Spanned<Vec<String>>>,
    /// Hosts this route answers (`api.example.com`, `*.example.com`); all when absent.
    #[serde(default)]
    pub hosts: Option<Spanned<Vec<String>>>,
    /// The listeners (by name) this route answers on; all when absent.
    #[serde(default)]
    pub listeners: Option<Spanned<Vec<Spanned<String>>>>,
    /// Upstream name. Without one, the pipeline must answer every request.
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
    /// Several upstreams by name instead of `upstream`: requests go to the
    /// first unless a request hook chooses another of them.
    #[serde(default)]
    pub upstreams: Option<Spanned<Vec<String>>>,
    /// With `upstreams`: each one's share of requests, in order (`[90, 10]`;
    /// `0` drains one).
    #[serde(default)]
    pub weights: Option<Spanned<Vec<u32>>>,
    /// A leading path segment removed before proxying (`/api` turns `/api/x` into `/x`).
    #[serde(default)]
    pub strip_prefix: Option<Spanned<String>>,
    /// Send the client's `Host` upstream instead of the target's address.
    #[serde(default)]
    pub preserve_host: Option<Spanned<bool>>,
    /// Let HTTP/1.1 WebSocket upgrades (`Upgrade: websocket`) through to the
    /// upstream; without it the upgrade headers are dropped like any other
    /// hop-by-hop header.
    #[serde(default)]
    pub websocket: Option<Spanned<bool>>,
    /// How long an upgraded connection may carry no bytes either way before
    /// the gateway closes it.
    #[serde(default)]
    pub websocket_idle_timeout: Option<Spanned<Duration>>,
    /// Conditions on request headers and query parameters, all to hold.
    #[serde(default, rename = "match")]
    pub conditions: Option<Spanned<MatchConfig>>,
    /// Retries of failed tries and chosen answers.
    #[serde(default)]
    pub retry: Option<Spanned<RetryConfig>>,
    /// Copies of a share of the requests sent to another upstream.
    #[serde(default)]
    pub mirror: Option<Spanned<MirrorConfig>>,
    /// Response compression: these keys over `[server.compression]`'s.
    #[serde(default)]
    pub compression: Option<Spanned<super::compression::CompressionConfig>>,
    /// The pipeline, run in order for requests and in reverse for responses.
    #[serde(default)]
    pub plugins: Vec<Spanned<PluginEntryConfig>>,
}

/// `[routes.match]`: conditions a request must meet for the route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// On request headers.
    #[serde(default)]
    pub headers: Vec<ConditionConfig>,
    /// On query parameters.
    #[serde(default)]
    pub query: Vec<ConditionConfig>,
}

/// One condition: a name and exactly one test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// The header or query parameter.
    pub name: String,
    /// Its value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// Its value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Its value matches this regular expression.
    #[serde(default)]
    pub regex: Option<String>,
    /// It is present (`true`) or absent (`false`).
    #[serde(default)]
    pub present: Option<bool>,
}

/// How long an upgraded connection may stay silent, unless the route says.
pub const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `[[routes.plugins]]` or `[[plugins]]`: one pipeline entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntryConfig {
    /// A built-in plugin's name, or a path to a `.wasm` component (relative to the
    /// config file).
    pub plugin: Spanned<String>,
    /// The entry's name, by which a route replaces or switches off an
    /// inherited entry; the `plugin` reference when absent.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `false`: the entry is off. On a route, switches off the inherited
    /// entry of the same name.
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    /// What a failing plugin does to the request.
    #[serde(default)]
    pub on_error: OnError,
    /// Overrides `plugin_defaults.deadline`.
    #[serde(default)]
    pub deadline: Option<Duration>,
    /// Overrides `plugin_defaults.memory_limit`.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// Overrides `plugin_defaults.max_body`.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// Overrides `plugin_defaults.pool_size`.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// Overrides `plugin_defaults.max_idle_memory`.
    #[serde(default)]
    pub max_idle_memory: Option<Spanned<ByteSize>>,
    /// Host capabilities granted to this entry's plugin (`"crypto"`, ...). A
    /// component importing an interface its entry does not grant is refused.
    #[serde(default)]
    pub grants: Vec<Spanned<String>>,
    /// Where the plugin's `kv`, `rate-limit` and `cache` state lives.
    #[serde(default = "local_store")]
    pub store: Spanned<StoreKind>,
    /// What rate-limit checks do when `store = "redis"` and Redis does not
    /// answer in time.
    #[serde(default)]
    pub store_failure: Option<Spanned<StoreFailure>>,
    /// Hosts the plugin may reach with `http-client`: `[scheme://]host[:port]`,
    /// host may be `*.suffix`.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Passed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// Config keys whose value is the text of a file (relative to the config
    /// file), read at load: `config_files = { jwks = "keys/jwks.json" }`.
    #[serde(default)]
    pub config_files: BTreeMap<String, Spanned<String>>,
    /// Config keys whose value is an environment variable, read at load:
    /// `config_env = { secret = "JWT_SECRET" }`. Keeps secrets out of the file.
    #[serde(default)]
    pub config_env: BTreeMap<String, Spanned<String>>,
}

fn http1() -> Spanned<UpstreamProtocol> {
    Spanned::new(0..0, UpstreamProtocol::Http1)
}

fn local_store() -> Spanned<StoreKind> {
    Spanned::new(0..0, StoreKind::Local)
}

/// The failure policy of a pipeline entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer the request with 500.
    #[default]
    Fail,
    /// Skip the plugin and go on as if it had not been there.
    Continue,
}

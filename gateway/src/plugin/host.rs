//! The sandbox's side of the host: the per-instance state a wasmtime `Store`
//! carries (the entry's [`HostEnv`], the request's [`Context`], the memory
//! limiter, WASI), and the imports every plugin is granted (`log`, `clock`,
//! `context`). The capabilities a grant adds are in `capabilities`; each
//! serves from its own view of the state, which [`HostState`] makes here
//! (`HostState::kv`, `HostState::cache`, ...).

use super::bindings::gateway::plugin::{clock, context, log, types};
use super::capabilities::allowed_hosts::HostPattern;
use super::capabilities::backend::{Scope, StoreView};
use super::capabilities::cache::{CacheView, Fills};
use super::capabilities::consumers::ConsumersView;
use super::capabilities::crypto::CryptoView;
use super::capabilities::http_client::HttpClientView;
use super::capabilities::kv::KvView;
use super::capabilities::rate_limit::RateLimitView;
use super::capabilities::redis::RedisStore;
use super::capabilities::{Backends, Services, Store};
use super::watchdog::IoWaits;
use crate::identity::Consumers;
use plugin_shared::limits;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What the SDK's panic hook starts its error line with.
const PANIC_PREFIX: &str = "panic: ";

/// What a pipeline's plugins share for one request: key/value strings, and
/// headers set for the client's response.
#[derive(Debug, Default)]
pub struct Context {
    values: HashMap<String, String>,
    response_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    response_header_bytes: usize,
    /// Cache fills this request owns, from a missed `cache.lookup` in the
    /// request phase to `put` or `release` in the response phase, whichever
    /// instance serves it.
    fills: Fills,
    /// Password checks this request asked for (`consumers.verify-password`).
    password_checks: u8,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.values.get(key)
    }

    /// Stores `value` under `key` unless it is over a cap, in which case the
    /// key is handed back.
    pub fn set(&mut self, key: String, value: String) -> Result<(), String> {
        let replacing = self.values.contains_key(&key);
        if !limits::context_entry_fits(key.len(), value.len(), self.values.len(), replacing) {
            return Err(key);
        }
        self.values.insert(key, value);
        Ok(())
    }

    /// Sets a header for the client's response, replacing an earlier one of
    /// the same name.
    pub fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{}`", name.escape_default()))?;
        if !limits::response_header_settable(name.as_str()) {
            return Err(format!("`{name}` cannot be set this way"));
        }
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        let bytes = name.as_str().len() + value.len();
        let replaced = self
            .response_headers
            .iter()
            .position(|(existing, _)| *existing == name);
        let (count, freed) = match replaced {
            Some(at) => {
                let (old_name, old_value) = &self.response_headers[at];
                (
                    self.response_headers.len(),
                    old_name.as_str().len() + old_value.len(),
                )
            }
            None => (self.response_headers.len() + 1, 0),
        };
        // Refused whole: an earlier value of the same name stays.
        limits::response_headers_within(count, self.response_header_bytes - freed + bytes)?;
        self.response_header_bytes = self.response_header_bytes - freed + bytes;
        match replaced {
            Some(at) => self.response_headers[at] = (name, value),
            None => self.response_headers.push((name, value)),
        }
        Ok(())
    }

    /// Takes the headers set for the client's response.
    pub fn take_response_headers(&mut self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        self.response_header_bytes = 0;
        std::mem::take(&mut self.response_headers)
    }
}

/// What the host interfaces serve from: shared by every instance of one
/// pipeline entry (the config-wide parts are shared further).
#[derive(Clone)]
pub struct HostEnv {
    /// `[[consumers]]`, for the `consumers` interface.
    pub consumers: Arc<Consumers>,
    /// The outbound client, shared fetches and kv (process-wide).
    pub services: Arc<Services>,
    /// Whose kv keys and shared fetches these are: the entry's plugin
    /// reference, so every entry of one plugin shares them.
    pub namespace: Arc<str>,
    /// Where `http-client` may connect.
    pub allowed_hosts: Arc<[HostPattern]>,
    /// Largest outbound response body.
    pub max_body: usize,
    /// Where this entry's `kv`, `rate-limit` and `cache` state lives: the
    /// backends its `store` chose.
    pub backends: Backends,
}

impl HostEnv {
    /// An environment with no consumers and no outbound hosts.
    pub fn new(services: Arc<Services>) -> Self {
        HostEnv {
            consumers: Arc::default(),
            backends: Backends::local(&services),
            services,
            namespace: Arc::from(""),
            allowed_hosts: Arc::from(Vec::new()),
            max_body: 1 << 20,
        }
    }
}

/// What every pipeline entry of one config shares, from which each entry's
/// [`HostEnv`] is made.
#[derive(Clone)]
pub struct ConfigEnv {
    /// `[[consumers]]`, for the `consumers` interface.
    pub consumers: Arc<Consumers>,
    /// The process-wide services.
    pub services: Arc<Services>,
    /// The config's `[redis]`, if any: where entries with `store = "redis"`
    /// keep their state.
    pub redis: Option<Arc<RedisStore>>,
}

impl ConfigEnv {
    /// The environment of one entry: its plugin's `namespace`, the hosts it
    /// may reach, its largest outbound body, and where its state lives.
    pub fn entry(
        &self,
        namespace: Arc<str>,
        allowed_hosts: Arc<[HostPattern]>,
        max_body: usize,
        store: &Store,
    ) -> HostEnv {
        HostEnv {
            consumers: self.consumers.clone(),
            backends: Backends::new(store, &self.services),
            services: self.services.clone(),
            namespace,
            allowed_hosts,
            max_body,
        }
    }
}

/// What a `Store` carries for one plugin instance.
pub struct HostState {
    /// The plugin's name, for logs.
    pub plugin: Arc<str>,
    /// Shared state the host interfaces read.
    pub env: HostEnv,
    /// Verifying keys the instance holds (resources live in `table`).
    pub keys: usize,
    /// The current request's context, moved in for the length of one call.
    pub context: Context,
    /// Enforces the instance's memory cap and remembers hitting it.
    pub limiter: MemoryLimiter,
    /// Host functions waiting on the network now (their wait does not count
    /// against the call's deadline).
    pub io: IoWaits,
    /// The panic the guest reported through the SDK's hook (`panic: ...`,
    /// logged at error level just before the trap), on one line: what the
    /// failure it ends in says, instead of the trap's backtrace.
    pub panic: Option<String>,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    started: Instant,
}

impl HostState {
    /// State for a fresh instance with `memory_limit` bytes of linear memory.
    pub fn new(plugin: Arc<str>, env: HostEnv, memory_limit: usize) -> Self {
        // No preopened directories, no environment, no arguments, no sockets; the
        // standard streams go nowhere. What is left of WASI is random numbers and
        // clocks, which the Rust standard library needs to start.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            plugin,
            env,
            keys: 0,
            context: Context::new(),
            limiter: MemoryLimiter::new(memory_limit),
            io: IoWaits::default(),
            panic: None,
            wasi,
            table: ResourceTable::new(),
            started: Instant::now(),
        }
    }
}

/// What the store-backed interfaces serve from in `env`, with `backend`.
fn store<'a, B: ?Sized>(env: &'a HostEnv, io: &'a IoWaits, backend: &'a B) -> StoreView<'a, B> {
    let namespace = &env.namespace;
    StoreView {
        backend,
        at: Scope { namespace, io },
    }
}

/// The views the capabilities serve from: borrows of this state, for one
/// host call (the linker's getters, see `engine`).
impl HostState {
    /// `kv`'s.
    pub fn kv(&mut self) -> KvView<'_> {
        store(&self.env, &self.io, &*self.env.backends.kv)
    }

    /// `rate-limit`'s.
    pub fn rate_limit(&mut self) -> RateLimitView<'_> {
        store(&self.env, &self.io, &*self.env.backends.limits)
    }

    /// `cache`'s.
    pub fn cache(&mut self) -> CacheView<'_> {
        CacheView {
            store: store(&self.env, &self.io, &*self.env.backends.cache),
            local: self.env.services.response_cache(),
            fills: &mut self.context.fills,
        }
    }

    /// `crypto`'s.
    pub fn crypto(&mut self) -> CryptoView<'_> {
        CryptoView {
            table: &mut self.table,
            keys: &mut self.keys,
        }
    }

    /// `http-client`'s.
    pub fn http_client(&mut self) -> HttpClientView<'_> {
        HttpClientView {
            plugin: &self.plugin,
            outbound: &self.env.services.outbound,
            allowed_hosts: &self.env.allowed_hosts,
            namespace: &self.env.namespace,
            max_body: self.env.max_body,
            io: &self.io,
        }
    }

    /// `consumers`'.
    pub fn consumers(&mut self) -> ConsumersView<'_> {
        ConsumersView {
            consumers: &self.env.consumers,
            io: &self.io,
            plugin: &self.plugin,
            password_checks: &mut self.context.password_checks,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A `ResourceLimiter` that caps linear memory and table growth and records a
/// refused growth, so the host can tell a memory-limit hit from any other trap.
/// It also adds up the linear memory the instance holds: memories are created
/// and grown only through it, and never shrink.
pub struct MemoryLimiter {
    max_memory: usize,
    /// Set when a growth was refused.
    pub hit: bool,
    /// Bytes of linear memory allowed so far, over all the instance's memories.
    held: usize,
}

/// Table elements an instance may hold; generous for Rust plugins.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(max_memory: usize) -> Self {
        Self {
            max_memory,
            hit: false,
            held: 0,
        }
    }

    /// Bytes of linear memory the instance holds now. A growth the limiter
    /// allowed but the engine then failed still counts: the call that asked
    /// for it failed too, and the over-count only makes a discard likelier.
    pub fn memory(&self) -> usize {
        self.held
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        // A new memory comes in as growing from 0 to its initial size.
        self.held = self.held.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, mut message: String) {
        limits::cut_log_line(&mut message);
        let plugin = &*self.plugin;
        if level == log::Level::Error
            && let Some(panic) = message.strip_prefix(PANIC_PREFIX)
        {
            // Said once, by the failure the trap that follows becomes.
            tracing::debug!(plugin, "{message}");
            self.panic = Some(panic.replace('\n', " "));
            return;
        }
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn count(&mut self, event: String) {
        count_event(&self.plugin, event);
    }
}

/// Distinct plugin and event pairs counted at most: a plugin cannot grow
/// the metrics without bound by counting ever new names.
const MAX_EVENT_SERIES: usize = 256;

/// Distinct events one plugin counts at most: one plugin cannot use up the
/// series the others need.
const MAX_PLUGIN_EVENTS: usize = 32;

/// The longest event name counted.
const MAX_EVENT_NAME: usize = 64;

/// Counts `event` for `plugin` in `gateway_plugin_events_total`, when its
/// name is well formed and the pair is known or fits under the cap.
fn count_event(plugin: &str, event: String) {
    use std::collections::HashSet;
    use std::sync::{LazyLock, Mutex};
    static SERIES: LazyLock<Mutex<HashSet<(String, String)>>> =
        LazyLock::new(|| Mutex::new(HashSet::new()));
    let well_formed = (1..=MAX_EVENT_NAME).contains(&event.len())
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        tracing::debug!(
            plugin,
            "an event name of other than 1 to 64 of a-z, 0-9 and _ is not counted"
        );
        return;
    }
    let key = (plugin.to_string(), event);
    {
        let Ok(mut series) = SERIES.lock() else {
            return;
        };
        if !series.contains(&key) {
            let of_plugin = series.iter().filter(|(p, _)| *p == key.0).count();
            if series.len() >= MAX_EVENT_SERIES || of_plugin >= MAX_PLUGIN_EVENTS {
                tracing::debug!(
                    plugin,
                    event = key.1,
                    "too many distinct plugin events; not counted"
                );
                return;
            }
            series.insert(key.clone());
        }
    }
    let (plugin, event) = key;
    crate::metrics::metrics()
        .plugin_events
        .get_or_create(&[("plugin", plugin), ("event", event)])
        .inc();
}

impl clock::Host for HostState {
    fn now_millis(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_nanos(&mut self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Context entries only the gateway writes (a verified client certificate's
/// identity): plugins read them but can neither set nor remove them.
pub const GATEWAY_PREFIX: &str = "tls.client.";

impl context::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.context.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: String) {
        if key.starts_with(GATEWAY_PREFIX) {
            tracing::warn!(plugin = &*self.plugin, key = %key.chars().take(64).collect::<String>(), "context entry refused: `tls.client.*` entries are the gateway's");
            return;
        }
        if let Err(key) = self.context.set(key, value) {
            let shown = key.chars().take(64).collect::<String>();
            tracing::warn!(plugin = &*self.plugin, key = %shown, "context entry refused: over the size or count limit");
        }
    }

    fn remove(&mut self, key: String) {
        if !key.starts_with(GATEWAY_PREFIX) {
            self.context.values.remove(&key);
        }
    }

    fn keys(&mut self) -> Vec<String> {
        self.context.values.keys().cloned().collect()
    }

    fn set_response_header(&mut self, name: String, value: String) -> Result<(), String> {
        self.context.set_response_header(&name, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_replace_by_name_and_refuse_what_they_must() {
        let mut context = Context::new();
        assert_eq!(context.set_response_header("X-Count", "1"), Ok(()));
        assert_eq!(context.set_response_header("x-count", "2"), Ok(()));
        for (name, value) in [
            ("bad name", "v"),
            ("x-ok", "bad\nvalue"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
        ] {
            assert!(
                context.set_response_header(name, value).is_err(),
                "{name}: {value}"
            );
        }
        let set = context.take_response_headers();
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].0.as_str(), "x-count");
        assert_eq!(set[0].1, "2");
        assert!(context.take_response_headers().is_empty());
    }

    #[test]
    fn response_headers_are_capped_in_count_and_bytes() {
        let mut context = Context::new();
        for i in 0..limits::RESPONSE_HEADERS_MAX {
            assert_eq!(context.set_response_header(&format!("x-h{i}"), "v"), Ok(()));
        }
        assert!(context.set_response_header("x-one-more", "v").is_err());
        // Replacing one in place is still allowed at the cap.
        assert_eq!(context.set_response_header("x-h0", "w"), Ok(()));

        let mut context = Context::new();
        let big = "v".repeat(limits::RESPONSE_HEADERS_MAX_BYTES / 2);
        assert_eq!(context.set_response_header("x-a", &big), Ok(()));
        assert!(context.set_response_header("x-b", &big).is_err());
        // A refused replacement keeps the earlier value.
        let huge = "v".repeat(limits::RESPONSE_HEADERS_MAX_BYTES);
        assert!(context.set_response_header("x-a", &huge).is_err());
        assert_eq!(context.response_headers[0].1, big.as_str());
        // The refused header did not count against the budget.
        assert_eq!(context.set_response_header("x-c", "small"), Ok(()));
    }
}

#[cfg(test)]
mod limiter {
    use super::*;

    #[test]
    fn counts_the_memory_it_allowed_and_not_what_it_refused() {
        let mut limiter = MemoryLimiter::new(4 << 20);
        let page = 64 * 1024;
        let mut grow = |from: usize, to: usize| limiter.memory_growing(from, to, None).ok();
        assert_eq!(grow(0, 16 * page), Some(true));
        assert_eq!(grow(16 * page, 20 * page), Some(true));
        assert_eq!(grow(20 * page, (4 << 20) + page), Some(false));
        // A second memory adds to the first.
        assert_eq!(grow(0, page), Some(true));
        assert!(limiter.hit);
        assert_eq!(limiter.memory(), 21 * page);
    }
}

#[cfg(test)]
mod reserved {
    use super::*;

    #[test]
    fn plugins_cannot_write_the_gateways_entries() {
        let env = HostEnv::new(Services::new());
        let mut state = HostState::new(Arc::from("p"), env, 1 << 20);
        state
            .context
            .set("tls.client.cn".into(), "billing".into())
            .expect("the gateway sets it");
        context::Host::set(&mut state, "tls.client.cn".into(), "admin".into());
        context::Host::set(&mut state, "tls.client.names".into(), "DNS:admin".into());
        context::Host::remove(&mut state, "tls.client.cn".into());
        assert_eq!(
            state.context.get("tls.client.cn").map(String::as_str),
            Some("billing")
        );
        assert_eq!(state.context.get("tls.client.names"), None);
        context::Host::set(&mut state, "consumer".into(), "billing".into());
        assert_eq!(
            state.context.get("consumer").map(String::as_str),
            Some("billing")
        );
    }
}

//! The host side of the imports every plugin is granted (`log`, `clock`,
//! `context`), and the per-instance state a `Store` carries.

use super::bindings::gateway::plugin::{clock, consumers, context, log, types};
use super::outbound::{HostPattern, Services};
use crate::identity::{Consumer, Consumers};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Longest log line a plugin may write; the rest is cut.
const MAX_LOG_LINE: usize = 4 * 1024;
/// Most entries a request's context may hold.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Longest context key.
const MAX_CONTEXT_KEY: usize = 256;
/// Longest context value.
const MAX_CONTEXT_VALUE: usize = 16 * 1024;

/// The per-request key/value shared by a pipeline's plugins.
pub type Context = HashMap<String, String>;

/// Where an entry's `kv`, `rate-limit` and `cache` state lives.
#[derive(Clone, Default)]
pub enum Store {
    /// In this process.
    #[default]
    Local,
    /// On Redis, shared by every gateway using it.
    Redis {
        /// The connections.
        redis: Arc<super::RedisStore>,
        /// What a rate-limit check does when Redis cannot answer.
        on_failure: crate::config::StoreFailure,
    },
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
    /// The config's `[redis]`, if any.
    pub redis: Option<Arc<super::RedisStore>>,
    /// Where this entry's shared state lives.
    pub store: Store,
}

impl HostEnv {
    /// An environment with no consumers and no outbound hosts.
    pub fn new(services: Arc<Services>) -> Self {
        HostEnv {
            consumers: Arc::default(),
            services,
            namespace: Arc::from(""),
            allowed_hosts: Arc::from(Vec::new()),
            max_body: 1 << 20,
            redis: None,
            store: Store::Local,
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
    /// Epoch ticks spent waiting on host I/O during the current call, given
    /// back to the call's CPU deadline.
    pub io_credit_ticks: u64,
    /// The current request's context, moved in for the length of one call.
    pub context: Context,
    /// Enforces the instance's memory cap and remembers hitting it.
    pub limiter: MemoryLimiter,
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
            io_credit_ticks: 0,
            context: Context::new(),
            limiter: MemoryLimiter::new(memory_limit),
            wasi,
            table: ResourceTable::new(),
            started: Instant::now(),
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
pub struct MemoryLimiter {
    max_memory: usize,
    /// Set when a growth was refused.
    pub hit: bool,
}

/// Table elements an instance may hold; generous for Rust plugins.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(max_memory: usize) -> Self {
        Self {
            max_memory,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
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
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
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

impl context::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.context.get(&key).cloned()
    }

    fn set(&mut self, key: String, value: String) {
        let fits = key.len() <= MAX_CONTEXT_KEY && value.len() <= MAX_CONTEXT_VALUE;
        let has_room = self.context.len() < MAX_CONTEXT_ENTRIES || self.context.contains_key(&key);
        if fits && has_room {
            self.context.insert(key, value);
        } else {
            tracing::warn!(plugin = &*self.plugin, key = %key.chars().take(64).collect::<String>(), "context entry refused: over the size or count limit");
        }
    }

    fn remove(&mut self, key: String) {
        self.context.remove(&key);
    }

    fn keys(&mut self) -> Vec<String> {
        self.context.keys().cloned().collect()
    }
}

impl consumers::Host for HostState {
    fn find_by_key(&mut self, key: String) -> Option<consumers::Consumer> {
        self.env.consumers.find_by_key(&key).map(|c| to_wit(&c))
    }

    fn get(&mut self, name: String) -> Option<consumers::Consumer> {
        self.env.consumers.get(&name).map(|c| to_wit(&c))
    }

    fn plan(&mut self, name: String) -> Option<consumers::UsagePlan> {
        let plan = self.env.consumers.plan(&name)?;
        let rate = plan.rate;
        Some(consumers::UsagePlan {
            name: plan.name.clone(),
            rate_limit: rate.map(|r| r.limit),
            rate_period_ms: rate.map_or(0, |r| {
                u64::try_from(r.period.as_millis()).unwrap_or(u64::MAX)
            }),
            rate_burst: rate.map_or(0, |r| r.burst),
            quota_limit: plan.quota.map(|q| q.limit),
            quota_period: plan
                .quota
                .map_or(types::QuotaPeriod::Day, |q| period_to_wit(q.period)),
        })
    }
}

/// The contract's name for a quota period.
pub fn period_to_wit(period: crate::config::QuotaPeriod) -> types::QuotaPeriod {
    match period {
        crate::config::QuotaPeriod::Day => types::QuotaPeriod::Day,
        crate::config::QuotaPeriod::Week => types::QuotaPeriod::Week,
        crate::config::QuotaPeriod::Month => types::QuotaPeriod::Month,
    }
}

fn to_wit(consumer: &Consumer) -> consumers::Consumer {
    consumers::Consumer {
        name: consumer.name.clone(),
        groups: consumer.groups.clone(),
        plan: consumer.plan.clone(),
        metadata: consumer.metadata.clone(),
    }
}

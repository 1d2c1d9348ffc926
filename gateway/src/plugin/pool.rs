//! Warm instances of one pipeline entry (a plugin with its config), checked out
//! for one hook call at a time.
//!
//! Instantiation and `init` happen at load (`min` instances) and, when the pool is
//! empty under concurrency or after a failure discarded an instance, on demand.
//! A call that traps, overruns its deadline or hits the memory cap discards its
//! instance: the next call gets a clean one, so no state survives a failure.
//! A call that succeeds but leaves its instance holding more linear memory
//! than the entry's `max_idle_memory` discards it too: linear memory never
//! shrinks, so keeping it would hold the peak of one large body for good.

use super::PluginError;
use super::bindings::{
    Needs, Plugin, PluginInfo, PluginPre, Request, RequestOutcome, Response, ResponseOutcome,
};
use super::host::{Context, HostEnv, HostState};
use super::watchdog::{self, timed, timed_wall};
use crate::worker::PerWorker;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::{Engine, Store, Trap};

/// The sandbox of one pipeline entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryLimits {
    /// Time per hook call, network waits not counted.
    pub deadline: Duration,
    /// Linear memory per instance.
    pub memory: usize,
    /// Warm instances kept.
    pub pool_size: usize,
}

/// Counters of one entry, read by logs and (later) metrics.
#[derive(Debug, Default)]
pub struct EntryStats {
    /// Hook calls made.
    pub calls: AtomicU64,
    /// Calls that trapped.
    pub traps: AtomicU64,
    /// Calls stopped by the deadline.
    pub deadlines: AtomicU64,
    /// Calls that hit the memory cap.
    pub memory_limits: AtomicU64,
    /// Instances created (at load and on demand).
    pub instantiations: AtomicU64,
    /// Instances dropped after a successful call because their linear memory
    /// had grown past `max_idle_memory`.
    pub oversized: AtomicU64,
}

/// Why one call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The call overran its deadline.
    Deadline(Duration),
    /// The instance wanted more memory than its cap.
    MemoryLimit(usize),
    /// Any other trap (panic, unreachable, out-of-bounds access).
    Trap(String),
    /// No instance could be created.
    Instantiate(String),
    /// The hook answered something the host refuses (an upstream the route
    /// does not list).
    BadAnswer(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline(d) => write!(f, "deadline of {d:?} exceeded"),
            Self::MemoryLimit(bytes) => write!(f, "memory limit of {bytes} bytes exceeded"),
            Self::Trap(msg) => write!(f, "trapped: {msg}"),
            Self::Instantiate(msg) => write!(f, "could not instantiate: {msg}"),
            Self::BadAnswer(msg) => write!(f, "answered {msg}"),
        }
    }
}

struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
}

/// A pool of initialised instances of one plugin with one config.
pub struct InstancePool {
    engine: Engine,
    pre: PluginPre<HostState>,
    name: Arc<str>,
    config_json: String,
    env: HostEnv,
    limits: EntryLimits,
    /// Idle instances, one stack per worker thread. A worker takes back the
    /// instance it used last, whose memory is still in its core's caches, and
    /// never hands an instance to another core while it has one of its own.
    idle: PerWorker<Vec<Instance>>,
    /// Linear memory (bytes) above which an instance is dropped after its
    /// call instead of kept; no limit unless [`InstancePool::drop_oversized`]
    /// sets one.
    max_idle_memory: usize,
    /// Linear memory of the first instance right after `init`.
    initial_memory: usize,
    /// Counts the instances dropped for their memory (a metric's counter).
    oversized: Counter,
    /// The plugin's self-description.
    pub info: PluginInfo,
    /// The hooks this configured plugin takes part in and the bodies it reads,
    /// as its `init` declared them.
    pub needs: Needs,
    /// Counters.
    pub stats: EntryStats,
}

impl InstancePool {
    /// Describes the plugin on a first instance, runs `init(config)` on it
    /// and keeps it warm; more instances are made on demand, up to
    /// `pool_size` kept. An error here refuses the config.
    ///
    /// One instance at load (not a throwaway one to describe the plugin plus
    /// warm ones) keeps reloads of large configs fast: a second concurrent
    /// request pays one instantiation, tens of microseconds, once.
    pub async fn new(
        engine: &Engine,
        pre: PluginPre<HostState>,
        config_json: String,
        limits: EntryLimits,
        env: HostEnv,
    ) -> Result<Self, PluginError> {
        watchdog::expect_deadline(limits.deadline);
        let mut store = new_store(engine, Arc::from("(loading)"), &env, limits.memory);
        let io = store.data().io.clone();
        let bindings = timed(limits.deadline, &io, pre.instantiate_async(&mut store))
            .await
            .map_err(|e| PluginError::Instantiate(format!("{e:#}")))?;
        let info = timed(
            limits.deadline,
            &io,
            bindings.gateway_plugin_handler().call_describe(&mut store),
        )
        .await
        .map_err(|e| PluginError::Init(format!("describe() failed: {e:#}")))?;
        let name: Arc<str> = Arc::from(info.name.as_str());
        store.data_mut().plugin = name.clone();
        let init = bindings
            .gateway_plugin_handler()
            .call_init(&mut store, &config_json);
        let needs = match timed(limits.deadline, &io, init).await {
            Ok(Ok(needs)) => needs,
            Ok(Err(message)) => return Err(PluginError::Init(message)),
            Err(e) => {
                let why = if store.data().limiter.hit {
                    format!("memory limit of {} bytes exceeded", limits.memory)
                } else {
                    format!("{e:#}")
                };
                return Err(PluginError::Init(format!("init failed: {why}")));
            }
        };
        let pool = Self {
            engine: engine.clone(),
            pre,
            name,
            config_json,
            env,
            limits,
            idle: PerWorker::new(),
            max_idle_memory: usize::MAX,
            initial_memory: store.data().limiter.memory(),
            oversized: Counter::default(),
            needs,
            info,
            stats: EntryStats::default(),
        };
        pool.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        pool.give_back(Instance { store, bindings });
        Ok(pool)
    }

    /// From now on, drops an instance whose linear memory is over
    /// `max_idle_memory` bytes after a call, counting it in `counter` (and
    /// in [`EntryStats::oversized`]), so its memory goes back to the system.
    pub fn drop_oversized(&mut self, max_idle_memory: usize, counter: Counter) {
        self.max_idle_memory = max_idle_memory;
        self.oversized = counter;
    }

    /// Linear memory (bytes) above which an instance is dropped after its
    /// call (`usize::MAX` until [`InstancePool::drop_oversized`] sets it).
    pub fn max_idle_memory(&self) -> usize {
        self.max_idle_memory
    }

    /// Bytes of linear memory the first instance held right after `init`:
    /// the least any instance of this entry holds between calls.
    pub fn initial_memory(&self) -> usize {
        self.initial_memory
    }

    /// The plugin's name as it describes itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the configured instances read request bodies.
    pub fn reads_request_body(&self) -> bool {
        self.needs.contains(Needs::REQUEST_BODY)
    }

    /// Whether the configured instances read response bodies.
    pub fn reads_response_body(&self) -> bool {
        self.needs.contains(Needs::RESPONSE_BODY)
    }

    /// Whether a response body over the entry's cap passes by this plugin
    /// (which then sees no body) instead of failing the request.
    pub fn passes_large_bodies(&self) -> bool {
        self.needs.contains(Needs::LARGE_BODIES_PASS)
    }

    /// Most idle instances kept per worker.
    pub fn pool_size(&self) -> usize {
        self.limits.pool_size
    }

    /// Idle instances now, over all workers.
    pub fn idle(&self) -> usize {
        (0..self.idle.len())
            .map(|offset| self.idle.slot(offset).len())
            .sum()
    }

    /// An idle instance: the current worker's most recently used one, else one
    /// another worker has spare (moving it is cheaper than instantiating).
    fn take_idle(&self) -> Option<Instance> {
        (0..self.idle.len()).find_map(|offset| self.idle.slot(offset).pop())
    }

    /// Keeps `instance` for the current worker's next call, unless it already
    /// keeps `pool_size`: then the extra instance is dropped, freeing its memory.
    fn give_back(&self, instance: Instance) {
        let mut stack = self.idle.mine();
        if stack.len() < self.limits.pool_size.max(1) {
            stack.push(instance);
        }
    }

    /// Runs the request hook on a warm instance.
    pub async fn on_request(
        &self,
        context: &mut Context,
        request: &Request,
    ) -> Result<RequestOutcome, CallFailure> {
        self.on_request_timed(context, request).await.0
    }

    /// [`InstancePool::on_request`], with the call's wall time (zero when
    /// no instance could be had).
    pub async fn on_request_timed(
        &self,
        context: &mut Context,
        request: &Request,
    ) -> (Result<RequestOutcome, CallFailure>, Duration) {
        self.call(context, async |instance: &mut Instance| {
            let handler = instance.bindings.gateway_plugin_handler();
            handler.call_on_request(&mut instance.store, request).await
        })
        .await
    }

    /// Runs the response hook on a warm instance; `request` is the head of
    /// the request `response` answers. Returns the call's wall time too
    /// (zero when no instance could be had).
    pub async fn on_response_timed(
        &self,
        context: &mut Context,
        request: &Request,
        response: &Response,
    ) -> (Result<ResponseOutcome, CallFailure>, Duration) {
        self.call(context, async |instance: &mut Instance| {
            let handler = instance.bindings.gateway_plugin_handler();
            (handler.call_on_response(&mut instance.store, request, response)).await
        })
        .await
    }

    /// Runs `hook` on a warm instance within the entry's deadline, and
    /// returns its answer with the call's wall time (zero when no instance
    /// could be had).
    async fn call<T>(
        &self,
        context: &mut Context,
        hook: impl AsyncFnOnce(&mut Instance) -> wasmtime::Result<T>,
    ) -> (Result<T, CallFailure>, Duration) {
        let mut instance = match self.checkout(context).await {
            Ok(instance) => instance,
            Err(failure) => return (Err(failure), Duration::ZERO),
        };
        let io = instance.store.data().io.clone();
        let (result, took) = timed_wall(self.limits.deadline, &io, hook(&mut instance)).await;
        (self.finish(instance, context, result), took)
    }

    /// Takes a warm instance (or makes one) and lends it the request's
    /// context for one call.
    async fn checkout(&self, context: &mut Context) -> Result<Instance, CallFailure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let mut instance = match self.take_idle() {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok((instance, _)) => instance,
                Err(InitFailure::Refused(msg)) => return Err(CallFailure::Instantiate(msg)),
                Err(InitFailure::Failed(failure)) => return Err(failure),
            },
        };
        let state = instance.store.data_mut();
        state.context = std::mem::take(context);
        state.panic = None;
        instance.store.set_epoch_deadline(1);
        Ok(instance)
    }

    /// Takes the context back and returns the instance to the pool, or discards
    /// it if the call failed or left it holding too much memory.
    fn finish<R>(
        &self,
        mut instance: Instance,
        context: &mut Context,
        result: wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        *context = std::mem::take(&mut instance.store.data_mut().context);
        match result {
            Ok(value) => {
                self.keep_unless_oversized(instance);
                Ok(value)
            }
            Err(err) => Err(self.classify(err, &instance.store)),
        }
    }

    /// Gives `instance` back, unless its linear memory grew past
    /// `max_idle_memory`: then it is dropped here, its memory unmapped.
    fn keep_unless_oversized(&self, instance: Instance) {
        let held = instance.store.data().limiter.memory();
        if held <= self.max_idle_memory {
            self.give_back(instance);
            return;
        }
        self.stats.oversized.fetch_add(1, Ordering::Relaxed);
        self.oversized.inc();
        tracing::debug!(
            plugin = &*self.name,
            held,
            max_idle_memory = self.max_idle_memory,
            "instance dropped after its call: its memory grew past max_idle_memory"
        );
        drop(instance);
    }

    fn classify(&self, err: wasmtime::Error, store: &Store<HostState>) -> CallFailure {
        if store.data().limiter.hit {
            self.stats.memory_limits.fetch_add(1, Ordering::Relaxed);
            return CallFailure::MemoryLimit(self.limits.memory);
        }
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            self.stats.deadlines.fetch_add(1, Ordering::Relaxed);
            return CallFailure::Deadline(self.limits.deadline);
        }
        self.stats.traps.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %store.data().plugin, error = ?err, "plugin trapped");
        CallFailure::Trap(trap_reason(&err, store.data().panic.as_deref()))
    }

    async fn instantiate(&self) -> Result<(Instance, Needs), InitFailure> {
        self.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        let deadline = self.limits.deadline;
        let mut store = new_store(
            &self.engine,
            self.name.clone(),
            &self.env,
            self.limits.memory,
        );
        let io = store.data().io.clone();
        let bindings = match timed(deadline, &io, self.pre.instantiate_async(&mut store)).await {
            Ok(bindings) => bindings,
            Err(e) => return Err(InitFailure::Failed(self.classify(e, &store))),
        };
        let init = bindings
            .gateway_plugin_handler()
            .call_init(&mut store, &self.config_json);
        let needs = match timed(deadline, &io, init).await {
            Ok(Ok(needs)) => needs,
            Ok(Err(message)) => return Err(InitFailure::Refused(message)),
            Err(e) => return Err(InitFailure::Failed(self.classify(e, &store))),
        };
        Ok((Instance { store, bindings }, needs))
    }
}

enum InitFailure {
    /// `init` returned an error message.
    Refused(String),
    /// Instantiation or `init` trapped.
    Failed(CallFailure),
}

/// A store whose guest stops at the next advance of the epoch if it is over
/// its call's budget (see [`watchdog`]); calls run through [`timed`].
fn new_store(engine: &Engine, name: Arc<str>, env: &HostEnv, memory: usize) -> Store<HostState> {
    let mut store = Store::new(engine, HostState::new(name, env.clone(), memory));
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_callback(|_| {
        if watchdog::overdue() {
            Err(Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Continue(1))
        }
    });
    store.set_epoch_deadline(1);
    store
}

/// A trap in one line: the guest's panic message when it reported one, else
/// what trapped (`wasm \`unreachable\` instruction executed`, a host error),
/// never the backtrace (which the debug log has).
fn trap_reason(err: &wasmtime::Error, panic: Option<&str>) -> String {
    if let Some(panic) = panic {
        return panic.to_string();
    }
    match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string().replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{PluginEngine, encode_head};

    /// A pool of the `body-reader` test plugin, whose linear memory grows
    /// with the bodies it reads.
    async fn body_reader_pool(engine: &PluginEngine) -> InstancePool {
        let path = concat!(env!("GATEWAY_PLUGIN_DIR"), "/body_reader_plugin.wasm");
        let bytes = std::fs::read(path).expect("the test plugin is built");
        let compiled = match engine.compile(&bytes) {
            Ok(compiled) => compiled,
            Err(e) => panic!("the test plugin compiles: {e}"),
        };
        let limits = EntryLimits {
            deadline: Duration::from_secs(10),
            memory: 256 << 20,
            pool_size: 4,
        };
        let env = HostEnv::new(engine.services().clone());
        InstancePool::new(engine.engine(), compiled.pre, "{}".into(), limits, env)
            .await
            .expect("init")
    }

    fn post(body_bytes: usize) -> Request {
        let pseudo = [(":method", "POST"), (":path", "/"), (":route", "r")];
        Request {
            head: encode_head(&pseudo, &[], &http::HeaderMap::new()),
            body: Some(vec![b'a'; body_bytes]),
        }
    }

    async fn call(pool: &InstancePool, body_bytes: usize) {
        let mut context = Context::new();
        let outcome = pool.on_request(&mut context, &post(body_bytes)).await;
        assert!(outcome.is_ok(), "{:?}", outcome.err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_instance_grown_past_max_idle_memory_is_dropped_after_its_call() {
        let engine = PluginEngine::new().expect("engine");
        let mut pool = body_reader_pool(&engine).await;
        let initial = pool.initial_memory();
        assert!(initial > 0 && initial < 8 << 20, "{initial}");
        let counter = Counter::default();
        pool.drop_oversized(initial + (8 << 20), counter.clone());

        call(&pool, 1024).await;
        assert_eq!(
            (pool.idle(), counter.get()),
            (1, 0),
            "a small call keeps it"
        );

        call(&pool, 16 << 20).await;
        assert_eq!(
            (pool.idle(), counter.get()),
            (0, 1),
            "a large call drops it"
        );
        assert_eq!(pool.stats.oversized.load(Ordering::Relaxed), 1);

        call(&pool, 1024).await;
        assert_eq!(pool.idle(), 1, "a fresh instance serves the next call");
        assert_eq!(pool.stats.instantiations.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_a_limit_a_grown_instance_is_kept() {
        let engine = PluginEngine::new().expect("engine");
        let pool = body_reader_pool(&engine).await;
        call(&pool, 16 << 20).await;
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.stats.oversized.load(Ordering::Relaxed), 0);
    }
}

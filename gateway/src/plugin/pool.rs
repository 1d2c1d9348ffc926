//! Warm instances of one pipeline entry (a plugin with its config), checked out
//! for one hook call at a time.
//!
//! Instantiation and `init` happen at load (`min` instances) and, when the pool is
//! empty under concurrency or after a failure discarded an instance, on demand.
//! A call that traps, overruns its deadline or hits the memory cap discards its
//! instance: the next call gets a clean one, so no state survives a failure.

use super::PluginError;
use super::bindings::{
    Phases, Plugin, PluginInfo, PluginPre, Request, RequestOutcome, Response, ResponseOutcome,
};
use super::host::{Context, HostEnv, HostState};
use super::watchdog::{self, timed};
use crate::worker::PerWorker;
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
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline(d) => write!(f, "deadline of {d:?} exceeded"),
            Self::MemoryLimit(bytes) => write!(f, "memory limit of {bytes} bytes exceeded"),
            Self::Trap(msg) => write!(f, "trapped: {msg}"),
            Self::Instantiate(msg) => write!(f, "could not instantiate: {msg}"),
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
    /// The plugin's self-description.
    pub info: PluginInfo,
    /// The phases this configured plugin takes part in.
    pub phases: Phases,
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
        let phases = match timed(limits.deadline, &io, init).await {
            Ok(Ok(phases)) => phases,
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
            phases: phases & allowed_phases(&info),
            info,
            stats: EntryStats::default(),
        };
        pool.stats.instantiations.fetch_add(1, Ordering::Relaxed);
        pool.give_back(Instance { store, bindings });
        Ok(pool)
    }

    /// The plugin's name as it describes itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the configured instances read request bodies.
    pub fn reads_request_body(&self) -> bool {
        self.phases.contains(Phases::REQUEST_BODY)
    }

    /// Whether the configured instances read response bodies.
    pub fn reads_response_body(&self) -> bool {
        self.phases.contains(Phases::RESPONSE_BODY)
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
        let mut instance = self.checkout(context).await?;
        let io = instance.store.data().io.clone();
        let call = instance
            .bindings
            .gateway_plugin_handler()
            .call_on_request(&mut instance.store, request);
        let result = timed(self.limits.deadline, &io, call).await;
        self.finish(instance, context, result)
    }

    /// Runs the response hook on a warm instance.
    pub async fn on_response(
        &self,
        context: &mut Context,
        response: &Response,
    ) -> Result<ResponseOutcome, CallFailure> {
        let mut instance = self.checkout(context).await?;
        let io = instance.store.data().io.clone();
        let call = instance
            .bindings
            .gateway_plugin_handler()
            .call_on_response(&mut instance.store, response);
        let result = timed(self.limits.deadline, &io, call).await;
        self.finish(instance, context, result)
    }

    /// Takes a warm instance (or makes one) and lends it the request's context
    /// for one call.
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
        instance.store.set_epoch_deadline(1);
        Ok(instance)
    }

    /// Takes the context back and returns the instance to the pool, or discards
    /// it if the call failed.
    fn finish<R>(
        &self,
        mut instance: Instance,
        context: &mut Context,
        result: wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        *context = std::mem::take(&mut instance.store.data_mut().context);
        match result {
            Ok(value) => {
                self.give_back(instance);
                Ok(value)
            }
            Err(err) => Err(self.classify(err, &instance.store)),
        }
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
        CallFailure::Trap(format!("{err:#}"))
    }

    async fn instantiate(&self) -> Result<(Instance, Phases), InitFailure> {
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
        let phases = match timed(deadline, &io, init).await {
            Ok(Ok(phases)) => phases,
            Ok(Err(message)) => return Err(InitFailure::Refused(message)),
            Err(e) => return Err(InitFailure::Failed(self.classify(e, &store))),
        };
        Ok((Instance { store, bindings }, phases))
    }
}

/// What `init` may ask for: the phases `describe` declared and the bodies it
/// said the plugin may read.
fn allowed_phases(info: &PluginInfo) -> Phases {
    let mut allowed = info.phases & (Phases::REQUEST | Phases::RESPONSE);
    if info.reads_request_body {
        allowed |= Phases::REQUEST_BODY;
    }
    if info.reads_response_body {
        allowed |= Phases::RESPONSE_BODY;
    }
    allowed
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

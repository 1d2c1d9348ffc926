//! The process-wide Wasm engine: one `wasmtime::Engine`, the linker with the
//! host imports, the watchdog for deadlines, and compiled components kept by
//! content hash so an unchanged plugin is never compiled twice.
//!
//! Memory: instances are allocated on demand (no pooling allocator), so a
//! dropped instance's linear memory is unmapped at once. The bodies that
//! cross to plugins are host allocations, and the engine has the global
//! allocator (mimalloc) return freed memory to the system at once too (see
//! [`return_freed_memory_promptly`]).

use super::PluginError;
use super::bindings::gateway::plugin::{
    cache, clock, consumers, context, crypto, http_client, kv, log, rate_limit, types,
};
use super::capabilities::Services;
use super::capabilities::cache::HasCache;
use super::capabilities::consumers::HasConsumers;
use super::capabilities::crypto::HasCrypto;
use super::capabilities::http_client::HasHttpClient;
use super::capabilities::kv::HasKv;
use super::capabilities::rate_limit::HasRateLimit;
use super::host::HostState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// A compiled component and what it is known by.
#[derive(Clone)]
pub struct CompiledPlugin {
    /// Hex SHA-256 of the component bytes.
    pub hash: String,
    /// Linked and ready to instantiate.
    pub pre: super::bindings::PluginPre<HostState>,
    /// The grantable host interfaces the component imports (`crypto`, ...).
    pub capabilities: Vec<Capability>,
}

/// A host interface a pipeline entry must grant before its plugin may import it.
/// `log`, `clock` and `context` (and the sandboxed rest of WASI) need no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `gateway:plugin/crypto`: signature, MAC and digest primitives.
    Crypto,
    /// `gateway:plugin/consumers`: the configured consumers and their keys.
    Consumers,
    /// `gateway:plugin/http-client`: outbound HTTP to the entry's `allowed_hosts`.
    HttpClient,
    /// `gateway:plugin/kv`: a process-wide key/value store private to the plugin.
    Kv,
    /// `gateway:plugin/rate-limit`: GCRA counters and quotas kept by the host.
    RateLimit,
    /// `gateway:plugin/cache`: a response cache private to the plugin.
    Cache,
}

impl Capability {
    /// Every capability, in the order the docs list them.
    pub const ALL: [Capability; 6] = [
        Capability::Crypto,
        Capability::Consumers,
        Capability::HttpClient,
        Capability::Kv,
        Capability::RateLimit,
        Capability::Cache,
    ];

    /// The name used in `grants = [...]` and in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Crypto => "crypto",
            Capability::Consumers => "consumers",
            Capability::HttpClient => "http-client",
            Capability::Kv => "kv",
            Capability::RateLimit => "rate-limit",
            Capability::Cache => "cache",
        }
    }

    /// The capability called `name` in config.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The capability a component import names, if the import is grantable.
    fn of_import(import: &str) -> Option<Capability> {
        let interface = import.strip_prefix("gateway:plugin/")?;
        let interface = interface.split('@').next().unwrap_or(interface);
        Capability::from_name(interface)
    }
}

/// The engine and everything that lives as long as the process.
pub struct PluginEngine {
    engine: Engine,
    services: Arc<Services>,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<String, CompiledPlugin>>,
    /// Hashes of the built-ins' bytes, by address and length.
    static_hashes: Mutex<HashMap<(usize, usize), String>>,
}

impl PluginEngine {
    /// Creates the engine and puts it under the deadline watchdog.
    pub fn new() -> Result<Arc<Self>, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `GATEWAY_PERFMAP=1` writes /tmp/perf-PID.map, so `perf report` names
        // plugin functions instead of showing bare JIT addresses.
        if std::env::var_os("GATEWAY_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Compiled code is cached on disk by wasmtime, keyed by the bytes and the
        // engine settings, so a restart does not recompile unchanged plugins.
        match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(err) => {
                tracing::warn!(%err, "wasmtime compilation cache unavailable; plugins compile at every start")
            }
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        add_host_interfaces(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;

        return_freed_memory_promptly();
        super::watchdog::watch(&engine)
            .map_err(|e| PluginError::Engine(format!("cannot start the watchdog thread: {e}")))?;

        Ok(Arc::new(Self {
            engine,
            services: Services::new(),
            linker,
            compiled: Mutex::new(HashMap::new()),
            static_hashes: Mutex::new(HashMap::new()),
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The process-wide services behind `http-client` and `kv`.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Compiles and links `bytes`, or returns the earlier result for identical bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPlugin, PluginError> {
        self.compile_hashed(bytes, hex(&Sha256::digest(bytes)))
    }

    /// [`PluginEngine::compile`] for bytes that live as long as the process
    /// (the built-ins): their hash is computed once, not at every use.
    pub fn compile_static(&self, bytes: &'static [u8]) -> Result<CompiledPlugin, PluginError> {
        let id = (bytes.as_ptr() as usize, bytes.len());
        let known = self
            .static_hashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let hash = known.unwrap_or_else(|| {
            let hash = hex(&Sha256::digest(bytes));
            self.static_hashes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, hash.clone());
            hash
        });
        self.compile_hashed(bytes, hash)
    }

    fn compile_hashed(&self, bytes: &[u8], hash: String) -> Result<CompiledPlugin, PluginError> {
        if let Some(found) = self.lock().get(&hash) {
            return Ok(found.clone());
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Compile(not_a_component(bytes, &e)))?;
        if let Some(other) = other_contract(&component, &self.engine) {
            return Err(PluginError::Link(format!(
                "the component was built against gateway:plugin@{other}, and this gateway runs plugins built against gateway:plugin@{CONTRACT}: rebuild it with the plugin-sdk of this gateway"
            )));
        }
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Link(format!(
                "{e:#}; a plugin may only import the gateway:plugin@{CONTRACT} interfaces it is granted and WASI"
            ))
        })?;
        let pre = super::bindings::PluginPre::new(instance_pre)
            .map_err(|e| PluginError::Link(format!("{e:#}")))?;
        let mut capabilities: Vec<Capability> = component
            .component_type()
            .imports(&self.engine)
            .filter_map(|(name, _)| Capability::of_import(name))
            .collect();
        capabilities.dedup();
        let compiled = CompiledPlugin {
            hash: hash.clone(),
            pre,
            capabilities,
        };
        self.lock().insert(hash, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CompiledPlugin>> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // insert is a single call), so a poisoned lock is still usable.
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Links the contract's imports. The ones every plugin gets are served by the
/// instance's state itself; each capability by its own view of it (made per
/// call by a `HostState` getter: borrows, nothing allocated).
fn add_host_interfaces(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type Own = HasSelf<HostState>;
    types::add_to_linker::<HostState, Own>(linker, |state| state)?;
    log::add_to_linker::<HostState, Own>(linker, |state| state)?;
    clock::add_to_linker::<HostState, Own>(linker, |state| state)?;
    context::add_to_linker::<HostState, Own>(linker, |state| state)?;
    crypto::add_to_linker::<HostState, HasCrypto>(linker, HostState::crypto)?;
    consumers::add_to_linker::<HostState, HasConsumers>(linker, HostState::consumers)?;
    http_client::add_to_linker::<HostState, HasHttpClient>(linker, HostState::http_client)?;
    kv::add_to_linker::<HostState, HasKv>(linker, HostState::kv)?;
    rate_limit::add_to_linker::<HostState, HasRateLimit>(linker, HostState::rate_limit)?;
    cache::add_to_linker::<HostState, HasCache>(linker, HostState::cache)
}

/// The version of the contract (`wit/plugin.wit`) this gateway hosts.
pub const CONTRACT: &str = "0.4.0";

/// The contract version a component was built against, when it is not
/// [`CONTRACT`]: read from the `gateway:plugin/...@VERSION` names it imports
/// and exports.
fn other_contract(component: &Component, engine: &Engine) -> Option<String> {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, _)| name.to_string());
    let exports = ty.exports(engine).map(|(name, _)| name.to_string());
    imports
        .chain(exports)
        .filter_map(|name| {
            let rest = name.strip_prefix("gateway:plugin/")?;
            Some(rest.split_once('@')?.1.to_string())
        })
        .find(|version| version != CONTRACT)
}

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Has mimalloc give memory it frees back to the system at once (`purge_delay
/// = 0`), unless the operator chose otherwise with `MIMALLOC_PURGE_DELAY`.
///
/// Its default delays the release (1 s) until the allocator next frees or
/// collects a page after that time: on a quiet gateway, never. The buffers
/// of one large body (a 50 MB XML document converted: about 100 MB) then
/// stayed resident. Steady traffic reuses retained pages, so releasing at
/// once costs few system calls (measured: a few hundred `madvise` calls over
/// a hundred 4 MB conversions, well under a millisecond a request).
#[allow(unsafe_code)]
fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: `mi_option_set` only stores a value in mimalloc's option table
    // (the global allocator this crate links); any thread may call it at any
    // time, and the index names an existing option.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// How a plugin author builds a component the gateway loads.
const BUILD_HINT: &str = "build the plugin with `cargo build --release --target wasm32-wasip2` and use target/wasm32-wasip2/release/NAME.wasm";

/// Why `bytes` are no component, in the plugin author's terms: not
/// WebAssembly at all, a core module (built for another target), or a
/// component wasmtime refused (its reason, on one line).
fn not_a_component(bytes: &[u8], err: &wasmtime::Error) -> String {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return format!("not a WebAssembly file; {BUILD_HINT}");
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return format!(
            "a core WebAssembly module, not a component (built for wasm32-unknown-unknown or wasm32-wasip1?); {BUILD_HINT}"
        );
    }
    let reason = err.root_cause().to_string();
    let reason = reason.lines().next().unwrap_or_default();
    format!("not a valid WebAssembly component: {reason}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        Component as Encoded, ComponentImportSection, ComponentTypeRef, ComponentTypeSection,
        InstanceType,
    };

    /// The smallest component that imports `gateway:plugin/log@VERSION`.
    fn importing_log(version: &str) -> Vec<u8> {
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        let mut imports = ComponentImportSection::new();
        imports.import(
            format!("gateway:plugin/log@{version}").as_str(),
            ComponentTypeRef::Instance(0),
        );
        let mut component = Encoded::new();
        component.section(&types).section(&imports);
        component.finish()
    }

    #[test]
    fn the_contract_version_is_the_wit_package_version() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(
            wit.contains(&format!("package gateway:plugin@{CONTRACT};")),
            "wit/plugin.wit and CONTRACT disagree"
        );
    }

    #[test]
    fn a_component_built_against_another_contract_is_refused_naming_both_versions() {
        let engine = PluginEngine::new().expect("engine");
        let refused = engine.compile(&importing_log("0.3.0")).err();
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("gateway:plugin@0.3.0") && message.contains("gateway:plugin@0.4.0"),
            "{message}"
        );
        // The same component against this contract gets past the version
        // check (to be refused for exporting no handler).
        let current = engine.compile(&importing_log(CONTRACT)).err();
        let message = current.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            !message.contains("built against") && message.contains("handler"),
            "{message}"
        );
    }
}

//! The process-wide Wasm engine: one `wasmtime::Engine`, the linker with the
//! host imports, an epoch ticker for deadlines, and compiled components kept by
//! content hash so an unchanged plugin is never compiled twice.

use super::PluginError;
use super::bindings::Plugin as PluginWorld;
use super::host::HostState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// How often the epoch advances; a deadline is a whole number of ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A compiled component and what it is known by.
#[derive(Clone)]
pub struct CompiledPlugin {
    /// Hex SHA-256 of the component bytes.
    pub hash: String,
    /// Linked and ready to instantiate.
    pub pre: super::bindings::PluginPre<HostState>,
}

/// The engine and everything that lives as long as the process.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    compiled: Mutex<HashMap<String, CompiledPlugin>>,
}

impl PluginEngine {
    /// Creates the engine and starts its epoch ticker thread.
    pub fn new() -> Result<Arc<Self>, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
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
        PluginWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| PluginError::Engine(e.to_string()))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(Arc::new(Self {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and links `bytes`, or returns the earlier result for identical bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPlugin, PluginError> {
        let hash = hex(&Sha256::digest(bytes));
        if let Some(found) = self.lock().get(&hash) {
            return Ok(found.clone());
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Compile(format!("{e:#}")))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Link(format!(
                "{e:#}; a plugin may only import the gateway:plugin@0.1.0 interfaces it is granted and WASI"
            ))
        })?;
        let pre = super::bindings::PluginPre::new(instance_pre)
            .map_err(|e| PluginError::Link(format!("{e:#}")))?;
        let compiled = CompiledPlugin {
            hash: hash.clone(),
            pre,
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

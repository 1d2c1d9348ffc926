//! The per-request context shared by the plugins of one pipeline.

#[cfg(target_arch = "wasm32")]
use crate::bindings::gateway::plugin::context as host;

/// Per-request key/value strings shared by the plugins of one pipeline, in
/// both phases. Empty at the start of every request.
///
/// Inside the gateway the values live in the host; in native tests they live in
/// this struct, so `Context::new()` gives an empty context to test with.
#[derive(Debug, Default)]
pub struct Context {
    #[cfg(not(target_arch = "wasm32"))]
    entries: std::collections::HashMap<String, String>,
}

impl Context {
    /// An empty context (inside the gateway: a handle to the request's context).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return host::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        return self.entries.get(key).cloned();
    }

    /// Stores `value` under `key`. The host caps entries at 64, keys at 256
    /// bytes and values at 16 KiB; a value over a cap is dropped with a warning.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        #[cfg(target_arch = "wasm32")]
        host::set(key, &value);
        #[cfg(not(target_arch = "wasm32"))]
        self.entries.insert(key.to_string(), value);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        #[cfg(target_arch = "wasm32")]
        host::remove(key);
        #[cfg(not(target_arch = "wasm32"))]
        self.entries.remove(key);
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return host::keys();
        #[cfg(not(target_arch = "wasm32"))]
        return self.entries.keys().cloned().collect();
    }
}

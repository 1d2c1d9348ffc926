//! Hosting plugins, in two parts.
//!
//! The sandbox runs components: `engine` (the wasmtime engine, compiling,
//! linking), `bindings` (the one `bindgen!` over the contract), `pool` (warm
//! instances per pipeline entry), `watchdog` (CPU deadlines that leave
//! network waits out), `wire` (the contract's header encoding) and `host`
//! (an instance's state and the imports every plugin gets: `log`, `clock`,
//! `context`).
//!
//! `capabilities` are the interfaces an entry must be granted, one module
//! per WIT interface: `kv`, `cache`, `rate_limit`, `http_client`, `crypto`,
//! `consumers`. Each serves from a view of the instance's state that `host`
//! lends it per call, and `engine` links each interface with its own view.

mod bindings;
mod capabilities;
mod engine;
mod host;
mod pool;
mod watchdog;
mod wire;

pub use bindings::{
    Needs, PluginInfo, Request, RequestEdit, RequestOutcome, Response, ResponseOutcome,
};
pub use capabilities::cache::ResponseCache;
pub use capabilities::http_client::HostPattern;
pub use capabilities::redis::{Kind as StateKind, Match, RedisStore};
pub use capabilities::{Backends, Services, Store};
pub use engine::{CONTRACT, Capability, CompiledPlugin, PluginEngine};
pub use host::{ConfigEnv, Context, HostEnv};
pub use pool::{CallFailure, EntryLimits, EntryStats, InstancePool};
pub use wire::{
    decode_headers, edit_head, encode_head, encode_headers, head_field, head_headers,
    header_fields_fault,
};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a valid component (the message says what they are,
    /// and how to build a component).
    #[error("{0}")]
    Compile(String),
    /// The component imports something the host does not grant, or does not
    /// export the handler interface.
    #[error("cannot link component: {0}")]
    Link(String),
    /// Creating an instance failed.
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// The plugin refused its configuration, or trapped while reading it.
    #[error("{0}")]
    Init(String),
}

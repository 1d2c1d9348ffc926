//! Hosting plugins: the engine, the contract's bindings, the host imports, and
//! pools of warm instances per pipeline entry.

mod bindings;
mod cache;
mod capabilities;
mod crypto;
mod engine;
mod host;
mod outbound;
mod pool;
mod ratelimit;
mod redis;
mod watchdog;
mod wire;

pub use bindings::{
    Needs, PluginInfo, Request, RequestEdit, RequestOutcome, Response, ResponseOutcome,
};
pub use cache::ResponseCache;
pub use engine::{CONTRACT, Capability, CompiledPlugin, PluginEngine};
pub use host::{Context, HostEnv, Store};
pub use outbound::{HostPattern, Services};
pub use pool::{CallFailure, EntryLimits, EntryStats, InstancePool};
pub use redis::{Kind as StateKind, Match, RedisStore};
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

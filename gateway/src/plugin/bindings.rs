//! The one place the WIT contract becomes Rust: `bindgen!` over `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use exports::gateway::plugin::handler::{PluginInfo, RequestOutcome, ResponseOutcome};
pub use gateway::plugin::types::{Phases, Request, Response};

//! Write plugins for the gateway in Rust.
//!
//! A plugin is one struct, one [`Plugin`] impl and one [`export!`] call, compiled
//! to a WebAssembly component with `cargo build --release --target wasm32-wasip2`:
//!
//! ```
//! use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
//!
//! /// Answers `/ping` itself and tags everything else.
//! pub struct Ping {
//!     tag: String,
//! }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     tag: String,
//! }
//!
//! impl Plugin for Ping {
//!     const NAME: &'static str = "ping";
//!
//!     fn init(config: Config) -> Result<Self, String> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Ping { tag: settings.tag })
//!     }
//!
//!     fn needs(&self) -> Needs {
//!         Needs::REQUEST
//!     }
//!
//!     fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
//!         if req.path() == "/ping" {
//!             return Action::Respond(Response::text(200, "pong"));
//!         }
//!         req.headers_mut().set("x-tag", self.tag.as_str());
//!         Action::Continue
//!     }
//! }
//!
//! plugin_sdk::export!(Ping);
//!
//! // The same plugin, tested natively:
//! let ping = Ping::init(Config::from_json(r#"{"tag": "t1"}"#)).unwrap();
//! let mut req = Request::new("GET", "/users");
//! assert!(matches!(ping.on_request(&mut req, &mut Context::new()), Action::Continue));
//! assert_eq!(req.headers().get("x-tag"), Some("t1"));
//! ```
//!
//! The hooks run inside the gateway's sandbox: no filesystem, network or
//! environment, a memory cap and a CPU deadline per call. What a plugin can do
//! beyond editing requests and responses comes from the host: the per-request
//! [`Context`], [`log`] and [`clock`]. On a non-wasm target the same API works
//! without the gateway (the context is an in-memory map, logs go to stderr), so
//! plugins are unit-tested with plain `cargo test`.

#![deny(missing_docs)]

#[cfg(feature = "authz")]
pub mod authz;
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings;
pub mod cache;
pub mod consumers;
mod context;
/// Signature verification (JWS), HMAC and digests, computed by the host.
pub mod crypto;
mod export;
mod host;
mod http;
pub mod http_client;
pub mod kv;
mod plugin;
pub mod rate_limit;
pub mod units;

pub use context::Context;
pub use host::{clock, log};
pub use http::{Headers, Repeated, Request, Response};
pub use plugin::{Action, Config, Needs, Plugin};

/// What [`export!`] expands to refers to these. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::exports::gateway::plugin::handler::{
        Guest, PluginInfo, RequestOutcome, ResponseOutcome,
    };
    pub use crate::bindings::gateway::plugin::types::{
        Needs as WitNeeds, Request as WitRequest, Response as WitResponse,
    };
    pub use crate::export::{describe, init, on_request, on_response};
}

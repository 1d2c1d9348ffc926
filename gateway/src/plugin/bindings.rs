//! The one place the WIT contract becomes Rust: `bindgen!` over `wit/`, and
//! the host type behind the contract's one resource (`verifying-key`), kept
//! here so that the bindings use nothing else of the plugin host.

use plugin_shared::crypto::native::NativeKey;

/// The resource behind a plugin's `verifying-key` handle (served by
/// `capabilities::crypto`).
pub struct VerifyingKey(pub(super) NativeKey);

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // Exports are called asynchronously so that WASI's blocking operations (a
    // plugin writing to stderr, say) await instead of blocking a tokio worker,
    // and so that later host capabilities can do network I/O. Our own imports
    // (log, clock, context) never block and stay synchronous.
    exports: { default: async },
    // Imports that await the network are async; every other one is synchronous.
    imports: {
        "gateway:plugin/http-client.send": async,
        "gateway:plugin/http-client.fetch-shared": async,
        // These may go to Redis (the entry's `store`).
        "gateway:plugin/rate-limit.check": async,
        "gateway:plugin/rate-limit.count": async,
        "gateway:plugin/kv.get": async,
        "gateway:plugin/kv.set": async,
        "gateway:plugin/kv.delete": async,
        "gateway:plugin/cache.lookup": async,
        "gateway:plugin/cache.put": async,
        "gateway:plugin/cache.purge": async,
        // Computes a password hash on a blocking thread.
        "gateway:plugin/consumers.verify-password": async,
    },
    with: {
        "gateway:plugin/crypto.verifying-key": self::VerifyingKey,
    },
});

pub use self::exports::gateway::plugin::handler::{PluginInfo, RequestOutcome, ResponseOutcome};
pub use self::gateway::plugin::types::{Needs, Request, RequestEdit, Response};

//! What the store-backed capabilities (`kv`, `rate-limit`, `cache`) share: the
//! boxed future their backends return (and [`ready`], how a local backend
//! answers at once), the [`Scope`] every backend call gets (the entry's
//! namespace and the instance's `IoWaits`), the view their host functions run
//! on ([`StoreView`]: the entry's backend and that scope, borrowed from the
//! instance's state for one call), and the contract's form of a store's
//! refusal or failure. A leaf: it uses nothing else of the capabilities.

use crate::plugin::bindings::gateway::plugin::types::StoreError;
use crate::plugin::watchdog::IoWaits;
use std::pin::Pin;
use std::sync::Arc;

/// What a backend returns: a future it may await the network in.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend writing returns.
pub type Written<'a> = BoxFuture<'a, Result<(), StoreError>>;

/// `value`, as a backend that waits on nothing returns it.
pub fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

/// Whose state a backend call is about, and where it marks its waits.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// Whose keys these are: the entry's plugin reference.
    pub namespace: &'a Arc<str>,
    /// Where a backend marks its waits on the network.
    pub io: &'a IoWaits,
}

/// What one host call of a store-backed interface serves from: borrows of
/// the instance's state, nothing owned.
pub struct StoreView<'a, B: ?Sized> {
    /// Where the entry's state lives (its `store`).
    pub backend: &'a B,
    /// The entry's namespace and the instance's `IoWaits`.
    pub at: Scope<'a>,
}

/// A store's failure as a plugin learns it: that the store is unreachable,
/// not the Redis client's words (addresses, internals), which go to the log.
pub fn unavailable(error: &dyn std::fmt::Display) -> StoreError {
    tracing::warn!(%error, "a plugin's store write failed");
    StoreError::Unavailable("the shared store did not answer".to_string())
}

/// The contract's form of a shared store refusal.
pub fn store_error(refused: plugin_shared::store::StoreError) -> StoreError {
    use plugin_shared::store::StoreError as Shared;
    match refused {
        Shared::KeyTooLong(max) => StoreError::KeyTooLong(max),
        Shared::TooLarge(max) => StoreError::TooLarge(max),
        Shared::ZeroTtl => StoreError::ZeroTtl,
        Shared::Unavailable(why) => StoreError::Unavailable(why),
    }
}

//! A response cache private to the plugin and shared by all its instances,
//! in the gateway process or (with the entry's `store = "redis"`) on Redis,
//! shared by every gateway. Needs the `cache` grant.
//!
//! Natively the cache is a per-thread map on the real clock, so tests see
//! their own writes; nobody ever waits there. It refuses what the gateway
//! refuses (`plugin_shared::limits`: the key cap, a zero TTL after the cut to
//! whole milliseconds) and cuts TTLs at the same day; the per-entry size cap
//! is the gateway's config (`[cache] max_entry`), so natively there is none.

use crate::Headers;
pub use crate::kv::StoreError;
use std::time::Duration;

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Status code.
    pub status: u16,
    /// Headers as they will be served.
    pub headers: Headers,
    /// The whole body.
    pub body: Vec<u8>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_ms: u64,
    /// Lower-case names of the request headers the response varies on.
    pub vary: Vec<String>,
}

/// The entry under `key`.
///
/// The first caller to miss a key becomes its filler until it calls [`put`]
/// or [`release`] (or `wait` passes); callers missing it meanwhile wait up to
/// `wait` for the filler's entry, so concurrent misses send one request
/// upstream. `Duration::ZERO` never waits.
pub fn lookup(key: &str, wait: Duration) -> Option<Entry> {
    let wait_ms = plugin_shared::limits::millis_u32(wait);
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::cache::lookup(key, wait_ms).map(|e| Entry {
        status: e.status,
        headers: Headers::from_wire(e.headers),
        body: e.body,
        stored_at_ms: e.stored_at_ms,
        vary: e.vary,
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = wait_ms;
        native::lookup(key)
    }
}

/// Stores `entry` under `key` for `ttl` (capped at a day) and wakes the
/// callers waiting for it. Refused, saying why, for a key over 1 KiB, an
/// entry over the cache's per-entry cap, a zero TTL or an unreachable store.
pub fn put(key: &str, entry: Entry, ttl: Duration) -> Result<(), StoreError> {
    let ttl_ms = plugin_shared::limits::millis(ttl);
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::cache::put(
        key,
        &crate::bindings::gateway::plugin::cache::Entry {
            status: entry.status,
            headers: entry.headers.into_wire(),
            body: entry.body,
            stored_at_ms: entry.stored_at_ms,
            vary: entry.vary,
        },
        ttl_ms,
    )
    .map_err(crate::kv::store_error);
    #[cfg(not(target_arch = "wasm32"))]
    return native::put(key, entry, ttl_ms);
}

/// Gives up filling `key` (the response turned out not cacheable): waiting
/// callers stop waiting and fetch for themselves.
pub fn release(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::gateway::plugin::cache::release(key);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = key;
}

/// Removes `key` and its variants (keys starting with `key` and a newline).
pub fn purge(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::gateway::plugin::cache::purge(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::purge(key);
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::Entry;
    use plugin_shared::limits::{CACHE_MAX_TTL, millis};
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static STORE: RefCell<HashMap<String, (Entry, u64)>> = RefCell::new(HashMap::new());
    }

    pub fn lookup(key: &str) -> Option<Entry> {
        let now = crate::clock::now_millis();
        STORE.with_borrow(|s| {
            s.get(key)
                .filter(|(_, expires)| *expires > now)
                .map(|(entry, _)| entry.clone())
        })
    }

    pub fn put(key: &str, entry: Entry, ttl_ms: u64) -> Result<(), super::StoreError> {
        // No per-entry cap natively: that one is the gateway's config.
        if let Some(refused) = plugin_shared::store::cache_refusal(key, 0, usize::MAX, ttl_ms) {
            return Err(refused);
        }
        let expires = crate::clock::now_millis().saturating_add(ttl_ms.min(millis(CACHE_MAX_TTL)));
        STORE.with_borrow_mut(|s| s.insert(key.to_string(), (entry, expires)));
        Ok(())
    }

    pub fn purge(key: &str) {
        let variants = format!("{key}\n");
        STORE.with_borrow_mut(|s| s.retain(|k, _| k != key && !k.starts_with(&variants)));
    }
}

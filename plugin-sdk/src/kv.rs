//! A key/value store in the gateway process, shared by every instance of the
//! same plugin and private to it, with a TTL per entry. Needs the `kv` grant.
//!
//! Natively the store is a per-thread map, so tests see their own writes, and
//! it refuses what the gateway refuses (`plugin_shared::limits`: key and value
//! sizes, a zero TTL after the cut to whole milliseconds) and cuts TTLs at the
//! same day.

use std::time::Duration;

/// Why a store ([`kv`](crate::kv) or [`cache`](crate::cache)) refused a value.
pub use plugin_shared::store::StoreError;

#[cfg(target_arch = "wasm32")]
pub(crate) fn store_error(e: crate::bindings::gateway::plugin::types::StoreError) -> StoreError {
    use crate::bindings::gateway::plugin::types::StoreError as Wit;
    match e {
        Wit::KeyTooLong(max) => StoreError::KeyTooLong(max),
        Wit::TooLarge(max) => StoreError::TooLarge(max),
        Wit::ZeroTtl => StoreError::ZeroTtl,
        Wit::Unavailable(why) => StoreError::Unavailable(why),
    }
}

/// The value under `key`, unless absent or expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::kv::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return native::get(key);
}

/// Stores `value` under `key` for `ttl` (capped at a day by the host).
/// Refused, saying why, for a key over 512 bytes, a value over 1 MiB, a zero
/// TTL or an unreachable store.
pub fn set(key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
    let ttl_ms = plugin_shared::limits::millis(ttl);
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::kv::set(key, value, ttl_ms).map_err(store_error);
    #[cfg(not(target_arch = "wasm32"))]
    return native::set(key, value, ttl_ms);
}

/// Removes `key`.
pub fn delete(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::gateway::plugin::kv::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::delete(key);
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static STORE: RefCell<HashMap<String, (Vec<u8>, u64)>> = RefCell::new(HashMap::new());
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        let now = crate::clock::now_millis();
        STORE.with_borrow(|s| {
            s.get(key)
                .filter(|(_, expires)| *expires > now)
                .map(|(value, _)| value.clone())
        })
    }

    use super::StoreError;

    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> Result<(), StoreError> {
        if let Some(refused) = plugin_shared::store::kv_refusal(key, value.len(), ttl_ms) {
            return Err(refused);
        }
        let max_ttl = plugin_shared::limits::millis(plugin_shared::limits::KV_MAX_TTL);
        let expires = crate::clock::now_millis().saturating_add(ttl_ms.min(max_ttl));
        STORE.with_borrow_mut(|s| s.insert(key.to_string(), (value.to_vec(), expires)));
        Ok(())
    }

    pub fn delete(key: &str) {
        STORE.with_borrow_mut(|s| s.remove(key));
    }
}

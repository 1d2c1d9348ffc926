//! A key/value store in the gateway process, shared by every instance of the
//! same plugin and private to it, with a TTL per entry. Needs the `kv` grant.
//!
//! Natively the store is a per-thread map, so tests see their own writes.

use std::time::Duration;

/// The value under `key`, unless absent or expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::kv::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return native::get(key);
}

/// Stores `value` under `key` for `ttl` (capped at a day by the host). Keys
/// over 512 bytes or values over 1 MiB are refused with `false`.
pub fn set(key: &str, value: &[u8], ttl: Duration) -> bool {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::kv::set(key, value, ttl_ms);
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

    pub fn set(key: &str, value: &[u8], ttl_ms: u64) -> bool {
        if key.len() > 512 || value.len() > 1 << 20 {
            return false;
        }
        let expires = crate::clock::now_millis().saturating_add(ttl_ms.min(86_400_000));
        STORE.with_borrow_mut(|s| s.insert(key.to_string(), (value.to_vec(), expires)));
        true
    }

    pub fn delete(key: &str) {
        STORE.with_borrow_mut(|s| s.remove(key));
    }
}

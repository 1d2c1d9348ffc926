//! A key/value store in the gateway process, shared by every instance of the
//! same plugin and private to it, with a TTL per entry. Needs the `kv` grant.
//!
//! Natively the store is a per-thread map, so tests see their own writes.

use std::time::Duration;

/// Why a store ([`kv`](crate::kv) or [`cache`](crate::cache)) refused a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The key is longer than this many bytes.
    KeyTooLong(u32),
    /// The value (or cache entry) is larger than this many bytes.
    TooLarge(u64),
    /// A time to live of zero.
    ZeroTtl,
    /// The store is unreachable (Redis down); the message says why.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyTooLong(max) => write!(f, "key longer than {max} bytes"),
            Self::TooLarge(max) => write!(f, "value larger than {max} bytes"),
            Self::ZeroTtl => f.write_str("time to live of zero"),
            Self::Unavailable(why) => write!(f, "store unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(target_arch = "wasm32")]
impl From<crate::bindings::gateway::plugin::types::StoreError> for StoreError {
    fn from(e: crate::bindings::gateway::plugin::types::StoreError) -> Self {
        use crate::bindings::gateway::plugin::types::StoreError as Wit;
        match e {
            Wit::KeyTooLong(max) => Self::KeyTooLong(max),
            Wit::TooLarge(max) => Self::TooLarge(max),
            Wit::ZeroTtl => Self::ZeroTtl,
            Wit::Unavailable(why) => Self::Unavailable(why),
        }
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
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::kv::set(key, value, ttl_ms).map_err(StoreError::from);
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
        if key.len() > 512 {
            return Err(StoreError::KeyTooLong(512));
        }
        if value.len() > 1 << 20 {
            return Err(StoreError::TooLarge(1 << 20));
        }
        if ttl_ms == 0 {
            return Err(StoreError::ZeroTtl);
        }
        let expires = crate::clock::now_millis().saturating_add(ttl_ms.min(86_400_000));
        STORE.with_borrow_mut(|s| s.insert(key.to_string(), (value.to_vec(), expires)));
        Ok(())
    }

    pub fn delete(key: &str) {
        STORE.with_borrow_mut(|s| s.remove(key));
    }
}

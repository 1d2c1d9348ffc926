//! Why `kv` and `cache` refuse a write, and the checks that decide it: the
//! host runs them before storing, the SDK's native stores run them too.

use crate::limits::{CACHE_MAX_KEY, KV_MAX_KEY, KV_MAX_VALUE};

/// Why a store (`kv` or `cache`) refused a value.
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

fn cap_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn cap_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Why `kv.set` refuses a `value_len`-byte value under `key` for `ttl_ms`, if
/// it does: key first, then value, then TTL.
pub fn kv_refusal(key: &str, value_len: usize, ttl_ms: u64) -> Option<StoreError> {
    if key.len() > KV_MAX_KEY {
        return Some(StoreError::KeyTooLong(cap_u32(KV_MAX_KEY)));
    }
    if value_len > KV_MAX_VALUE {
        return Some(StoreError::TooLarge(cap_u64(KV_MAX_VALUE)));
    }
    (ttl_ms == 0).then_some(StoreError::ZeroTtl)
}

/// Why `cache.put` refuses an entry of `entry_size` bytes under `key` for
/// `ttl_ms`, given the cache's per-entry cap `max_entry`, if it does: key
/// first, then size, then TTL.
pub fn cache_refusal(
    key: &str,
    entry_size: usize,
    max_entry: usize,
    ttl_ms: u64,
) -> Option<StoreError> {
    if key.len() > CACHE_MAX_KEY {
        return Some(StoreError::KeyTooLong(cap_u32(CACHE_MAX_KEY)));
    }
    if entry_size > max_entry {
        return Some(StoreError::TooLarge(cap_u64(max_entry)));
    }
    (ttl_ms == 0).then_some(StoreError::ZeroTtl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_first_broken_limit() {
        assert_eq!(kv_refusal("k", KV_MAX_VALUE, 1), None);
        assert_eq!(
            kv_refusal(&"k".repeat(KV_MAX_KEY + 1), KV_MAX_VALUE + 1, 0),
            Some(StoreError::KeyTooLong(512))
        );
        assert_eq!(
            kv_refusal("k", KV_MAX_VALUE + 1, 0),
            Some(StoreError::TooLarge(1 << 20))
        );
        assert_eq!(kv_refusal("k", 1, 0), Some(StoreError::ZeroTtl));
        assert_eq!(cache_refusal(&"k".repeat(CACHE_MAX_KEY), 10, 10, 1), None);
        assert_eq!(
            cache_refusal(&"k".repeat(CACHE_MAX_KEY + 1), 10, 10, 1),
            Some(StoreError::KeyTooLong(1024))
        );
        assert_eq!(
            cache_refusal("k", 11, 10, 1),
            Some(StoreError::TooLarge(10))
        );
        assert_eq!(cache_refusal("k", 10, 10, 0), Some(StoreError::ZeroTtl));
    }
}

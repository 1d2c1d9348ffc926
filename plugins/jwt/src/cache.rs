//! The verified-token cache: a token seen before skips the signature check.
//!
//! Like Envoy's `jwt_cache`: keyed by the exact token string, bounded, and
//! per instance (an instance serves one request at a time, so a `RefCell`
//! is enough). Only tokens that passed every check are stored; a hit is still
//! re-checked against the clock by the caller. When the cache is full it is
//! cleared: the next requests pay one signature check each to refill it,
//! which is cheaper than tracking recency on every hit.

use crate::Verified;
use std::cell::RefCell;
use std::collections::HashMap;

/// Entries kept per instance.
pub const CAPACITY: usize = 1024;

/// Verified tokens, by their exact text.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: RefCell<HashMap<String, Verified>>,
}

impl TokenCache {
    /// The verified claims of `token`, if it passed before.
    pub fn get(&self, token: &str) -> Option<Verified> {
        self.entries.borrow().get(token).cloned()
    }

    /// Remembers that `token` passed.
    pub fn insert(&self, token: &str, verified: Verified) {
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_string(), verified);
    }

    /// Forgets `token` (it expired).
    pub fn remove(&self, token: &str) {
        self.entries.borrow_mut().remove(token);
    }

    /// Forgets every token (the keys changed: a token verified with a key
    /// that is gone must not keep passing).
    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}

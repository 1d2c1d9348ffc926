//! `gateway:plugin/kv`: a key/value store per plugin, with a time to live per
//! entry. [`KvBackend`] is where the entries live: [`LocalKv`], a byte-bounded
//! moka cache in this process (kept across reloads), or [`RedisKv`], shared
//! by every gateway on the same Redis. A Redis that cannot answer reads as a
//! missing key and refuses writes as unavailable.
//!
//! The host functions run on a [`KvView`]: the entry's backend and namespace
//! and the instance's `IoWaits`.

use super::backend::{BoxFuture, Scope, StoreView, Written, ready, store_error, unavailable};
use super::redis::{Kind, RedisStore};
use crate::plugin::bindings::gateway::plugin::kv;
use crate::plugin::bindings::gateway::plugin::types::StoreError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

pub use plugin_shared::limits::{KV_MAX_KEY, KV_MAX_TTL, KV_MAX_VALUE};

/// Bytes the local store holds across all plugins.
const KV_CAPACITY: u64 = 64 << 20;

/// Where one entry's kv values live. Keys are checked against the contract's
/// caps before they get here.
pub trait KvBackend: Send + Sync {
    /// The value under `key` in `at`'s namespace, unless absent or expired.
    fn get<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`.
    fn set<'a>(&'a self, at: Scope<'a>, key: String, value: Vec<u8>, ttl: Duration) -> Written<'a>;

    /// Removes `key`.
    fn delete<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, ()>;
}

#[derive(Clone)]
struct KvValue {
    value: Arc<[u8]>,
    expires: Instant,
}

/// The kv values held in this process, for every plugin (a handle: clones
/// share the values).
#[derive(Clone)]
pub struct LocalKv(moka::sync::Cache<(Arc<str>, String), KvValue>);

impl LocalKv {
    /// An empty store of [`KV_CAPACITY`] bytes.
    pub fn new() -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(KV_CAPACITY)
            .weigher(|key: &(Arc<str>, String), value: &KvValue| {
                u32::try_from(key.1.len() + value.value.len() + 64).unwrap_or(u32::MAX)
            })
            .time_to_live(KV_MAX_TTL)
            .build();
        LocalKv(cache)
    }

    /// The value under `key` in `namespace`.
    pub fn get(&self, namespace: &Arc<str>, key: String) -> Option<Vec<u8>> {
        let key = (namespace.clone(), key);
        let found = self.0.get(&key)?;
        if found.expires <= Instant::now() {
            self.0.invalidate(&key);
            return None;
        }
        Some(found.value.to_vec())
    }

    /// Stores a value; `false` when over the caps.
    pub fn set(&self, namespace: &Arc<str>, key: String, value: Vec<u8>, ttl: Duration) -> bool {
        if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
            return false;
        }
        let expires = Instant::now() + ttl.min(KV_MAX_TTL);
        self.0.insert(
            (namespace.clone(), key),
            KvValue {
                value: value.into(),
                expires,
            },
        );
        true
    }

    /// Removes a value.
    pub fn delete(&self, namespace: &Arc<str>, key: String) {
        self.0.invalidate(&(namespace.clone(), key));
    }
}

impl KvBackend for LocalKv {
    fn get<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, Option<Vec<u8>>> {
        ready(LocalKv::get(self, at.namespace, key))
    }

    fn set<'a>(&'a self, at: Scope<'a>, key: String, value: Vec<u8>, ttl: Duration) -> Written<'a> {
        LocalKv::set(self, at.namespace, key, value, ttl);
        ready(Ok(()))
    }

    fn delete<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, ()> {
        LocalKv::delete(self, at.namespace, key);
        ready(())
    }
}

/// The kv values of the entries with `store = "redis"`.
pub struct RedisKv(pub Arc<RedisStore>);

impl KvBackend for RedisKv {
    fn get<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let found = at.io.around(self.0.get(Kind::Kv, at.namespace, &key));
            found.await.ok().flatten()
        })
    }

    fn set<'a>(&'a self, at: Scope<'a>, key: String, value: Vec<u8>, ttl: Duration) -> Written<'a> {
        Box::pin(async move {
            let ttl = ttl.min(KV_MAX_TTL);
            let set = self.0.set(Kind::Kv, at.namespace, &key, &value, ttl);
            at.io.around(set).await.map_err(|e| unavailable(&e))
        })
    }

    fn delete<'a>(&'a self, at: Scope<'a>, key: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = at
                .io
                .around(self.0.delete(Kind::Kv, at.namespace, &key))
                .await;
        })
    }
}

/// What the `kv` host functions serve from, borrowed for one call.
pub type KvView<'a> = StoreView<'a, dyn KvBackend>;

/// The `kv` interface's data in the linker: a [`KvView`].
pub struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

impl kv::Host for KvView<'_> {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.backend.get(self.at, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), StoreError> {
        // The same check as the SDK's native kv.
        if let Some(refused) = plugin_shared::store::kv_refusal(&key, value.len(), ttl_ms) {
            return Err(store_error(refused));
        }
        let ttl = Duration::from_millis(ttl_ms);
        self.backend.set(self.at, key, value, ttl).await
    }

    async fn delete(&mut self, key: String) {
        self.backend.delete(self.at, key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_entries_expire_and_are_namespaced() {
        let kv = LocalKv::new();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert!(kv.set(&a, "k".into(), b"v".to_vec(), Duration::from_secs(60)));
        assert_eq!(kv.get(&a, "k".into()), Some(b"v".to_vec()));
        assert_eq!(kv.get(&b, "k".into()), None);
        assert!(kv.set(&a, "short".into(), b"v".to_vec(), Duration::ZERO));
        assert_eq!(kv.get(&a, "short".into()), None);
        assert!(!kv.set(
            &a,
            "x".repeat(KV_MAX_KEY + 1),
            Vec::new(),
            Duration::from_secs(1)
        ));
        kv.delete(&a, "k".into());
        assert_eq!(kv.get(&a, "k".into()), None);
    }
}

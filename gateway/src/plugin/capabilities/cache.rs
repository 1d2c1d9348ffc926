//! `gateway:plugin/cache`: whole responses, private to a plugin and shared by
//! its instances, with request collapsing.
//!
//! [`CacheBackend`] is where entries live: [`LocalCache`], this process's
//! [`ResponseCache`], or [`RedisCache`], shared by every gateway on the same
//! Redis. Collapsing is this process's whatever the backend.
//!
//! Entries are weighed in bytes against one capacity for the process (least
//! recently used out first) and expire on their own lifetime. A key missed by
//! one request is "being filled" until that request stores or releases it or
//! its lease (the wait it asked for) ends; requests missing the same key
//! meanwhile wait for the fill instead of going upstream too.
//!
//! Each fill has an id, kept in the filling request's context: a request whose
//! lease ran out (and whose key another request now fills) ends only its own
//! fill when it finally stores or releases, never its successor's.
//!
//! The host functions run on a [`CacheView`]: the entry's backend and
//! namespace, the instance's `IoWaits`, the process's cache and the fills
//! the request owns.

use super::backend::{BoxFuture, Scope, StoreView, Written, ready, store_error, unavailable};
use super::redis::{Kind, Match, RedisStore};
use crate::metrics::{Metrics, metrics};
use crate::plugin::bindings::gateway::plugin::cache;
use crate::plugin::bindings::gateway::plugin::types::StoreError;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wasmtime::component::HasData;

pub use plugin_shared::limits::{CACHE_MAX_KEY as MAX_KEY, CACHE_MAX_TTL as MAX_TTL};
/// Fills tracked before expired leases are swept.
const SWEEP_FILLS_AT: usize = 10_000;

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Status code.
    pub status: u16,
    /// Headers in the contract's wire encoding.
    pub headers: Bytes,
    /// The body.
    pub body: Bytes,
    /// Unix milliseconds when stored.
    pub stored_at_ms: u64,
    /// Request headers the response varies on.
    pub vary: Vec<String>,
}

impl Entry {
    /// Bytes the entry holds.
    pub fn size(&self) -> usize {
        self.headers.len() + self.body.len() + self.vary.iter().map(|v| v.len() + 8).sum::<usize>()
    }

    /// The entry as bytes, for Redis: status (u16), stored-at (u64), vary
    /// names and headers (each a u32 length and the bytes), then the body;
    /// integers little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 32);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.stored_at_ms.to_le_bytes());
        let count = u32::try_from(self.vary.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for name in &self.vary {
            push_chunk(&mut out, name.as_bytes());
        }
        push_chunk(&mut out, &self.headers);
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads what [`Entry::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut reader = Reader(bytes);
        let status = u16::from_le_bytes(reader.take(2)?.try_into().ok()?);
        let stored_at_ms = u64::from_le_bytes(reader.take(8)?.try_into().ok()?);
        let count = u32::from_le_bytes(reader.take(4)?.try_into().ok()?);
        let mut vary = Vec::new();
        for _ in 0..count {
            vary.push(String::from_utf8(reader.chunk()?.to_vec()).ok()?);
        }
        let headers = Bytes::copy_from_slice(reader.chunk()?);
        Some(Entry {
            status,
            headers,
            body: Bytes::copy_from_slice(reader.0),
            stored_at_ms,
            vary,
        })
    }
}

fn push_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(len).ok()?)
    }
}

type Key = (Arc<str>, String);

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    ttl: Duration,
}

struct Lifetime;

impl moka::Expiry<Key, Stored> for Lifetime {
    fn expire_after_create(&self, _: &Key, value: &Stored, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        value: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A key being filled: its lease and the channel its waiters watch (closed
/// when the fill ends).
struct Fill {
    id: u64,
    until: Instant,
    done: watch::Sender<()>,
}

/// What a lookup found out about filling a missed key.
pub enum Miss {
    /// The caller fills it; the id ends this fill and no other.
    Fill(u64),
    /// Someone else is filling it: wait on this until it ends.
    Wait(watch::Receiver<()>, Instant),
}

/// Responses held in this process, and the fills in progress.
pub struct ResponseCache {
    entries: moka::sync::Cache<Key, Stored>,
    fills: Mutex<HashMap<Key, Fill>>,
    next_fill: AtomicU64,
    capacity: u64,
    max_entry: usize,
}

impl ResponseCache {
    /// A cache of `capacity` bytes whose entries are at most `max_entry`.
    pub fn new(capacity: u64, max_entry: usize) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &Key, value: &Stored| {
                u32::try_from(key.1.len() + value.entry.size() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .build();
        Self {
            entries,
            fills: Mutex::new(HashMap::new()),
            next_fill: AtomicU64::new(1),
            capacity,
            max_entry,
        }
    }

    /// Bytes held at most.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Largest entry accepted.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    /// The live entry under `key`.
    pub fn get(&self, namespace: &Arc<str>, key: &str) -> Option<Arc<Entry>> {
        self.entries
            .get(&(namespace.clone(), key.to_string()))
            .map(|stored| stored.entry)
    }

    /// Stores `entry` for `ttl`; `false` when over the caps.
    pub fn put(&self, namespace: &Arc<str>, key: &str, entry: Entry, ttl: Duration) -> bool {
        if !acceptable(key, &entry, self.max_entry) {
            return false;
        }
        self.entries.insert(
            (namespace.clone(), key.to_string()),
            Stored {
                entry: Arc::new(entry),
                ttl: ttl.min(MAX_TTL),
            },
        );
        true
    }

    /// Removes `key` and its variants (keys starting with `key` and a
    /// newline) in `namespace`.
    pub fn purge(&self, namespace: &Arc<str>, key: &str) {
        self.entries
            .invalidate(&(namespace.clone(), key.to_string()));
        let variants = format!("{key}\n");
        let namespace = namespace.clone();
        // Only fails when closures are unsupported, which the builder enables.
        let _ = self
            .entries
            .invalidate_entries_if(move |(ns, k), _| *ns == namespace && k.starts_with(&variants));
    }

    /// Removes `key` in every namespace.
    pub fn purge_exact(&self, key: &str) {
        let key = key.to_string();
        let _ = self
            .entries
            .invalidate_entries_if(move |(_, k), _| *k == key);
    }

    /// Removes every key starting with `prefix`, in `namespace` or in all.
    pub fn purge_prefix(&self, namespace: Option<Arc<str>>, prefix: &str) {
        let prefix = prefix.to_string();
        let _ = self.entries.invalidate_entries_if(move |(ns, k), _| {
            namespace.as_ref().is_none_or(|n| n == ns) && k.starts_with(&prefix)
        });
    }

    /// Entries and bytes held (approximate until pending work runs).
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    /// Registers a miss of `key`: the caller fills it for up to `lease`,
    /// unless another request already does.
    pub fn miss(&self, namespace: &Arc<str>, key: &str, lease: Duration) -> Miss {
        let now = Instant::now();
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        let id = (namespace.clone(), key.to_string());
        if let Some(fill) = fills.get(&id)
            && fill.until > now
        {
            return Miss::Wait(fill.done.subscribe(), fill.until);
        }
        if fills.len() >= SWEEP_FILLS_AT {
            fills.retain(|_, fill| fill.until > now);
        }
        let (done, _) = watch::channel(());
        let fill = self.next_fill.fetch_add(1, Ordering::Relaxed);
        fills.insert(
            id,
            Fill {
                id: fill,
                until: now + lease,
                done,
            },
        );
        Miss::Fill(fill)
    }

    /// Ends fill `fill` of `key`, waking its waiters; a later fill of the key
    /// (after this one's lease ran out) is left alone.
    pub fn end_fill(&self, namespace: &Arc<str>, key: &str, fill: u64) {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        let id = (namespace.clone(), key.to_string());
        if fills.get(&id).is_some_and(|current| current.id == fill) {
            fills.remove(&id);
        }
    }
}

/// Whether `entry` under `key` fits the caps.
pub fn acceptable(key: &str, entry: &Entry, max_entry: usize) -> bool {
    key.len() <= MAX_KEY && entry.size() <= max_entry
}

/// Why `entry` cannot be stored under `key` for `ttl`, if it cannot: the
/// check the SDK's native cache runs too.
pub fn refusal(key: &str, entry: &Entry, max_entry: usize, ttl: Duration) -> Option<StoreError> {
    let ttl_ms = plugin_shared::limits::millis(ttl);
    plugin_shared::store::cache_refusal(key, entry.size(), max_entry, ttl_ms).map(store_error)
}

/// Waits until the fill a [`Miss::Wait`] names ends or its lease runs out.
pub async fn wait_for_fill(mut done: watch::Receiver<()>, until: Instant) {
    let deadline = tokio::time::Instant::from_std(until);
    // The sender is dropped when the fill ends: `changed` then returns.
    let _ = tokio::time::timeout_at(deadline, done.changed()).await;
}

/// Where one entry's cached responses live. Collapsing is not theirs: it is
/// always this process's (see [`ResponseCache::miss`]).
pub trait CacheBackend: Send + Sync {
    /// The live entry under `key` in `at`'s namespace.
    fn get<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, Option<Arc<Entry>>>;

    /// Stores `entry` under `key` for `ttl` (checked against the caps already).
    fn put<'a>(&'a self, at: Scope<'a>, key: &'a str, entry: Entry, ttl: Duration) -> Written<'a>;

    /// Removes `key` and its variants (`key` and a newline, then anything).
    fn purge<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, ()>;
}

/// The process's response cache, made when first used: the first config to
/// load sizes it (64 MiB with 8 MiB entries unless sized first).
#[derive(Default)]
pub struct ProcessCache(OnceLock<ResponseCache>);

impl ProcessCache {
    /// Sizes the cache. The first config to load decides; `false` when a
    /// later one asks for another size (applied at restart).
    pub fn size(&self, capacity: u64, max_entry: usize) -> bool {
        let cache = self
            .0
            .get_or_init(|| ResponseCache::new(capacity, max_entry));
        cache.capacity() == capacity && cache.max_entry() == max_entry
    }

    /// The cache.
    pub fn get(&self) -> &ResponseCache {
        self.0.get_or_init(|| ResponseCache::new(64 << 20, 8 << 20))
    }
}

/// The process's response cache, as a backend.
pub struct LocalCache(pub Arc<ProcessCache>);

impl CacheBackend for LocalCache {
    fn get<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, Option<Arc<Entry>>> {
        ready(self.0.get().get(at.namespace, key))
    }

    fn put<'a>(&'a self, at: Scope<'a>, key: &'a str, entry: Entry, ttl: Duration) -> Written<'a> {
        self.0.get().put(at.namespace, key, entry, ttl);
        ready(Ok(()))
    }

    fn purge<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, ()> {
        self.0.get().purge(at.namespace, key);
        ready(())
    }
}

/// The cached responses of the entries with `store = "redis"`, encoded with
/// [`Entry::encode`].
pub struct RedisCache(pub Arc<RedisStore>);

impl CacheBackend for RedisCache {
    fn get<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, Option<Arc<Entry>>> {
        Box::pin(async move {
            let found = at.io.around(self.0.get(Kind::Cache, at.namespace, key));
            Some(Arc::new(Entry::decode(&found.await.ok().flatten()?)?))
        })
    }

    fn put<'a>(&'a self, at: Scope<'a>, key: &'a str, entry: Entry, ttl: Duration) -> Written<'a> {
        Box::pin(async move {
            let encoded = entry.encode();
            let set = self.0.set(Kind::Cache, at.namespace, key, &encoded, ttl);
            at.io.around(set).await.map_err(|e| unavailable(&e))
        })
    }

    fn purge<'a>(&'a self, at: Scope<'a>, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(at.io.around(async move {
            let _ = self.0.delete(Kind::Cache, at.namespace, key).await;
            let variants = format!("{key}\n");
            let purge = self
                .0
                .purge(Kind::Cache, Some(at.namespace), &variants, Match::Prefix);
            let _ = purge.await;
        }))
    }
}

/// The cache fills one request owns (namespace, key, fill id), from a missed
/// `lookup` in the request phase to `put` or `release` in the response
/// phase, whichever instance serves it. Kept in the request's context.
#[derive(Debug, Default)]
pub struct Fills(Vec<(Arc<str>, String, u64)>);

impl Fills {
    /// Notes that this request fills `key` (fill id `fill`).
    pub fn start(&mut self, namespace: &Arc<str>, key: &str, fill: u64) {
        // One lookup per key and request in practice; the cap only bounds a
        // plugin that misses in a loop (its older fills then end by lease).
        if self.0.len() < plugin_shared::limits::CONTEXT_MAX_ENTRIES {
            self.0.push((namespace.clone(), key.to_string(), fill));
        }
    }

    /// The id of this request's fill of `key`, forgotten here.
    pub fn take(&mut self, namespace: &Arc<str>, key: &str) -> Option<u64> {
        let at = self
            .0
            .iter()
            .position(|(ns, k, _)| ns == namespace && k == key)?;
        Some(self.0.swap_remove(at).2)
    }
}

/// What the `cache` host functions serve from, borrowed from an instance's
/// state for one call.
pub struct CacheView<'a> {
    /// The entry's backend, namespace and the instance's `IoWaits`.
    pub store: StoreView<'a, dyn CacheBackend>,
    /// The process's cache, where collapsing happens whatever the backend.
    pub local: &'a ResponseCache,
    /// The fills the current request owns (its context's).
    pub fills: &'a mut Fills,
}

/// The `cache` interface's data in the linker: a [`CacheView`].
pub struct HasCache;

impl HasData for HasCache {
    type Data<'a> = CacheView<'a>;
}

/// The cached entry under `key`, from the entry's backend.
async fn cached(store: &StoreView<'_, dyn CacheBackend>, key: &str) -> Option<cache::Entry> {
    let entry = store.backend.get(store.at, key).await?;
    Some(cache::Entry {
        status: entry.status,
        headers: entry.headers.to_vec(),
        body: entry.body.to_vec(),
        stored_at_ms: entry.stored_at_ms,
        vary: entry.vary.clone(),
    })
}

impl CacheView<'_> {
    /// Ends this request's fill of `key`, if it holds one.
    fn end_fill(&mut self, key: &str) {
        let namespace = self.store.at.namespace;
        if let Some(fill) = self.fills.take(namespace, key) {
            self.local.end_fill(namespace, key, fill);
        }
    }
}

impl cache::Host for CacheView<'_> {
    async fn lookup(&mut self, key: String, wait_ms: u32) -> Option<cache::Entry> {
        let lookups = &metrics().cache_lookups;
        if let Some(found) = cached(&self.store, &key).await {
            Metrics::count(lookups, "hit");
            return Some(found);
        }
        let wait =
            Duration::from_millis(u64::from(wait_ms)).min(plugin_shared::limits::CACHE_MAX_WAIT);
        if wait.is_zero() {
            Metrics::count(lookups, "miss");
            return None;
        }
        let namespace = self.store.at.namespace;
        match self.local.miss(namespace, &key, wait) {
            Miss::Fill(fill) => {
                self.fills.start(namespace, &key, fill);
                Metrics::count(lookups, "miss");
                None
            }
            Miss::Wait(done, until) => {
                self.store.at.io.around(wait_for_fill(done, until)).await;
                let found = cached(&self.store, &key).await;
                let outcome = if found.is_some() {
                    "collapsed_hit"
                } else {
                    "miss"
                };
                Metrics::count(lookups, outcome);
                found
            }
        }
    }

    async fn put(
        &mut self,
        key: String,
        entry: cache::Entry,
        ttl_ms: u64,
    ) -> Result<(), StoreError> {
        let entry = Entry {
            status: entry.status,
            headers: entry.headers.into(),
            body: entry.body.into(),
            stored_at_ms: entry.stored_at_ms,
            vary: entry.vary,
        };
        let ttl = Duration::from_millis(ttl_ms).min(MAX_TTL);
        let stored = match refusal(&key, &entry, self.local.max_entry(), ttl) {
            Some(refused) => Err(refused),
            None => {
                self.store
                    .backend
                    .put(self.store.at, &key, entry, ttl)
                    .await
            }
        };
        self.end_fill(&key);
        if stored.is_ok() {
            metrics().cache_stores.inc();
        }
        stored
    }

    fn release(&mut self, key: String) {
        self.end_fill(&key);
    }

    async fn purge(&mut self, key: String) {
        self.store.backend.purge(self.store.at, &key).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Entry {
        Entry {
            status: 200,
            headers: Bytes::from_static(b"\x01\x00\x00\x00\x01\x00\x00\x00ab"),
            body: Bytes::from(body.to_string()),
            stored_at_ms: 1_700_000_000_000,
            vary: vec!["accept".into(), "accept-language".into()],
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let e = entry("hello");
        assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
        let empty = Entry {
            vary: Vec::new(),
            body: Bytes::new(),
            ..e
        };
        assert_eq!(Entry::decode(&empty.encode()), Some(empty));
        assert_eq!(Entry::decode(b"\x01"), None);
        assert_eq!(
            Entry::decode(b"\xc8\x00\0\0\0\0\0\0\0\0\xff\xff\xff\xff"),
            None
        );
    }

    #[test]
    fn namespaces_caps_and_purges() {
        let cache = ResponseCache::new(1 << 20, 1000);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        assert!(cache.put(&a, "GET x/1", entry("one"), Duration::from_secs(60)));
        assert!(cache.put(&a, "GET x/1\nen", entry("en"), Duration::from_secs(60)));
        assert!(cache.put(&a, "GET x/2", entry("two"), Duration::from_secs(60)));
        assert!(cache.put(&b, "GET x/1", entry("b"), Duration::from_secs(60)));
        assert!(!cache.put(
            &a,
            &"k".repeat(MAX_KEY + 1),
            entry(""),
            Duration::from_secs(1)
        ));
        assert!(!cache.put(&a, "big", entry(&"x".repeat(1000)), Duration::from_secs(1)));
        assert_eq!(
            cache.get(&a, "GET x/1").map(|e| e.body.clone()),
            Some(Bytes::from("one"))
        );
        cache.purge(&a, "GET x/1");
        cache.usage();
        assert!(cache.get(&a, "GET x/1").is_none());
        assert!(cache.get(&a, "GET x/1\nen").is_none());
        assert!(cache.get(&a, "GET x/2").is_some());
        assert!(cache.get(&b, "GET x/1").is_some());
        cache.purge_prefix(None, "GET x/");
        cache.usage();
        assert!(cache.get(&a, "GET x/2").is_none());
        assert!(cache.get(&b, "GET x/1").is_none());
    }

    #[test]
    fn entries_expire_on_their_own_lifetime() {
        let cache = ResponseCache::new(1 << 20, 1000);
        let a: Arc<str> = Arc::from("a");
        cache.put(&a, "short", entry("s"), Duration::from_millis(30));
        cache.put(&a, "long", entry("l"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&a, "short").is_none());
        assert!(cache.get(&a, "long").is_some());
    }

    #[tokio::test]
    async fn one_request_fills_and_the_others_wait_for_it() {
        let cache = Arc::new(ResponseCache::new(1 << 20, 1000));
        let a: Arc<str> = Arc::from("a");
        let Miss::Fill(fill) = cache.miss(&a, "k", Duration::from_secs(5)) else {
            panic!("the first miss should fill");
        };
        let Miss::Wait(done, until) = cache.miss(&a, "k", Duration::from_secs(5)) else {
            panic!("a second miss should wait");
        };
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            wait_for_fill(done, until).await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        cache.put(&a, "k", entry("v"), Duration::from_secs(60));
        cache.end_fill(&a, "k", fill);
        let waited = waiter.await.unwrap_or(Duration::MAX);
        assert!(
            waited < Duration::from_secs(4),
            "woken by the fill, not the lease"
        );
        // The fill is over: the next miss fills again.
        assert!(matches!(
            cache.miss(&a, "k", Duration::from_secs(5)),
            Miss::Fill(_)
        ));
    }

    #[tokio::test]
    async fn an_abandoned_fill_ends_with_its_lease() {
        let cache = ResponseCache::new(1 << 20, 1000);
        let a: Arc<str> = Arc::from("a");
        assert!(matches!(
            cache.miss(&a, "k", Duration::from_millis(40)),
            Miss::Fill(_)
        ));
        let Miss::Wait(done, until) = cache.miss(&a, "k", Duration::from_millis(40)) else {
            panic!("a second miss should wait");
        };
        let started = Instant::now();
        wait_for_fill(done, until).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(matches!(
            cache.miss(&a, "k", Duration::from_millis(40)),
            Miss::Fill(_)
        ));
    }

    #[tokio::test]
    async fn a_late_filler_ends_only_its_own_fill() {
        let cache = ResponseCache::new(1 << 20, 1000);
        let a: Arc<str> = Arc::from("a");
        let Miss::Fill(late) = cache.miss(&a, "k", Duration::from_millis(20)) else {
            panic!("the first miss should fill");
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The first lease ran out: the next miss takes the fill over.
        let Miss::Fill(current) = cache.miss(&a, "k", Duration::from_secs(5)) else {
            panic!("an expired fill should be taken over");
        };
        assert_ne!(late, current);
        // The first filler finishes late: the current fill must go on, so
        // requests arriving now still wait for it instead of going upstream.
        cache.end_fill(&a, "k", late);
        assert!(matches!(
            cache.miss(&a, "k", Duration::from_secs(5)),
            Miss::Wait(..)
        ));
        cache.end_fill(&a, "k", current);
        assert!(matches!(
            cache.miss(&a, "k", Duration::from_secs(5)),
            Miss::Fill(_)
        ));
    }
}

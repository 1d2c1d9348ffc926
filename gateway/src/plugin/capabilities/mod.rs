//! The capabilities: the host side of the interfaces a pipeline entry must be
//! granted, one module per WIT interface (`kv`, `cache`, `rate_limit`,
//! `http_client`, `crypto`, `consumers`). Each implements the bindgen `Host`
//! trait of its interface on a small view of its own (`KvView`, `CacheView`,
//! ...: borrows of what that interface serves from, made from the instance's
//! state for one call) and names that view to the linker with a `HasData`
//! marker (`HasKv`, `HasCache`, ...). None of them knows the instance's
//! state (`host` makes the views) or this module: what the store-backed ones
//! share is in `backend`, a leaf.
//!
//! `kv`, `rate-limit` and `cache` keep state in this process or on Redis, as
//! the entry's `store` says. Each of those modules names its state with one
//! small backend trait (`KvBackend`, `LimitBackend`, `CacheBackend`) with a
//! local and a Redis implementation (`redis` holds the connections they
//! share); [`Backends`] picks the implementations once per pipeline entry, so
//! no host function asks where its state lives. What a counter does when
//! Redis cannot answer (the entry's `store_failure`) is one wrapper, in
//! `failure`.
//!
//! [`Services`] is the state that lives as long as the process, not one
//! config (the outbound client and its shared documents, local kv, counters
//! and responses), so a reload keeps connections, documents and entries.
//!
//! Time a call spends waiting on the network (an outbound request, a Redis
//! round trip) does not count against its CPU deadline (see `watchdog`): the
//! backends that wait mark it on the instance's `IoWaits`.

pub mod allowed_hosts;
pub mod backend;
pub mod cache;
pub mod consumers;
pub mod crypto;
mod failure;
pub mod http_client;
pub mod kv;
pub mod rate_limit;
pub mod redis;

use crate::config::StoreFailure;
use cache::{CacheBackend, LocalCache, ProcessCache, RedisCache, ResponseCache};
use kv::{KvBackend, LocalKv, RedisKv};
use rate_limit::{LimitBackend, LocalLimits, RedisLimits};
use redis::RedisStore;
use std::sync::Arc;

/// Where an entry's `kv`, `rate-limit` and `cache` state lives.
#[derive(Clone, Default)]
pub enum Store {
    /// In this process.
    #[default]
    Local,
    /// On Redis, shared by every gateway using it.
    Redis {
        /// The connections.
        redis: Arc<RedisStore>,
        /// What a rate-limit check does when Redis cannot answer.
        on_failure: StoreFailure,
    },
}

/// The backends one pipeline entry's `kv`, `rate-limit` and `cache` calls
/// go to, chosen once from its [`Store`].
#[derive(Clone)]
pub struct Backends {
    pub(super) kv: Arc<dyn KvBackend>,
    pub(super) limits: Arc<dyn LimitBackend>,
    pub(super) cache: Arc<dyn CacheBackend>,
}

impl Backends {
    /// The backends `store` names; local ones are `services`'.
    pub fn new(store: &Store, services: &Arc<Services>) -> Self {
        match store {
            Store::Local => Self::local(services),
            Store::Redis { redis, on_failure } => Backends {
                kv: Arc::new(RedisKv(redis.clone())),
                limits: Arc::new(failure::OnFailure::new(
                    RedisLimits(redis.clone()),
                    *on_failure,
                    services.limits.clone(),
                )),
                cache: Arc::new(RedisCache(redis.clone())),
            },
        }
    }

    /// The backends in this process.
    pub fn local(services: &Arc<Services>) -> Self {
        Backends {
            kv: Arc::new(services.kv.clone()),
            limits: services.limits.clone(),
            cache: Arc::new(LocalCache(services.responses.clone())),
        }
    }
}

/// The process-wide state behind the capabilities.
pub struct Services {
    pub(super) outbound: http_client::Outbound,
    kv: LocalKv,
    limits: Arc<LocalLimits>,
    responses: Arc<ProcessCache>,
}

impl Services {
    /// The outbound client (webpki roots, HTTP/1.1, no redirects) and the
    /// local stores.
    pub fn new() -> Arc<Self> {
        Arc::new(Services {
            outbound: http_client::Outbound::new(),
            kv: LocalKv::new(),
            limits: Arc::new(LocalLimits::new()),
            responses: Arc::default(),
        })
    }

    /// Sizes the process's response cache. The first config to load decides;
    /// `false` when a later one asks for another size (applied at restart).
    pub fn size_response_cache(&self, capacity: u64, max_entry: usize) -> bool {
        self.responses.size(capacity, max_entry)
    }

    /// The process's response cache (64 MiB with 8 MiB entries unless sized
    /// first).
    pub fn response_cache(&self) -> &ResponseCache {
        self.responses.get()
    }
}

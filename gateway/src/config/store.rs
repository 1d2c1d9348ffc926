//! `[redis]` and `[cache]`, and the pipeline-entry keys that choose where a
//! plugin's shared state lives (`store`, `store_failure`).

use super::identity::Secret;
use super::units::{ByteSize, Duration};
use serde::Deserialize;
use toml::Spanned;

/// `[redis]`: the Redis server several gateways share counters and cached
/// responses through.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS is not supported yet).
    pub url: Spanned<String>,
    /// ACL user name, if any.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, from the environment or a file preferably.
    #[serde(default)]
    pub password: Option<Spanned<Secret>>,
    /// Longest wait for one Redis answer, connecting included; past it the
    /// entry's `store_failure` applies.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
    /// Multiplexed connections to keep open; default one per worker thread,
    /// each used by its own worker.
    #[serde(default)]
    pub connections: Option<Spanned<usize>>,
    /// Prefix of every key the gateway writes, to share a Redis database.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_redis_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(250))
}

fn default_key_prefix() -> String {
    "gateway:".to_string()
}

/// `[admin]`: the operator's listener (health, metrics, cache purge).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port`; keep it on loopback or a private network.
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<String>,
    /// A bearer token every request but `/healthz` must present.
    #[serde(default)]
    pub token: Option<Spanned<Secret>>,
}

fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:9901".to_string())
}

/// `[cache]`: the in-process response cache behind the `cache` capability.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of responses held in this process (keys, headers and bodies),
    /// least recently used out first. Read at start only.
    #[serde(default = "default_cache_capacity")]
    pub capacity: ByteSize,
    /// Largest single entry, here and on Redis.
    #[serde(default = "default_max_entry")]
    pub max_entry: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: default_cache_capacity(),
            max_entry: default_max_entry(),
        }
    }
}

fn default_cache_capacity() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_max_entry() -> ByteSize {
    ByteSize(8 << 20)
}

/// Where an entry's `kv`, `rate-limit` and `cache` state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process.
    #[default]
    Local,
    /// On `[redis]`, shared by every gateway using it.
    Redis,
}

/// What a rate-limit check does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFailure {
    /// Let the request through (fail open).
    #[default]
    Open,
    /// Refuse it as over the limit (fail closed).
    Closed,
    /// Count it on this process's own counters until Redis is back.
    Local,
}

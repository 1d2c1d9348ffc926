//! The gateway: a hyper server that routes each request to a route, runs the
//! route's pipeline of sandboxed WebAssembly plugins, and proxies to an upstream
//! or lets a plugin answer.
//!
//! Modules follow the request: [`server`] accepts, [`handler`] drives one
//! request, [`router`] matches it, [`pipeline`] runs the plugins hosted by
//! [`plugin`], and [`proxy`] talks to upstreams. [`config`] reads the TOML and
//! [`runtime`] turns it into the immutable snapshot requests run on.

pub mod admin;
pub mod apis;
pub mod body;
pub mod builtin;
pub mod compress;
pub mod config;
pub mod error;
pub mod handler;
#[cfg(test)]
pub(crate) mod harness;
pub mod identity;
pub mod limit;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod plugin;
pub mod proxy;
pub mod reload;
pub mod request_head;
pub mod route_match;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod tls;
pub mod worker;

use config::{ConfigError, Source};
use std::path::Path;

/// Reads, parses and builds a config: everything `gateway check` does.
pub async fn load(
    path: &Path,
    engine: &plugin::PluginEngine,
) -> Result<(config::Config, runtime::Runtime), ConfigError> {
    let source = Source::read(path)?;
    let config = source.parse()?;
    let runtime = build(&source, &config, engine, None).await?;
    Ok((config, runtime))
}

/// Validates a parsed config as a whole and builds its runtime, reusing what
/// `previous` has that did not change (upstream connection pools).
pub async fn build(
    source: &Source,
    config: &config::Config,
    engine: &plugin::PluginEngine,
    previous: Option<&runtime::Runtime>,
) -> Result<runtime::Runtime, ConfigError> {
    runtime::Runtime::build(source, config, engine, previous).await
}

// mimalloc for the binary and everything else linking this crate (the
// micro-benchmark measures what the binary runs): per-thread free lists suit
// workers that each allocate and free a request's buffers on one thread, where
// glibc's malloc cost several percent of a proxied request's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

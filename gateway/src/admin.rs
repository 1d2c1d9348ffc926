//! The admin listener: a separate HTTP/1.1 port for operators, on loopback by
//! default, with an optional bearer token.
//!
//! - `GET /healthz`: liveness, and `GET /readyz`: readiness (503 while
//!   draining at shutdown); neither needs the token.
//! - `GET /status`: the serving config's version, load time, last reload
//!   error, routes and their pipelines (plugins, hashes, pools, counters).
//! - `POST /reload`: reloads the config now.
//! - `GET /metrics`: Prometheus metrics (OpenMetrics text).
//! - `POST /cache/purge?key=KEY` or `?prefix=PREFIX`: removes cached
//!   responses (a key with its `Vary` variants, or every key starting with the
//!   prefix) from this process and, when `[redis]` is configured, from Redis.

use crate::metrics::metrics;
use crate::plugin::{Match, Services, StateKind};
use crate::reload::Reloader;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Idle instances by route and plugin, for the metrics. An inherited entry
/// (`[[plugins]]` or an API's) has one pool, whichever routes run it: it is
/// counted once, under the route `*`.
fn pool_sizes(runtime: &Runtime) -> Vec<(String, String, usize)> {
    let mut inherited: Vec<&Arc<crate::pipeline::Entry>> = Vec::new();
    let mut pools = Vec::new();
    for route in &runtime.routes {
        for entry in route.pipeline.entries() {
            let label = match entry.level {
                crate::pipeline::Level::Global | crate::pipeline::Level::Api => {
                    if inherited.iter().any(|seen| Arc::ptr_eq(seen, entry)) {
                        continue;
                    }
                    inherited.push(entry);
                    crate::runtime::INHERITED_ROUTE_LABEL.to_string()
                }
                _ => route.name.clone(),
            };
            pools.push((label, entry.reference.clone(), entry.pool.idle()));
        }
    }
    pools
}

/// What the admin handlers read.
pub struct Admin {
    /// The current runtime (for its Redis connections).
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// The process-wide services (the local cache).
    pub services: Arc<Services>,
    /// Reloads the config.
    pub reloader: Arc<Reloader>,
    /// Set once shutdown began: `/readyz` then answers 503.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The bearer token, if one is required.
    pub token: Option<Vec<u8>>,
}

impl Admin {
    /// Serves admin requests on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(err) = served {
                    tracing::debug!(%err, "admin connection ended");
                }
            });
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path == "/healthz" {
            return json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        if path == "/readyz" {
            if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
                return json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "status": "draining" }),
                );
            }
            let version = self.reloader.status().version;
            return json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ready", "version": version }),
            );
        }
        if !self.authorized(&request) {
            return json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({ "error": "a valid admin token is required" }),
            );
        }
        match (request.method(), path) {
            (&Method::GET, "/metrics") => {
                let usage = self.services.response_cache().usage();
                let runtime = self.runtime.load_full();
                let pools = pool_sizes(&runtime);
                Response::builder()
                    .header(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(metrics().render(usage, &pools))))
                    .unwrap_or_default()
            }
            (&Method::POST, "/cache/purge") => {
                self.purge(request.uri().query().unwrap_or("")).await
            }
            (&Method::GET, "/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET, "/upstreams") => {
                let runtime = self.runtime.load_full();
                let mut upstreams: Vec<_> = runtime.upstreams.values().collect();
                upstreams.sort_by(|a, b| a.name.cmp(&b.name));
                let states: Vec<serde_json::Value> =
                    upstreams.iter().map(|upstream| upstream.state()).collect();
                json(StatusCode::OK, &serde_json::json!({ "upstreams": states }))
            }
            (&Method::POST, "/reload") => match self.reloader.reload("admin API", true).await {
                Ok(version) => json(StatusCode::OK, &serde_json::json!({ "version": version })),
                Err(error) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({ "error": error, "status": self.reloader.status() }),
                ),
            },
            (_, "/metrics" | "/cache/purge" | "/status" | "/upstreams" | "/reload") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({ "error": "method not allowed" }),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": "no such admin endpoint" }),
            ),
        }
    }

    /// The serving config: reload status, routes and their pipelines.
    fn status(&self) -> serde_json::Value {
        let runtime = self.runtime.load_full();
        let routes: Vec<serde_json::Value> = runtime
            .routes
            .iter()
            .map(|route| {
                serde_json::json!({
                    "name": route.name,
                    "upstream": route.upstream.as_ref().map(|u| u.name.clone()),
                    "upstreams": route.upstreams.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
                    "plugins": route.pipeline.describe(),
                    "switched_off": route.switched_off,
                })
            })
            .collect();
        serde_json::json!({
            "reload": self.reloader.status(),
            "routes": routes,
        })
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        plugin_shared::crypto::native::constant_time_eq(presented.as_bytes(), token)
    }

    async fn purge(&self, query: &str) -> Response<Full<Bytes>> {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let find = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (prefix, exact) = match (find("key"), find("prefix")) {
            (Some(key), None) if !key.is_empty() => (format!("{key}\n"), Some(key)),
            (None, Some(prefix)) if !prefix.is_empty() => (prefix, None),
            _ => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "give exactly one non-empty `key` or `prefix` query parameter" }),
                );
            }
        };
        let cache = self.services.response_cache();
        if let Some(key) = &exact {
            cache.purge_exact(key);
        }
        cache.purge_prefix(None, &prefix);
        let runtime = self.runtime.load_full();
        let redis_removed = match &runtime.redis {
            Some(redis) => {
                let mut removed = redis
                    .purge(StateKind::Cache, None, &prefix, Match::Prefix)
                    .await;
                if let (Some(key), Ok(n)) = (&exact, &removed) {
                    removed = redis
                        .purge(StateKind::Cache, None, key, Match::Exact)
                        .await
                        .map(|m| n + m);
                }
                match removed {
                    Ok(n) => serde_json::json!(n),
                    Err(err) => {
                        return json(
                            StatusCode::BAD_GATEWAY,
                            &serde_json::json!({ "error": format!("purged locally, but Redis failed: {err}") }),
                        );
                    }
                }
            }
            None => serde_json::Value::Null,
        };
        tracing::info!(
            key = exact.as_deref(),
            prefix,
            "cache purged by the admin API"
        );
        json(
            StatusCode::OK,
            &serde_json::json!({ "purged": true, "redis_keys_removed": redis_removed }),
        )
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap_or_default()
}

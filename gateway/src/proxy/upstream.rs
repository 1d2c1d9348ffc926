//! One named upstream: its targets, chosen round robin, and its connection pool.

use crate::body::{self, Body};
use crate::config::{Source, UpstreamConfig};
use crate::error::RequestError;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use toml::Spanned;

/// A named upstream service.
pub struct Upstream {
    /// The name routes refer to it by.
    pub name: String,
    /// Each target's authority, and the same as a `Host` header value.
    targets: Vec<(Authority, http::HeaderValue)>,
    next: AtomicUsize,
    /// One pool per worker thread, so a pooled connection is always driven by
    /// the thread that uses it.
    clients: Vec<Client<HttpConnector, Body>>,
    timeout: Duration,
    config: UpstreamConfig,
    /// Latency to the response head, in the metrics.
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl Upstream {
    /// The settings it was built from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Builds the upstream and its (lazily connecting) pool.
    pub fn new(
        name: &str,
        config: &Spanned<UpstreamConfig>,
        source: &Source,
    ) -> Result<Self, crate::config::ConfigError> {
        let settings = config.get_ref();
        if settings.targets.is_empty() {
            return Err(source.error(
                config.span(),
                format!("upstream `{name}` has no targets: add targets = [\"host:port\"]"),
            ));
        }
        let targets = settings
            .targets
            .iter()
            .map(|target| {
                let authority = parse_target(target.get_ref())
                    .map_err(|msg| source.error(target.span(), msg))?;
                let host = http::HeaderValue::from_str(authority.as_str())
                    .map_err(|_| source.error(target.span(), "invalid target"))?;
                Ok((authority, host))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout.0));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let clients = (0..crate::worker::count())
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(settings.idle_timeout.0)
                    .pool_max_idle_per_host(settings.max_idle_connections)
                    .build(connector.clone())
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            targets,
            next: AtomicUsize::new(0),
            clients,
            timeout: settings.timeout.0,
            config: settings.clone(),
            latency: crate::metrics::metrics()
                .upstream_duration
                .get_or_create(&[("upstream", name.to_string())])
                .clone(),
        })
    }

    /// The next target, round robin.
    fn pick(&self) -> &(Authority, http::HeaderValue) {
        if let [only] = self.targets.as_slice() {
            // No shared counter to bump (and bounce between cores).
            return only;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        &self.targets[index]
    }

    /// Sends `request` (whose URI carries only path and query) to the next target
    /// and waits for the response head within the upstream's timeout.
    pub async fn send(
        &self,
        mut request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
    ) -> Result<Response<Body>, RequestError> {
        let (authority, host) = self.pick();
        if set_host {
            request
                .headers_mut()
                .insert(http::header::HOST, host.clone());
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority.clone());
        uri.path_and_query = Some(path_and_query);
        *request.uri_mut() =
            Uri::from_parts(uri).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        *request.version_mut() = Version::HTTP_11;

        let client = &self.clients[crate::worker::index() % self.clients.len()];
        match tokio::time::timeout(self.timeout, client.request(request)).await {
            Err(_) => Err(RequestError::UpstreamTimeout {
                upstream: self.name.clone(),
            }),
            Ok(Err(err)) => Err(self.classify(err)),
            Ok(Ok(response)) => Ok(response.map(body::boxed)),
        }
    }

    fn classify(&self, err: hyper_util::client::legacy::Error) -> RequestError {
        // A client body over the limit surfaces here, deep in the error chain.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(cause) = source {
            if cause
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return RequestError::BodyTooLarge { limit: 0 };
            }
            source = cause.source();
        }
        let reason = if err.is_connect() {
            format!("connect: {}", error_chain(&err))
        } else {
            error_chain(&err)
        };
        RequestError::UpstreamUnavailable {
            upstream: self.name.clone(),
            reason,
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn parse_target(target: &str) -> Result<Authority, String> {
    let bare = target.strip_prefix("http://").unwrap_or(target);
    if bare.starts_with("https://") {
        return Err(format!(
            "invalid target `{target}`: TLS to upstreams is not supported yet; use host:port"
        ));
    }
    let authority: Authority = bare.trim_end_matches('/').parse().map_err(|_| {
        format!("invalid target `{target}`: expected host:port, for example \"127.0.0.1:9000\"")
    })?;
    if authority.port_u16().is_none() {
        return Err(format!(
            "invalid target `{target}`: a port is required, for example \"{}:80\"",
            authority.host()
        ));
    }
    Ok(authority)
}

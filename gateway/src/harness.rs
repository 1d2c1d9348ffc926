//! An in-process test harness: builds a [`Runtime`] from a TOML config and
//! drives requests through [`handler::handle`] directly, with no gateway
//! socket. Upstreams are real tiny hyper servers ([`Echo`]) on 127.0.0.1 that
//! answer with what they received, so tests can assert on what reached them.
//!
//! Test-only (`#[cfg(test)]` in `lib.rs`); the tests that use it live in the
//! submodules below.

mod body_plan;
mod echo;
mod handler_phases;
mod inherited;
mod runtime_build;

pub(crate) use echo::{Echo, Echoed};

use crate::body::{self, Body};
use crate::config::{ConfigError, Source};
use crate::handler::{self, Connection};
use crate::plugin::PluginEngine;
use crate::runtime::Runtime;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// The `Host` every harness request carries (HTTP/1.1 requests need one).
pub(crate) const HOST: &str = "gateway.test";

/// The client address every harness request comes from (TEST-NET-1).
pub(crate) const PEER: &str = "192.0.2.10:40000";

/// One plugin engine per test binary: it compiles (and caches) the built-ins
/// once for every test.
static ENGINE: LazyLock<Arc<PluginEngine>> =
    LazyLock::new(|| PluginEngine::new().expect("the plugin engine starts"));

/// The engine the harness builds runtimes with.
pub(crate) fn engine() -> &'static PluginEngine {
    &ENGINE
}

/// The path of a test plugin component `build.rs` compiled (for `plugin =`).
pub(crate) fn test_plugin(stem: &str) -> String {
    format!("{}/{stem}.wasm", env!("GATEWAY_PLUGIN_DIR"))
}

/// `[upstreams.NAME]` with `echo` as its one target.
pub(crate) fn upstream(name: &str, echo: &Echo) -> String {
    format!("[upstreams.{name}]\ntargets = [\"{}\"]\n", echo.addr())
}

/// Parses `toml` (as the file `t.toml`) and builds its runtime, reusing what
/// `previous` has that did not change.
pub(crate) async fn build(toml: &str, previous: Option<&Runtime>) -> Result<Runtime, ConfigError> {
    let source = Source::from_text(Path::new("t.toml"), toml.to_string());
    let config = source.parse()?;
    Runtime::build(&source, &config, engine(), previous).await
}

/// The error building `toml` ends in; panics if it builds.
pub(crate) async fn build_error(toml: &str) -> ConfigError {
    match build(toml, None).await {
        Ok(_) => panic!("the config built, expected an error:\n{toml}"),
        Err(err) => err,
    }
}

/// A runtime and the connection its requests come on.
pub(crate) struct Gateway {
    /// What the config built.
    pub runtime: Arc<Runtime>,
    /// The connection every request is handled as coming on.
    pub conn: Connection,
}

impl Gateway {
    /// Builds `toml`; panics with the located error if it does not build.
    pub async fn start(toml: &str) -> Self {
        let runtime = build(toml, None)
            .await
            .unwrap_or_else(|err| panic!("the config does not build: {err}\n{toml}"));
        let peer: SocketAddr = PEER.parse().expect("a socket address");
        Self {
            runtime: Arc::new(runtime),
            conn: Connection {
                peer,
                scheme: "http",
                client: peer,
                client_cert: None,
                client_place: None,
                listener: Arc::from(crate::config::DEFAULT_LISTENER),
            },
        }
    }

    /// `GET path`, with only `Host`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[], "").await
    }

    /// A request with `headers` (after `Host: gateway.test`) and `body` (a
    /// declared `Content-Length` is up to the caller).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, HOST);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body::full(body)).expect("a valid request");
        self.send(request).await
    }

    /// Hands `request` to the handler and reads its whole response.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = handler::handle(self.runtime.clone(), request, self.conn.clone()).await;
        Reply::read(response).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Reply {
    /// Reads `response`'s body to the end.
    pub async fn read(response: http::Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("the response body reads")
            .to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The value of header `name` as text, if it is there (the first one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    /// What an [`Echo`] upstream received, as its answer reports it; panics
    /// when the answer is not an echo's.
    pub fn echoed(&self) -> Echoed {
        assert_eq!(self.status, StatusCode::OK, "not an echo: {}", self.text());
        Echoed::from_json(&self.json())
    }
}

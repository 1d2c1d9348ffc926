//! Opening connections to an upstream's targets: the TLS client settings
//! (`ca_file` or Mozilla's roots, `tls_server_name`), the ALPN offered for
//! the protocol spoken, the HTTP/2 connection settings, and one deadline
//! (`connect_timeout`) over the TCP connect and the TLS handshake.
//!
//! This is the layer below both `upstream` (pooled HTTP/1.1 clients, health
//! checks) and `h2pool` (HTTP/2 connections): each imports it, neither
//! imports the other's internals.

use crate::config::{Source, UpstreamConfig};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// A settings error: where in the config, and why (without the upstream's name).
pub(super) type SettingsError = (Range<usize>, String);

/// How often HTTP/2 connections to targets are pinged by default.
const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection carries at once by default: at or under
/// what servers allow (nginx 128, hyper 200, gRPC's unlimited).
const DEFAULT_HTTP2_MAX_STREAMS: usize = 100;
/// The most `http2_max_streams` may say (HTTP/2 stream ids allow 2^30 client streams).
const MAX_HTTP2_STREAMS: usize = 1 << 20;

/// What an upstream's settings say about opening its connections.
pub(super) struct Connecting {
    pub connector: TimedConnector,
    /// The `ca_file` as it was read, to tell whether a reload changed it.
    pub ca_pem: Option<Vec<u8>>,
    /// With HTTP/2: how often a connection is pinged.
    pub keepalive: Duration,
    /// With HTTP/2: streams one connection carries at once.
    pub max_streams: usize,
}

impl Connecting {
    /// Reads and checks the connection settings of `settings` (read from
    /// `source`), in the order their errors are reported.
    pub fn new(
        settings: &UpstreamConfig,
        source: &Source,
        http2: bool,
    ) -> Result<Self, SettingsError> {
        let ca_pem = match &settings.ca_file {
            None => None,
            Some(file) => Some(read_ca(source, file.get_ref()).map_err(|err| {
                (
                    file.span(),
                    format!("cannot read ca_file `{}`: {err}", file.get_ref()),
                )
            })?),
        };
        let tls = tls_settings(settings, ca_pem.as_deref())?;
        let keepalive = http2_keepalive(settings, http2)?;
        let max_streams = http2_max_streams(settings, http2)?;
        let server_name = tls_server_name(settings)?;
        let connector = TimedConnector::new(tls, server_name, http2, settings.connect_timeout.0);
        Ok(Self {
            connector,
            ca_pem,
            keepalive,
            max_streams,
        })
    }
}

/// The bytes of `ca_file`, relative to the config's directory.
pub(super) fn read_ca(source: &Source, file: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(source.base_dir().join(file))
}

/// `http2_keepalive`, or its default; only with HTTP/2, and never zero.
fn http2_keepalive(settings: &UpstreamConfig, http2: bool) -> Result<Duration, SettingsError> {
    match (&settings.http2_keepalive, http2) {
        (None, _) => Ok(DEFAULT_HTTP2_KEEPALIVE),
        (Some(every), false) => Err((
            every.span(),
            "http2_keepalive needs protocol = \"http2\"".to_string(),
        )),
        (Some(every), true) if every.get_ref().0.is_zero() => Err((
            every.span(),
            "http2_keepalive must be more than zero".to_string(),
        )),
        (Some(every), true) => Ok(every.get_ref().0),
    }
}

/// `http2_max_streams`, or its default; only with HTTP/2, and in range.
fn http2_max_streams(settings: &UpstreamConfig, http2: bool) -> Result<usize, SettingsError> {
    match (&settings.http2_max_streams, http2) {
        (None, _) => Ok(DEFAULT_HTTP2_MAX_STREAMS),
        (Some(max), false) => Err((
            max.span(),
            "http2_max_streams needs protocol = \"http2\"".to_string(),
        )),
        (Some(max), true) if !(1..=MAX_HTTP2_STREAMS).contains(max.get_ref()) => Err((
            max.span(),
            format!("http2_max_streams must be between 1 and {MAX_HTTP2_STREAMS}"),
        )),
        (Some(max), true) => Ok(*max.get_ref()),
    }
}

/// `tls_server_name`, parsed.
fn tls_server_name(
    settings: &UpstreamConfig,
) -> Result<Option<ServerName<'static>>, SettingsError> {
    let Some(server_name) = &settings.tls_server_name else {
        return Ok(None);
    };
    ServerName::try_from(server_name.get_ref().clone())
        .map(Some)
        .map_err(|_| {
            (
                server_name.span(),
                format!(
                    "tls_server_name `{}` is not a DNS name or IP address",
                    server_name.get_ref()
                ),
            )
        })
}

/// The TLS client settings for `https://` targets: the CAs in `ca_pem`, or
/// the built-in Mozilla roots; HTTP/1.1.
fn tls_settings(
    settings: &UpstreamConfig,
    ca_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, SettingsError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| (0..0, format!("TLS setup failed: {err}")))?;
    let Some(pem) = ca_pem else {
        use hyper_rustls::ConfigBuilderExt;
        return Ok(builder.with_webpki_roots().with_no_client_auth());
    };
    let span = settings.ca_file.as_ref().map_or(0..0, Spanned::span);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|err| (span.clone(), format!("ca_file is not valid PEM: {err}")))?;
        roots.add(cert).map_err(|err| {
            (
                span.clone(),
                format!("ca_file holds an unusable certificate: {err}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err((span, "ca_file holds no certificate".to_string()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The name `https://` targets' certificates are checked against: the
/// configured `tls_server_name`, or else the target's host.
struct ServerNames(Option<FixedServerNameResolver>);

impl hyper_rustls::ResolveServerName for ServerNames {
    fn resolve(
        &self,
        uri: &http::Uri,
    ) -> Result<ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(fixed) => fixed.resolve(uri),
            None => hyper_rustls::DefaultServerNameResolver::default().resolve(uri),
        }
    }
}

/// The connector with one deadline over the TCP connect and the TLS
/// handshake: a target that accepts connections but stalls the handshake is
/// a failed connection after `connect_timeout`, like one that does not answer.
///
/// hyper-util's pooled client clones its connector for every request, even
/// one an idle pooled connection serves, which is nearly all of them: the
/// TLS connector (three reference counts, shared by every worker) is behind
/// one `Arc` of the worker's own ([`TimedConnector::for_worker`]), and cloned
/// only to open a connection.
#[derive(Clone)]
pub(super) struct TimedConnector {
    inner: Arc<HttpsConnector<HttpConnector>>,
    timeout: Duration,
}

impl TimedConnector {
    /// A connector for `http://` and `https://` targets with the TLS
    /// settings `tls`, whose ALPN offers exactly the version spoken: `h2` or
    /// nothing (HTTP/1.1).
    fn new(
        tls: rustls::ClientConfig,
        server_name: Option<ServerName<'static>>,
        http2: bool,
        timeout: Duration,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        // The TLS layer checks the scheme.
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(ServerNames(server_name.map(FixedServerNameResolver::new)));
        let connect = if http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        Self {
            inner: Arc::new(connect),
            timeout,
        }
    }

    /// A copy whose reference count only the calling worker's pool touches.
    pub fn for_worker(&self) -> Self {
        Self {
            inner: Arc::new(HttpsConnector::clone(&self.inner)),
            timeout: self.timeout,
        }
    }
}

type Connection = <HttpsConnector<HttpConnector> as tower_service::Service<http::Uri>>::Response;

impl tower_service::Service<http::Uri> for TimedConnector {
    type Response = Connection;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Connection, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // The copy that connects is made ready in `call`.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut inner = HttpsConnector::clone(&self.inner);
        let timeout = self.timeout;
        Box::pin(async move {
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let connecting = inner.call(uri);
            tokio::time::timeout(timeout, connecting)
                .await
                .unwrap_or_else(|_| Err(format!("no connection within {timeout:?}").into()))
        })
    }
}

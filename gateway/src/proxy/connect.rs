//! Opening connections to an upstream's targets: the TLS client settings
//! (`ca_file` or Mozilla's roots, `tls_server_name`), the ALPN offered for
//! the protocol spoken, the client certificate presented to targets that
//! ask for one (`client_cert`), and one deadline (`connect_timeout`) over the TCP
//! connect and the TLS handshake.
//!
//! This is the layer below both `upstream` (pooled HTTP/1.1 clients, health
//! checks) and `h2pool` (HTTP/2 connections): each imports it, neither
//! imports the other's internals.

use super::upstream::settings::{UpstreamSettings, ca_roots};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// The connector `settings` say to open an upstream's connections with:
/// their TLS client settings, ALPN for the protocol spoken, and the connect
/// timeout. Fails only when the TLS library cannot be set up.
pub(super) fn connector(settings: &UpstreamSettings) -> Result<TimedConnector, String> {
    let mut tls = tls_settings(settings.ca_pem.as_deref())?;
    if let Some(identity) = &settings.client_identity {
        let certified = identity.certified_key()?;
        // Presented to every target that asks for a client certificate.
        tls.client_auth_cert_resolver =
            Arc::new(rustls::sign::SingleCertAndKey::from(Arc::new(certified)));
    }
    Ok(TimedConnector::new(
        tls,
        settings.tls_server_name.clone(),
        settings.http2,
        settings.connect_timeout,
    ))
}

/// The TLS client settings for `https://` targets: the CAs in `ca_pem`, or
/// the built-in Mozilla roots.
fn tls_settings(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| format!("TLS setup failed: {err}"))?;
    let Some(pem) = ca_pem else {
        use hyper_rustls::ConfigBuilderExt;
        return Ok(builder.with_webpki_roots().with_no_client_auth());
    };
    Ok(builder
        .with_root_certificates(ca_roots(pem)?)
        .with_no_client_auth())
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

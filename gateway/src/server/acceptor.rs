//! The TLS handshake of a client connection, with the settings of the
//! runtime serving at that moment: a reload that brings a new certificate
//! (or new client verification) applies to the next handshake.

use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Accepts TLS connections with the current runtime's settings.
#[derive(Clone)]
pub struct Acceptor(Arc<ArcSwap<Runtime>>);

impl Acceptor {
    /// An acceptor that follows `runtime` through reloads.
    pub fn new(runtime: Arc<ArcSwap<Runtime>>) -> Self {
        Self(runtime)
    }

    /// The handshake with the settings serving now; `None` when a reload
    /// turned TLS off (it needs a restart: the connection is refused).
    pub fn current(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.0
            .load()
            .tls
            .clone()
            .map(tokio_rustls::TlsAcceptor::from)
    }
}

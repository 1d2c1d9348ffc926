//! The TLS handshake of a client connection, with the settings of the
//! runtime serving at that moment: a reload that brings a new certificate
//! (or new client verification) applies to the next handshake.

use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Accepts TLS connections on one listener with the current runtime's
/// settings for it.
#[derive(Clone)]
pub struct Acceptor {
    runtime: Arc<ArcSwap<Runtime>>,
    listener: Arc<str>,
}

impl Acceptor {
    /// An acceptor for the listener named `listener` that follows `runtime`
    /// through reloads.
    pub fn new(runtime: Arc<ArcSwap<Runtime>>, listener: Arc<str>) -> Self {
        Self { runtime, listener }
    }

    /// The handshake with the settings serving now; `None` when a reload
    /// turned TLS off or removed the listener (that needs a restart: the
    /// connection is refused).
    pub fn current(&self) -> Option<tokio_rustls::TlsAcceptor> {
        let runtime = self.runtime.load();
        let tls = match &*self.listener {
            crate::config::DEFAULT_LISTENER => runtime.tls.clone(),
            named => runtime.listener_tls.get(named).cloned(),
        };
        tls.map(tokio_rustls::TlsAcceptor::from)
    }
}

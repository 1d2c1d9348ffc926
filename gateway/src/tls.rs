//! TLS termination on the client-facing listener (rustls, on aws-lc-rs).
//!
//! The certificate is part of the runtime: every handshake asks the current
//! runtime for it, so a reload that brings a new certificate (a renewed file,
//! a rotated secret) serves it to the next connection without a restart,
//! while connections already open keep theirs.

use crate::config::{ConfigError, Source, TlsConfig};
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use toml::Spanned;

/// Reads and checks the certificate chain and key `[server.tls]` names.
pub fn load(source: &Source, tls: &Spanned<TlsConfig>) -> Result<Arc<CertifiedKey>, ConfigError> {
    let config = tls.get_ref();
    let base = source.base_dir();
    let at = |message: String| source.error(tls.span(), format!("server.tls: {message}"));
    let cert_path = base.join(config.cert.get_ref());
    let key_path = base.join(config.key.get_ref());
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            at(format!(
                "cannot read certificates from `{}`: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(at(format!(
            "`{}` holds no PEM certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        at(format!(
            "cannot read a private key from `{}`: {e}",
            key_path.display()
        ))
    })?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        at(format!(
            "unusable private key `{}`: {e}",
            key_path.display()
        ))
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|e| at(format!("the key does not match the certificate: {e}")))?;
    Ok(Arc::new(certified))
}

/// Hands each handshake the current runtime's certificate.
struct CurrentCertificate(Arc<ArcSwap<Runtime>>);

impl std::fmt::Debug for CurrentCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCertificate")
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().tls.clone()
    }
}

/// An acceptor that serves the runtime's current certificate and offers
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn acceptor(runtime: Arc<ArcSwap<Runtime>>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CurrentCertificate(runtime)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

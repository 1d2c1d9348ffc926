//! Choosing the certificate a TLS listener presents by the name the client
//! asks for (SNI): an exact name first, then a wildcard (`*.example.com`
//! covers one label, `api.example.com` but neither `example.com` nor
//! `a.b.example.com`), then the default certificate (also for clients that
//! send no name).
//!
//! The names are checked and the table built at load; a handshake only
//! looks a name up.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates of one listener, by name.
#[derive(Debug)]
pub struct ByName {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ByName {
    /// A table presenting `default` for any name not added.
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    /// Serves `cert` for `name` (already [`normalize`]d). Returns `false`
    /// when another certificate already has the name.
    pub fn add(&mut self, name: &str, cert: Arc<CertifiedKey>) -> bool {
        let table = match name.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, name),
        };
        let (map, key) = table;
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.to_string(), cert);
        true
    }

    /// Whether `name` (normalized) has a certificate of its own.
    pub fn has(&self, name: &str) -> bool {
        match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.contains_key(suffix),
            None => self.exact.contains_key(name),
        }
    }

    /// The certificate for a client asking for `name` (`None`: no SNI).
    pub fn lookup(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(cert) = self.exact.get(&name) {
            return cert;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()).clone())
    }
}

/// `name` as the table keys it (lowercase, no trailing dot), or why it
/// cannot be a certificate's name: a DNS name, or `*.` and a DNS name of
/// at least two labels.
pub fn normalize(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let bare = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid = rustls::pki_types::DnsName::try_from(bare).is_ok()
        && !bare.contains('*')
        && (bare.len() == lower.len() || bare.contains('.'));
    if !valid {
        return Err(format!(
            "`{name}` is not a certificate name: give a DNS name (`api.example.com`) or a wildcard over one label (`*.example.com`)"
        ));
    }
    Ok(lower)
}

/// The DNS names in the leaf certificate `der`'s subject alternative names.
pub fn dns_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => normalize(dns).ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        let der = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .expect("key");
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signer");
        Arc::new(CertifiedKey::new(vec![made.cert.der().clone()], signing))
    }

    #[test]
    fn an_exact_name_wins_over_a_wildcard_which_wins_over_the_default() {
        let (default, exact, wild) = (key("default"), key("exact"), key("wild"));
        let mut table = ByName::new(default.clone());
        assert!(table.add("api.example.com", exact.clone()));
        assert!(table.add("*.example.com", wild.clone()));
        assert!(!table.add("*.example.com", exact.clone()));
        let is = |name: Option<&str>, cert: &Arc<CertifiedKey>| {
            assert!(Arc::ptr_eq(table.lookup(name), cert), "{name:?}");
        };
        is(Some("api.example.com"), &exact);
        is(Some("API.Example.com."), &exact);
        is(Some("www.example.com"), &wild);
        // One label only.
        is(Some("a.b.example.com"), &default);
        is(Some("example.com"), &default);
        is(Some("other.test"), &default);
        is(None, &default);
    }

    #[test]
    fn names_are_dns_names_or_one_label_wildcards() {
        assert_eq!(
            normalize("API.example.com").as_deref(),
            Ok("api.example.com")
        );
        assert_eq!(normalize("*.example.com").as_deref(), Ok("*.example.com"));
        for bad in [
            "*",
            "*.com",
            "a.*.example.com",
            "*example.com",
            "api example.com",
            "",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_names_of_a_certificate_are_its_dns_alternative_names() {
        let made = rcgen::generate_simple_self_signed(vec![
            "a.example.com".to_string(),
            "*.b.example.com".to_string(),
            "10.0.0.1".to_string(),
        ])
        .expect("cert");
        assert_eq!(
            dns_names(made.cert.der()),
            ["a.example.com", "*.b.example.com"]
        );
    }
}

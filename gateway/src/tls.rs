//! TLS termination on the client-facing listeners (rustls, on aws-lc-rs),
//! with certificates chosen by SNI (`sni`), and mutual TLS: client certificates verified against the configured
//! authorities, their identity handed to plugins and the upstream.
//!
//! The TLS settings are part of the runtime: every handshake uses the current
//! runtime's, so a reload that brings a new certificate (a renewed file, a
//! rotated secret) or new client authorities applies to the next connection
//! without a restart, while connections already open keep theirs.

use crate::config::{ClientAuth, ConfigError, Source, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use toml::Spanned;

mod sni;

/// Builds a listener's TLS settings from `[server.tls]` (or a listener's
/// `tls`, named `label` in errors): its certificates, chosen by SNI, and with
/// `client_ca` the verification of client certificates.
pub fn load(
    source: &Source,
    tls: &Spanned<TlsConfig>,
    label: &str,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let verifier = client_verifier(source, tls, label)?;
    let config = tls.get_ref();
    let default = certified_key(source, (&config.cert, &config.key), tls.span(), label)?;
    let certificates = by_name(source, tls, default, label)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| source.error(tls.span(), format!("{label}: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(certificates));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates by name: each of `certificates` for its names (given, or
/// its DNS alternative names), `default` for its own names no entry claims
/// and for every other name. A name two entries claim is an error.
fn by_name(
    source: &Source,
    tls: &Spanned<TlsConfig>,
    default: Arc<CertifiedKey>,
    label: &str,
) -> Result<sni::ByName, ConfigError> {
    let mut table = sni::ByName::new(default.clone());
    for (index, entry) in tls.get_ref().certificates.iter().enumerate() {
        let at = format!("{label}.certificates[{index}]");
        let config = entry.get_ref();
        let cert = certified_key(source, (&config.cert, &config.key), entry.span(), &at)?;
        let names: Vec<(String, std::ops::Range<usize>)> = match &config.names {
            Some(names) => names
                .iter()
                .map(|name| {
                    sni::normalize(name.get_ref())
                        .map(|n| (n, name.span()))
                        .map_err(|message| source.error(name.span(), format!("{at}: {message}")))
                })
                .collect::<Result<_, _>>()?,
            None => sni::dns_names(cert.end_entity_cert().map_or(&[][..], |c| c.as_ref()))
                .into_iter()
                .map(|name| (name, entry.span()))
                .collect(),
        };
        if names.is_empty() {
            return Err(source.error(
                entry.span(),
                format!(
                    "{at}: the certificate has no DNS name: list the names it is for in `names`"
                ),
            ));
        }
        for (name, span) in names {
            if !table.add(&name, cert.clone()) {
                return Err(source.error(span, format!("{at}: the name `{name}` is given twice (another certificate is already presented for it)")));
            }
        }
    }
    for name in sni::dns_names(default.end_entity_cert().map_or(&[][..], |c| c.as_ref())) {
        if !table.has(&name) {
            table.add(&name, default.clone());
        }
    }
    Ok(table)
}

/// Verifies client certificates against `client_ca`, or asks for none.
fn client_verifier(
    source: &Source,
    tls: &Spanned<TlsConfig>,
    label: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let config = tls.get_ref();
    let Some(file) = &config.client_ca else {
        if let Some(auth) = &config.client_auth {
            return Err(source.error(
                auth.span(),
                format!("{label}: client_auth needs client_ca, the authorities client certificates must chain to"),
            ));
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let at = |message: String| source.error(file.span(), format!("{label}: {message}"));
    let path = source.base_dir().join(file.get_ref());
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| at(format!("cannot read client_ca `{}`: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| at(format!("client_ca holds an unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(at(format!(
            "client_ca `{}` holds no PEM certificate",
            path.display()
        )));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    );
    let builder = match config.client_auth.as_ref().map(|a| *a.get_ref()) {
        Some(ClientAuth::Optional) => builder.allow_unauthenticated(),
        None | Some(ClientAuth::Required) => builder,
    };
    builder
        .build()
        .map_err(|e| at(format!("cannot verify clients with client_ca: {e}")))
}

/// Reads and checks a certificate chain and its key (`cert`, `key`); errors
/// at `span`, prefixed with `label`.
fn certified_key(
    source: &Source,
    (cert, key): (&Spanned<String>, &Spanned<String>),
    span: std::ops::Range<usize>,
    label: &str,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let base = source.base_dir();
    let at = |message: String| source.error(span.clone(), format!("{label}: {message}"));
    let cert_path = base.join(cert.get_ref());
    let key_path = base.join(key.get_ref());
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
    certified.keys_match().map_err(|_| {
        at(format!(
            "the key `{}` does not match the certificate `{}`",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

/// A client certificate verified during the handshake: who the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Hex SHA-256 of the leaf certificate's DER.
    pub fingerprint: String,
    /// The subject's distinguished name as RFC 4514 text (`CN=client-1,O=Acme`);
    /// empty when it could not be read.
    pub subject: String,
    /// The subject's common name, if it has exactly one.
    pub common_name: Option<String>,
    /// Subject alternative names: `DNS:...`, `URI:...`, `email:...`, `IP:...`.
    pub names: Vec<String>,
    /// Something in the certificate could not be read in full, so names
    /// from it must not be trusted to identify the client.
    pub incomplete: bool,
    /// The `X-Forwarded-Client-Cert` value sent upstream (see [`ClientCert::forwarded`]).
    pub header: http::HeaderValue,
}

impl ClientCert {
    /// The identity in the leaf certificate `der` (already verified). What
    /// cannot be read in full is left out rather than approximated, and the
    /// certificate is marked [`incomplete`](ClientCert::incomplete): a subject
    /// that is not text or is over [`MAX_SUBJECT`], alternative names beyond
    /// [`MAX_NAMES`] bytes in all (as written in the context). A subject with
    /// several common names has none.
    pub fn from_der(der: &[u8]) -> Self {
        let fingerprint = Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut incomplete = false;
        let (subject, common_name, names) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let mut names = Vec::new();
                let mut total = 0;
                let all = cert.subject_alternative_name().ok().flatten();
                for name in all.iter().flat_map(|san| san.value.general_names.iter()) {
                    let Some(name) = general_name(name) else {
                        continue;
                    };
                    total += joined(&name).len() + 1;
                    if total > MAX_NAMES {
                        incomplete = true;
                        break;
                    }
                    names.push(name);
                }
                let subject = rfc4514(cert.subject()).filter(|s| s.len() <= MAX_SUBJECT);
                incomplete |= subject.is_none();
                let mut common_names = cert.subject().iter_common_name();
                let common_name = match (common_names.next(), common_names.next()) {
                    (Some(only), None) => only.as_str().ok().map(str::to_string),
                    _ => None,
                };
                (subject.unwrap_or_default(), common_name, names)
            }
            Err(_) => {
                incomplete = true;
                (String::new(), None, Vec::new())
            }
        };
        let mut cert = Self {
            fingerprint,
            subject,
            common_name,
            names,
            incomplete,
            header: http::HeaderValue::from_static(""),
        };
        // Printable ASCII only (see `escape`): always a valid header value.
        if let Ok(header) = http::HeaderValue::from_str(&cert.forwarded()) {
            cert.header = header;
        }
        cert
    }

    /// The alternative names as one context value: comma-separated, with `%`
    /// and `,` inside a name percent-encoded (`%25`, `%2C`) so that a name
    /// cannot pass for two.
    pub fn names_joined(&self) -> String {
        self.names
            .iter()
            .map(|name| joined(name))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `X-Forwarded-Client-Cert` value, in Envoy's format:
    /// `Hash=...;Subject="...";DNS=...;URI=...` (see [`escape`]).
    pub fn forwarded(&self) -> String {
        let mut out = format!(
            "Hash={};Subject=\"{}\"",
            self.fingerprint,
            escape(&self.subject, true)
        );
        for name in &self.names {
            let (kind, value) = name.split_once(':').unwrap_or(("", name));
            let key = match kind {
                "DNS" => "DNS",
                "URI" => "URI",
                _ => continue,
            };
            out.push_str(&format!(";{key}={}", escape(value, false)));
        }
        out
    }
}

/// One name as written among the others in the context.
fn joined(name: &str) -> String {
    name.replace('%', "%25").replace(',', "%2C")
}

/// The most a subject may take, in bytes (as RFC 4514 text).
pub const MAX_SUBJECT: usize = 4096;
/// The most the alternative names may take together, in bytes.
pub const MAX_NAMES: usize = 8192;

/// `name` as RFC 4514 text: the RDNs from last to first, separated by `,`,
/// multi-valued RDNs joined by `+`, attribute types by their RFC 4514 short
/// name or dotted OID, and the special characters of values escaped. `None`
/// when a value is not a string.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    const SHORT: [&str; 9] = ["CN", "L", "ST", "O", "OU", "C", "STREET", "DC", "UID"];
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let mut values = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type();
            let key = match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(abbrev) if SHORT.contains(&abbrev) => abbrev.to_string(),
                _ => oid.to_id_string(),
            };
            let value = attribute.as_str().ok()?;
            values.push(format!("{key}={}", escape_dn(value)));
        }
        rdns.push(values.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// An attribute value escaped as RFC 4514 (section 2.4) says.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

fn general_name(name: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
        GeneralName::URI(uri) => Some(format!("URI:{uri}")),
        GeneralName::RFC822Name(email) => Some(format!("email:{email}")),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|ip| format!("IP:{}", std::net::Ipv4Addr::from(ip))),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|ip| format!("IP:{}", std::net::Ipv6Addr::from(ip))),
            _ => None,
        },
        _ => None,
    }
}

/// Makes `value` safe in the header: bytes outside printable ASCII, and `%`,
/// percent-encoded; inside a quoted value `"` and `\` backslash-escaped (as
/// Envoy does), elsewhere the separators `"` `\` `;` `,` percent-encoded.
fn escape(value: &str, quoted: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'"' | b'\\' if quoted => {
                out.push('\\');
                out.push(byte as char);
            }
            b'%' => out.push_str("%25"),
            b'"' | b'\\' | b';' | b',' if !quoted => out.push_str(&format!("%{byte:02X}")),
            0x20..0x7f => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity in a certificate made from `params`.
    fn identity(params: &rcgen::CertificateParams) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let made = params.self_signed(&key).expect("certificate");
        ClientCert::from_der(made.der())
    }

    #[test]
    fn the_forwarded_identity_escapes_what_would_break_the_header() {
        let cert = ClientCert {
            fingerprint: "ab12".into(),
            subject: "CN=Zoë \"the; admin\",O=Acme".into(),
            common_name: None,
            incomplete: false,
            names: vec![
                "DNS:a.example".into(),
                "URI:spiffe://acme/ns/x".into(),
                "URI:x;y".into(),
                "email:ops@acme.example".into(),
                "IP:10.0.0.1".into(),
            ],
            header: http::HeaderValue::from_static(""),
        };
        assert_eq!(
            cert.forwarded(),
            "Hash=ab12;Subject=\"CN=Zo%C3%AB \\\"the; admin\\\",O=Acme\";DNS=a.example;URI=spiffe://acme/ns/x;URI=x%3By"
        );
        assert!(http::HeaderValue::from_str(&cert.forwarded()).is_ok());
    }

    #[test]
    fn values_that_look_like_more_of_the_name_are_escaped() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://acme/x,DNS:admin.example").expect("IA5"),
        )];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "x, O=Acme, CN=admin");
        let cert = identity(&params);
        assert_eq!(cert.subject, "CN=x\\, O=Acme\\, CN=admin");
        assert_eq!(cert.common_name.as_deref(), Some("x, O=Acme, CN=admin"));
        assert_eq!(cert.names, ["URI:spiffe://acme/x,DNS:admin.example"]);
        assert_eq!(
            cert.names_joined(),
            "URI:spiffe://acme/x%2CDNS:admin.example"
        );
        assert_eq!(escape_dn("#lead and trail "), "\\#lead and trail\\ ");
    }

    #[test]
    fn names_over_the_cap_mark_the_certificate_incomplete() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("host-{i:04}.a-rather-long-domain.example"))
            .collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let cert = identity(&params);
        assert!(cert.incomplete);
        assert!(cert.names.len() < 300);
        assert!(cert.names_joined().len() <= MAX_NAMES);
        assert!(
            !ClientCert::from_der(b"not a certificate")
                .names
                .iter()
                .any(|_| true)
        );
        assert!(ClientCert::from_der(b"not a certificate").incomplete);
    }

    #[test]
    fn a_certificate_gives_its_subject_names_and_fingerprint() {
        let mut params =
            rcgen::CertificateParams::new(vec!["api.example".to_string(), "10.1.2.3".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "svc-a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        let cert = identity(&params);
        // RFC 4514: last RDN first.
        assert_eq!(cert.subject, "O=Acme,CN=svc-a");
        assert_eq!(cert.common_name.as_deref(), Some("svc-a"));
        assert!(!cert.incomplete);
        assert_eq!(cert.names, ["DNS:api.example", "IP:10.1.2.3"]);
        assert_eq!(cert.fingerprint.len(), 64);
        assert_eq!(
            cert.header.to_str().ok(),
            Some(
                format!(
                    "Hash={};Subject=\"O=Acme,CN=svc-a\";DNS=api.example",
                    cert.fingerprint
                )
                .as_str()
            )
        );
    }
}

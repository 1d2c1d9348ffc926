//! What an upstream is built from: [`UpstreamSettings`], plain values the
//! config has already checked (`config::upstream`), and the parsers and
//! limits that check shares with the proxy (targets, CA certificates).
//!
//! Equal settings build an equal upstream, so a reload compares them to keep
//! an unchanged upstream and its connection pools.

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::time::Duration;

/// The largest weight a target may have.
pub const MAX_WEIGHT: u32 = 1000;
/// The most `retries` an upstream may ask for.
pub const MAX_RETRIES: u32 = 10;
/// How often HTTP/2 connections to targets are pinged by default.
pub const DEFAULT_HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection carries at once by default: at or under
/// what servers allow (nginx 128, hyper 200, gRPC's unlimited).
pub const DEFAULT_HTTP2_MAX_STREAMS: usize = 100;
/// The most `http2_max_streams` may say (HTTP/2 stream ids allow 2^30 client streams).
pub const MAX_HTTP2_STREAMS: usize = 1 << 20;

/// One upstream's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// The targets, in the config's order.
    pub targets: Vec<TargetSpec>,
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed from sending a request to its response head.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Idle connections kept per target (HTTP/1.1).
    pub max_idle_connections: usize,
    /// Failed connections in a row that take a target out (0: never).
    pub max_fails: u32,
    /// How long a target taken out is skipped.
    pub fail_timeout: Duration,
    /// Other targets tried after a failed connection.
    pub retries: u32,
    /// The certificate authorities `https://` targets chain to (PEM), instead
    /// of the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The name `https://` targets' certificates are checked against.
    pub tls_server_name: Option<ServerName<'static>>,
    /// The certificate chain and key presented to `https://` targets that
    /// ask for one (mutual TLS); none without it.
    pub client_identity: Option<ClientIdentity>,
    /// Active health checks.
    pub health_check: Option<HealthCheck>,
    /// HTTP/2 to the targets instead of HTTP/1.1.
    pub http2: bool,
    /// With HTTP/2: how often a connection is pinged.
    pub http2_keepalive: Duration,
    /// With HTTP/2: requests one connection carries at once.
    pub http2_max_streams: usize,
    /// Requests in flight at once, from this process.
    pub max_requests: Option<usize>,
    /// Ejecting targets whose answers are errors.
    pub outlier_detection: Option<OutlierDetection>,
    /// How a target is chosen per request.
    pub balance: Balance,
}

/// How an upstream chooses a target per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Balance {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// The less busy of two targets drawn by weight.
    LeastRequest,
    /// Consistent hashing on a request's key; round robin without one.
    Hash(HashOn),
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq)]
pub enum HashOn {
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The client's address.
    ClientIp,
}

impl HashOn {
    /// `header:NAME`, `cookie:NAME` or `ip`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "hash_on `{text}` must be `header:NAME`, `cookie:NAME` or `ip`, for example \"header:x-user-id\""
            )
        };
        match text.split_once(':') {
            None if text == "ip" => Ok(HashOn::ClientIp),
            Some(("header", name)) => http::HeaderName::try_from(name)
                .map(HashOn::Header)
                .map_err(|_| wrong()),
            Some(("cookie", name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b)) =>
            {
                Ok(HashOn::Cookie(name.to_string()))
            }
            _ => Err(wrong()),
        }
    }
}

/// `[upstreams.NAME.outlier_detection]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// Errors in a row (5xx, failed connections, timeouts) that eject a target.
    pub consecutive_errors: u32,
    /// A first ejection's length; the n-th in a row lasts n times it.
    pub base_ejection_time: Duration,
    /// The longest ejection.
    pub max_ejection_time: Duration,
    /// The most targets out of rotation at once, in percent of all (one
    /// may always be).
    pub max_ejection_percent: u32,
}

/// A client certificate chain and its private key, as PEM read from
/// `client_cert` and `client_key` (compared by content, so a reload that
/// brings renewed files builds the upstream anew).
#[derive(Clone, PartialEq)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// The chain and key parsed and checked to belong together, or why they
    /// cannot be used.
    pub fn certified_key(&self) -> Result<rustls::sign::CertifiedKey, String> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("client_cert is not valid PEM: {err}"))?;
        if chain.is_empty() {
            return Err("client_cert holds no certificate".to_string());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|err| format!("client_key holds no usable private key: {err}"))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => {
                "client_key does not match the certificate in client_cert".to_string()
            }
            other => format!("client_cert and client_key cannot be used: {other}"),
        })
    }
}

/// One target: where it is and its share of the requests.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// The authority as a `Host` header value.
    pub host: http::HeaderValue,
    /// `scheme://authority/`.
    pub origin: Uri,
    /// Its share of the requests, relative to the others' (0: none).
    pub weight: u32,
}

/// `[upstreams.NAME.health_check]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The path asked of every target.
    pub path: PathAndQuery,
    /// Time between two checks of a target.
    pub interval: Duration,
    /// Time a check may take, connection included.
    pub timeout: Duration,
    /// Passed checks in a row that bring a target back.
    pub healthy: u32,
    /// Failed checks in a row that take a target out.
    pub unhealthy: u32,
}

impl TargetSpec {
    /// `host:port`, `http://host:port` or `https://host[:port]`, with `weight`.
    pub fn parse(target: &str, weight: u32) -> Result<Self, String> {
        let (scheme, bare) = match target.split_once("://") {
            None => (Scheme::HTTP, target),
            Some(("http", rest)) => (Scheme::HTTP, rest),
            Some(("https", rest)) => (Scheme::HTTPS, rest),
            Some((other, _)) => {
                return Err(format!(
                    "invalid target `{target}`: the scheme `{other}` is not supported; use http:// or https://"
                ));
            }
        };
        let authority: Authority = bare.trim_end_matches('/').parse().map_err(|_| {
            format!("invalid target `{target}`: expected host:port, for example \"127.0.0.1:9000\" or \"https://api.example.com\"")
        })?;
        if authority.port_u16().is_none() && scheme == Scheme::HTTP {
            return Err(format!(
                "invalid target `{target}`: a port is required, for example \"{}:80\"",
                authority.host()
            ));
        }
        let invalid = || format!("invalid target `{target}`");
        let host = http::HeaderValue::from_str(authority.as_str()).map_err(|_| invalid())?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| invalid())?;
        Ok(Self {
            scheme,
            authority,
            host,
            origin,
            weight,
        })
    }
}

/// The certificates of a PEM `ca_file`, or why they cannot be used.
pub fn ca_roots(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|err| format!("ca_file is not valid PEM: {err}"))?;
        roots
            .add(cert)
            .map_err(|err| format!("ca_file holds an unusable certificate: {err}"))?;
    }
    if roots.is_empty() {
        return Err("ca_file holds no certificate".to_string());
    }
    Ok(roots)
}

/// `weights` for `targets` targets, or what is wrong with them.
pub fn check_weights(weights: &[u32], targets: usize) -> Result<(), String> {
    if weights.len() != targets {
        return Err(format!(
            "weights has {} entries for {targets} targets: give one weight per target, in the same order",
            weights.len(),
        ));
    }
    if weights.iter().any(|w| *w > MAX_WEIGHT) {
        return Err(format!("a weight is at most {MAX_WEIGHT}"));
    }
    if weights.iter().all(|w| *w == 0) {
        return Err("every weight is 0: at least one target must get requests".to_string());
    }
    Ok(())
}

//! `[server]` and `[admin]`: their shape, and [`ServerSettings`], the one
//! place they are checked (every range, the listen addresses, the trusted
//! proxies, the admin token) into plain values the rest of the gateway reads.

use super::identity::resolve_secret;
use super::listener::{DEFAULT_LISTENER, Listener, ListenerConfig, check_listeners};
use super::problems::Problems;
use super::source::{ConfigError, Source};
use super::store::AdminConfig;
use super::units::{ByteSize, Duration};
use crate::proxy::forwarded::TrustedProxies;
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

/// hyper's HTTP/1 read buffer cannot be smaller than this.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// The most `[server] max_headers` may be (hyper allocates room for that
/// many on every request head it parses).
pub const MAX_HEADERS: usize = 1000;

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, `ip:port`. Port 0 picks a free port (printed at start).
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// Time allowed for a client to send a request's headers.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers). At least 8KiB.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: Spanned<ByteSize>,
    /// Most header fields in one request head (HTTP/1.1); over it: 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: Spanned<usize>,
    /// Largest request body accepted from a client.
    #[serde(default = "default_max_request_body")]
    pub max_request_body: ByteSize,
    /// Longest wait for the next bytes of a request body; over it: 408.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: Spanned<Duration>,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are believed and extended.
    /// From anyone else, those headers are replaced with what the gateway saw.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Worker threads, each with its own listener socket; default one per core.
    #[serde(default)]
    pub workers: Option<Spanned<usize>>,
    /// The share of successful requests the access log records (0 to 1);
    /// requests answered 4xx or 5xx are always recorded.
    #[serde(default = "default_access_log_sample")]
    pub access_log_sample: Spanned<f64>,
    /// TLS termination; without it the listener speaks cleartext.
    #[serde(default)]
    pub tls: Option<Spanned<TlsConfig>>,
    /// Upgraded (WebSocket) connections open at once, process-wide; a
    /// handshake over the limit is answered 503.
    #[serde(default = "default_max_websocket_connections")]
    pub max_websocket_connections: usize,
    /// Client connections open at once, process-wide; a connection over the
    /// limit is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// The share of `max_connections` (above 0, at most 1) from which each
    /// new connection closes the keep-alive connection idle the longest.
    #[serde(default = "default_close_idle_above")]
    pub close_idle_above: Spanned<f64>,
    /// Client connections open at once from one IPv4 address or IPv6 /64;
    /// no limit unless given.
    #[serde(default)]
    pub max_connections_per_ip: Option<Spanned<usize>>,
    /// An HTTP/2 client connection with no stream open for this long is
    /// closed (GOAWAY). At least 1s.
    #[serde(default = "default_server_idle_timeout")]
    pub idle_timeout: Spanned<Duration>,
    /// At shutdown, how long in-flight requests may take to finish before
    /// their connections are closed. At most 1h.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Spanned<Duration>,
    /// At shutdown, how long the gateway keeps accepting and serving while
    /// `/readyz` already answers 503, before it drains. At most 10m.
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay: Spanned<Duration>,
    /// Response compression for every route, unless a route's own
    /// `[routes.compression]` says otherwise key by key; off without it.
    #[serde(default)]
    pub compression: Option<Spanned<super::compression::CompressionConfig>>,
}

fn default_drain_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(30)))
}

fn default_shutdown_delay() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::ZERO))
}

fn default_body_read_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(60)))
}

fn default_server_idle_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(60)))
}

fn default_max_websocket_connections() -> usize {
    1024
}

fn default_max_headers() -> Spanned<usize> {
    Spanned::new(0..0, 100)
}

fn default_close_idle_above() -> Spanned<f64> {
    Spanned::new(0..0, 0.9)
}

fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 10_000)
}

/// `[server.tls]`: the certificate the listener presents, and the client
/// certificates it asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first (relative to the
    /// config file).
    pub cert: Spanned<String>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
    /// PEM file of the certificate authorities client certificates must
    /// chain to: turns on mutual TLS.
    #[serde(default)]
    pub client_ca: Option<Spanned<String>>,
    /// Whether a client must present a certificate (with `client_ca`).
    #[serde(default)]
    pub client_auth: Option<Spanned<ClientAuth>>,
    /// More certificates, each presented to clients that ask for one of its
    /// names (SNI); `cert` and `key` are the default for other names.
    #[serde(default)]
    pub certificates: Vec<Spanned<CertificateConfig>>,
}

/// `[[server.tls.certificates]]`: a certificate chosen by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM file with its private key.
    pub key: Spanned<String>,
    /// The names it is presented for: DNS names or one-label wildcards
    /// (`*.example.com`). Default: the certificate's DNS alternative names.
    #[serde(default)]
    pub names: Option<Vec<Spanned<String>>>,
}

/// `[server.tls] client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a valid client certificate fails.
    Required,
    /// Clients may present a certificate; one that does must be valid.
    Optional,
}

fn default_access_log_sample() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            header_read_timeout: default_header_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_request_body: default_max_request_body(),
            body_read_timeout: default_body_read_timeout(),
            trusted_proxies: Vec::new(),
            workers: None,
            access_log_sample: default_access_log_sample(),
            tls: None,
            max_websocket_connections: default_max_websocket_connections(),
            max_connections: default_max_connections(),
            close_idle_above: default_close_idle_above(),
            max_connections_per_ip: None,
            idle_timeout: default_server_idle_timeout(),
            drain_timeout: default_drain_timeout(),
            shutdown_delay: default_shutdown_delay(),
            compression: None,
        }
    }
}

fn default_listen() -> Spanned<String> {
    Spanned::new(0..0, "127.0.0.1:8080".to_string())
}
fn default_header_read_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_max_header_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(64 * 1024))
}
fn default_max_request_body() -> ByteSize {
    ByteSize(10 * 1024 * 1024)
}

impl ServerConfig {
    /// The worker threads `workers` asks for, one per core without it, at
    /// most 1024 (the check refuses more; the worker count is needed before
    /// the check runs).
    pub fn worker_count(&self) -> usize {
        self.workers
            .as_ref()
            .map_or_else(crate::worker::default_count, |w| *w.get_ref())
            .clamp(1, 1024)
    }
}

/// Listener settings; changing them needs a restart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenerSettings {
    /// Time allowed for a request head to arrive.
    pub header_read_timeout: std::time::Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request head.
    pub max_headers: usize,
    /// How long an HTTP/2 connection may stay without an open stream.
    pub idle_timeout: std::time::Duration,
}

/// The admin listener's address and token.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bearer token requests must present, if any.
    pub token: Option<Vec<u8>>,
}

/// `[server]` and `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The client-facing address.
    pub listen: SocketAddr,
    /// Worker threads (one per core unless `server.workers` says).
    pub workers: usize,
    /// `server.workers` as written (`None`: one per core).
    pub workers_asked: Option<usize>,
    /// Whether the listener terminates TLS.
    pub tls: bool,
    /// The listener's limits.
    pub listener: ListenerSettings,
    /// The share of successful requests the access log records.
    pub access_log_sample: f64,
    /// Largest request body.
    pub max_request_body: u64,
    /// Longest wait for a request body's next bytes.
    pub body_read_timeout: std::time::Duration,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Upgraded connections open at once.
    pub max_websocket_connections: usize,
    /// Client connections open at once.
    pub max_connections: usize,
    /// The share of `max_connections` from which idle connections close.
    pub close_idle_above: f64,
    /// Client connections open at once from one address.
    pub max_connections_per_ip: Option<usize>,
    /// At shutdown, how long in-flight requests may take.
    pub drain_timeout: std::time::Duration,
    /// At shutdown, how long serving goes on while `/readyz` says 503.
    pub shutdown_delay: std::time::Duration,
    /// The admin listener, when configured.
    pub admin: Option<AdminSettings>,
    /// The client-facing listeners: `default` (`listen`, `[server.tls]`)
    /// first, then `[[listeners]]` in order.
    pub listeners: Vec<Listener>,
}

/// The settings a reload cannot change: comparing them says whether a
/// reloaded config needs a restart to apply in full.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartOnly {
    listen: SocketAddr,
    workers: Option<usize>,
    tls: bool,
    listener: ListenerSettings,
    /// The `[[listeners]]`: name, address, TLS or not.
    pub listeners: Vec<(String, SocketAddr, bool)>,
}

impl RestartOnly {
    /// The same without the `[[listeners]]`: what `[server]` alone fixes.
    pub fn without_listeners(&self) -> RestartOnly {
        RestartOnly {
            listeners: Vec::new(),
            ..self.clone()
        }
    }
}

impl ServerSettings {
    /// `config`'s `[server]` and `[admin]`, with every error in them.
    pub fn check(
        source: &Source,
        server: &ServerConfig,
        listeners: &[Spanned<ListenerConfig>],
        admin: Option<&AdminConfig>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Problems::new(source);
        check_ranges(&mut problems, server);
        super::compression::check_server(&mut problems, server.compression.as_ref());
        let listen = listen_addr(&mut problems, &server.listen, "listen", "127.0.0.1:8080");
        let trusted_proxies = trusted_proxies(&mut problems, &server.trusted_proxies);
        let admin = admin_settings(&mut problems, admin, listen);
        let listeners = listen.zip(admin.as_ref()).and_then(|(addr, admin)| {
            let default = Listener {
                name: DEFAULT_LISTENER.to_string(),
                addr,
                tls: server.tls.is_some(),
                redirect_https: None,
                proxy_protocol: None,
            };
            let admin = admin.as_ref().map(|a| a.addr);
            check_listeners(&mut problems, listeners, default, admin)
        });
        let parts = match (listen, trusted_proxies, admin, listeners) {
            (Some(listen), Some(trusted), Some(admin), Some(listeners)) => {
                Some((listen, trusted, admin, listeners))
            }
            _ => None,
        };
        let (listen, trusted_proxies, admin, listeners) = problems.finish_some(parts)?;
        Ok(Self {
            listen,
            workers: server.worker_count(),
            workers_asked: server.workers.as_ref().map(|w| *w.get_ref()),
            tls: server.tls.is_some(),
            listener: ListenerSettings {
                header_read_timeout: server.header_read_timeout.0,
                max_header_bytes: server.max_header_bytes.get_ref().as_usize(),
                max_headers: *server.max_headers.get_ref(),
                idle_timeout: server.idle_timeout.get_ref().0,
            },
            access_log_sample: *server.access_log_sample.get_ref(),
            max_request_body: server.max_request_body.0,
            body_read_timeout: server.body_read_timeout.get_ref().0,
            trusted_proxies,
            max_websocket_connections: server.max_websocket_connections,
            max_connections: *server.max_connections.get_ref(),
            close_idle_above: *server.close_idle_above.get_ref(),
            max_connections_per_ip: server.max_connections_per_ip.as_ref().map(|m| *m.get_ref()),
            drain_timeout: server.drain_timeout.get_ref().0,
            shutdown_delay: server.shutdown_delay.get_ref().0,
            admin,
            listeners,
        })
    }

    /// What only a restart applies.
    pub fn restart_only(&self) -> RestartOnly {
        RestartOnly {
            listen: self.listen,
            workers: self.workers_asked,
            tls: self.tls,
            listener: self.listener,
            listeners: self
                .listeners
                .iter()
                .skip(1)
                .map(|l| (l.name.clone(), l.addr, l.tls))
                .collect(),
        }
    }
}

/// Records every `[server]` number out of its range.
fn check_ranges(problems: &mut Problems<'_>, server: &ServerConfig) {
    let secs = std::time::Duration::from_secs;
    let mut check = |ok: bool, span: std::ops::Range<usize>, message: String| {
        if !ok {
            problems.at(span, message);
        }
    };
    let sample = *server.access_log_sample.get_ref();
    check(
        (0.0..=1.0).contains(&sample),
        server.access_log_sample.span(),
        "server.access_log_sample must be between 0 and 1".into(),
    );
    if let Some(workers) = &server.workers {
        check(
            (1..=1024).contains(workers.get_ref()),
            workers.span(),
            "server.workers must be between 1 and 1024".into(),
        );
    }
    check(
        *server.max_connections.get_ref() > 0,
        server.max_connections.span(),
        "server.max_connections must be at least 1".into(),
    );
    check(
        server.body_read_timeout.get_ref().0 >= secs(1),
        server.body_read_timeout.span(),
        "server.body_read_timeout must be at least 1s".into(),
    );
    check(
        server.drain_timeout.get_ref().0 <= secs(3600),
        server.drain_timeout.span(),
        "server.drain_timeout must be at most 1h".into(),
    );
    check(
        server.shutdown_delay.get_ref().0 <= secs(600),
        server.shutdown_delay.span(),
        "server.shutdown_delay must be at most 10m".into(),
    );
    let share = *server.close_idle_above.get_ref();
    check(
        share > 0.0 && share <= 1.0,
        server.close_idle_above.span(),
        "server.close_idle_above must be above 0 and at most 1 (a share of max_connections)".into(),
    );
    if let Some(per_ip) = &server.max_connections_per_ip {
        check(
            *per_ip.get_ref() > 0,
            per_ip.span(),
            "server.max_connections_per_ip must be at least 1 (leave it out for no limit)".into(),
        );
    }
    check(
        server.max_header_bytes.get_ref().as_usize() >= MIN_HEADER_BYTES,
        server.max_header_bytes.span(),
        format!("max_header_bytes must be at least {MIN_HEADER_BYTES} (8KiB)"),
    );
    check(
        (1..=MAX_HEADERS).contains(server.max_headers.get_ref()),
        server.max_headers.span(),
        format!("server.max_headers must be between 1 and {MAX_HEADERS}"),
    );
    check(
        server.idle_timeout.get_ref().0 >= secs(1),
        server.idle_timeout.span(),
        "server.idle_timeout must be at least 1s".into(),
    );
}

/// An `ip:port` listen address, or `None` with the error recorded.
fn listen_addr(
    problems: &mut Problems<'_>,
    listen: &Spanned<String>,
    which: &str,
    example: &str,
) -> Option<SocketAddr> {
    let parsed = listen.get_ref().parse().ok();
    if parsed.is_none() {
        problems.at(
            listen.span(),
            format!(
                "invalid {which} address `{}`: expected ip:port, for example \"{example}\"",
                listen.get_ref()
            ),
        );
    }
    parsed
}

/// `server.trusted_proxies`, parsed, or `None` with the error at the entry.
fn trusted_proxies(
    problems: &mut Problems<'_>,
    listed: &[Spanned<String>],
) -> Option<TrustedProxies> {
    let entries: Vec<&str> = listed.iter().map(|t| t.get_ref().as_str()).collect();
    TrustedProxies::parse(&entries)
        .map_err(|message| {
            let span = listed
                .iter()
                .find(|t| message.contains(&format!("`{}`", t.get_ref())))
                .map_or(0..0, Spanned::span);
            problems.at(span, message);
        })
        .ok()
}

/// Whether two listeners would want the same socket: one port (not 0, which
/// picks a free one), and one address or an unspecified address of the same
/// family that covers the other.
pub(super) fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |x: SocketAddr, y: SocketAddr| x.ip().is_unspecified() && x.is_ipv4() == y.is_ipv4();
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// `[admin]`, checked: an address other than the server's, a token long
/// enough. `Some(None)` without `[admin]`; `None` when it is wrong.
fn admin_settings(
    problems: &mut Problems<'_>,
    admin: Option<&AdminConfig>,
    server: Option<SocketAddr>,
) -> Option<Option<AdminSettings>> {
    let Some(admin) = admin else {
        return Some(None);
    };
    let addr = listen_addr(problems, &admin.listen, "admin listen", "127.0.0.1:9901")?;
    if let Some(server) = server
        && overlaps(addr, server)
    {
        problems.at(
            admin.listen.span(),
            format!("admin.listen `{addr}` overlaps the address the server listens on (`{server}`): give the admin listener a port of its own"),
        );
        return None;
    }
    let token = match &admin.token {
        None => None,
        Some(secret) => {
            let token = match resolve_secret(problems.source(), secret) {
                Ok(token) => token,
                Err(error) => {
                    problems.at(secret.span(), format!("admin.token: {error}"));
                    return None;
                }
            };
            if token.len() < 16 {
                problems.at(
                    secret.span(),
                    "admin.token must be at least 16 bytes; use `openssl rand -hex 32`",
                );
                return None;
            }
            Some(token)
        }
    };
    if token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin listener is not on loopback and has no token: anyone who can reach it can purge the cache");
    }
    Some(Some(AdminSettings { addr, token }))
}

#[cfg(test)]
mod overlap_tests {
    use super::overlaps;

    #[test]
    fn listeners_overlap_on_one_port_of_one_family() {
        let addr = |text: &str| text.parse().unwrap_or_else(|_| panic!("{text}"));
        assert!(overlaps(addr("127.0.0.1:8080"), addr("0.0.0.0:8080")));
        assert!(overlaps(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
        assert!(overlaps(addr("[::1]:8080"), addr("[::]:8080")));
        assert!(!overlaps(addr("[::1]:8080"), addr("0.0.0.0:8080")));
        assert!(!overlaps(addr("127.0.0.1:9901"), addr("127.0.0.1:8080")));
        assert!(!overlaps(addr("127.0.0.2:8080"), addr("127.0.0.1:8080")));
        assert!(!overlaps(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}

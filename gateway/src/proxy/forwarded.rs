//! `X-Forwarded-*`, `Forwarded` (RFC 7239) and hop-by-hop headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `"10.0.0.0/8"` or `"127.0.0.1"` entries.
    pub fn parse(entries: &[&str]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("invalid trusted proxy `{entry}`: expected an IP address or a CIDR range such as \"10.0.0.0/8\"")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip`'s forwarding headers are believed.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client a request from `peer` is for: `peer` itself, unless it is a
    /// trusted proxy; then the nearest address in `X-Forwarded-For`, read
    /// from the right, that is not a trusted proxy (or the leftmost one, if
    /// all are). Addresses from the header have port 0. An entry that is not
    /// an address stops the walk: what lies left of it cannot be believed.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip().to_canonical()) {
            return peer;
        }
        let mut client = peer;
        // Later header lines were appended by nearer proxies. Entries are
        // split as bytes: a client's junk (non-ASCII, say) in its own entry
        // must not hide the entries proxies appended after it.
        for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            for entry in line.as_bytes().rsplit(|byte| *byte == b',') {
                let Some(ip) = std::str::from_utf8(entry)
                    .ok()
                    .and_then(|entry| forwarded_ip(entry.trim()))
                else {
                    return client;
                };
                client = SocketAddr::new(ip, 0);
                if !self.trusts(ip) {
                    return client;
                }
            }
        }
        client
    }
}

/// The address in one `X-Forwarded-For` entry: `ip`, `ip:port`, `[ipv6]`
/// or `[ipv6]:port`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .ok_or(())
                .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().map_err(|_| ()))
                .map(IpAddr::V6)
        })
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Whether `name` is a header that describes one connection and must not be
/// forwarded (RFC 9110 section 7.6.1). Headers a `Connection` header names
/// are hop-by-hop too; [`strip_hop_by_hop`] removes those as well.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop(name).is_some()
}

/// Whether `token`, a name a `Connection` header lists, is one of the
/// hop-by-hop headers, in any case (no allocation: asked of every request
/// that says `Connection: keep-alive`).
pub fn names_hop_by_hop(token: &str) -> bool {
    plugin_shared::limits::HOP_BY_HOP_HEADERS
        .iter()
        .any(|name| name.eq_ignore_ascii_case(token))
}

/// The hop-by-hop header `name` is, if it is one. By text: every name of
/// every message is asked, and a match on the text looks at its length
/// first, where comparing `HeaderName`s would be nine comparisons each.
fn hop_by_hop(name: &HeaderName) -> Option<&'static HeaderName> {
    Some(match name.as_str() {
        "connection" => &header::CONNECTION,
        "keep-alive" => &KEEP_ALIVE,
        "proxy-connection" => &PROXY_CONNECTION,
        "te" => &header::TE,
        "trailer" => &header::TRAILER,
        "transfer-encoding" => &header::TRANSFER_ENCODING,
        "upgrade" => &header::UPGRADE,
        "proxy-authenticate" => &header::PROXY_AUTHENTICATE,
        "proxy-authorization" => &header::PROXY_AUTHORIZATION,
        _ => return None,
    })
}

/// Removes headers that describe one connection and must not be forwarded,
/// including those named in `Connection`.
///
/// Most messages have none, and most others one (`Connection: keep-alive`
/// from an HTTP/1.1 upstream): one pass over the names decides, and nothing
/// is allocated unless `Connection` has several lines.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let mut lines = headers.get_all(header::CONNECTION).iter();
    let first = lines.next().cloned();
    let rest: Vec<HeaderValue> = lines.cloned().collect();
    for line in first.iter().chain(&rest) {
        let Ok(line) = line.to_str() else { continue };
        for name in line.split(',') {
            // Not a header name: nothing to remove.
            headers.remove(name.trim());
        }
    }
    while let Some(hop) = headers.keys().find_map(hop_by_hop) {
        headers.remove(hop);
    }
}

/// Sets the forwarding headers for a request from `peer` that arrived over
/// `scheme` for `host`. A trusted peer's headers are extended; anyone else's are
/// replaced, so a client cannot spoof its address or protocol.
pub fn apply_forwarded(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    scheme: &'static str,
    host: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) {
    let ip = peer.ip().to_canonical();
    let believe = trusted.trusts(ip);
    let mut ip_buffer = [0u8; IP_TEXT_MAX];
    let ip_text = ip_text(ip, &mut ip_buffer);
    // Quoted in `Forwarded`: only a host that cannot break out of the quotes.
    let quotable = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"'));
    let element = forwarded_element(ip, ip_text, scheme, quotable);
    let forwarded = match joined_if(believe, headers, &FORWARDED) {
        Some(prior) => format!("{prior}, {element}"),
        None => element,
    };
    set(headers, &FORWARDED, forwarded);

    let xff = match joined_if(believe, headers, &X_FORWARDED_FOR) {
        Some(prior) => format!("{prior}, {ip_text}"),
        None => ip_text.to_string(),
    };
    set(headers, &X_FORWARDED_FOR, xff);

    if !(believe && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    match host {
        Some(host) if !(believe && headers.contains_key(&X_FORWARDED_HOST)) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        None if !believe => {
            headers.remove(&X_FORWARDED_HOST);
        }
        _ => {}
    }
}

/// The longest text of an IP address (an IPv4-mapped IPv6 one is 45 bytes).
const IP_TEXT_MAX: usize = 48;

/// `ip` as text, written into `buffer` (no allocation per request).
fn ip_text(ip: IpAddr, buffer: &mut [u8; IP_TEXT_MAX]) -> &str {
    use std::io::Write;
    let mut cursor = &mut buffer[..];
    // Always fits (see IP_TEXT_MAX).
    let _ = write!(cursor, "{ip}");
    let written = IP_TEXT_MAX - cursor.len();
    std::str::from_utf8(&buffer[..written]).unwrap_or_default()
}

/// This hop's `Forwarded` element (RFC 7239), in a string of exactly its
/// length, so it becomes a header value without another allocation.
fn forwarded_element(ip: IpAddr, ip_text: &str, scheme: &str, host: Option<&str>) -> String {
    const FOR: &str = "for=";
    const PROTO: &str = ";proto=";
    const HOST: &str = ";host=\"";
    let quoted = matches!(ip, IpAddr::V6(_));
    let length = FOR.len()
        + ip_text.len()
        + if quoted { 4 } else { 0 }
        + PROTO.len()
        + scheme.len()
        + host.map_or(0, |host| HOST.len() + host.len() + 1);
    let mut element = String::with_capacity(length);
    element.push_str(FOR);
    if quoted {
        element.push_str("\"[");
        element.push_str(ip_text);
        element.push_str("]\"");
    } else {
        element.push_str(ip_text);
    }
    element.push_str(PROTO);
    element.push_str(scheme);
    if let Some(host) = host {
        element.push_str(HOST);
        element.push_str(host);
        element.push('"');
    }
    element
}

/// [`joined`] when the peer's headers are `believe`d (else they are
/// replaced, and never read).
fn joined_if(believe: bool, headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    believe.then(|| joined(headers, name)).flatten()
}

/// Every line of a list header, in order, as one list (a proxy may have added
/// its own line rather than extend the client's).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = lines.next()?.to_string();
    Some(lines.fold(first, |mut all, line| {
        all.push_str(", ");
        all.push_str(line);
        all
    }))
}

/// Sets `name` to `value` (taken without copying), or removes it when `value`
/// is not a valid header value.
fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), value);
    } else {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], 5555))
    }

    #[test]
    fn untrusted_peer_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        apply_forwarded(
            &mut headers,
            peer(),
            "http",
            Some(&HeaderValue::from_static("api.test")),
            &TrustedProxies::default(),
        );
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        assert_eq!(headers[&X_FORWARDED_HOST], "api.test");
        assert_eq!(
            headers[&FORWARDED],
            "for=192.0.2.7;proto=http;host=\"api.test\""
        );
    }

    #[test]
    fn trusted_peer_headers_are_extended() {
        let trusted = TrustedProxies::parse(&["192.0.2.0/24"]).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        apply_forwarded(&mut headers, peer(), "http", None, &trusted);
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.9, 192.0.2.7");
        assert_eq!(headers[&X_FORWARDED_PROTO], "https");

        // A balancer that adds its own line instead of extending the client's:
        // every line is kept, in order, so the upstream sees the client the
        // plugins saw.
        let mut headers = HeaderMap::new();
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        assert_eq!(
            trusted.client(peer(), &headers),
            SocketAddr::from(([203, 0, 113, 9], 0))
        );
        apply_forwarded(&mut headers, peer(), "http", None, &trusted);
        assert_eq!(
            headers.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(),
            ["6.6.6.6, 203.0.113.9, 192.0.2.7"]
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address() {
        let trusted = TrustedProxies::parse(&["192.0.2.0/24", "10.0.0.0/8"]).unwrap_or_default();
        let with = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    &X_FORWARDED_FOR,
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            headers
        };
        let client =
            |peer: SocketAddr, values: &[&str]| trusted.client(peer, &with(values)).to_string();
        // A trusted peer: the nearest untrusted entry, spoofed entries left of it ignored.
        assert_eq!(
            client(peer(), &["6.6.6.6, 203.0.113.9, 10.1.2.3"]),
            "203.0.113.9:0"
        );
        assert_eq!(
            client(peer(), &["6.6.6.6", "203.0.113.9:4444"]),
            "203.0.113.9:0"
        );
        assert_eq!(client(peer(), &["[2001:db8::7]:443"]), "[2001:db8::7]:0");
        // Every entry trusted: the leftmost; no header: the peer.
        assert_eq!(client(peer(), &["10.0.0.1, 10.0.0.2"]), "10.0.0.1:0");
        assert_eq!(client(peer(), &[]), "192.0.2.7:5555");
        // Garbage stops the walk at the last believable address.
        assert_eq!(client(peer(), &["203.0.113.9, unknown"]), "192.0.2.7:5555");
        assert_eq!(client(peer(), &["unknown, 10.0.0.5"]), "10.0.0.5:0");
        assert_eq!(client(peer(), &["[2001:db8::8]"]), "[2001:db8::8]:0");
        // A client's junk (non-ASCII bytes) in its own entry hides nothing a
        // proxy appended after it.
        let mut junk = HeaderMap::new();
        junk.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").expect("obs-text value"),
        );
        assert_eq!(trusted.client(peer(), &junk).to_string(), "203.0.113.5:0");
        // An untrusted peer's header is not read at all.
        let stranger = SocketAddr::from(([198, 51, 100, 1], 1000));
        assert_eq!(client(stranger, &["203.0.113.9"]), "198.51.100.1:1000");
        assert_eq!(
            TrustedProxies::default().client(peer(), &with(&["203.0.113.9"])),
            peer()
        );
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}

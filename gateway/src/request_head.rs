//! The checks a request head passes before it is routed: its message framing
//! (RFC 9112, section 6.1), its `Host` (RFC 9112, section 3.2; RFC 9113,
//! section 8.3.1), its path (no `.` or `..` segments, RFC 3986 section
//! 5.2.4), and the methods the gateway never proxies (`CONNECT`); and, first
//! of all ([`drop_connection_options`]), the headers the client names in
//! `Connection`, which are for the gateway alone.
//!
//! hyper parses the head and decodes `chunked`; what it lets through that a
//! proxy must not forward is refused here, so no upstream ever sees it.

use crate::error::RequestError;
use crate::proxy::names_hop_by_hop;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Version};

/// What `Allow` lists when `CONNECT` is refused: every method a route can
/// accept.
const PROXIED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Checks `request`'s head, and makes its `Host` the authority it is for:
/// in absolute form (`GET http://host/path HTTP/1.1`) the target's
/// authority replaces any `Host` the client sent.
pub fn check<B>(request: &mut Request<B>) -> Result<(), RequestError> {
    if request.version() <= Version::HTTP_11 {
        framing(request.headers())?;
    }
    host(request)?;
    dot_segments(request.uri().path())?;
    if request.method() == Method::CONNECT {
        return Err(RequestError::Connect {
            allow: PROXIED_METHODS,
        });
    }
    Ok(())
}

/// A path with a `.` or `..` segment is refused, in every spelling an
/// upstream might resolve: percent-encoded (`%2e`), with parameters
/// (`..;x`), or beside an encoded slash or backslash (`..%2f`, `%2e%2e%5c`),
/// and so is a raw backslash (not a URI character; some servers read it as
/// `/`). Clients resolve dot segments before sending (RFC 3986, section
/// 5.2.4); routes match the path as it came, so an upstream resolving them
/// itself could be reached past the guards of another route
/// (`/public/../admin` matches `/public/{*rest}`). An encoded slash alone
/// (`/projects/group%2Fname`) passes.
fn dot_segments(path: &str) -> Result<(), RequestError> {
    let refused = || {
        RequestError::Malformed(
            "the path has a `.` or `..` segment or a backslash: resolve it before sending"
                .to_string(),
        )
    };
    if path.contains('\\') {
        return Err(refused());
    }
    for segment in path.split('/') {
        if !segment.contains(['.', '%']) {
            continue;
        }
        let name = segment.split(';').next().unwrap_or_default();
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(name).collect();
        let dotted = decoded
            .split(|&b| b == b'/' || b == b'\\')
            .any(|piece| piece == b"." || piece == b"..");
        if dotted {
            return Err(refused());
        }
    }
    Ok(())
}

/// Removes the headers the client named in `Connection` (RFC 9110, section
/// 7.6.1: they are for this hop alone), and those names from `Connection`,
/// which keeps the hop-by-hop ones and `close`. Called as a request arrives,
/// before anything reads or sets its headers: the plugins then never read a
/// header the client named (a signed one, say, the upstream would not get),
/// and none the gateway or a plugin sets (`traceparent`, `x-consumer-name`)
/// is removed on the way upstream because the client named it. A `Host` so
/// named is gone, and the request then fails the `Host` check.
pub fn drop_connection_options(headers: &mut HeaderMap) {
    let mut named = Vec::new();
    for line in headers.get_all(header::CONNECTION) {
        let Ok(text) = line.to_str() else { continue };
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if !names_hop_by_hop(token) && !token.eq_ignore_ascii_case("close") {
                named.push(token.to_ascii_lowercase());
            }
        }
    }
    if named.is_empty() {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !named.contains(&t.to_ascii_lowercase()))
        .map(str::to_string)
        .collect();
    for name in &named {
        headers.remove(name.as_str());
    }
    headers.remove(header::CONNECTION);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(header::CONNECTION, value);
    }
}

/// The request's transfer codings: `chunked` once at most, and no other
/// (the gateway decodes none, and must not pass encoded bytes on labelled
/// only as chunked).
fn framing(headers: &HeaderMap) -> Result<(), RequestError> {
    let mut chunked = 0;
    let mut other = None;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value.to_str().map_err(|_| {
            RequestError::Malformed("Transfer-Encoding is not visible ASCII".to_string())
        })?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else if other.is_none() {
                other = Some(coding.to_string());
            }
        }
    }
    if chunked > 1 {
        return Err(RequestError::Malformed(
            "the chunked transfer coding is applied more than once".to_string(),
        ));
    }
    match other {
        Some(coding) => Err(RequestError::NotImplemented(format!(
            "transfer coding `{coding}`"
        ))),
        None => Ok(()),
    }
}

/// One valid `Host`, or the target's authority in its place.
fn host<B>(request: &mut Request<B>) -> Result<(), RequestError> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let first = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(RequestError::Malformed("more than one Host".to_string()));
    }
    if let Some(host) = &first {
        let text = host
            .to_str()
            .map_err(|_| RequestError::Malformed("invalid Host".to_string()))?;
        valid_authority(text, "Host")?;
    }
    let target = request.uri().authority().map(|a| a.as_str().to_string());
    match (target, first) {
        (_, None) if request.version() == Version::HTTP_11 => Err(RequestError::Malformed(
            "an HTTP/1.1 request needs a Host".to_string(),
        )),
        (Some(target), host) => {
            valid_authority(&target, "the request target's authority")?;
            if request.version() == Version::HTTP_2 {
                // RFC 9113, 8.3.1: both given, they must name one thing.
                if let Some(host) = host
                    && !host.as_bytes().eq_ignore_ascii_case(target.as_bytes())
                {
                    return Err(RequestError::Malformed(
                        "Host differs from :authority".to_string(),
                    ));
                }
                return Ok(());
            }
            // RFC 9112, 3.2.2: the target's authority wins over Host.
            let value = HeaderValue::from_str(&target).map_err(|_| {
                RequestError::Malformed("invalid authority in the request target".to_string())
            })?;
            request.headers_mut().insert(header::HOST, value);
            Ok(())
        }
        (None, _) => Ok(()),
    }
}

/// Whether `text` is an authority without userinfo: `host[:port]`, the host
/// a registered name, an IPv4 address or a bracketed IPv6 address
/// (RFC 3986, section 3.2).
fn valid_authority(text: &str, what: &str) -> Result<(), RequestError> {
    let invalid = |why: &str| RequestError::Malformed(format!("invalid {what}: {why}"));
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.contains('@') {
        return Err(invalid("userinfo (`user@`) is not accepted"));
    }
    let (host, port) = split_port(text).ok_or_else(|| invalid("malformed port"))?;
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(invalid("malformed port"));
    }
    let valid_host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => is_reg_name(host),
    };
    if valid_host {
        Ok(())
    } else {
        Err(invalid("not a host name or address"))
    }
}

/// `text` as host and port (empty without one).
fn split_port(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Some((host, port)),
            None if rest.is_empty() => Some((host, "")),
            None => None,
        };
    }
    Some(text.rsplit_once(':').unwrap_or((text, "")))
}

/// RFC 3986's `reg-name` (which covers IPv4 addresses), not empty:
/// unreserved characters, sub-delimiters and percent-escapes, less the
/// comma (a `Host` with one would reach `X-Forwarded-Host` as a list).
fn is_reg_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escaped = bytes.get(i + 1..i + 3);
                if !escaped.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    fn status(mut request: Request<()>) -> u16 {
        match check(&mut request) {
            Ok(()) => 200,
            Err(err) => err.status().as_u16(),
        }
    }

    #[test]
    fn headers_named_in_connection_go_and_connection_keeps_the_rest() {
        let mut req = request(
            Version::HTTP_11,
            "/",
            &[
                ("host", "a"),
                ("connection", "keep-alive, X-Consumer-Name"),
                ("connection", "upgrade, close, x-private"),
                ("x-consumer-name", "mallory"),
                ("x-private", "1"),
                ("upgrade", "websocket"),
                ("x-kept", "1"),
            ],
        );
        drop_connection_options(req.headers_mut());
        let headers = req.headers();
        assert_eq!(headers.get("x-consumer-name"), None);
        assert_eq!(headers.get("x-private"), None);
        assert_eq!(headers.get("x-kept").map(|v| v.as_bytes()), Some(&b"1"[..]));
        assert_eq!(
            headers.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"keep-alive, upgrade, close"[..])
        );
        let mut only = request(
            Version::HTTP_11,
            "/",
            &[("host", "a"), ("connection", "Close, X-A"), ("x-a", "1")],
        );
        drop_connection_options(only.headers_mut());
        assert_eq!(only.headers().get("x-a"), None);
        let connection = only.headers().get("connection").map(|v| v.as_bytes());
        assert_eq!(connection, Some(&b"Close"[..]));
        // A Host named in Connection is gone: the Host check then refuses.
        let mut host = request(
            Version::HTTP_11,
            "/",
            &[("host", "a"), ("connection", "host")],
        );
        drop_connection_options(host.headers_mut());
        assert_eq!(status(host), 400);
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        let h11 = Version::HTTP_11;
        let at = |path| request(h11, path, &[("host", "a")]);
        for path in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/a/%2e%2e/b",
            "/a/.%2E/b",
            "/a/%2e/b",
            "/a/..;x=1/b",
            "/public/..%2fadmin",
            "/public/%2e%2e%2Fadmin",
            "/public/%2e%2e%5cadmin",
            "/public/..\\admin",
            "/public\\x",
        ] {
            assert_eq!(status(at(path)), 400, "{path}");
        }
        for path in [
            "/",
            "/a.b/c",
            "/.well-known/x",
            "/a/...",
            "/a/..b",
            "/v1.2/%2e%2ex",
            "/projects/group%2Fname",
        ] {
            assert_eq!(status(at(path)), 200, "{path}");
        }
    }

    #[test]
    fn chunked_once_passes_twice_is_refused() {
        let h11 = Version::HTTP_11;
        let te = |v| request(h11, "/", &[("host", "a"), ("transfer-encoding", v)]);
        assert_eq!(status(te("chunked")), 200);
        assert_eq!(status(te("Chunked")), 200);
        assert_eq!(status(te("chunked, chunked")), 400);
        assert_eq!(status(te("gzip, chunked")), 501);
        assert_eq!(status(te("deflate, chunked")), 501);
        let twice = request(
            h11,
            "/",
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(status(twice), 400);
    }

    #[test]
    fn host_must_be_one_valid_authority() {
        let h11 = Version::HTTP_11;
        let with = |hosts: &[&str]| {
            let headers: Vec<_> = hosts.iter().map(|h| ("host", *h)).collect();
            status(request(h11, "/", &headers))
        };
        for good in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:80",
            "[::1]:8443",
            "[::1]",
            "a-b_c~d",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(with(&[good]), 200, "{good}");
        }
        for bad in [
            "",
            "a b",
            "user@example.com",
            "user:pass@example.com",
            "exa<mple",
            "example.com:80:80",
            "example.com:http",
            "[::1",
            "[not-an-ip]",
            "%zz",
            "a/b",
            "a.test:65536",
            "evil.test,good.test",
        ] {
            assert_eq!(with(&[bad]), 400, "{bad:?}");
        }
        assert_eq!(with(&[]), 400, "HTTP/1.1 without Host");
        assert_eq!(with(&["a", "b"]), 400, "two Host fields");
        assert_eq!(with(&["a", "a"]), 400, "two Host fields, same value");
        assert_eq!(status(request(Version::HTTP_10, "/", &[])), 200);
    }

    #[test]
    fn absolute_form_replaces_host_and_refuses_userinfo() {
        let mut absolute = request(
            Version::HTTP_11,
            "http://api.example.com:8080/x",
            &[("host", "other.example")],
        );
        assert!(check(&mut absolute).is_ok());
        assert_eq!(
            absolute
                .headers()
                .get(header::HOST)
                .map(HeaderValue::as_bytes),
            Some(&b"api.example.com:8080"[..])
        );
        let invalid_host = request(
            Version::HTTP_11,
            "http://api.example.com/x",
            &[("host", "a b")],
        );
        assert_eq!(
            status(invalid_host),
            400,
            "an invalid Host beside the target"
        );
        let no_host = request(Version::HTTP_11, "http://api.example.com/x", &[]);
        assert_eq!(
            status(no_host),
            400,
            "HTTP/1.1 needs Host, absolute form too"
        );
        let userinfo = request(
            Version::HTTP_11,
            "http://user:pass@api.example.com/x",
            &[("host", "api.example.com")],
        );
        assert_eq!(status(userinfo), 400);
    }

    #[test]
    fn http2_host_must_match_authority() {
        let h2 = |host: &[(&str, &str)]| status(request(Version::HTTP_2, "https://a.test/", host));
        assert_eq!(h2(&[]), 200);
        assert_eq!(h2(&[("host", "A.test")]), 200);
        assert_eq!(h2(&[("host", "b.test")]), 400);
    }

    #[test]
    fn connect_is_not_proxied() {
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("/path")
            .header("host", "a")
            .body(())
            .expect("request");
        assert_eq!(status(connect), 405);
    }
}

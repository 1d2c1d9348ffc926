//! `redirect_https`: a cleartext listener that answers every request with a
//! redirect to the same URL over HTTPS, without routing it: `301` for `GET`
//! and `HEAD`, `308` for other methods (which, unlike `301`, tells clients
//! to repeat the method and body). The host comes from the request
//! (`Host`, or the URI's authority) and must be a valid name or address: a
//! location is never built from a malformed one (`400`).

use crate::body::Body;
use crate::config::HttpsRedirect;
use http::{HeaderValue, Method, Request, Response, StatusCode};

/// The redirect answering `request`.
pub fn answer<B>(request: &Request<B>, redirect: HttpsRedirect) -> Response<Body> {
    let status = match *request.method() {
        Method::GET | Method::HEAD => StatusCode::MOVED_PERMANENTLY,
        _ => StatusCode::PERMANENT_REDIRECT,
    };
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request.headers().get(http::header::HOST)?.to_str().ok());
    let location = host
        .and_then(valid_host)
        .and_then(|host| location(host, redirect.port, request.uri()));
    let mut response = Response::new(crate::body::empty());
    match location {
        Some(location) => {
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
        }
        None => *response.status_mut() = StatusCode::BAD_REQUEST,
    }
    response
}

/// `https://host[:port]/path?query`.
fn location(host: &str, port: Option<u16>, uri: &http::Uri) -> Option<HeaderValue> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    HeaderValue::from_str(&format!("https://{host}{port}{path}")).ok()
}

/// The host of a `Host` value (its port dropped) when it is a DNS name, an
/// IPv4 address or a bracketed IPv6 address.
fn valid_host(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            (&authority[..end + 2], &rest[end + 1..])
        }
        None => match authority.split_once(':') {
            Some((host, _)) => (host, authority.get(host.len()..)?),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    if !port_ok {
        return None;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok().then_some(host);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(
        method: Method,
        host: &str,
        target: &str,
        port: Option<u16>,
    ) -> (u16, Option<String>) {
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header("host", host)
            .body(())
            .expect("request");
        let response = answer(&request, HttpsRedirect { port });
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("ASCII").to_string());
        (response.status().as_u16(), location)
    }

    #[test]
    fn safe_methods_get_301_others_308_to_the_same_url_over_https() {
        assert_eq!(
            redirect(Method::GET, "Example.com:8080", "/a/b?x=1&y", None),
            (301, Some("https://Example.com/a/b?x=1&y".into()))
        );
        assert_eq!(
            redirect(Method::HEAD, "example.com", "/", Some(8443)),
            (301, Some("https://example.com:8443/".into()))
        );
        assert_eq!(
            redirect(Method::POST, "10.0.0.1:80", "/submit", None),
            (308, Some("https://10.0.0.1/submit".into()))
        );
        assert_eq!(
            redirect(Method::DELETE, "[::1]:80", "/x", None),
            (308, Some("https://[::1]/x".into()))
        );
    }

    #[test]
    fn a_malformed_host_gets_400_and_no_location() {
        for host in [
            "",
            "evil.com/x",
            "a_b.example",
            "user@evil.com",
            "-a.example",
            "[zz]",
            "a..b",
        ] {
            assert_eq!(
                redirect(Method::GET, host, "/", None),
                (400, None),
                "{host:?}"
            );
        }
    }
}

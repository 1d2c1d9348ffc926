//! Stored entries: what of a response is kept, the marker that says a key has
//! variants, and the answer a hit gives.

use crate::storable::{MAX_AGE_SECS, age_secs};
use plugin_sdk::cache::Entry;
use plugin_sdk::{Headers, Response};

/// Response headers that describe one connection, not the response.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// The entry for `resp`, whose body the caller has checked is present.
pub fn stored(resp: &Response, now_ms: u64) -> Entry {
    Entry {
        status: resp.status(),
        headers: stored_headers(resp.headers()),
        body: resp.body().map(<[u8]>::to_vec).unwrap_or_default(),
        stored_at_ms: now_ms,
        vary: Vec::new(),
    }
}

/// The headers worth replaying to other clients: no hop-by-hop headers (nor
/// those `Connection` names), no cookie set for the client that fetched it,
/// and no `X-Cache`, which each answer gets anew.
pub fn stored_headers(headers: &Headers) -> Headers {
    let per_connection: Vec<String> = headers
        .get_all("connection")
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut kept = Headers::new();
    for (name, value) in headers.iter() {
        let dropped = HOP_BY_HOP.contains(&name)
            || name.starts_with("proxy-")
            || name == "set-cookie"
            || name == "x-cache"
            || per_connection.iter().any(|n| n == name);
        if !dropped {
            kept.append(name, value);
        }
    }
    kept
}

/// The entry under a primary key whose response varies on `vary`: it holds no
/// response, only the names that select a variant.
pub fn marker(vary: Vec<String>, now_ms: u64) -> Entry {
    Entry {
        status: 0,
        headers: Headers::new(),
        body: Vec::new(),
        stored_at_ms: now_ms,
        vary,
    }
}

/// Whether `entry` is a [`marker`] rather than a response.
pub fn is_marker(entry: &Entry) -> bool {
    entry.status == 0
}

/// The entry's current age (RFC 9111 4.2.3): the `Age` it arrived with plus
/// the whole seconds it has been stored, saturating at [`MAX_AGE_SECS`].
pub fn current_age_secs(entry: &Entry, now_ms: u64) -> u64 {
    let resident = now_ms.saturating_sub(entry.stored_at_ms) / 1000;
    age_secs(&entry.headers)
        .saturating_add(resident)
        .min(MAX_AGE_SECS)
}

/// The answer to a request that hit `entry`: its status, headers and (unless
/// for HEAD) body, with `X-Cache: HIT` and `Age`, the upstream's `Age` plus
/// the whole seconds since it was stored.
pub fn answer(entry: Entry, head: bool, now_ms: u64) -> Response {
    let age = current_age_secs(&entry, now_ms);
    let mut response = Response::new(entry.status);
    let headers = response.headers_mut();
    *headers = entry.headers;
    headers.set("age", age.to_string());
    headers.set("x-cache", "HIT");
    // Without a body the stored Content-Length stays, as HEAD wants it.
    if !head {
        response.set_body(Some(entry.body));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_drop_connection_cookies_and_x_cache() {
        let resp = Response::new(200)
            .with_header("content-type", "text/plain")
            .with_header("connection", "keep-alive, X-Trace")
            .with_header("keep-alive", "timeout=5")
            .with_header("transfer-encoding", "chunked")
            .with_header("x-trace", "abc")
            .with_header("proxy-authenticate", "Basic")
            .with_header("set-cookie", "session=1")
            .with_header("x-cache", "HIT from upstream")
            .with_header("etag", "\"v1\"")
            .with_header("age", "3")
            .with_body("hi");
        let entry = stored(&resp, 42);
        assert_eq!(
            entry.headers.iter().collect::<Vec<_>>(),
            [
                ("content-type", "text/plain"),
                ("etag", "\"v1\""),
                ("age", "3")
            ]
        );
        assert_eq!(entry.body, b"hi");
        assert_eq!(entry.stored_at_ms, 42);
        assert!(!is_marker(&entry));
        assert!(is_marker(&marker(vec!["accept".into()], 42)));
    }

    #[test]
    fn answer_adds_age_and_x_cache_and_drops_the_body_for_head() {
        let mut entry = stored(
            &Response::new(200)
                .with_header("content-length", "2")
                .with_header("age", "10")
                .with_body("hi"),
            1_000,
        );
        entry.headers.append("x-cache", "stale");
        let get = answer(entry.clone(), false, 4_999);
        assert_eq!(get.headers().get("age"), Some("13"));
        assert_eq!(
            get.headers().get_all("x-cache").collect::<Vec<_>>(),
            ["HIT"]
        );
        assert_eq!(get.body(), Some(&b"hi"[..]));
        let head = answer(entry, true, 1_000);
        assert_eq!(head.headers().get("age"), Some("10"));
        assert_eq!(head.headers().get("content-length"), Some("2"));
        assert_eq!(head.body(), None);
    }
}

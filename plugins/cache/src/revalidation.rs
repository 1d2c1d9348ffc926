//! Revalidation (RFC 9111 4.3): a stale entry with a validator is not
//! fetched again in full; the upstream is asked whether it changed, with
//! `If-None-Match` (its `ETag`) and `If-Modified-Since` (its
//! `Last-Modified`). A `304 Not Modified` refreshes the entry's headers and
//! the client gets the stored body; anything else is a new response. A
//! `304` must be about the entry (RFC 9111 4.3.4): its `ETag`, strong or
//! weak, must match the entry's.
//!
//! The client's own `If-None-Match` and `If-Modified-Since` are the cache's
//! to answer (RFC 9110 13.2): they are answered from the entry, never
//! forwarded alongside the cache's validators.

use plugin_sdk::cache::Entry;
use plugin_sdk::{Headers, Request, Response};
use serde::{Deserialize, Serialize};
use std::time::UNIX_EPOCH;

/// Headers a `304` never changes in the entry (RFC 9111 3.2): the stored
/// body's length is the stored body's.
const NOT_UPDATED: &[&str] = &["content-length"];

/// Headers a `304` answer to the client carries (RFC 9110 15.4.5), besides
/// `Age` and `X-Cache`.
const NOT_MODIFIED_HEADERS: &[&str] = &[
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "last-modified",
    "vary",
];

/// A client's conditional request headers, kept for the response phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// Every `If-None-Match` value, joined.
    pub if_none_match: Option<String>,
    /// The first `If-Modified-Since`.
    pub if_modified_since: Option<String>,
}

impl Conditions {
    /// The conditional headers of `headers`, `None` when there are none.
    pub fn of(headers: &Headers) -> Option<Conditions> {
        let if_none_match = headers.get_all("if-none-match").collect::<Vec<_>>();
        let conditions = Conditions {
            if_none_match: (!if_none_match.is_empty()).then(|| if_none_match.join(", ")),
            if_modified_since: headers.get("if-modified-since").map(str::to_string),
        };
        (conditions != Conditions::default()).then_some(conditions)
    }

    /// Whether a `200` with `headers` is "not modified" for this client
    /// (RFC 9110 13.1.2, 13.1.3): `If-None-Match` decides when present
    /// (weak comparison), else `If-Modified-Since` against `Last-Modified`.
    pub fn not_modified(&self, headers: &Headers) -> bool {
        if let Some(list) = &self.if_none_match {
            let Some(etag) = headers.get("etag") else {
                return false;
            };
            return list.trim() == "*"
                || list.split(',').any(|candidate| weak_match(candidate, etag));
        }
        let since = self.if_modified_since.as_deref().and_then(http_date_secs);
        let modified = headers.get("last-modified").and_then(http_date_secs);
        matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
    }
}

/// Weak comparison of two entity-tags: equal opaque tags, `W/` or not.
fn weak_match(a: &str, b: &str) -> bool {
    let opaque = |tag: &str| {
        let tag = tag.trim();
        tag.strip_prefix("W/").unwrap_or(tag).to_string()
    };
    let a = opaque(a);
    !a.is_empty() && a == opaque(b)
}

/// Strong comparison: equal and neither weak.
fn strong_match(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !is_weak(a) && !is_weak(b) && a == b
}

fn is_weak(tag: &str) -> bool {
    tag.trim().starts_with("W/")
}

fn http_date_secs(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Turns `req` into the conditional request that revalidates `stored`:
/// the client's own `If-None-Match` and `If-Modified-Since` are replaced by
/// the entry's `ETag` and `Last-Modified`.
pub fn make_conditional(req: &mut Request, stored: &Headers) {
    let headers = req.headers_mut();
    headers.remove("if-none-match");
    headers.remove("if-modified-since");
    if let Some(etag) = stored.get("etag") {
        headers.set("if-none-match", etag);
    }
    if let Some(last_modified) = stored.get("last-modified") {
        headers.set("if-modified-since", last_modified);
    }
}

/// Whether a `304` with `headers` validates `stored` (RFC 9111 4.3.4): an
/// `ETag` in it must be the entry's, by strong comparison when it is strong
/// and by weak comparison (RFC 9110 8.8.3.2) when it is weak. A `304`
/// without an `ETag` validates the entry it answers.
pub fn validates(stored: &Headers, not_modified: &Headers) -> bool {
    let Some(etag) = not_modified.get("etag") else {
        return true;
    };
    stored.get("etag").is_some_and(|own| {
        if is_weak(etag) {
            weak_match(own, etag)
        } else {
            strong_match(own, etag)
        }
    })
}

/// The entry's headers updated from a `304` (RFC 9111 3.2): each field the
/// `304` has replaces the stored one, except `Content-Length`; the stored
/// `Age` goes, as the response was just validated (the `304`'s own `Age`,
/// from a cache behind this one, stays). `updates` are the `304`'s headers
/// already filtered as for storage.
pub fn refreshed_headers(stored: &Headers, updates: &Headers) -> Headers {
    let replaced =
        |name: &str| name == "age" || (updates.contains(name) && !NOT_UPDATED.contains(&name));
    let mut merged = Headers::new();
    for (name, value) in stored.iter().filter(|(name, _)| !replaced(name)) {
        merged.append(name, value);
    }
    for (name, value) in updates.iter().filter(|(n, _)| !NOT_UPDATED.contains(n)) {
        merged.append(name, value);
    }
    merged
}

/// `entry` refreshed from a `304` received at `now_ms`.
pub fn refreshed(entry: Entry, updates: &Headers, now_ms: u64) -> Entry {
    Entry {
        headers: refreshed_headers(&entry.headers, updates),
        stored_at_ms: now_ms,
        ..entry
    }
}

/// Rewrites a `200` answer into the `304` the client's conditions call for:
/// no body, the validator and caching headers only.
pub fn into_not_modified(response: &mut Response) {
    let mut kept = Headers::new();
    for (name, value) in response.headers().iter() {
        if NOT_MODIFIED_HEADERS.contains(&name) || name == "age" || name == "x-cache" {
            kept.append(name, value);
        }
    }
    response.set_status(304);
    *response.headers_mut() = kept;
    response.set_body(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in fields {
            h.append(name, *value);
        }
        h
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_if_modified_since() {
        let stored = headers(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let when = |inm: Option<&str>, ims: Option<&str>| Conditions {
            if_none_match: inm.map(str::to_string),
            if_modified_since: ims.map(str::to_string),
        };
        assert!(when(Some("\"v0\", \"v1\""), None).not_modified(&stored));
        assert!(when(Some("*"), None).not_modified(&stored));
        assert!(!when(Some("\"v2\""), Some("Sun, 06 Nov 1994 09:00:00 GMT")).not_modified(&stored));
        assert!(when(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")).not_modified(&stored));
        assert!(!when(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")).not_modified(&stored));
        assert!(!when(None, Some("yesterday")).not_modified(&stored));
        assert!(!when(Some("\"v1\""), None).not_modified(&headers(&[])));
        assert_eq!(Conditions::of(&headers(&[("accept", "*/*")])), None);
    }

    #[test]
    fn a_304_refreshes_all_but_the_length_and_resets_the_age() {
        let stored = headers(&[
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("cache-control", "max-age=1"),
            ("etag", "\"v1\""),
            ("age", "100"),
            ("x-old", "kept"),
        ]);
        let updates = headers(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("x-new", "added"),
            ("etag", "\"v1\""),
        ]);
        let merged = refreshed_headers(&stored, &updates);
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            [
                ("content-type", "text/plain"),
                ("content-length", "5"),
                ("x-old", "kept"),
                ("cache-control", "max-age=60"),
                ("x-new", "added"),
                ("etag", "\"v1\""),
            ]
        );
    }

    #[test]
    fn a_304_with_another_strong_etag_validates_nothing() {
        let stored = headers(&[("etag", "\"v1\"")]);
        assert!(validates(&stored, &headers(&[("etag", "\"v1\"")])));
        assert!(validates(&stored, &headers(&[])));
        assert!(!validates(&stored, &headers(&[("etag", "\"v2\"")])));
        assert!(!validates(
            &headers(&[("etag", "W/\"v1\"")]),
            &headers(&[("etag", "\"v1\"")])
        ));
    }

    /// RFC 9111 4.3.4 with RFC 9110 8.8.3.2: a weak `ETag` in a `304`
    /// selects only an entry whose `ETag` matches it weakly.
    #[test]
    fn a_304_with_a_weak_etag_validates_only_a_weakly_matching_entry() {
        let weak = headers(&[("etag", "W/\"v2\"")]);
        assert!(validates(&headers(&[("etag", "W/\"v2\"")]), &weak));
        assert!(validates(&headers(&[("etag", "\"v2\"")]), &weak));
        assert!(!validates(&headers(&[("etag", "\"v1\"")]), &weak));
        assert!(!validates(&headers(&[("etag", "W/\"v1\"")]), &weak));
        assert!(!validates(
            &headers(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &weak
        ));
    }

    #[test]
    fn conditional_requests_carry_the_entrys_validators_only() {
        let mut req = Request::new("GET", "/")
            .with_header("if-none-match", "\"client\"")
            .with_header("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT");
        make_conditional(&mut req, &headers(&[("etag", "\"v1\"")]));
        assert_eq!(req.headers().get("if-none-match"), Some("\"v1\""));
        assert!(!req.headers().contains("if-modified-since"));
    }
}

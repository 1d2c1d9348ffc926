//! Cache keys: which requests share a stored response.
//!
//! The rule that keeps the cache safe from poisoning: whatever of a request
//! can change the upstream's answer is either in the key or removed from the
//! request before it is proxied ([`sanitise`]).
//!
//! A key reads `GET {host}{path}?{query}` (no `?` without a query), then
//! ` h:{name}={value}` per key header and ` c:{consumer}` for an
//! authenticated request, so the admin API can purge by exact key or by
//! prefix (`GET api.example.com/v1/`). Header values and consumer names are
//! escaped so that no value can spell another part of a key. A variant (see
//! [`variant`]) appends a newline and the request's values of the headers the
//! response varies on.

use crate::config::Options;
use plugin_sdk::{Headers, Request};

/// Longest key stored under; a longer one bypasses the cache. The host refuses
/// keys over 1 KiB.
pub const MAX_KEY: usize = 1000;

/// The primary key of a cacheable (and already [sanitised](sanitise)) request.
pub fn primary(req: &Request, options: &Options, consumer: Option<&str>) -> String {
    // HEAD is served from GET entries, so both are written GET.
    let mut key = format!(
        "GET {}",
        target(req.authority(), req.path(), req.query(), options)
    );
    for name in &options.key_headers {
        key.push_str(" h:");
        key.push_str(name);
        key.push('=');
        escape_into(&mut key, &joined_values(req.headers(), name));
    }
    if let Some(consumer) = consumer {
        key.push_str(" c:");
        escape_into(&mut key, consumer);
    }
    key
}

/// The URI part of a key, `{host}{path}?{query}`: what identifies a resource
/// whatever the consumer or the key headers, hence what an unsafe request
/// invalidates. With `key_query`, only keyed parameters count.
pub fn target(authority: &str, path: &str, query: &str, options: &Options) -> String {
    let mut target = format!("{}{}", authority.to_ascii_lowercase(), path);
    let query = match &options.key_query {
        Some(keep) => normalised_query(&keyed_params(query, keep)),
        None => normalised_query(query),
    };
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query);
    }
    target
}

/// The key of the variant of `primary` that a request with `headers` selects,
/// given the (lower-case, sorted) names the response varies on. An absent
/// header counts as empty.
pub fn variant(primary: &str, vary: &[String], headers: &Headers) -> String {
    let mut key = primary.to_string();
    for name in vary {
        key.push('\n');
        escape_into(&mut key, &joined_values(headers, name));
    }
    key
}

/// What a response's `Vary` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// The response is the same for every request with its key (no `Vary`,
    /// or an empty one).
    Never,
    /// It depends on these request headers: lower-case, sorted, each once.
    On(Vec<String>),
    /// `Vary: *`: it depends on things no cache can see.
    Anything,
}

/// Reads every `Vary` field of a response.
pub fn vary(headers: &Headers) -> Vary {
    let mut names: Vec<String> = Vec::new();
    for value in headers.get_all("vary") {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Vary::Anything;
            }
            names.push(name.to_ascii_lowercase());
        }
    }
    // Sorted, so upstreams that list the same names in another order share
    // variants.
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        Vary::Never
    } else {
        Vary::On(names)
    }
}

/// Makes what is proxied depend only on what the key holds: removes the
/// poisoning headers and `strip_headers`, and with `key_query`, every query
/// parameter that is not keyed. Leaves an untouched request unedited.
pub fn sanitise(req: &mut Request, options: &Options) {
    for name in &options.strip_headers {
        if req.headers().contains(name) {
            req.headers_mut().remove(name);
        }
    }
    if let Some(keep) = &options.key_query {
        let kept = keyed_params(req.query(), keep);
        if kept != req.query() {
            req.set_query(kept);
        }
    }
}

/// The raw `name=value` segments of `query` whose decoded name is in `keep`,
/// in their order.
pub fn keyed_params(query: &str, keep: &[String]) -> String {
    segments(query)
        .filter(|segment| keep.iter().any(|k| *k == decoded_name(segment)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query in a canonical order: parameters sorted by name, as sent (no
/// decoding, so two spellings the upstream might read differently never
/// share a key). Repeated names keep their relative order, because upstreams
/// disagree on whether the first or the last value wins; empty segments are
/// dropped.
pub fn normalised_query(query: &str) -> String {
    let mut parts: Vec<&str> = segments(query).collect();
    parts.sort_by_key(|segment| raw_name(segment));
    parts.join("&")
}

fn segments(query: &str) -> impl Iterator<Item = &str> {
    query.split('&').filter(|segment| !segment.is_empty())
}

fn raw_name(segment: &str) -> &str {
    segment.split_once('=').map_or(segment, |(name, _)| name)
}

/// The parameter name as the upstream's form decoder reads it.
fn decoded_name(segment: &str) -> String {
    percent_decode(&raw_name(segment).replace('+', " "))
}

fn percent_decode(text: &str) -> String {
    let hex = |b: &u8| {
        char::from(*b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            )
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every value of `name`, joined as HTTP joins repeated fields.
fn joined_values(headers: &Headers, name: &str) -> String {
    headers.get_all(name).collect::<Vec<_>>().join(", ")
}

/// Appends `text` with `%`, space, and control characters percent-encoded:
/// the separators of a key (space, newline) cannot appear in an escaped value.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '%' || c == ' ' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::Config;
    use serde_json::json;

    fn options(config: serde_json::Value) -> Options {
        Options::from_config(&Config::from_value(config)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn query_is_sorted_by_name_keeping_repeated_values_in_order() {
        assert_eq!(normalised_query("b=2&a=1"), "a=1&b=2");
        assert_eq!(normalised_query("id=2&x=0&id=1"), "id=2&id=1&x=0");
        assert_eq!(normalised_query("&&b&a=&"), "a=&b");
        assert_eq!(normalised_query(""), "");
        // Spellings are kept apart: the upstream may decode them differently.
        assert_ne!(normalised_query("q=a+b"), normalised_query("q=a%20b"));
    }

    #[test]
    fn keyed_params_match_decoded_names_and_keep_raw_segments() {
        let keep = ["page".to_string(), "sort by".to_string()];
        assert_eq!(
            keyed_params("utm=x&page=2&pa%67e=3&sort+by=name&z", &keep),
            "page=2&pa%67e=3&sort+by=name"
        );
        assert_eq!(keyed_params("a=1", &keep), "");
    }

    #[test]
    fn key_has_host_path_query_headers_and_consumer() {
        let o = options(json!({"key_headers": ["Accept-Language", "x-tenant"]}));
        let req = Request::new("HEAD", "/v1/Users?b=2&a=1")
            .with_authority("API.Example.com:8080")
            .with_header("accept-language", "de")
            .with_header("accept-language", "en");
        assert_eq!(
            primary(&req, &o, Some("alice")),
            "GET api.example.com:8080/v1/Users?a=1&b=2 h:accept-language=de,%20en h:x-tenant= c:alice"
        );
        let bare = Request::new("GET", "/v1/users").with_authority("api.example.com");
        assert_eq!(
            primary(&bare, &options(json!({})), None),
            "GET api.example.com/v1/users"
        );
    }

    #[test]
    fn no_header_value_can_forge_another_key_part() {
        let o = options(json!({"key_headers": ["x-tenant"]}));
        let forged = Request::new("GET", "/").with_header("x-tenant", "t1 c:alice");
        let alice = Request::new("GET", "/").with_header("x-tenant", "t1");
        assert_ne!(
            primary(&forged, &o, None),
            primary(&alice, &o, Some("alice"))
        );
        let mut escaped = String::new();
        escape_into(&mut escaped, "a b%\n\u{7f}é");
        assert_eq!(escaped, "a%20b%25%0A%7Fé");
    }

    #[test]
    fn vary_names_are_lower_case_sorted_and_unique() {
        let headers = |values: &[&str]| {
            let mut h = Headers::new();
            for v in values {
                h.append("vary", *v);
            }
            h
        };
        assert_eq!(vary(&headers(&[])), Vary::Never);
        assert_eq!(vary(&headers(&[" , "])), Vary::Never);
        assert_eq!(
            vary(&headers(&[
                "Accept-Language, accept-encoding",
                "Accept-Encoding"
            ])),
            Vary::On(vec!["accept-encoding".into(), "accept-language".into()])
        );
        assert_eq!(vary(&headers(&["accept", "*"])), Vary::Anything);
    }

    #[test]
    fn variant_appends_each_value_on_its_own_line() {
        let mut h = Headers::new();
        h.append("accept-language", "de");
        let names = vec!["accept-encoding".to_string(), "accept-language".to_string()];
        assert_eq!(variant("GET h/p", &names, &h), "GET h/p\n\nde");
    }

    #[test]
    fn sanitise_leaves_an_innocent_request_unedited() {
        let o = options(json!({"key_query": ["page"]}));
        let mut req = Request::new("GET", "/p?page=1").with_header("accept", "*/*");
        sanitise(&mut req, &o);
        assert!(!req.is_edited());
        let mut req = Request::new("GET", "/p?page=1&utm=x").with_header("x-host", "evil");
        sanitise(&mut req, &o);
        assert!(req.is_edited());
        assert_eq!(req.query(), "page=1");
        assert!(!req.headers().contains("x-host"));
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%41%zz%4"), "aA%zz%4");
        assert_eq!(percent_decode("%C3%A4"), "ä");
    }
}

//! The field encoding of the WIT contract (`types.headers`): for each field,
//! name length and value length as little-endian u32, then name and value
//! bytes. A request's head is one such buffer: pseudo-fields (`:method`,
//! `:path`, ...) first, then its header fields.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Serialises `headers` in order.
pub fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers_size(headers));
    append_headers(&mut out, headers);
    out
}

fn headers_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| 8 + n.as_str().len() + v.len())
        .sum()
}

fn append_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(&len32(name.len()));
    out.extend_from_slice(&len32(value.len()));
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// A request head for plugins: `pseudo` fields (names with their `:`), one
/// `:param` field (`name=value`) per path parameter, then `headers`.
pub fn encode_head(
    pseudo: &[(&str, &str)],
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Vec<u8> {
    let pseudo_size: usize = pseudo.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let params_size: usize = params.iter().map(|(n, v)| 15 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(pseudo_size + params_size + headers_size(headers));
    for (name, value) in pseudo {
        push_field(&mut out, name.as_bytes(), value.as_bytes());
    }
    for (name, value) in params {
        let value = [name.as_bytes(), b"=", value.as_bytes()].concat();
        push_field(&mut out, b":param", &value);
    }
    append_headers(&mut out, headers);
    out
}

/// Every field of `buffer` as raw bytes, in order; a malformed tail ends it.
fn fields(buffer: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let (name_len, value_len) = split_field(buffer.get(at..)?)?;
        let name = &buffer[at + 8..at + 8 + name_len];
        let value = &buffer[at + 8 + name_len..at + 8 + name_len + value_len];
        at += 8 + name_len + value_len;
        Some((name, value))
    })
}

/// The value of the first pseudo-field `name` (with its `:`) of a head.
pub fn head_field<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    fields(head)
        .take_while(|(n, _)| n.starts_with(b":"))
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// What is wrong with a plugin's header fields, if anything: a malformed
/// encoding, a name that is no header name (one starting with `:` would read
/// as a pseudo-field of the head), or a value no header may carry. A scan of
/// the bytes, with the rules of `http`'s `HeaderName` and `HeaderValue`, so
/// that an edit is refused when its plugin answers, not after the pipeline.
pub fn header_fields_fault(headers: &[u8]) -> Option<String> {
    let text = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .chars()
            .take(64)
            .collect::<String>()
    };
    let mut at = 0;
    while at < headers.len() {
        let Some((name_len, value_len)) = split_field(&headers[at..]) else {
            return Some("a malformed header encoding".to_string());
        };
        let name = &headers[at + 8..at + 8 + name_len];
        let value = &headers[at + 8 + name_len..at + 8 + name_len + value_len];
        if name.starts_with(b":") {
            return Some(format!("a header named `{}`", text(name)));
        }
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Some(format!("an invalid header name `{}`", text(name)));
        }
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            return Some(format!("an invalid value for header `{}`", text(name)));
        }
        at += 8 + name_len + value_len;
    }
    None
}

/// Whether `byte` may be in a header name (an RFC 9110 token).
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The header fields of a head: what follows its pseudo-fields.
pub fn head_headers(head: &[u8]) -> &[u8] {
    let pseudo: usize = fields(head)
        .take_while(|(n, _)| n.starts_with(b":"))
        .map(|(n, v)| 8 + n.len() + v.len())
        .sum();
    &head[pseudo..]
}

/// `head` with the pseudo-fields in `set` given these values (`None`
/// removes one), in place when present and after the others when not, and
/// with `headers` (encoded) for its header fields when given.
pub fn edit_head(head: &[u8], set: &[(&str, Option<&str>)], headers: Option<&[u8]>) -> Vec<u8> {
    let headers = headers.unwrap_or_else(|| head_headers(head));
    let mut out = Vec::with_capacity(head.len() + 64);
    let mut done = vec![false; set.len()];
    for (name, value) in fields(head).take_while(|(n, _)| n.starts_with(b":")) {
        match set.iter().position(|(n, _)| n.as_bytes() == name) {
            Some(index) => {
                if let (false, Some(new)) = (done[index], set[index].1) {
                    push_field(&mut out, name, new.as_bytes());
                }
                done[index] = true;
            }
            None => push_field(&mut out, name, value),
        }
    }
    for ((name, value), done) in set.iter().zip(done) {
        if let (false, Some(value)) = (done, value) {
            push_field(&mut out, name.as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(headers);
    out
}

fn len32(len: usize) -> [u8; 4] {
    // Header names and values are bounded by the request head limit, far
    // below 4 GiB; saturate rather than wrap just in case.
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

/// Parses a plugin's headers, refusing malformed encodings and invalid names
/// or values with a message that says which. The values share `bytes` (one
/// buffer, no copy per value).
pub fn decode_headers(bytes: impl Into<Bytes>) -> Result<HeaderMap, String> {
    let bytes: Bytes = bytes.into();
    let mut map = HeaderMap::new();
    let mut at = 0;
    while at < bytes.len() {
        let (name_len, value_len) = split_field(&bytes[at..]).ok_or("malformed header encoding")?;
        let name_bytes = &bytes[at + 8..at + 8 + name_len];
        let name_parsed = HeaderName::from_bytes(name_bytes).map_err(|_| {
            format!(
                "invalid header name `{}`",
                String::from_utf8_lossy(name_bytes)
                    .chars()
                    .take(64)
                    .collect::<String>()
            )
        })?;
        let start = at + 8 + name_len;
        let value = HeaderValue::from_maybe_shared(bytes.slice(start..start + value_len))
            .map_err(|_| format!("invalid value for header `{name_parsed}`"))?;
        map.append(name_parsed, value);
        at = start + value_len;
    }
    Ok(map)
}

/// The name and value lengths of the field at the start of `bytes`, when the
/// whole field is there.
fn split_field(bytes: &[u8]) -> Option<(usize, usize)> {
    let name_len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let value_len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    let end = 8usize.checked_add(name_len)?.checked_add(value_len)?;
    (end <= bytes.len()).then_some((name_len, value_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_repeats() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-b", HeaderValue::from_static("two"));
        headers.append("x-a", HeaderValue::from_static("3"));
        let decoded = decode_headers(encode_headers(&headers)).unwrap_or_default();
        assert_eq!(decoded, headers);
    }

    #[test]
    fn a_head_holds_pseudo_fields_params_then_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        let params = vec![("id".to_string(), "42".to_string())];
        let head = encode_head(&[(":method", "GET"), (":path", "/u/42")], &params, &headers);
        assert_eq!(head_field(&head, ":method"), Some("GET"));
        assert_eq!(head_field(&head, ":param"), Some("id=42"));
        assert_eq!(
            head_field(&head, "x-a"),
            None,
            "headers are no pseudo-fields"
        );
        assert_eq!(
            decode_headers(head_headers(&head).to_vec()).ok(),
            Some(headers)
        );
    }

    #[test]
    fn an_edit_replaces_adds_and_removes_pseudo_fields() {
        let head = encode_head(
            &[(":method", "GET"), (":query", "a=1")],
            &[],
            &HeaderMap::new(),
        );
        let new_headers = encode_headers(&HeaderMap::from_iter([(
            http::header::ACCEPT,
            HeaderValue::from_static("*/*"),
        )]));
        let edited = edit_head(
            &head,
            &[
                (":method", Some("POST")),
                (":query", None),
                (":upstream", Some("canary")),
            ],
            Some(&new_headers),
        );
        assert_eq!(head_field(&edited, ":method"), Some("POST"));
        assert_eq!(head_field(&edited, ":query"), None);
        assert_eq!(head_field(&edited, ":upstream"), Some("canary"));
        assert_eq!(head_headers(&edited), new_headers.as_slice());
    }

    #[test]
    fn a_plugins_header_fields_are_checked_as_http_would() {
        let buffer = encode_headers(&HeaderMap::from_iter([(
            http::header::ACCEPT,
            HeaderValue::from_static("*/*"),
        )]));
        assert_eq!(header_fields_fault(&buffer), None);
        let with = |name: &[u8], value: &[u8]| {
            let mut edited = buffer.clone();
            push_field(&mut edited, name, value);
            header_fields_fault(&edited)
        };
        assert_eq!(
            with(b":upstream", b"canary").as_deref(),
            Some("a header named `:upstream`")
        );
        assert_eq!(
            with(b"x a", b"1").as_deref(),
            Some("an invalid header name `x a`")
        );
        assert_eq!(
            with(b"x-a", b"1\r\n2").as_deref(),
            Some("an invalid value for header `x-a`")
        );
        assert_eq!(with(b"x-a", b"tab\tand \xc3\xa9"), None);
        assert!(header_fields_fault(&[1, 0]).is_some(), "a malformed tail");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(decode_headers(vec![1, 0, 0]).is_err());
        assert!(decode_headers(vec![255, 255, 255, 255, 0, 0, 0, 0, b'x']).is_err());
        let bad_value = [3, 0, 0, 0, 2, 0, 0, 0, b'x', b'-', b'a', b'\r', b'\n'];
        assert_eq!(
            decode_headers(bad_value.to_vec()).err().as_deref(),
            Some("invalid value for header `x-a`")
        );
    }
}

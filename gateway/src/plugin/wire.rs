//! The header encoding of the WIT contract (`types.headers`): for each field,
//! name length and value length as little-endian u32, then name and value bytes.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Serialises `headers` in order.
pub fn encode_headers(headers: &HeaderMap) -> Vec<u8> {
    let size: usize = headers
        .iter()
        .map(|(n, v)| 8 + n.as_str().len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        out.extend_from_slice(&len32(name.as_str().len()));
        out.extend_from_slice(&len32(value.len()));
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
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
